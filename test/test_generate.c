/* test_generate.c - skl_generate against a generation loop written here with
 * skl_eval + argmax (greedy) or skl_sample (seeded).
 *
 * Each case is one row of `cases`: the context size, how the prompt is
 * given, the sampling, the stopping rule, and the expected status, number of
 * tokens, stop reason and n_past.  Bad arguments are rows of `bad_args`. */
#include "tests.h"

#include <stdlib.h>
#include <string.h>

#define MODEL "serial_mha_silu_glu"
#define SEED 987654321u

typedef struct gen_case {
    const char *name;
    int32_t n_ctx;      /* 0: max_position_embeddings */
    int32_t n_prompt;   /* prompt tokens: the model's reference tokens[0..n_prompt) */
    int32_t pre_eval;   /* of those, evaluated with skl_eval before skl_generate gets the rest */
    int32_t max_tokens;
    bool seeded;        /* temperature 1, top_k 0, top_p 1, seed SEED; else greedy (temperature 0) */
    int stop_after;     /* the callback asks to stop after this many tokens; 0: never */
    int stop_at;        /* >= 0: stop tokens {V + 7, (reference token stop_at), -3}; -1: none */
    int status;         /* skl_generate's return */
    int32_t n;          /* tokens generated; -1: those before the stop token's first reference occurrence */
    skl_stop_reason reason;
    int32_t n_past;     /* afterwards; -1: not checked */
} gen_case;

static const gen_case cases[] = {
    /* name                        n_ctx prompt pre max seeded stop_after stop_at status n reason n_past */
    {"greedy", 0, 4, 0, 16, false, 0, -1, SKL_OK, 16, SKL_STOP_MAX_TOKENS, -1},
    {"greedy after a partial eval", 0, 4, 2, 16, false, 0, -1, SKL_OK, 16, SKL_STOP_MAX_TOKENS, -1},
    {"seeded", 0, 4, 0, 20, true, 0, -1, SKL_OK, 20, SKL_STOP_MAX_TOKENS, -1},
    {"stopped by the callback", 0, 4, 0, 8, false, 3, -1, SKL_OK, 3, SKL_STOP_CALLBACK, -1},
    {"stop token", 0, 4, 0, 8, false, 0, 3, SKL_OK, -1, SKL_STOP_STOP_TOKEN, -1},
    /* the prompt is still evaluated */
    {"zero tokens", 0, 4, 0, 0, false, 0, -1, SKL_OK, 0, SKL_STOP_MAX_TOKENS, 4},
    /* n_ctx - prompt + 1: the last token is sampled, not evaluated */
    {"until the context is full", 8, 4, 0, 100, false, 0, -1, SKL_OK, 5, SKL_STOP_CONTEXT_FULL, 8},
    {"prompt too long", 4, 5, 0, 10, false, 0, -1, SKL_ERR_CONTEXT_FULL, 0, SKL_STOP_MAX_TOKENS, 0},
};

/* The case's generate params and sampler settings. */
static void case_params(skl_generate_params *gp, skl_sampler_params *sp, int32_t max_tokens, bool seeded) {
    test_generate_params(gp, sp, max_tokens, seeded ? 1.0f : 0.0f);
    if (seeded) sp->seed = SEED;
}

/* The test's own generation loop: eval the prompt, then argmax (greedy) or
 * skl_sample with a sampler of the case's parameters, one token at a time. */
static void reference_generate(const test_model *t, int32_t n_prompt, int32_t steps, bool seeded, int32_t *out) {
    skl_sampler *sampler = NULL;
    if (seeded) {
        skl_generate_params gp;
        skl_sampler_params sp;
        case_params(&gp, &sp, steps, true);
        ck_assert_int_eq(skl_sampler_create(&sp, &sampler), SKL_OK);
    }
    skl_context *ctx = test_context(t->model, TEST_DECODE, 0);
    ck_assert_int_eq(skl_eval(ctx, t->tokens, n_prompt), SKL_OK);
    for (int32_t i = 0; i < steps; i++) {
        int32_t rows;
        const float *lg = skl_logits(ctx, &rows);
        ck_assert_int_eq(rows, 1);
        out[i] = sampler ? test_sample(sampler, lg, t->hp.vocab_size) : argmax_f(lg, t->hp.vocab_size);
        if (i + 1 < steps) ck_assert_int_eq(skl_eval(ctx, &out[i], 1), SKL_OK);
    }
    skl_context_free(ctx);
    skl_sampler_free(sampler);
}

typedef struct recorder {
    int32_t toks[256];
    int n, stop_after, null_piece;
} recorder;

static int on_token(int32_t token, const char *piece, void *user_data) {
    recorder *r = user_data;
    ck_assert_int_lt(r->n, 256);
    r->toks[r->n++] = token;
    if (piece == NULL) r->null_piece++;
    return r->stop_after > 0 && r->n >= r->stop_after;
}

static void assert_tokens_eq(const int32_t *got, const int32_t *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: token %d is %d, expected %d", what, i, got[i], want[i]);
}

/* _i: row of `cases`, run twice on fresh contexts (the same tokens both times). */
START_TEST(test_generate_case) {
    const gen_case *c = &cases[_i];
    test_model t;
    test_open_named(&t, MODEL);
    ck_assert_int_ge(t.n, c->n_prompt);
    int32_t V = t.hp.vocab_size, want[256], n_want = c->n, stops[3] = {V + 7, -1, -3};
    if (c->stop_at >= 0) { /* greedy may produce the stop token before position stop_at */
        reference_generate(&t, c->n_prompt, c->max_tokens, c->seeded, want);
        stops[1] = want[c->stop_at];
        for (n_want = 0; want[n_want] != stops[1]; n_want++) {}
    } else if (n_want > 0) reference_generate(&t, c->n_prompt, n_want, c->seeded, want);

    skl_sampler_params sp;
    skl_generate_params gp;
    case_params(&gp, &sp, c->max_tokens, c->seeded);
    if (c->stop_at >= 0) {
        gp.stop_tokens = stops; /* tokens never produced (V + 7, -3) are harmless */
        gp.n_stop_tokens = 3;
    }
    int32_t first_run[256];
    for (int run = 0; run < 2; run++) {
        skl_context *ctx = test_context(t.model, TEST_DECODE, c->n_ctx);
        if (c->pre_eval) ck_assert_int_eq(skl_eval(ctx, t.tokens, c->pre_eval), SKL_OK);
        recorder r = {{0}, 0, c->stop_after, 0};
        skl_generate_result res;
        memset(&res, 0x55, sizeof res);
        int rc = skl_generate(ctx, t.tokens + c->pre_eval, c->n_prompt - c->pre_eval, &gp, on_token, &r, &res,
                              sizeof res);
        ck_assert_msg(rc == c->status, "%s: status %d (%s), expected %d", c->name, rc, skl_last_error(), c->status);
        ck_assert_msg(r.n == n_want && res.n_generated == n_want, "%s: %d tokens (result says %d), expected %d",
                      c->name, r.n, res.n_generated, n_want);
        ck_assert_int_eq(r.null_piece, r.n); /* no tokenizer: piece is NULL */
        if (rc == SKL_OK) {
            ck_assert_msg(res.stop_reason == c->reason, "%s: stop reason %d, expected %d", c->name,
                          (int)res.stop_reason, (int)c->reason);
            ck_assert_int_eq(res.stop_token, c->reason == SKL_STOP_STOP_TOKEN ? stops[1] : -1);
            ck_assert(res.prompt_seconds >= 0.0 && res.decode_seconds >= 0.0);
        }
        assert_tokens_eq(r.toks, want, r.n, c->name);
        for (int i = 0; c->stop_at >= 0 && i < r.n; i++) ck_assert_int_ne(r.toks[i], stops[1]);
        if (c->n_past >= 0) ck_assert_int_eq(skl_context_n_past(ctx), c->n_past);
        if (run) assert_tokens_eq(r.toks, first_run, r.n, "the same case a second time");
        else memcpy(first_run, r.toks, sizeof first_run);
        skl_context_free(ctx);
    }
    test_close(&t);
}
END_TEST

/* Argument checks: each row changes one thing of a valid call (greedy, 4 prompt tokens, 4 new ones). */
static const struct {
    const char *what;
    bool null_ctx, null_prompt, bad_token;
    int32_t n_prompt, max_tokens, n_stop_tokens;
    float temperature;
    int status;
} bad_args[] = {
    {"NULL context", true, false, false, 4, 4, 0, 0.0f, SKL_ERR_INVALID_ARG},
    {"NULL prompt", false, true, false, 4, 4, 0, 0.0f, SKL_ERR_INVALID_ARG},
    {"empty prompt", false, false, false, 0, 4, 0, 0.0f, SKL_ERR_INVALID_ARG},
    {"max_tokens -1", false, false, false, 4, -1, 0, 0.0f, SKL_ERR_INVALID_ARG},
    {"n_stop_tokens 1 with stop_tokens NULL", false, false, false, 4, 4, 1, 0.0f, SKL_ERR_INVALID_ARG},
    {"temperature -1", false, false, false, 4, 4, 0, -1.0f, SKL_ERR_INVALID_ARG},
    {"token = vocab_size in the prompt", false, false, true, 2, 4, 0, 0.0f, SKL_ERR_TOKEN},
};

START_TEST(test_generate_args) {
    test_model t;
    test_open_named(&t, MODEL);
    skl_context *ctx = test_context(t.model, TEST_DECODE, 0);
    recorder r = {{0}, 0, 0, 0};
    for (size_t i = 0; i < TEST_COUNT(bad_args); i++) {
        skl_sampler_params sp;
        skl_generate_params gp;
        test_generate_params(&gp, &sp, bad_args[i].max_tokens, 0.0f);
        sp.temperature = bad_args[i].temperature;
        gp.n_stop_tokens = bad_args[i].n_stop_tokens;
        int32_t bad[2] = {t.tokens[0], t.hp.vocab_size};
        const int32_t *prompt = bad_args[i].null_prompt ? NULL : bad_args[i].bad_token ? bad : t.tokens;
        int rc = skl_generate(bad_args[i].null_ctx ? NULL : ctx, prompt, bad_args[i].n_prompt, &gp, on_token, &r,
                              NULL, 0);
        ck_assert_msg(rc == bad_args[i].status, "%s: status %d, expected %d", bad_args[i].what, rc,
                      bad_args[i].status);
        ck_assert_int_eq(r.n, 0);
        ck_assert_int_eq(skl_context_n_past(ctx), 0);
    }
    /* NULL params, callback and result are allowed; 128 default tokens fill the context */
    ck_assert_int_eq(skl_generate(ctx, t.tokens, 4, NULL, NULL, NULL, NULL, 0), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), skl_context_n_ctx(ctx));
    skl_context_free(ctx);
    test_close(&t);
}
END_TEST

Suite *generate_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"generate", test_generate_case, (int)TEST_COUNT(cases), 0},
        {"generate", test_generate_args, 0, 0},
    };
    return test_suite("generate", tests, TEST_COUNT(tests));
}
