/* bench.c - `skipless bench`: prefill and decode speed against limits measured in the same run.
 *
 *   skipless bench MODEL [--threads T] [--prompt-len N] [--gen N] [--repeat R]
 *                        [--ceiling-mib M] [--no-mmap] [--json]
 *   skipless bench --blas [--threads T] [--prompt-len N] [--ceiling-mib M] [--json]
 *
 * Definitions (docs/performance.md):
 *  - bytes per decode token: skl_model_decode_bytes(), the weights one
 *    batch-1 decode step reads in their stored dtypes: every linear layer
 *    (q/k/v/o/gate/up/down_proj) and lm_head with their biases, the final
 *    norm and one embedding row.  The KV cache reads (2 L kv_dim 4 bytes per
 *    cached position, under 1 % of the weights at these lengths) are not
 *    counted.
 *  - ceiling: streaming read of a buffer far larger than the last-level cache
 *    (--ceiling-mib, default 1024 MiB) by the same number of threads, each
 *    reading its slice as several prefetched vector streams (membw.c); best
 *    of 5 passes.  Decode bound = ceiling / bytes per token.
 *  - prefill FLOPs for N prompt tokens: 2 N (block linear weights) + 2 (lm_head
 *    weights: logits of the last token only) + 2 L H hd N (N + 1) (causal
 *    attention: q.k and the weighted sum of v, for every query/key pair).
 *  - sgemm reference: cblas_sgemm of x[N, hidden] by up_proj's W[ffn, hidden]^T,
 *    the shape of the largest prefill products, same thread count, best of 2.
 * Every repeat measures ceiling, sgemm, prefill and decode in turn; the
 * figures are medians over repeats, ratios are ratios of medians.
 * The model is loaded with the library's default (file mapping used in
 * place) or, with --no-mmap, with skl_model_params.use_mmap false (weights
 * copied onto huge pages); the load time is reported as load_seconds.
 *
 * --blas measures sgemm (N x 2048 x 5632) and sgemv (a matrix of --ceiling-mib
 * MiB) with the OpenBLAS core OpenBLAS picked, then lets libskipless check
 * the core (skl_blas_get_info) and measures again. */
#include "bench.h"

#include "membw.h"
#include "skipless.h"

#include <cblas.h>
#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *model;
    long threads, prompt_len, gen, repeat, ceiling_mib;
    int json, blas, no_mmap;
} bench_opts;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("skipless: bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

static int parse_opts(int argc, char **argv, bench_opts *o) {
    static const struct {
        const char *name;
        long lo, hi;
        size_t field;
    } ints[] = {
        {"--threads", 1, 1024, offsetof(bench_opts, threads)},
        {"--prompt-len", 1, 65536, offsetof(bench_opts, prompt_len)},
        {"--gen", 1, 65536, offsetof(bench_opts, gen)},
        {"--repeat", 1, 1000, offsetof(bench_opts, repeat)},
        {"--ceiling-mib", 16, 1 << 20, offsetof(bench_opts, ceiling_mib)},
    };
    *o = (bench_opts){NULL, 1, 256, 64, 3, 1024, 0, 0, 0};
    const char *model_only = NULL; /* an option --blas does not use */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--blas")) { o->blas = 1; continue; }
        if (!strcmp(a, "--no-mmap")) { o->no_mmap = 1; model_only = a; continue; }
        size_t k = 0, n = sizeof ints / sizeof ints[0];
        while (k < n && strcmp(a, ints[k].name) != 0) k++;
        if (k < n) {
            if (i + 1 >= argc) return usage_error("option %s needs a value", a);
            long *field = (long *)((char *)o + ints[k].field);
            if (ints[k].field == offsetof(bench_opts, gen) || ints[k].field == offsetof(bench_opts, repeat))
                model_only = a;
            if (parse_long(argv[++i], ints[k].lo, ints[k].hi, field))
                return usage_error("%s must be an integer in [%ld, %ld], got '%s'", a, ints[k].lo, ints[k].hi, argv[i]);
        } else if (a[0] == '-') {
            return usage_error("unknown option %s (see skipless --help)", a);
        } else if (!o->model) {
            o->model = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
    }
    if (o->blas && o->model) return usage_error("--blas takes no MODEL (got '%s')", o->model);
    if (o->blas && model_only) return usage_error("%s does not apply to --blas", model_only);
    if (!o->blas && !o->model) return usage_error("missing MODEL (or --blas)");
    return 0;
}

/* ------------------------------------------------------------- helpers */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

/* Best of `passes` sgemm runs (after one untimed), GFLOP/s. */
static double sgemm_gflops(const gemm_shape *g, int threads, int passes) {
    openblas_set_num_threads(threads);
    double best = 0;
    for (int p = -1; p < passes; p++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->m, g->n, g->k, 1.0f, g->x, g->k, g->w, g->k, 0.0f,
                    g->y, g->n);
        double dt = now_s() - t0;
        double r = 2.0 * g->m * (double)g->n * g->k / dt / 1e9;
        if (p >= 0 && r > best) best = r;
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

static void put_real(json_t *o, const char *key, double v) { json_object_set_new(o, key, json_real(v)); }
static void put_int(json_t *o, const char *key, long long v) { json_object_set_new(o, key, json_integer(v)); }
static void put_str(json_t *o, const char *key, const char *v) { json_object_set_new(o, key, json_string(v)); }
static void put_runs(json_t *o, const char *key, const double *v, long n) {
    json_t *a = json_array();
    for (long i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    json_object_set_new(o, key, a);
}

static int print_json(json_t *o) {
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8));
    json_decref(o);
    if (!s) {
        fprintf(stderr, "skipless: bench: out of memory for the JSON output\n");
        return 2;
    }
    puts(s);
    free(s);
    return 0;
}

static void put_blas(json_t *o, const skl_blas_info *bi) {
    put_str(o, "blas_core", bi->openblas ? bi->core : "not OpenBLAS");
    put_str(o, "blas_detected_core", bi->openblas ? bi->detected_core : "not OpenBLAS");
    json_object_set_new(o, "blas_core_changed", json_boolean(bi->core_changed));
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
        fprintf(stderr, "skipless: bench: out of memory for the BLAS operands (%ld MiB)\n", o->ceiling_mib);
        return 2;
    }
    fill(x, (size_t)cols, 3);
    /* OpenBLAS as it initialised itself: nothing of libskipless has run yet. */
    const char *before_core = openblas_get_corename();
    char before[64];
    snprintf(before, sizeof before, "%s", before_core ? before_core : "?");
    double gemm0 = sgemm_gflops(&g, threads, 3), gemv0 = sgemv_gbps(w, rows, cols, x, y, threads, 5);
    skl_blas_info bi;
    skl_blas_get_info(&bi);
    double gemm1 = sgemm_gflops(&g, threads, 3), gemv1 = sgemv_gbps(w, rows, cols, x, y, threads, 5);
    double ceiling = membw_read_gbps(w, (size_t)rows * cols * sizeof(float), threads, 3);
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

typedef struct {
    double *ceiling, *sgemm, *prefill_s, *decode_s, *ratio; /* [repeat] each */
} runs;

/* The share of the model file's resident pages that are mapped as 2 MiB
 * pages (FilePmdMapped / Rss over the process's mappings of that file, from
 * /proc/self/smaps); -1 when not known (no such mapping: --no-mmap, or not
 * Linux).  A diagnostic: decode streams the weights, and on 4 KiB pages it
 * runs a few per cent slower (docs/performance.md). */
static double huge_page_share(const char *model) {
    char path[4096], real[4096], line[4608];
    size_t n = strlen(model);
    if (n >= 12 && !strcmp(model + n - 12, ".safetensors")) snprintf(path, sizeof path, "%s", model);
    else snprintf(path, sizeof path, "%s/model.safetensors", model);
    if (!realpath(path, real)) return -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    double rss = 0, pmd = 0, v;
    int in = 0;
    while (fgets(line, sizeof line, f)) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        unsigned long a, b;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &a, &b, &off) == 2 && off > 0) {
            in = strcmp(line + off, real) == 0;
        } else if (in && sscanf(line, "Rss: %lf", &v) == 1) {
            rss += v;
        } else if (in && sscanf(line, "FilePmdMapped: %lf", &v) == 1) {
            pmd += v;
        }
    }
    fclose(f);
    return rss > 0 ? pmd / rss : -1;
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

/* One prefill of the prompt then `gen` greedy decode steps from an empty
 * cache.  With cbuf, the ceiling is measured right before and right after
 * the decode steps (3 + 2 passes; *ceiling = the best), so the two figures
 * of a repeat come from the same few seconds of a shared machine. */
static int run_once(skl_context *ctx, const int32_t *prompt, int32_t n_prompt, int32_t gen, int32_t vocab,
                    double *prefill_s, double *decode_s, const float *cbuf, size_t cbytes, int threads,
                    double *ceiling) {
    int rc = skl_kv_reset(ctx);
    if (rc) return rc;
    double t0 = now_s();
    if ((rc = skl_eval(ctx, prompt, n_prompt))) return rc;
    *prefill_s = now_s() - t0;
    double c0 = cbuf ? membw_read_gbps(cbuf, cbytes, threads, 3) : 0;
    double total = 0;
    for (int32_t i = 0; i < gen; i++) {
        int32_t tok = argmax(skl_logits(ctx, NULL), vocab);
        t0 = now_s();
        if ((rc = skl_eval(ctx, &tok, 1))) return rc;
        total += now_s() - t0;
    }
    *decode_s = total;
    if (cbuf) {
        double c1 = membw_read_gbps(cbuf, cbytes, threads, 2);
        *ceiling = c0 < 0 || c1 < 0 ? -1 : c0 > c1 ? c0 : c1;
    }
    return 0;
}

static int bench_model(const bench_opts *o) {
    skl_model *m = NULL;
    skl_context *ctx = NULL;
    int32_t *prompt = NULL;
    float *cbuf = NULL;
    gemm_shape g = {0};
    runs r = {0};
    skl_model_params mp;
    skl_model_params_init(&mp);
    mp.use_mmap = !o->no_mmap;
    double load_t0 = now_s();
    int ret = 0, rc = skl_model_load(o->model, &mp, &m);
    if (rc) return lib_error("bench: load", rc);
    double load_s = now_s() - load_t0;
    skl_hparams hp;
    skl_weight_counts wc;
    skl_blas_info bi;
    skl_model_hparams(m, &hp);
    skl_model_weight_counts(m, &wc);
    uint64_t decode_bytes = skl_model_decode_bytes(m);
    const char *dtype = skl_model_weight_dtype(m);
    skl_blas_get_info(&bi);
    int32_t P = (int32_t)o->prompt_len, G = (int32_t)o->gen, T = (int32_t)o->threads;
    long R = o->repeat;
    if ((long)P + G > hp.max_position_embeddings) {
        ret = usage_error("--prompt-len %d + --gen %d = %ld exceeds the model's max_position_embeddings %d", P, G,
                          (long)P + G, hp.max_position_embeddings);
        goto out;
    }
    skl_context_params cp;
    skl_context_params_init(&cp);
    cp.n_ctx = P + G;
    cp.n_threads = T;
    cp.n_batch = P; /* the whole prompt in one batch: one sgemm per linear layer */
    if ((rc = skl_context_create(m, &cp, &ctx))) { ret = lib_error("bench: context", rc); goto out; }

    size_t cbytes = (size_t)o->ceiling_mib << 20;
    prompt = malloc((size_t)P * sizeof *prompt);
    cbuf = membw_alloc(cbytes);
    r.ceiling = calloc((size_t)R, sizeof(double));
    r.sgemm = calloc((size_t)R, sizeof(double));
    r.prefill_s = calloc((size_t)R, sizeof(double));
    r.decode_s = calloc((size_t)R, sizeof(double));
    r.ratio = calloc((size_t)R, sizeof(double));
    if (!prompt || !cbuf || !r.ceiling || !r.sgemm || !r.prefill_s || !r.decode_s || !r.ratio ||
        gemm_alloc(&g, P, hp.intermediate_size, hp.hidden_size)) {
        fprintf(stderr, "skipless: bench: out of memory (ceiling buffer %ld MiB, sgemm %dx%dx%d)\n", o->ceiling_mib, P,
                hp.hidden_size, hp.intermediate_size);
        ret = 2;
        goto out;
    }
    uint64_t s = 0x5EED;
    for (int32_t i = 0; i < P; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        prompt[i] = (int32_t)((s >> 33) % (uint64_t)hp.vocab_size);
    }
    /* Warm-up: fault in the weights (F32 ones are read from the file mapping) and start the threads. */
    double w_prefill, w_decode;
    if ((rc = run_once(ctx, prompt, P < 8 ? P : 8, 2, hp.vocab_size, &w_prefill, &w_decode, NULL, 0, T, NULL))) {
        ret = lib_error("bench: eval", rc);
        goto out;
    }
    double huge_share = huge_page_share(o->model);
    for (long i = 0; i < R; i++) {
        r.sgemm[i] = sgemm_gflops(&g, T, 2);
        if ((rc = run_once(ctx, prompt, P, G, hp.vocab_size, &r.prefill_s[i], &r.decode_s[i], cbuf, cbytes, T,
                           &r.ceiling[i]))) {
            ret = lib_error("bench: eval", rc);
            goto out;
        }
        if (r.ceiling[i] <= 0) {
            fprintf(stderr, "skipless: bench: could not start %d reader threads for the ceiling\n", T);
            ret = 2;
            goto out;
        }
        r.ratio[i] = (double)decode_bytes * G / r.decode_s[i] / 1e9 / r.ceiling[i];
    }

    /* ---- figures (definitions at the top of this file) ---- */
    double *tps = calloc((size_t)R * 2, sizeof(double));
    if (!tps) { fprintf(stderr, "skipless: bench: out of memory\n"); ret = 2; goto out; }
    for (long i = 0; i < R; i++) {
        tps[i] = G / r.decode_s[i];
        tps[R + i] = P / r.prefill_s[i];
    }
    double decode_tps = median(tps, R), prefill_tps = median(tps + R, R);
    free(tps);
    double ceiling = median(r.ceiling, R), sgemm = median(r.sgemm, R), ratio = median(r.ratio, R);
    double bytes = (double)decode_bytes;
    double decode_gbps = bytes * decode_tps / 1e9;
    uint64_t block_w = wc.q + wc.k + wc.v + wc.o + wc.gate + wc.up + wc.down;
    double attn_flops = 2.0 * hp.num_hidden_layers * hp.num_attention_heads * (double)hp.head_dim * P * (P + 1.0);
    double prefill_flops = 2.0 * P * (double)block_w + 2.0 * (double)wc.head + attn_flops;
    double prefill_gflops = prefill_flops * prefill_tps / P / 1e9;
    char absent[5];
    absent_projections(m, hp.num_hidden_layers, absent);

    if (o->json) {
        json_t *j = json_object();
        put_str(j, "model", o->model);
        put_str(j, "dtype", dtype);
        json_object_set_new(j, "merged", json_boolean(absent[0] != '\0'));
        put_str(j, "absent_projections", absent);
        put_int(j, "hidden_size", hp.hidden_size);
        put_int(j, "num_hidden_layers", hp.num_hidden_layers);
        put_int(j, "num_attention_heads", hp.num_attention_heads);
        put_int(j, "num_key_value_heads", hp.num_key_value_heads);
        put_int(j, "intermediate_size", hp.intermediate_size);
        put_int(j, "vocab_size", hp.vocab_size);
        put_int(j, "threads", T);
        put_int(j, "prompt_len", P);
        put_int(j, "gen", G);
        put_int(j, "repeat", R);
        json_object_set_new(j, "use_mmap", json_boolean(!o->no_mmap));
        put_real(j, "load_seconds", load_s);
        put_blas(j, &bi);
        put_str(j, "ceiling_kernel", membw_kernel());
        put_int(j, "ceiling_buffer_bytes", (long long)cbytes);
        put_int(j, "bytes_per_token", (long long)decode_bytes);
        put_int(j, "linear_weights", (long long)(block_w + wc.head));
        put_real(j, "decode_tokens_per_s", decode_tps);
        put_real(j, "decode_gb_per_s", decode_gbps);
        put_real(j, "ceiling_gb_per_s", ceiling);
        put_real(j, "decode_ceiling_ratio", ratio);
        put_real(j, "decode_bound_tokens_per_s", ceiling * 1e9 / bytes);
        put_real(j, "prefill_tokens_per_s", prefill_tps);
        put_real(j, "prefill_bytes_per_token", bytes / P);
        put_real(j, "prefill_gb_per_s", bytes / P * prefill_tps / 1e9);
        put_real(j, "prefill_flops", prefill_flops);
        put_real(j, "prefill_gflops", prefill_gflops);
        json_object_set_new(j, "sgemm_shape", json_pack("[iii]", P, hp.hidden_size, hp.intermediate_size));
        put_real(j, "sgemm_gflops", sgemm);
        put_real(j, "prefill_sgemm_ratio", prefill_gflops / sgemm);
        put_runs(j, "ceiling_gb_per_s_runs", r.ceiling, R);
        put_runs(j, "sgemm_gflops_runs", r.sgemm, R);
        put_runs(j, "prefill_seconds_runs", r.prefill_s, R);
        put_runs(j, "decode_seconds_runs", r.decode_s, R);
        put_runs(j, "decode_ceiling_ratio_runs", r.ratio, R);
        if (huge_share >= 0) put_real(j, "weights_huge_page_share", huge_share);
        else json_object_set_new(j, "weights_huge_page_share", json_null());
        ret = print_json(j);
    } else {
        printf("model    %s: %s, %d layers, hidden %d, %d/%d heads, FFN %d, vocab %d%s%s\n", o->model, dtype,
               hp.num_hidden_layers, hp.hidden_size, hp.num_attention_heads, hp.num_key_value_heads,
               hp.intermediate_size, hp.vocab_size, absent[0] ? ", merged: absent " : "", absent);
        printf("setup    %d threads, prompt %d, gen %d, medians of %ld repeats; BLAS core %s (%s picked %s; CPU %s)\n",
               T, P, G, R, bi.openblas ? bi.core : "n/a", bi.openblas ? "OpenBLAS" : "BLAS",
               bi.openblas ? bi.detected_core : "n/a", bi.cpu_isa);
        printf("load     %8.2f s      weights %s\n", load_s,
               o->no_mmap ? "copied onto huge pages (--no-mmap)" : "used in place from the file mapping");
        if (huge_share >= 0) printf("pages    %8.1f %%    of the mapped weights on 2 MiB pages\n", 100.0 * huge_share);
        printf("ceiling  %8.2f GB/s  streaming read of %ld MiB (%s kernel, multi-stream, best of 5 passes around each decode)\n",
               ceiling, o->ceiling_mib, membw_kernel());
        printf("decode   %8.2f tok/s  %.4g GB/token  %7.2f GB/s  %5.1f%% of ceiling (bound %.2f tok/s)\n",
               decode_tps, bytes / 1e9, decode_gbps, 100.0 * ratio, ceiling * 1e9 / bytes);
        printf("prefill  %8.2f tok/s  %.4g GB/token  %7.2f GB/s  %7.1f GFLOP/s  %5.1f%% of sgemm %dx%dx%d (%.1f GFLOP/s)\n",
               prefill_tps, bytes / P / 1e9, bytes / P * prefill_tps / 1e9, prefill_gflops,
               100.0 * prefill_gflops / sgemm, P, hp.hidden_size, hp.intermediate_size, sgemm);
    }
out:
    free(r.ceiling);
    free(r.sgemm);
    free(r.prefill_s);
    free(r.decode_s);
    free(r.ratio);
    gemm_free(&g);
    membw_free(cbuf);
    free(prompt);
    skl_context_free(ctx);
    skl_model_free(m);
    return ret;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) return rc;
    return o.blas ? bench_blas(&o) : bench_model(&o);
}
