/* merge_bench.c - how fast the weight merge runs, against the dgemm rate of the same run.
 *
 *   build/bench/merge_bench MODEL [--threads N] [--remove qp|kp|vp] [--verify] [--dgemm-n N]
 *                           [--repeat R] [--layers-7b L]
 *
 * A benchmark, not a test (docs/performance.md: ratios against a baseline measured in the same
 * run).  It loads MODEL (a serial block model, e.g. from examples/tools/random_model.py; bench/merge.sh
 * makes a 7B-shaped one), then in this order: a float64 dgemm of N x N x N (default 4096) three
 * times, skl_model_merge (the in-memory merge, verify off unless --verify) R times, three more
 * dgemm runs.  OpenBLAS runs with N threads (default 2) throughout.  The merge's rate counts the
 * flops of docs/merge.md's formula,
 *   per block (2/3) d^3 + 8 d^2 e + 6 f d^2, plus 2 V d^2 for the embedding,
 * over the merge's wall time; the dgemm rate is the median of its six runs.  Two 7B figures
 * (Mistral-7B: d 4096, e 1024, f 14336, L 32, V 32000): the formula's flops at the measured
 * rate, and, for a model of the 7B's block shape, block 0 (which includes the embedding) plus
 * 31 times the median of the other blocks' times (from the progress callback), which does not
 * assume that the embedding's large product runs as fast as the blocks' work.
 * Prints one line per figure, `key value`, for bench/merge.sh and docs/merge.md. */
#include <skipless.h>

#include "cli/util.h" /* now_s, merge_flops: the CLI's, so both count alike */

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One float64 dgemm C = A B of n x n matrices, in GFLOP/s. a, b, c: [n, n]. */
static double dgemm_rate(int n, const double *a, const double *b, double *c) {
    double t0 = now_s();
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, a, n, b, n, 0.0, c, n);
    return 2.0 * n * (double)n * n / (now_s() - t0) / 1e9;
}

static double block_t0, block_end[4096]; /* seconds since the merge's start at the end of block i */
static int progress(uint64_t done, uint64_t total, void *ud) {
    (void)ud;
    double t = now_s() - block_t0;
    if (done >= 1 && done <= 4096) block_end[done - 1] = t;
    fprintf(stderr, "block %llu/%llu done at %.2f s\n", (unsigned long long)done, (unsigned long long)total, t);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    int threads = 2, n = 4096, repeat = 1, layers_7b = 32;
    bool verify = false;
    skl_removal removal = SKL_REMOVE_QP;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--verify")) verify = true;
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--dgemm-n") && v) n = atoi(argv[++i]);
        else if (!strcmp(a, "--repeat") && v) repeat = atoi(argv[++i]);
        else if (!strcmp(a, "--layers-7b") && v) layers_7b = atoi(argv[++i]);
        else if (!strcmp(a, "--remove") && v) {
            if (skl_removal_parse(argv[++i], &removal) || (removal != SKL_REMOVE_QP && removal != SKL_REMOVE_KP &&
                                                           removal != SKL_REMOVE_VP)) {
                fprintf(stderr, "merge_bench: --remove must be qp, kp or vp (the formula is for serial blocks)\n");
                return 1;
            }
        } else if (a[0] != '-' && !path) path = a;
        else {
            fprintf(stderr, "usage: merge_bench MODEL [--threads N] [--remove qp|kp|vp] [--verify] [--dgemm-n N] "
                            "[--repeat R] [--layers-7b L]\n");
            return 1;
        }
    }
    if (!path || threads < 1 || n < 64 || repeat < 1 || layers_7b < 1) {
        fprintf(stderr, "merge_bench: need MODEL; --threads >= 1, --dgemm-n >= 64, --repeat >= 1\n");
        return 1;
    }
    skl_model *m = NULL;
    int rc = skl_model_load(path, NULL, &m); /* also runs the OpenBLAS core check (src/blas.c) */
    if (rc) {
        fprintf(stderr, "merge_bench: %s\n", skl_last_error());
        return 2;
    }
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    skl_blas_info bi;
    skl_blas_get_info(&bi, sizeof bi);
    openblas_set_num_threads(threads);

    size_t nn = (size_t)n * (size_t)n;
    double *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "merge_bench: out of memory for the dgemm matrices\n");
        return 2;
    }
    uint64_t s = 88172645463325252ull; /* xorshift64: entries in [-1, 1) */
    for (size_t i = 0; i < nn; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        a[i] = (double)(s >> 11) / 4503599627370496.0 - 1.0;
        b[i] = -a[i];
    }
    double rates[6];
    dgemm_rate(n, a, b, c); /* warm-up: OpenBLAS's threads and buffers */
    for (int i = 0; i < 3; i++) rates[i] = dgemm_rate(n, a, b, c);

    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.remove = removal;
    mp.verify = verify;
    mp.progress = progress;
    double *secs = malloc((size_t)repeat * sizeof *secs), max_resid = 0, max_cond = 0, verr = -1;
    for (int r = 0; r < repeat && secs; r++) {
        skl_model *merged = NULL;
        skl_merge_report *rep = NULL;
        openblas_set_num_threads(threads); /* a previous verify's context may have changed it */
        block_t0 = now_s();
        rc = skl_model_merge(m, &mp, &merged, &rep);
        secs[r] = now_s() - block_t0;
        if (rc) {
            fprintf(stderr, "merge_bench: %s\n", skl_last_error());
            return 2;
        }
        max_resid = rep->max_residual, max_cond = rep->max_condition, verr = rep->verify_error;
        skl_merge_report_free(rep);
        skl_model_free(merged);
    }
    openblas_set_num_threads(threads);
    for (int i = 3; i < 6; i++) rates[i] = dgemm_rate(n, a, b, c);
    qsort(rates, 6, sizeof *rates, cmp_double);
    qsort(secs, (size_t)repeat, sizeof *secs, cmp_double);
    double dgemm = 0.5 * (rates[2] + rates[3]), t = secs[repeat / 2];
    double e = (double)hp.num_key_value_heads * hp.head_dim;
    double flops = merge_flops(hp.hidden_size, e, hp.intermediate_size, hp.vocab_size, hp.num_hidden_layers);
    double flops7b = merge_flops(4096, 1024, 14336, 32000, layers_7b);
    double rate = flops / t / 1e9;
    printf("model %s\n", path);
    printf("shape d %d e %.0f f %d L %d V %d\n", hp.hidden_size, e, hp.intermediate_size, hp.num_hidden_layers,
           hp.vocab_size);
    printf("openblas_core %s\n", bi.core ? bi.core : "?");
    printf("threads %d\n", threads);
    printf("verify %s\n", verify ? "on" : "off");
    printf("merge_seconds %.3f\n", t);
    printf("merge_flops %.4g\n", flops);
    printf("merge_gflops %.2f\n", rate);
    printf("dgemm_n %d\n", n);
    printf("dgemm_gflops %.2f (runs %.1f .. %.1f)\n", dgemm, rates[0], rates[5]);
    printf("ratio %.3f\n", rate / dgemm);
    printf("max_condition %.4g\n", max_cond);
    printf("max_residual %.3g\n", max_resid);
    if (verify) printf("verify_error %.3g\n", verr);
    printf("extrapolated_7b_flops %.3g (L %d)\n", flops7b, layers_7b);
    printf("extrapolated_7b_seconds %.0f (%.1f min, the formula's flops at merge_gflops)\n", flops7b / (rate * 1e9),
           flops7b / (rate * 1e9) / 60);
    int32_t L = hp.num_hidden_layers;
    if (L >= 2 && L <= 4096) { /* the last run's blocks */
        double *dt = malloc((size_t)L * sizeof *dt);
        for (int32_t i = 1; dt && i < L; i++) dt[i - 1] = block_end[i] - block_end[i - 1];
        if (dt) {
            qsort(dt, (size_t)L - 1, sizeof *dt, cmp_double);
            double blk = dt[(L - 1) / 2], est = block_end[0] + (layers_7b - 1) * blk;
            printf("block0_seconds %.3f\n", block_end[0]);
            printf("block_seconds %.3f (median of blocks 1..%d)\n", blk, L - 1);
            printf("extrapolated_7b_seconds_by_blocks %.0f (%.1f min)\n", est, est / 60);
        }
        free(dt);
    }
    free(a), free(b), free(c), free(secs);
    skl_model_free(m);
    return 0;
}
