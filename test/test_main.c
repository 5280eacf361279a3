/* test_main.c - runs every suite; exits nonzero when a test fails.
 *
 *   SKL_TEST_MODELS=build/testmodels build/test/test_skipless
 *
 * Check's usual environment variables apply, e.g. CK_RUN_SUITE=generate,
 * CK_RUN_CASE=generate, CK_FORK=no (to debug in one process). */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>

int main(void) {
    if (test_n_models() == 0)
        fprintf(stderr, "warning: no test models in %s (set SKL_TEST_MODELS); model tests will fail\n",
                test_models_dir());
    SRunner *sr = srunner_create(logits_suite());
    srunner_add_suite(sr, load_suite());
    srunner_add_suite(sr, api_suite());
    srunner_add_suite(sr, sampling_suite());
    srunner_add_suite(sr, generate_suite());
    srunner_add_suite(sr, merge_suite());
    srunner_add_suite(sr, tokenizer_suite());
    srunner_add_suite(sr, kernels_suite());
    srunner_add_suite(sr, blas_suite());
    srunner_add_suite(sr, regions_suite());
    srunner_add_suite(sr, quant_suite());
    srunner_add_suite(sr, qkernels_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
