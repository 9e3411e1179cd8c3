// Weights repacked at load into groups of 8 interleaved rows: per block column, the 8 rows' scales
// side by side, then their quants. One sequential stream per group instead of 8, aligned loads of
// two rows at once, and the scales of 8 rows converted in one instruction. Same bytes per row.
#include "internal.h"
#include <stdlib.h>
#ifdef CK_X86
#include <immintrin.h>
#endif

#include <stdatomic.h>
static _Atomic int isa_limit = 99;
void ck_set_isa_limit(int level) { atomic_store(&isa_limit, level); }

int ck_isa(void) {
#ifdef CK_X86
    static _Atomic int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        level = !ck_cpu_avx2() ? CK_ISA_GENERIC
              : (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")
                 && __builtin_cpu_supports("avx512bw")) ? CK_ISA_AVX512VNNI : CK_ISA_AVX2;
    }
    const int limit = atomic_load_explicit(&isa_limit, memory_order_relaxed);
    return level < limit ? level : limit;
#else
    return CK_ISA_GENERIC;
#endif
}

// Every CPU packs (the scalar kernels read the same layout), so results never depend on the CPU.
int ck_packed_type(int wt) {
    switch (wt) {
    case CK_TYPE_Q4_0: return CK_TYPE_Q4_0_X8;
    case CK_TYPE_Q4_1: return CK_TYPE_Q4_1_X8;
    case CK_TYPE_Q8_0: return CK_TYPE_Q8_0_X8;
    case CK_TYPE_Q5_0: return CK_TYPE_Q5_0_X8;
    case CK_TYPE_Q5_1: return CK_TYPE_Q5_1_X8;
    case CK_TYPE_IQ4_NL: return CK_TYPE_IQ4_NL_X8;
    case CK_TYPE_Q2_K: return CK_TYPE_Q2_K_X8;
    case CK_TYPE_Q3_K: return CK_TYPE_Q3_K_X8;
    case CK_TYPE_Q4_K: return CK_TYPE_Q4_K_X8;
    case CK_TYPE_Q5_K: return CK_TYPE_Q5_K_X8;
    case CK_TYPE_Q6_K: return CK_TYPE_Q6_K_X8;
    default: return -1;
    }
}

int ck_base_type(int t) { return t >= CK_TYPE_PACKED && t < CK_TYPE_PACKED + 0x100 ? t - CK_TYPE_PACKED : t; }

void ck_pack_rows(int wt, const void *w, size_t w_stride, int rows, int k, void *out) {
    const int nb = k / QK;
    for (int g = 0; g < rows / 8; g++) {
        const char *src = (const char *)w + (size_t)g * 8 * w_stride;
        switch (wt) {
        case CK_TYPE_Q4_1: {
            block_q4_1x8 *dst = (block_q4_1x8 *)out + (size_t)g * nb;
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 8; r++) {
                    const block_q4_1 *b = (const block_q4_1 *)(src + (size_t)r * w_stride) + i;
                    dst[i].d[r] = b->d;
                    dst[i].m[r] = b->m;
                    for (int t = 0; t < 4; t++) memcpy(dst[i].qs[t][r], b->qs + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q4_0: case CK_TYPE_IQ4_NL: {
            block_q4_0x8 *dst = (block_q4_0x8 *)out + (size_t)g * nb;
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 8; r++) {
                    const block_q4_0 *b = (const block_q4_0 *)(src + (size_t)r * w_stride) + i;
                    dst[i].d[r] = b->d;
                    for (int t = 0; t < 4; t++) memcpy(dst[i].qs[t][r], b->qs + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q5_0: {
            block_q5_0x8 *dst = (block_q5_0x8 *)out + (size_t)g * nb;
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 22;
                    memcpy(&dst[i].d[r], b, 2);
                    uint32_t qh;
                    memcpy(&qh, b + 2, 4);
                    ck_q5_regroup(qh, dst[i].hb[r]);
                    for (int t = 0; t < 4; t++) memcpy(dst[i].qs[t][r], b + 6 + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q5_1: {
            block_q5_1x8 *dst = (block_q5_1x8 *)out + (size_t)g * nb;
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 24;
                    memcpy(&dst[i].d[r], b, 2);
                    memcpy(&dst[i].m[r], b + 2, 2);
                    uint32_t qh;
                    memcpy(&qh, b + 4, 4);
                    ck_q5_regroup(qh, dst[i].hb[r]);
                    for (int t = 0; t < 4; t++) memcpy(dst[i].qs[t][r], b + 8 + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q3_K: {
            block_q3_Kx8 *dst = (block_q3_Kx8 *)out + (size_t)g * (nb / 8);
            for (int i = 0; i < nb / 8; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 110;
                    memcpy(&dst[i].d[r], b + 108, 2);
                    for (int k = 0; k < 12; k++) dst[i].sc[k][r] = b[96 + k];
                    for (int t = 0; t < 8; t++) {
                        memcpy(dst[i].hm[t][r], b + 4 * t, 4);
                        for (int h = 0; h < 2; h++) memcpy(dst[i].qs[h][t][r], b + 32 + 32 * h + 4 * t, 4);
                    }
                }
            break;
        }
        case CK_TYPE_Q2_K: {
            block_q2_Kx8 *dst = (block_q2_Kx8 *)out + (size_t)g * (nb / 8);
            for (int i = 0; i < nb / 8; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 84;
                    memcpy(&dst[i].d[r], b + 80, 2);
                    memcpy(&dst[i].dmin[r], b + 82, 2);
                    for (int k = 0; k < 16; k++) dst[i].sc[k][r] = b[k];
                    for (int t = 0; t < 8; t++)
                        for (int h = 0; h < 2; h++) memcpy(dst[i].qs[h][t][r], b + 16 + 32 * h + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q4_K: {
            block_q4_Kx8 *dst = (block_q4_Kx8 *)out + (size_t)g * (nb / 8);
            for (int i = 0; i < nb / 8; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 144;
                    memcpy(&dst[i].d[r], b, 2);
                    memcpy(&dst[i].dmin[r], b + 2, 2);
                    for (int k = 0; k < 12; k++) dst[i].sc[k][r] = b[4 + k];
                    for (int p = 0; p < 4; p++)
                        for (int t = 0; t < 8; t++) memcpy(dst[i].qs[p][t][r], b + 16 + 32 * p + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q5_K: {
            block_q5_Kx8 *dst = (block_q5_Kx8 *)out + (size_t)g * (nb / 8);
            for (int i = 0; i < nb / 8; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 176;
                    memcpy(&dst[i].d[r], b, 2);
                    memcpy(&dst[i].dmin[r], b + 2, 2);
                    for (int k = 0; k < 12; k++) dst[i].sc[k][r] = b[4 + k];
                    for (int t = 0; t < 8; t++) memcpy(dst[i].qh[t][r], b + 16 + 4 * t, 4);
                    for (int p = 0; p < 4; p++)
                        for (int t = 0; t < 8; t++) memcpy(dst[i].qs[p][t][r], b + 48 + 32 * p + 4 * t, 4);
                }
            break;
        }
        case CK_TYPE_Q6_K: {
            block_q6_Kx8 *dst = (block_q6_Kx8 *)out + (size_t)g * (nb / 8);
            for (int i = 0; i < nb / 8; i++)
                for (int r = 0; r < 8; r++) {
                    const uint8_t *b = (const uint8_t *)(src + (size_t)r * w_stride) + (size_t)i * 210;
                    memcpy(&dst[i].d[r], b + 208, 2);
                    for (int k = 0; k < 16; k++) dst[i].sc[k][r] = (int8_t)b[192 + k];
                    for (int t = 0; t < 8; t++) {
                        for (int u = 0; u < 4; u++) memcpy(dst[i].ql[u][t][r], b + 32 * u + 4 * t, 4);
                        for (int v = 0; v < 2; v++) memcpy(dst[i].qh[v][t][r], b + 128 + 32 * v + 4 * t, 4);
                    }
                }
            break;
        }
        case CK_TYPE_Q8_0: {
            block_q8_0x8 *dst = (block_q8_0x8 *)out + (size_t)g * nb;
            for (int i = 0; i < nb; i++)
                for (int r = 0; r < 8; r++) {
                    const block_q8_0 *b = (const block_q8_0 *)(src + (size_t)r * w_stride) + i;
                    dst[i].d[r] = b->d;
                    for (int j = 0; j < QK; j++) dst[i].qs[j / 4][r][j % 4] = (uint8_t)b->qs[j] ^ 0x80;
                }
            break;
        }
        default: return;
        }
    }
}

void ck_unpack_row(int pt, const void *packed, int k, int row, void *out) {
    const int nb = k / QK, g = row / 8, r = row % 8;
    switch (pt) {
    case CK_TYPE_Q4_1_X8: {
        const block_q4_1x8 *src = (const block_q4_1x8 *)packed + (size_t)g * nb;
        block_q4_1 *dst = out;
        for (int i = 0; i < nb; i++) {
            dst[i].d = src[i].d[r];
            dst[i].m = src[i].m[r];
            for (int t = 0; t < 4; t++) memcpy(dst[i].qs + 4 * t, src[i].qs[t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q4_0_X8: case CK_TYPE_IQ4_NL_X8: {
        const block_q4_0x8 *src = (const block_q4_0x8 *)packed + (size_t)g * nb;
        block_q4_0 *dst = out;
        for (int i = 0; i < nb; i++) {
            dst[i].d = src[i].d[r];
            for (int t = 0; t < 4; t++) memcpy(dst[i].qs + 4 * t, src[i].qs[t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q5_0_X8: {
        const block_q5_0x8 *src = (const block_q5_0x8 *)packed + (size_t)g * nb;
        uint8_t *dst = out;
        for (int i = 0; i < nb; i++, dst += 22) {
            memcpy(dst, &src[i].d[r], 2);
            const uint32_t qh = ck_q5_ungroup(src[i].hb[r]);
            memcpy(dst + 2, &qh, 4);
            for (int t = 0; t < 4; t++) memcpy(dst + 6 + 4 * t, src[i].qs[t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q5_1_X8: {
        const block_q5_1x8 *src = (const block_q5_1x8 *)packed + (size_t)g * nb;
        uint8_t *dst = out;
        for (int i = 0; i < nb; i++, dst += 24) {
            memcpy(dst, &src[i].d[r], 2);
            memcpy(dst + 2, &src[i].m[r], 2);
            const uint32_t qh = ck_q5_ungroup(src[i].hb[r]);
            memcpy(dst + 4, &qh, 4);
            for (int t = 0; t < 4; t++) memcpy(dst + 8 + 4 * t, src[i].qs[t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q3_K_X8: {
        const block_q3_Kx8 *src = (const block_q3_Kx8 *)packed + (size_t)g * (nb / 8);
        uint8_t *dst = out;
        for (int i = 0; i < nb / 8; i++, dst += 110) {
            memcpy(dst + 108, &src[i].d[r], 2);
            for (int k = 0; k < 12; k++) dst[96 + k] = src[i].sc[k][r];
            for (int t = 0; t < 8; t++) {
                memcpy(dst + 4 * t, src[i].hm[t][r], 4);
                for (int h = 0; h < 2; h++) memcpy(dst + 32 + 32 * h + 4 * t, src[i].qs[h][t][r], 4);
            }
        }
        return;
    }
    case CK_TYPE_Q2_K_X8: {
        const block_q2_Kx8 *src = (const block_q2_Kx8 *)packed + (size_t)g * (nb / 8);
        uint8_t *dst = out;
        for (int i = 0; i < nb / 8; i++, dst += 84) {
            memcpy(dst + 80, &src[i].d[r], 2);
            memcpy(dst + 82, &src[i].dmin[r], 2);
            for (int k = 0; k < 16; k++) dst[k] = src[i].sc[k][r];
            for (int t = 0; t < 8; t++)
                for (int h = 0; h < 2; h++) memcpy(dst + 16 + 32 * h + 4 * t, src[i].qs[h][t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q4_K_X8: {
        const block_q4_Kx8 *src = (const block_q4_Kx8 *)packed + (size_t)g * (nb / 8);
        uint8_t *dst = out;
        for (int i = 0; i < nb / 8; i++, dst += 144) {
            memcpy(dst, &src[i].d[r], 2);
            memcpy(dst + 2, &src[i].dmin[r], 2);
            for (int k = 0; k < 12; k++) dst[4 + k] = src[i].sc[k][r];
            for (int p = 0; p < 4; p++)
                for (int t = 0; t < 8; t++) memcpy(dst + 16 + 32 * p + 4 * t, src[i].qs[p][t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q5_K_X8: {
        const block_q5_Kx8 *src = (const block_q5_Kx8 *)packed + (size_t)g * (nb / 8);
        uint8_t *dst = out;
        for (int i = 0; i < nb / 8; i++, dst += 176) {
            memcpy(dst, &src[i].d[r], 2);
            memcpy(dst + 2, &src[i].dmin[r], 2);
            for (int k = 0; k < 12; k++) dst[4 + k] = src[i].sc[k][r];
            for (int t = 0; t < 8; t++) memcpy(dst + 16 + 4 * t, src[i].qh[t][r], 4);
            for (int p = 0; p < 4; p++)
                for (int t = 0; t < 8; t++) memcpy(dst + 48 + 32 * p + 4 * t, src[i].qs[p][t][r], 4);
        }
        return;
    }
    case CK_TYPE_Q6_K_X8: {
        const block_q6_Kx8 *src = (const block_q6_Kx8 *)packed + (size_t)g * (nb / 8);
        uint8_t *dst = out;
        for (int i = 0; i < nb / 8; i++, dst += 210) {
            memcpy(dst + 208, &src[i].d[r], 2);
            for (int k = 0; k < 16; k++) dst[192 + k] = (uint8_t)src[i].sc[k][r];
            for (int t = 0; t < 8; t++) {
                for (int u = 0; u < 4; u++) memcpy(dst + 32 * u + 4 * t, src[i].ql[u][t][r], 4);
                for (int v = 0; v < 2; v++) memcpy(dst + 128 + 32 * v + 4 * t, src[i].qh[v][t][r], 4);
            }
        }
        return;
    }
    case CK_TYPE_Q8_0_X8: {
        const block_q8_0x8 *src = (const block_q8_0x8 *)packed + (size_t)g * nb;
        block_q8_0 *dst = out;
        for (int i = 0; i < nb; i++) {
            dst[i].d = src[i].d[r];
            for (int j = 0; j < QK; j++) dst[i].qs[j] = (int8_t)(src[i].qs[j / 4][r][j % 4] ^ 0x80);
        }
        return;
    }
    default: return;
    }
}

#ifndef PACKED_PREFETCH
#define PACKED_PREFETCH 2048
#endif

#ifdef CK_X86
#define NAME(x) x##_avx2
#define TARGET __attribute__((target("avx2,fma,f16c")))
#define MAX_COLS 2
#define NARROW_COLS 2
#define Q8_CORR 0
TARGET static inline __m256i dot4_avx2(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
// Signed weights w = u ^ 0x80 times s as |s| * (w with s's sign): no pair sum reaches 2^15 unless
// w = -128, which no quantizer writes.
TARGET static inline __m256i dot4_q8_avx2(__m256i acc, __m256i u, __m256i s) {
    const __m256i w = _mm256_xor_si256(u, _mm256_set1_epi8((char)0x80));
    return dot4_avx2(acc, _mm256_sign_epi8(s, s), _mm256_sign_epi8(w, s));
}
#define DOT4(acc, u, s) dot4_avx2(acc, u, s)
#define DOT4_Q8(acc, u, s) dot4_q8_avx2(acc, u, s)
#include "packed_impl.h"
#undef NAME
#undef TARGET
#undef MAX_COLS
#undef NARROW_COLS
#undef Q8_CORR
#undef DOT4
#undef DOT4_Q8

#define NAME(x) x##_vnni
#define TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
// Activation rows per tile with AVX-512VL's 32 vector registers: 8 where unpacking a block of weights
// (fifth bits, K-quant scales, IQ4_NL's table) is worth sharing across more rows, 4 for the plain formats
// (measured: +4-5% prefill on Gemma 3's Q5_0/K-quant mix, -8% on SmolLM2's Q4_1 at 8 for all).
#define MAX_COLS 8
#define NARROW_COLS 4
#define Q8_CORR 1
#define DOT4(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#define DOT4_Q8(acc, u, s) _mm256_dpbusd_epi32(acc, u, s)
#include "packed_impl.h"
#endif

static void packed_group(int isa, int pt, int vt, int nb, const void *w, const void *x, size_t x_stride, int cols,
                         float *y, int ldy) {
#ifdef CK_X86
    if (vt == CK_TYPE_A8 || vt == CK_TYPE_A16) {
        if (isa >= CK_ISA_AVX512VNNI) { group_vnni(pt, vt, nb, w, x, x_stride, cols, y, ldy); return; }
        if (isa >= CK_ISA_AVX2) { group_avx2(pt, vt, nb, w, x, x_stride, cols, y, ldy); return; }
    }
#endif
    (void)isa;
    const int bt = ck_base_type(pt), k = nb * QK;
    char row[ck_row_bytes(bt, k)];
    for (int r = 0; r < 8; r++) {
        ck_unpack_row(pt, w, k, r, row);
        for (int c = 0; c < cols; c++)
            y[(size_t)c * ldy + r] = ck_vec_dot(bt, vt, k, row, (const char *)x + (size_t)c * x_stride);
    }
}

void ck_matmul_packed_group(int pt, int vt, int nb, const void *w, const void *x, size_t x_stride, int cols,
                            float *y, int ldy) {
    packed_group(ck_isa(), pt, vt, nb, w, x, x_stride, cols, y, ldy);
}

void ck_matmul_packed_isa(int isa, int pt, const void *w, int rows, int k, int vt, const void *x, size_t x_stride,
                          int cols, float *y, int ldy) {
    if (isa > ck_isa()) isa = ck_isa();
    const size_t group_bytes = 8 * ck_row_bytes(pt, k);
    for (int g = 0; g < rows / 8; g++)
        packed_group(isa, pt, vt, k / QK, (const char *)w + g * group_bytes, x, x_stride, cols, y + 8 * g, ldy);
}
