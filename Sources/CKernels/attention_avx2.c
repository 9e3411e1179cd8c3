#include "internal.h"
#include "ggml_exact.h"
#ifdef CK_X86
#include <immintrin.h>

// Vectorised twin of the generic attention in ops.c: the same operations in the same order per
// output element (checked bit for bit by the kernel tests), using 8-wide AVX2 registers.
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline __m256 v_expf(__m256 x) {
    const __m256 r = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
    const __m256 n = _mm256_sub_ps(z, r);
    const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.f), n);
    const __m256 c = _mm256_cmp_ps(absn, _mm256_set1_ps(126), _CMP_GT_OQ);
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                        _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
    const __m256 normal = _mm256_fmadd_ps(k, j, k);
    if (!_mm256_movemask_ps(c)) return normal;
    const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                       _mm256_set1_epi32((int)0x82000000u));
    const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    const __m256 d = _mm256_cmp_ps(absn, _mm256_set1_ps(192), _CMP_GT_OQ);
    return _mm256_or_ps(_mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
                        _mm256_andnot_ps(d, _mm256_or_ps(_mm256_and_ps(c, _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                                         _mm256_andnot_ps(c, normal))));
}

// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7))
AVX2 static inline float hsum8(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// 4x8 lanes reduced as the reference's f16 vector dot does.
AVX2 static inline float hsum32(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 x = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

AVX2 static inline __m256 load_h(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
AVX2 static inline __m256 round_h(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT)); }

AVX2 void ck_attn_task_avx2(void *p, int ith, int nth) {
    const attn_ctx *c = p;
    float *scores = c->scratch + (size_t)ith * c->scratch_per_thread;
    const int hd = c->head_dim, group = c->n_head / c->n_head_kv;
    const int hd8 = hd & ~7;
    const size_t kv_stride = (size_t)c->n_head_kv * hd;
    const int gemm = c->n_q > 1;
    float qf[256] __attribute__((aligned(32)));
    float acc[32 * 256] __attribute__((aligned(32)));
    const int units = c->n_q * c->n_head;
    for (int u = ith; u < units; u += nth) {
        const int qi = u / c->n_head, h = u % c->n_head, kvh = h / group;
        const int n_kv = c->q_pos0 + qi + 1;
        const float *q = c->q + ((size_t)qi * c->n_head + h) * hd;
        for (int d = 0; d < hd8; d += 8) _mm256_store_ps(qf + d, round_h(_mm256_loadu_ps(q + d)));
        for (int d = hd8; d < hd; d++) qf[d] = fp16_to_fp32(fp32_to_fp16(q[d]));

        // scores = (K q) * scale
        float max = -INFINITY;
        const uint16_t *kbase = c->k + (size_t)kvh * hd;
        if (gemm && hd % 8 == 0) {
            for (int j = 0; j < n_kv; j++) {
                const uint16_t *kj = kbase + (size_t)j * kv_stride;
                __m256 a = _mm256_setzero_ps();
                for (int d = 0; d < hd; d += 8) a = _mm256_fmadd_ps(load_h(kj + d), _mm256_load_ps(qf + d), a);
                const float s = hsum8(a) * c->scale;
                scores[j] = s;
                if (s > max) max = s;
            }
        } else {
            const int np = hd & ~31;
            for (int j = 0; j < n_kv; j++) {
                const uint16_t *kj = kbase + (size_t)j * kv_stride;
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                for (int d = 0; d < np; d += 32) {
                    a0 = _mm256_fmadd_ps(load_h(kj + d), _mm256_load_ps(qf + d), a0);
                    a1 = _mm256_fmadd_ps(load_h(kj + d + 8), _mm256_load_ps(qf + d + 8), a1);
                    a2 = _mm256_fmadd_ps(load_h(kj + d + 16), _mm256_load_ps(qf + d + 16), a2);
                    a3 = _mm256_fmadd_ps(load_h(kj + d + 24), _mm256_load_ps(qf + d + 24), a3);
                }
                double sd = hsum32(a0, a1, a2, a3);
                for (int d = np; d < hd; d++) sd += (double)(fp16_to_fp32(kj[d]) * qf[d]);
                const float s = (float)sd * c->scale;
                scores[j] = s;
                if (s > max) max = s;
            }
        }

        // softmax in chunks of 8 (lanes past n_kv count as 0)
        double sum = 0;
        const __m256 vmax = _mm256_set1_ps(max);
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (int j0 = 0; j0 < n_kv; j0 += 8) {
            __m256 val = v_expf(_mm256_sub_ps(_mm256_loadu_ps(scores + j0), vmax));
            if (j0 + 8 > n_kv) {
                const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(n_kv - j0), lane);
                val = _mm256_and_ps(val, _mm256_castsi256_ps(live));
            }
            _mm256_storeu_ps(scores + j0, val);
            sum += (double)hsum8(val);
        }
        const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
        for (int j0 = 0; j0 < n_kv; j0 += 8) _mm256_storeu_ps(scores + j0, round_h(_mm256_mul_ps(_mm256_loadu_ps(scores + j0), inv)));

        // out = sum_j p_j v_j, lane j mod (8 | 32), vectorised over the head dimension
        const int lanes = gemm ? 8 : 32;
        memset(acc, 0, sizeof(float) * (size_t)lanes * hd);
        const uint16_t *vbase = c->v + (size_t)kvh * hd;
        for (int j = 0; j < n_kv; j++) {
            const uint16_t *vj = vbase + (size_t)j * kv_stride;
            float *a = acc + (size_t)(j & (lanes - 1)) * hd;
            const __m256 pj = _mm256_set1_ps(scores[j]);
            int d = 0;
            for (; d < hd8; d += 8) _mm256_storeu_ps(a + d, _mm256_fmadd_ps(load_h(vj + d), pj, _mm256_loadu_ps(a + d)));
            for (; d < hd; d++) a[d] = __builtin_fmaf(fp16_to_fp32(vj[d]), scores[j], a[d]);
        }
        float *o = c->out + ((size_t)qi * c->n_head + h) * hd;
        if (gemm) {
            float *A[8];
            for (int l = 0; l < 8; l++) A[l] = acc + (size_t)l * hd;
            int d = 0;
            for (; d < hd8; d += 8) {
                const __m256 t0 = _mm256_add_ps(_mm256_loadu_ps(A[0] + d), _mm256_loadu_ps(A[4] + d));
                const __m256 t1 = _mm256_add_ps(_mm256_loadu_ps(A[1] + d), _mm256_loadu_ps(A[5] + d));
                const __m256 t2 = _mm256_add_ps(_mm256_loadu_ps(A[2] + d), _mm256_loadu_ps(A[6] + d));
                const __m256 t3 = _mm256_add_ps(_mm256_loadu_ps(A[3] + d), _mm256_loadu_ps(A[7] + d));
                _mm256_storeu_ps(o + d, _mm256_add_ps(_mm256_add_ps(t0, t2), _mm256_add_ps(t1, t3)));
            }
            for (; d < hd; d++) {
                const float t0 = A[0][d] + A[4][d], t1 = A[1][d] + A[5][d], t2 = A[2][d] + A[6][d], t3 = A[3][d] + A[7][d];
                o[d] = (t0 + t2) + (t1 + t3);
            }
        } else {
            for (int d = 0; d < hd; d++) {
                float l32[32];
                for (int l = 0; l < 32; l++) l32[l] = acc[(size_t)l * hd + d];
                o[d] = ck_hsum32_dot(l32);
            }
        }
    }
}
#endif
