/* test_logits.c - logits of every test model against the independent float64
 * numpy reference (test/reference.py), through each evaluation path:
 * one batched prefill, token-by-token decode, small batches, thread counts,
 * and a KV cache truncated and refilled.  Each loop iteration is one model of
 * the manifest; each evaluation path is one row of `paths`. */
#include "tests.h"

#include <stdlib.h>
#include <string.h>

START_TEST(test_manifest_has_models) {
    json_t *m = test_manifest();
    size_t n = json_array_size(json_object_get(m, "models"));
    ck_assert_msg(n >= 1, "the manifest lists no models");
    ck_assert_int_eq((int)n, test_n_models());
    json_decref(m);
}
END_TEST

/* The evaluation paths checked against the reference; a new one is a row. */
static const test_eval paths[] = {
    {.decode = false},                  /* all tokens in one skl_eval, logits_all: every row */
    {.decode = true},                   /* one token per skl_eval: the last row each time */
    {.n_batch = 3},                     /* internal batches of 3 (and a shorter tail), every row */
    {.n_batch = 3, .last_row = true},   /* the same without logits_all: the last row only */
    {.last_row = true},                 /* one batch, last row only */
    {.n_threads = 2},                   /* prefill and decode on 2 threads */
    {.decode = true, .n_threads = 2},
};

#define N_PATHS ((int)TEST_COUNT(paths))

/* _i: model _i / N_PATHS through path _i % N_PATHS. */
START_TEST(test_path_vs_ref) {
    test_model t;
    test_open(&t, _i / N_PATHS);
    test_logits_vs_ref(t.model, t.entry, paths[_i % N_PATHS], TEST_TOL, NULL);
    test_close(&t);
}
END_TEST

/* Eval everything, truncate the cache to half, re-eval the second half.
 * Then the same after filling the dropped positions with other tokens, so a
 * truncation that kept stale keys/values would show. */
START_TEST(test_kv_truncate) {
    test_model t;
    test_open(&t, _i);
    int32_t n = t.n, V = t.hp.vocab_size, half = n / 2, rest = n - half;
    skl_context *ctx = test_context(t.model, TEST_PREFILL, 0);
    test_eval_tokens(ctx, t.tokens, n, n, "all tokens");
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), half);
    const float *lg = test_eval_tokens(ctx, t.tokens + half, rest, rest, "after truncate");
    test_check_ref(lg, V, t.entry, half, rest, TEST_TOL, "after truncate");

    int32_t *other = malloc((size_t)rest * sizeof *other);
    ck_assert_ptr_nonnull(other);
    for (int32_t i = 0; i < rest; i++) other[i] = (t.tokens[half + i] + 1 + i) % V;
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    test_eval_tokens(ctx, other, rest, rest, "other tokens");
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    lg = test_eval_tokens(ctx, t.tokens + half, rest, rest, "after overwrite + truncate");
    test_check_ref(lg, V, t.entry, half, rest, TEST_TOL, "after overwrite + truncate");

    /* Truncating to 0 (reset) and starting over gives the prefill again. */
    ck_assert_int_eq(skl_kv_reset(ctx), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    lg = test_eval_tokens(ctx, t.tokens, n, n, "after reset");
    test_check_ref(lg, V, t.entry, 0, n, TEST_TOL, "after reset");

    /* n_keep outside [0, n_past] is rejected and changes nothing. */
    ck_assert_int_eq(skl_kv_truncate(ctx, n + 1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_kv_truncate(ctx, -1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_context_n_past(ctx), n);
    free(other);
    skl_context_free(ctx);
    test_close(&t);
}
END_TEST

/* All-position logits on `threads` threads: the prefill, with the last row
 * replaced by a decode step after truncating it away. */
static float *prefill_then_decode(const test_model *t, int32_t threads) {
    size_t V = (size_t)t->hp.vocab_size;
    skl_context *ctx = test_context(t->model, (test_eval){.n_threads = threads}, 0);
    float *out = malloc((size_t)t->n * V * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out, test_eval_tokens(ctx, t->tokens, t->n, t->n, "prefill"), (size_t)t->n * V * sizeof *out);
    ck_assert_int_eq(skl_kv_truncate(ctx, t->n - 1), SKL_OK);
    memcpy(out + (size_t)(t->n - 1) * V, test_eval_tokens(ctx, &t->tokens[t->n - 1], 1, 1, "decode"),
           V * sizeof *out);
    skl_context_free(ctx);
    return out;
}

/* 1 and 2 threads: each against the reference, and within 1e-5 of each other. */
START_TEST(test_threads_same_logits) {
    test_model t;
    test_open(&t, _i);
    float *one = prefill_then_decode(&t, 1);
    float *two = prefill_then_decode(&t, 2);
    test_check_ref(one, t.hp.vocab_size, t.entry, 0, t.n, TEST_TOL, "prefill + decode, 1 thread");
    test_check_ref(two, t.hp.vocab_size, t.entry, 0, t.n, TEST_TOL, "prefill + decode, 2 threads");
    double err = rel_error_f(two, one, (size_t)t.n * t.hp.vocab_size);
    ck_assert_msg(err < 1e-5, "%s: 1 vs 2 threads rel error %.3g", t.name, err);
    free(one);
    free(two);
    test_close(&t);
}
END_TEST

Suite *logits_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"manifest", test_manifest_has_models, 0, 0},
        {"paths", test_path_vs_ref, N_PATHS * test_n_models(), 0},
        {"kv_truncate", test_kv_truncate, TEST_EACH_MODEL, 0},
        {"threads", test_threads_same_logits, TEST_EACH_MODEL, 0},
    };
    return test_suite("logits", tests, TEST_COUNT(tests));
}
