#include "internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// Workers spin briefly for the next job (ops come back to back during a forward pass), then sleep.
#define SPIN_LIMIT (1 << 17)

struct ck_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int generation;
    _Atomic int done;
    _Atomic int stop;
    ck_task_fn fn;
    void *ctx;
};

typedef struct { ck_pool *pool; int index; } worker_arg;

static void *worker_main(void *p) {
    worker_arg *arg = p;
    ck_pool *pool = arg->pool;
    const int index = arg->index;
    free(arg);
    int seen = 0;
    for (;;) {
        int g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        for (int spins = 0; g == seen && spins < SPIN_LIMIT; spins++) {
            if (spins < (1 << 14)) CPU_RELAX(); else sched_yield();
            g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((g = atomic_load(&pool->generation)) == seen) pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        seen = g;
        if (atomic_load(&pool->stop)) return NULL;
        pool->fn(pool->ctx, index, pool->n);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
    }
}

ck_pool *ck_pool_create(int n) {
    if (n < 1) n = 1;
    if (n > 256) n = 256;
    ck_pool *pool = calloc(1, sizeof(ck_pool));
    if (!pool) return NULL;
    pool->n = n;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = calloc((size_t)n, sizeof(pthread_t));
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

void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *ctx) {
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(ctx, 0, pool->n);
    // Spin briefly, then yield: with more threads than free cores a pure spin would starve the workers.
    for (int spins = 0; atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n - 1; spins++) {
        if (spins < (1 << 14)) CPU_RELAX(); else sched_yield();
    }
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
    pthread_cond_destroy(&pool->cv);
    free(pool->threads);
    free(pool);
}
