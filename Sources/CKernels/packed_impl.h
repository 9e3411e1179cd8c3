// Matmul tiles over the 8-row interleaved layouts, included by packed.c once per instruction set.
// The includer defines NAME(x) (the variant's function names), TARGET (its target attribute) and
// DOT_US(acc, u, s): acc + the 8 int32 lane sums of 4 unsigned bytes of u times 4 signed bytes of s
// (products of at most 15 * 128 for the maddubs form, which saturates beyond 2^15 per pair), and
// DOT_Q8(corr, u, s): the lane sums of the signed bytes (u ^ 0x80) times s, where corr is
// -(128 * the lane sums of s) (Q8_CORR says whether the variant needs corr). ROW_TILES: whether
// batched Q4_1 uses the one-row-per-register tiles (8 accumulators per activation row, besides the
// activations and weights: more than AVX2's 16 registers hold).
//
// Every output follows the float operations of the single-row kernels in avx2.c exactly: the
// integer lane sums are the same numbers, and each lane is scaled and accumulated per block in the
// same order. Two rows share a register: lanes 0-3 hold row A's lanes 0-3 (or 4-7), lanes 4-7 row B's.

#define TILE static inline __attribute__((always_inline)) TARGET

TILE __m256 NAME(lanes_to_float)(__m256i v) { return _mm256_cvtepi32_ps(v); }

// Every cache line of the block PACKED_PREFETCH bytes ahead in this group's weight stream.
TILE void NAME(prefetch_ahead)(const void *block, const int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)block + PACKED_PREFETCH + o, _MM_HINT_T0);
}

// ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)) of one row, given t = its lanes 0-3 + lanes 4-7.
TILE float NAME(finish4)(__m128 r) {
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

TILE float NAME(hsum8)(__m256 v) {
    return NAME(finish4)(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

// Scale of pair p: lanes 0-3 = s[2p], lanes 4-7 = s[2p+1].
TILE __m256 NAME(pair_scale)(__m256 s, int p) {
    return _mm256_permutevar8x32_ps(s, _mm256_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1));
}

// Q4_1 rows 2*p0 .. 2*(p0+NP)-1 of one group against NC activation rows.
TILE void NAME(q4_1x8_tile)(int nb, const block_q4_1x8 *w, const block_q8_1 *const *x, const float *const *xf,
                            float *const *y, const int NC, const int p0, const int NP) {
    __m256 acc[4][4][2], sm[4];
    for (int c = 0; c < NC; c++) {
        sm[c] = _mm256_setzero_ps();
        for (int p = 0; p < NP; p++) acc[c][p][0] = acc[c][p][1] = _mm256_setzero_ps();
    }
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < nb; i++) {
        const block_q4_1x8 *b = w + i;
        NAME(prefetch_ahead)(b, sizeof *b);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->m));
        __m256i xlo[4], xhi[4];
        __m256 dd[4];
        for (int c = 0; c < NC; c++) {
            const block_q8_1 *xc = x[c] + i;
            xlo[c] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xc->qs));
            xhi[c] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xc->qs + 16)));
            dd[c] = _mm256_mul_ps(d8, _mm256_broadcast_ss(xf[c] + 2 * i));
            sm[c] = _mm256_fmadd_ps(m8, _mm256_broadcast_ss(xf[c] + 2 * i + 1), sm[c]);
        }
        for (int p = 0; p < NP; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)b->qs[2 * (p0 + p)]);
            const __m256i lo = _mm256_and_si256(v, low);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            for (int c = 0; c < NC; c++) {
                const __m256 s = NAME(pair_scale)(dd[c], p0 + p);
                const __m256i z = _mm256_setzero_si256();
                acc[c][p][0] = _mm256_fmadd_ps(s, NAME(lanes_to_float)(DOT_US(z, lo, xlo[c])), acc[c][p][0]);
                acc[c][p][1] = _mm256_fmadd_ps(s, NAME(lanes_to_float)(DOT_US(z, hi, xhi[c])), acc[c][p][1]);
            }
        }
    }
    for (int c = 0; c < NC; c++) {
        float m[8];
        _mm256_storeu_ps(m, sm[c]);
        for (int p = 0; p < NP; p++) {
            const __m256 t = _mm256_add_ps(acc[c][p][0], acc[c][p][1]);
            const int r = 2 * (p0 + p);
            y[c][r] = NAME(finish4)(_mm256_castps256_ps128(t)) + m[r];
            y[c][r + 1] = NAME(finish4)(_mm256_extractf128_ps(t, 1)) + m[r + 1];
        }
    }
}

// Batched Q4_1: the group's nibbles are unpacked once into `wq` (per block, per row: the 16 low
// nibbles then the 16 high ones, so one register holds one row's 8 reference lanes) with its scales
// in `dw`/`mw`; each activation row's block scales times the 8 rows' go through memory, where the
// multiply-add broadcasts them for free. No lane-crossing shuffle in the loop, the same numbers.
TILE void NAME(q4_1x8_unpack)(int nb, const block_q4_1x8 *w, uint8_t *wq, float *dw, float *mw) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < nb; i++) {
        const block_q4_1x8 *b = w + i;
        NAME(prefetch_ahead)(b, sizeof *b);
        _mm256_store_ps(dw + 8 * i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d)));
        _mm256_store_ps(mw + 8 * i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->m)));
        for (int p = 0; p < 4; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)b->qs[2 * p]);
            const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            _mm256_store_si256((__m256i *)(wq + (size_t)(8 * i + 2 * p) * 32), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_store_si256((__m256i *)(wq + (size_t)(8 * i + 2 * p + 1) * 32), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    }
}

TILE void NAME(q4_1x8_rows)(int nb, const uint8_t *wq, const float *dw, const float *mw, const block_q8_1 *const *x,
                            const float *const *xf, float *const *y, const int NC) {
    __m256 acc[ROW_COLS][8], sm[ROW_COLS];
    float dsb[(size_t)nb * ROW_COLS * 8] __attribute__((aligned(32)));
    for (int c = 0; c < NC; c++) {
        sm[c] = _mm256_setzero_ps();
        for (int r = 0; r < 8; r++) acc[c][r] = _mm256_setzero_ps();
        for (int i = 0; i < nb; i++) {
            _mm256_store_ps(dsb + (size_t)(i * ROW_COLS + c) * 8, _mm256_mul_ps(_mm256_load_ps(dw + 8 * i), _mm256_broadcast_ss(xf[c] + 2 * i)));
            sm[c] = _mm256_fmadd_ps(_mm256_load_ps(mw + 8 * i), _mm256_broadcast_ss(xf[c] + 2 * i + 1), sm[c]);
        }
    }
    for (int i = 0; i < nb; i++) {
        const float *ds = dsb + (size_t)i * ROW_COLS * 8;
        __m256i xv[ROW_COLS];
        for (int c = 0; c < NC; c++) xv[c] = _mm256_loadu_si256((const __m256i *)x[c][i].qs);
        for (int r = 0; r < 8; r++) {
            const __m256i u = _mm256_load_si256((const __m256i *)(wq + (size_t)(8 * i + r) * 32));
            for (int c = 0; c < NC; c++)
                acc[c][r] = _mm256_fmadd_ps(_mm256_broadcast_ss(ds + c * 8 + r),
                                            NAME(lanes_to_float)(DOT_US(_mm256_setzero_si256(), u, xv[c])), acc[c][r]);
        }
    }
    for (int c = 0; c < NC; c++) {
        float m[8];
        _mm256_storeu_ps(m, sm[c]);
        for (int r = 0; r < 8; r++) y[c][r] = NAME(hsum8)(acc[c][r]) + m[r];
    }
}

// Q4_0: nibble - 8, signed; the -8 offset is folded into the lane sums exactly.
TILE void NAME(q4_0x8_tile)(int nb, const block_q4_0x8 *w, const block_q8_0 *const *x, const float *const *xf,
                            float *const *y, const int NC, const int p0, const int NP) {
    __m256 acc[4][4][2];
    for (int c = 0; c < NC; c++)
        for (int p = 0; p < NP; p++) acc[c][p][0] = acc[c][p][1] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    for (int i = 0; i < nb; i++) {
        const block_q4_0x8 *b = w + i;
        NAME(prefetch_ahead)(b, sizeof *b);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        __m256i xlo[4], xhi[4], clo[4], chi[4];
        __m256 dd[4];
        for (int c = 0; c < NC; c++) {
            const block_q8_0 *xc = x[c] + i;
            xlo[c] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xc->qs));
            xhi[c] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(xc->qs + 16)));
            const __m256i z = _mm256_setzero_si256();
            clo[c] = _mm256_sub_epi32(z, DOT_US(z, eight, xlo[c]));
            chi[c] = _mm256_sub_epi32(z, DOT_US(z, eight, xhi[c]));
            dd[c] = _mm256_mul_ps(d8, _mm256_broadcast_ss(xf[c] + 2 * i));
        }
        for (int p = 0; p < NP; p++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)b->qs[2 * (p0 + p)]);
            const __m256i lo = _mm256_and_si256(v, low);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            for (int c = 0; c < NC; c++) {
                const __m256 s = NAME(pair_scale)(dd[c], p0 + p);
                acc[c][p][0] = _mm256_fmadd_ps(s, NAME(lanes_to_float)(DOT_US(clo[c], lo, xlo[c])), acc[c][p][0]);
                acc[c][p][1] = _mm256_fmadd_ps(s, NAME(lanes_to_float)(DOT_US(chi[c], hi, xhi[c])), acc[c][p][1]);
            }
        }
    }
    for (int c = 0; c < NC; c++)
        for (int p = 0; p < NP; p++) {
            const __m256 t = _mm256_add_ps(acc[c][p][0], acc[c][p][1]);
            const int r = 2 * (p0 + p);
            y[c][r] = NAME(finish4)(_mm256_castps256_ps128(t));
            y[c][r + 1] = NAME(finish4)(_mm256_extractf128_ps(t, 1));
        }
}

// Q8_0 rows r0 .. r0+NR-1 of one group; weights are stored + 128 (see DOT_Q8).
TILE void NAME(q8_0x8_tile)(int nb, const block_q8_0x8 *w, const block_q8_0 *const *x, const float *const *xf,
                            float *const *y, const int NC, const int r0, const int NR) {
    __m256 acc[4][8];
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < NR; r++) acc[c][r] = _mm256_setzero_ps();
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    for (int i = 0; i < nb; i++) {
        const block_q8_0x8 *b = w + i;
        NAME(prefetch_ahead)(b, sizeof *b);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        __m256i xq[4], corr[4];
        __m256 dd[4];
        for (int c = 0; c < NC; c++) {
            const block_q8_0 *xc = x[c] + i;
            xq[c] = _mm256_loadu_si256((const __m256i *)xc->qs);
            const __m256i z = _mm256_setzero_si256();
            corr[c] = Q8_CORR ? _mm256_sub_epi32(z, DOT_US(z, bias, xq[c])) : z;
            dd[c] = _mm256_mul_ps(d8, _mm256_broadcast_ss(xf[c] + 2 * i));
        }
        for (int r = 0; r < NR; r++) {
            const __m256i u = _mm256_loadu_si256((const __m256i *)b->qs[r0 + r]);
            for (int c = 0; c < NC; c++) {
                const __m256 s = _mm256_permutevar8x32_ps(dd[c], _mm256_set1_epi32(r0 + r));
                acc[c][r] = _mm256_fmadd_ps(s, NAME(lanes_to_float)(DOT_Q8(corr[c], u, xq[c])), acc[c][r]);
            }
        }
    }
    for (int c = 0; c < NC; c++)
        for (int r = 0; r < NR; r++) y[c][r0 + r] = NAME(hsum8)(acc[c][r]);
}

// One 8-row group against `cols` activation rows: y[c][0..7] for c < cols. xf: per activation row,
// 2 * nb floats, its blocks' scale (and sum, for Q8_1) converted from f16 once for all groups.
TARGET static void NAME(group)(int type, int nb, const void *w, const char *x, size_t x_stride, const float *xf,
                               int cols, float *y, int ldy) {
    int c = 0;
    const void *xs[4 > ROW_COLS ? 4 : ROW_COLS];
    const float *fs[4 > ROW_COLS ? 4 : ROW_COLS];
    float *ys[4 > ROW_COLS ? 4 : ROW_COLS];
#define COLS(n) for (int j = 0; j < (n); j++) { \
        xs[j] = x + (size_t)(c + j) * x_stride; fs[j] = xf + (size_t)(c + j) * 2 * nb; ys[j] = y + (size_t)(c + j) * ldy; }
    // Tiles of PREFILL_COLS activation rows (row pairs PREFILL_PAIRS at a time), then one at a time.
#define PAIR_TILES(tile, xtype)                                                                         \
    for (; c + PREFILL_COLS <= cols; c += PREFILL_COLS) {                                               \
        COLS(PREFILL_COLS)                                                                              \
        for (int p = 0; p < 4; p += PREFILL_PAIRS)                                                      \
            tile(nb, w, (const xtype *const *)xs, fs, ys, PREFILL_COLS, p, PREFILL_PAIRS);              \
    }                                                                                                   \
    for (; c < cols; c++) { COLS(1) tile(nb, w, (const xtype *const *)xs, fs, ys, 1, 0, 4); }
    switch (type) {
    case CK_TYPE_Q4_1_X8:
        if (ROW_TILES && cols >= ROW_COLS && nb <= ROW_MAX_BLOCKS) {
            uint8_t wq[(size_t)nb * 256] __attribute__((aligned(32)));
            float dw[nb * 8] __attribute__((aligned(32))), mw[nb * 8] __attribute__((aligned(32)));
            NAME(q4_1x8_unpack)(nb, w, wq, dw, mw);
            for (; c + ROW_COLS <= cols; c += ROW_COLS) {
                COLS(ROW_COLS)
                NAME(q4_1x8_rows)(nb, wq, dw, mw, (const block_q8_1 *const *)xs, fs, ys, ROW_COLS);
            }
            for (; c < cols; c++) { COLS(1) NAME(q4_1x8_rows)(nb, wq, dw, mw, (const block_q8_1 *const *)xs, fs, ys, 1); }
            break;
        }
        PAIR_TILES(NAME(q4_1x8_tile), block_q8_1) break;
    case CK_TYPE_Q4_0_X8: PAIR_TILES(NAME(q4_0x8_tile), block_q8_0) break;
    case CK_TYPE_Q8_0_X8:
        for (; c + PREFILL_COLS <= cols; c += PREFILL_COLS) {
            COLS(PREFILL_COLS)
            for (int r = 0; r < 8; r += 2 * PREFILL_PAIRS)
                NAME(q8_0x8_tile)(nb, w, (const block_q8_0 *const *)xs, fs, ys, PREFILL_COLS, r, 2 * PREFILL_PAIRS);
        }
        for (; c < cols; c++) { COLS(1) NAME(q8_0x8_tile)(nb, w, (const block_q8_0 *const *)xs, fs, ys, 1, 0, 8); }
        break;
    default: break;
    }
#undef PAIR_TILES
#undef COLS
}
#undef TILE
