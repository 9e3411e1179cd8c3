#include "internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// Workers spin for the next job for about this long (ops come back to back during a forward pass),
// then sleep on a condition variable.
#define SPIN_NS 200000

// Weights a thread will read in the next matmul, to pull into its cache while it would otherwise
// wait (the caller's serial work, attention stragglers): memory is otherwise idle then.
#define PF_SEGMENTS 4
// Plans are rewritten while their thread may read them; a torn read costs only useless
// prefetches (they never fault), and the fields are atomics so that it is no data race.
typedef struct {
    _Atomic int gen;
    _Atomic int count;
    _Atomic(const char *) base[PF_SEGMENTS];
    _Atomic size_t bytes[PF_SEGMENTS];
    char pad[64];
} pf_plan;
typedef struct { int gen, seg; size_t at; } pf_cursor;

struct ck_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // One job at a time: several engines may share a model's pool.
    pthread_mutex_t caller;
    _Atomic int generation;
    _Atomic int sleepers;
    _Atomic int stop;
    // The current job. Static jobs need every thread index to run; dynamic jobs share out work
    // themselves, so the caller waits only for workers that joined while the job was open.
    ck_task_fn fn;
    void *ctx;
    int dynamic;
    int job;  // numbers jobs, so a worker runs each at most once
    _Atomic int open;
    _Atomic int active;
    _Atomic int done;
    pf_plan *plans;
    pf_cursor caller_cursor;  // the calling thread's (index 0) place in its plan
};

typedef struct { ck_pool *pool; int index; } worker_arg;

// Prefetches the next few lines of thread t's plan; 0 when there is nothing (left) to prefetch.
static int prefetch_step(ck_pool *pool, int t, pf_cursor *c) {
    pf_plan *p = &pool->plans[t];
    const int g = atomic_load_explicit(&p->gen, memory_order_acquire);
    if (g != c->gen) { c->gen = g; c->seg = 0; c->at = 0; }
    const int count = atomic_load_explicit(&p->count, memory_order_relaxed);
    while (c->seg < count && c->at >= atomic_load_explicit(&p->bytes[c->seg], memory_order_relaxed)) { c->seg++; c->at = 0; }
    if (c->seg >= count) return 0;
    const char *b = atomic_load_explicit(&p->base[c->seg], memory_order_relaxed) + c->at;
    for (int o = 0; o < 512; o += 64) {
#if defined(__x86_64__)
        _mm_prefetch(b + o, _MM_HINT_T1);
#else
        __builtin_prefetch(b + o, 0, 2);
#endif
    }
    c->at += 512;
    return 1;
}

static inline uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *worker_main(void *p) {
    worker_arg *arg = p;
    ck_pool *pool = arg->pool;
    const int index = arg->index;
    free(arg);
    int seen = 0, last_job = 0;
    pf_cursor cursor = { -1, 0, 0 };
    for (;;) {
        int g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g == seen) {
            const uint64_t until = now_ns() + SPIN_NS;
            for (int spins = 0; g == seen; spins++) {
                if (!prefetch_step(pool, index, &cursor)) CPU_RELAX();
                if ((spins & 255) == 255 && now_ns() > until) break;
                g = atomic_load_explicit(&pool->generation, memory_order_acquire);
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1);
            while ((g = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->cv, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = g;
        if (atomic_load(&pool->stop)) return NULL;
        atomic_fetch_add(&pool->active, 1);
        // While the job is open and we are active, the caller leaves fn, ctx and job alone.
        if (atomic_load(&pool->open) && pool->job != last_job) {
            last_job = pool->job;
            if (pool->dynamic) {
                pool->fn(pool->ctx, index, pool->n);
            } else {
                pool->fn(pool->ctx, index, pool->n);
                atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
            }
        }
        atomic_fetch_sub(&pool->active, 1);
    }
}

ck_pool *ck_pool_create(int n) {
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    ck_pool *pool = calloc(1, sizeof(ck_pool));
    if (!pool) return NULL;
    pool->n = n;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_mutex_init(&pool->caller, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n, sizeof(pthread_t));
    pool->plans = calloc((size_t)n, sizeof(pf_plan));
    pool->caller_cursor = (pf_cursor){ -1, 0, 0 };
    for (int i = 1; i < n; i++) {
        worker_arg *arg = malloc(sizeof(worker_arg));
        arg->pool = pool;
        arg->index = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->n = i;
            break;
        }
    }
    return pool;
}

int ck_pool_size(const ck_pool *pool) { return pool ? pool->n : 1; }

static void post(ck_pool *pool, ck_task_fn fn, void *ctx, int dynamic) {
    pool->fn = fn;
    pool->ctx = ctx;
    pool->dynamic = dynamic;
    pool->job++;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_store(&pool->open, 1);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mu);
        pthread_cond_broadcast(&pool->cv);
        pthread_mutex_unlock(&pool->mu);
    }
}

// Spin briefly (prefetching the caller's plan), then yield: with more threads than free cores a
// pure spin would starve the others.
#define WAIT_UNTIL(cond)                                                        \
    for (int spins = 0; !(cond); spins++) {                                     \
        if (prefetch_step(pool, 0, &pool->caller_cursor)) continue;             \
        if (spins < (1 << 12)) CPU_RELAX(); else sched_yield();                 \
    }

void ck_pool_prefetch(ck_pool *pool, int thread, int segments, const void *const *base, const size_t *bytes) {
    if (!pool || thread < 0 || thread >= pool->n) return;
    pf_plan *p = &pool->plans[thread];
    if (segments > PF_SEGMENTS) segments = PF_SEGMENTS;
    for (int i = 0; i < segments; i++) {
        atomic_store_explicit(&p->base[i], (const char *)base[i], memory_order_relaxed);
        atomic_store_explicit(&p->bytes[i], bytes[i], memory_order_relaxed);
    }
    atomic_store_explicit(&p->count, segments, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
}

void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *ctx) {
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    pthread_mutex_lock(&pool->caller);
    post(pool, fn, ctx, 0);
    fn(ctx, 0, pool->n);
    WAIT_UNTIL(atomic_load_explicit(&pool->done, memory_order_acquire) >= pool->n - 1)
    atomic_store(&pool->open, 0);
    WAIT_UNTIL(atomic_load(&pool->active) == 0)
    pthread_mutex_unlock(&pool->caller);
}

void ck_pool_run_dynamic(ck_pool *pool, ck_task_fn fn, void *ctx) {
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    pthread_mutex_lock(&pool->caller);
    post(pool, fn, ctx, 1);
    fn(ctx, 0, pool->n);
    // All work is claimed; wait only for workers still inside fn (a late one sees the job closed).
    atomic_store(&pool->open, 0);
    WAIT_UNTIL(atomic_load(&pool->active) == 0)
    pthread_mutex_unlock(&pool->caller);
}

void ck_pool_destroy(ck_pool *pool) {
    if (!pool) return;
    atomic_store(&pool->stop, 1);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_mutex_destroy(&pool->caller);
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool->plans);
    free(pool);
}

// ---- work ranges with stealing ----

void ck_ranges_init(ck_ranges *r, int units, int threads) {
    if (threads < 1) threads = 1;
    if (threads > CK_RANGE_SLOTS) threads = CK_RANGE_SLOTS;
    r->slots = threads;
    for (int t = 0; t < threads; t++) {
        const uint64_t lo = (uint64_t)((long)units * t / threads), hi = (uint64_t)((long)units * (t + 1) / threads);
        atomic_init(&r->slot[t].range, hi << 32 | lo);
    }
}

int ck_ranges_next(ck_ranges *r, int ith, int grain, int *begin, int *end) {
    if (grain < 1) grain = 1;
    if (ith < r->slots) {
        _Atomic uint64_t *s = &r->slot[ith].range;
        uint64_t v = atomic_load_explicit(s, memory_order_relaxed);
        for (;;) {
            const uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
            if (lo >= hi) break;
            const uint32_t nl = hi - lo > (uint32_t)grain ? lo + (uint32_t)grain : hi;
            if (atomic_compare_exchange_weak(s, &v, (uint64_t)hi << 32 | nl)) {
                *begin = (int)lo;
                *end = (int)nl;
                return 1;
            }
        }
    }
    for (int j = 1; j <= r->slots; j++) {
        const int victim = (ith + j) % r->slots;
        _Atomic uint64_t *s = &r->slot[victim].range;
        uint64_t v = atomic_load_explicit(s, memory_order_relaxed);
        for (;;) {
            const uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
            if (lo >= hi) break;
            const uint32_t nh = hi - lo > (uint32_t)grain ? hi - (uint32_t)grain : lo;
            if (atomic_compare_exchange_weak(s, &v, (uint64_t)nh << 32 | lo)) {
                *begin = (int)nh;
                *end = (int)hi;
                return 1;
            }
        }
    }
    return 0;
}
