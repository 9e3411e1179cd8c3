// Matrix products of F16 or F32 weights with f32 activations, for prompt-sized batches (encoders): tiles
// of 4 weight rows by 3 activation columns, each weight chunk read once per tile and each activation chunk
// once per 4 rows. Every (row, column) is its own 8-lane accumulator over k in order, reduced the same way,
// so a result does not depend on the tile it fell in, the batch, or the thread.
#include "internal.h"
#ifdef CK_X86
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))

TARGET static inline __m256 load_w(const void *w, int f16, int i) {
    return f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)))
               : _mm256_loadu_ps((const float *)w + i);
}

TARGET static inline float wval(const void *w, int f16, int i) {
    return f16 ? fp16_to_fp32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), then the k % 8 tail in order.
TARGET static inline float finish(__m256 acc, const void *w, int f16, const float *x, int k) {
    float l[8];
    _mm256_storeu_ps(l, acc);
    float s = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
    for (int i = k & ~7; i < k; i++) s = __builtin_fmaf(wval(w, f16, i), x[i], s);
    return s;
}

TARGET float ck_dot_float_f32_avx2(int f16, int k, const void *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i + 8 <= k; i += 8) acc = _mm256_fmadd_ps(load_w(w, f16, i), _mm256_loadu_ps(x + i), acc);
    return finish(acc, w, f16, x, k);
}

// 4 rows x 3 columns.
TARGET static void tile_4x3(int f16, int k, const char *w, size_t ws, const char *x, size_t xs, float *y, int ldy) {
    const void *w0 = w, *w1 = w + ws, *w2 = w + 2 * ws, *w3 = w + 3 * ws;
    const float *x0 = (const float *)x, *x1 = (const float *)(x + xs), *x2 = (const float *)(x + 2 * xs);
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    for (int i = 0; i + 8 <= k; i += 8) {
        const __m256 c0 = _mm256_loadu_ps(x0 + i), c1 = _mm256_loadu_ps(x1 + i), c2 = _mm256_loadu_ps(x2 + i);
        __m256 r = load_w(w0, f16, i);
        a00 = _mm256_fmadd_ps(r, c0, a00); a01 = _mm256_fmadd_ps(r, c1, a01); a02 = _mm256_fmadd_ps(r, c2, a02);
        r = load_w(w1, f16, i);
        a10 = _mm256_fmadd_ps(r, c0, a10); a11 = _mm256_fmadd_ps(r, c1, a11); a12 = _mm256_fmadd_ps(r, c2, a12);
        r = load_w(w2, f16, i);
        a20 = _mm256_fmadd_ps(r, c0, a20); a21 = _mm256_fmadd_ps(r, c1, a21); a22 = _mm256_fmadd_ps(r, c2, a22);
        r = load_w(w3, f16, i);
        a30 = _mm256_fmadd_ps(r, c0, a30); a31 = _mm256_fmadd_ps(r, c1, a31); a32 = _mm256_fmadd_ps(r, c2, a32);
    }
    float *y0 = y, *y1 = y + ldy, *y2 = y + 2 * ldy;
    y0[0] = finish(a00, w0, f16, x0, k); y1[0] = finish(a01, w0, f16, x1, k); y2[0] = finish(a02, w0, f16, x2, k);
    y0[1] = finish(a10, w1, f16, x0, k); y1[1] = finish(a11, w1, f16, x1, k); y2[1] = finish(a12, w1, f16, x2, k);
    y0[2] = finish(a20, w2, f16, x0, k); y1[2] = finish(a21, w2, f16, x1, k); y2[2] = finish(a22, w2, f16, x2, k);
    y0[3] = finish(a30, w3, f16, x0, k); y1[3] = finish(a31, w3, f16, x1, k); y2[3] = finish(a32, w3, f16, x2, k);
}

// Per 3 columns (their activations stay in L1), every 4-row tile of the block; then the edges.
TARGET void ck_matmul_float_rows_avx2(int f16, int k, const char *w, size_t ws, int r0, int r1, const char *x, size_t xs,
                                      int cols, float *y, int ldy) {
    const int r4 = r0 + (r1 - r0) / 4 * 4;
    int c = 0;
    for (; c + 3 <= cols; c += 3)
        for (int r = r0; r < r4; r += 4)
            tile_4x3(f16, k, w + (size_t)r * ws, ws, x + (size_t)c * xs, xs, y + (size_t)c * ldy + r, ldy);
    for (; c < cols; c++)
        for (int r = r0; r < r4; r++)
            y[(size_t)c * ldy + r] = ck_dot_float_f32_avx2(f16, k, w + (size_t)r * ws, (const float *)(x + (size_t)c * xs));
    for (int r = r4; r < r1; r++)
        for (c = 0; c < cols; c++)
            y[(size_t)c * ldy + r] = ck_dot_float_f32_avx2(f16, k, w + (size_t)r * ws, (const float *)(x + (size_t)c * xs));
}
#endif
