// Kernels of encoder models (BERT): LayerNorm with bias, exact (erf) GELU, and attention in which
// every token of a sequence sees every other (no KV cache: a sequence is encoded in one pass).
#include "internal.h"
#include "ck_math.h"
#include <stdatomic.h>

// Mean and variance in double, then y = (x - mean) / sqrt(var + eps) * w + b.
void ck_layer_norm(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    const double mean = sum / n;
    double var = 0;
    for (int i = 0; i < n; i++) { const double d = x[i] - mean; var += d * d; }
    const float rstd = (float)(1.0 / sqrt(var / n + eps)), m = (float)mean;
    for (int i = 0; i < n; i++) y[i] = __builtin_fmaf((x[i] - m) * rstd, w[i], b[i]);
}

// gelu(x) = x/2 (1 + erf(x / sqrt 2)), as BERT defines it (not tanh's approximation).
void ck_gelu_erf(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

typedef struct {
    const float *q, *k, *v;
    float *out;
    int ld, ldo, n_seq, n_head, head_dim;
    const int32_t *starts, *lengths;
    float scale;
    float *scratch;
    int scratch_per_thread, units;
    _Atomic int next;
} dense_attn;

// One (sequence, row, head): scores against all rows of its sequence, softmax, weighted sum of values.
static void dense_unit(const dense_attn *c, float *s, int seq, int i, int h) {
    const int hd = c->head_dim, n = c->lengths[seq], r0 = c->starts[seq];
    const float *q = c->q + (size_t)(r0 + i) * c->ld + (size_t)h * hd;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kj = c->k + (size_t)(r0 + j) * c->ld + (size_t)h * hd;
        float acc[8] = {0};
        for (int d = 0; d < hd; d++) acc[d & 7] = __builtin_fmaf(q[d], kj[d], acc[d & 7]);
        const float dot = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
        s[j] = dot * c->scale;
        if (s[j] > max) max = s[j];
    }
    double sum = 0;
    for (int j = 0; j < n; j++) { s[j] = ck_expf(s[j] - max); sum += s[j]; }
    const float inv = (float)(1.0 / sum);
    float *o = c->out + (size_t)(r0 + i) * c->ldo + (size_t)h * hd;
    float acc[CK_MAX_HEAD_DIM];
    for (int d = 0; d < hd; d++) acc[d] = 0;
    for (int j = 0; j < n; j++) {
        const float *vj = c->v + (size_t)(r0 + j) * c->ld + (size_t)h * hd;
        for (int d = 0; d < hd; d++) acc[d] = __builtin_fmaf(s[j], vj[d], acc[d]);
    }
    for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
}

static void dense_task(void *p, int ith, int nth) {
    (void)nth;
    dense_attn *c = p;
    float *s = c->scratch + (size_t)ith * c->scratch_per_thread;
    int seq = 0, first = 0;
    for (;;) {
        const int u = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (u >= c->units) return;
        while (u >= first + c->lengths[seq] * c->n_head) { first += c->lengths[seq] * c->n_head; seq++; }
        dense_unit(c, s, seq, (u - first) / c->n_head, (u - first) % c->n_head);
    }
}

void ck_attention_dense(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                        int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                        float scale, float *scratch, int scratch_per_thread) {
    dense_attn c = { q, k, v, out, ld, ldo, n_seq, n_head, head_dim, starts, lengths, scale, scratch,
                     scratch_per_thread, 0, 0 };
    for (int s = 0; s < n_seq; s++) c.units += lengths[s] * n_head;
    atomic_init(&c.next, 0);
    if (c.units == 0) return;
    ck_pool_run_dynamic(pool, dense_task, &c);
}
