/* test_api.c - contract of the context API: argument checks, failed evals
 * leaving the context untouched, version macros, the progress and log
 * callbacks.  (Logits for each thread count: test_logits.c.) */
#include "tests.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* ASan's allocator reports a failed allocation and exits unless told to return NULL,
 * as malloc does; test_context_nomem needs the NULL. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#endif

/* The process's address space now (VmSize), bytes; 0 if unknown. */
static uint64_t vm_size(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu", &pages) != 1) pages = 0;
    fclose(f);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* A context whose memory cannot be had fails with SKL_ERR_NOMEM and names the
 * bytes asked for.  The model is MODEL's weights under a config allowing
 * 2^24 positions (a directory in /tmp, the weights linked); the context is
 * created in a child whose address space may grow by 64 MiB only. */
START_TEST(test_context_nomem) {
    json_t *man = test_manifest();
    const json_t *e = test_find_model(man, MODEL);
    json_t *cfg = test_model_config(e);
    const int32_t n_ctx = 1 << 24;
    char dir[64];
    test_long_model(e, n_ctx, dir);
    skl_model *m = NULL;
    ck_assert_int_eq(skl_model_load(dir, NULL, &m), SKL_OK);
    /* the KV cache from the config alone: 2 L n_ctx KV hd floats */
    int d = (int)json_integer_value(json_object_get(cfg, "hidden_size"));
    int H = (int)json_integer_value(json_object_get(cfg, "num_attention_heads"));
    const json_t *kvj = json_object_get(cfg, "num_key_value_heads"), *hdj = json_object_get(cfg, "head_dim");
    uint64_t L = (uint64_t)json_integer_value(json_object_get(cfg, "num_hidden_layers"));
    uint64_t KV = kvj ? (uint64_t)json_integer_value(kvj) : (uint64_t)H, hd = hdj ? (uint64_t)json_integer_value(hdj) : (uint64_t)(d / H);
    uint64_t kv = 2 * L * (uint64_t)n_ctx * KV * hd * 4;
    ck_assert_uint_eq(skl_model_kv_bytes(m, n_ctx), kv);
    ck_assert_uint_gt(kv, (uint64_t)256 << 20); /* far more than the child may add */

    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        struct rlimit rl = {vm_size() + ((uint64_t)64 << 20), RLIM_INFINITY};
        rl.rlim_max = rl.rlim_cur;
        char msg[1024];
        skl_context_params cp;
        skl_context_params_init(&cp, sizeof cp);
        cp.n_ctx = n_ctx;
        skl_context *ctx = NULL;
        int rc = rl.rlim_cur > ((uint64_t)64 << 20) && setrlimit(RLIMIT_AS, &rl) == 0 ? skl_context_create(m, &cp, &ctx) : 1;
        int n = snprintf(msg, sizeof msg, "%d %s", rc, rc == 1 ? "setrlimit failed" : skl_last_error());
        ssize_t w = write(fds[1], msg, (size_t)n);
        _exit(w == n && ctx == NULL ? 0 : 3);
    }
    close(fds[1]);
    char got[1024];
    ssize_t n = read(fds[0], got, sizeof got - 1);
    close(fds[0]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d, said '%.*s'", status,
                  (int)(n > 0 ? n : 0), got);
    got[n > 0 ? n : 0] = '\0';
    char want[128];
    snprintf(want, sizeof want, "%d skl_context_create: out of memory for a %d-token context: ", SKL_ERR_NOMEM, n_ctx);
    ck_assert_msg(!strncmp(got, want, strlen(want)), "child said '%s'", got);
    snprintf(want, sizeof want, "KV cache %llu bytes", (unsigned long long)kv);
    ck_assert_msg(strstr(got, want) != NULL, "'%s' does not name the %s", got, want);
    unsigned long long total = 0, scratch = 0;
    const char *asked = strchr(got, ':');
    ck_assert_ptr_nonnull(asked);
    ck_assert_int_eq(sscanf(strchr(asked + 1, ':') + 1, " %llu bytes asked for", &total), 1);
    ck_assert_ptr_nonnull(strstr(got, "scratch "));
    ck_assert_int_eq(sscanf(strstr(got, "scratch ") + 8, "%llu", &scratch), 1);
    ck_assert_uint_eq(total, kv + scratch);

    skl_model_free(m);
    remove_long_model(dir);
    json_decref(cfg);
    json_decref(man);
}
END_TEST

/* Issue 15, defect 3: a context costs what its caller uses.  Under a config of
 * 2^24 positions, a context of 2^21 positions (a 2 GiB KV cache, 128 MiB of RoPE
 * tables for this model) is created and evaluates 3 tokens with its resident
 * memory growing by less than 32 MiB (the tables used to be filled for every
 * position at creation); its logits are those of a 64-position context. */
START_TEST(test_context_cost_follows_use) {
    json_t *man = test_manifest();
    const json_t *e = test_find_model(man, MODEL);
    char dir[64];
    test_long_model(e, 1 << 24, dir);
    skl_model *m = NULL;
    ck_assert_int_eq(skl_model_load(dir, NULL, &m), SKL_OK);
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    const int32_t n_ctx = 1 << 21, toks[3] = {1, 2, 3};
    uint64_t rope = (uint64_t)n_ctx * (uint64_t)(hp.head_dim / 2) * 2 * sizeof(float);
    ck_assert_uint_ge(rope, (uint64_t)64 << 20); /* the test has teeth */
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    skl_context *big = NULL, *small = NULL;
    test_rss_reset();
    ck_assert_int_eq(skl_context_create(m, &cp, &big), SKL_OK);
    ck_assert_int_eq(skl_eval(big, toks, 3), SKL_OK);
    uint64_t grew = test_rss_growth();
#if !defined(__SANITIZE_ADDRESS__) /* ASan's calloc clears what it hands out: every page is touched */
    ck_assert_msg(grew < ((uint64_t)32 << 20), "a %d-position context grew the peak RSS by %llu bytes", n_ctx,
                  (unsigned long long)grew);
#else
    (void)grew;
#endif
    cp.n_ctx = 64;
    ck_assert_int_eq(skl_context_create(m, &cp, &small), SKL_OK);
    ck_assert_int_eq(skl_eval(small, toks, 3), SKL_OK);
    const float *a = skl_logits(big, NULL), *b = skl_logits(small, NULL);
    ck_assert_int_eq(memcmp(a, b, (size_t)hp.vocab_size * sizeof *a), 0);
    skl_context_free(big);
    skl_context_free(small);
    skl_model_free(m);
    remove_long_model(dir);
    json_decref(man);
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
        {"context", test_context_nomem, 0, 0},
        {"context", test_context_cost_follows_use, 0, 0},
        {"context", test_logits_before_eval, 0, 0},
        {"context", test_version, 0, 0},
        {"callbacks", test_progress, 0, 0},
        {"callbacks", test_log_callback, 0, 0},
    };
    return test_suite("api", tests, TEST_COUNT(tests));
}
