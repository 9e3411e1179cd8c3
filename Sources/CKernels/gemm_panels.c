// F16 or F32 weights with f32 activations (encoders), as f32 panels of 16 rows: element (row p*16 + l, k) at
// p*16*K + k*16 + l, rows past the end zero. Every (row, column) result is one fused multiply-add chain over
// k in order from zero (a vector lane holds one row), so it is the same bits in any tile, batch, thread or
// instruction set: the 16x6 AVX2 tile, its narrower edges and the portable loop all compute exactly that.
#include "internal.h"
#ifdef CK_X86
#include <immintrin.h>
#endif

void ck_pack_panels(int wt, const void *w, size_t w_stride, int rows, int k, float *out) {
    const int panels = (rows + 15) / 16;
    for (int p = 0; p < panels; p++)
        for (int l = 0; l < 16; l++) {
            const int r = p * 16 + l;
            float *dst = out + (size_t)p * 16 * k + l;
            const char *src = (const char *)w + (size_t)r * w_stride;
            for (int i = 0; i < k; i++)
                dst[(size_t)i * 16] = r >= rows ? 0.0f
                    : wt == CK_TYPE_F16 ? fp16_to_fp32(((const uint16_t *)src)[i]) : ((const float *)src)[i];
        }
}

void ck_unpack_panel_row(const float *panels, int k, int row, float *out) {
    const float *p = panels + (size_t)(row / 16) * 16 * k + row % 16;
    for (int i = 0; i < k; i++) out[i] = p[(size_t)i * 16];
}

// Rows [r0, r0 + valid) of one panel for n columns; y[c * ldy + r].
static void panel_portable(int k, const float *p, const char *x, size_t xs, int n, float *y, int ldy, int r0, int valid) {
    for (int c = 0; c < n; c++) {
        const float *xc = (const float *)(x + (size_t)c * xs);
        float acc[16] = { 0 };
        for (int i = 0; i < k; i++)
            for (int l = 0; l < 16; l++) acc[l] = __builtin_fmaf(p[(size_t)i * 16 + l], xc[i], acc[l]);
        for (int l = 0; l < valid; l++) y[(size_t)c * ldy + r0 + l] = acc[l];
    }
}

#ifdef CK_X86
#define TARGET __attribute__((target("avx2,fma")))

TARGET static inline __attribute__((always_inline)) void panel_tile(
    const int n, int k, const float *p, const char *x, size_t xs, float *y, int ldy, int r0, int valid) {
    __m256 a[6][2];
    const float *xc[6];
    for (int j = 0; j < n; j++) {
        a[j][0] = a[j][1] = _mm256_setzero_ps();
        xc[j] = (const float *)(x + (size_t)j * xs);
    }
    for (int i = 0; i < k; i++) {
        const __m256 w0 = _mm256_loadu_ps(p + (size_t)i * 16), w1 = _mm256_loadu_ps(p + (size_t)i * 16 + 8);
        for (int j = 0; j < n; j++) {
            const __m256 b = _mm256_broadcast_ss(xc[j] + i);
            a[j][0] = _mm256_fmadd_ps(w0, b, a[j][0]);
            a[j][1] = _mm256_fmadd_ps(w1, b, a[j][1]);
        }
    }
    for (int j = 0; j < n; j++) {
        float *yc = y + (size_t)j * ldy + r0;
        if (valid == 16) {
            _mm256_storeu_ps(yc, a[j][0]);
            _mm256_storeu_ps(yc + 8, a[j][1]);
        } else {
            float t[16];
            _mm256_storeu_ps(t, a[j][0]);
            _mm256_storeu_ps(t + 8, a[j][1]);
            for (int l = 0; l < valid; l++) yc[l] = t[l];
        }
    }
}

// Up to PANELS_PER_PASS panels (in L2) against each block of 6 columns (in L1) in turn.
#define PANELS_PER_PASS 4

TARGET static void panels_avx2(int k, const float *w, int rows, int r0, int r1, const char *x, size_t xs, int cols,
                               float *y, int ldy) {
    for (int c = 0; c < cols; c += 6) {
        const int n = cols - c < 6 ? cols - c : 6;
        const char *xc = x + (size_t)c * xs;
        float *yc = y + (size_t)c * ldy;
        for (int r = r0; r < r1; r += 16) {
            const float *p = w + (size_t)(r / 16) * 16 * k;
            const int valid = rows - r < 16 ? rows - r : 16;
            switch (n) {
            case 6: panel_tile(6, k, p, xc, xs, yc, ldy, r, valid); break;
            case 5: panel_tile(5, k, p, xc, xs, yc, ldy, r, valid); break;
            case 4: panel_tile(4, k, p, xc, xs, yc, ldy, r, valid); break;
            case 3: panel_tile(3, k, p, xc, xs, yc, ldy, r, valid); break;
            case 2: panel_tile(2, k, p, xc, xs, yc, ldy, r, valid); break;
            default: panel_tile(1, k, p, xc, xs, yc, ldy, r, valid); break;
            }
        }
    }
}
#endif

void ck_matmul_panels_rows(int k, const float *w, int rows, int r0, int r1, const char *x, size_t xs, int cols,
                           float *y, int ldy) {
#ifdef CK_X86
    if (ck_has_avx2()) {
        for (int r = r0; r < r1; r += 16 * PANELS_PER_PASS)
            panels_avx2(k, w, rows, r, r + 16 * PANELS_PER_PASS < r1 ? r + 16 * PANELS_PER_PASS : r1, x, xs, cols, y, ldy);
        return;
    }
#endif
    for (int r = r0; r < r1; r += 16) {
        const int valid = rows - r < 16 ? rows - r : 16;
        panel_portable(k, w + (size_t)(r / 16) * 16 * k, x, xs, cols, y, ldy, r, valid);
    }
}

void ck_matmul_panels_portable(int k, const float *w, int rows, const void *x, size_t xs, int cols, float *y, int ldy) {
    for (int r = 0; r < rows; r += 16)
        panel_portable(k, w + (size_t)(r / 16) * 16 * k, x, xs, cols, y, ldy, r, rows - r < 16 ? rows - r : 16);
}
