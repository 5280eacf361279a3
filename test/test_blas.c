/* test_blas.c - the OpenBLAS core check of src/blas.c (skl_blas_get_info).
 *
 * On a CPU with AVX-512 (or AVX2) the core in use after the check must be one
 * whose kernels use that instruction set, whatever OpenBLAS picked by itself;
 * the environment must be left as it was; and BLAS must still compute right
 * after a re-initialisation.  Skipped, with a message, on other CPUs, with
 * another BLAS, or when OPENBLAS_CORETYPE is set (the user's choice). */
#include "tests.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int in_list(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcasecmp(name, *list)) return 1;
    return 0;
}

START_TEST(test_blas_info_null) {
    ck_assert_int_eq(skl_blas_get_info(NULL, sizeof(skl_blas_info)), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "skl_blas_get_info"));
}
END_TEST

START_TEST(test_blas_core_not_generic) {
    int user_set = getenv("OPENBLAS_CORETYPE") != NULL;
    skl_blas_info bi;
    ck_assert_int_eq(skl_blas_get_info(&bi, sizeof bi), SKL_OK);
    if (!bi.openblas) {
        fprintf(stderr, "test_blas: skipped: the BLAS is not a dynamically linked OpenBLAS\n");
        return;
    }
    /* what OpenBLAS itself says it runs now */
    const char *running = openblas_get_corename();
    ck_assert_str_eq(bi.core, running);
    /* the environment is as before the check */
    ck_assert_int_eq(getenv("OPENBLAS_CORETYPE") != NULL, user_set);
    ck_assert_int_eq(bi.user_coretype, user_set);
    if (user_set) {
        fprintf(stderr, "test_blas: skipped: OPENBLAS_CORETYPE is set (core %s)\n", running);
        return;
    }
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        ck_assert_str_eq(bi.cpu_isa, "AVX-512");
        ck_assert_msg(in_list(running, avx512), "AVX-512 CPU but OpenBLAS core %s (it chose %s)", running,
                      bi.detected_core);
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        ck_assert_str_eq(bi.cpu_isa, "AVX2");
        ck_assert_msg(in_list(running, avx2), "AVX2 CPU but OpenBLAS core %s (it chose %s)", running,
                      bi.detected_core);
    } else {
        fprintf(stderr, "test_blas: skipped: CPU has neither AVX-512 nor AVX2 (core %s)\n", running);
        return;
    }
    ck_assert_int_eq(bi.core_changed, strcasecmp(bi.detected_core, running) != 0);
}
END_TEST

/* After the (possible) re-initialisation, a threaded sgemm against float64. */
/* OPENBLAS_CORETYPE set by the host after OpenBLAS started (here: after the
 * library constructors, before the first check) must still take effect.
 * Relies on Check's fork mode: the check has not run in this process yet. */
START_TEST(test_blas_user_coretype_set_late) {
#if defined(__x86_64__)
    const char *fork_mode = getenv("CK_FORK");
    if (getenv("OPENBLAS_CORETYPE") || (fork_mode && !strcmp(fork_mode, "no")) ||
        !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "test_blas: late OPENBLAS_CORETYPE skipped (variable set, CK_FORK=no or no AVX2)\n");
        return;
    }
    ck_assert_int_eq(setenv("OPENBLAS_CORETYPE", "Haswell", 1), 0);
    skl_blas_info bi;
    int rc = skl_blas_get_info(&bi, sizeof bi);
    unsetenv("OPENBLAS_CORETYPE");
    ck_assert_int_eq(rc, SKL_OK);
    if (!bi.openblas) {
        fprintf(stderr, "test_blas: skipped: the BLAS is not a dynamically linked OpenBLAS\n");
        return;
    }
    ck_assert(bi.user_coretype);
    ck_assert(!bi.core_changed);
    ck_assert_msg(!strcasecmp(bi.core, "Haswell"), "OPENBLAS_CORETYPE=Haswell set late, core %s", bi.core);
    ck_assert_str_eq(bi.core, openblas_get_corename());
#else
    fprintf(stderr, "test_blas: late OPENBLAS_CORETYPE skipped (not x86-64)\n");
#endif
}
END_TEST

START_TEST(test_blas_sgemm_after_check) {
    skl_blas_info bi;
    ck_assert_int_eq(skl_blas_get_info(&bi, sizeof bi), SKL_OK);
    enum { M = 97, N = 515, K = 301 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N);
    ck_assert(a && b && c);
    uint64_t s = 12345;
    for (int i = 0; i < M * K; i++) a[i] = (float)((s = s * 6364136223846793005ULL + 1442695040888963407ULL) >> 40) / 16777216.0f - 0.5f;
    for (int i = 0; i < N * K; i++) b[i] = (float)((s = s * 6364136223846793005ULL + 1442695040888963407ULL) >> 40) / 16777216.0f - 0.5f;
    openblas_set_num_threads(2);
    /* c[M, N] = a[M, K] b[N, K]^T, the shape of a batched linear layer */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    double max_err = 0, max_ref = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double r = 0;
            for (int k = 0; k < K; k++) r += (double)a[i * K + k] * b[j * K + k];
            max_err = fmax(max_err, fabs(r - c[i * N + j]));
            max_ref = fmax(max_ref, fabs(r));
        }
    ck_assert_msg(max_err <= 1e-5 * max_ref, "sgemm with core %s: max error %.3g of %.3g", bi.core, max_err, max_ref);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* skl_blas_set_auto_core(false) before the first load: OpenBLAS keeps its own core. */
START_TEST(test_blas_auto_core_off) {
    const char *fork_mode = getenv("CK_FORK");
    if (fork_mode && !strcmp(fork_mode, "no")) {
        fprintf(stderr, "test_blas_auto_core_off: skipped with CK_FORK=no (needs a process where the check has not run)\n");
        return;
    }
    ck_assert_int_eq(skl_blas_set_auto_core(false), SKL_OK);
    skl_blas_info bi;
    ck_assert_int_eq(skl_blas_get_info(&bi, sizeof bi), SKL_OK);
    ck_assert(!bi.auto_core);
    ck_assert(!bi.core_changed);
    ck_assert(!bi.user_coretype); /* OPENBLAS_CORETYPE is not even read */
    ck_assert_str_eq(bi.core, bi.detected_core);
    ck_assert_int_eq(skl_blas_set_auto_core(true), SKL_ERR_INVALID_ARG); /* too late: the check ran */
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "too late"));
    ck_assert_int_eq(skl_blas_get_info(&bi, sizeof bi), SKL_OK);
    ck_assert(!bi.auto_core && !bi.core_changed);
}
END_TEST

Suite *blas_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"core", test_blas_info_null, 0, 0},
        {"core", test_blas_auto_core_off, 0, 0},
        {"core", test_blas_core_not_generic, 0, 0},
        {"core", test_blas_user_coretype_set_late, 0, 0},
        {"core", test_blas_sgemm_after_check, 0, 0},
    };
    return test_suite("blas", tests, TEST_COUNT(tests));
}
