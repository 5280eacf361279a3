/* qgemv_bench.c - the quantized GEMV kernels (src/qkernels.c) against F32 skl_gemv and a
 * streaming read, all measured in the same run.
 *
 *   build/bench/qgemv_bench [--rounds N] [--threads LIST] [--shapes LIST] [--impls LIST] [--min-s S] [--in-cache]
 *     LIST: comma-separated; shapes as ROWSxCOLS (default 5632x2048,2048x5632,14336x4096,4096x14336);
 *     threads default 1,2; impls: names of skl_qkernels_name (default: every supported one);
 *     --in-cache: one copy of each matrix, no rotation (with a small shape: the arithmetic's rate).
 *
 * A benchmark, not a test (docs/performance.md: ratios against baselines measured in the same
 * run).  Decode is bandwidth bound, so what matters is how close each kernel comes to reading
 * its bytes (q plus scales) at the machine's streaming rate, and how many weights per second
 * that is against F32 weights (the targets: 8-bit >= 3.2x and 4-bit >= 5x F32).
 *
 * Every matrix is larger than the last-level cache or rotated among enough copies (at least
 * 4 LLC of bytes) that each GEMV reads DRAM.  One GEMV = skl_qx_prepare of x by the calling
 * thread, then the rows split in two halves (2 threads: the caller and one spinning worker,
 * as the library's pool hands out chunks), for F32 skl_gemv with the same split and no
 * prepare.  Each configuration is timed over consecutive GEMVs for at least --min-s seconds
 * (0.25); configurations are interleaved, all of a shape and thread count in each round (odd
 * rounds in the reverse order), the
 * read of a fresh 1 GiB buffer (src/cli/membw.c, the ceiling `skipless bench` uses) at the
 * start of each round; every figure is the median over rounds (--rounds, 5).
 *
 * Prints, per shape and thread count, one line per configuration: GB/s (bytes of q plus scales,
 * or of F32 weights, per second), weights per second, the ratio of weights/s to F32 skl_gemv's
 * of the same kernels variant, and GB/s over the streaming read's; then the 2-thread targets. */
#include "internal.h"

#include "cli/membw.h"
#include "cli/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

enum { MAX_CONF = 32, MAX_ROUNDS = 64, MAX_SHAPES = 16, MAX_COPIES = 64 };

/* ---- one GEMV, split over the caller and one worker */

typedef struct job {
    int qt;               /* SKL_QT_* or -1: F32 skl_gemv */
    const void *w;        /* F32 [rows, cols] or q of qt */
    const uint16_t *scale; /* F16 [rows, cols / 32] */
    int32_t rows, cols, split;
    const void *qx;
    const float *x; /* [cols] */
    float *y;       /* [rows] */
} job;

static struct {
    atomic_int gen, done, quit;
    job j;
} pool;

static void run_rows(const job *j, int32_t r0, int32_t r1) {
    if (j->qt < 0) skl_gemv(SKL_DT_F32, j->w, (size_t)j->cols, j->cols, j->x, j->y, r0, r1);
    else skl_gemv_q(j->qt, j->w, j->scale, j->cols, j->qx, j->y, r0, r1);
}

static void *worker(void *arg) {
    int seen = *(const int *)arg; /* pool.gen when it was started */
    for (;;) {
        int g;
        while ((g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen)
            if (atomic_load_explicit(&pool.quit, memory_order_relaxed)) return NULL;
            else PAUSE();
        seen = g;
        run_rows(&pool.j, pool.j.split, pool.j.rows);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}

/* One GEMV of j with `threads` (1 or 2); qxbuf receives the prepared x. */
static void gemv(job *j, int threads, void *qxbuf) {
    if (j->qt >= 0) {
        skl_qx_prepare(j->qt, j->x, j->cols, qxbuf);
        j->qx = qxbuf;
    }
    if (threads == 1) {
        run_rows(j, 0, j->rows);
        return;
    }
    j->split = j->rows / 2 / 16 * 16;
    int want = atomic_load_explicit(&pool.done, memory_order_relaxed) + 1;
    pool.j = *j;
    atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
    run_rows(j, 0, j->split);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) != want) PAUSE();
}

/* ---- data */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static float frand(void) { return (float)((double)(next_rand() >> 11) * 0x1.0p-53 * 2.0 - 1.0); }

/* The matrices of one type (F32 or a quantized one) for a shape: copies of one random matrix. */
typedef struct mats {
    void *w[MAX_COPIES];         /* F32 [rows, cols] or q */
    uint16_t *scale[MAX_COPIES]; /* F16 [rows, cols / 32]; NULL for F32 */
    int n;
    size_t bytes; /* read per GEMV: weights plus scales */
} mats;

/* A configuration: F32 under a kernels variant, or a quantized type under an implementation. */
typedef struct conf {
    int qt;   /* -1: F32 */
    int kern; /* the SKL_KERN_* variant (F32: the one forced) */
    int impl; /* quantized: skl_qkernels index */
    const mats *m;
    double s_per[MAX_ROUNDS]; /* seconds per GEMV, per round */
} conf;

static size_t weight_bytes(int qt, int32_t rows, int32_t cols) {
    size_t n = (size_t)rows * (size_t)cols;
    return qt < 0 ? n * 4 : qt == SKL_QT_Q8_0 ? n : n / 2;
}
static size_t scale_bytes(int qt, int32_t rows, int32_t cols) {
    return qt < 0 ? 0 : (size_t)rows * (size_t)(cols / SKL_QGROUP) * 2;
}

/* The last-level cache: sysfs's size of cpu0's L3 (sysconf's can be wrong in a guest: 320 MiB
 * for a 32 MiB L3 here), else sysconf's, else 32 MiB. */
static size_t llc_bytes(void) {
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    unsigned long k = 0;
    char unit = 0;
    int got = f && fscanf(f, "%lu%c", &k, &unit) >= 1;
    if (f) fclose(f);
    if (got && k > 0) return (size_t)k << (unit == 'M' ? 20 : unit == 'K' ? 10 : 0);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    return l3 > 0 ? (size_t)l3 : (size_t)32 << 20;
}

/* Copies of one random matrix of type qt (filled once, then copied), enough to exceed 4 LLC. */
static int in_cache; /* --in-cache: one copy, to time the arithmetic on a matrix that fits a cache */
static void make_mats(mats *m, int qt, int32_t rows, int32_t cols) {
    size_t wb = weight_bytes(qt, rows, cols), sb = scale_bytes(qt, rows, cols);
    m->bytes = wb + sb;
    m->n = (int)((4 * llc_bytes() + m->bytes - 1) / m->bytes);
    if (m->n < 2) m->n = 2;
    if (in_cache) m->n = 1;
    if (m->n > MAX_COPIES) m->n = MAX_COPIES;
    for (int k = 0; k < m->n; k++) {
        m->w[k] = membw_alloc(wb);
        m->scale[k] = sb ? membw_alloc(sb) : NULL;
        if (!m->w[k] || (sb && !m->scale[k])) {
            fprintf(stderr, "qgemv_bench: out of memory (%zu bytes x %d copies)\n", m->bytes, m->n);
            exit(2);
        }
        if (k > 0) {
            memcpy(m->w[k], m->w[0], wb);
            if (sb) memcpy(m->scale[k], m->scale[0], sb);
        } else if (qt < 0) {
            float *f = m->w[0];
            for (size_t i = 0; i < wb / 4; i++) f[i] = frand();
        } else {
            unsigned char *b = m->w[0];
            for (size_t i = 0; i < wb; i++) b[i] = (unsigned char)(next_rand() >> 56);
            for (size_t i = 0; i < sb / 2; i++) m->scale[0][i] = skl_f32_to_f16(frand() * 0.01f);
        }
    }
}

static void free_mats(mats *m) {
    for (int k = 0; k < m->n; k++) {
        membw_free(m->w[k]);
        if (m->scale[k]) membw_free(m->scale[k]);
    }
}

/* Seconds per GEMV of configuration c: consecutive GEMVs over the copies for >= min_s. */
static double time_conf(conf *c, int32_t rows, int32_t cols, int threads, const float *x, float *y, void *qxbuf,
                        double min_s) {
    if (c->qt < 0) skl_kernels_force(c->kern);
    else skl_qkernels_force(c->impl);
    const mats *m = c->m;
    job j = {c->qt, m->w[0], m->scale[0], rows, cols, 0, NULL, x, y};
    gemv(&j, threads, qxbuf); /* untimed: code and x warm */
    int n = 0;
    double t0 = now_s(), t;
    do {
        j.w = m->w[(n + 1) % m->n];
        j.scale = m->scale[(n + 1) % m->n];
        gemv(&j, threads, qxbuf);
        n++;
    } while ((t = now_s() - t0) < min_s || n < m->n);
    skl_kernels_force(-1);
    skl_qkernels_force(-1);
    return t / n;
}

static int cmp_double(const void *a, const void *b) {
    double u = *(const double *)a, v = *(const double *)b;
    return (u > v) - (u < v);
}
static double median(double *v, int n) {
    double t[MAX_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static const char *conf_name(const conf *c) {
    return c->qt < 0 ? skl_kernels_name(c->kern) : skl_qkernels_name(c->impl);
}
static const char *type_name(int qt) { return qt < 0 ? "F32" : qt == SKL_QT_Q8_0 ? "Q8_0" : "Q4_0"; }

/* The first F32 configuration of kernels variant kern (the baseline of its implementations). */
static const conf *f32_of(const conf *cs, int n, int kern) {
    for (int i = 0; i < n; i++)
        if (cs[i].qt < 0 && cs[i].kern == kern) return &cs[i];
    return NULL;
}
static int impl_kern(int impl) {
    for (int k = SKL_KERN_COUNT - 1; k >= 0; k--) {
        const char *kn = skl_kernels_name(k), *in = skl_qkernels_name(impl);
        if (kn && !strncmp(in, kn, strlen(kn)) && in[strlen(kn)] == '-') return k;
    }
    return SKL_KERN_GENERIC;
}

static int parse_list(const char *s, char items[][64], int max) {
    int n = 0;
    while (*s && n < max) {
        size_t len = strcspn(s, ",");
        snprintf(items[n++], 64, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
    }
    return n;
}

static void cpu_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10) && strchr(line, ':')) {
            snprintf(buf, n, "%s", strchr(line, ':') + 2);
            buf[strcspn(buf, "\n")] = 0;
            break;
        }
    fclose(f);
}

int main(int argc, char **argv) {
    int rounds = 5;
    double min_s = 0.25;
    char shapes_s[MAX_SHAPES][64], threads_s[4][64], impls_s[MAX_CONF][64];
    int nshapes = parse_list("5632x2048,2048x5632,14336x4096,4096x14336", shapes_s, MAX_SHAPES);
    int nthreads = parse_list("1,2", threads_s, 4), nimpls = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--in-cache")) {
            in_cache = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "qgemv_bench: %s needs a value\n", a);
            return 1;
        }
        if (!strcmp(a, "--rounds")) rounds = atoi(v);
        else if (!strcmp(a, "--min-s")) min_s = atof(v);
        else if (!strcmp(a, "--shapes")) nshapes = parse_list(v, shapes_s, MAX_SHAPES);
        else if (!strcmp(a, "--threads")) nthreads = parse_list(v, threads_s, 4);
        else if (!strcmp(a, "--impls")) nimpls = parse_list(v, impls_s, MAX_CONF);
        else {
            fprintf(stderr, "qgemv_bench: unknown option %s\n", a);
            return 1;
        }
        i++;
    }
    if (rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "qgemv_bench: --rounds must be 1..%d\n", MAX_ROUNDS);
        return 1;
    }

    char cpu[256];
    cpu_name(cpu, sizeof cpu);
#if defined(__x86_64__)
    __builtin_cpu_init();
    int vnni = __builtin_cpu_supports("avx512vnni");
#else
    int vnni = 0;
#endif
    printf("cpu: %s (avx512vnni: %s); kernels: %s; LLC %zu MiB; %d rounds, >= %.2f s per figure\n", cpu,
           vnni ? "yes" : "no", skl_cpu_kernels(), llc_bytes() >> 20, rounds, min_s);

    size_t buf_bytes = (size_t)1 << 30;
    void *buf = membw_alloc(buf_bytes); /* the fresh buffer of the streaming read */
    if (!buf) {
        fprintf(stderr, "qgemv_bench: out of memory for the 1 GiB read buffer\n");
        return 2;
    }
    membw_region region = {buf, buf_bytes};
    enum { MAX_TARGETS = MAX_SHAPES * MAX_CONF };
    static char targets[MAX_TARGETS][96]; /* the 2-thread target lines, printed at the end */
    int nt = 0;

    printf("\n%-12s %3s %-5s %-17s %7s %8s %9s %7s\n", "shape", "thr", "type", "implementation", "GB/s", "Gw/s",
           "x F32 w/s", "x read");
    for (int si = 0; si < nshapes; si++) {
        int32_t rows, cols;
        if (sscanf(shapes_s[si], "%dx%d", &rows, &cols) != 2 || rows < 1 || cols < 32 || cols % 32) {
            fprintf(stderr, "qgemv_bench: bad shape %s (ROWSxCOLS, COLS a multiple of 32)\n", shapes_s[si]);
            return 1;
        }
        /* configurations: F32 of each supported vector variant, then each type x implementation */
        conf *cs = calloc(MAX_CONF, sizeof *cs);
        int nc = 0;
        for (int k = SKL_KERN_COUNT - 1; k >= 0; k--)
            if (skl_kernels_supported(k)) cs[nc++] = (conf){.qt = -1, .kern = k};
        for (int qt = 0; qt < SKL_QT_COUNT; qt++)
            for (int i = 0; i < skl_qkernels_count() && nc < MAX_CONF; i++) {
                if (!skl_qkernels_supported(i)) continue;
                int want = nimpls == 0;
                for (int k = 0; k < nimpls; k++) want |= !strcmp(impls_s[k], skl_qkernels_name(i));
                if (want) cs[nc++] = (conf){.qt = qt, .kern = impl_kern(i), .impl = i};
            }
        mats ms[1 + SKL_QT_COUNT]; /* F32, then by SKL_QT_* */
        for (int qt = -1; qt < SKL_QT_COUNT; qt++) make_mats(&ms[1 + qt], qt, rows, cols);
        for (int i = 0; i < nc; i++) cs[i].m = &ms[1 + cs[i].qt];
        float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
        void *qxbuf = aligned_alloc(64, (skl_qx_size(cols) + 63) / 64 * 64);
        if (!x || !y || !qxbuf) return 2;
        for (int32_t c = 0; c < cols; c++) x[c] = frand();

        for (int ti = 0; ti < nthreads; ti++) {
            int threads = atoi(threads_s[ti]);
            if (threads < 1 || threads > 2) {
                fprintf(stderr, "qgemv_bench: threads must be 1 or 2\n");
                return 1;
            }
            pthread_t tid; /* the worker spins only while 2-thread figures are taken */
            atomic_store(&pool.quit, 0);
            int gen0 = atomic_load(&pool.gen);
            if (threads == 2 && pthread_create(&tid, NULL, worker, &gen0) != 0) {
                fprintf(stderr, "qgemv_bench: cannot start a thread\n");
                return 2;
            }
            double read[MAX_ROUNDS];
            int setting = -1;
            for (int r = 0; r < rounds; r++) {
                read[r] = membw_read_gbps(&region, 1, threads, r == 0 ? 2 : 1, &setting);
                for (int k = 0; k < nc; k++) { /* odd rounds backwards, so a drift within a round cancels */
                    int i = r % 2 ? nc - 1 - k : k;
                    cs[i].s_per[r] = time_conf(&cs[i], rows, cols, threads, x, y, qxbuf, min_s);
                }
            }
            if (threads == 2) {
                atomic_store(&pool.quit, 1);
                pthread_join(tid, NULL);
            }
            double rd = median(read, rounds);
            printf("%-12s %3d %-5s %-17s %7.2f %8s %9s %7s\n", shapes_s[si], threads, "-", "fresh 1 GiB read", rd, "-",
                   "-", "1.00");
            for (int i = 0; i < nc; i++) {
                const conf *c = &cs[i], *f = f32_of(cs, nc, c->kern);
                double s = median(cs[i].s_per, rounds), w = (double)rows * cols / s;
                double fw = f ? (double)rows * cols / median(((conf *)f)->s_per, rounds) : 0;
                printf("%-12s %3d %-5s %-17s %7.2f %8.2f %9.2f %7.2f\n", shapes_s[si], threads, type_name(c->qt),
                       conf_name(c), (double)c->m->bytes / s / 1e9, w / 1e9, fw > 0 ? w / fw : 0.0,
                       (double)c->m->bytes / s / 1e9 / rd);
                if (threads == 2 && c->qt >= 0 && fw > 0 && nt < MAX_TARGETS) {
                    double want = c->qt == SKL_QT_Q8_0 ? 3.2 : 5.0;
                    snprintf(targets[nt++], sizeof targets[0], "%-12s %-5s %-17s %5.2f >= %.1f  %s", shapes_s[si],
                             type_name(c->qt), conf_name(c), w / fw, want, w / fw >= want ? "met" : "MISSED");
                }
            }
            fflush(stdout);
        }
        for (int k = 0; k < 1 + SKL_QT_COUNT; k++) free_mats(&ms[k]);
        free(cs);
        free(x);
        free(y);
        free(qxbuf);
    }
    if (nt) {
        printf("\ntargets (issue 14), 2 threads: weights/s over F32 skl_gemv of the same variant, Q8_0 >= 3.2, "
               "Q4_0 >= 5\n");
        for (int i = 0; i < nt; i++) printf("%s\n", targets[i]);
    }
    membw_free(buf);
    return 0;
}
