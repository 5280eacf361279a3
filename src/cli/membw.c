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
 * calibrating pass tries a few settings (streams spread over the slice or
 * over neighbouring blocks as a GEMV's rows are, prefetch distances, one or
 * two prefetch levels) and reports the best; skipless bench then reads with
 * that setting between decode steps.  A read's time runs from releasing all
 * threads to the last one finishing.
 *
 * What is read is a list of regions: a buffer of our own, or the memory a
 * decode step reads as the library reports it (skl_model_decode_regions;
 * skipless bench's default for large models), whose physical pages are the
 * ones decode reads; on this machine pages differ in speed by up to 15 %
 * (docs/performance.md).  Each thread reads its share of every region.
 * The sums are integer additions, so any bit pattern reads at full speed (a
 * float addition of denormal inputs would take a microcode assist). */
#include "membw.h"

#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86 1
#endif

enum { HUGE_ALIGN = 2 << 20 }; /* 2 MiB: a transparent huge page */
enum { LINE = 64 };            /* bytes per step of a stream */

/* How a thread reads its share: `streams` streams in lockstep, prefetching
 * pf bytes ahead in each into L1 and, when pf2 > 0, also pf2 bytes ahead
 * into L2 (as the library's AVX-512 GEMV kernels do).  block = 0: stream s
 * is the s-th of `streams` equal parts of the share.  block > 0 (bytes, a
 * multiple of 64): the share is read as consecutive groups of `streams`
 * blocks, stream s reading the s-th block of each group, and a prefetch that
 * runs past a block's end continues in the same stream's next block: the
 * pattern of a GEMV pass over `streams` neighbouring matrix rows of `block`
 * bytes, whose streams lie close together in memory. */
typedef struct {
    int streams;
    size_t pf, pf2, block;
} read_plan;

/* Reads n bytes at p by plan; returns a sum of them (so the reads cannot be dropped). */
typedef uint64_t (*sum_fn)(const unsigned char *p, size_t n, const read_plan *rp);

static uint64_t tail_sum(const unsigned char *p, size_t from, size_t n) {
    uint64_t s = 0;
    for (size_t i = from; i < n; i++) s += p[i];
    return s;
}

/* The loop of every kernel: ADD64(acc index, q) adds the 64 bytes at q,
 * PF(address, level) prefetches (level 0: L1, 1: L2).  Defines `done`, the
 * bytes read (the rest is the scalar tail). */
#define SUM_LOOP(ADD64, PF)                                                                                      \
    size_t streams = (size_t)rp->streams;                                                                        \
    size_t block = rp->block ? rp->block : (n / streams) & ~(size_t)(LINE - 1);                                  \
    size_t span = block * streams, groups = span ? n / span : 0, done = groups * span;                          \
    size_t next = (streams - 1) * block;                                                                         \
    for (size_t g = 0; g < groups; g++)                                                                          \
        for (size_t i = 0; i < block; i += LINE)                                                                 \
            for (size_t s = 0; s < streams; s++) {                                                               \
                const unsigned char *q = p + g * span + s * block + i;                                           \
                PF(q + rp->pf + (i + rp->pf >= block ? next : 0), 0);                                            \
                if (rp->pf2) PF(q + rp->pf2 + (i + rp->pf2 >= block ? next : 0), 1);                             \
                ADD64(s & 3, q);                                                                                 \
            }

/* Portable kernel: GCC/Clang vector extensions, 16-byte vectors. */
typedef uint32_t v4u __attribute__((vector_size(16)));
static uint64_t sum_generic(const unsigned char *p, size_t n, const read_plan *rp) {
    v4u acc[4] = {{0}, {0}, {0}, {0}};
#define GEN_ADD64(k, q)                                                                                          \
    do {                                                                                                         \
        v4u x[4];                                                                                                \
        memcpy(x, q, sizeof x);                                                                                  \
        acc[k] += x[0] + x[1] + x[2] + x[3];                                                                     \
    } while (0)
#define GEN_PF(a, level) ((level) ? __builtin_prefetch((a), 0, 2) : __builtin_prefetch((a)))
    SUM_LOOP(GEN_ADD64, GEN_PF)
    v4u t = acc[0] + acc[1] + acc[2] + acc[3];
    return (uint64_t)t[0] + t[1] + t[2] + t[3] + tail_sum(p, done, n);
}

#ifdef HAVE_X86
#define X86_PF(a, level) _mm_prefetch((const char *)(a), (level) ? _MM_HINT_T1 : _MM_HINT_T0)

__attribute__((target("avx2"))) static uint64_t sum_avx2(const unsigned char *p, size_t n, const read_plan *rp) {
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
#define AVX2_ADD64(k, q)                                                                                         \
    (acc[k] = _mm256_add_epi32(acc[k], _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(q)),              \
                                                        _mm256_loadu_si256((const __m256i *)((q) + 32)))))
    SUM_LOOP(AVX2_ADD64, X86_PF)
    uint32_t t[8];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3])));
    return (uint64_t)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7] + tail_sum(p, done, n);
}

__attribute__((target("avx512f"))) static uint64_t sum_avx512(const unsigned char *p, size_t n, const read_plan *rp) {
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
#define AVX512_ADD64(k, q) (acc[k] = _mm512_add_epi32(acc[k], _mm512_loadu_si512((const void *)(q))))
    SUM_LOOP(AVX512_ADD64, X86_PF)
    uint32_t t[16]; /* unsigned lanes (_mm512_reduce_add_epi32 adds as signed int, which may overflow) */
    _mm512_storeu_si512((void *)t, _mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3])));
    uint64_t sum = tail_sum(p, done, n);
    for (int i = 0; i < 16; i++) sum += t[i];
    return sum;
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

void *membw_alloc(size_t bytes) {
    if (bytes == 0) return NULL;
    size_t len = (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
    void *p = aligned_alloc(HUGE_ALIGN, len);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* a hint: without huge pages the read is only a little slower */
#endif
    memset(p, 0x3c, bytes); /* touch every page */
    return p;
}

void membw_free(void *buf) { free(buf); }

/* Start signal: the readers wait until `go` is set, so they begin together. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;
} start_gate;

typedef struct {
    const membw_region *r;
    int nr, t, threads;
    sum_fn sum;
    const read_plan *rp;
    start_gate *gate;
    uint64_t result;
} slice;

/* Thread t's share of a region of n bytes: [*from, *to), 64-byte steps. */
static void share(size_t n, int t, int threads, size_t *from, size_t *to) {
    size_t lines = n / LINE;
    *from = lines * (size_t)t / (size_t)threads * LINE;
    *to = t + 1 == threads ? n : lines * (size_t)(t + 1) / (size_t)threads * LINE;
}

static void *reader(void *arg) {
    slice *s = arg;
    pthread_mutex_lock(&s->gate->mu);
    while (!s->gate->go) pthread_cond_wait(&s->gate->cv, &s->gate->mu);
    pthread_mutex_unlock(&s->gate->mu);
    uint64_t sum = 0;
    for (int i = 0; i < s->nr; i++) {
        size_t a, b;
        share(s->r[i].bytes, s->t, s->threads, &a, &b);
        sum += s->sum((const unsigned char *)s->r[i].p + a, b - a, s->rp);
    }
    s->result = sum;
    return NULL;
}

static void open_gate(start_gate *g) {
    pthread_mutex_lock(&g->mu);
    g->go = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static volatile uint64_t sink; /* keeps the sums, so the reads cannot be optimised away */

/* One timed read of the regions by `threads` threads; GB/s, or -1 if a thread did not start. */
static double one_pass(const membw_region *r, int nr, size_t bytes, int threads, sum_fn sum, const read_plan *rp,
                       slice *sl, pthread_t *tid) {
    start_gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    int started = 0;
    for (int t = 0; t < threads; t++) {
        sl[t] = (slice){r, nr, t, threads, sum, rp, &gate, 0};
        if (pthread_create(&tid[t], NULL, reader, &sl[t]) != 0) break;
        started++;
    }
    double t0 = now_s();
    open_gate(&gate);
    uint64_t total = 0;
    for (int t = 0; t < started; t++) {
        pthread_join(tid[t], NULL);
        total += sl[t].result;
    }
    double dt = now_s() - t0;
    sink = total;
    return started < threads ? -1 : (double)bytes / dt / 1e9;
}

/* The settings a calibrating read tries: streams spread over the share with
 * one or two prefetch levels, and streams of neighbouring blocks as the rows
 * of a GEMV pass are (4 x 8 KiB, 4 x 16 KiB: F32 over 2048 and 4096
 * columns; 8 x 4 KiB: F16 over 2048). */
static const read_plan settings[] = {{4, 1024, 0, 0},      {8, 1024, 0, 0},       {4, 2048, 0, 0},
                                     {4, 512, 2048, 0},    {8, 512, 2048, 0},     {4, 512, 2048, 8192},
                                     {4, 512, 2048, 16384}, {8, 512, 2048, 4096}};
enum { N_SETTINGS = sizeof settings / sizeof settings[0] };

double membw_read_gbps(const membw_region *r, int nr, int threads, int passes, int *setting) {
    const char *name;
    sum_fn sum = pick(&name);
    size_t bytes = 0;
    for (int i = 0; i < nr; i++) bytes += r[i].bytes;
    if (bytes == 0) return -1;
    if (threads < 1) threads = 1;
    int only = setting && *setting >= 0 && *setting < N_SETTINGS ? *setting : -1;
    slice *sl = calloc((size_t)threads, sizeof *sl);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    double best = -1;
    int best_k = -1;
    for (int pass = 0; sl && tid && pass < passes; pass++)
        for (int k = 0; k < N_SETTINGS; k++) {
            if (only >= 0 && k != only) continue;
            double gbps = one_pass(r, nr, bytes, threads, sum, &settings[k], sl, tid);
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
    if (setting < 0 || setting >= N_SETTINGS) {
        snprintf(buf, n, "none");
        return buf;
    }
    const read_plan *r = &settings[setting];
    int k = snprintf(buf, n, "%d streams per thread", r->streams);
    if (r->block && k >= 0 && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, " of %zu KiB blocks", r->block >> 10);
    if (k >= 0 && (size_t)k < n) k += snprintf(buf + k, n - (size_t)k, ", prefetch %zu B", r->pf);
    if (r->pf2 && k >= 0 && (size_t)k < n) snprintf(buf + k, n - (size_t)k, " + %zu B into L2", r->pf2);
    return buf;
}
