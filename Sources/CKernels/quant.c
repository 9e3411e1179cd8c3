#include "internal.h"
#include <stdatomic.h>
#ifdef CK_X86
#include <immintrin.h>
#endif

float ck_fp16_to_fp32(uint16_t h) { return fp16_to_fp32(h); }
uint16_t ck_fp32_to_fp16(float f) { return fp32_to_fp16(f); }
float ck_bf16_to_fp32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
#ifdef CK_X86
__attribute__((target("avx2,f16c"))) static void fp32_to_fp16_row_f16c(const float *x, uint16_t *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}
#endif
void ck_fp32_to_fp16_row(const float *x, uint16_t *y, int n) {
#ifdef CK_X86
    if (ck_has_avx2()) { fp32_to_fp16_row_f16c(x, y, n); return; }
#endif
    for (int i = 0; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}
void ck_fp16_to_fp32_row(const uint16_t *x, float *y, int n) { for (int i = 0; i < n; i++) y[i] = fp16_to_fp32(x[i]); }

int ck_type_supported(int t) {
    switch (t) {
    case CK_TYPE_F32: case CK_TYPE_F16: case CK_TYPE_BF16: case CK_TYPE_Q4_0: case CK_TYPE_Q4_1:
    case CK_TYPE_Q8_0: case CK_TYPE_Q8_1: return 1;
    default: return 0;
    }
}

int ck_vec_dot_type(int wt) {
    switch (ck_base_type(wt)) {
    case CK_TYPE_Q4_0: return CK_TYPE_Q8_0;
    case CK_TYPE_Q4_1: return CK_TYPE_Q8_1;
    case CK_TYPE_Q8_0: return CK_TYPE_Q8_0;
    case CK_TYPE_F16: return CK_TYPE_F16;
    case CK_TYPE_BF16: return CK_TYPE_F32;
    default: return CK_TYPE_F32;
    }
}

size_t ck_row_bytes(int t, int n) {
    switch (ck_base_type(t)) {
    case CK_TYPE_F32: return (size_t)n * 4;
    case CK_TYPE_F16: case CK_TYPE_BF16: return (size_t)n * 2;
    case CK_TYPE_Q4_0: return (size_t)(n / QK) * sizeof(block_q4_0);
    case CK_TYPE_Q4_1: return (size_t)(n / QK) * sizeof(block_q4_1);
    case CK_TYPE_Q8_0: return (size_t)(n / QK) * sizeof(block_q8_0);
    case CK_TYPE_Q8_1: return (size_t)(n / QK) * sizeof(block_q8_1);
    default: return 0;
    }
}

// Reference quantizers (round half to even, scale 127/amax as the SIMD paths of the reference do).
static void quantize_q8_0_scalar(const float *x, void *vy, int n) {
    block_q8_0 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[i * QK + j]));
        const float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)nearbyintf(x[i * QK + j] * id);
    }
}

static void quantize_q8_1_scalar(const float *x, void *vy, int n) {
    block_q8_1 *y = vy;
    for (int i = 0; i < n / QK; i++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[i * QK + j]));
        const float d = amax / 127.f, id = amax != 0 ? 127.f / amax : 0.f;
        y[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            int q = (int)nearbyintf(x[i * QK + j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].s = fp32_to_fp16(d * (float)sum);
    }
}

int ck_cpu_avx2(void) {
#ifdef CK_X86
    static _Atomic int have_avx2 = -1;
    if (have_avx2 < 0) {
        __builtin_cpu_init();
        have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return have_avx2;
#else
    return 0;
#endif
}
int ck_has_avx2(void) { return ck_isa() >= CK_ISA_AVX2; }
int ck_has_avx512(void) {
#ifdef CK_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

void ck_quantize_row(int t, const float *x, void *y, int n) {
    switch (t) {
    case CK_TYPE_Q8_0:
#ifdef CK_X86
        if (ck_has_avx2()) { ck_quantize_q8_0_avx2(x, y, n); return; }
#endif
        quantize_q8_0_scalar(x, y, n); return;
    case CK_TYPE_Q8_1:
#ifdef CK_X86
        if (ck_has_avx2()) { ck_quantize_q8_1_avx2(x, y, n); return; }
#endif
        quantize_q8_1_scalar(x, y, n); return;
    case CK_TYPE_F16: ck_fp32_to_fp16_row(x, y, n); return;
    case CK_TYPE_F32: memcpy(y, x, (size_t)n * 4); return;
    case CK_TYPE_BF16: {
        uint16_t *o = y;
        for (int i = 0; i < n; i++) {
            uint32_t u; memcpy(&u, &x[i], 4);
            if ((u & 0x7fffffff) > 0x7f800000) { o[i] = (uint16_t)((u >> 16) | 64); continue; }
            o[i] = (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
        }
        return;
    }
    case CK_TYPE_Q4_0: {
        block_q4_0 *b = y;
        for (int i = 0; i < n / QK; i++) {
            float amax = 0, max = 0;
            for (int j = 0; j < QK; j++) { float v = x[i * QK + j]; if (fabsf(v) > amax) { amax = fabsf(v); max = v; } }
            const float d = max / -8, id = d ? 1.0f / d : 0.0f;
            b[i].d = fp32_to_fp16(d);
            for (int j = 0; j < QK / 2; j++) {
                int x0 = (int)(x[i * QK + j] * id + 8.5f), x1 = (int)(x[i * QK + QK / 2 + j] * id + 8.5f);
                x0 = x0 > 15 ? 15 : x0; x1 = x1 > 15 ? 15 : x1;
                b[i].qs[j] = (uint8_t)(x0 | (x1 << 4));
            }
        }
        return;
    }
    case CK_TYPE_Q4_1: {
        block_q4_1 *b = y;
        for (int i = 0; i < n / QK; i++) {
            float min = INFINITY, max = -INFINITY;
            for (int j = 0; j < QK; j++) { float v = x[i * QK + j]; min = fminf(min, v); max = fmaxf(max, v); }
            const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
            b[i].d = fp32_to_fp16(d);
            b[i].m = fp32_to_fp16(min);
            for (int j = 0; j < QK / 2; j++) {
                int x0 = (int)((x[i * QK + j] - min) * id + 0.5f), x1 = (int)((x[i * QK + QK / 2 + j] - min) * id + 0.5f);
                x0 = x0 > 15 ? 15 : x0; x1 = x1 > 15 ? 15 : x1;
                b[i].qs[j] = (uint8_t)(x0 | (x1 << 4));
            }
        }
        return;
    }
    default: return;
    }
}

void ck_dequantize_row(int t, const void *vx, float *y, int n) {
    switch (t) {
    case CK_TYPE_F32: memcpy(y, vx, (size_t)n * 4); return;
    case CK_TYPE_F16: ck_fp16_to_fp32_row(vx, y, n); return;
    case CK_TYPE_BF16: { const uint16_t *x = vx; for (int i = 0; i < n; i++) y[i] = ck_bf16_to_fp32(x[i]); return; }
    case CK_TYPE_Q4_0: {
        const block_q4_0 *x = vx;
        for (int i = 0; i < n / QK; i++) {
            const float d = fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK / 2; j++) {
                y[i * QK + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
                y[i * QK + j + QK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
            }
        }
        return;
    }
    case CK_TYPE_Q4_1: {
        const block_q4_1 *x = vx;
        for (int i = 0; i < n / QK; i++) {
            const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
            for (int j = 0; j < QK / 2; j++) {
                y[i * QK + j] = (x[i].qs[j] & 0x0F) * d + m;
                y[i * QK + j + QK / 2] = (x[i].qs[j] >> 4) * d + m;
            }
        }
        return;
    }
    case CK_TYPE_Q8_0: {
        const block_q8_0 *x = vx;
        for (int i = 0; i < n / QK; i++) {
            const float d = fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK; j++) y[i * QK + j] = x[i].qs[j] * d;
        }
        return;
    }
    case CK_TYPE_Q8_1: {
        const block_q8_1 *x = vx;
        for (int i = 0; i < n / QK; i++) {
            const float d = fp16_to_fp32(x[i].d);
            for (int j = 0; j < QK; j++) y[i * QK + j] = x[i].qs[j] * d;
        }
        return;
    }
    default: return;
    }
}

// ---- scalar dot products ----
float ck_dot_q4_0_q8_0_scalar(int n, const void *vw, const void *vx) {
    const block_q4_0 *w = vw; const block_q8_0 *x = vx;
    float s = 0;
    for (int i = 0; i < n / QK; i++) {
        int si = 0;
        for (int j = 0; j < QK / 2; j++)
            si += ((w[i].qs[j] & 0x0F) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + QK / 2];
        s += si * fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d);
    }
    return s;
}
float ck_dot_q4_1_q8_1_scalar(int n, const void *vw, const void *vx) {
    const block_q4_1 *w = vw; const block_q8_1 *x = vx;
    float s = 0;
    for (int i = 0; i < n / QK; i++) {
        int si = 0;
        for (int j = 0; j < QK / 2; j++)
            si += (w[i].qs[j] & 0x0F) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + QK / 2];
        s += (fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d)) * si + fp16_to_fp32(w[i].m) * fp16_to_fp32(x[i].s);
    }
    return s;
}
float ck_dot_q8_0_q8_0_scalar(int n, const void *vw, const void *vx) {
    const block_q8_0 *w = vw; const block_q8_0 *x = vx;
    float s = 0;
    for (int i = 0; i < n / QK; i++) {
        int si = 0;
        for (int j = 0; j < QK; j++) si += w[i].qs[j] * x[i].qs[j];
        s += si * (fp16_to_fp32(w[i].d) * fp16_to_fp32(x[i].d));
    }
    return s;
}
float ck_dot_f16_f16_scalar(int n, const void *vw, const void *vx) {
    const uint16_t *w = vw, *x = vx;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(fp16_to_fp32(w[i]) * fp16_to_fp32(x[i]));
    return (float)s;
}
float ck_dot_f32_f32_scalar(int n, const void *vw, const void *vx) {
    const float *w = vw, *x = vx;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(w[i] * x[i]);
    return (float)s;
}
float ck_dot_bf16_f32_scalar(int n, const void *vw, const void *vx) {
    const uint16_t *w = vw; const float *x = vx;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(ck_bf16_to_fp32(w[i]) * x[i]);
    return (float)s;
}

float ck_vec_dot(int wt, int n, const void *w, const void *x) {
#ifdef CK_X86
    if (ck_has_avx2()) {
        switch (wt) {
        case CK_TYPE_Q4_0: return ck_dot_q4_0_q8_0_avx2(n, w, x);
        case CK_TYPE_Q4_1: return ck_dot_q4_1_q8_1_avx2(n, w, x);
        case CK_TYPE_Q8_0: return ck_dot_q8_0_q8_0_avx2(n, w, x);
        case CK_TYPE_F16: return ck_dot_f16_f16_avx2(n, w, x);
        case CK_TYPE_F32: return ck_dot_f32_f32_avx2(n, w, x);
        default: break;
        }
    }
#endif
    switch (wt) {
    case CK_TYPE_Q4_0: return ck_dot_q4_0_q8_0_scalar(n, w, x);
    case CK_TYPE_Q4_1: return ck_dot_q4_1_q8_1_scalar(n, w, x);
    case CK_TYPE_Q8_0: return ck_dot_q8_0_q8_0_scalar(n, w, x);
    case CK_TYPE_F16: return ck_dot_f16_f16_scalar(n, w, x);
    case CK_TYPE_BF16: return ck_dot_bf16_f32_scalar(n, w, x);
    default: return ck_dot_f32_f32_scalar(n, w, x);
    }
}
