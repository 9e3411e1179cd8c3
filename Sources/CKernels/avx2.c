#include "internal.h"
#ifdef CK_X86
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum_ps(__m256 v) {
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AVX2 float ck_dot_f16_f16_avx2(int n, const void *vw, const void *vx) {
    const uint16_t *w = vw, *x = vx;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        const __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        acc = _mm256_fmadd_ps(a, b, acc);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += fp16_to_fp32(w[i]) * fp16_to_fp32(x[i]);
    return s;
}

AVX2 float ck_dot_f32_f32_avx2(int n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc);
    float s = hsum_ps(acc);
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

AVX2 static inline float block_amax(const float *x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < QK; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    r = _mm_max_ps(r, _mm_movehl_ps(r, r));
    r = _mm_max_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

// Rounds 32 floats times id to nearest-even ints (as nearbyintf does) in q.
AVX2 static inline void round_block(const float *x, float id, __m256i q[4]) {
    const __m256 mul = _mm256_set1_ps(id);
    for (int j = 0; j < 4; j++) q[j] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), mul));
}

AVX2 static inline int32_t sum_lanes(const __m256i q[4]) {
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_hadd_epi32(h, h);
    h = _mm_hadd_epi32(h, h);
    return _mm_cvtsi128_si32(h);
}

// 32 ints in [-128, 127] as bytes, in order.
AVX2 static inline void store_bytes(const __m256i q[4], int8_t *out) {
    __m256i a = _mm256_packs_epi32(q[0], q[1]);
    __m256i b = _mm256_packs_epi32(q[2], q[3]);
    a = _mm256_packs_epi16(a, b);
    a = _mm256_permutevar8x32_epi32(a, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, a);
}

AVX2 void ck_quantize_a8_avx2(const float *x, void *vy, int n) {
    block_a8 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        const float amax = block_amax(x + i * QK);
        const float d = amax / (float)CK_A8_MAX, id = amax != 0 ? (float)CK_A8_MAX / amax : 0.f;
        __m256i q[4];
        round_block(x + i * QK, id, q);
        store_bytes(q, y[i].q);
        y[i].d = d;
        y[i].sum = sum_lanes(q);
        y[i].s = d * (float)y[i].sum;
        y[i].sum_lo = sum_lanes((const __m256i[4]){ q[0], q[1], _mm256_setzero_si256(), _mm256_setzero_si256() });
    }
}

AVX2 void ck_quantize_a16_avx2(const float *x, void *vy, int n) {
    block_a16 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        const float amax = block_amax(x + i * QK);
        const float d = amax / (float)CK_A16_MAX, id = amax != 0 ? (float)CK_A16_MAX / amax : 0.f;
        __m256i q[4], h[4], l[4];
        round_block(x + i * QK, id, q);
        for (int j = 0; j < 4; j++) {
            h[j] = _mm256_srai_epi32(_mm256_add_epi32(q[j], _mm256_set1_epi32(128)), 8);
            l[j] = _mm256_sub_epi32(q[j], _mm256_slli_epi32(h[j], 8));
        }
        store_bytes(h, y[i].hi);
        store_bytes(l, y[i].lo);
        y[i].d = d;
        y[i].sum = sum_lanes(q);
        y[i].s = d * (float)y[i].sum;
        y[i].sum_lo = sum_lanes((const __m256i[4]){ q[0], q[1], _mm256_setzero_si256(), _mm256_setzero_si256() });
    }
}
#endif
