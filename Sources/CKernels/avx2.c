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

// 32 nibbles -> 32 bytes: low nibbles in the low lane (elements 0..15), high nibbles in the high lane.
AVX2 static inline __m256i unpack_nibbles(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

// Sum of products of unsigned bytes a and signed bytes b as 8 int32 lanes, converted to float.
AVX2 static inline __m256 mul_sum_us8(__m256i a, __m256i b) {
    const __m256i p = _mm256_maddubs_epi16(a, b);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

AVX2 static inline __m256 mul_sum_i8(__m256i a, __m256i b) {
    return mul_sum_us8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

AVX2 float ck_dot_q4_0_q8_0_avx2(int n, const void *vw, const void *vx) {
    const block_q4_0 *w = vw; const block_q8_0 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK; i++) {
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d));
        const __m256i q4 = _mm256_sub_epi8(unpack_nibbles(w[i].qs), _mm256_set1_epi8(8));
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(q4, q8), acc);
    }
    return hsum_ps(acc);
}

AVX2 float ck_dot_q4_1_q8_1_avx2(int n, const void *vw, const void *vx) {
    const block_q4_1 *w = vw; const block_q8_1 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int i = 0; i < n / QK; i++) {
        summs = __builtin_fmaf(fp16_to_fp32(w[i].m), fp16_to_fp32(x[i].s), summs);
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d));
        const __m256i q4 = unpack_nibbles(w[i].qs);
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(d, mul_sum_us8(q4, q8), acc);
    }
    return hsum_ps(acc) + summs;
}

AVX2 float ck_dot_q8_0_q8_0_avx2(int n, const void *vw, const void *vx) {
    const block_q8_0 *w = vw; const block_q8_0 *x = vx;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n / QK; i++) {
        const __m256 d = _mm256_set1_ps(fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d));
        const __m256i a = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i b = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(a, b), acc);
    }
    return hsum_ps(acc);
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

// Rounds 32 floats times id to nearest-even int8 in out; returns their sum.
AVX2 static inline int quantize_block(const float *x, float id, int8_t *out) {
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i[4];
    for (int j = 0; j < 4; j++)
        i[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), mul),
                                                  _MM_ROUND_NEAREST | _MM_FROUND_NO_EXC));
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h = _mm_hadd_epi32(h, h);
    h = _mm_hadd_epi32(h, h);
    __m256i a = _mm256_packs_epi32(i[0], i[1]);
    __m256i b = _mm256_packs_epi32(i[2], i[3]);
    a = _mm256_packs_epi16(a, b);
    a = _mm256_permutevar8x32_epi32(a, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, a);
    return _mm_cvtsi128_si32(h);
}

AVX2 void ck_quantize_q8_0_avx2(const float *x, void *vy, int n) {
    block_q8_0 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        const float amax = block_amax(x + i * QK);
        const float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = fp32_to_fp16(d);
        quantize_block(x + i * QK, id, y[i].qs);
    }
}

AVX2 void ck_quantize_q8_1_avx2(const float *x, void *vy, int n) {
    block_q8_1 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        const float amax = block_amax(x + i * QK);
        const float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = fp32_to_fp16(d);
        const int sum = quantize_block(x + i * QK, id, y[i].qs);
        y[i].s = fp32_to_fp16(d * (float)sum);
    }
}
#endif

#ifdef CK_X86
// Four weight rows against one activation row. Each output sees exactly the operations of the
// single-row kernels above (same per-block FMA chain), so results are identical; the four
// independent chains just hide FMA latency and share the activation loads.
// Prefetch distance in bytes ahead of the block being read in each of the four row streams.
#ifndef PF_AHEAD
#define PF_AHEAD 3072
#endif

AVX2 static inline __m256 lane_bcast(__m256 v, int lane) {
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(lane));
}

AVX2 void ck_dot4_q4_1_q8_1_avx2(int n, const void *const *vw, const void *vx, float *out) {
    const block_q8_1 *x = vx;
    const block_q4_1 *w0 = vw[0], *w1 = vw[1], *w2 = vw[2], *w3 = vw[3];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    // Odd lanes 1,3,5,7 accumulate m_r * s (one FMA per block, as in the single-row kernel).
    __m256 sm = _mm256_setzero_ps();
    int32_t dm[4];
    for (int i = 0; i < n / QK; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        _mm_prefetch((const char *)(w0 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w2 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w3 + i) + PF_AHEAD, _MM_HINT_T0);
        // (d, m) of the four rows as 8 halfs -> floats: d_r in lane 2r, m_r in lane 2r+1.
        memcpy(&dm[0], &w0[i], 4); memcpy(&dm[1], &w1[i], 4); memcpy(&dm[2], &w2[i], 4); memcpy(&dm[3], &w3[i], 4);
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm));
        const __m256 dd = _mm256_mul_ps(f, _mm256_set1_ps(fp16_to_fp32(x[i].d)));
        sm = _mm256_fmadd_ps(f, _mm256_set1_ps(fp16_to_fp32(x[i].s)), sm);
        a0 = _mm256_fmadd_ps(lane_bcast(dd, 0), mul_sum_us8(unpack_nibbles(w0[i].qs), q8), a0);
        a1 = _mm256_fmadd_ps(lane_bcast(dd, 2), mul_sum_us8(unpack_nibbles(w1[i].qs), q8), a1);
        a2 = _mm256_fmadd_ps(lane_bcast(dd, 4), mul_sum_us8(unpack_nibbles(w2[i].qs), q8), a2);
        a3 = _mm256_fmadd_ps(lane_bcast(dd, 6), mul_sum_us8(unpack_nibbles(w3[i].qs), q8), a3);
    }
    float s[8];
    _mm256_storeu_ps(s, sm);
    out[0] = hsum_ps(a0) + s[1];
    out[1] = hsum_ps(a1) + s[3];
    out[2] = hsum_ps(a2) + s[5];
    out[3] = hsum_ps(a3) + s[7];
}

AVX2 void ck_dot4_q8_0_q8_0_avx2(int n, const void *const *vw, const void *vx, float *out) {
    const block_q8_0 *x = vx;
    const block_q8_0 *w0 = vw[0], *w1 = vw[1], *w2 = vw[2], *w3 = vw[3];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int i = 0; i < n / QK; i++) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)x[i].qs);
        _mm_prefetch((const char *)(w0 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w1 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w2 + i) + PF_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)(w3 + i) + PF_AHEAD, _MM_HINT_T0);
        const __m128i d16 = _mm_setr_epi16((short)w0[i].d, (short)w1[i].d, (short)w2[i].d, (short)w3[i].d, 0, 0, 0, 0);
        const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(d16), _mm256_set1_ps(fp16_to_fp32(x[i].d)));
#define Q8ROW(a, w, l) a = _mm256_fmadd_ps(lane_bcast(dd, l), \
                       mul_sum_i8(_mm256_loadu_si256((const __m256i *)w[i].qs), b), a)
        Q8ROW(a0, w0, 0); Q8ROW(a1, w1, 1); Q8ROW(a2, w2, 2); Q8ROW(a3, w3, 3);
#undef Q8ROW
    }
    out[0] = hsum_ps(a0);
    out[1] = hsum_ps(a1);
    out[2] = hsum_ps(a2);
    out[3] = hsum_ps(a3);
}

AVX2 void ck_dot4_q4_0_q8_0_avx2(int n, const void *const *vw, const void *vx, float *out) {
    const block_q8_0 *x = vx;
    const block_q4_0 *w0 = vw[0], *w1 = vw[1], *w2 = vw[2], *w3 = vw[3];
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const __m256i eight = _mm256_set1_epi8(8);
    for (int i = 0; i < n / QK; i++) {
        const __m256i b = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const float dx = fp16_to_fp32(x[i].d);
#define Q4ROW(a, w) a = _mm256_fmadd_ps(_mm256_set1_ps(fp16_to_fp32(w[i].d) * dx), \
                       mul_sum_i8(_mm256_sub_epi8(unpack_nibbles(w[i].qs), eight), b), a)
        Q4ROW(a0, w0); Q4ROW(a1, w1); Q4ROW(a2, w2); Q4ROW(a3, w3);
#undef Q4ROW
    }
    out[0] = hsum_ps(a0);
    out[1] = hsum_ps(a1);
    out[2] = hsum_ps(a2);
    out[3] = hsum_ps(a3);
}
#endif

#ifdef CK_X86
// Four weight rows against two activation rows (prefill): the unpacked weights and their scales
// are shared by both columns; every output still follows the single-row chain exactly.
AVX2 void ck_dot4x2_q4_1_q8_1_avx2(int n, const void *const *vw, const void *vx0, const void *vx1, float *out0, float *out1) {
    const block_q8_1 *x0 = vx0, *x1 = vx1;
    const block_q4_1 *w0 = vw[0], *w1 = vw[1], *w2 = vw[2], *w3 = vw[3];
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m256 sm0 = a00, sm1 = a00;
    int32_t dm[4];
    for (int i = 0; i < n / QK; i++) {
        memcpy(&dm[0], &w0[i], 4); memcpy(&dm[1], &w1[i], 4); memcpy(&dm[2], &w2[i], 4); memcpy(&dm[3], &w3[i], 4);
        const __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm));
        const __m256 dd0 = _mm256_mul_ps(f, _mm256_set1_ps(fp16_to_fp32(x0[i].d)));
        const __m256 dd1 = _mm256_mul_ps(f, _mm256_set1_ps(fp16_to_fp32(x1[i].d)));
        sm0 = _mm256_fmadd_ps(f, _mm256_set1_ps(fp16_to_fp32(x0[i].s)), sm0);
        sm1 = _mm256_fmadd_ps(f, _mm256_set1_ps(fp16_to_fp32(x1[i].s)), sm1);
        const __m256i q0 = _mm256_loadu_si256((const __m256i *)x0[i].qs);
        const __m256i q1 = _mm256_loadu_si256((const __m256i *)x1[i].qs);
        __m256i u = unpack_nibbles(w0[i].qs);
        a00 = _mm256_fmadd_ps(lane_bcast(dd0, 0), mul_sum_us8(u, q0), a00);
        a10 = _mm256_fmadd_ps(lane_bcast(dd1, 0), mul_sum_us8(u, q1), a10);
        u = unpack_nibbles(w1[i].qs);
        a01 = _mm256_fmadd_ps(lane_bcast(dd0, 2), mul_sum_us8(u, q0), a01);
        a11 = _mm256_fmadd_ps(lane_bcast(dd1, 2), mul_sum_us8(u, q1), a11);
        u = unpack_nibbles(w2[i].qs);
        a02 = _mm256_fmadd_ps(lane_bcast(dd0, 4), mul_sum_us8(u, q0), a02);
        a12 = _mm256_fmadd_ps(lane_bcast(dd1, 4), mul_sum_us8(u, q1), a12);
        u = unpack_nibbles(w3[i].qs);
        a03 = _mm256_fmadd_ps(lane_bcast(dd0, 6), mul_sum_us8(u, q0), a03);
        a13 = _mm256_fmadd_ps(lane_bcast(dd1, 6), mul_sum_us8(u, q1), a13);
    }
    float s0[8], s1[8];
    _mm256_storeu_ps(s0, sm0);
    _mm256_storeu_ps(s1, sm1);
    out0[0] = hsum_ps(a00) + s0[1]; out0[1] = hsum_ps(a01) + s0[3]; out0[2] = hsum_ps(a02) + s0[5]; out0[3] = hsum_ps(a03) + s0[7];
    out1[0] = hsum_ps(a10) + s1[1]; out1[1] = hsum_ps(a11) + s1[3]; out1[2] = hsum_ps(a12) + s1[5]; out1[3] = hsum_ps(a13) + s1[7];
}
#endif
