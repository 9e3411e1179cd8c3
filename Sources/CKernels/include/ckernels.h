#ifndef SWIFTLET_CKERNELS_H
#define SWIFTLET_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ggml type numbers for the formats these kernels handle.
enum {
    CK_TYPE_F32 = 0,
    CK_TYPE_F16 = 1,
    CK_TYPE_Q4_0 = 2,
    CK_TYPE_Q4_1 = 3,
    CK_TYPE_Q5_0 = 6,
    CK_TYPE_Q5_1 = 7,
    CK_TYPE_Q8_0 = 8,
    CK_TYPE_Q2_K = 10,
    CK_TYPE_Q3_K = 11,
    CK_TYPE_Q4_K = 12,
    CK_TYPE_Q5_K = 13,
    CK_TYPE_Q6_K = 14,
    CK_TYPE_IQ4_NL = 20,
    CK_TYPE_BF16 = 30,
    // Swiftlet's activation formats for the quantized weight types (blocks of 32 with an f32 scale):
    // 8-bit quants, or 16-bit ones held as two 8-bit halves. Not ggml types.
    CK_TYPE_A8 = 64,
    CK_TYPE_A16 = 65,
};

// Weights repacked at load into groups of 8 interleaved rows (same bytes per row as the base type).
enum {
    CK_TYPE_PACKED = 0x100,
    CK_TYPE_Q4_0_X8 = CK_TYPE_PACKED + CK_TYPE_Q4_0,
    CK_TYPE_Q4_1_X8 = CK_TYPE_PACKED + CK_TYPE_Q4_1,
    CK_TYPE_Q8_0_X8 = CK_TYPE_PACKED + CK_TYPE_Q8_0,
    CK_TYPE_Q5_0_X8 = CK_TYPE_PACKED + CK_TYPE_Q5_0,
    CK_TYPE_Q5_1_X8 = CK_TYPE_PACKED + CK_TYPE_Q5_1,
    CK_TYPE_IQ4_NL_X8 = CK_TYPE_PACKED + CK_TYPE_IQ4_NL,
    CK_TYPE_Q2_K_X8 = CK_TYPE_PACKED + CK_TYPE_Q2_K,
    CK_TYPE_Q3_K_X8 = CK_TYPE_PACKED + CK_TYPE_Q3_K,
    CK_TYPE_Q4_K_X8 = CK_TYPE_PACKED + CK_TYPE_Q4_K,
    CK_TYPE_Q5_K_X8 = CK_TYPE_PACKED + CK_TYPE_Q5_K,
    CK_TYPE_Q6_K_X8 = CK_TYPE_PACKED + CK_TYPE_Q6_K,
};

// F16/F32 weights for f32 activations as f32 panels of 16 rows (gemm_panels.c): element (r, k) at
// (r / 16) * 16 * K + k * 16 + r % 16, rows past the end zero. Its row stride is K * 4 bytes.
enum { CK_TYPE_F32_P16 = 0x200 };
// Panels of `rows` rows of k elements of weight type wt (F16 or F32) into `out` (ck_panel_floats floats).
void ck_pack_panels(int wt, const void *w, size_t w_stride, int rows, int k, float *out);
static inline size_t ck_panel_floats(int rows, int k) { return (size_t)((rows + 15) / 16) * 16 * (size_t)k; }
// Row `row` of a panel matrix as k floats.
void ck_unpack_panel_row(const float *panels, int k, int row, float *out);
// y[c * ldy + r] for every row of a panel matrix and `cols` f32 activation rows, with the portable kernel
// only, on the calling thread (tests: the same bits as ck_matmul's).
void ck_matmul_panels_portable(int k, const float *w, int rows, const void *x, size_t xs, int cols, float *y, int ldy);

// Instruction sets the kernels dispatch to.
enum { CK_ISA_GENERIC = 0, CK_ISA_AVX2 = 1, CK_ISA_AVX512VNNI = 2 };
int ck_isa(void);
// Caps ck_isa() (to measure a slower machine's path); 99 lifts the cap. Set it before loading a model.
void ck_set_isa_limit(int level);

// The packed type for weight type wt on this CPU, or -1 when it has no packed kernels.
int ck_packed_type(int wt);
// The base type of a packed type (identity for other types).
int ck_base_type(int t);
// Packs `rows` rows (a multiple of 8) of k elements into `out` (rows * ck_row_bytes(wt, k) bytes).
void ck_pack_rows(int wt, const void *w, size_t w_stride, int rows, int k, void *out);
// Row `row` of a packed matrix back in its base type (ck_row_bytes(base, k) bytes).
void ck_unpack_row(int pt, const void *packed, int k, int row, void *out);
// A packed matmul on the calling thread with the kernels of instruction set `isa` (at most ck_isa()).
void ck_matmul_packed_isa(int isa, int pt, const void *w, int rows, int k, int vt, const void *x, size_t x_stride,
                          int cols, float *y, int ldy);

// ---- fp16 / bf16 ----
float ck_fp16_to_fp32(uint16_t h);
uint16_t ck_fp32_to_fp16(float f);
float ck_bf16_to_fp32(uint16_t h);
void ck_fp32_to_fp16_row(const float *x, uint16_t *y, int n);
void ck_fp16_to_fp32_row(const uint16_t *x, float *y, int n);

// ---- formats (formats.c: one table) ----
// The format is in the table (it can be dequantized and sized).
int ck_type_known(int type);
// Its name ("Q4_K"), or NULL.
const char *ck_type_name(int type);
// Elements per block (1 for F32/F16/BF16), or 0.
int ck_type_block_elements(int type);
// The weight formats with matrix products, into out (at most capacity); returns how many.
int ck_weight_types(int *out, int capacity);

// ---- quantized formats ----
// Activation ("vec dot") type paired with each weight type by default, and its row size in bytes.
// For Q4_0, Q4_1 and Q8_0 weights either A8 or A16 works; the default is A16 unless
// ck_set_activation_bits(8) was called (before any weights are loaded).
int ck_vec_dot_type(int weight_type);
void ck_set_activation_bits(int bits);
size_t ck_row_bytes(int type, int n);
// Weights of this format have matrix products.
int ck_type_supported(int type);
// Quantize one f32 row of n elements (n a multiple of 32 for block types) into `type`.
void ck_quantize_row(int type, const float *x, void *y, int n);
// Dequantize one row of n elements (a multiple of the block) of `type` to f32, as gguf-py does.
void ck_dequantize_row(int type, const void *x, float *y, int n);
// Dot product of one weight row (type wt) with one activation row (type vt), n elements. For the
// quantized types this defines every kernel's result: per block i in order, with the integer dot
// isum_i of the quants, acc = fmaf(dw_i * dx_i, (float)isum_i, acc) (and for Q4_1 a second chain
// m = fmaf(mw_i, s_i, m), added at the end). Q4_K's blocks are its 32-element sub-blocks, with
// dw = d * sc and a chain m = fmaf(dmin * m_sub, s_i, m) subtracted at the end (Q5_K likewise); Q6_K's are its
// 16-element halves with dw = d * sc, two per activation block. Every instruction set and every batch size gives
// exactly this number.
float ck_vec_dot(int wt, int vt, int n, const void *w, const void *x);

// ---- thread pool ----
typedef struct ck_pool ck_pool;
typedef void (*ck_task_fn)(void *ctx, int ith, int nth);
ck_pool *ck_pool_create(int n_threads);
void ck_pool_destroy(ck_pool *pool);
int ck_pool_size(const ck_pool *pool);
// Runs fn(ctx, i, n) for i in [0, n) on the pool's threads (the caller is thread 0) and waits.
void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *ctx);
// Runs fn(ctx, i, n) on the caller and on whichever workers join while it runs; fn must share out
// its work itself (e.g. with ck_ranges) and return when none is left. Returns once every thread
// in fn has left it, without waiting for workers that are late (descheduled, asleep).
void ck_pool_run_dynamic(ck_pool *pool, ck_task_fn fn, void *ctx);

// Gives thread `thread` up to 4 memory ranges to prefetch whenever it would otherwise wait.
void ck_pool_prefetch(ck_pool *pool, int thread, int segments, const void *const *base, const size_t *bytes);

// Units [0, n) dealt as one contiguous range per thread: each thread takes `grain` units at a time
// from the front of its own range, then steals from the back of the others'.
#define CK_RANGE_SLOTS 64
typedef struct { _Atomic uint64_t range; char pad[56]; } ck_range_slot;
typedef struct { ck_range_slot slot[CK_RANGE_SLOTS]; int slots; } ck_ranges;
void ck_ranges_init(ck_ranges *r, int units, int threads);
// The next units [*begin, *end) for thread ith; 0 when all are taken.
int ck_ranges_next(ck_ranges *r, int ith, int grain, int *begin, int *end);

// ---- operations (parallel over the pool) ----
// Y[c * ldy + r] = dot(W row r, X row c) for r < rows, c < cols.
// W: rows rows of `k` elements of weight type wt (row stride w_stride bytes); for a packed type,
// rows is a multiple of 8 and group g of 8 rows starts at byte g * 8 * w_stride.
// X: cols rows already quantized to vt (row stride x_stride bytes).
void ck_matmul(ck_pool *pool, int wt, const void *w, size_t w_stride, int rows, int k,
               int vt, const void *x, size_t x_stride, int cols, float *y, int ldy);
// Has each thread prefetch, while it would otherwise wait, the weights it will read first in a
// ck_matmul / ck_matmul_multi of these matrices (w, w_stride, rows as there).
void ck_matmul_prefetch(ck_pool *pool, int count, const void *const *w, const size_t *w_stride, const int *rows);
// Up to 8 matrices (same k and activation type) against the same activations, in one dispatch.
void ck_matmul_multi(ck_pool *pool, int count, const int *wt, const void *const *w, const size_t *w_stride,
                     const int *rows, int k, int vt, const void *x, size_t x_stride, int cols, float *const *y,
                     const int *ldy);
// Quantizes `cols` f32 rows of k elements (stride ldx floats) into type vt rows (stride bytes).
void ck_quantize_rows(ck_pool *pool, int vt, const float *x, int ldx, int cols, int k, void *y, size_t stride);

// y = x / sqrt(mean(x^2) + eps) * w   (row of n); y may alias x.
void ck_rms_norm(const float *x, const float *w, float *y, int n, float eps);
// Rotary embedding on `n_heads` heads of `head_dim` floats at x (heads contiguous), position pos.
// neox: rotate halves (i, i+n_rot/2) instead of adjacent pairs. freq_factors may be NULL.
void ck_rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale,
             const float *freq_factors, int neox);
// out[i] = silu(gate[i]) * up[i]
void ck_swiglu(const float *gate, const float *up, float *out, int n);
// out[i] = gelu(gate[i]) * up[i], gelu with the tanh approximation
void ck_geglu(const float *gate, const float *up, float *out, int n);
void ck_add(float *y, const float *x, int n);
// Mixture-of-experts routing of one token: softmax of the router's logits (ck_expf, in expert order), the k
// most probable experts (lower index first on ties) into ids, their probabilities renormalised to sum 1
// (the sum at least 2^-14, as llama.cpp clamps it) into weights, or as they are when !normalize.
void ck_moe_route(const float *logits, int n_expert, int k, int normalize, int32_t *ids, float *weights);
// A counter other threads may read while one thread adds to it (relaxed atomics).
void ck_counter_add(int64_t *counter, int64_t value);
int64_t ck_counter_load(const int64_t *counter);
// sigmoid(x . w) over n floats, the dot added in order in double: a shared expert's gate.
float ck_sigmoid_dot(const float *x, const float *w, int n);

// The same over `rows` rows on the pool (serially when there are few): rows of x and y `ld` floats apart.
void ck_rms_norm_rows(ck_pool *pool, const float *x, const float *w, float *y, int rows, int ld, int n, float eps);
void ck_swiglu_rows(ck_pool *pool, const float *gate, const float *up, float *out, int rows, int n);
void ck_geglu_rows(ck_pool *pool, const float *gate, const float *up, float *out, int rows, int n);
void ck_add_rows(ck_pool *pool, float *y, const float *x, int rows, int n);
// RoPE on each row's q (n_heads heads) and k (n_kv_heads heads) at positions[row], then k and v of the
// row converted to f16 at k_cache + slots[row] and v_cache + slots[row].
void ck_rope_store_rows(ck_pool *pool, float *q, int ldq, float *k, const float *v, int ldkv, int rows,
                        const int32_t *positions, const size_t *slots, uint16_t *k_cache, uint16_t *v_cache,
                        int n_heads, int n_kv_heads, int head_dim, int n_rot, float freq_base, float freq_scale,
                        const float *freq_factors, int neox);

// ---- encoder models (encoder.c) ----
// y = (x - mean) / sqrt(variance + eps) * w + b over n elements (statistics in double); y may be x.
void ck_layer_norm(const float *x, const float *w, const float *b, float *y, int n, float eps);
// The same with the portable code only (tests: the same bits).
void ck_layer_norm_portable(const float *x, const float *w, const float *b, float *y, int n, float eps);
void ck_layer_norm_rows(ck_pool *pool, const float *x, const float *w, const float *b, float *y, int rows, int ld,
                        int n, float eps);
// y = x/2 (1 + erf(x / sqrt 2)); y may be x.
void ck_gelu_erf(const float *x, float *y, int n);
void ck_gelu_erf_portable(const float *x, float *y, int n);
void ck_gelu_erf_rows(ck_pool *pool, float *x, int rows, int n);
// Bidirectional attention: sequence s is rows starts[s] ..< starts[s] + lengths[s] of q, k, v (f32, `ld`
// floats apart, heads of head_dim side by side, as many k/v heads as q heads), and each of its rows
// attends to all of them. out rows are `ldo` apart. One thread computes each (row, head) whole, so the
// result does not depend on the batch. scratch: pool size * scratch_per_thread floats, at least the
// longest sequence + 7 per thread.
void ck_attention_dense(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                        int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                        float scale, float *scratch, int scratch_per_thread);
// The same with the portable kernel only (tests: the same bits as the SIMD one).
void ck_attention_dense_portable(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                                 int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                                 float scale, float *scratch, int scratch_per_thread);

// One sequence's part of a batched attention call.
typedef struct {
    int n_q;                // its query rows in the batch
    int row0;               // index of its first row in q and out
    int pos0;               // position of its first query row; row i attends to positions 0 ... pos0 + i
    const int32_t *blocks;  // block table: position j is in block blocks[j >> block_size_log2]
} ck_attn_seq;

// Causal attention for a batch of sequences over one layer of a block-paged KV cache. Each (row, head)
// is computed whole by one thread in one fixed order, so it does not depend on the batch or the chunk.
// q, out: [rows][n_head][head_dim] f32. k, v: [block][block size][n_head_kv][head_dim] f16, filled
// up to each sequence's pos0 + n_q. scratch: pool size * scratch_per_thread floats, at least the
// longest context + 8 per thread. head_dim <= 256. window > 0: a row at position p sees only positions
// p - window + 1 ... p (sliding-window layers); 0: all up to p.
void ck_attention(ck_pool *pool, const float *q, float *out, int n_seq, const ck_attn_seq *seqs, const uint16_t *k,
                  const uint16_t *v, int block_size_log2, int n_head, int n_head_kv, int head_dim, float scale,
                  int window, float *scratch, int scratch_per_thread);

// Streaming-read bandwidth in GB/s over a `bytes` buffer split across the pool's threads (best of repeats).
double ck_stream_read_gbs(ck_pool *pool, size_t bytes, int repeats);

// ---- cpu features ----
// AVX2 kernels are in use (the CPU has them and ck_set_isa_limit allows them).
int ck_has_avx2(void);
// The portable scalar versions of kernels that match the SIMD ones bit for bit (for tests).
void ck_attention_portable(ck_pool *pool, const float *q, float *out, int n_seq, const ck_attn_seq *seqs,
                           const uint16_t *k, const uint16_t *v, int block_size_log2, int n_head, int n_head_kv,
                           int head_dim, float scale, int window, float *scratch, int scratch_per_thread);
void ck_swiglu_portable(const float *gate, const float *up, float *out, int n);
void ck_geglu_portable(const float *gate, const float *up, float *out, int n);
void ck_quantize_row_portable(int type, const float *x, void *y, int n);
int ck_has_avx512(void);

// ---- sampling (sample.c): linear passes over a row of logits ----
// Weights are w_i = exp((x_i - max) * scale) where x_i >= cutoff (else 0), summed per block.
#define CK_SAMPLE_BLOCK 256
float ck_max_f32(const float *x, int n);
// Index of the first maximum.
int ck_argmax_f32(const float *x, int n);
// Writes the weight sum of each block of CK_SAMPLE_BLOCK (ceil(n / block) floats) to block_sums
// (may be NULL) and returns the total.
double ck_softmax_weights(const float *x, int n, float max, float scale, float cutoff, float *block_sums);
// The index at which the running weight sum first exceeds r (0 <= r < total).
int ck_pick_weighted(const float *x, int n, float max, float scale, float cutoff, const float *block_sums, double r);
// The k largest values, descending (ties: lower index first), as indices and values; returns how many.
int ck_top_k(const float *x, int n, int k, int32_t *idx, float *val);
// The k-th largest value; scratch holds n floats (used when k > 256).
float ck_kth_largest(const float *x, int n, int k, float *scratch);
// Reorders w/idx so that the first m (returned, >= 1) are the fewest largest weights summing to >= target.
int ck_nucleus(float *w, int32_t *idx, int n, double target);
// Top-p: the fewest most likely tokens (of those with x >= cutoff) whose weights make up at least p of
// all, as weights and indices in w/idx (n entries of scratch each); returns how many.
int ck_top_p(const float *x, int n, float max, float scale, float cutoff, double p, float *w, int32_t *idx);

#ifdef __cplusplus
}
#endif
#endif
