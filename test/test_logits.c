/* test_logits.c - logits of every test model against the independent float64
 * numpy reference (test/reference.py), through each evaluation path:
 * one batched prefill, token-by-token decode, small batches, and a KV cache
 * truncated and refilled.  Each loop iteration is one model of the manifest. */
#include "tests.h"

#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

/* Everything one test needs about one model. */
typedef struct fixture {
    json_t *manifest;
    const char *name;
    skl_model *model;
    int32_t *tokens, n, V;
    double *ref; /* [n, V] */
} fixture;

static void fixture_open(fixture *f, int i) {
    memset(f, 0, sizeof *f);
    f->manifest = test_manifest();
    const json_t *e = test_entry(f->manifest, "models", i);
    f->name = test_str(e, "name");
    f->model = test_load(e);
    f->tokens = test_tokens(e, &f->n);
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(f->model, &hp, sizeof hp), SKL_OK);
    f->V = hp.vocab_size;
    int64_t rows, cols;
    f->ref = test_ref(e, &rows, &cols);
    ck_assert_msg(rows == f->n && cols == f->V, "%s: reference is [%lld, %lld], expected [%d, %d]", f->name,
                  (long long)rows, (long long)cols, f->n, f->V);
}

static void fixture_close(fixture *f) {
    free(f->ref);
    free(f->tokens);
    skl_model_free(f->model);
    json_decref(f->manifest);
}

static skl_context *new_context(const fixture *f, bool logits_all, int32_t n_batch) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.logits_all = logits_all;
    if (n_batch > 0) cp.n_batch = n_batch;
    skl_context *ctx = NULL;
    int rc = skl_context_create(f->model, &cp, &ctx);
    ck_assert_msg(rc == SKL_OK && ctx != NULL, "%s: context: %s", f->name, skl_last_error());
    return ctx;
}

/* Eval tokens[0..n) in one call; check n_past and that `rows` logit rows came back. */
static const float *eval_checked(const fixture *f, skl_context *ctx, const int32_t *toks, int32_t n,
                                 int32_t rows) {
    int32_t before = skl_context_n_past(ctx), got_rows = -1;
    int rc = skl_eval(ctx, toks, n);
    ck_assert_msg(rc == SKL_OK, "%s: skl_eval of %d tokens: %s (%s)", f->name, n, skl_strerror(rc),
                  skl_last_error());
    ck_assert_int_eq(skl_context_n_past(ctx), before + n);
    const float *lg = skl_logits(ctx, &got_rows);
    ck_assert_ptr_nonnull(lg);
    ck_assert_int_eq(got_rows, rows);
    return lg;
}

START_TEST(test_manifest_has_models) {
    json_t *m = test_manifest();
    size_t n = json_array_size(json_object_get(m, "models"));
    ck_assert_msg(n >= 1, "the manifest lists no models");
    ck_assert_int_eq((int)n, test_n_models());
    json_decref(m);
}
END_TEST

/* (a) all tokens in one skl_eval with logits_all: every row. */
START_TEST(test_prefill) {
    fixture f;
    fixture_open(&f, _i);
    skl_context *ctx = new_context(&f, true, 0);
    const float *lg = eval_checked(&f, ctx, f.tokens, f.n, f.n);
    double err = rel_error(lg, f.ref, (size_t)f.n * f.V);
    ck_assert_msg(err < TOL, "%s: prefill max rel error %.3g (tolerance %g)", f.name, err, TOL);
    skl_context_free(ctx);
    fixture_close(&f);
}
END_TEST

/* (b) one token per skl_eval (decode path): the last row each time. */
START_TEST(test_decode) {
    fixture f;
    fixture_open(&f, _i);
    skl_context *ctx = new_context(&f, false, 0);
    float *got = malloc((size_t)f.n * f.V * sizeof *got);
    ck_assert_ptr_nonnull(got);
    for (int32_t i = 0; i < f.n; i++) {
        const float *lg = eval_checked(&f, ctx, &f.tokens[i], 1, 1);
        memcpy(got + (size_t)i * f.V, lg, (size_t)f.V * sizeof *got);
    }
    double err = rel_error(got, f.ref, (size_t)f.n * f.V);
    ck_assert_msg(err < TOL, "%s: decode max rel error %.3g (tolerance %g)", f.name, err, TOL);
    free(got);
    skl_context_free(ctx);
    fixture_close(&f);
}
END_TEST

/* (c) n_batch = 3: the prompt is split into internal batches of 3 (and a
 * shorter tail); with logits_all all rows, without it the last row only. */
START_TEST(test_chunked) {
    fixture f;
    fixture_open(&f, _i);
    skl_context *ctx = new_context(&f, true, 3);
    const float *lg = eval_checked(&f, ctx, f.tokens, f.n, f.n);
    double err = rel_error(lg, f.ref, (size_t)f.n * f.V);
    ck_assert_msg(err < TOL, "%s: n_batch 3 max rel error %.3g (tolerance %g)", f.name, err, TOL);
    skl_context_free(ctx);

    ctx = new_context(&f, false, 3);
    lg = eval_checked(&f, ctx, f.tokens, f.n, 1);
    err = rel_error(lg, f.ref + (size_t)(f.n - 1) * f.V, (size_t)f.V);
    ck_assert_msg(err < TOL, "%s: n_batch 3 last-row max rel error %.3g (tolerance %g)", f.name, err, TOL);
    skl_context_free(ctx);
    fixture_close(&f);
}
END_TEST

/* (d) eval everything, truncate the cache to half, re-eval the second half.
 * Then the same after filling the dropped positions with other tokens, so a
 * truncation that kept stale keys/values would show. */
START_TEST(test_kv_truncate) {
    fixture f;
    fixture_open(&f, _i);
    int32_t half = f.n / 2, rest = f.n - half;
    const double *ref2 = f.ref + (size_t)half * f.V;
    skl_context *ctx = new_context(&f, true, 0);
    eval_checked(&f, ctx, f.tokens, f.n, f.n);
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), half);
    const float *lg = eval_checked(&f, ctx, f.tokens + half, rest, rest);
    double err = rel_error(lg, ref2, (size_t)rest * f.V);
    ck_assert_msg(err < TOL, "%s: after truncate max rel error %.3g (tolerance %g)", f.name, err, TOL);

    int32_t *other = malloc((size_t)rest * sizeof *other);
    ck_assert_ptr_nonnull(other);
    for (int32_t i = 0; i < rest; i++) other[i] = (f.tokens[half + i] + 1 + i) % f.V;
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    eval_checked(&f, ctx, other, rest, rest);
    ck_assert_int_eq(skl_kv_truncate(ctx, half), SKL_OK);
    lg = eval_checked(&f, ctx, f.tokens + half, rest, rest);
    err = rel_error(lg, ref2, (size_t)rest * f.V);
    ck_assert_msg(err < TOL, "%s: after overwrite + truncate max rel error %.3g (tolerance %g)", f.name, err,
                  TOL);

    /* Truncating to 0 (reset) and starting over gives the prefill again. */
    ck_assert_int_eq(skl_kv_reset(ctx), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    lg = eval_checked(&f, ctx, f.tokens, f.n, f.n);
    err = rel_error(lg, f.ref, (size_t)f.n * f.V);
    ck_assert_msg(err < TOL, "%s: after reset max rel error %.3g (tolerance %g)", f.name, err, TOL);

    /* n_keep outside [0, n_past] is rejected and changes nothing. */
    ck_assert_int_eq(skl_kv_truncate(ctx, f.n + 1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_kv_truncate(ctx, -1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_context_n_past(ctx), f.n);
    free(other);
    skl_context_free(ctx);
    fixture_close(&f);
}
END_TEST

Suite *logits_suite(void) {
    Suite *s = suite_create("logits");
    int n = test_n_models();
    TCase *tc = tcase_create("manifest");
    tcase_add_test(tc, test_manifest_has_models);
    suite_add_tcase(s, tc);
    struct {
        const char *name;
        const TTest *fn;
    } cases[] = {{"prefill", test_prefill},
                 {"decode", test_decode},
                 {"chunked", test_chunked},
                 {"kv_truncate", test_kv_truncate}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, TEST_TIMEOUT);
        tcase_add_loop_test(tc, cases[i].fn, 0, n);
        suite_add_tcase(s, tc);
    }
    return s;
}
