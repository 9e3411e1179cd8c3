// Kernels of encoder models (BERT): LayerNorm with bias, exact (erf) GELU, and attention in which
// every token of a sequence sees every other (no KV cache: a sequence is encoded in one pass).
#include "internal.h"
#include "ck_math.h"
#include <stdatomic.h>
#ifdef CK_X86
#include "avx2_math.h"
#endif

// Mean and variance in double over 4 partial sums (element i into sum i mod 4, then (s0 + s1) + (s2 + s3)),
// as the AVX2 twin's 4 double lanes add them; y = fma((x - mean) * rstd, w, b) in float.
#ifdef CK_X86
AVX2 static void layer_norm_avx2(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    __m256d acc = _mm256_setzero_pd();
    int i = 0;
    for (; i + 4 <= n; i += 4) acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    double s[4];
    _mm256_storeu_pd(s, acc);
    for (; i < n; i++) s[i & 3] += x[i];
    const double mean = ((s[0] + s[1]) + (s[2] + s[3])) / n;
    const __m256d vm = _mm256_set1_pd(mean);
    acc = _mm256_setzero_pd();
    for (i = 0; i + 4 <= n; i += 4) {
        const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), vm);
        acc = _mm256_add_pd(acc, _mm256_mul_pd(d, d));
    }
    _mm256_storeu_pd(s, acc);
    for (; i < n; i++) { const double d = x[i] - mean; s[i & 3] += d * d; }
    const double var = (s[0] + s[1]) + (s[2] + s[3]);
    const float rstd = (float)(1.0 / sqrt(var / n + eps)), m = (float)mean;
    const __m256 vmf = _mm256_set1_ps(m), vr = _mm256_set1_ps(rstd);
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmf), vr);
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < n; i++) y[i] = __builtin_fmaf((x[i] - m) * rstd, w[i], b[i]);
}
#endif

void ck_layer_norm_portable(const float *x, const float *w, const float *b, float *y, int n, float eps) {
    double s[4] = { 0, 0, 0, 0 };
    for (int i = 0; i < n; i++) s[i & 3] += x[i];
    const double mean = ((s[0] + s[1]) + (s[2] + s[3])) / n;
    s[0] = s[1] = s[2] = s[3] = 0;
    for (int i = 0; i < n; i++) { const double d = x[i] - mean; s[i & 3] += d * d; }
    const double var = (s[0] + s[1]) + (s[2] + s[3]);
    const float rstd = (float)(1.0 / sqrt(var / n + eps)), m = (float)mean;
    for (int i = 0; i < n; i++) y[i] = __builtin_fmaf((x[i] - m) * rstd, w[i], b[i]);
}

void ck_layer_norm(const float *x, const float *w, const float *b, float *y, int n, float eps) {
#ifdef CK_X86
    if (ck_has_avx2()) { layer_norm_avx2(x, w, b, y, n, eps); return; }
#endif
    ck_layer_norm_portable(x, w, b, y, n, eps);
}

// gelu(x) = x/2 (1 + erf(x / sqrt 2)), as BERT defines it (not tanh's approximation). 1 + erf(u) comes
// from Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7): for u < 0 it is erfc(|u|) = p(t) exp(-u^2)
// itself, so small outputs keep their relative accuracy. The AVX2 twin does the same operations.
static const float GA1 = 0.254829592f, GA2 = -0.284496736f, GA3 = 1.421413741f, GA4 = -1.453152027f,
                   GA5 = 1.061405429f, GP = 0.3275911f;

static inline float gelu_erf_one(float x) {
    const float u = x * 0.70710678118654752f, a = fabsf(u);
    const float t = 1.0f / __builtin_fmaf(GP, a, 1.0f);
    const float p = t * __builtin_fmaf(__builtin_fmaf(__builtin_fmaf(__builtin_fmaf(GA5, t, GA4), t, GA3), t, GA2), t, GA1);
    const float y = p * ck_expf(-(a * a));
    return 0.5f * x * (u >= 0 ? 2.0f - y : y);
}

#ifdef CK_X86
AVX2 static void gelu_erf_avx2(const float *x, float *y, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 u = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
        const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.f), u);
        const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(GP), a, _mm256_set1_ps(1.0f)));
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(GA5), t, _mm256_set1_ps(GA4));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(GA3));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(GA2));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(GA1));
        p = _mm256_mul_ps(t, p);
        const __m256 e = v_expf(_mm256_xor_ps(_mm256_mul_ps(a, a), _mm256_set1_ps(-0.f)));
        const __m256 yv = _mm256_mul_ps(p, e);
        const __m256 pos = _mm256_cmp_ps(u, _mm256_setzero_ps(), _CMP_GE_OQ);
        const __m256 one_plus = _mm256_blendv_ps(yv, _mm256_sub_ps(_mm256_set1_ps(2.0f), yv), pos);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), one_plus));
    }
    for (; i < n; i++) y[i] = gelu_erf_one(x[i]);
}
#endif

void ck_gelu_erf(const float *x, float *y, int n) {
#ifdef CK_X86
    if (ck_has_avx2()) { gelu_erf_avx2(x, y, n); return; }
#endif
    for (int i = 0; i < n; i++) y[i] = gelu_erf_one(x[i]);
}

void ck_gelu_erf_portable(const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = gelu_erf_one(x[i]);
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
    int portable;
} dense_attn;

// A score's 8 partial sums (lane l: the products of d = l mod 8, in order), added as an AVX2 transpose
// of 8 scores with horizontal adds does: pairs, then pairs of pairs, then the halves.
static inline float sum8(const float *a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// One (sequence, row, head): scores against all rows of its sequence, softmax, weighted sum of values.
static void dense_unit(const dense_attn *c, float *s, int seq, int i, int h) {
    const int hd = c->head_dim, n = c->lengths[seq], r0 = c->starts[seq];
    const float *q = c->q + (size_t)(r0 + i) * c->ld + (size_t)h * hd;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        const float *kj = c->k + (size_t)(r0 + j) * c->ld + (size_t)h * hd;
        float acc[8] = {0};
        for (int d = 0; d < hd; d++) acc[d & 7] = __builtin_fmaf(q[d], kj[d], acc[d & 7]);
        const float dot = sum8(acc);
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

#ifdef CK_X86
// The same operations as dense_unit on 8 lanes (head_dim a multiple of 8): the same bits.
AVX2 static void dense_unit_avx2(const dense_attn *c, float *s, int seq, int i, int h) {
    const int hd = c->head_dim, n = c->lengths[seq], r0 = c->starts[seq];
    const size_t ld = (size_t)c->ld;
    const float *q = c->q + (size_t)(r0 + i) * ld + (size_t)h * hd;
    const __m256 scale = _mm256_set1_ps(c->scale);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    // 8 keys at a time, their partial sums transposed into one vector of scores; a last group of fewer
    // repeats its last key in the lanes past the end (written to the scratch's slack, never read).
    for (int j = 0; j < n; j += 8) {
        const float *kt[8];
        for (int t = 0; t < 8; t++) kt[t] = c->k + (size_t)(r0 + (j + t < n ? j + t : n - 1)) * ld + (size_t)h * hd;
        __m256 a[8];
        for (int t = 0; t < 8; t++) a[t] = _mm256_setzero_ps();
        for (int d = 0; d < hd; d += 8) {
            const __m256 qd = _mm256_loadu_ps(q + d);
            for (int t = 0; t < 8; t++) a[t] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kt[t] + d), a[t]);
        }
        const __m256 g0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
        const __m256 g1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
        const __m256 dots = _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
        const __m256 sj = _mm256_mul_ps(dots, scale);
        _mm256_storeu_ps(s + j, sj);
        vmax = _mm256_max_ps(vmax, sj);
    }
    // The repeated lanes hold a real key's score: the maximum is the valid scores' maximum.
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float max = -INFINITY;
    for (int t = 0; t < 8; t++) if (lanes[t] > max) max = lanes[t];
    double sum = 0;
    const __m256 vm = _mm256_set1_ps(max);
    for (int j = 0; j < n; j += 8) _mm256_storeu_ps(s + j, v_expf(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm)));
    for (int j = 0; j < n; j++) sum += s[j];
    const float inv = (float)(1.0 / sum);
    __m256 acc[CK_MAX_HEAD_DIM / 8];
    for (int d = 0; d < hd / 8; d++) acc[d] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        const float *vj = c->v + (size_t)(r0 + j) * c->ld + (size_t)h * hd;
        const __m256 sj = _mm256_set1_ps(s[j]);
        for (int d = 0; d < hd / 8; d++) acc[d] = _mm256_fmadd_ps(sj, _mm256_loadu_ps(vj + 8 * d), acc[d]);
    }
    float *o = c->out + (size_t)(r0 + i) * c->ldo + (size_t)h * hd;
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int d = 0; d < hd / 8; d++) _mm256_storeu_ps(o + 8 * d, _mm256_mul_ps(acc[d], vinv));
}
#endif

static void dense_task(void *p, int ith, int nth) {
    (void)nth;
    dense_attn *c = p;
    float *s = c->scratch + (size_t)ith * c->scratch_per_thread;
    int seq = 0, first = 0;
    for (;;) {
        const int u = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
        if (u >= c->units) return;
        while (u >= first + c->lengths[seq] * c->n_head) { first += c->lengths[seq] * c->n_head; seq++; }
#ifdef CK_X86
        if (!c->portable && c->head_dim % 8 == 0 && ck_has_avx2()) {
            dense_unit_avx2(c, s, seq, (u - first) / c->n_head, (u - first) % c->n_head);
            continue;
        }
#endif
        dense_unit(c, s, seq, (u - first) / c->n_head, (u - first) % c->n_head);
    }
}

static void attention_dense(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                            int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                            float scale, float *scratch, int scratch_per_thread, int portable) {
    dense_attn c = { q, k, v, out, ld, ldo, n_seq, n_head, head_dim, starts, lengths, scale, scratch,
                     scratch_per_thread, 0, 0, portable };
    for (int s = 0; s < n_seq; s++) c.units += lengths[s] * n_head;
    atomic_init(&c.next, 0);
    if (c.units == 0) return;
    ck_pool_run_dynamic(pool, dense_task, &c);
}

void ck_attention_dense(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                        int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                        float scale, float *scratch, int scratch_per_thread) {
    attention_dense(pool, q, k, v, ld, out, ldo, n_seq, starts, lengths, n_head, head_dim, scale, scratch, scratch_per_thread, 0);
}

void ck_attention_dense_portable(ck_pool *pool, const float *q, const float *k, const float *v, int ld, float *out, int ldo,
                                 int n_seq, const int32_t *starts, const int32_t *lengths, int n_head, int head_dim,
                                 float scale, float *scratch, int scratch_per_thread) {
    attention_dense(pool, q, k, v, ld, out, ldo, n_seq, starts, lengths, n_head, head_dim, scale, scratch, scratch_per_thread, 1);
}
