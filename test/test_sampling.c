/* test_sampling.c - skl_sample: greedy, seeding, the documented RNG, top-k,
 * top-p, temperature frequencies, argument checks.  (skl_generate:
 * test_generate.c.) */
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

/* Draw `draws` tokens into counts[n]. */
static void histogram(skl_sampler *s, const float *logits, int32_t n, int draws, int *counts) {
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) counts[test_sample(s, logits, n)]++;
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
        ck_assert_int_eq(test_sample(s, x, V), best);
    }
    /* ties: the lowest id wins */
    random_logits(x, V, -5.0, 5.0);
    x[900] = x[17] = x[600] = 6.0f;
    ck_assert_int_eq(test_sample(s, x, V), 17);
    /* a single token and negative logits */
    float one = -3.0f;
    ck_assert_int_eq(test_sample(s, &one, 1), 0);
    float neg[3] = {-7.0f, -2.0f, -2.5f};
    ck_assert_int_eq(test_sample(s, neg, 3), 1);
    skl_sampler_free(s);
}
END_TEST

START_TEST(test_greedy_model_logits) {
    test_model t;
    test_open_named(&t, MODEL);
    int32_t V = t.hp.vocab_size;
    float *lg = test_logits(t.model, t.tokens, t.n, TEST_PREFILL);
    /* and against the reference's argmax, which is independent of the library */
    int64_t rr, cc;
    double *ref = test_ref(t.entry, &rr, &cc);
    ck_assert_int_eq(cc, V);
    skl_sampler *s = new_sampler(0.0f, 0, 1.0f, 7);
    for (int32_t r = 0; r < t.n; r++) {
        const float *row = lg + (size_t)r * V;
        int32_t tok = test_sample(s, row, V);
        ck_assert_int_eq(tok, argmax_f(row, V));
        const double *rrow = ref + (size_t)r * cc;
        int32_t rbest = argmax_d(rrow, V);
        ck_assert_msg(rrow[rbest] - rrow[tok] < 1e-3, "row %d: greedy %d, reference argmax %d", r, tok, rbest);
    }
    skl_sampler_free(s);
    free(ref);
    free(lg);
    test_close(&t);
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
        int32_t ta = test_sample(a, x, V), tb = test_sample(b, x, V), tc = test_sample(c, x, V);
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
            test_sample(s, x, 4); /* too close to a boundary for float probabilities */
            continue;
        }
        ck_assert_msg(test_sample(s, x, 4) == want, "draw %d (u = %.9f): expected token %d", i, u, want);
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

Suite *sampling_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"sampler", test_params_defaults, 0, 0},
        {"sampler", test_greedy_random, 0, 0},
        {"sampler", test_greedy_model_logits, 0, 0},
        {"sampler", test_seed, 0, 0},
        {"sampler", test_documented_rng, 0, 0},
        {"sampler", test_top_k, 0, 0},
        {"sampler", test_top_p, 0, 0},
        {"sampler", test_frequencies, 0, 0},
        {"sampler", test_invalid_params, 0, 0},
        {"sampler", test_invalid_sample_args, 0, 0},
    };
    return test_suite("sampling", tests, TEST_COUNT(tests));
}
