// Matmul tiles over the 8-row interleaved layouts, included by packed.c once per instruction set.
// The includer defines NAME(x) (the variant's function names), TARGET (its target attribute),
// MAX_COLS (activation rows per tile; NARROW_COLS for Q4_0, Q4_1 and Q8_0, whose blocks cost little to
// unpack, so that wider tiles only add register pressure), DOT4(acc, u, s): acc + the 8 int32 lane sums of 4 unsigned
// bytes of u times 4 signed bytes of s, and DOT4_Q8(acc, u, s) likewise for Q8_0's stored weights
// (signed + 128), with Q8_CORR saying whether the result still needs -128 * (sum of s).
//
// Lane r of every register is output row r of the group: per block, one 32-byte load holds 4
// consecutive quants of each of the 8 rows (two such runs for Q4), multiplied with the same 4
// activation quants broadcast to all lanes. Eight of them make each row's exact integer block dot,
// then one conversion and one multiply-add per block serve all 8 rows. Integer sums are exact, so
// each output is the number ck_vec_dot defines, whatever the tile, batch or instruction set.

#define TILE static inline __attribute__((always_inline)) TARGET
// Column loops unrolled whole (NC is a constant at every call), so that the accumulators stay in registers.
#define EACH_COL _Pragma("clang loop unroll(full)") for (int c = 0; c < NC; c++)

// Every cache line of the block PACKED_PREFETCH bytes ahead in this group's weight stream.
TILE void NAME(prefetch_ahead)(const void *block, const int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)block + PACKED_PREFETCH + o, _MM_HINT_T0);
}

TILE __m256i NAME(bcast4)(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// The exact integer block dots of the 8 rows (unsigned operands u[0..7], each 4 elements of every
// row) with activation quants q (32 bytes, element 4j..4j+3 for u[j]).
#define BLOCK_DOT(dot, u, q)                                                                          \
    ({                                                                                                \
        __m256i a_ = _mm256_setzero_si256(), b_ = _mm256_setzero_si256();                              \
        a_ = dot(a_, u[0], NAME(bcast4)((q) + 0));                                                     \
        b_ = dot(b_, u[1], NAME(bcast4)((q) + 4));                                                     \
        a_ = dot(a_, u[2], NAME(bcast4)((q) + 8));                                                     \
        b_ = dot(b_, u[3], NAME(bcast4)((q) + 12));                                                    \
        a_ = dot(a_, u[4], NAME(bcast4)((q) + 16));                                                    \
        b_ = dot(b_, u[5], NAME(bcast4)((q) + 20));                                                    \
        a_ = dot(a_, u[6], NAME(bcast4)((q) + 24));                                                    \
        b_ = dot(b_, u[7], NAME(bcast4)((q) + 28));                                                    \
        _mm256_add_epi32(a_, b_);                                                                      \
    })

// WT: the packed group's base type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL); A16: 16-bit activations.
// IQ4_NL's nibbles become their table values + 128 and then run as Q8_0's stored bytes.
TILE void NAME(tile)(const int WT, const int A16, int nb, const uint8_t *w, const char *const *x, float *const *y,
                     const int NC) {
    const int MIN = WT == CK_TYPE_Q4_1 || WT == CK_TYPE_Q5_1, FIVE = WT == CK_TYPE_Q5_0 || WT == CK_TYPE_Q5_1;
    const int SIGNED = WT == CK_TYPE_Q8_0 || WT == CK_TYPE_IQ4_NL;
    const size_t wbytes = WT == CK_TYPE_Q4_1 ? sizeof(block_q4_1x8)
                        : WT == CK_TYPE_Q4_0 || WT == CK_TYPE_IQ4_NL ? sizeof(block_q4_0x8)
                        : WT == CK_TYPE_Q5_0 ? sizeof(block_q5_0x8) : WT == CK_TYPE_Q5_1 ? sizeof(block_q5_1x8)
                        : sizeof(block_q8_0x8);
    const size_t qoff = WT == CK_TYPE_Q4_1 ? 32 : WT == CK_TYPE_Q5_0 ? 48 : WT == CK_TYPE_Q5_1 ? 64 : 16;
    const size_t qhoff = WT == CK_TYPE_Q5_1 ? 32 : 16;
    const size_t xbytes = A16 ? sizeof(block_a16) : sizeof(block_a8);
    __m256 acc[MAX_COLS], sm[MAX_COLS];
    EACH_COL acc[c] = sm[c] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < nb; i++) {
        const uint8_t *b = w + (size_t)i * wbytes;
        NAME(prefetch_ahead)(b, (int)wbytes);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b));
        const __m256 m8 = MIN ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + 16))) : d8;
        __m256i u[8];
        if (WT == CK_TYPE_Q8_0) {
            for (int j = 0; j < 8; j++) u[j] = _mm256_loadu_si256((const __m256i *)(b + qoff + 32 * j));
        } else {
            for (int t = 0; t < 4; t++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(b + qoff + 32 * t));
                u[t] = _mm256_and_si256(v, low);
                u[4 + t] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            }
            if (WT == CK_TYPE_IQ4_NL) {
                const __m256i table = _mm256_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15,
                                                       1, 24, 45, 63, 79, 93, 106, 118, -127, -115, -103, -90, -75, -59, -39, -15);
                for (int j = 0; j < 8; j++) u[j] = _mm256_shuffle_epi8(table, u[j]);
            }
            if (FIVE) {
                // Fifth bits (regrouped at packing): bit j of each byte is the one u[j]'s byte needs, moved
                // to bit 4 by one shift (16-bit lanes: what crosses a byte boundary never reaches bit 4).
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(b + qhoff));
                const __m256i five = _mm256_set1_epi8(0x10);
                for (int j = 0; j < 8; j++) {
                    const __m256i s = j <= 4 ? _mm256_slli_epi16(hb, 4 - j) : _mm256_srli_epi16(hb, j - 4);
                    u[j] = _mm256_or_si256(u[j], _mm256_and_si256(s, five));
                }
            }
        }
        EACH_COL {
            const char *xb = x[c] + (size_t)i * xbytes;
            const float dx = ((const float *)xb)[0], sx = ((const float *)xb)[1];
            const int32_t sum = ((const int32_t *)xb)[2];
            const int8_t *q = (const int8_t *)(xb + 16);
            __m256i isum;
            if (SIGNED) {
                isum = BLOCK_DOT(DOT4_Q8, u, q);
                if (A16) isum = _mm256_add_epi32(_mm256_slli_epi32(isum, 8), BLOCK_DOT(DOT4_Q8, u, q + QK));
                if (Q8_CORR) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(128 * sum));
            } else {
                isum = BLOCK_DOT(DOT4, u, q);
                if (A16) isum = _mm256_add_epi32(_mm256_slli_epi32(isum, 8), BLOCK_DOT(DOT4, u, q + QK));
                if (WT == CK_TYPE_Q4_0) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * sum));
                if (WT == CK_TYPE_Q5_0) isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(16 * sum));
            }
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d8, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(isum), acc[c]);
            if (MIN) sm[c] = _mm256_fmadd_ps(m8, _mm256_set1_ps(sx), sm[c]);
        }
    }
    EACH_COL
        _mm256_storeu_ps(y[c], MIN ? _mm256_add_ps(acc[c], sm[c]) : acc[c]);
}
// Q4_K and Q5_K: per super-block the 8 sub-blocks' 6-bit scales and mins of the 8 rows as floats
// (d * sc, dmin * m), then each sub-block as a Q4_1 block with those (Q5_K: plus bit j of each
// quant's byte of qh as its fifth bit).
TILE __m256i NAME(bytes8)(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

TILE void NAME(kq_tile)(const int FIVE, const int A16, int nsb, const uint8_t *w, const char *const *x,
                        float *const *y, const int NC) {
    const size_t bytes = FIVE ? sizeof(block_q5_Kx8) : sizeof(block_q4_Kx8);
    const size_t xbytes = A16 ? sizeof(block_a16) : sizeof(block_a8);
    __m256 acc[MAX_COLS], sm[MAX_COLS];
    EACH_COL acc[c] = sm[c] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F), six = _mm256_set1_epi32(63), four = _mm256_set1_epi32(0x0F);
    for (int i = 0; i < nsb; i++) {
        // Both layouts begin with d[8], dmin[8] and sc[12][8]; Q5_K's fifth bits come next.
        const block_q4_Kx8 *b = (const block_q4_Kx8 *)(w + i * bytes);
        const uint8_t (*qs)[8][8][4] = FIVE ? ((const block_q5_Kx8 *)b)->qs : b->qs;
        NAME(prefetch_ahead)(b, (int)bytes);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        const __m256 dmin8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->dmin));
        for (int j = 0; j < 8; j++) {
            __m256i sc, mn;
            if (j < 4) {
                sc = _mm256_and_si256(NAME(bytes8)(b->sc[j]), six);
                mn = _mm256_and_si256(NAME(bytes8)(b->sc[j + 4]), six);
            } else {
                const __m256i a = NAME(bytes8)(b->sc[j + 4]);
                sc = _mm256_or_si256(_mm256_and_si256(a, four), _mm256_slli_epi32(_mm256_srli_epi32(NAME(bytes8)(b->sc[j - 4]), 6), 4));
                mn = _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_slli_epi32(_mm256_srli_epi32(NAME(bytes8)(b->sc[j]), 6), 4));
            }
            const __m256 dl = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(sc)), ml = _mm256_mul_ps(dmin8, _mm256_cvtepi32_ps(mn));
            __m256i u[8];
            for (int t = 0; t < 8; t++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)qs[j / 2][t]);
                u[t] = _mm256_and_si256(j % 2 ? _mm256_srli_epi16(v, 4) : v, low);
                if (FIVE) {
                    const __m256i h = _mm256_loadu_si256((const __m256i *)((const block_q5_Kx8 *)b)->qh[t]);
                    const __m256i bit = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
                    u[t] = _mm256_or_si256(u[t], _mm256_slli_epi16(bit, 4));
                }
            }
            EACH_COL {
                const char *xb = x[c] + (size_t)(i * 8 + j) * xbytes;
                const float dx = ((const float *)xb)[0], sx = ((const float *)xb)[1];
                const int8_t *q = (const int8_t *)(xb + 16);
                __m256i isum = BLOCK_DOT(DOT4, u, q);
                if (A16) isum = _mm256_add_epi32(_mm256_slli_epi32(isum, 8), BLOCK_DOT(DOT4, u, q + QK));
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dl, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(isum), acc[c]);
                sm[c] = _mm256_fmadd_ps(ml, _mm256_set1_ps(sx), sm[c]);
            }
        }
    }
    EACH_COL _mm256_storeu_ps(y[c], _mm256_sub_ps(acc[c], sm[c]));
}
// The exact integer dot of the 8 rows' elements 4b..4b+15 (u[b..b+3]) with quants q.
#define HALF_DOT(dot, u, q, b)                                                                        \
    ({                                                                                                \
        __m256i a_ = dot(_mm256_setzero_si256(), u[(b)], NAME(bcast4)((q) + 4 * (b)));                 \
        __m256i b_ = dot(_mm256_setzero_si256(), u[(b) + 1], NAME(bcast4)((q) + 4 * (b) + 4));         \
        a_ = dot(a_, u[(b) + 2], NAME(bcast4)((q) + 4 * (b) + 8));                                     \
        b_ = dot(b_, u[(b) + 3], NAME(bcast4)((q) + 4 * (b) + 12));                                    \
        _mm256_add_epi32(a_, b_);                                                                      \
    })

// Both halves' exact integer dots of the 8 rows with the activation block at xb (both passes of 16-bit
// activations), less `offset` times each half's activation sum (for quants stored + offset).
TILE void NAME(half_dots)(const __m256i *u, const char *xb, const int A16, const int offset, __m256i *lo, __m256i *hi) {
    const int32_t sum = ((const int32_t *)xb)[2], sum_lo = ((const int32_t *)xb)[3];
    const int8_t *q = (const int8_t *)(xb + 16);
    __m256i l = HALF_DOT(DOT4, u, q, 0), h = HALF_DOT(DOT4, u, q, 4);
    if (A16) {
        l = _mm256_add_epi32(_mm256_slli_epi32(l, 8), HALF_DOT(DOT4, u, q + QK, 0));
        h = _mm256_add_epi32(_mm256_slli_epi32(h, 8), HALF_DOT(DOT4, u, q + QK, 4));
    }
    if (offset) {
        l = _mm256_sub_epi32(l, _mm256_set1_epi32(offset * sum_lo));
        h = _mm256_sub_epi32(h, _mm256_set1_epi32(offset * (sum - sum_lo)));
    }
    *lo = l;
    *hi = h;
}

// Q6_K: per 32-element block two halves of 16, each with its own int8 scale; quants stored + 32
// (0..63, unsigned) and corrected with -32 * the half's activation sum.
TILE void NAME(q6k_tile)(const int A16, int nsb, const block_q6_Kx8 *w, const char *const *x, float *const *y,
                         const int NC) {
    const size_t xbytes = A16 ? sizeof(block_a16) : sizeof(block_a8);
    __m256 acc[MAX_COLS];
    EACH_COL acc[c] = _mm256_setzero_ps();
    const __m256i low = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(3);
    for (int i = 0; i < nsb; i++) {
        const block_q6_Kx8 *b = w + i;
        NAME(prefetch_ahead)(b, (int)sizeof *b);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b->d));
        for (int j = 0; j < 8; j++) {
            const int h = j / 4, jj = j % 4;
            const __m128i sl = _mm_cvtsi32_si128(4 * (jj / 2)), sh = _mm_cvtsi32_si128(2 * jj);
            __m256i u[8];
            for (int t = 0; t < 8; t++) {
                const __m256i l = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)b->ql[2 * h + jj % 2][t]), sl), low);
                const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)b->qh[h][t]), sh), two);
                u[t] = _mm256_or_si256(l, _mm256_slli_epi16(hb, 4));
            }
            const __m256 dlo = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)b->sc[2 * j]))));
            const __m256 dhi = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)b->sc[2 * j + 1]))));
            EACH_COL {
                const char *xb = x[c] + (size_t)(i * 8 + j) * xbytes;
                const float dx = ((const float *)xb)[0];
                __m256i lo, hi;
                NAME(half_dots)(u, xb, A16, 32, &lo, &hi);
                const __m256 vdx = _mm256_set1_ps(dx);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dlo, vdx), _mm256_cvtepi32_ps(lo), acc[c]);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dhi, vdx), _mm256_cvtepi32_ps(hi), acc[c]);
            }
        }
    }
    EACH_COL _mm256_storeu_ps(y[c], acc[c]);
}
// Q3_K and Q2_K: per 32-element block two halves of 16 with their own scales (and Q2_K's minimums),
// 2-bit quants (Q3_K: plus a high bit, 0..7 for -4..3, corrected with -4 * the half's activation sum).
TILE void NAME(q23k_tile)(const int THREE, const int A16, int nsb, const uint8_t *w, const char *const *x,
                          float *const *y, const int NC) {
    const size_t xbytes = A16 ? sizeof(block_a16) : sizeof(block_a8);
    const size_t bytes = THREE ? sizeof(block_q3_Kx8) : sizeof(block_q2_Kx8);
    __m256 acc[MAX_COLS], sm[MAX_COLS];
    EACH_COL acc[c] = sm[c] = _mm256_setzero_ps();
    const __m256i two = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), nib = _mm256_set1_epi32(0x0F);
    for (int i = 0; i < nsb; i++) {
        const uint8_t *b = w + (size_t)i * bytes;
        const block_q3_Kx8 *b3 = (const block_q3_Kx8 *)b;
        const block_q2_Kx8 *b2 = (const block_q2_Kx8 *)b;
        NAME(prefetch_ahead)(b, (int)bytes);
        const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(THREE ? b3->d : b2->d)));
        const __m256 dmin8 = THREE ? d8 : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)b2->dmin));
        for (int j = 0; j < 8; j++) {
            const __m128i sq = _mm_cvtsi32_si128(2 * (j % 4)), sj = _mm_cvtsi32_si128(j);
            __m256i u[8];
            for (int t = 0; t < 8; t++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(THREE ? b3->qs[j / 4][t] : b2->qs[j / 4][t]));
                u[t] = _mm256_and_si256(_mm256_srl_epi16(v, sq), two);
                if (THREE) {
                    const __m256i h = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *)b3->hm[t]), sj), one);
                    u[t] = _mm256_or_si256(u[t], _mm256_slli_epi16(h, 2));
                }
            }
            __m256i sc[2], mn[2];
            for (int half = 0; half < 2; half++) {
                const int s = 2 * j + half;
                if (THREE) {
                    const __m256i lo = s < 8 ? _mm256_and_si256(NAME(bytes8)(b3->sc[s]), nib)
                                             : _mm256_srli_epi32(NAME(bytes8)(b3->sc[s - 8]), 4);
                    const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(NAME(bytes8)(b3->sc[8 + s % 4]), 2 * (s / 4)),
                                                        _mm256_set1_epi32(3));
                    sc[half] = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
                } else {
                    const __m256i v = NAME(bytes8)(b2->sc[s]);
                    sc[half] = _mm256_and_si256(v, nib);
                    mn[half] = _mm256_srli_epi32(v, 4);
                }
            }
            const __m256 dlo = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(sc[0])), dhi = _mm256_mul_ps(d8, _mm256_cvtepi32_ps(sc[1]));
            const __m256 mlo = THREE ? dlo : _mm256_mul_ps(dmin8, _mm256_cvtepi32_ps(mn[0]));
            const __m256 mhi = THREE ? dhi : _mm256_mul_ps(dmin8, _mm256_cvtepi32_ps(mn[1]));
            EACH_COL {
                const char *xb = x[c] + (size_t)(i * 8 + j) * xbytes;
                const float dx = ((const float *)xb)[0];
                const int32_t sum = ((const int32_t *)xb)[2], sum_lo = ((const int32_t *)xb)[3];
                __m256i lo, hi;
                NAME(half_dots)(u, xb, A16, THREE ? 4 : 0, &lo, &hi);
                const __m256 vdx = _mm256_set1_ps(dx);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dlo, vdx), _mm256_cvtepi32_ps(lo), acc[c]);
                if (!THREE) sm[c] = _mm256_fmadd_ps(mlo, _mm256_set1_ps(dx * (float)sum_lo), sm[c]);
                acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(dhi, vdx), _mm256_cvtepi32_ps(hi), acc[c]);
                if (!THREE) sm[c] = _mm256_fmadd_ps(mhi, _mm256_set1_ps(dx * (float)(sum - sum_lo)), sm[c]);
            }
        }
    }
    EACH_COL _mm256_storeu_ps(y[c], THREE ? acc[c] : _mm256_sub_ps(acc[c], sm[c]));
}
TILE void NAME(q3k_tile)(const int A16, int nsb, const uint8_t *w, const char *const *x, float *const *y, const int NC) {
    NAME(q23k_tile)(1, A16, nsb, w, x, y, NC);
}
TILE void NAME(q2k_tile)(const int A16, int nsb, const uint8_t *w, const char *const *x, float *const *y, const int NC) {
    NAME(q23k_tile)(0, A16, nsb, w, x, y, NC);
}
#undef HALF_DOT
#undef BLOCK_DOT

// Column tiles of a K-quant group: TILE_FN(A16, super-blocks, w, xs, ys, n).
#define K_TILES(TILE_FN, BLOCK)                                                                       \
    TILE void NAME(TILE_FN##s)(const int A16, int nb, const BLOCK *w, const char *x, size_t x_stride, int cols, \
                               float *y, int ldy) {                                                   \
        const char *xs[MAX_COLS];                                                                     \
        float *ys[MAX_COLS];                                                                          \
        int c = 0;                                                                                    \
        for (; c + MAX_COLS <= cols; c += MAX_COLS) {                                                 \
            for (int j = 0; j < MAX_COLS; j++) { xs[j] = x + (size_t)(c + j) * x_stride; ys[j] = y + (size_t)(c + j) * ldy; } \
            NAME(TILE_FN)(A16, nb / 8, w, xs, ys, MAX_COLS);                                          \
        }                                                                                             \
        for (; c < cols; c++) {                                                                       \
            xs[0] = x + (size_t)c * x_stride;                                                         \
            ys[0] = y + (size_t)c * ldy;                                                              \
            NAME(TILE_FN)(A16, nb / 8, w, xs, ys, 1);                                                 \
        }                                                                                             \
    }
TILE void NAME(q4k_tile)(const int A16, int nsb, const uint8_t *w, const char *const *x, float *const *y, const int NC) {
    NAME(kq_tile)(0, A16, nsb, w, x, y, NC);
}
TILE void NAME(q5k_tile)(const int A16, int nsb, const uint8_t *w, const char *const *x, float *const *y, const int NC) {
    NAME(kq_tile)(1, A16, nsb, w, x, y, NC);
}
K_TILES(q2k_tile, uint8_t)
K_TILES(q3k_tile, uint8_t)
K_TILES(q4k_tile, uint8_t)
K_TILES(q5k_tile, uint8_t)
K_TILES(q6k_tile, block_q6_Kx8)
#undef K_TILES

TILE void NAME(tiles)(const int WT, const int A16, int nb, const uint8_t *w, const char *x, size_t x_stride, int cols,
                      float *y, int ldy) {
    const char *xs[MAX_COLS];
    float *ys[MAX_COLS];
    const int width = WT == CK_TYPE_Q4_0 || WT == CK_TYPE_Q4_1 || WT == CK_TYPE_Q8_0 ? NARROW_COLS : MAX_COLS;
    int c = 0;
    for (; c + width <= cols; c += width) {
        for (int j = 0; j < width; j++) { xs[j] = x + (size_t)(c + j) * x_stride; ys[j] = y + (size_t)(c + j) * ldy; }
        NAME(tile)(WT, A16, nb, w, xs, ys, width);
    }
    for (; c < cols; c++) {
        xs[0] = x + (size_t)c * x_stride;
        ys[0] = y + (size_t)c * ldy;
        NAME(tile)(WT, A16, nb, w, xs, ys, 1);
    }
}

// One 8-row group against `cols` activation rows: y[c * ldy + 0..7] for c < cols.
TARGET static void NAME(group)(int pt, int vt, int nb, const void *w, const char *x, size_t x_stride, int cols,
                               float *y, int ldy) {
    const int a16 = vt == CK_TYPE_A16;
    // The precision as a constant, so that each tile is compiled for it.
#define PLAIN(WT) do { if (a16) NAME(tiles)(WT, 1, nb, w, x, x_stride, cols, y, ldy); \
                       else NAME(tiles)(WT, 0, nb, w, x, x_stride, cols, y, ldy); } while (0)
#define KQUANT(F) do { if (a16) NAME(F)(1, nb, w, x, x_stride, cols, y, ldy); \
                       else NAME(F)(0, nb, w, x, x_stride, cols, y, ldy); } while (0)
    switch (pt) {
    case CK_TYPE_Q4_1_X8: PLAIN(CK_TYPE_Q4_1); break;
    case CK_TYPE_Q4_0_X8: PLAIN(CK_TYPE_Q4_0); break;
    case CK_TYPE_Q8_0_X8: PLAIN(CK_TYPE_Q8_0); break;
    case CK_TYPE_Q5_0_X8: PLAIN(CK_TYPE_Q5_0); break;
    case CK_TYPE_Q5_1_X8: PLAIN(CK_TYPE_Q5_1); break;
    case CK_TYPE_IQ4_NL_X8: PLAIN(CK_TYPE_IQ4_NL); break;
    case CK_TYPE_Q2_K_X8: KQUANT(q2k_tiles); break;
    case CK_TYPE_Q3_K_X8: KQUANT(q3k_tiles); break;
    case CK_TYPE_Q4_K_X8: KQUANT(q4k_tiles); break;
    case CK_TYPE_Q5_K_X8: KQUANT(q5k_tiles); break;
    case CK_TYPE_Q6_K_X8: KQUANT(q6k_tiles); break;
    default: break;
    }
#undef PLAIN
#undef KQUANT
}
#undef TILE
#undef EACH_COL
