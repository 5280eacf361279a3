/* pool.c - the small persistent thread pool of a context.
 *
 * n - 1 worker threads plus the calling thread run one parallel loop at a
 * time: skl_pool_for(p, n_chunks, fn, arg) calls fn(arg, k) once for every
 * chunk k in [0, n_chunks), chunks handed out by a shared counter, and
 * returns when all are done.  The caller works too, so a worker that another
 * process kept off its core only takes fewer chunks; the loop does not wait
 * for workers that never arrived.  Decode runs several loops per layer, so a
 * worker that finished spins on the loop counter for a short while (SPIN_NS)
 * before sleeping on a condition variable; with spinning off
 * (skl_pool_set_spin, used while OpenBLAS runs so the two never compete for
 * cores) workers sleep at once.
 *
 * Protocol.  Start: the caller writes fn/arg/n, resets the counters, sets
 * `open`, bumps `gen` (seq_cst) and broadcasts if a worker announced itself
 * in `sleepers` (a worker increments `sleepers` under the mutex before
 * re-reading `gen`, so no wake-up is lost).  A woken worker increments
 * `inside`, and takes chunks only if `open` is still set.  End: the caller
 * waits until every chunk is done, clears `open`, then waits until `inside`
 * is 0; by the seq_cst order either a late worker sees `open` cleared or the
 * caller sees it inside, so nothing touches a loop after it returned. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_NS 300000 /* 0.3 ms */

struct skl_pool {
    int n;
    pthread_t *threads;
    int started;          /* workers created */
    atomic_uint gen;      /* loop number */
    atomic_int sleepers;
    atomic_int stop;
    atomic_int spin;
    atomic_int open;      /* the current loop accepts workers */
    atomic_int inside;    /* workers between arrival and leaving */
    atomic_llong next;    /* next chunk to hand out */
    atomic_llong done;    /* chunks finished */
    int64_t n_chunks;
    skl_chunk_fn fn;
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

static void run_chunks(skl_pool *p) {
    for (;;) {
        int64_t k = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (k >= p->n_chunks) return;
        p->fn(p->arg, k);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *worker(void *a) {
    skl_pool *p = a;
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
        atomic_fetch_add(&p->inside, 1);
        if (atomic_load(&p->open)) run_chunks(p);
        atomic_fetch_sub_explicit(&p->inside, 1, memory_order_release);
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
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->spin, 1);
    atomic_init(&p->open, 0);
    atomic_init(&p->inside, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->threads = calloc((size_t)(n > 1 ? n - 1 : 1), sizeof *p->threads);
    if (!p->threads) {
        skl_pool_free(p);
        return skl_fail(SKL_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n; i++) {
        if (pthread_create(&p->threads[i - 1], NULL, worker, p) != 0) {
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

void skl_pool_for(skl_pool *p, int64_t n_chunks, skl_chunk_fn fn, void *arg) {
    if (n_chunks <= 0) return;
    if (p->n == 1 || n_chunks == 1) {
        for (int64_t k = 0; k < n_chunks; k++) fn(arg, k);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_chunks = n_chunks;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store(&p->open, 1);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the fields above */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_chunks(p);
    for (int i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < n_chunks; i++) {
        cpu_relax();
        if ((i & 1023) == 0) sched_yield(); /* a worker holding a chunk may have lost its core */
    }
    atomic_store(&p->open, 0);
    for (int i = 1; atomic_load_explicit(&p->inside, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 1023) == 0) sched_yield();
    }
}
