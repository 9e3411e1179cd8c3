// One table of the formats the kernels know (as ggml's type_traits): block size and bytes, name,
// dequantization, and whether matrix products exist for it. Dequantization follows gguf-py's
// definitions operation for operation (f32 products and sums, never fused), so it gives its bits.
#include "internal.h"

#pragma STDC FP_CONTRACT OFF

static void dq_f32(const void *x, float *y, int n) { memcpy(y, x, (size_t)n * 4); }
static void dq_f16(const void *x, float *y, int n) { ck_fp16_to_fp32_row(x, y, n); }
static void dq_bf16(const void *vx, float *y, int n) {
    const uint16_t *x = vx;
    for (int i = 0; i < n; i++) y[i] = ck_bf16_to_fp32(x[i]);
}

static inline float h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return fp16_to_fp32(h); }

static void dq_q4_0(const void *vx, float *y, int n) {
    const block_q4_0 *x = vx;
    for (int i = 0; i < n / QK; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[i * QK + j] = d * (float)((x[i].qs[j] & 0x0F) - 8);
            y[i * QK + j + QK / 2] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void dq_q4_1(const void *vx, float *y, int n) {
    const block_q4_1 *x = vx;
    for (int i = 0; i < n / QK; i++) {
        const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[i * QK + j] = d * (float)(x[i].qs[j] & 0x0F) + m;
            y[i * QK + j + QK / 2] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

// Q5_0 / Q5_1 (22 / 24 bytes): d, [m], 32 high bits (little-endian), 16 bytes of low nibbles.
static void dq_q5(const void *vx, float *y, int n, int with_min) {
    const uint8_t *b = vx;
    const int bytes = with_min ? 24 : 22;
    for (int i = 0; i < n / QK; i++, b += bytes) {
        const float d = h2f(b), m = with_min ? h2f(b + 2) : 0;
        uint32_t qh;
        memcpy(&qh, b + (with_min ? 4 : 2), 4);
        const uint8_t *qs = b + (with_min ? 8 : 6);
        for (int j = 0; j < QK; j++) {
            const int lo = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
            const int q = lo | (int)((qh >> j) & 1) << 4;
            y[i * QK + j] = with_min ? d * (float)q + m : d * (float)(q - 16);
        }
    }
}
static void dq_q5_0(const void *x, float *y, int n) { dq_q5(x, y, n, 0); }
static void dq_q5_1(const void *x, float *y, int n) { dq_q5(x, y, n, 1); }

static void dq_q8_0(const void *vx, float *y, int n) {
    const block_q8_0 *x = vx;
    for (int i = 0; i < n / QK; i++) {
        const float d = fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)x[i].qs[j] * d;
    }
}

const int8_t ck_iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

static void dq_iq4_nl(const void *vx, float *y, int n) {
    const uint8_t *b = vx;
    for (int i = 0; i < n / QK; i++, b += 18) {
        const float d = h2f(b);
        for (int j = 0; j < QK / 2; j++) {
            y[i * QK + j] = d * (float)ck_iq4nl_values[b[2 + j] & 0x0F];
            y[i * QK + j + QK / 2] = d * (float)ck_iq4nl_values[b[2 + j] >> 4];
        }
    }
}

// Q2_K (84 bytes): 16 scale bytes (low nibble scale, high nibble min), 64 bytes of 2-bit quants, d, dmin.
static void dq_q2_k(const void *vx, float *y, int n) {
    const uint8_t *b = vx;
    for (int i = 0; i < n / QK_K; i++, b += 84) {
        const uint8_t *sc = b, *qs = b + 16;
        const float d = h2f(b + 80), dmin = h2f(b + 82);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32, s = e / 16;
            const float dl = d * (float)(sc[s] & 0x0F), ml = dmin * (float)(sc[s] >> 4);
            y[i * QK_K + e] = dl * (float)((qs[h * 32 + l] >> (2 * k)) & 3) - ml;
        }
    }
}

// Q3_K (110 bytes): 32 bytes of high bits, 64 of 2-bit quants, 12 of 6-bit scales, d.
static void dq_q3_k(const void *vx, float *y, int n) {
    const uint8_t *b = vx;
    for (int i = 0; i < n / QK_K; i++, b += 110) {
        const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
        const float d = h2f(b + 108);
        float dl[16];
        for (int s = 0; s < 16; s++) dl[s] = d * (float)ck_q3_k_scale(sc, s);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, k = (e % 128) / 32, l = e % 32;
            const int q = ((qs[h * 32 + l] >> (2 * k)) & 3) - (((hmask[l] >> (e / 32)) & 1) ? 0 : 4);
            y[i * QK_K + e] = dl[e / 16] * (float)q;
        }
    }
}

// Q4_K (144 bytes) / Q5_K (176): d, dmin, 12 scale bytes, [32 bytes of fifth bits], 128 bytes of nibbles.
static void dq_qk(const void *vx, float *y, int n, int five) {
    const uint8_t *b = vx;
    const int bytes = five ? 176 : 144;
    for (int i = 0; i < n / QK_K; i++, b += bytes) {
        const float d = h2f(b), dmin = h2f(b + 2);
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ck_q4_k_scale_min(j, scales, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            for (int t = 0; t < 32; t++) {
                const int e = j * 32 + t;
                int q = (qs[(j / 2) * 32 + t] >> (4 * (j % 2))) & 0x0F;
                if (five) q |= ((qh[t] >> j) & 1) << 4;
                y[i * QK_K + e] = dl * (float)q - ml;
            }
        }
    }
}
static void dq_q4_k(const void *x, float *y, int n) { dq_qk(x, y, n, 0); }
static void dq_q5_k(const void *x, float *y, int n) { dq_qk(x, y, n, 1); }

// Q6_K (210 bytes): 128 bytes of low nibbles, 64 of 2-bit highs, 16 int8 scales, d.
static void dq_q6_k(const void *vx, float *y, int n) {
    const uint8_t *b = vx;
    for (int i = 0; i < n / QK_K; i++, b += 210) {
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = h2f(b + 208);
        for (int e = 0; e < QK_K; e++) {
            const int h = e / 128, r = e % 128;
            const int lo = (ql[h * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int hi = (qh[h * 32 + r % 32] >> (2 * (r / 32))) & 3;
            y[i * QK_K + e] = (d * (float)sc[e / 16]) * (float)((lo | hi << 4) - 32);
        }
    }
}

static void dq_a8(const void *vx, float *y, int n) {
    const block_a8 *x = vx;
    for (int i = 0; i < n / QK; i++)
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)x[i].q[j] * x[i].d;
}

static void dq_a16(const void *vx, float *y, int n) {
    const block_a16 *x = vx;
    for (int i = 0; i < n / QK; i++)
        for (int j = 0; j < QK; j++) y[i * QK + j] = (float)(256 * x[i].hi[j] + x[i].lo[j]) * x[i].d;
}

// compute: 1 for weight formats with matrix products, 2 for activation formats.
static const ck_type_traits table[] = {
    { CK_TYPE_F32, "F32", 1, 4, 1, dq_f32 },
    { CK_TYPE_F16, "F16", 1, 2, 1, dq_f16 },
    { CK_TYPE_BF16, "BF16", 1, 2, 1, dq_bf16 },
    { CK_TYPE_Q4_0, "Q4_0", QK, 18, 1, dq_q4_0 },
    { CK_TYPE_Q4_1, "Q4_1", QK, 20, 1, dq_q4_1 },
    { CK_TYPE_Q5_0, "Q5_0", QK, 22, 1, dq_q5_0 },
    { CK_TYPE_Q5_1, "Q5_1", QK, 24, 1, dq_q5_1 },
    { CK_TYPE_Q8_0, "Q8_0", QK, 34, 1, dq_q8_0 },
    { CK_TYPE_Q2_K, "Q2_K", QK_K, 84, 1, dq_q2_k },
    { CK_TYPE_Q3_K, "Q3_K", QK_K, 110, 1, dq_q3_k },
    { CK_TYPE_Q4_K, "Q4_K", QK_K, 144, 1, dq_q4_k },
    { CK_TYPE_Q5_K, "Q5_K", QK_K, 176, 1, dq_q5_k },
    { CK_TYPE_Q6_K, "Q6_K", QK_K, 210, 1, dq_q6_k },
    { CK_TYPE_IQ4_NL, "IQ4_NL", QK, 18, 1, dq_iq4_nl },
    { CK_TYPE_A8, "A8", QK, sizeof(block_a8), 2, dq_a8 },
    { CK_TYPE_A16, "A16", QK, sizeof(block_a16), 2, dq_a16 },
};

const ck_type_traits *ck_traits(int type) {
    type = ck_base_type(type);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].type == type) return &table[i];
    return NULL;
}

int ck_type_known(int type) { return ck_traits(type) != NULL; }

int ck_type_supported(int type) {
    const ck_type_traits *t = ck_traits(type);
    return t && t->compute == 1;
}

const char *ck_type_name(int type) {
    const ck_type_traits *t = ck_traits(type);
    return t ? t->name : NULL;
}

int ck_type_block_elements(int type) {
    const ck_type_traits *t = ck_traits(type);
    return t ? t->block_elems : 0;
}

int ck_weight_types(int *out, int capacity) {
    int n = 0;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].compute == 1 && n < capacity) out[n++] = table[i].type;
    return n;
}

size_t ck_row_bytes(int type, int n) {
    const ck_type_traits *t = ck_traits(type);
    return t ? (size_t)(n / t->block_elems) * (size_t)t->block_bytes : 0;
}

void ck_dequantize_row(int type, const void *x, float *y, int n) {
    const ck_type_traits *t = ck_traits(type);
    if (t && n % t->block_elems == 0) t->dequantize(x, y, n);
}
