/* sampling.c - greedy, temperature, top-k and top-p sampling with a seeded RNG.
 *
 * Order of filters: top-k on the logits, then softmax with temperature, then
 * top-p on the resulting distribution, then one draw.  Candidates are ranked
 * by logit, ties broken by the lower token id, so results do not depend on
 * the sort algorithm.  RNG: xoshiro256** seeded with splitmix64(seed). */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct skl_sampler {
    skl_sampler_params p;
    uint64_t s[4];      /* xoshiro256** state */
    int32_t *idx;       /* [cap] candidate token ids */
    float *prob;        /* [cap] their probabilities */
    const float *cur;   /* logits being sorted (qsort has no user pointer) */
    int32_t cap;
};

#define SAMPLER_PARAMS_V1 SKL_SIZE_THROUGH(skl_sampler_params, seed)

int skl_sampler_params_init(skl_sampler_params *p, size_t size) {
    skl_sampler_params d = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 0x5EED};
    return skl_params_init(p, size, &d, sizeof d, SAMPLER_PARAMS_V1, "skl_sampler_params_init");
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static int check_params(const skl_sampler_params *p) {
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return skl_fail(SKL_ERR_INVALID_ARG, "sampler: temperature %g must be a finite number >= 0", p->temperature);
    if (p->top_k < 0) return skl_fail(SKL_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return skl_fail(SKL_ERR_INVALID_ARG, "sampler: top_p %g must be in (0, 1]", p->top_p);
    return SKL_OK;
}

int skl_sampler_create(const skl_sampler_params *params, skl_sampler **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_sampler_create: out is NULL");
    *out = NULL;
    skl_sampler_params p;
    skl_sampler_params_init(&p, sizeof p);
    int rc = skl_params_read(&p, sizeof p, params, SAMPLER_PARAMS_V1, "skl_sampler_create");
    if (!rc) rc = check_params(&p);
    if (rc) return rc;
    skl_sampler *s = calloc(1, sizeof *s);
    if (!s) return skl_fail(SKL_ERR_NOMEM, "skl_sampler_create: out of memory");
    s->p = p;
    uint64_t x = p.seed;
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&x);
    *out = s;
    return SKL_OK;
}

void skl_sampler_free(skl_sampler *s) {
    if (!s) return;
    free(s->idx);
    free(s->prob);
    free(s);
}

static _Thread_local const float *sort_logits;

static int by_logit_desc(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = sort_logits[i], y = sort_logits[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

int skl_sample(skl_sampler *s, const float *logits, int32_t n_vocab, int32_t *token) {
    if (!s || !logits || !token) return skl_fail(SKL_ERR_INVALID_ARG, "skl_sample: NULL argument");
    if (n_vocab < 1) return skl_fail(SKL_ERR_INVALID_ARG, "skl_sample: n_vocab %d must be >= 1", n_vocab);
    for (int32_t i = 0; i < n_vocab; i++)
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return skl_fail(SKL_ERR_INVALID_ARG, "skl_sample: logit %d is %s", i, isnan(logits[i]) ? "NaN" : "+inf");
    bool any = false;
    for (int32_t i = 0; i < n_vocab && !any; i++) any = logits[i] > -INFINITY;
    if (!any) return skl_fail(SKL_ERR_INVALID_ARG, "skl_sample: every logit is -inf, nothing to sample");
    if (s->p.temperature == 0.0f) { /* greedy: argmax, lowest id on ties */
        int32_t best = 0;
        for (int32_t i = 1; i < n_vocab; i++)
            if (logits[i] > logits[best]) best = i;
        *token = best;
        return SKL_OK;
    }
    if (n_vocab > s->cap) {
        int32_t *ni = malloc((size_t)n_vocab * sizeof *ni);
        float *np = malloc((size_t)n_vocab * sizeof *np);
        if (!ni || !np) {
            free(ni);
            free(np);
            return skl_fail(SKL_ERR_NOMEM, "skl_sample: out of memory");
        }
        free(s->idx);
        free(s->prob);
        s->idx = ni;
        s->prob = np;
        s->cap = n_vocab;
    }
    for (int32_t i = 0; i < n_vocab; i++) s->idx[i] = i;
    sort_logits = logits;
    qsort(s->idx, (size_t)n_vocab, sizeof *s->idx, by_logit_desc);
    int32_t n = (s->p.top_k > 0 && s->p.top_k < n_vocab) ? s->p.top_k : n_vocab;
    /* softmax with temperature over the top-k, in double */
    double mx = logits[s->idx[0]], sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double e = exp(((double)logits[s->idx[i]] - mx) / s->p.temperature);
        s->prob[i] = (float)e;
        sum += e;
    }
    /* top-p: the smallest prefix whose mass reaches top_p (at least one token) */
    if (s->p.top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += s->prob[i] / sum;
            if (cum >= s->p.top_p) { keep = i + 1; break; }
        }
        n = keep;
        sum = 0.0;
        for (int32_t i = 0; i < n; i++) sum += s->prob[i];
    }
    double u = (double)(xoshiro_next(s->s) >> 11) * 0x1.0p-53 * sum, acc = 0.0;
    int32_t pick = n - 1;
    for (int32_t i = 0; i < n; i++) {
        acc += s->prob[i];
        if (u < acc) { pick = i; break; }
    }
    *token = s->idx[pick];
    return SKL_OK;
}
