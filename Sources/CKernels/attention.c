// Causal attention over a block-paged f16 KV cache, for a batch of sequences.
// Per (query row, head), over its keys (all earlier positions, or the last `window` of them), in f32
// with one fixed order for every row (prompt or generated) and every instruction set: s_j = hsum8(8 lanes of q·k_j over d mod 8) * scale, e_j = ck_expf(s_j - max),
// out = (sum over j in order of e_j v_j) * (1 / sum of e_j, added 8 positions at a time in double).
#include "internal.h"
#include "ck_math.h"
#include <stdatomic.h>

// ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)): how the AVX2 code reduces a register.
static inline float hsum8(const float *l) {
    const float t0 = l[0] + l[4], t1 = l[1] + l[5], t2 = l[2] + l[6], t3 = l[3] + l[7];
    return (t0 + t2) + (t1 + t3);
}

static void attn_unit_generic(const attn_ctx *c, float *scores, const ck_attn_seq *sq, int i, int h) {
    const int hd = c->head_dim, hd8 = hd & ~7, kvh = h / (c->n_head / c->n_head_kv);
    const size_t kv_stride = (size_t)c->n_head_kv * hd;
    const int n_kv = sq->pos0 + i + 1, lo = ck_attn_first(c, n_kv), n = n_kv - lo;
    float acc[CK_MAX_HEAD_DIM];
    const float *q = c->q + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        const uint16_t *kj = ck_kv_row(c->k, sq->blocks, c->bs_log2, lo + j, kv_stride) + (size_t)kvh * hd;
        float lanes[8] = {0};
        for (int d = 0; d < hd8; d++) lanes[d & 7] = __builtin_fmaf(fp16_to_fp32(kj[d]), q[d], lanes[d & 7]);
        float s = hsum8(lanes);
        for (int d = hd8; d < hd; d++) s = __builtin_fmaf(fp16_to_fp32(kj[d]), q[d], s);
        s *= c->scale;
        scores[j] = s;
        if (s > max) max = s;
    }
    double sum = 0;
    for (int j0 = 0; j0 < n; j0 += 8) {
        float l8[8];
        for (int l = 0; l < 8; l++) {
            const int j = j0 + l;
            l8[l] = j < n ? ck_expf(scores[j] - max) : 0.0f;
            if (j < n) scores[j] = l8[l];
        }
        sum += (double)hsum8(l8);
    }
    const float inv = (float)(1.0 / sum);
    memset(acc, 0, sizeof(float) * (size_t)hd);
    for (int j = 0; j < n; j++) {
        const uint16_t *vj = ck_kv_row(c->v, sq->blocks, c->bs_log2, lo + j, kv_stride) + (size_t)kvh * hd;
        for (int d = 0; d < hd; d++) acc[d] = __builtin_fmaf(fp16_to_fp32(vj[d]), scores[j], acc[d]);
    }
    float *o = c->out + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;
    for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
}

// Units (sequence, query row, head) are handed out one at a time, so threads stay busy whatever the
// sequences' lengths; each unit is computed whole by one thread, so results do not depend on it.
static void attn_run(attn_ctx *c, int ith, attn_unit_fn unit) {
    float *scores = c->scratch + (size_t)ith * c->scratch_per_thread;
    int s = 0, first = 0;
    for (;;) {
        const int u = atomic_fetch_add_explicit(&c->next_unit, 1, memory_order_relaxed);
        if (u >= c->units) return;
        while (u >= first + c->seqs[s].n_q * c->n_head) { first += c->seqs[s].n_q * c->n_head; s++; }
        unit(c, scores, &c->seqs[s], (u - first) / c->n_head, (u - first) % c->n_head);
    }
}

static void attn_task_generic(void *p, int ith, int nth) { (void)nth; attn_run(p, ith, attn_unit_generic); }
#ifdef CK_X86
static void attn_task_avx2(void *p, int ith, int nth) { (void)nth; attn_run(p, ith, ck_attn_unit_avx2); }
#endif

static void attention(ck_pool *pool, int portable, const float *q, float *out, int n_seq, const ck_attn_seq *seqs,
                      const uint16_t *k, const uint16_t *v, int bs_log2, int n_head, int n_head_kv, int head_dim,
                      float scale, int window, float *scratch, int scratch_per_thread) {
    attn_ctx c = { q, out, seqs, k, v, bs_log2, n_head, n_head_kv, head_dim, scale, window, scratch, scratch_per_thread, 0, 0 };
    for (int s = 0; s < n_seq; s++) c.units += seqs[s].n_q * n_head;
    atomic_init(&c.next_unit, 0);
    if (c.units == 0) return;
#ifdef CK_X86
    if (!portable && ck_has_avx2()) { ck_pool_run_dynamic(pool, attn_task_avx2, &c); return; }
#endif
    (void)portable;
    ck_pool_run_dynamic(pool, attn_task_generic, &c);
}

void ck_attention(ck_pool *pool, const float *q, float *out, int n_seq, const ck_attn_seq *seqs, const uint16_t *k,
                  const uint16_t *v, int block_size_log2, int n_head, int n_head_kv, int head_dim, float scale,
                  int window, float *scratch, int scratch_per_thread) {
    attention(pool, 0, q, out, n_seq, seqs, k, v, block_size_log2, n_head, n_head_kv, head_dim, scale, window, scratch,
              scratch_per_thread);
}

void ck_attention_portable(ck_pool *pool, const float *q, float *out, int n_seq, const ck_attn_seq *seqs,
                           const uint16_t *k, const uint16_t *v, int block_size_log2, int n_head, int n_head_kv,
                           int head_dim, float scale, int window, float *scratch, int scratch_per_thread) {
    attention(pool, 1, q, out, n_seq, seqs, k, v, block_size_log2, n_head, n_head_kv, head_dim, scale, window, scratch,
              scratch_per_thread);
}
