/* test_api.c - contract of the context API: argument checks, failed evals
 * leaving the context untouched, version macros, the progress and log
 * callbacks.  (Logits for each thread count: test_logits.c.) */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "serial_mha_silu_glu"

/* The model every test here opens (at least 6 tokens in its reference). */
static void open_model(test_model *t) {
    test_open_named(t, MODEL);
    ck_assert_int_ge(t->n, 6);
}

static skl_context *new_context(const test_model *t, int32_t n_ctx, bool logits_all) {
    return test_context(t->model, logits_all ? TEST_PREFILL : TEST_DECODE, n_ctx);
}

/* A copy of the current logits, to check a failed call left them alone. */
typedef struct snapshot {
    int32_t n_past, rows;
    const float *ptr;
    float *copy;
} snapshot;

static void snap(const test_model *f, const skl_context *ctx, snapshot *s) {
    s->n_past = skl_context_n_past(ctx);
    s->ptr = skl_logits(ctx, &s->rows);
    size_t n = (size_t)s->rows * f->hp.vocab_size;
    s->copy = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(s->copy);
    if (n) memcpy(s->copy, s->ptr, n * sizeof(float));
}

static void assert_unchanged(const test_model *f, const skl_context *ctx, const snapshot *s, const char *what) {
    int32_t rows = -1;
    const float *lg = skl_logits(ctx, &rows);
    ck_assert_msg(skl_context_n_past(ctx) == s->n_past, "%s: n_past %d -> %d", what, s->n_past,
                  skl_context_n_past(ctx));
    ck_assert_msg(rows == s->rows && lg == s->ptr, "%s: logits rows %d -> %d", what, s->rows, rows);
    if (rows)
        ck_assert_msg(memcmp(lg, s->copy, (size_t)rows * f->hp.vocab_size * sizeof(float)) == 0,
                      "%s: logits changed", what);
}

/* Context still usable and correct: the next token's logits match the reference. */
static void assert_next_matches_ref(const test_model *f, skl_context *ctx) {
    int32_t pos = skl_context_n_past(ctx), rows;
    ck_assert_int_lt(pos, f->n);
    ck_assert_int_eq(skl_eval(ctx, &f->tokens[pos], 1), SKL_OK);
    const float *lg = skl_logits(ctx, &rows);
    test_check_ref(lg + (size_t)(rows - 1) * f->hp.vocab_size, f->hp.vocab_size, f->entry, pos, 1, TEST_TOL,
                   "logits after a failed eval");
}

START_TEST(test_bad_token) {
    test_model f;
    open_model(&f);
    skl_context *ctx = new_context(&f, 0, false);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 3), SKL_OK);
    snapshot s;
    snap(&f, ctx, &s);
    int32_t bad[] = {-1, f.hp.vocab_size, f.hp.vocab_size + 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(skl_eval(ctx, &bad[i], 1), SKL_ERR_TOKEN);
        ck_assert_msg(strstr(skl_last_error(), "token") != NULL, "message: %s", skl_last_error());
        assert_unchanged(&f, ctx, &s, "single bad token");
        /* a bad token after good ones in a batch: nothing of the batch is applied */
        int32_t batch[3] = {f.tokens[3], f.tokens[4], bad[i]};
        ck_assert_int_eq(skl_eval(ctx, batch, 3), SKL_ERR_TOKEN);
        assert_unchanged(&f, ctx, &s, "batch with a bad token");
    }
    assert_next_matches_ref(&f, ctx);
    free(s.copy);
    skl_context_free(ctx);
    test_close(&f);
}
END_TEST

START_TEST(test_context_full) {
    test_model f;
    open_model(&f);
    const int32_t n_ctx = 5;
    skl_context *ctx = new_context(&f, n_ctx, true);
    ck_assert_int_eq(skl_context_n_ctx(ctx), n_ctx);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 3), SKL_OK);
    snapshot s;
    snap(&f, ctx, &s);
    ck_assert_int_eq(s.rows, 3);
    ck_assert_int_eq(skl_eval(ctx, f.tokens + 3, 3), SKL_ERR_CONTEXT_FULL);
    assert_unchanged(&f, ctx, &s, "overflowing eval");
    free(s.copy);
    assert_next_matches_ref(&f, ctx); /* 4 of 5 */
    assert_next_matches_ref(&f, ctx); /* 5 of 5: exactly full is fine */
    ck_assert_int_eq(skl_context_n_past(ctx), n_ctx);
    snap(&f, ctx, &s);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 1), SKL_ERR_CONTEXT_FULL);
    assert_unchanged(&f, ctx, &s, "eval into a full context");
    free(s.copy);
    /* more tokens than the whole context, into an empty one */
    ck_assert_int_eq(skl_kv_reset(ctx), SKL_OK);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, n_ctx + 1), SKL_ERR_CONTEXT_FULL);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    skl_context_free(ctx);
    test_close(&f);
}
END_TEST

START_TEST(test_eval_args) {
    test_model f;
    open_model(&f);
    skl_context *ctx = new_context(&f, 0, false);
    ck_assert_int_eq(skl_eval(ctx, NULL, 1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, -1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_eval(NULL, f.tokens, 1), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    ck_assert_int_eq(skl_kv_truncate(NULL, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_kv_reset(NULL), SKL_ERR_INVALID_ARG);
    skl_context_free(ctx);
    test_close(&f);
}
END_TEST

START_TEST(test_context_params) {
    test_model f;
    open_model(&f);
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    ck_assert_int_eq(cp.n_ctx, 0);
    ck_assert_int_eq(cp.n_threads, 1);
    ck_assert_int_eq(cp.n_batch, 256);
    ck_assert(!cp.logits_all);

    struct {
        int32_t n_ctx, n_threads, n_batch;
    } bad[] = {{f.hp.max_position_embeddings + 1, 1, 64}, {-1, 1, 64}, {0, 0, 64}, {0, -2, 64}, {0, 1, 0}, {0, 1, -5}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cp.n_ctx = bad[i].n_ctx;
        cp.n_threads = bad[i].n_threads;
        cp.n_batch = bad[i].n_batch;
        skl_context *ctx = (skl_context *)(void *)&cp;
        ck_assert_msg(skl_context_create(f.model, &cp, &ctx) == SKL_ERR_INVALID_ARG,
                      "n_ctx %d n_threads %d n_batch %d accepted", cp.n_ctx, cp.n_threads, cp.n_batch);
        ck_assert_ptr_null(ctx);
        ck_assert_str_ne(skl_last_error(), "");
    }
    /* n_ctx 0 means max_position_embeddings; NULL params mean defaults */
    skl_context_params_init(&cp, sizeof cp);
    skl_context *ctx = NULL;
    ck_assert_int_eq(skl_context_create(f.model, &cp, &ctx), SKL_OK);
    ck_assert_int_eq(skl_context_n_ctx(ctx), f.hp.max_position_embeddings);
    skl_context_free(ctx);
    ck_assert_int_eq(skl_context_create(f.model, NULL, &ctx), SKL_OK);
    ck_assert_int_eq(skl_context_n_ctx(ctx), f.hp.max_position_embeddings);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    skl_context_free(ctx);
    cp.n_ctx = f.hp.max_position_embeddings;
    ck_assert_int_eq(skl_context_create(f.model, &cp, &ctx), SKL_OK);
    skl_context_free(ctx);
    test_close(&f);
}
END_TEST

START_TEST(test_logits_before_eval) {
    test_model f;
    open_model(&f);
    skl_context *ctx = new_context(&f, 0, true);
    int32_t rows = 123;
    ck_assert_ptr_null(skl_logits(ctx, &rows));
    ck_assert_int_eq(rows, 0);
    ck_assert_ptr_null(skl_logits(ctx, NULL));
    rows = 123;
    ck_assert_ptr_null(skl_logits(NULL, &rows));
    ck_assert_int_eq(rows, 0);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 2), SKL_OK);
    ck_assert_ptr_nonnull(skl_logits(ctx, NULL));
    ck_assert_ptr_nonnull(skl_logits(ctx, &rows));
    ck_assert_int_eq(rows, 2);
    skl_context_free(ctx);
    test_close(&f);
}
END_TEST

START_TEST(test_version) {
    ck_assert_str_eq(skl_version(), SKL_VERSION_STRING);
    ck_assert_int_eq(skl_version_number(), SKL_VERSION_NUMBER);
    char s[64];
    snprintf(s, sizeof s, "%d.%d.%d", SKL_VERSION_MAJOR, SKL_VERSION_MINOR, SKL_VERSION_PATCH);
    ck_assert_str_eq(SKL_VERSION_STRING, s);
    ck_assert_int_eq(SKL_VERSION_NUMBER, SKL_VERSION_MAJOR * 10000 + SKL_VERSION_MINOR * 100 + SKL_VERSION_PATCH);
}
END_TEST

/* ------------------------------------------------------------ callbacks */

typedef struct progress_log {
    int calls, cancel_at, monotonic;
    uint64_t last_done, total;
} progress_log;

static int on_progress(uint64_t done, uint64_t total, void *user_data) {
    progress_log *p = user_data;
    p->calls++;
    if (done < p->last_done || done > total || (p->total && total != p->total)) p->monotonic = 0;
    p->last_done = done;
    p->total = total;
    return p->cancel_at > 0 && p->calls >= p->cancel_at;
}

START_TEST(test_progress) {
    json_t *man = test_manifest();
    const char *path = test_path(test_str(test_find_model(man, MODEL), "path"));
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    ck_assert_ptr_null(mp.progress);

    progress_log pl = {0, 0, 1, 0, 0};
    mp.progress = on_progress;
    mp.progress_user_data = &pl;
    skl_model *m = NULL;
    ck_assert_int_eq(skl_model_load(path, &mp, &m), SKL_OK);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_ge(pl.calls, 2);
    ck_assert_msg(pl.monotonic, "progress went backwards or past its total");
    ck_assert_msg(pl.total > 0 && pl.last_done == pl.total, "progress ended at %llu of %llu",
                  (unsigned long long)pl.last_done, (unsigned long long)pl.total);
    skl_model_free(m);

    for (int at = 1; at <= 2; at++) {
        progress_log cancel = {0, at, 1, 0, 0};
        mp.progress_user_data = &cancel;
        m = (skl_model *)(void *)&cancel;
        ck_assert_int_eq(skl_model_load(path, &mp, &m), SKL_ERR_CANCELLED);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(cancel.calls, at); /* not called again after cancelling */
        ck_assert_str_ne(skl_last_error(), "");
    }
    json_decref(man);
}
END_TEST

typedef struct log_record {
    int calls, errors, mentions;
    const char *needle;
} log_record;

static void on_log(skl_log_level level, const char *message, void *user_data) {
    log_record *r = user_data;
    r->calls++;
    if (level == SKL_LOG_ERROR) r->errors++;
    if (message && strstr(message, r->needle)) r->mentions++;
}

START_TEST(test_log_callback) {
    log_record r = {0, 0, 0, "no_such_model_for_log"};
    skl_log_set(on_log, &r);
    skl_model *m = NULL;
    ck_assert_int_eq(skl_model_load(test_path("no_such_model_for_log"), NULL, &m), SKL_ERR_IO);
    ck_assert_int_ge(r.errors, 1);
    ck_assert_int_ge(r.mentions, 1);
    /* the message logged is the last error */
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "no_such_model_for_log"));

    skl_log_set(NULL, NULL); /* silenced: no further calls */
    int before = r.calls;
    ck_assert_int_eq(skl_model_load(test_path("no_such_model_for_log"), NULL, &m), SKL_ERR_IO);
    ck_assert_int_eq(r.calls, before);
}
END_TEST

Suite *api_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"context", test_bad_token, 0, 0},
        {"context", test_context_full, 0, 0},
        {"context", test_eval_args, 0, 0},
        {"context", test_context_params, 0, 0},
        {"context", test_logits_before_eval, 0, 0},
        {"context", test_version, 0, 0},
        {"callbacks", test_progress, 0, 0},
        {"callbacks", test_log_callback, 0, 0},
    };
    return test_suite("api", tests, TEST_COUNT(tests));
}
