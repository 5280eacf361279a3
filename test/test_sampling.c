/* test_sampling.c - skl_sample (greedy, seeding, top-k, top-p, temperature,
 * frequencies, argument checks) and skl_generate against loops written here
 * with skl_eval + argmax / skl_sample. */
#include "tests.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MODEL "serial_mha_silu_glu"

/* ------------------------------------------------ a test-side random source */

static uint64_t rng_state = 0x1234567ull;

static double urand(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void random_logits(float *x, int32_t n, double lo, double hi) {
    for (int32_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * urand());
}

static skl_sampler *new_sampler(float temperature, int32_t top_k, float top_p, uint64_t seed) {
    skl_sampler_params sp;
    skl_sampler_params_init(&sp, sizeof sp);
    sp.temperature = temperature;
    sp.top_k = top_k;
    sp.top_p = top_p;
    sp.seed = seed;
    skl_sampler *s = NULL;
    ck_assert_msg(skl_sampler_create(&sp, &s) == SKL_OK, "sampler: %s", skl_last_error());
    ck_assert_ptr_nonnull(s);
    return s;
}

static int32_t sample1(skl_sampler *s, const float *logits, int32_t n) {
    int32_t tok = -1;
    int rc = skl_sample(s, logits, n, &tok);
    ck_assert_msg(rc == SKL_OK, "skl_sample: %s (%s)", skl_strerror(rc), skl_last_error());
    ck_assert_msg(tok >= 0 && tok < n, "sampled token %d outside [0, %d)", tok, n);
    return tok;
}

/* Draw `draws` tokens into counts[n]. */
static void histogram(skl_sampler *s, const float *logits, int32_t n, int draws, int *counts) {
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) counts[sample1(s, logits, n)]++;
}

/* -------------------------------------------------------------- sampler */

START_TEST(test_params_defaults) {
    skl_sampler_params sp;
    memset(&sp, 0x55, sizeof sp);
    skl_sampler_params_init(&sp, sizeof sp);
    ck_assert(sp.temperature == 0.8f);
    ck_assert_int_eq(sp.top_k, 40);
    ck_assert(sp.top_p == 0.95f);
    ck_assert_uint_eq(sp.seed, 0x5EED);
    skl_generate_params gp;
    skl_generate_params_init(&gp, sizeof gp);
    ck_assert_uint_eq(gp.struct_size, sizeof gp);
    ck_assert_int_eq(gp.max_tokens, 128);
    ck_assert_int_eq(gp.n_stop_tokens, 0);
    ck_assert_ptr_null(gp.stop_tokens);
    ck_assert_ptr_null(gp.sampling); /* the sampler's defaults above */
}
END_TEST

START_TEST(test_greedy_random) {
    enum { V = 1000 };
    float x[V];
    skl_sampler *s = new_sampler(0.0f, 40, 0.95f, 1);
    for (int round = 0; round < 50; round++) {
        random_logits(x, V, -5.0, 5.0);
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (x[i] > x[best]) best = i;
        ck_assert_int_eq(sample1(s, x, V), best);
    }
    /* ties: the lowest id wins */
    random_logits(x, V, -5.0, 5.0);
    x[900] = x[17] = x[600] = 6.0f;
    ck_assert_int_eq(sample1(s, x, V), 17);
    /* a single token and negative logits */
    float one = -3.0f;
    ck_assert_int_eq(sample1(s, &one, 1), 0);
    float neg[3] = {-7.0f, -2.0f, -2.5f};
    ck_assert_int_eq(sample1(s, neg, 3), 1);
    skl_sampler_free(s);
}
END_TEST

START_TEST(test_greedy_model_logits) {
    json_t *man = test_manifest();
    const json_t *e = test_find_model(man, MODEL);
    skl_model *m = test_load(e);
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    int32_t n, rows;
    int32_t *toks = test_tokens(e, &n);
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.logits_all = true;
    skl_context *ctx = NULL;
    ck_assert_int_eq(skl_context_create(m, &cp, &ctx), SKL_OK);
    ck_assert_int_eq(skl_eval(ctx, toks, n), SKL_OK);
    const float *lg = skl_logits(ctx, &rows);
    ck_assert_int_eq(rows, n);
    /* and against the reference's argmax, which is independent of the library */
    int64_t rr, cc;
    double *ref = test_ref(e, &rr, &cc);
    skl_sampler *s = new_sampler(0.0f, 0, 1.0f, 7);
    for (int32_t r = 0; r < rows; r++) {
        const float *row = lg + (size_t)r * hp.vocab_size;
        int32_t tok = sample1(s, row, hp.vocab_size);
        ck_assert_int_eq(tok, argmax_f(row, hp.vocab_size));
        const double *rrow = ref + (size_t)r * cc;
        int32_t rbest = 0;
        for (int32_t i = 1; i < cc; i++)
            if (rrow[i] > rrow[rbest]) rbest = i;
        ck_assert_msg(rrow[rbest] - rrow[tok] < 1e-3, "row %d: greedy %d, reference argmax %d", r, tok, rbest);
    }
    skl_sampler_free(s);
    free(ref);
    skl_context_free(ctx);
    free(toks);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

START_TEST(test_seed) {
    enum { V = 100, DRAWS = 100 };
    float x[V];
    random_logits(x, V, 0.0, 0.1); /* nearly flat */
    skl_sampler *a = new_sampler(1.0f, 0, 1.0f, 42), *b = new_sampler(1.0f, 0, 1.0f, 42),
                *c = new_sampler(1.0f, 0, 1.0f, 43);
    int differ = 0, distinct = 0;
    int seen[V] = {0};
    for (int i = 0; i < DRAWS; i++) {
        int32_t ta = sample1(a, x, V), tb = sample1(b, x, V), tc = sample1(c, x, V);
        ck_assert_msg(ta == tb, "draw %d: same seed gave %d and %d", i, ta, tb);
        differ += ta != tc;
        distinct += !seen[ta]++;
    }
    ck_assert_msg(differ > DRAWS / 2, "seeds 42 and 43 agree on %d of %d draws", DRAWS - differ, DRAWS);
    ck_assert_msg(distinct > 30, "only %d distinct tokens in %d draws of a flat distribution", distinct, DRAWS);
    skl_sampler_free(a);
    skl_sampler_free(b);
    skl_sampler_free(c);
}
END_TEST

/* The RNG and the draw as documented in skipless.h, reimplemented here:
 * xoshiro256** seeded by four splitmix64(seed) outputs, u = (next >> 11) 2^-53,
 * then the inverse CDF over tokens ranked by logit (lower id first on ties). */
static uint64_t doc_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t doc_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t doc_next(uint64_t s[4]) {
    uint64_t result = doc_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = doc_rotl(s[3], 45);
    return result;
}

START_TEST(test_documented_rng) {
    /* probabilities 0.1, 0.4, 0.2, 0.3 (tokens 0..3): ranked 1, 3, 2, 0 */
    const double p[4] = {0.1, 0.4, 0.2, 0.3};
    const int rank[4] = {1, 3, 2, 0};
    float x[4];
    for (int i = 0; i < 4; i++) x[i] = (float)log(p[i]);
    const uint64_t seed = 0xC0FFEEull;
    uint64_t st[4], sm = seed;
    for (int i = 0; i < 4; i++) st[i] = doc_splitmix(&sm);
    skl_sampler *s = new_sampler(1.0f, 0, 1.0f, seed);
    for (int i = 0; i < 500; i++) {
        double u = (double)(doc_next(st) >> 11) * 0x1.0p-53, acc = 0.0;
        int want = rank[3];
        for (int k = 0; k < 4; k++) {
            acc += p[rank[k]];
            if (u < acc) {
                want = rank[k];
                break;
            }
        }
        if (fabs(u - 0.4) < 1e-6 || fabs(u - 0.7) < 1e-6 || fabs(u - 0.9) < 1e-6) {
            sample1(s, x, 4); /* too close to a boundary for float probabilities */
            continue;
        }
        ck_assert_msg(sample1(s, x, 4) == want, "draw %d (u = %.9f): expected token %d", i, u, want);
    }
    skl_sampler_free(s);
}
END_TEST

START_TEST(test_top_k) {
    enum { V = 50, K = 5, DRAWS = 10000 };
    float x[V];
    random_logits(x, V, 0.0, 3.0);
    /* the K largest, found by repeated selection */
    int in_top[V] = {0};
    for (int k = 0; k < K; k++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!in_top[i] && (best < 0 || x[i] > x[best])) best = i;
        in_top[best] = 1;
    }
    skl_sampler *s = new_sampler(1.0f, K, 1.0f, 5);
    int counts[V];
    histogram(s, x, V, DRAWS, counts);
    for (int i = 0; i < V; i++) {
        if (in_top[i]) ck_assert_msg(counts[i] > 0, "top-%d token %d never drawn", K, i);
        else ck_assert_msg(counts[i] == 0, "token %d outside the top %d drawn %d times", i, K, counts[i]);
    }
    skl_sampler_free(s);
    /* top_k larger than the vocabulary keeps everything */
    s = new_sampler(1.0f, 1000, 1.0f, 5);
    float flat[4] = {0, 0, 0, 0};
    int c4[4];
    histogram(s, flat, 4, 2000, c4);
    for (int i = 0; i < 4; i++) ck_assert_int_gt(c4[i], 300);
    skl_sampler_free(s);
}
END_TEST

/* Draw from log(p) with top_p and check the support is exactly the smallest
 * most-probable prefix whose mass reaches top_p (computed here), and that the
 * kept tokens keep their relative frequencies. */
static void check_top_p(const double *p, int n, float top_p) {
    float x[16];
    int order[16], keep[16] = {0}, counts[16];
    for (int i = 0; i < n; i++) {
        x[i] = (float)log(p[i]);
        order[i] = i;
    }
    for (int i = 1; i < n; i++) /* insertion sort by probability, descending */
        for (int j = i; j > 0 && p[order[j]] > p[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    double mass = 0.0;
    for (int i = 0; i < n && mass < top_p - 1e-9; i++) {
        keep[order[i]] = 1;
        mass += p[order[i]];
    }
    skl_sampler *s = new_sampler(1.0f, 0, top_p, 11);
    const int draws = 10000;
    histogram(s, x, n, draws, counts);
    for (int i = 0; i < n; i++) {
        if (!keep[i]) {
            ck_assert_msg(counts[i] == 0, "top_p %g: token %d (p %g) drawn %d times", top_p, i, p[i], counts[i]);
            continue;
        }
        double want = p[i] / mass, got = (double)counts[i] / draws;
        ck_assert_msg(fabs(got - want) < 0.03, "top_p %g: token %d frequency %.3f, expected %.3f", top_p, i, got,
                      want);
    }
    skl_sampler_free(s);
}

START_TEST(test_top_p) {
    const double a[4] = {0.4, 0.3, 0.2, 0.1};
    check_top_p(a, 4, 0.5f);  /* {0, 1} */
    check_top_p(a, 4, 0.75f); /* {0, 1, 2} */
    check_top_p(a, 4, 0.3f);  /* {0} */
    check_top_p(a, 4, 1.0f);  /* all */
    const double b[6] = {0.05, 0.3, 0.1, 0.35, 0.15, 0.05};
    check_top_p(b, 6, 0.5f); /* {3, 1} */
    check_top_p(b, 6, 0.9f); /* {3, 1, 4, 2} */
}
END_TEST

/* Chi-square of 20000 draws against p^(1/T) normalized, 7 degrees of
 * freedom: 35 is far beyond the 0.001 quantile (24.3), so only a wrong
 * distribution fails. */
static void check_frequencies(float temperature) {
    enum { V = 8, DRAWS = 20000 };
    const double p[V] = {0.05, 0.1, 0.15, 0.2, 0.25, 0.125, 0.075, 0.05};
    float x[V];
    double q[V], z = 0.0;
    for (int i = 0; i < V; i++) {
        x[i] = (float)log(p[i]);
        q[i] = pow(p[i], 1.0 / temperature);
        z += q[i];
    }
    skl_sampler *s = new_sampler(temperature, 0, 1.0f, 2024);
    int counts[V];
    histogram(s, x, V, DRAWS, counts);
    double chi2 = 0.0;
    for (int i = 0; i < V; i++) {
        double e = DRAWS * q[i] / z;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    ck_assert_msg(chi2 < 35.0, "temperature %g: chi-square %.1f over %d draws", temperature, chi2, DRAWS);
    skl_sampler_free(s);
}

START_TEST(test_frequencies) {
    check_frequencies(1.0f);
    check_frequencies(0.5f);
    check_frequencies(2.0f);
}
END_TEST

START_TEST(test_invalid_params) {
    const struct {
        float temperature;
        int32_t top_k;
        float top_p;
    } bad[] = {{-1.0f, 40, 0.95f}, {NAN, 40, 0.95f}, {INFINITY, 40, 0.95f}, {0.8f, -1, 0.95f},
               {0.8f, 40, 0.0f},   {0.8f, 40, 1.5f}, {0.8f, 40, -0.1f},     {0.8f, 40, NAN}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        skl_sampler_params sp;
        skl_sampler_params_init(&sp, sizeof sp);
        sp.temperature = bad[i].temperature;
        sp.top_k = bad[i].top_k;
        sp.top_p = bad[i].top_p;
        skl_sampler *s = (skl_sampler *)(void *)&sp;
        ck_assert_msg(skl_sampler_create(&sp, &s) == SKL_ERR_INVALID_ARG,
                      "case %zu (temperature %g top_k %d top_p %g) accepted", i, sp.temperature, sp.top_k,
                      sp.top_p);
        ck_assert_ptr_null(s);
        ck_assert_str_ne(skl_last_error(), "");
    }
}
END_TEST

START_TEST(test_invalid_sample_args) {
    float x[4] = {0.0f, 1.0f, NAN, 2.0f};
    int32_t tok = 77;
    skl_sampler *greedy = new_sampler(0.0f, 0, 1.0f, 1), *temp = new_sampler(1.0f, 0, 1.0f, 1);
    ck_assert_int_eq(skl_sample(greedy, x, 4, &tok), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(temp, x, 4, &tok), SKL_ERR_INVALID_ARG);
    x[2] = 0.5f;
    ck_assert_int_eq(skl_sample(temp, x, 0, &tok), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(temp, x, -1, &tok), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(temp, NULL, 4, &tok), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(temp, x, 4, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(NULL, x, 4, &tok), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sample(greedy, x, 4, &tok), SKL_OK);
    ck_assert_int_eq(tok, 3);
    skl_sampler_free(greedy);
    skl_sampler_free(temp);
}
END_TEST

/* ------------------------------------------------------------- generate */

typedef struct gen_fixture {
    json_t *manifest;
    skl_model *model;
    skl_hparams hp;
    int32_t *tokens, n;
} gen_fixture;

static void gen_open(gen_fixture *f) {
    memset(f, 0, sizeof *f);
    f->manifest = test_manifest();
    const json_t *e = test_find_model(f->manifest, MODEL);
    f->model = test_load(e);
    ck_assert_int_eq(skl_model_hparams(f->model, &f->hp, sizeof f->hp), SKL_OK);
    f->tokens = test_tokens(e, &f->n);
    ck_assert_int_ge(f->n, 5);
}

static void gen_close(gen_fixture *f) {
    free(f->tokens);
    skl_model_free(f->model);
    json_decref(f->manifest);
}

static skl_context *gen_context(const gen_fixture *f, int32_t n_ctx) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = n_ctx;
    skl_context *ctx = NULL;
    ck_assert_int_eq(skl_context_create(f->model, &cp, &ctx), SKL_OK);
    return ctx;
}

/* The test's own generation loop: eval the prompt, then sample (argmax when
 * sampler is NULL) and eval one token at a time. */
static void reference_generate(const gen_fixture *f, const int32_t *prompt, int32_t n_prompt, int32_t steps,
                               skl_sampler *sampler, int32_t *out) {
    skl_context *ctx = gen_context(f, 0);
    ck_assert_int_eq(skl_eval(ctx, prompt, n_prompt), SKL_OK);
    for (int32_t i = 0; i < steps; i++) {
        int32_t rows;
        const float *lg = skl_logits(ctx, &rows);
        ck_assert_int_eq(rows, 1);
        out[i] = sampler ? sample1(sampler, lg, f->hp.vocab_size) : argmax_f(lg, f->hp.vocab_size);
        if (i + 1 < steps) ck_assert_int_eq(skl_eval(ctx, &out[i], 1), SKL_OK);
    }
    skl_context_free(ctx);
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

/* The sampler settings greedy_params() points to (one test at a time per process). */
static skl_sampler_params greedy_sp;

static skl_generate_params greedy_params(int32_t max_tokens) {
    skl_generate_params gp;
    skl_generate_params_init(&gp, sizeof gp);
    skl_sampler_params_init(&greedy_sp, sizeof greedy_sp);
    gp.sampling = &greedy_sp;
    greedy_sp.temperature = 0.0f;
    gp.max_tokens = max_tokens;
    return gp;
}

static void assert_tokens_eq(const int32_t *got, const int32_t *want, int n, const char *what) {
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "%s: token %d is %d, expected %d", what, i, got[i], want[i]);
}

START_TEST(test_generate_greedy) {
    gen_fixture f;
    gen_open(&f);
    enum { P = 4, STEPS = 16 };
    int32_t want[STEPS];
    reference_generate(&f, f.tokens, P, STEPS, NULL, want);
    skl_context *ctx = gen_context(&f, 0);
    skl_generate_params gp = greedy_params(STEPS);
    recorder r = {{0}, 0, 0, 0};
    skl_generate_result res;
    memset(&res, 0x55, sizeof res);
    ck_assert_int_eq(skl_generate(ctx, f.tokens, P, &gp, on_token, &r, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(r.n, STEPS);
    ck_assert_int_eq(r.null_piece, STEPS); /* no tokenizer: piece is NULL */
    assert_tokens_eq(r.toks, want, STEPS, "greedy generate");
    ck_assert_int_eq(res.n_generated, STEPS);
    ck_assert_int_eq(res.stop_reason, SKL_STOP_MAX_TOKENS);
    ck_assert_int_eq(res.stop_token, -1);
    ck_assert(res.prompt_seconds >= 0.0 && res.decode_seconds >= 0.0);
    skl_context_free(ctx);

    /* The prompt is appended to what the context holds: split it in two. */
    ctx = gen_context(&f, 0);
    ck_assert_int_eq(skl_eval(ctx, f.tokens, 2), SKL_OK);
    r.n = 0;
    ck_assert_int_eq(skl_generate(ctx, f.tokens + 2, P - 2, &gp, on_token, &r, NULL, 0), SKL_OK);
    ck_assert_int_eq(r.n, STEPS);
    assert_tokens_eq(r.toks, want, STEPS, "generate after a partial eval");
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_seeded) {
    gen_fixture f;
    gen_open(&f);
    enum { P = 4, STEPS = 20 };
    skl_generate_params gp;
    skl_generate_params_init(&gp, sizeof gp);
    skl_sampler_params gp_sp;
    skl_sampler_params_init(&gp_sp, sizeof gp_sp);
    gp.sampling = &gp_sp;
    gp_sp.temperature = 1.0f;
    gp_sp.top_k = 0;
    gp_sp.top_p = 1.0f;
    gp_sp.seed = 987654321;
    gp.max_tokens = STEPS;
    recorder r1 = {{0}, 0, 0, 0}, r2 = {{0}, 0, 0, 0};
    for (int run = 0; run < 2; run++) {
        skl_context *ctx = gen_context(&f, 0);
        ck_assert_int_eq(skl_generate(ctx, f.tokens, P, &gp, on_token, run ? &r2 : &r1, NULL, 0), SKL_OK);
        skl_context_free(ctx);
    }
    ck_assert_int_eq(r1.n, STEPS);
    ck_assert_int_eq(r2.n, STEPS);
    assert_tokens_eq(r2.toks, r1.toks, STEPS, "same seed, second run");
    /* and equal to a skl_sample loop with a sampler of the same parameters */
    skl_sampler *s = NULL;
    ck_assert_int_eq(skl_sampler_create(gp.sampling, &s), SKL_OK);
    int32_t want[STEPS];
    reference_generate(&f, f.tokens, P, STEPS, s, want);
    assert_tokens_eq(r1.toks, want, STEPS, "generate vs skl_sample loop");
    skl_sampler_free(s);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_callback_stop) {
    gen_fixture f;
    gen_open(&f);
    int32_t want[8];
    reference_generate(&f, f.tokens, 4, 8, NULL, want);
    skl_context *ctx = gen_context(&f, 0);
    skl_generate_params gp = greedy_params(8);
    recorder r = {{0}, 0, 3, 0};
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(r.n, 3);
    ck_assert_int_eq(res.n_generated, 3);
    ck_assert_int_eq(res.stop_reason, SKL_STOP_CALLBACK);
    ck_assert_int_eq(res.stop_token, -1);
    assert_tokens_eq(r.toks, want, 3, "stopped by the callback");
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_stop_token) {
    gen_fixture f;
    gen_open(&f);
    enum { STEPS = 8 };
    int32_t want[STEPS];
    reference_generate(&f, f.tokens, 4, STEPS, NULL, want);
    int32_t stop = want[3], first = 0;
    while (want[first] != stop) first++; /* greedy may have produced it earlier */
    int32_t stops[3] = {f.hp.vocab_size + 7, stop, -3}; /* tokens never produced are harmless */
    skl_context *ctx = gen_context(&f, 0);
    skl_generate_params gp = greedy_params(STEPS);
    gp.stop_tokens = stops;
    gp.n_stop_tokens = 3;
    recorder r = {{0}, 0, 0, 0};
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(res.stop_reason, SKL_STOP_STOP_TOKEN);
    ck_assert_int_eq(res.stop_token, stop);
    ck_assert_int_eq(res.n_generated, first);
    ck_assert_int_eq(r.n, first);
    assert_tokens_eq(r.toks, want, first, "before the stop token");
    for (int i = 0; i < r.n; i++) ck_assert_int_ne(r.toks[i], stop);
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_zero_tokens) {
    gen_fixture f;
    gen_open(&f);
    skl_context *ctx = gen_context(&f, 0);
    skl_generate_params gp = greedy_params(0);
    recorder r = {{0}, 0, 0, 0};
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(res.n_generated, 0);
    ck_assert_int_eq(res.stop_reason, SKL_STOP_MAX_TOKENS);
    ck_assert_int_eq(skl_context_n_past(ctx), 4); /* the prompt was still evaluated */
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_context_full) {
    gen_fixture f;
    gen_open(&f);
    enum { N_CTX = 8, P = 4, EXPECT = N_CTX - P + 1 }; /* the last token is sampled, not evaluated */
    int32_t want[EXPECT];
    reference_generate(&f, f.tokens, P, EXPECT, NULL, want);
    skl_context *ctx = gen_context(&f, N_CTX);
    skl_generate_params gp = greedy_params(100);
    recorder r = {{0}, 0, 0, 0};
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, P, &gp, on_token, &r, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(res.stop_reason, SKL_STOP_CONTEXT_FULL);
    ck_assert_int_eq(res.n_generated, EXPECT);
    ck_assert_int_eq(r.n, EXPECT);
    assert_tokens_eq(r.toks, want, EXPECT, "until the context is full");
    ck_assert_int_eq(skl_context_n_past(ctx), N_CTX);
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_prompt_too_long) {
    gen_fixture f;
    gen_open(&f);
    skl_context *ctx = gen_context(&f, 4);
    skl_generate_params gp = greedy_params(10);
    recorder r = {{0}, 0, 0, 0};
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 5, &gp, on_token, &r, &res, sizeof res), SKL_ERR_CONTEXT_FULL);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(res.n_generated, 0);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

START_TEST(test_generate_args) {
    gen_fixture f;
    gen_open(&f);
    skl_context *ctx = gen_context(&f, 0);
    recorder r = {{0}, 0, 0, 0};
    skl_generate_params gp = greedy_params(4);
    ck_assert_int_eq(skl_generate(NULL, f.tokens, 4, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_generate(ctx, NULL, 4, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 0, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    gp.max_tokens = -1;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    gp = greedy_params(4);
    gp.n_stop_tokens = 1; /* with stop_tokens NULL */
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    gp = greedy_params(4);
    greedy_sp.temperature = -1.0f;
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, &gp, on_token, &r, NULL, 0), SKL_ERR_INVALID_ARG);
    int32_t bad[2] = {f.tokens[0], f.hp.vocab_size};
    gp = greedy_params(4);
    ck_assert_int_eq(skl_generate(ctx, bad, 2, &gp, on_token, &r, NULL, 0), SKL_ERR_TOKEN);
    ck_assert_int_eq(r.n, 0);
    ck_assert_int_eq(skl_context_n_past(ctx), 0);
    /* NULL params, callback and result are allowed; 128 default tokens fill the context */
    ck_assert_int_eq(skl_generate(ctx, f.tokens, 4, NULL, NULL, NULL, NULL, 0), SKL_OK);
    ck_assert_int_eq(skl_context_n_past(ctx), skl_context_n_ctx(ctx));
    skl_context_free(ctx);
    gen_close(&f);
}
END_TEST

Suite *sampling_suite(void) {
    Suite *s = suite_create("sampling");
    TCase *tc = tcase_create("sampler");
    tcase_set_timeout(tc, TEST_TIMEOUT);
    tcase_add_test(tc, test_params_defaults);
    tcase_add_test(tc, test_greedy_random);
    tcase_add_test(tc, test_greedy_model_logits);
    tcase_add_test(tc, test_seed);
    tcase_add_test(tc, test_documented_rng);
    tcase_add_test(tc, test_top_k);
    tcase_add_test(tc, test_top_p);
    tcase_add_test(tc, test_frequencies);
    tcase_add_test(tc, test_invalid_params);
    tcase_add_test(tc, test_invalid_sample_args);
    suite_add_tcase(s, tc);

    tc = tcase_create("generate");
    tcase_set_timeout(tc, TEST_TIMEOUT);
    tcase_add_test(tc, test_generate_greedy);
    tcase_add_test(tc, test_generate_seeded);
    tcase_add_test(tc, test_generate_callback_stop);
    tcase_add_test(tc, test_generate_stop_token);
    tcase_add_test(tc, test_generate_zero_tokens);
    tcase_add_test(tc, test_generate_context_full);
    tcase_add_test(tc, test_generate_prompt_too_long);
    tcase_add_test(tc, test_generate_args);
    suite_add_tcase(s, tc);
    return s;
}
