/* bench.c - `skipless bench`: prefill and decode speed against limits measured in the same run.
 *
 *   skipless bench MODEL [--compare MODEL2] [--threads T] [--prompt-len N] [--gen N]
 *                        [--repeat R] [--ceiling auto|weights|buffer] [--ceiling-mib M]
 *                        [--no-mmap] [--json]
 *   skipless bench --blas [--threads T] [--prompt-len N] [--ceiling-mib M] [--json]
 *
 * Definitions (docs/performance.md):
 *  - weight_bytes, kv_cache_bytes: skl_model_weight_bytes() (all the weights)
 *    and skl_model_kv_bytes() of the context of n_ctx = prompt-len + gen positions.
 *  - bytes per decode token: skl_model_decode_bytes(), the weights one
 *    batch-1 decode step reads in their stored dtypes: every linear layer
 *    (q/k/v/o/gate/up/down_proj) and lm_head with their biases, the final
 *    norm and one embedding row.  The KV cache reads (2 L kv_dim 4 bytes per
 *    cached position, under 1 % of the weights at these lengths) are not
 *    counted.
 *  - ceiling: streaming read, by the same number of threads, each reading its
 *    share as several prefetched vector streams (membw.c), of (--ceiling)
 *    weights: the memory one decode step reads, as the library gives it
 *    (skl_model_decode_regions: the tensors where decode reads them, in the
 *    file mapping, in the anonymous copy of --no-mmap, or copied at load),
 *    so the very pages decode reads (this machine's pages differ in speed by
 *    up to 15 %, docs/performance.md); or buffer: a fresh buffer of
 *    --ceiling-mib (default 1024) MiB.  auto (default): weights when they are
 *    at least twice the last-level cache, else buffer.  A calibration before
 *    the repeats picks the best of a few read settings (best of 2 passes);
 *    then one read with that setting precedes every decode step, and one
 *    follows the last.  A repeat's ceiling is the bytes of its reads over
 *    their total time.  Decode bound = ceiling / bytes per token.
 *    ceiling_best_gb_per_s is the fastest single read of the run;
 *    buffer_read_gb_per_s a read of the fresh buffer at the start (best of 2
 *    passes of every setting), for comparison.
 *  - prefill FLOPs for N prompt tokens: 2 N (block linear weights) + 2 (lm_head
 *    weights: logits of the last token only) + 2 L H hd N (N + 1) (causal
 *    attention: q.k and the weighted sum of v, for every query/key pair).
 *  - sgemm reference: cblas_sgemm of x[N, hidden] by up_proj's W[ffn, hidden]^T,
 *    the shape of the largest prefill products, same thread count: 4 runs
 *    right before and 4 right after each prefill; the repeat's reference is
 *    their FLOPs over their time, its prefill ratio the prefill GFLOP/s over
 *    that reference (prefill_sgemm_ratio: the median of the per-repeat ratios).
 * Every repeat measures the prefill between two windows of sgemm runs, then
 * the decode steps with a ceiling read before each: the repeat's decode ratio is its decode
 * GB/s over its ceiling, two rates taken in the same seconds, so that the
 * bandwidth of a shared machine, which moves by a third within seconds
 * here, moves both.  The figures are medians over repeats (the ratio: the
 * median of the per-repeat ratios).
 * --compare MODEL2 loads both models and, in every repeat, decodes with the
 * two token by token in alternation (A B, B A, ...: read, step of A, read,
 * step of B, ...); the speedup of MODEL2 over MODEL is the median over
 * repeats of the per-repeat ratio of decode rates, its bound bytes per token
 * of MODEL / of MODEL2.  JSON: {"models": [A, B], "speedup", "speedup_bound",
 * "speedup_at_equal_ceiling", "speedup_runs"}.
 * The model is loaded with the library's default (file mapping used in
 * place) or, with --no-mmap, with skl_model_params.use_mmap false (weights
 * copied onto huge pages); the load time is reported as load_seconds, and
 * weights_huge_page_share the share of the weights' resident pages that are
 * 2 MiB pages.
 *
 * --blas measures sgemm (N x 2048 x 5632) and sgemv (a matrix of --ceiling-mib
 * MiB) with the OpenBLAS core OpenBLAS picked, then lets libskipless check
 * the core (skl_blas_get_info) and measures again. */
#include "bench.h"

#include "membw.h"
#include "skipless.h"
#include "util.h"

#include <cblas.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { SGEMM_PASSES = 4 }; /* sgemm reference runs right before and right after each prefill */
enum { MAX_REPEAT = 1000 }; /* --repeat limit; one_figures keeps 2 values per repeat on the stack */

typedef struct {
    const char *model, *compare;
    long threads, prompt_len, gen, repeat, ceiling_mib;
    int json, blas, no_mmap;
    int ceiling; /* CEIL_AUTO, CEIL_WEIGHTS or CEIL_BUFFER (--ceiling) */
} bench_opts;

enum { CEIL_AUTO, CEIL_WEIGHTS, CEIL_BUFFER };

static int parse_opts(int argc, char **argv, bench_opts *o) {
    static const struct {
        const char *name;
        long lo, hi;
        size_t field;
    } ints[] = {
        {"--threads", 1, 1024, offsetof(bench_opts, threads)},
        {"--prompt-len", 1, 65536, offsetof(bench_opts, prompt_len)},
        {"--gen", 1, 65536, offsetof(bench_opts, gen)},
        {"--repeat", 1, MAX_REPEAT, offsetof(bench_opts, repeat)},
        {"--ceiling-mib", 16, 1 << 20, offsetof(bench_opts, ceiling_mib)},
    };
    *o = (bench_opts){NULL, NULL, 1, 256, 64, 3, 1024, 0, 0, 0, CEIL_AUTO};
    const char *model_only = NULL; /* an option --blas does not use */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--blas")) { o->blas = 1; continue; }
        if (!strcmp(a, "--no-mmap")) { o->no_mmap = 1; model_only = a; continue; }
        if (!strcmp(a, "--ceiling")) {
            if (i + 1 >= argc) return usage_error("bench: option %s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(v, "weights")) o->ceiling = CEIL_WEIGHTS;
            else if (!strcmp(v, "buffer")) o->ceiling = CEIL_BUFFER;
            else return usage_error("bench: --ceiling must be weights or buffer, got '%s'", v);
            model_only = a;
            continue;
        }
        if (!strcmp(a, "--compare")) {
            if (i + 1 >= argc) return usage_error("bench: option %s needs a value", a);
            o->compare = argv[++i];
            model_only = a;
            continue;
        }
        size_t k = 0, n = sizeof ints / sizeof ints[0];
        while (k < n && strcmp(a, ints[k].name) != 0) k++;
        if (k < n) {
            if (i + 1 >= argc) return usage_error("bench: option %s needs a value", a);
            long *field = (long *)((char *)o + ints[k].field);
            if (ints[k].field == offsetof(bench_opts, gen) || ints[k].field == offsetof(bench_opts, repeat))
                model_only = a;
            if (parse_long(argv[++i], ints[k].lo, ints[k].hi, field))
                return usage_error("bench: %s must be an integer in [%ld, %ld], got '%s'", a, ints[k].lo, ints[k].hi, argv[i]);
        } else if (a[0] == '-') {
            return usage_error("bench: unknown option %s (see skipless --help)", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return usage_error("bench: unexpected argument '%s'", a);
        }
    }
    if (o->blas && o->model) return usage_error("bench: --blas takes no MODEL (got '%s')", o->model);
    if (o->blas && model_only) return usage_error("bench: %s does not apply to --blas", model_only);
    if (!o->blas && !o->model) return usage_error("bench: missing MODEL (or --blas)");
    return 0;
}

/* ------------------------------------------------------------- helpers */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, long n) {
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) return v[0];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}

/* Deterministic fill in [-0.5, 0.5) (LCG); the values only need to be finite. */
static void fill(float *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)(seed >> 40) / 16777216.0f - 0.5f;
    }
}

/* Reusable operands of one sgemm shape: y[m, n] = x[m, k] w[n, k]^T (a batched linear layer). */
typedef struct {
    int m, n, k;
    float *x, *w, *y;
} gemm_shape;

static int gemm_alloc(gemm_shape *g, int m, int n, int k) {
    *g = (gemm_shape){m, n, k, malloc((size_t)m * k * sizeof(float)), malloc((size_t)n * k * sizeof(float)),
                      malloc((size_t)m * n * sizeof(float))};
    if (!g->x || !g->w || !g->y) return -1;
    fill(g->x, (size_t)m * k, 1);
    fill(g->w, (size_t)n * k, 2);
    return 0;
}

static void gemm_free(gemm_shape *g) {
    free(g->x);
    free(g->w);
    free(g->y);
}

/* `passes` sgemm runs back to back; their summed time in *secs, their FLOPs returned. */
static double sgemm_window(const gemm_shape *g, int threads, int passes, double *secs) {
    openblas_set_num_threads(threads);
    double t0 = now_s();
    for (int p = 0; p < passes; p++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->m, g->n, g->k, 1.0f, g->x, g->k, g->w, g->k, 0.0f,
                    g->y, g->n);
    *secs += now_s() - t0;
    return 2.0 * g->m * (double)g->n * g->k * passes;
}

/* Best of `passes` sgemm runs (after one warm-up run), GFLOP/s. */
static double sgemm_gflops(const gemm_shape *g, int threads, int passes) {
    double best = 0;
    for (int p = -1; p < passes; p++) {
        double secs = 0, flops = sgemm_window(g, threads, 1, &secs);
        if (p >= 0 && flops / secs / 1e9 > best) best = flops / secs / 1e9;
    }
    return best;
}

/* Best of `passes` sgemv runs y = W x over a [rows, cols] matrix, GB/s of matrix read. */
static double sgemv_gbps(const float *w, int rows, int cols, const float *x, float *y, int threads, int passes) {
    openblas_set_num_threads(threads);
    double best = 0;
    for (int p = -1; p < passes; p++) {
        double t0 = now_s();
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, w, cols, x, 1, 0.0f, y, 1);
        double dt = now_s() - t0;
        double r = (double)rows * cols * sizeof(float) / dt / 1e9;
        if (p >= 0 && r > best) best = r;
    }
    return best;
}

static int32_t argmax(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void put_blas(json_t *o, const skl_blas_info *bi) {
    put_str(o, "blas_core", bi->openblas ? bi->core : "not OpenBLAS");
    put_str(o, "blas_detected_core", bi->openblas ? bi->detected_core : "not OpenBLAS");
    put_bool(o, "blas_core_changed", bi->core_changed);
    put_str(o, "cpu_isa", bi->cpu_isa);
}

/* --------------------------------------------------------------- --blas */

static int bench_blas(const bench_opts *o) {
    int threads = (int)o->threads;
    gemm_shape g;
    size_t bytes = (size_t)o->ceiling_mib << 20;
    int cols = 4096, rows = (int)(bytes / (sizeof(float) * (size_t)cols));
    float *w = membw_alloc((size_t)rows * cols * sizeof(float));
    float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    if (gemm_alloc(&g, (int)o->prompt_len, 5632, 2048) || !w || !x || !y) {
        gemm_free(&g);
        membw_free(w);
        free(x);
        free(y);
        return runtime_error("bench: out of memory for the BLAS operands (%ld MiB)", o->ceiling_mib);
    }
    fill(x, (size_t)cols, 3);
    /* OpenBLAS as it initialised itself: nothing of libskipless has run yet. */
    const char *before_core = openblas_get_corename();
    char before[64];
    snprintf(before, sizeof before, "%s", before_core ? before_core : "?");
    double gemm0 = sgemm_gflops(&g, threads, 3), gemv0 = sgemv_gbps(w, rows, cols, x, y, threads, 5);
    skl_blas_info bi;
    skl_blas_get_info(&bi, sizeof bi);
    double gemm1 = sgemm_gflops(&g, threads, 3), gemv1 = sgemv_gbps(w, rows, cols, x, y, threads, 5);
    membw_region wr = {w, (size_t)rows * cols * sizeof(float)};
    double ceiling = membw_read_gbps(&wr, 1, threads, 3, NULL);
    int ret = 0;
    if (o->json) {
        json_t *j = json_object();
        put_int(j, "threads", threads);
        put_str(j, "core_before", before);
        put_blas(j, &bi);
        json_object_set_new(j, "sgemm_shape", json_pack("[iii]", g.m, g.k, g.n));
        json_object_set_new(j, "sgemv_shape", json_pack("[ii]", rows, cols));
        put_real(j, "sgemm_gflops_before", gemm0);
        put_real(j, "sgemm_gflops_after", gemm1);
        put_real(j, "sgemv_gb_per_s_before", gemv0);
        put_real(j, "sgemv_gb_per_s_after", gemv1);
        put_real(j, "ceiling_gb_per_s", ceiling);
        ret = print_json(j);
    } else {
        printf("OpenBLAS core: %s before, %s after libskipless's check (%s; CPU: %s)\n", before,
               bi.openblas ? bi.core : "not OpenBLAS",
               bi.core_changed ? "re-initialised" : bi.user_coretype ? "OPENBLAS_CORETYPE set, kept" : "kept",
               bi.cpu_isa);
        printf("threads %d\n", threads);
        printf("sgemm %dx%dx%d:   %8.1f -> %8.1f GFLOP/s (x%.2f)\n", g.m, g.k, g.n, gemm0, gemm1, gemm1 / gemm0);
        printf("sgemv %dx%d: %8.1f -> %8.1f GB/s    (x%.2f; read ceiling %.1f GB/s)\n", rows, cols, gemv0, gemv1,
               gemv1 / gemv0, ceiling);
    }
    gemm_free(&g);
    membw_free(w);
    free(x);
    free(y);
    return ret;
}

/* ---------------------------------------------------------- model bench */

static int cmp_region(const void *x, const void *y) {
    uintptr_t a = (uintptr_t)((const membw_region *)x)->p, b = (uintptr_t)((const membw_region *)y)->p;
    return (a > b) - (a < b);
}

/* The memory one decode step of m reads, as the library gives it
 * (skl_model_decode_regions): wherever decode reads it, in the file
 * mapping, in the anonymous copy of use_mmap = false, or in tensors copied at
 * load or made by a merge.  Sorted by address, regions that touch joined (no
 * byte is added or dropped: *bytes is skl_model_decode_bytes).  0, or the
 * exit code with the message printed. */
static int decode_regions(const skl_model *m, membw_region **out, int *nr, size_t *bytes) {
    *out = NULL;
    *nr = 0;
    *bytes = 0;
    size_t n = 0;
    int rc = skl_model_decode_regions(m, NULL, NULL, 0, &n);
    if (rc && rc != SKL_ERR_BUFFER_TOO_SMALL) return lib_error("bench: decode regions", rc);
    const void **bases = calloc(n ? n : 1, sizeof *bases); /* [n] */
    uint64_t *sizes = calloc(n ? n : 1, sizeof *sizes);     /* [n] */
    membw_region *r = calloc(n ? n : 1, sizeof *r);         /* [n], joined into its first nr */
    int ret = 0;
    if (!bases || !sizes || !r || n > INT32_MAX) ret = runtime_error("bench: out of memory for %zu decode regions", n);
    else if ((rc = skl_model_decode_regions(m, bases, sizes, n, &n))) ret = lib_error("bench: decode regions", rc);
    for (size_t i = 0; !ret && i < n; i++) r[i] = (membw_region){bases[i], (size_t)sizes[i]};
    free(bases);
    free(sizes);
    if (ret) {
        free(r);
        return ret;
    }
    qsort(r, n, sizeof *r, cmp_region);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        *bytes += r[i].bytes;
        if (k > 0 && (const char *)r[k - 1].p + r[k - 1].bytes == (const char *)r[i].p) r[k - 1].bytes += r[i].bytes;
        else r[k++] = r[i];
    }
    *out = r;
    *nr = (int)k;
    return 0;
}

/* The share of the weights' resident pages that are 2 MiB pages:
 * (FilePmdMapped + AnonHugePages) / Rss over the process's mappings that
 * hold a decode region (/proc/self/smaps; the file mapping, or the anonymous
 * copy of --no-mmap); -1 when not known (not Linux).  A diagnostic: decode
 * streams the weights, and on 4 KiB pages it runs a few per cent slower
 * (docs/performance.md). */
static double huge_page_share(const membw_region *r, int nr) {
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[4608];
    double rss = 0, huge = 0, v;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
            in = 0;
            for (int i = 0; i < nr && !in; i++) {
                uintptr_t a = (uintptr_t)r[i].p, b = a + r[i].bytes;
                in = a < hi && b > lo;
            }
        } else if (in && sscanf(line, "Rss: %lf", &v) == 1) {
            rss += v;
        } else if (in && (sscanf(line, "FilePmdMapped: %lf", &v) == 1 || sscanf(line, "AnonHugePages: %lf", &v) == 1)) {
            huge += v;
        }
    }
    fclose(f);
    return rss > 0 ? huge / rss : -1;
}

/* Absent projections (q, k, v, o) in every layer, e.g. "qo"; "" for none. */
static void absent_projections(const skl_model *m, int32_t layers, char out[5]) {
    const char which[4] = {'q', 'k', 'v', 'o'};
    int n = 0;
    for (int i = 0; i < 4; i++) {
        int absent = layers > 0;
        for (int32_t l = 0; l < layers; l++) absent &= skl_model_has_proj(m, l, which[i]) == 0;
        if (absent) out[n++] = which[i];
    }
    out[n] = '\0';
}

/* One prefill of the prompt from an empty cache; its time in *prefill_s. */
static int prefill(skl_context *ctx, const int32_t *prompt, int32_t n_prompt, double *prefill_s) {
    int rc = skl_kv_reset(ctx);
    if (rc) return rc;
    double t0 = now_s();
    rc = skl_eval(ctx, prompt, n_prompt);
    *prefill_s = now_s() - t0;
    return rc;
}

/* One greedy decode step (the argmax of the last logits, not timed); its time added to *decode_s. */
static int decode_step(skl_context *ctx, int32_t vocab, double *decode_s) {
    int32_t tok = argmax(skl_logits(ctx, NULL), vocab);
    double t0 = now_s();
    int rc = skl_eval(ctx, &tok, 1);
    *decode_s += now_s() - t0;
    return rc;
}

/* One ceiling read between decode steps.  The pool's workers spin for
 * 0.3 ms after a step before they sleep; the pause lets them fall asleep so
 * that they do not take a core from the readers. */
static double ceiling_read(const membw_region *r, int nr, size_t bytes, int threads, int setting, double *secs) {
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
    double gbps = membw_read_gbps(r, nr, threads, 1, &setting);
    if (gbps > 0) *secs += (double)bytes / 1e9 / gbps;
    return gbps;
}

/* The smallest weights that `auto` reads for the ceiling: twice the last-level cache, so that a
 * read of them comes from memory (512 MiB when the cache size is not known). */
static size_t weights_min_bytes(void) {
    long l3 = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return l3 > 0 ? 2 * (size_t)l3 : (size_t)512 << 20;
}

/* One benchmarked model: handles, shape, and the measurements of every repeat. */
typedef struct {
    const char *path;
    skl_model *m;
    skl_context *ctx;
    skl_hparams hp;
    skl_weight_counts wc;
    uint64_t decode_bytes;
    uint64_t weight_bytes, kv_bytes; /* all the weights; the KV cache of the context (prompt-len + gen positions) */
    int32_t n_ctx;
    const char *dtype;
    char absent[5];
    double load_s, huge_share;
    gemm_shape g;
    double *ceiling, *sgemm, *prefill_s, *decode_s, *ratio, *prefill_ratio; /* [repeat] each */
    double prefill_flops;                                                    /* of one prefill of the prompt */
    membw_region *weights; /* [n_weights]: the memory a decode step reads (decode_regions) */
    int n_weights;
    size_t weights_bytes;
    /* What its ceiling reads: the weights or the buffer (see ceiling_source) */
    const membw_region *src;
    int n_src;
    size_t src_bytes;
    const char *src_name; /* "weights" or "buffer" */
    int setting;          /* the read setting (calibrated) */
    double best;          /* fastest single read */
    long reads_per_repeat;
} bench_one;

/* Medians and derived figures (definitions at the top of this file). */
typedef struct {
    double decode_tps, prefill_tps, ceiling, sgemm, ratio, decode_gbps, prefill_flops, prefill_gflops, prefill_ratio;
    uint64_t block_w;
} figures;

/* A list of frees (the same shape as merge.c's lu_free, by nature of the task). */
static void one_close(bench_one *b) {
    free(b->ceiling);
    free(b->sgemm);
    free(b->prefill_s);
    free(b->decode_s);
    free(b->ratio);
    free(b->prefill_ratio);
    gemm_free(&b->g);
    free(b->weights);
    skl_context_free(b->ctx);
    skl_model_free(b->m);
}

/* Load and set up one model; 0, or the command's exit code (message printed). */
static int one_open(bench_one *b, const char *path, const bench_opts *o) {
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    mp.use_mmap = !o->no_mmap;
    b->path = path;
    double t0 = now_s();
    int rc = skl_model_load(path, &mp, &b->m);
    if (rc) return lib_error("bench: load", rc);
    b->load_s = now_s() - t0;
    skl_model_hparams(b->m, &b->hp, sizeof b->hp);
    skl_model_weight_counts(b->m, &b->wc, sizeof b->wc);
    b->decode_bytes = skl_model_decode_bytes(b->m);
    b->dtype = skl_model_weight_dtype(b->m);
    absent_projections(b->m, b->hp.num_hidden_layers, b->absent);
    if ((rc = decode_regions(b->m, &b->weights, &b->n_weights, &b->weights_bytes))) return rc;
    int32_t P = (int32_t)o->prompt_len, G = (int32_t)o->gen;
    if ((long)P + G > b->hp.max_position_embeddings)
        return usage_error("bench: --prompt-len %d + --gen %d = %ld exceeds the max_position_embeddings %d of %s", P, G,
                           (long)P + G, b->hp.max_position_embeddings, path);
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = P + G;
    cp.n_threads = (int32_t)o->threads;
    cp.n_batch = P; /* the whole prompt in one batch: one sgemm per linear layer */
    if ((rc = skl_context_create(b->m, &cp, &b->ctx))) return lib_error("bench: context", rc);
    b->n_ctx = cp.n_ctx;
    b->weight_bytes = skl_model_weight_bytes(b->m);
    b->kv_bytes = skl_model_kv_bytes(b->m, cp.n_ctx);
    size_t R = (size_t)o->repeat;
    b->ceiling = calloc(R, sizeof(double));
    b->sgemm = calloc(R, sizeof(double));
    b->prefill_s = calloc(R, sizeof(double));
    b->decode_s = calloc(R, sizeof(double));
    b->ratio = calloc(R, sizeof(double));
    b->prefill_ratio = calloc(R, sizeof(double));
    const skl_weight_counts *wc = &b->wc;
    double block_w = (double)(wc->q + wc->k + wc->v + wc->o + wc->gate + wc->up + wc->down), Pd = (double)P;
    double attn_flops = 2.0 * b->hp.num_hidden_layers * b->hp.num_attention_heads * (double)b->hp.head_dim * Pd * (Pd + 1.0);
    b->prefill_flops = 2.0 * Pd * block_w + 2.0 * (double)wc->head + attn_flops;
    if (!b->ceiling || !b->sgemm || !b->prefill_s || !b->decode_s || !b->ratio || !b->prefill_ratio ||
        gemm_alloc(&b->g, P, b->hp.intermediate_size, b->hp.hidden_size)) {
        return runtime_error("bench: out of memory (sgemm %dx%dx%d)", P, b->hp.hidden_size, b->hp.intermediate_size);
    }
    return 0;
}

/* Repeat i of the n models (1, or 2 with --compare): for each, in
 * alternating order, the sgemm and the prefill; then `gen` decode steps of
 * each, interleaved token by token with ceiling reads of the model about to
 * step: read A, step A, read B, step B, read B, step B, read A, step A, ...,
 * and one more read of each after the last step.  A model's ceiling in the
 * repeat is the bytes of its reads over their total time, its decode ratio
 * its decode GB/s over that ceiling: the two rates come from the same
 * seconds of a machine whose bandwidth moves. */
static int run_repeat(bench_one *b, int n, long i, const int32_t *prompt, const bench_opts *o) {
    int T = (int)o->threads;
    int32_t G = (int32_t)o->gen;
    int rc;
    double read_s[2] = {0, 0};
    for (int j = 0; j < n; j++) {
        bench_one *m = &b[n == 2 && (i & 1) ? 1 - j : j];
        double flops = 0, secs = 0;
        flops += sgemm_window(&m->g, T, SGEMM_PASSES, &secs);
        if ((rc = prefill(m->ctx, prompt, (int32_t)o->prompt_len, &m->prefill_s[i]))) return lib_error("bench: eval", rc);
        flops += sgemm_window(&m->g, T, SGEMM_PASSES, &secs);
        m->sgemm[i] = flops / secs / 1e9;
        m->prefill_ratio[i] = m->prefill_flops / m->prefill_s[i] / 1e9 / m->sgemm[i];
        m->decode_s[i] = 0;
        m->reads_per_repeat = 0;
    }
    for (int32_t t = 0; t <= G; t++)
        for (int j = 0; j < n; j++) {
            int k = n == 2 && ((i + t) & 1) ? 1 - j : j;
            bench_one *m = &b[k];
            double gbps = ceiling_read(m->src, m->n_src, m->src_bytes, T, m->setting, &read_s[k]);
            if (gbps <= 0) return runtime_error("bench: could not start %d reader threads for the ceiling", T);
            m->reads_per_repeat++;
            if (gbps > m->best) m->best = gbps;
            if (t < G && (rc = decode_step(m->ctx, m->hp.vocab_size, &m->decode_s[i]))) return lib_error("bench: eval", rc);
        }
    for (int k = 0; k < n; k++) {
        b[k].ceiling[i] = (double)b[k].reads_per_repeat * (double)b[k].src_bytes / 1e9 / read_s[k];
        b[k].ratio[i] = (double)b[k].decode_bytes * G / b[k].decode_s[i] / 1e9 / b[k].ceiling[i];
    }
    return 0;
}

static figures one_figures(const bench_one *b, const bench_opts *o) {
    long R = o->repeat;
    double P = (double)o->prompt_len, G = (double)o->gen, tps[2 * MAX_REPEAT];
    for (long i = 0; i < R; i++) {
        tps[i] = G / b->decode_s[i];
        tps[R + i] = P / b->prefill_s[i];
    }
    figures f;
    f.decode_tps = median(tps, R);
    f.prefill_tps = median(tps + R, R);
    f.ceiling = median(b->ceiling, R);
    f.sgemm = median(b->sgemm, R);
    f.ratio = median(b->ratio, R);
    f.decode_gbps = (double)b->decode_bytes * f.decode_tps / 1e9;
    const skl_weight_counts *wc = &b->wc;
    f.block_w = wc->q + wc->k + wc->v + wc->o + wc->gate + wc->up + wc->down;
    f.prefill_flops = b->prefill_flops;
    f.prefill_gflops = f.prefill_flops * f.prefill_tps / P / 1e9;
    f.prefill_ratio = median(b->prefill_ratio, R);
    return f;
}

static json_t *one_json(const bench_one *b, const bench_opts *o, const skl_blas_info *bi, double buffer_gbps) {
    figures f = one_figures(b, o);
    const skl_hparams *hp = &b->hp;
    long R = o->repeat;
    double bytes = (double)b->decode_bytes, P = (double)o->prompt_len;
    json_t *j = json_object();
    put_str(j, "model", b->path);
    put_str(j, "dtype", b->dtype);
    put_bool(j, "merged", b->absent[0] != '\0');
    put_str(j, "absent_projections", b->absent);
    put_int(j, "hidden_size", hp->hidden_size);
    put_int(j, "num_hidden_layers", hp->num_hidden_layers);
    put_int(j, "num_attention_heads", hp->num_attention_heads);
    put_int(j, "num_key_value_heads", hp->num_key_value_heads);
    put_int(j, "intermediate_size", hp->intermediate_size);
    put_int(j, "vocab_size", hp->vocab_size);
    put_int(j, "threads", o->threads);
    put_int(j, "prompt_len", o->prompt_len);
    put_int(j, "gen", o->gen);
    put_int(j, "repeat", R);
    put_bool(j, "use_mmap", !o->no_mmap);
    put_real(j, "load_seconds", b->load_s);
    put_blas(j, bi);
    put_str(j, "ceiling_kernel", membw_kernel());
    put_str(j, "ceiling_source", b->src_name);
    put_int(j, "ceiling_read_bytes", (long long)b->src_bytes);
    char setting[96];
    put_str(j, "ceiling_setting", membw_setting_name(b->setting, setting, sizeof setting));
    put_int(j, "ceiling_reads_per_repeat", b->reads_per_repeat);
    put_real(j, "ceiling_best_gb_per_s", b->best);
    put_int(j, "buffer_bytes", (long long)((size_t)o->ceiling_mib << 20));
    put_real(j, "buffer_read_gb_per_s", buffer_gbps);
    put_int(j, "bytes_per_token", (long long)b->decode_bytes);
    put_int(j, "weight_bytes", (long long)b->weight_bytes);
    put_int(j, "n_ctx", b->n_ctx);
    put_int(j, "kv_cache_bytes", (long long)b->kv_bytes);
    put_int(j, "linear_weights", (long long)(f.block_w + b->wc.head));
    put_real(j, "decode_tokens_per_s", f.decode_tps);
    put_real(j, "decode_gb_per_s", f.decode_gbps);
    put_real(j, "ceiling_gb_per_s", f.ceiling);
    put_real(j, "decode_ceiling_ratio", f.ratio);
    put_real(j, "decode_bound_tokens_per_s", f.ceiling * 1e9 / bytes);
    put_real(j, "prefill_tokens_per_s", f.prefill_tps);
    put_real(j, "prefill_bytes_per_token", bytes / P);
    put_real(j, "prefill_gb_per_s", bytes / P * f.prefill_tps / 1e9);
    put_real(j, "prefill_flops", f.prefill_flops);
    put_real(j, "prefill_gflops", f.prefill_gflops);
    json_object_set_new(j, "sgemm_shape", json_pack("[iii]", (int)o->prompt_len, hp->hidden_size, hp->intermediate_size));
    put_real(j, "sgemm_gflops", f.sgemm);
    put_real(j, "prefill_sgemm_ratio", f.prefill_ratio);
    put_reals(j, "ceiling_gb_per_s_runs", b->ceiling, R);
    put_reals(j, "sgemm_gflops_runs", b->sgemm, R);
    put_reals(j, "prefill_seconds_runs", b->prefill_s, R);
    put_reals(j, "decode_seconds_runs", b->decode_s, R);
    put_reals(j, "decode_ceiling_ratio_runs", b->ratio, R);
    put_reals(j, "prefill_sgemm_ratio_runs", b->prefill_ratio, R);
    if (b->huge_share >= 0) put_real(j, "weights_huge_page_share", b->huge_share);
    else json_object_set_new(j, "weights_huge_page_share", json_null());
    return j;
}

static void one_text(const bench_one *b, const bench_opts *o, const skl_blas_info *bi, double buffer_gbps) {
    figures f = one_figures(b, o);
    const skl_hparams *hp = &b->hp;
    double bytes = (double)b->decode_bytes, P = (double)o->prompt_len;
    printf("model    %s: %s, %d layers, hidden %d, %d/%d heads, FFN %d, vocab %d%s%s\n", b->path, b->dtype,
           hp->num_hidden_layers, hp->hidden_size, hp->num_attention_heads, hp->num_key_value_heads,
           hp->intermediate_size, hp->vocab_size, b->absent[0] ? ", merged: absent " : "", b->absent);
    printf("setup    %ld threads, prompt %ld, gen %ld, medians of %ld repeats; BLAS core %s (%s picked %s; CPU %s)\n",
           o->threads, o->prompt_len, o->gen, o->repeat, bi->openblas ? bi->core : "n/a",
           bi->openblas ? "OpenBLAS" : "BLAS", bi->openblas ? bi->detected_core : "n/a", bi->cpu_isa);
    printf("load     %8.2f s      weights %s\n", b->load_s,
           o->no_mmap ? "copied onto huge pages (--no-mmap)" : "used in place from the file mapping");
    char wb[BYTES_STR], kvb[BYTES_STR];
    printf("memory   weights %s, KV cache %s for %d positions (prompt + gen)\n", bytes_str(b->weight_bytes, wb),
           bytes_str(b->kv_bytes, kvb), b->n_ctx);
    if (b->huge_share >= 0) printf("pages    %8.1f %%    of the weights' resident pages on 2 MiB pages\n", 100.0 * b->huge_share);
    char setting[96];
    if (!strcmp(b->src_name, "weights"))
        printf("ceiling  %8.2f GB/s  streaming read of the %.4g MB of weights a decode step reads (the very pages it reads, %s),"
               " before every step (%s kernel, %s); best read %.2f; a fresh %ld MiB buffer reads at %.2f\n",
               f.ceiling, (double)b->src_bytes / 1e6, o->no_mmap ? "the anonymous copy" : "the file mapping", membw_kernel(),
               membw_setting_name(b->setting, setting, sizeof setting), b->best, o->ceiling_mib, buffer_gbps);
    else
        printf("ceiling  %8.2f GB/s  streaming read of a %ld MiB buffer before every decode step (%s kernel, %s); best "
               "read %.2f\n",
               f.ceiling, o->ceiling_mib, membw_kernel(), membw_setting_name(b->setting, setting, sizeof setting),
               b->best);
    printf("decode   %8.2f tok/s  %.4g GB/token  %7.2f GB/s  %5.1f%% of ceiling (bound %.2f tok/s)\n", f.decode_tps,
           bytes / 1e9, f.decode_gbps, 100.0 * f.ratio, f.ceiling * 1e9 / bytes);
    printf("prefill  %8.2f tok/s  %.4g GB/token  %7.2f GB/s  %7.1f GFLOP/s  %5.1f%% of sgemm %ldx%dx%d (%.1f GFLOP/s)\n",
           f.prefill_tps, bytes / P / 1e9, bytes / P * f.prefill_tps / 1e9, f.prefill_gflops,
           100.0 * f.prefill_ratio, o->prompt_len, hp->hidden_size, hp->intermediate_size, f.sgemm);
}

/* --compare: the second model's decode speed over the first's, paired per
 * repeat (their decode steps alternate), and its bound. */
typedef struct {
    double speedup, bound, at_equal_ceiling;
    double *runs; /* [repeat] */
} comparison;

static int compare(const bench_one *a, const bench_one *b, long R, comparison *c) {
    size_t nr = R > 0 && R <= MAX_REPEAT ? (size_t)R : 1;
    c->runs = calloc(nr, sizeof(double));
    double *eq = calloc(nr, sizeof(double));
    if (!c->runs || !eq) {
        free(eq);
        return runtime_error("bench: out of memory");
    }
    for (long i = 0; i < R; i++) {
        c->runs[i] = a->decode_s[i] / b->decode_s[i]; /* same number of tokens */
        eq[i] = b->ratio[i] / a->ratio[i];
    }
    c->bound = (double)a->decode_bytes / (double)b->decode_bytes;
    c->speedup = median(c->runs, R);
    c->at_equal_ceiling = c->bound * median(eq, R);
    free(eq);
    return 0;
}

static int bench_model(const bench_opts *o) {
    bench_one b[2];
    memset(b, 0, sizeof b);
    comparison cmp = {0};
    int32_t *prompt = NULL;
    void *cbuf = NULL;
    int n = o->compare ? 2 : 1, ret = 0;
    int32_t P = (int32_t)o->prompt_len;
    long R = o->repeat;
    for (int k = 0; k < n && !ret; k++) ret = one_open(&b[k], k ? o->compare : o->model, o);
    if (ret) goto out;
    if (n == 2 && b[0].hp.vocab_size != b[1].hp.vocab_size) {
        ret = usage_error("bench: --compare: %s has vocab_size %d, %s %d; the two must take the same prompt", b[0].path,
                          b[0].hp.vocab_size, b[1].path, b[1].hp.vocab_size);
        goto out;
    }
    skl_blas_info bi;
    skl_blas_get_info(&bi, sizeof bi);
    size_t cbytes = (size_t)o->ceiling_mib << 20;
    prompt = malloc((size_t)P * sizeof *prompt);
    cbuf = membw_alloc(cbytes);
    if (!prompt || !cbuf) {
        ret = runtime_error("bench: out of memory (ceiling buffer %ld MiB)", o->ceiling_mib);
        goto out;
    }
    uint64_t s = 0x5EED;
    for (int32_t i = 0; i < P; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        prompt[i] = (int32_t)((s >> 33) % (uint64_t)b[0].hp.vocab_size);
    }
    /* Warm-up: fault in the weights (where used in place from the file mapping) and the buffers of a
     * whole-prompt prefill, run the sgemm reference once, start the threads. */
    for (int k = 0; k < n; k++) {
        double w_prefill, w_decode = 0, w_sgemm = 0;
        sgemm_window(&b[k].g, (int)o->threads, 1, &w_sgemm);
        int rc = prefill(b[k].ctx, prompt, P, &w_prefill);
        for (int t = 0; t < 2 && !rc; t++) rc = decode_step(b[k].ctx, b[k].hp.vocab_size, &w_decode);
        if (rc) { ret = lib_error("bench: eval", rc); goto out; }
        b[k].huge_share = huge_page_share(b[k].weights, b[k].n_weights);
    }
    /* What each model's ceiling reads, and a calibration there: the best of a few read settings,
     * which the reads between decode steps use.  The fresh buffer is read once for comparison. */
    membw_region buffer = {cbuf, cbytes};
    double buffer_gbps = membw_read_gbps(&buffer, 1, (int)o->threads, 2, NULL);
    for (int k = 0; k < n && buffer_gbps > 0; k++) {
        bench_one *m = &b[k];
        m->src = &buffer;
        m->n_src = 1;
        m->src_bytes = cbytes;
        m->src_name = "buffer";
        if (o->ceiling == CEIL_WEIGHTS || (o->ceiling == CEIL_AUTO && m->weights_bytes >= weights_min_bytes())) {
            m->src = m->weights;
            m->n_src = m->n_weights;
            m->src_bytes = m->weights_bytes;
            m->src_name = "weights";
        }
        m->setting = -1;
        m->best = membw_read_gbps(m->src, m->n_src, (int)o->threads, 2, &m->setting);
        if (m->best <= 0) break;
    }
    if (buffer_gbps <= 0 || b[0].best <= 0 || (n == 2 && b[1].best <= 0)) {
        ret = runtime_error("bench: could not start %ld reader threads for the ceiling", o->threads);
        goto out;
    }
    for (long i = 0; i < R; i++)
        if ((ret = run_repeat(b, n, i, prompt, o))) goto out;
    if (n == 2 && (ret = compare(&b[0], &b[1], R, &cmp))) goto out;

    if (o->json) {
        json_t *j = one_json(&b[0], o, &bi, buffer_gbps);
        if (n == 2) {
            json_t *top = json_object();
            json_object_set_new(top, "models", json_pack("[oo]", j, one_json(&b[1], o, &bi, buffer_gbps)));
            put_real(top, "speedup", cmp.speedup);
            put_real(top, "speedup_bound", cmp.bound);
            put_real(top, "speedup_at_equal_ceiling", cmp.at_equal_ceiling);
            put_reals(top, "speedup_runs", cmp.runs, R);
            j = top;
        }
        ret = print_json(j);
    } else {
        for (int k = 0; k < n; k++) {
            if (k) putchar('\n');
            one_text(&b[k], o, &bi, buffer_gbps);
        }
        if (n == 2)
            printf("\ncompare  %s over %s: decode x%.3f (median of %ld repeats, steps alternating), bound x%.3f (bytes per "
                   "token), %.3f of the bound; at equal ceiling x%.3f\n",
                   b[1].path, b[0].path, cmp.speedup, R, cmp.bound, cmp.speedup / cmp.bound, cmp.at_equal_ceiling);
    }
out:
    free(cmp.runs);
    membw_free(cbuf);
    free(prompt);
    for (int k = 0; k < 2; k++) one_close(&b[k]);
    return ret;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    return o.blas ? bench_blas(&o) : bench_model(&o);
}
