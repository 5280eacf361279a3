/* membw.c - the memory bandwidth ceiling that skipless bench measures decode against.
 *
 * Batch-1 decode streams every weight from memory once per token, so the
 * ceiling is the rate at which the same number of threads can stream-read a
 * buffer far larger than the last-level cache.  Each thread sums its own
 * contiguous slice with the widest vector loads the CPU has (4 independent
 * accumulators, so the adds never limit the loads); the time of a pass runs
 * from releasing all threads to the last one finishing.  Best of several
 * passes, as a ceiling should be. */
#include "membw.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1
#endif

enum { CHUNK = 4096 }; /* slice granularity in bytes (a multiple of every kernel's step) */

typedef float (*sum_fn)(const float *p, size_t n); /* n: floats, a multiple of 64 */

/* Portable kernel: GCC/Clang vector extensions, 16-byte vectors. */
typedef float v4f __attribute__((vector_size(16)));
static float sum_generic(const float *p, size_t n) {
    v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (size_t i = 0; i < n; i += 16) {
        v4f x0, x1, x2, x3;
        memcpy(&x0, p + i, 16);
        memcpy(&x1, p + i + 4, 16);
        memcpy(&x2, p + i + 8, 16);
        memcpy(&x3, p + i + 12, 16);
        a0 += x0; a1 += x1; a2 += x2; a3 += x3;
    }
    v4f s = a0 + a1 + a2 + a3;
    return s[0] + s[1] + s[2] + s[3];
}

#ifdef HAVE_X86
__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

__attribute__((target("avx512f"))) static float sum_avx512(const float *p, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

static sum_fn pick(const char **name) {
#ifdef HAVE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) { *name = "avx512"; return sum_avx512; }
    if (__builtin_cpu_supports("avx2")) { *name = "avx2"; return sum_avx2; }
#endif
    *name = "generic";
    return sum_generic;
}

const char *membw_kernel(void) {
    const char *name;
    pick(&name);
    return name;
}

float *membw_alloc(size_t bytes) {
    bytes -= bytes % CHUNK;
    if (bytes == 0) return NULL;
    float *p = aligned_alloc(CHUNK, bytes);
    if (!p) return NULL;
    /* Touch every page (and give the floats a harmless value: 0x3c3c3c3c ~ 0.0115). */
    memset(p, 0x3c, bytes);
    return p;
}

void membw_free(float *buf) { free(buf); }

/* Start signal: the readers wait until `go` is set, so they begin together. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
} start_gate;

typedef struct {
    const float *p;
    size_t n;             /* floats */
    sum_fn sum;
    start_gate *gate;
    float result;
} slice;

static void *reader(void *arg) {
    slice *s = arg;
    pthread_mutex_lock(&s->gate->mu);
    while (!s->gate->go) pthread_cond_wait(&s->gate->cv, &s->gate->mu);
    pthread_mutex_unlock(&s->gate->mu);
    s->result = s->sum(s->p, s->n);
    return NULL;
}

static void open_gate(start_gate *g) {
    pthread_mutex_lock(&g->mu);
    g->go = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink; /* keeps the sums, so the reads cannot be optimised away */

double membw_read_gbps(const float *buf, size_t bytes, int threads, int passes) {
    const char *name;
    sum_fn sum = pick(&name);
    bytes -= bytes % CHUNK;
    if (threads < 1) threads = 1;
    size_t chunks = bytes / CHUNK;
    if ((size_t)threads > chunks) threads = (int)chunks;
    slice *sl = calloc((size_t)threads, sizeof *sl);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!sl || !tid) {
        free(sl);
        free(tid);
        return -1;
    }
    double best = -1;
    for (int pass = 0; pass < passes; pass++) {
        start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
        size_t c0 = 0;
        int started = 0;
        for (int t = 0; t < threads; t++) {
            size_t c1 = chunks * (size_t)(t + 1) / (size_t)threads;
            sl[t] = (slice){buf + c0 * (CHUNK / sizeof(float)), (c1 - c0) * (CHUNK / sizeof(float)), sum, &gate, 0};
            c0 = c1;
            if (pthread_create(&tid[t], NULL, reader, &sl[t]) != 0) break;
            started++;
        }
        double t0 = now_s();
        open_gate(&gate);
        float total = 0;
        for (int t = 0; t < started; t++) {
            pthread_join(tid[t], NULL);
            total += sl[t].result;
        }
        double dt = now_s() - t0;
        sink = total;
        if (started < threads) { /* a thread could not start: no valid figure */
            best = -1;
            break;
        }
        double gbps = (double)bytes / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    free(sl);
    free(tid);
    return best;
}
