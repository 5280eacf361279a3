/* membw.c - the memory bandwidth ceiling that skipless bench measures decode against.
 *
 * Batch-1 decode streams every weight from memory once per token, so the
 * ceiling is the fastest rate at which the same number of threads can read a
 * buffer far larger than the last-level cache.  A plain sequential read does
 * not reach it on this kind of machine: one stream per core leaves the memory
 * system idle between hardware-prefetched lines.  Measured with 2 threads on
 * the 2-core Xeon of docs/performance.md (1 GiB, best of 5):
 *     1 stream per thread, no software prefetch, 4 KiB pages:      16 GB/s
 *     4 streams per thread, prefetch 1 KiB ahead, 4 KiB pages:     28 GB/s
 *     4 streams per thread, prefetch 1 KiB ahead, 2 MiB pages:     30 GB/s
 * So each thread splits its contiguous slice into several streams read in
 * lockstep (widest vector loads the CPU has, 4 accumulators), prefetches
 * ahead in software, and the buffer asks for transparent huge pages.  A
 * calibrating pass tries a few (streams, prefetch distance) settings and
 * reports the best one; skipless bench then reads with that setting between
 * decode tokens.  A read's time runs from releasing all threads to the last
 * one finishing. */
#include "membw.h"

#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1
#endif

enum { CHUNK = 4096 };            /* slice granularity in bytes */
enum { HUGE_ALIGN = 2 << 20 };    /* 2 MiB: a transparent huge page */

/* Read n floats at p as `streams` equal streams in lockstep, prefetching `pf`
 * bytes ahead in each into L1 and, when pf2 > 0, also pf2 bytes ahead into L2
 * (as the library's AVX-512 GEMV kernels do); returns their sum (so the reads
 * cannot be dropped). */
typedef float (*sum_fn)(const float *p, size_t n, int streams, size_t pf, size_t pf2);

/* Floats per stream (a multiple of 16) and the tail the streams leave. */
static size_t stream_len(size_t n, int streams) { return (n / (size_t)streams) & ~(size_t)15; }

static float tail_sum(const float *p, size_t from, size_t n) {
    float s = 0;
    for (size_t i = from; i < n; i++) s += p[i];
    return s;
}

/* Portable kernel: GCC/Clang vector extensions, 16-byte vectors. */
typedef float v4f __attribute__((vector_size(16)));
static float sum_generic(const float *p, size_t n, int streams, size_t pf, size_t pf2) {
    size_t per = stream_len(n, streams);
    v4f acc[4] = {{0}, {0}, {0}, {0}};
    for (size_t i = 0; i < per; i += 16)
        for (int s = 0; s < streams; s++) {
            const float *q = p + (size_t)s * per + i;
            __builtin_prefetch((const char *)q + pf);
            if (pf2) __builtin_prefetch((const char *)q + pf2, 0, 2);
            v4f x[4];
            memcpy(x, q, sizeof x);
            acc[s & 3] += x[0] + x[1] + x[2] + x[3];
        }
    v4f t = acc[0] + acc[1] + acc[2] + acc[3];
    return t[0] + t[1] + t[2] + t[3] + tail_sum(p, per * (size_t)streams, n);
}

#ifdef HAVE_X86
__attribute__((target("avx2"))) static float sum_avx2(const float *p, size_t n, int streams, size_t pf, size_t pf2) {
    size_t per = stream_len(n, streams);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t i = 0; i < per; i += 16)
        for (int s = 0; s < streams; s++) {
            const float *q = p + (size_t)s * per + i;
            _mm_prefetch((const char *)q + pf, _MM_HINT_T0);
            if (pf2) _mm_prefetch((const char *)q + pf2, _MM_HINT_T1);
            acc[s & 3] = _mm256_add_ps(acc[s & 3], _mm256_add_ps(_mm256_load_ps(q), _mm256_load_ps(q + 8)));
        }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7] + tail_sum(p, per * (size_t)streams, n);
}

__attribute__((target("avx512f"))) static float sum_avx512(const float *p, size_t n, int streams, size_t pf, size_t pf2) {
    size_t per = stream_len(n, streams);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (size_t i = 0; i < per; i += 16)
        for (int s = 0; s < streams; s++) {
            const float *q = p + (size_t)s * per + i;
            _mm_prefetch((const char *)q + pf, _MM_HINT_T0);
            if (pf2) _mm_prefetch((const char *)q + pf2, _MM_HINT_T1);
            acc[s & 3] = _mm512_add_ps(acc[s & 3], _mm512_load_ps(q));
        }
    __m512 t = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    return _mm512_reduce_add_ps(t) + tail_sum(p, per * (size_t)streams, n);
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
    size_t len = (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
    float *p = aligned_alloc(HUGE_ALIGN, len);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* a hint: without huge pages the read is only a little slower */
#endif
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
    int streams;
    size_t pf, pf2;
    start_gate *gate;
    float result;
} slice;

static void *reader(void *arg) {
    slice *s = arg;
    pthread_mutex_lock(&s->gate->mu);
    while (!s->gate->go) pthread_cond_wait(&s->gate->cv, &s->gate->mu);
    pthread_mutex_unlock(&s->gate->mu);
    s->result = s->sum(s->p, s->n, s->streams, s->pf, s->pf2);
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

/* One timed read of the buffer by `threads` threads; GB/s, or -1 if a thread did not start. */
static double one_pass(const float *buf, size_t chunks, int threads, sum_fn sum, int streams, size_t pf,
                       size_t pf2, slice *sl, pthread_t *tid) {
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    size_t c0 = 0, per_chunk = CHUNK / sizeof(float);
    int started = 0;
    for (int t = 0; t < threads; t++) {
        size_t c1 = chunks * (size_t)(t + 1) / (size_t)threads;
        sl[t] = (slice){buf + c0 * per_chunk, (c1 - c0) * per_chunk, sum, streams, pf, pf2, &gate, 0};
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
    return started < threads ? -1 : (double)(chunks * CHUNK) / dt / 1e9;
}

/* (streams per thread, prefetch distances into L1 and L2 in bytes): the settings a calibrating read tries */
static const struct {
    int streams;
    size_t pf, pf2;
} settings[] = {{4, 1024, 0}, {8, 1024, 0}, {4, 2048, 0}, {4, 512, 2048}, {8, 512, 2048}};
enum { N_SETTINGS = sizeof settings / sizeof settings[0] };

double membw_read_gbps(const float *buf, size_t bytes, int threads, int passes, int *setting) {
    const char *name;
    sum_fn sum = pick(&name);
    size_t chunks = bytes / CHUNK;
    if (threads < 1) threads = 1;
    if ((size_t)threads > chunks) threads = (int)chunks;
    int only = setting && *setting >= 0 && *setting < N_SETTINGS ? *setting : -1;
    slice *sl = calloc((size_t)threads, sizeof *sl);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    double best = -1;
    int best_k = -1;
    for (int pass = 0; sl && tid && pass < passes; pass++)
        for (int k = 0; k < N_SETTINGS; k++) {
            if (only >= 0 && k != only) continue;
            double gbps = one_pass(buf, chunks, threads, sum, settings[k].streams, settings[k].pf, settings[k].pf2, sl, tid);
            if (gbps < 0) { /* a thread could not start: no valid figure */
                free(sl);
                free(tid);
                return -1;
            }
            if (gbps > best) {
                best = gbps;
                best_k = k;
            }
        }
    free(sl);
    free(tid);
    if (setting && best_k >= 0) *setting = best_k;
    return best;
}

const char *membw_setting_name(int setting, char *buf, size_t n) {
    if (setting < 0 || setting >= N_SETTINGS) snprintf(buf, n, "none");
    else if (!settings[setting].pf2)
        snprintf(buf, n, "%d streams per thread, prefetch %zu B", settings[setting].streams, settings[setting].pf);
    else
        snprintf(buf, n, "%d streams per thread, prefetch %zu B + %zu B into L2", settings[setting].streams,
                 settings[setting].pf, settings[setting].pf2);
    return buf;
}
