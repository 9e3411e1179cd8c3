// Bit-exact emulation of the reference's (ggml, x86 AVX2 build) float evaluation order for the
// operations where rounding differences get amplified: exp in softmax and SiLU, and the lane
// layout of f16 dot products in attention. Plain C with fmaf, so results do not depend on the CPU.
#ifndef CK_GGML_EXACT_H
#define CK_GGML_EXACT_H
#include "internal.h"

static inline float ck_bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ck_f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// exp(x) by the 8-lane polynomial the reference uses (max error ~1.5 ulp).
static inline float ck_vexpf(float x) {
    const float r = 0x1.8p23f;
    const float z = __builtin_fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = __builtin_fmaf(-n, 0x1.7f7d1cp-20f, __builtin_fmaf(-n, 0x1.62e4p-1f, x));
    const uint32_t e = ck_f_bits(z) << 23;
    const float k = ck_bits_f(e + ck_f_bits(1.0f));
    const int c = fabsf(n) > 126;
    const float u = b * b;
    const float j = __builtin_fmaf(
        __builtin_fmaf(__builtin_fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, __builtin_fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, 0x1.ffffecp-1f * b);
    if (!c) return __builtin_fmaf(k, j, k);
    const uint32_t g = n <= 0 ? 0x82000000u : 0;
    const float s1 = ck_bits_f(g + 0x7f000000u);
    const float s2 = ck_bits_f(e - g);
    if (fabsf(n) > 192) return s1 * s1;
    return __builtin_fmaf(s2, j, s2) * s1;
}

// Sum of 8 lanes as the reference's softmax and tinyBLAS reduce them: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)).
static inline float ck_hsum8_a(const float *l) {
    const float t0 = l[0] + l[4], t1 = l[1] + l[5], t2 = l[2] + l[6], t3 = l[3] + l[7];
    return (t0 + t2) + (t1 + t3);
}

// Sum of 4x8 lanes as the reference's f16 vector dot reduces them.
static inline float ck_hsum32_dot(const float *acc) {
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = (acc[l] + acc[16 + l]) + (acc[8 + l] + acc[24 + l]);
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return (t0 + t1) + (t2 + t3);
}
#endif
