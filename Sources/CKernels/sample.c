// Sampling over one row of logits in a few linear passes: no sort of the vocabulary.
// Weights are exp((x - max) * scale) by ck_expf, summed in 8 lanes per block of CK_SAMPLE_BLOCK in
// the same order by the scalar and AVX2 paths, so a seed picks the same token on either.
#include "internal.h"
#include "ck_math.h"
#include <float.h>
#ifdef CK_X86
#include "avx2_math.h"
#endif

static inline float lane_reduce(const float *l) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

// Weights of x[0..m) (m <= CK_SAMPLE_BLOCK) into w; returns their 8-lane sum.
static float block_weights_generic(const float *x, int m, float max, float scale, float cutoff, float *w) {
    float acc[8] = {0};
    for (int i = 0; i < m; i++) {
        const float v = x[i] >= cutoff ? ck_expf((x[i] - max) * scale) : 0.0f;
        if (w) w[i] = v;
        acc[i & 7] += v;
    }
    return lane_reduce(acc);
}

#ifdef CK_X86
AVX2 static float block_weights_avx2(const float *x, int m, float max, float scale, float cutoff, float *w) {
    const __m256 vmax = _mm256_set1_ps(max), vs = _mm256_set1_ps(scale), vc = _mm256_set1_ps(cutoff);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 keep = _mm256_cmp_ps(v, vc, _CMP_GE_OQ);
        const __m256 e = _mm256_and_ps(keep, v_expf(_mm256_mul_ps(_mm256_sub_ps(v, vmax), vs)));
        if (w) _mm256_storeu_ps(w + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float l[8];
    _mm256_storeu_ps(l, acc);
    for (; i < m; i++) {
        const float v = x[i] >= cutoff ? ck_expf((x[i] - max) * scale) : 0.0f;
        if (w) w[i] = v;
        l[i & 7] += v;
    }
    return lane_reduce(l);
}
#endif

static float block_weights(const float *x, int m, float max, float scale, float cutoff, float *w) {
#ifdef CK_X86
    if (ck_has_avx2()) return block_weights_avx2(x, m, max, scale, cutoff, w);
#endif
    return block_weights_generic(x, m, max, scale, cutoff, w);
}

// -inf logits (masked tokens) never pass the cutoff.
static inline float clamp_cutoff(float cutoff) { return cutoff > -FLT_MAX ? cutoff : -FLT_MAX; }

static float max_generic(const float *x, int n) {
    float m = -INFINITY;
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

#ifdef CK_X86
AVX2 static float max_avx2(const float *x, int n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);  // NaN lanes keep the running max
        m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
    }
    float l[8];
    _mm256_storeu_ps(l, _mm256_max_ps(m0, m1));
    float m = max_generic(l, 8);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}
#endif

float ck_max_f32(const float *x, int n) {
#ifdef CK_X86
    if (ck_has_avx2()) return max_avx2(x, n);
#endif
    return max_generic(x, n);
}

int ck_argmax_f32(const float *x, int n) {
    const float m = ck_max_f32(x, n);
    for (int i = 0; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

double ck_softmax_weights(const float *x, int n, float max, float scale, float cutoff, float *block_sums) {
    cutoff = clamp_cutoff(cutoff);
    double total = 0;
    for (int b = 0, i = 0; i < n; b++, i += CK_SAMPLE_BLOCK) {
        const int m = n - i < CK_SAMPLE_BLOCK ? n - i : CK_SAMPLE_BLOCK;
        const float s = block_weights(x + i, m, max, scale, cutoff, NULL);
        if (block_sums) block_sums[b] = s;
        total += s;
    }
    return total;
}

int ck_pick_weighted(const float *x, int n, float max, float scale, float cutoff, const float *block_sums, double r) {
    cutoff = clamp_cutoff(cutoff);
    const int blocks = (n + CK_SAMPLE_BLOCK - 1) / CK_SAMPLE_BLOCK;
    int b = 0, last = -1;
    double seen = 0;
    for (; b < blocks; b++) {
        if (block_sums[b] > 0) last = b;
        if (block_sums[b] > 0 && seen + block_sums[b] > r) break;
        seen += block_sums[b];
    }
    if (b == blocks) {  // r at the very top (rounding): the last block with weight
        if (last < 0) return ck_argmax_f32(x, n);
        b = last;
        r = seen;
        seen -= block_sums[b];
    }
    float w[CK_SAMPLE_BLOCK];
    const int start = b * CK_SAMPLE_BLOCK;
    const int m = n - start < CK_SAMPLE_BLOCK ? n - start : CK_SAMPLE_BLOCK;
    block_weights(x + start, m, max, scale, cutoff, w);
    int pick = -1;
    for (int i = 0; i < m; i++) {
        if (w[i] <= 0) continue;
        pick = i;
        seen += w[i];
        if (seen > r) break;
    }
    return pick < 0 ? ck_argmax_f32(x, n) : start + pick;
}

// ---- the k largest ----

// Inserts (v, i) into the descending list of at most k; ties keep the lower index first.
static inline int top_insert(float *val, int32_t *idx, int count, int k, float v, int32_t i) {
    int j = count < k ? count : k - 1;
    while (j > 0 && val[j - 1] < v) {
        val[j] = val[j - 1];
        idx[j] = idx[j - 1];
        j--;
    }
    val[j] = v;
    idx[j] = i;
    return count < k ? count + 1 : k;
}

static int top_k_generic(const float *x, int n, int k, int32_t *idx, float *val) {
    int count = 0;
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        if (v != v) continue;
        if (count < k || v > val[k - 1]) count = top_insert(val, idx, count, k, v, i);
    }
    return count;
}

#ifdef CK_X86
AVX2 static int top_k_avx2(const float *x, int n, int k, int32_t *idx, float *val) {
    int count = 0, i = 0;
    for (; i < n && count < k; i++)
        if (x[i] == x[i]) count = top_insert(val, idx, count, k, x[i], i);
    __m256 thr = _mm256_set1_ps(val[k - 1]);
    for (; i + 8 <= n; i += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), thr, _CMP_GT_OQ));
        if (!mask) continue;
        for (int l = 0; l < 8; l++)
            if ((mask >> l) & 1 && x[i + l] > val[k - 1]) count = top_insert(val, idx, count, k, x[i + l], i + l);
        thr = _mm256_set1_ps(val[k - 1]);
    }
    for (; i < n; i++)
        if (x[i] > val[k - 1]) count = top_insert(val, idx, count, k, x[i], i);
    return count;
}
#endif

int ck_top_k(const float *x, int n, int k, int32_t *idx, float *val) {
    if (k <= 0 || n <= 0) return 0;
#ifdef CK_X86
    if (ck_has_avx2()) return top_k_avx2(x, n, k, idx, val);
#endif
    return top_k_generic(x, n, k, idx, val);
}

static inline void swapf(float *a, int i, int j) { const float t = a[i]; a[i] = a[j]; a[j] = t; }
static inline void swapi(int32_t *a, int i, int j) { const int32_t t = a[i]; a[i] = a[j]; a[j] = t; }

static float median3(float a, float b, float c) {
    if (a > b) { const float t = a; a = b; b = t; }
    if (b > c) b = c;
    return a > b ? a : b;
}

// Three-way partition of v[lo, hi) (and idx alongside, when given) into > p, == p, < p; returns the
// bounds of the == part in *a, *b.
static void partition3(float *v, int32_t *idx, int lo, int hi, float p, int *a, int *b) {
    int lt = lo, i = lo, gt = hi;
    while (i < gt) {
        if (v[i] > p) { swapf(v, i, lt); if (idx) swapi(idx, i, lt); lt++; i++; }
        else if (v[i] < p) { gt--; swapf(v, i, gt); if (idx) swapi(idx, i, gt); }
        else i++;
    }
    *a = lt;
    *b = gt;
}

// Values are binned by their distance below the maximum, HIST_PER_UNIT bins per unit, the last bin
// holding everything further down: one counting pass finds the bin that holds the boundary, and
// only that bin's values are then selected among.
#define HIST_BINS 2048
#define HIST_PER_UNIT 64.0f

static inline int hist_bin(float d) {
    const float b = d * HIST_PER_UNIT;
    return b < (float)(HIST_BINS - 1) ? (int)b : HIST_BINS - 1;
}

// The value of rank `want` (0 = largest) among v[0..m), reordering v.
static float select_rank(float *v, int m, int want) {
    int lo = 0, hi = m;
    while (hi - lo > 1) {
        const float p = median3(v[lo], v[lo + (hi - lo) / 2], v[hi - 1]);
        int a, b;
        partition3(v, NULL, lo, hi, p, &a, &b);
        if (want < a) hi = a;
        else if (want < b) return p;
        else lo = b;
    }
    return v[lo];
}

float ck_kth_largest(const float *x, int n, int k, float *scratch) {
    if (n <= 0) return -INFINITY;
    if (k > n) k = n;
    if (k < 1) k = 1;
    if (k <= 256) {
        float val[256];
        int32_t idx[256];
        const int c = ck_top_k(x, n, k, idx, val);
        return c == 0 ? -INFINITY : val[c - 1];
    }
    const float max = ck_max_f32(x, n);
    if (!(max > -INFINITY)) return -INFINITY;
    int count[HIST_BINS] = {0};
    for (int i = 0; i < n; i++)
        if (x[i] > -INFINITY) count[hist_bin(max - x[i])]++;
    int above = 0, b = 0;
    for (; b < HIST_BINS && above + count[b] < k; b++) above += count[b];
    if (b == HIST_BINS) {  // fewer than k finite values: the smallest finite one
        float m = max;
        for (int i = 0; i < n; i++)
            if (x[i] > -INFINITY && x[i] < m) m = x[i];
        return m;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > -INFINITY && hist_bin(max - x[i]) == b) scratch[m++] = x[i];
    return select_rank(scratch, m, k - 1 - above);
}

// ---- nucleus (top-p) ----

// Reorders w/idx so that the first m (returned, >= 1) are the fewest largest weights summing to >= target.
int ck_nucleus(float *w, int32_t *idx, int n, double target) {
    if (n <= 1) return n;
    int lo = 0, hi = n;
    double need = target;
    while (lo < hi) {
        if (need <= 0) break;
        const float p = median3(w[lo], w[lo + (hi - lo) / 2], w[hi - 1]);
        int a, b;
        partition3(w, idx, lo, hi, p, &a, &b);
        double above = 0;
        for (int i = lo; i < a; i++) above += w[i];
        if (above >= need) { hi = a; continue; }
        need -= above;
        int i = a;
        while (i < b && need > 0) need -= w[i++];
        if (need <= 0) return i > 0 ? i : 1;
        lo = b;
    }
    return lo > 0 ? lo : 1;
}

int ck_top_p(const float *x, int n, float max, float scale, float cutoff, double p, float *w, int32_t *idx) {
    cutoff = clamp_cutoff(cutoff);
    // The most likely token weighs 1, so the total is at least 1: tokens lighter than (1 - p) / n
    // cannot all fit in the excluded tail beside a heavier one, and are never in the nucleus.
    const float floor = (float)((1 - p) / n);
    float buf[CK_SAMPLE_BLOCK];
    double total = 0;
    int m = 0;
    for (int i = 0; i < n; i += CK_SAMPLE_BLOCK) {
        const int len = n - i < CK_SAMPLE_BLOCK ? n - i : CK_SAMPLE_BLOCK;
        total += block_weights(x + i, len, max, scale, cutoff, buf);
        for (int j = 0; j < len; j++) {
            w[m] = buf[j];
            idx[m] = i + j;
            m += buf[j] > 0 && buf[j] >= floor;
        }
    }
    return m == 0 ? 0 : ck_nucleus(w, idx, m, p * total);
}
