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

static _Atomic int activation_bits = 16;
void ck_set_activation_bits(int bits) { atomic_store(&activation_bits, bits == 8 ? 8 : 16); }

int ck_vec_dot_type(int wt) {
    switch (ck_base_type(wt)) {
    case CK_TYPE_Q4_0: case CK_TYPE_Q4_1: case CK_TYPE_Q5_0: case CK_TYPE_Q5_1: case CK_TYPE_Q8_0: case CK_TYPE_IQ4_NL:
    case CK_TYPE_Q2_K: case CK_TYPE_Q3_K: case CK_TYPE_Q4_K: case CK_TYPE_Q5_K: case CK_TYPE_Q6_K:
        return atomic_load_explicit(&activation_bits, memory_order_relaxed) == 8 ? CK_TYPE_A8 : CK_TYPE_A16;
    case CK_TYPE_F16: return CK_TYPE_F16;
    default: return CK_TYPE_F32;
    }
}

// Weight quantizer (round half to even, scale amax/127), for tests and tools.
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

// Activations: q = round-half-even(x * (max / amax)), d = amax / max, with max CK_A8_MAX or CK_A16_MAX
// (then split as q = 256 * hi + lo). The SIMD quantizers compute the same numbers.
static void quantize_activations_scalar(const float *x, void *vy, int n, int a16) {
    const float qmax = a16 ? (float)CK_A16_MAX : (float)CK_A8_MAX;
    for (int i = 0; i < n / QK; i++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[i * QK + j]));
        const float d = amax / qmax, id = amax != 0 ? qmax / amax : 0.f;
        int sum = 0, sum_lo = 0;
        block_a8 *b8 = (block_a8 *)vy + i;
        block_a16 *b16 = (block_a16 *)vy + i;
        for (int j = 0; j < QK; j++) {
            const int q = (int)nearbyintf(x[i * QK + j] * id);
            if (a16) {
                const int h = (q + 128) >> 8;
                b16->hi[j] = (int8_t)h;
                b16->lo[j] = (int8_t)(q - h * 256);
            } else {
                b8->q[j] = (int8_t)q;
            }
            sum += q;
            if (j == QK / 2 - 1) sum_lo = sum;
        }
        if (a16) { b16->d = d; b16->s = d * (float)sum; b16->sum = sum; b16->sum_lo = sum_lo; }
        else { b8->d = d; b8->s = d * (float)sum; b8->sum = sum; b8->sum_lo = sum_lo; }
    }
}

void ck_quantize_row_portable(int t, const float *x, void *y, int n) {
    if (t == CK_TYPE_A8 || t == CK_TYPE_A16) quantize_activations_scalar(x, y, n, t == CK_TYPE_A16);
    else ck_quantize_row(t, x, y, n);
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
    case CK_TYPE_Q8_0: quantize_q8_0_scalar(x, y, n); return;
    case CK_TYPE_A8:
#ifdef CK_X86
        if (ck_has_avx2()) { ck_quantize_a8_avx2(x, y, n); return; }
#endif
        quantize_activations_scalar(x, y, n, 0); return;
    case CK_TYPE_A16:
#ifdef CK_X86
        if (ck_has_avx2()) { ck_quantize_a16_avx2(x, y, n); return; }
#endif
        quantize_activations_scalar(x, y, n, 1); return;
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

// ---- scalar dot products ----
// The quants of activation block i as ints.
static inline void activation_quants(int vt, const void *x, int i, int32_t *q, float *d, float *s) {
    if (vt == CK_TYPE_A8) {
        const block_a8 *b = (const block_a8 *)x + i;
        for (int j = 0; j < QK; j++) q[j] = b->q[j];
        *d = b->d; *s = b->s;
    } else {
        const block_a16 *b = (const block_a16 *)x + i;
        for (int j = 0; j < QK; j++) q[j] = 256 * b->hi[j] + b->lo[j];
        *d = b->d; *s = b->s;
    }
}

// The scale and min of Q4_K sub-block j from its 12 scale bytes q (as gguf-py and ggml unpack them).
void ck_q4_k_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Q4_K (144 bytes per 256: d, dmin, 12 scale bytes, 128 bytes of nibbles) or Q5_K (176: the same
// with 32 bytes of fifth bits before the nibbles) by sub-blocks of 32.
static float dot_q4_k(int vt, int n, const uint8_t *w, const void *x, int five) {
    float acc = 0, m = 0;
    for (int i = 0; i < n / QK_K; i++, w += five ? 176 : 144) {
        const float d = fp16_to_fp32((uint16_t)(w[0] | w[1] << 8)), dmin = fp16_to_fp32((uint16_t)(w[2] | w[3] << 8));
        for (int j = 0; j < 8; j++) {
            int32_t q[QK];
            float dx, sx;
            activation_quants(vt, x, i * 8 + j, q, &dx, &sx);
            int sc, mn;
            ck_q4_k_scale_min(j, w + 4, &sc, &mn);
            int32_t isum = 0;
            for (int t = 0; t < QK; t++) {
                int u = (w[(five ? 48 : 16) + (j / 2) * 32 + t] >> (4 * (j % 2))) & 0x0F;
                if (five) u |= ((w[16 + t] >> j) & 1) << 4;
                isum += u * q[t];
            }
            const float dl = d * (float)sc, ml = dmin * (float)mn;
            const float scale = dl * dx;
            acc = __builtin_fmaf(scale, (float)isum, acc);
            m = __builtin_fmaf(ml, sx, m);
        }
    }
    return acc - m;
}

// Q6_K (210 bytes per 256: 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales, d) by
// 32-element blocks, each two halves of 16 with their own scale.
static float dot_q6_k(int vt, int n, const uint8_t *w, const void *x) {
    float acc = 0;
    for (int i = 0; i < n / QK_K; i++, w += 210) {
        const float d = fp16_to_fp32((uint16_t)(w[208] | w[209] << 8));
        for (int j = 0; j < 8; j++) {
            int32_t q[QK];
            float dx, sx;
            activation_quants(vt, x, i * 8 + j, q, &dx, &sx);
            for (int half = 0; half < 2; half++) {
                int32_t isum = 0;
                for (int t = 16 * half; t < 16 * half + 16; t++) {
                    const int e = 32 * j + t, h = e / 128, r = e % 128;
                    const int lo = (w[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
                    const int hi = (w[128 + h * 32 + r % 32] >> (2 * (r / 32))) & 3;
                    isum += ((lo | hi << 4) - 32) * q[t];
                }
                const float dl = d * (float)(int8_t)w[192 + 2 * j + half];
                const float scale = dl * dx;
                acc = __builtin_fmaf(scale, (float)isum, acc);
            }
        }
    }
    return acc;
}

// Q3_K (110 bytes per 256: 32 bytes of high bits, 64 of 2-bit quants, 12 of scales, d) and Q2_K (84:
// 16 scale/min bytes, 64 of 2-bit quants, d, dmin) by 32-element blocks, each two halves of 16 with
// their own scale: Q3_K's quants are 0..7 stored for -4..3, Q2_K's minimum is dmin * m times the
// half's activation sum.
static float dot_q23_k(int vt, int n, const uint8_t *w, const void *x, int three) {
    float acc = 0, m = 0;
    for (int i = 0; i < n / QK_K; i++, w += three ? 110 : 84) {
        const uint8_t *qs = w + (three ? 32 : 16);
        const float d = fp16_to_fp32((uint16_t)(three ? w[108] | w[109] << 8 : w[80] | w[81] << 8));
        const float dmin = three ? 0 : fp16_to_fp32((uint16_t)(w[82] | w[83] << 8));
        for (int j = 0; j < 8; j++) {
            int32_t q[QK];
            float dx, sx;
            activation_quants(vt, x, i * 8 + j, q, &dx, &sx);
            for (int half = 0; half < 2; half++) {
                const int s = 2 * j + half;
                int32_t isum = 0, hs = 0;
                for (int t = 16 * half; t < 16 * half + 16; t++) {
                    int u = (qs[(j / 4) * 32 + t] >> (2 * (j % 4))) & 3;
                    if (three) u = (u | ((w[t] >> j) & 1) << 2) - 4;
                    isum += u * q[t];
                    hs += q[t];
                }
                const int sc = three ? ck_q3_k_scale(w + 96, s) : w[s] & 0x0F;
                const float dl = d * (float)sc;
                const float scale = dl * dx;
                acc = __builtin_fmaf(scale, (float)isum, acc);
                if (!three) m = __builtin_fmaf(dmin * (float)(w[s] >> 4), dx * (float)hs, m);
            }
        }
    }
    return acc - m;
}

// The definition in ckernels.h, one block at a time.
static float dot_quantized(int wt, int vt, int n, const void *w, const void *x) {
    if (wt == CK_TYPE_Q2_K || wt == CK_TYPE_Q3_K) return dot_q23_k(vt, n, w, x, wt == CK_TYPE_Q3_K);
    if (wt == CK_TYPE_Q4_K || wt == CK_TYPE_Q5_K) return dot_q4_k(vt, n, w, x, wt == CK_TYPE_Q5_K);
    if (wt == CK_TYPE_Q6_K) return dot_q6_k(vt, n, w, x);
    float acc = 0, m = 0;
    for (int i = 0; i < n / QK; i++) {
        int32_t q[QK];
        float dx, sx;
        activation_quants(vt, x, i, q, &dx, &sx);
        int32_t isum = 0;
        float dw;
        switch (wt) {
        case CK_TYPE_Q4_0: {
            const block_q4_0 *b = (const block_q4_0 *)w + i;
            for (int j = 0; j < QK / 2; j++) isum += ((b->qs[j] & 0x0F) - 8) * q[j] + ((b->qs[j] >> 4) - 8) * q[j + QK / 2];
            dw = fp16_to_fp32(b->d);
            break;
        }
        case CK_TYPE_Q5_0: case CK_TYPE_Q5_1: {
            const int one = wt == CK_TYPE_Q5_1;
            const uint8_t *b = (const uint8_t *)w + (size_t)i * (one ? 24 : 22), *qs = b + (one ? 8 : 6);
            uint32_t qh;
            memcpy(&qh, b + (one ? 4 : 2), 4);
            for (int j = 0; j < QK; j++) {
                const int lo = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
                isum += ((lo | (int)((qh >> j) & 1) << 4) - (one ? 0 : 16)) * q[j];
            }
            dw = fp16_to_fp32((uint16_t)(b[0] | b[1] << 8));
            if (one) m = __builtin_fmaf(fp16_to_fp32((uint16_t)(b[2] | b[3] << 8)), sx, m);
            break;
        }
        case CK_TYPE_IQ4_NL: {
            const block_q4_0 *b = (const block_q4_0 *)w + i;
            for (int j = 0; j < QK / 2; j++)
                isum += ck_iq4nl_values[b->qs[j] & 0x0F] * q[j] + ck_iq4nl_values[b->qs[j] >> 4] * q[j + QK / 2];
            dw = fp16_to_fp32(b->d);
            break;
        }
        case CK_TYPE_Q4_1: {
            const block_q4_1 *b = (const block_q4_1 *)w + i;
            for (int j = 0; j < QK / 2; j++) isum += (b->qs[j] & 0x0F) * q[j] + (b->qs[j] >> 4) * q[j + QK / 2];
            dw = fp16_to_fp32(b->d);
            m = __builtin_fmaf(fp16_to_fp32(b->m), sx, m);
            break;
        }
        default: {
            const block_q8_0 *b = (const block_q8_0 *)w + i;
            for (int j = 0; j < QK; j++) isum += b->qs[j] * q[j];
            dw = fp16_to_fp32(b->d);
            break;
        }
        }
        const float scale = dw * dx;
        acc = __builtin_fmaf(scale, (float)isum, acc);
    }
    return wt == CK_TYPE_Q4_1 || wt == CK_TYPE_Q5_1 ? acc + m : acc;
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
float ck_dot_f16_f32_scalar(int n, const void *vw, const void *vx) {
    const uint16_t *w = vw; const float *x = vx;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(fp16_to_fp32(w[i]) * x[i]);
    return (float)s;
}
float ck_dot_bf16_f32_scalar(int n, const void *vw, const void *vx) {
    const uint16_t *w = vw; const float *x = vx;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(ck_bf16_to_fp32(w[i]) * x[i]);
    return (float)s;
}

float ck_vec_dot(int wt, int vt, int n, const void *w, const void *x) {
    switch (wt) {
    case CK_TYPE_Q4_0: case CK_TYPE_Q4_1: case CK_TYPE_Q5_0: case CK_TYPE_Q5_1: case CK_TYPE_Q8_0: case CK_TYPE_IQ4_NL:
    case CK_TYPE_Q2_K: case CK_TYPE_Q3_K: case CK_TYPE_Q4_K: case CK_TYPE_Q5_K: case CK_TYPE_Q6_K:
        return vt == CK_TYPE_A8 || vt == CK_TYPE_A16 ? dot_quantized(wt, vt, n, w, x) : NAN;
    default: break;
    }
#ifdef CK_X86
    if (ck_has_avx2()) {
        switch (wt) {
        case CK_TYPE_F16: return vt == CK_TYPE_F32 ? ck_dot_float_f32_avx2(1, n, w, x) : ck_dot_f16_f16_avx2(n, w, x);
        case CK_TYPE_F32: return ck_dot_float_f32_avx2(0, n, w, x);
        default: break;
        }
    }
#endif
    switch (wt) {
    case CK_TYPE_F16: return vt == CK_TYPE_F32 ? ck_dot_f16_f32_scalar(n, w, x) : ck_dot_f16_f16_scalar(n, w, x);
    case CK_TYPE_BF16: return ck_dot_bf16_f32_scalar(n, w, x);
    default: return ck_dot_f32_f32_scalar(n, w, x);
    }
}
