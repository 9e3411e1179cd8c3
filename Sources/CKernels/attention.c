// Causal attention over a block-paged f16 KV cache, for a batch of sequences.
// Per (query row, head): scores = K·q (q rounded to f16), softmax(scores * scale), out = Σ f16(p_j) v_j.
// Rows of prompt tokens follow the reference's tiled GEMM lane layout (8 lanes); rows of generated
// tokens its vector-dot layout (4×8 lanes), so each matches the reference bit for bit, and a row's
// result does not depend on what else is in the batch.
#include "internal.h"
#include "ggml_exact.h"
#include <stdatomic.h>

static void attn_unit_generic(const attn_ctx *c, float *scores, const ck_attn_seq *sq, int i, int h) {
    const int hd = c->head_dim, kvh = h / (c->n_head / c->n_head_kv);
    const size_t kv_stride = (size_t)c->n_head_kv * hd;
    const int n_kv = sq->pos0 + i + 1, gemm = sq->pos0 + i < sq->decode_from;
    float qf[CK_MAX_HEAD_DIM];
    float acc[CK_MAX_HEAD_DIM * 32];
    const float *q = c->q + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;
    for (int d = 0; d < hd; d++) qf[d] = fp16_to_fp32(fp32_to_fp16(q[d]));
    float max = -INFINITY;
    for (int j = 0; j < n_kv; j++) {
        const uint16_t *kj = ck_kv_row(c->k, sq->blocks, c->bs_log2, j, kv_stride) + (size_t)kvh * hd;
        float lanes[32] = {0};
        float s;
        if (gemm && hd % 8 == 0) {
            for (int d = 0; d < hd; d++) lanes[d & 7] = __builtin_fmaf(fp16_to_fp32(kj[d]), qf[d], lanes[d & 7]);
            s = ck_hsum8_a(lanes);
        } else {
            const int np = hd & ~31;
            for (int d = 0; d < np; d++) lanes[d & 31] = __builtin_fmaf(fp16_to_fp32(kj[d]), qf[d], lanes[d & 31]);
            double sd = ck_hsum32_dot(lanes);
            for (int d = np; d < hd; d++) sd += (double)(fp16_to_fp32(kj[d]) * qf[d]);
            s = (float)sd;
        }
        s *= c->scale;
        scores[j] = s;
        if (s > max) max = s;
    }
    double sum = 0;
    for (int j0 = 0; j0 < n_kv; j0 += 8) {
        float l8[8];
        for (int l = 0; l < 8; l++) {
            const int j = j0 + l;
            l8[l] = j < n_kv ? ck_vexpf(scores[j] - max) : 0.0f;
            if (j < n_kv) scores[j] = l8[l];
        }
        sum += (double)ck_hsum8_a(l8);
    }
    const float inv = (float)(1.0 / sum);
    for (int j = 0; j < n_kv; j++) scores[j] = fp16_to_fp32(fp32_to_fp16(scores[j] * inv));
    const int lanes = gemm ? 8 : 32;
    memset(acc, 0, sizeof(float) * (size_t)hd * lanes);
    for (int j = 0; j < n_kv; j++) {
        const uint16_t *vj = ck_kv_row(c->v, sq->blocks, c->bs_log2, j, kv_stride) + (size_t)kvh * hd;
        const float pj = scores[j];
        const int lane = j & (lanes - 1);
        for (int d = 0; d < hd; d++) acc[d * lanes + lane] = __builtin_fmaf(fp16_to_fp32(vj[d]), pj, acc[d * lanes + lane]);
    }
    float *o = c->out + ((size_t)(sq->row0 + i) * c->n_head + h) * hd;
    for (int d = 0; d < hd; d++) o[d] = lanes == 8 ? ck_hsum8_a(acc + d * 8) : ck_hsum32_dot(acc + d * 32);
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
                      float scale, float *scratch, int scratch_per_thread) {
    attn_ctx c = { q, out, seqs, k, v, bs_log2, n_head, n_head_kv, head_dim, scale, scratch, scratch_per_thread, 0, 0 };
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
                  float *scratch, int scratch_per_thread) {
    attention(pool, 0, q, out, n_seq, seqs, k, v, block_size_log2, n_head, n_head_kv, head_dim, scale, scratch,
              scratch_per_thread);
}

void ck_attention_portable(ck_pool *pool, const float *q, float *out, int n_seq, const ck_attn_seq *seqs,
                           const uint16_t *k, const uint16_t *v, int block_size_log2, int n_head, int n_head_kv,
                           int head_dim, float scale, float *scratch, int scratch_per_thread) {
    attention(pool, 1, q, out, n_seq, seqs, k, v, block_size_log2, n_head, n_head_kv, head_dim, scale, scratch,
              scratch_per_thread);
}
