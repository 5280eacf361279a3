/* pool.c - the small persistent thread pool of a context.
 *
 * n - 1 worker threads plus the calling thread (thread 0) run one task at a
 * time: skl_pool_run(p, fn, arg) calls fn(arg, tid, n) on every thread and
 * returns when all have finished.  Decode calls the pool several times per
 * layer, so a worker that finished a task spins on the task counter for a
 * short while (SPIN_NS) before sleeping on a condition variable; with
 * spinning off (skl_pool_set_spin, used around OpenBLAS calls so that the
 * two never compete for cores) workers go to sleep immediately.
 *
 * Wake-up protocol: the caller bumps `gen` (seq_cst) and broadcasts only if a
 * worker announced itself in `sleepers`; a worker increments `sleepers`
 * (seq_cst) under the mutex before re-reading `gen`, so one of the two always
 * sees the other's write and no wake-up is lost. */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_NS 300000 /* 0.3 ms */

struct skl_pool {
    int n;
    pthread_t *threads;
    int started;             /* workers created */
    atomic_uint gen;         /* task number */
    atomic_int pending;      /* workers still running the current task */
    atomic_int sleepers;
    atomic_int stop;
    atomic_int spin;
    skl_task_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct worker_arg {
    skl_pool *p;
    int tid;
} worker_arg;

static void *worker(void *a) {
    skl_pool *p = ((worker_arg *)a)->p;
    int tid = ((worker_arg *)a)->tid;
    free(a);
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load(&p->gen);
        if (g == seen && atomic_load_explicit(&p->spin, memory_order_relaxed)) {
            int64_t t0 = now_ns();
            for (int i = 1; (g = atomic_load(&p->gen)) == seen; i++) {
                cpu_relax();
                if ((i & 255) == 0 && now_ns() - t0 > SPIN_NS) break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = g;
        p->fn(p->arg, tid, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

static void wake_all(skl_pool *p) {
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void skl_pool_free(skl_pool *p) {
    if (!p) return;
    if (p->started) {
        atomic_store(&p->stop, 1);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int skl_pool_create(int n, skl_pool **out) {
    *out = NULL;
    skl_pool *p = calloc(1, sizeof *p);
    if (!p) return skl_fail(SKL_ERR_NOMEM, "thread pool: out of memory");
    p->n = n;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->spin, 1);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)(n > 1 ? n - 1 : 1), sizeof *p->threads);
    if (!p->threads) {
        skl_pool_free(p);
        return skl_fail(SKL_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n; i++) {
        worker_arg *a = malloc(sizeof *a);
        int e = a ? 0 : -1;
        if (a) {
            a->p = p;
            a->tid = i;
            e = pthread_create(&p->threads[i - 1], NULL, worker, a);
            if (e) free(a);
        }
        if (e) {
            skl_pool_free(p);
            return skl_fail(SKL_ERR_NOMEM, "thread pool: cannot start worker thread %d of %d", i, n - 1);
        }
        p->started = i;
    }
    *out = p;
    return SKL_OK;
}

int skl_pool_size(const skl_pool *p) { return p->n; }

void skl_pool_set_spin(skl_pool *p, int spin) { atomic_store_explicit(&p->spin, spin, memory_order_relaxed); }

void skl_pool_run(skl_pool *p, skl_task_fn fn, void *arg) {
    if (p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes fn/arg/pending */
    wake_all(p);
    fn(arg, 0, p->n);
    for (int i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 1023) == 0) sched_yield(); /* a worker may have lost its core */
    }
}
