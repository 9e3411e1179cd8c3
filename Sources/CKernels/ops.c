#include "internal.h"
#include <stdlib.h>
#include <stdatomic.h>
#include <time.h>
#include "ck_math.h"
#ifdef CK_X86
#include "avx2_math.h"
#endif

// ---- matmul ----
typedef struct {
    int wt; const char *w; size_t w_stride; int rows; int k;
    int vt; const char *x; size_t x_stride; int cols; float *y; int ldy;
} matmul_ctx;

typedef struct { const matmul_ctx *m; int count; ck_ranges ranges; } matmul_job;

#define ROW_BLOCK 16
_Static_assert(ROW_BLOCK % 8 == 0, "packed groups of 8 rows must not straddle row blocks");

static void matmul_blocks(const matmul_ctx *c, int b0, int b1) {
    const int r1 = b1 * ROW_BLOCK < c->rows ? b1 * ROW_BLOCK : c->rows;
    if (c->wt == CK_TYPE_F32_P16) {
        ck_matmul_panels_rows(c->k, (const float *)c->w, c->rows, b0 * ROW_BLOCK, r1, c->x, c->x_stride, c->cols, c->y, c->ldy);
        return;
    }
    if (c->wt >= CK_TYPE_PACKED) {
        for (int r = b0 * ROW_BLOCK; r < r1; r += 8)
            ck_matmul_packed_group(c->wt, c->vt, c->k / QK, c->w + (size_t)r * c->w_stride, c->x, c->x_stride,
                                   c->cols, c->y + r, c->ldy);
        return;
    }
#ifdef CK_X86
    if ((c->wt == CK_TYPE_F16 || c->wt == CK_TYPE_F32) && c->vt == CK_TYPE_F32 && ck_has_avx2()) {
        ck_matmul_float_rows_avx2(c->wt == CK_TYPE_F16, c->k, c->w, c->w_stride, b0 * ROW_BLOCK, r1, c->x, c->x_stride,
                                  c->cols, c->y, c->ldy);
        return;
    }
#endif
    for (int col = 0; col < c->cols; col++) {
        const void *xc = c->x + (size_t)col * c->x_stride;
        float *yc = c->y + (size_t)col * c->ldy;
        for (int r = b0 * ROW_BLOCK; r < r1; r++) yc[r] = ck_vec_dot(c->wt, c->vt, c->k, c->w + (size_t)r * c->w_stride, xc);
    }
}

static int row_blocks(const matmul_ctx *m) { return (m->rows + ROW_BLOCK - 1) / ROW_BLOCK; }

// Row blocks of all the job's matrices in one sequence, shared out with stealing: each thread
// streams its own stretch of weights, and one that falls behind (or never wakes) loses its tail.
static void matmul_task(void *p, int ith, int nth) {
    (void)nth;
    matmul_job *job = p;
    // A single activation row makes a row block a fraction of a microsecond: take several at a time.
    // Panel matrices reuse each block of activation columns over several panels.
    const int grain = job->m[0].cols < 4 || job->m[0].wt == CK_TYPE_F32_P16 ? 4 : 1;
    int g0, g1;
    while (ck_ranges_next(&job->ranges, ith, grain, &g0, &g1)) {
        int base = 0;
        for (int i = 0; i < job->count; i++) {
            const int nb = row_blocks(&job->m[i]);
            const int lo = g0 > base ? g0 - base : 0, hi = g1 - base < nb ? g1 - base : nb;
            if (lo < hi) matmul_blocks(&job->m[i], lo, hi);
            base += nb;
        }
    }
}

static void run_matmuls(ck_pool *pool, matmul_ctx *m, int count) {
    matmul_job job = { m, count };
    int total = 0;
    for (int i = 0; i < count; i++) total += row_blocks(&m[i]);
    ck_ranges_init(&job.ranges, total, ck_pool_size(pool));
    ck_pool_run_dynamic(pool, matmul_task, &job);
}

void ck_matmul_prefetch(ck_pool *pool, int count, const void *const *w, const size_t *w_stride, const int *rows) {
    const int n = ck_pool_size(pool);
    int total = 0;
    for (int i = 0; i < count; i++) total += (rows[i] + ROW_BLOCK - 1) / ROW_BLOCK;
    for (int t = 0; t < n && t < CK_RANGE_SLOTS; t++) {
        // The row blocks ck_ranges_init will deal thread t, as byte ranges of the matrices.
        const int g0 = (int)((long)total * t / n), g1 = (int)((long)total * (t + 1) / n);
        const void *base[4];
        size_t bytes[4];
        int segments = 0, first = 0;
        for (int i = 0; i < count && segments < 4; i++) {
            const int nb = (rows[i] + ROW_BLOCK - 1) / ROW_BLOCK;
            const int lo = g0 > first ? g0 - first : 0, hi = g1 - first < nb ? g1 - first : nb;
            if (lo < hi) {
                const int r0 = lo * ROW_BLOCK, r1 = hi * ROW_BLOCK < rows[i] ? hi * ROW_BLOCK : rows[i];
                base[segments] = (const char *)w[i] + (size_t)r0 * w_stride[i];
                bytes[segments] = (size_t)(r1 - r0) * w_stride[i];
                segments++;
            }
            first += nb;
        }
        ck_pool_prefetch(pool, t, segments, base, bytes);
    }
}

void ck_matmul_multi(ck_pool *pool, int count, const int *wt, const void *const *w, const size_t *w_stride,
                     const int *rows, int k, int vt, const void *x, size_t x_stride, int cols, float *const *y,
                     const int *ldy) {
    matmul_ctx m[8];
    if (count > 8) count = 8;
    for (int i = 0; i < count; i++) {
        m[i] = (matmul_ctx){ wt[i], w[i], w_stride[i], rows[i], k, vt, x, x_stride, cols, y[i], ldy[i] };
    }
    run_matmuls(pool, m, count);
}

void ck_matmul(ck_pool *pool, int wt, const void *w, size_t w_stride, int rows, int k,
               int vt, const void *x, size_t x_stride, int cols, float *y, int ldy) {
    matmul_ctx c = { wt, w, w_stride, rows, k, vt, x, x_stride, cols, y, ldy };
    run_matmuls(pool, &c, 1);
}

typedef struct { int vt; const float *x; int ldx; int cols; int k; char *y; size_t stride; _Atomic int next; } quant_ctx;

static void quant_task(void *p, int ith, int nth) {
    (void)ith; (void)nth;
    quant_ctx *c = p;
    for (int col; (col = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed)) < c->cols;)
        ck_quantize_row(c->vt, c->x + (size_t)col * c->ldx, c->y + (size_t)col * c->stride, c->k);
}

void ck_quantize_rows(ck_pool *pool, int vt, const float *x, int ldx, int cols, int k, void *y, size_t stride) {
    quant_ctx c = { vt, x, ldx, cols, k, y, stride, 0 };
    if (cols < 4) { quant_task(&c, 0, 1); return; }
    ck_pool_run_dynamic(pool, quant_task, &c);
}

// ---- elementwise ----
void ck_rms_norm(const float *x, const float *w, float *y, int n, float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float scale = 1.0f / sqrtf((float)(sum / n) + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void ck_rope(float *x, int n_heads, int head_dim, int n_rot, int pos, float freq_base, float freq_scale,
             const float *freq_factors, int neox) {
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float cache[512];
    float theta = (float)pos;
    const int half = n_rot / 2;
    for (int i = 0; i < half && i < 256; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float t = freq_scale * (theta / ff);
        cache[2 * i] = cosf(t);
        cache[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            const float c = cache[2 * i], s = cache[2 * i + 1];
            const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            // The reference's compiler contracts these into FMAs; match its rounding.
            v[a] = __builtin_fmaf(x0, c, -(x1 * s));
            v[b] = __builtin_fmaf(x0, s, x1 * c);
        }
    }
}

// Gated units: out = act(g) * up with act(g) = g / (1 + exp(-z)): z = g for SiLU; for GELU with tanh's
// approximation z = 2u, u = sqrt(2/pi) (g + 0.044715 g^3), since 0.5 (1 + tanh u) = 1 / (1 + exp(-2u)).
// One exp for both, and the AVX2 twin does the same operations, so both give the same bits.
#define GELU_C1 1.5957691216057308f   /* 2 sqrt(2/pi) */
#define GELU_C2 0.0713548162726009f   /* 2 sqrt(2/pi) 0.044715 */
static inline float glu_z(float g, int gelu) { return gelu ? g * __builtin_fmaf(GELU_C2, g * g, GELU_C1) : g; }

static void glu_generic(const float *gate, const float *up, float *out, int n, int gelu) {
    for (int i = 0; i < n; i++) out[i] = (gate[i] / (1.0f + ck_expf(0.0f - glu_z(gate[i], gelu)))) * up[i];
}
#ifdef CK_X86
AVX2 static void glu_fast(const float *gate, const float *up, float *out, int n, int gelu) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    const __m256 c1 = _mm256_set1_ps(GELU_C1), c2 = _mm256_set1_ps(GELU_C2);
    int i = 0;
    for (; i + 7 < n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 z = gelu ? _mm256_mul_ps(g, _mm256_fmadd_ps(c2, _mm256_mul_ps(g, g), c1)) : g;
        const __m256 act = _mm256_div_ps(g, _mm256_add_ps(one, v_expf(_mm256_sub_ps(zero, z))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(act, _mm256_loadu_ps(up + i)));
    }
    glu_generic(gate + i, up + i, out + i, n - i, gelu);
}
#endif
static void glu(const float *gate, const float *up, float *out, int n, int gelu) {
#ifdef CK_X86
    if (ck_has_avx2()) { glu_fast(gate, up, out, n, gelu); return; }
#endif
    glu_generic(gate, up, out, n, gelu);
}
void ck_swiglu(const float *gate, const float *up, float *out, int n) { glu(gate, up, out, n, 0); }
void ck_geglu(const float *gate, const float *up, float *out, int n) { glu(gate, up, out, n, 1); }
void ck_swiglu_portable(const float *gate, const float *up, float *out, int n) { glu_generic(gate, up, out, n, 0); }
void ck_geglu_portable(const float *gate, const float *up, float *out, int n) { glu_generic(gate, up, out, n, 1); }

void ck_moe_route(const float *logits, int n_expert, int k, int normalize, int32_t *ids, float *weights) {
    float max = -INFINITY, p[256], sum = 0;
    for (int e = 0; e < n_expert; e++) max = logits[e] > max ? logits[e] : max;
    for (int e = 0; e < n_expert; e++) { p[e] = ck_expf(logits[e] - max); sum += p[e]; }
    for (int e = 0; e < n_expert; e++) p[e] /= sum;
    float picked = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n_expert; e++) {
            int taken = 0;
            for (int i = 0; i < j; i++) taken |= ids[i] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        ids[j] = best;
        weights[j] = p[best];
        picked += p[best];
    }
    if (!normalize) return;
    if (picked < 6.103515625e-5f) picked = 6.103515625e-5f;
    for (int j = 0; j < k; j++) weights[j] /= picked;
}

void ck_counter_add(int64_t *counter, int64_t value) {
    atomic_fetch_add_explicit((_Atomic int64_t *)counter, value, memory_order_relaxed);
}
int64_t ck_counter_load(const int64_t *counter) {
    return atomic_load_explicit((_Atomic const int64_t *)counter, memory_order_relaxed);
}

float ck_sigmoid_dot(const float *x, const float *w, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * (double)w[i];
    return 1.0f / (1.0f + ck_expf(-(float)s));
}

void ck_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

// ---- the same over rows, shared out on the pool ----
// Below this many rows the work is too small to be worth a dispatch.
#define ROWS_PARALLEL 4

typedef struct {
    int op, rows, n, ld;
    const float *x, *w, *up;
    float *y;
    float eps;
    _Atomic int next;
    // rope + store
    float *q, *k; const float *v; int ldq, ldkv; const int32_t *positions; const size_t *slots;
    uint16_t *kc, *vc; int heads, kv_heads, head_dim, n_rot, neox; float base, scale; const float *factors;
} rows_job;

enum { ROWS_NORM, ROWS_SWIGLU, ROWS_GEGLU, ROWS_ADD, ROWS_ROPE, ROWS_LAYER_NORM, ROWS_GELU };

static void rows_one(const rows_job *j, int r) {
    switch (j->op) {
    case ROWS_NORM: ck_rms_norm(j->x + (size_t)r * j->ld, j->w, j->y + (size_t)r * j->ld, j->n, j->eps); break;
    case ROWS_SWIGLU: ck_swiglu(j->x + (size_t)r * j->n, j->up + (size_t)r * j->n, j->y + (size_t)r * j->n, j->n); break;
    case ROWS_GEGLU: ck_geglu(j->x + (size_t)r * j->n, j->up + (size_t)r * j->n, j->y + (size_t)r * j->n, j->n); break;
    case ROWS_ADD: ck_add(j->y + (size_t)r * j->n, j->x + (size_t)r * j->n, j->n); break;
    case ROWS_LAYER_NORM: ck_layer_norm(j->x + (size_t)r * j->ld, j->w, j->up, j->y + (size_t)r * j->ld, j->n, j->eps); break;
    case ROWS_GELU: ck_gelu_erf(j->y + (size_t)r * j->n, j->y + (size_t)r * j->n, j->n); break;
    case ROWS_ROPE: {
        float *q = j->q + (size_t)r * j->ldq, *k = j->k + (size_t)r * j->ldkv;
        const int pos = j->positions[r];
        ck_rope(q, j->heads, j->head_dim, j->n_rot, pos, j->base, j->scale, j->factors, j->neox);
        ck_rope(k, j->kv_heads, j->head_dim, j->n_rot, pos, j->base, j->scale, j->factors, j->neox);
        ck_fp32_to_fp16_row(k, j->kc + j->slots[r], j->kv_heads * j->head_dim);
        ck_fp32_to_fp16_row(j->v + (size_t)r * j->ldkv, j->vc + j->slots[r], j->kv_heads * j->head_dim);
        break;
    }
    default: break;
    }
}

static void rows_task(void *p, int ith, int nth) {
    (void)ith; (void)nth;
    rows_job *j = p;
    for (int r; (r = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->rows;) rows_one(j, r);
}

static void run_rows(ck_pool *pool, rows_job *j) {
    if (j->rows < ROWS_PARALLEL || ck_pool_size(pool) == 1) {
        for (int r = 0; r < j->rows; r++) rows_one(j, r);
        return;
    }
    atomic_init(&j->next, 0);
    ck_pool_run_dynamic(pool, rows_task, j);
}

void ck_rms_norm_rows(ck_pool *pool, const float *x, const float *w, float *y, int rows, int ld, int n, float eps) {
    rows_job j = { .op = ROWS_NORM, .rows = rows, .n = n, .ld = ld, .x = x, .w = w, .y = y, .eps = eps };
    run_rows(pool, &j);
}

void ck_swiglu_rows(ck_pool *pool, const float *gate, const float *up, float *out, int rows, int n) {
    rows_job j = { .op = ROWS_SWIGLU, .rows = rows, .n = n, .x = gate, .up = up, .y = out };
    run_rows(pool, &j);
}

void ck_geglu_rows(ck_pool *pool, const float *gate, const float *up, float *out, int rows, int n) {
    rows_job j = { .op = ROWS_GEGLU, .rows = rows, .n = n, .x = gate, .up = up, .y = out };
    run_rows(pool, &j);
}

void ck_add_rows(ck_pool *pool, float *y, const float *x, int rows, int n) {
    rows_job j = { .op = ROWS_ADD, .rows = rows, .n = n, .x = x, .y = y };
    run_rows(pool, &j);
}

void ck_layer_norm_rows(ck_pool *pool, const float *x, const float *w, const float *b, float *y, int rows, int ld,
                        int n, float eps) {
    rows_job j = { .op = ROWS_LAYER_NORM, .rows = rows, .n = n, .ld = ld, .x = x, .w = w, .up = b, .y = y, .eps = eps };
    run_rows(pool, &j);
}

void ck_gelu_erf_rows(ck_pool *pool, float *x, int rows, int n) {
    rows_job j = { .op = ROWS_GELU, .rows = rows, .n = n, .y = x };
    run_rows(pool, &j);
}

void ck_rope_store_rows(ck_pool *pool, float *q, int ldq, float *k, const float *v, int ldkv, int rows,
                        const int32_t *positions, const size_t *slots, uint16_t *k_cache, uint16_t *v_cache,
                        int n_heads, int n_kv_heads, int head_dim, int n_rot, float freq_base, float freq_scale,
                        const float *freq_factors, int neox) {
    rows_job j = { .op = ROWS_ROPE, .rows = rows, .q = q, .k = k, .v = v, .ldq = ldq, .ldkv = ldkv,
                   .positions = positions, .slots = slots, .kc = k_cache, .vc = v_cache, .heads = n_heads,
                   .kv_heads = n_kv_heads, .head_dim = head_dim, .n_rot = n_rot, .neox = neox, .base = freq_base,
                   .scale = freq_scale, .factors = freq_factors };
    run_rows(pool, &j);
}

// ---- memory bandwidth probe ----
typedef struct { const uint64_t *buf; size_t words; uint64_t sink[64]; } stream_ctx;

static void stream_task(void *p, int ith, int nth) {
    stream_ctx *c = p;
    const size_t w0 = c->words * (size_t)ith / (size_t)nth, w1 = c->words * (size_t)(ith + 1) / (size_t)nth;
    uint64_t a = 0, b = 0, x = 0, y = 0;
    for (size_t i = w0; i + 4 <= w1; i += 4) {
        a ^= c->buf[i]; b ^= c->buf[i + 1]; x ^= c->buf[i + 2]; y ^= c->buf[i + 3];
    }
    c->sink[ith % 64] = a ^ b ^ x ^ y;
}

double ck_stream_read_gbs(ck_pool *pool, size_t bytes, int repeats) {
    const size_t words = bytes / 8;
    uint64_t *buf = malloc(words * 8);
    if (!buf) return 0;
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    stream_ctx c = { buf, words, {0} };
    double best = 1e30;
    for (int r = 0; r < repeats; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ck_pool_run(pool, stream_task, &c);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        const double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        if (s < best) best = s;
    }
    free(buf);
    return (double)(words * 8) / best / 1e9;
}
