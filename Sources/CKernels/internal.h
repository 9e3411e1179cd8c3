#ifndef CK_INTERNAL_H
#define CK_INTERNAL_H
#include "ckernels.h"
#include <string.h>
#include <math.h>
#include <stdatomic.h>

#define QK 32
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; } block_q4_1;
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;

// Activation blocks: value j = d * q_j with q_j = q[j] (A8) or 256 * hi[j] + lo[j] (A16);
// sum = the sum of the q_j, sum_lo that of the first 16, s = d * (float)sum.
typedef struct { float d; float s; int32_t sum; int32_t sum_lo; int8_t q[QK]; } block_a8;
typedef struct { float d; float s; int32_t sum; int32_t sum_lo; int8_t hi[QK]; int8_t lo[QK]; } block_a16;
#define CK_A8_MAX 127
#define CK_A16_MAX 32639  // (q + 128) >> 8 stays within [-127, 127]

// 8 rows interleaved per block column (packed.c), the same bytes per row as the plain blocks. Quant
// bytes are dealt 4 at a time: qs[t][r] holds bytes 4t..4t+3 of row r, so one 32-byte load holds
// 4 consecutive elements (Q8_0), or two such runs in its nibbles (Q4), of each of the 8 rows.
typedef struct { uint16_t d[8]; uint16_t m[8]; uint8_t qs[4][8][4]; } block_q4_1x8;
typedef struct { uint16_t d[8]; uint8_t qs[4][8][4]; } block_q4_0x8;
typedef struct { uint16_t d[8]; uint8_t qs[8][8][4]; } block_q8_0x8;  // quants stored + 128
_Static_assert(sizeof(block_q4_1x8) == 8 * 20, "q4_1x8 size");
_Static_assert(sizeof(block_q4_0x8) == 8 * 18, "q4_0x8 size");
_Static_assert(sizeof(block_q8_0x8) == 8 * 34, "q8_0x8 size");
// Q5_0: the 8 rows' scales, their 32-bit masks of fifth bits, then the nibbles as for Q4_0.
// Fifth bits regrouped for the kernels: bit j of hb[r][e] is that of row r's element 4j + e, so the byte
// lanes of one shift give the fifth bits of the 4 elements of each row that a 32-byte load of nibbles holds.
typedef struct { uint16_t d[8]; uint8_t hb[8][4]; uint8_t qs[4][8][4]; } block_q5_0x8;
_Static_assert(sizeof(block_q5_0x8) == 8 * 22, "q5_0x8 size");
// Q5_1: Q5_0's layout with the 8 rows' minimums after their scales.
typedef struct { uint16_t d[8]; uint16_t m[8]; uint8_t hb[8][4]; uint8_t qs[4][8][4]; } block_q5_1x8;
// A row's 32-bit mask of fifth bits (bit e: element e) as hb bytes, and back.
static inline void ck_q5_regroup(uint32_t qh, uint8_t hb[4]) {
    for (int e = 0; e < 4; e++) {
        hb[e] = 0;
        for (int j = 0; j < 8; j++) hb[e] |= (uint8_t)(((qh >> (4 * j + e)) & 1) << j);
    }
}
static inline uint32_t ck_q5_ungroup(const uint8_t hb[4]) {
    uint32_t qh = 0;
    for (int e = 0; e < 4; e++)
        for (int j = 0; j < 8; j++) qh |= (uint32_t)((hb[e] >> j) & 1) << (4 * j + e);
    return qh;
}
_Static_assert(sizeof(block_q5_1x8) == 8 * 24, "q5_1x8 size");
// IQ4_NL packs as Q4_0 (same block: an f16 scale and 16 bytes of nibbles); its nibbles index this table.
extern const int8_t ck_iq4nl_values[16];
// Q4_K super-blocks of 8 rows: their d and dmin, their 12 scale bytes transposed (byte b of row r at
// sc[b][r]), and per pair of sub-blocks the quant bytes dealt 4 at a time as above (low nibbles:
// sub-block 2p, high nibbles: 2p + 1).
typedef struct { uint16_t d[8]; uint16_t dmin[8]; uint8_t sc[12][8]; uint8_t qs[4][8][8][4]; } block_q4_Kx8;
_Static_assert(sizeof(block_q4_Kx8) == 8 * 144, "q4_Kx8 size");
// Q5_K: as Q4_K, with each row's 32 bytes of fifth bits dealt 4 at a time before the nibbles.
typedef struct {
    uint16_t d[8]; uint16_t dmin[8]; uint8_t sc[12][8]; uint8_t qh[8][8][4]; uint8_t qs[4][8][8][4];
} block_q5_Kx8;
_Static_assert(sizeof(block_q5_Kx8) == 8 * 176, "q5_Kx8 size");
// Q6_K super-blocks of 8 rows: d, the 16 int8 scales transposed, and the quant bytes dealt 4 at a
// time: ql's four 32-byte runs (nibbles) and qh's two (2-bit pairs), as they lie in the row.
typedef struct { uint16_t d[8]; int8_t sc[16][8]; uint8_t ql[4][8][8][4]; uint8_t qh[2][8][8][4]; } block_q6_Kx8;
_Static_assert(sizeof(block_q6_Kx8) == 8 * 210, "q6_Kx8 size");
// Q3_K and Q2_K super-blocks of 8 rows: the scale bytes transposed, and the quant bytes dealt 4 at a
// time as for Q6_K (Q3_K's 32 bytes of high bits, both formats' two 32-byte runs of 2-bit quants).
typedef struct { uint16_t d[8]; uint8_t sc[12][8]; uint8_t hm[8][8][4]; uint8_t qs[2][8][8][4]; } block_q3_Kx8;
_Static_assert(sizeof(block_q3_Kx8) == 8 * 110, "q3_Kx8 size");
typedef struct { uint16_t d[8]; uint16_t dmin[8]; uint8_t sc[16][8]; uint8_t qs[2][8][8][4]; } block_q2_Kx8;
_Static_assert(sizeof(block_q2_Kx8) == 8 * 84, "q2_Kx8 size");
// Q3_K's 6-bit scale of 16-element sub-block s from its 12 packed bytes (stored + 32).
static inline int ck_q3_k_scale(const uint8_t *sc, int s) {
    const int lo = s < 8 ? sc[s] & 0x0F : sc[s - 8] >> 4, hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}
#define QK_K 256

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(block_a8) == 48, "a8 size");
_Static_assert(sizeof(block_a16) == 80, "a16 size");

// A row of formats.c's table. compute: 1 for weight formats with matrix products, 2 for activations.
typedef struct {
    int type;
    const char *name;
    int block_elems;
    int block_bytes;
    int compute;
    void (*dequantize)(const void *x, float *y, int n);
} ck_type_traits;
const ck_type_traits *ck_traits(int type);
void ck_q4_k_scale_min(int j, const uint8_t *q, int *sc, int *m);

static inline float fp16_to_fp32(uint16_t h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
static inline uint16_t fp32_to_fp16(float x) { _Float16 f = (_Float16)x; uint16_t h; memcpy(&h, &f, 2); return h; }

#if defined(__x86_64__)
#define CK_X86 1
#endif

// The CPU has AVX2, FMA and F16C (ck_has_avx2 also honours ck_set_isa_limit).
int ck_cpu_avx2(void);

float ck_dot_f16_f16_scalar(int n, const void *w, const void *x);
float ck_dot_f32_f32_scalar(int n, const void *w, const void *x);
float ck_dot_f16_f32_scalar(int n, const void *w, const void *x);
float ck_dot_bf16_f32_scalar(int n, const void *w, const void *x);
#ifdef CK_X86
float ck_dot_f16_f16_avx2(int n, const void *w, const void *x);
float ck_dot_f32_f32_avx2(int n, const void *w, const void *x);
// F16 (f16 = 1) or F32 weights with f32 activations (gemm_float.c).
float ck_dot_float_f32_avx2(int f16, int k, const void *w, const float *x);
void ck_matmul_float_rows_avx2(int f16, int k, const char *w, size_t ws, int r0, int r1, const char *x, size_t xs,
                               int cols, float *y, int ldy);
void ck_quantize_a8_avx2(const float *x, void *y, int n);
void ck_quantize_a16_avx2(const float *x, void *y, int n);
#endif

// Rows [r0, r1) (r0 a multiple of 16) of a CK_TYPE_F32_P16 matrix of `rows` rows with f32 activations.
void ck_matmul_panels_rows(int k, const float *w, int rows, int r0, int r1, const char *x, size_t xs, int cols,
                           float *y, int ldy);

// y[c * ldy + r] for the 8 rows of one packed group (type pt, nb blocks per row) and `cols`
// activation rows of type vt.
void ck_matmul_packed_group(int pt, int vt, int nb, const void *w, const void *x, size_t x_stride, int cols,
                            float *y, int ldy);

#define CK_MAX_HEAD_DIM 256

typedef struct {
    const float *q; float *out; const ck_attn_seq *seqs;
    const uint16_t *k; const uint16_t *v; int bs_log2;
    int n_head; int n_head_kv; int head_dim; float scale; int window; float *scratch; int scratch_per_thread;
    int units; _Atomic int next_unit;
} attn_ctx;
typedef void (*attn_unit_fn)(const attn_ctx *c, float *scores, const ck_attn_seq *sq, int i, int h);

// Row j of a block-paged K or V layer: block blocks[j >> bs_log2], slot j & (block size - 1).
static inline const uint16_t *ck_kv_row(const uint16_t *layer, const int32_t *blocks, int bs_log2, int j, size_t kv_stride) {
    return layer + ((((size_t)blocks[j >> bs_log2]) << bs_log2) + (size_t)(j & ((1 << bs_log2) - 1))) * kv_stride;
}
// First key position a query at n_kv - 1 sees: all of them, or the last `window`.
static inline int ck_attn_first(const attn_ctx *c, int n_kv) {
    return c->window > 0 && n_kv > c->window ? n_kv - c->window : 0;
}
#ifdef CK_X86
void ck_attn_unit_avx2(const attn_ctx *c, float *scores, const ck_attn_seq *sq, int i, int h);
#endif
#endif
