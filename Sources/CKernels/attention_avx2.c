#include "internal.h"
#ifdef CK_X86
#include "avx2_math.h"

// Vectorised twin of the generic attention in attention.c: the same operations in the same order per
// output element (checked bit for bit by the kernel tests), using 8-wide AVX2 registers.

// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
AVX2 static inline float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// The K row PF_AHEAD positions on and this position's V row, fetched while the scores are computed:
// the pool's blocks are scattered and the V pass below visits positions out of order.
#define PF_AHEAD 24
static inline void prefetch_row(const uint16_t *row, int hd) {
    for (int o = 0; o < hd * 2; o += 64) _mm_prefetch((const char *)row + o, _MM_HINT_T0);
}
#define PREFETCH_HEAD_ROW(layer, j) prefetch_row(ck_kv_row((layer), sq->blocks, bsl, (j), kv_stride) + (size_t)kvh * hd, hd)
#define PREFETCH_KV(j)                                                                                  \
    do {                                                                                                \
        if ((j) + PF_AHEAD < n) PREFETCH_HEAD_ROW(c->k, lo + (j) + PF_AHEAD);                           \
        PREFETCH_HEAD_ROW(c->v, lo + (j));                                                              \
    } while (0)

AVX2 static inline __m256 load_h(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

// End of the run of positions from p that share p's block, capped at n_kv.
static inline int block_run_end(int p, int bsl, int n_kv) {
    const int e = ((p >> bsl) + 1) << bsl;
    return e < n_kv ? e : n_kv;
}

// for each key j = 0 ..< n (position lo + j): `row` points at its K (or V) row for this head, a block at a time.
#define KV_ROWS(layer, j, row)                                                                          \
    for (int j = 0; j < n;)                                                                             \
        for (const uint16_t *row = ck_kv_row((layer), sq->blocks, bsl, lo + j, kv_stride) + (size_t)kvh * hd, \
                            *end_ = row + (size_t)(block_run_end(lo + j, bsl, n_kv) - (lo + j)) * kv_stride; \
             row < end_; row += kv_stride, j++)

AVX2 void ck_attn_unit_avx2(const attn_ctx *c, float *scores, const ck_attn_seq *sq, int i, int h) {
    const int hd = c->head_dim, kvh = h / (c->n_head / c->n_head_kv);
    const int hd8 = hd & ~7;
    const size_t kv_stride = (size_t)c->n_head_kv * hd;
    const int n_kv = sq->pos0 + i + 1, lo = ck_attn_first(c, n_kv), n = n_kv - lo;
    const int bsl = c->bs_log2;
    const float *q = c->q + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;

    // scores = (K q) * scale
    for (int j = 0; j < PF_AHEAD && j < n; j++) PREFETCH_HEAD_ROW(c->k, lo + j);
    float max = -INFINITY;
    KV_ROWS(c->k, j, kj) {
        PREFETCH_KV(j);
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < hd8; d += 8) a = _mm256_fmadd_ps(load_h(kj + d), _mm256_loadu_ps(q + d), a);
        float s = hsum8(a);
        for (int d = hd8; d < hd; d++) s = __builtin_fmaf(fp16_to_fp32(kj[d]), q[d], s);
        s *= c->scale;
        scores[j] = s;
        if (s > max) max = s;
    }

    // e_j = exp(s_j - max) in chunks of 8 (lanes past n count as 0)
    double sum = 0;
    const __m256 vmax = _mm256_set1_ps(max);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int j0 = 0; j0 < n; j0 += 8) {
        __m256 val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(scores + j0), vmax));
        if (j0 + 8 > n) {
            const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - j0), lane);
            val = _mm256_and_ps(val, _mm256_castsi256_ps(live));
        }
        _mm256_storeu_ps(scores + j0, val);
        sum += (double)hsum8(val);
    }
    const float inv = (float)(1.0 / sum);

    // out = (sum_j e_j v_j) * inv, positions in order, 64 dimensions at a time in registers.
    float *o = c->out + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;
    const __m256 vinv = _mm256_set1_ps(inv);
    int d0 = 0;
    for (; d0 + 64 <= hd8; d0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        KV_ROWS(c->v, j, vrow) {
            const uint16_t *vj = vrow + d0;
            const __m256 pj = _mm256_set1_ps(scores[j]);
            a0 = _mm256_fmadd_ps(load_h(vj), pj, a0);
            a1 = _mm256_fmadd_ps(load_h(vj + 8), pj, a1);
            a2 = _mm256_fmadd_ps(load_h(vj + 16), pj, a2);
            a3 = _mm256_fmadd_ps(load_h(vj + 24), pj, a3);
            a4 = _mm256_fmadd_ps(load_h(vj + 32), pj, a4);
            a5 = _mm256_fmadd_ps(load_h(vj + 40), pj, a5);
            a6 = _mm256_fmadd_ps(load_h(vj + 48), pj, a6);
            a7 = _mm256_fmadd_ps(load_h(vj + 56), pj, a7);
        }
        _mm256_storeu_ps(o + d0, _mm256_mul_ps(a0, vinv)); _mm256_storeu_ps(o + d0 + 8, _mm256_mul_ps(a1, vinv));
        _mm256_storeu_ps(o + d0 + 16, _mm256_mul_ps(a2, vinv)); _mm256_storeu_ps(o + d0 + 24, _mm256_mul_ps(a3, vinv));
        _mm256_storeu_ps(o + d0 + 32, _mm256_mul_ps(a4, vinv)); _mm256_storeu_ps(o + d0 + 40, _mm256_mul_ps(a5, vinv));
        _mm256_storeu_ps(o + d0 + 48, _mm256_mul_ps(a6, vinv)); _mm256_storeu_ps(o + d0 + 56, _mm256_mul_ps(a7, vinv));
    }
    if (d0 < hd) {
        float acc[CK_MAX_HEAD_DIM] __attribute__((aligned(32)));
        memset(acc + d0, 0, sizeof(float) * (size_t)(hd - d0));
        KV_ROWS(c->v, j, vrow) {
            const __m256 pj = _mm256_set1_ps(scores[j]);
            int d = d0;
            for (; d < hd8; d += 8)
                _mm256_store_ps(acc + d, _mm256_fmadd_ps(load_h(vrow + d), pj, _mm256_load_ps(acc + d)));
            for (; d < hd; d++) acc[d] = __builtin_fmaf(fp16_to_fp32(vrow[d]), scores[j], acc[d]);
        }
        for (int d = d0; d < hd; d++) o[d] = acc[d] * inv;
    }
}
#endif
