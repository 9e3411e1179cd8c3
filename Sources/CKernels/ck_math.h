// Scalar math with results that do not depend on the CPU or its libm.
#ifndef CK_MATH_H
#define CK_MATH_H
#include "internal.h"

static inline float ck_bits_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t ck_f_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

// exp(x) by a range reduction and a degree-5 polynomial (max error ~1.5 ulp), in plain C with fmaf so
// that it gives the same number on every CPU; avx2_math.h has the same operations on 8 lanes.
static inline float ck_expf(float x) {
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

#endif
