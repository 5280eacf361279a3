/* context.c - a context: one sequence's KV cache, RoPE tables, scratch and
 * thread pool; skl_eval checks its arguments and feeds the tokens to the
 * forward pass (forward.c) in batches of at most n_batch. */
#include "context.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TILE_ELEMS ((size_t)4 << 20)   /* floats per widened weight tile (16 MiB) */
#define SCORE_ELEMS ((uint64_t)4 << 20) /* floats of prefill attention scores (16 MiB) */

#define CONTEXT_PARAMS_V1 SKL_SIZE_THROUGH(skl_context_params, logits_all)

int skl_context_params_init(skl_context_params *p, size_t size) {
    skl_context_params d = {.n_ctx = 0, .n_threads = 1, .n_batch = 256, .logits_all = false};
    return skl_params_init(p, size, &d, sizeof d, CONTEXT_PARAMS_V1, "skl_context_params_init");
}

void skl_context_free(skl_context *c) {
    if (!c) return;
    free(c->kcache); free(c->vcache); free(c->rope_cos); free(c->rope_sin); free(c->k); free(c->v);
    free(c->x); free(c->q); free(c->att); free(c->h); free(c->g); free(c->u);
    free(c->ffo); free(c->scores); free(c->logits); free(c->bvec); free(c->wtile);
    for (int t = 0; t < SKL_QT_COUNT; t++) free(c->qx[t]);
    skl_pool_free(c->pool);
    free(c);
}

/* calloc of a*b floats with overflow check */
static float *falloc(uint64_t a, uint64_t b) {
    uint64_t n;
    if (skl_mul_u64(a, b, &n) || skl_mul_u64(n, sizeof(float), &n) || n > SIZE_MAX) return NULL;
    return calloc(n ? (size_t)n : 1, 1);
}

/* a*b*4, saturating at UINT64_MAX */
static uint64_t fbytes(uint64_t a, uint64_t b) {
    uint64_t n;
    return skl_mul_u64(a, b, &n) || skl_mul_u64(n, sizeof(float), &n) ? UINT64_MAX : n;
}

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* falloc, adding the bytes asked for to *asked: what an out-of-memory error names */
static float *falloc_asked(uint64_t a, uint64_t b, uint64_t *asked) {
    *asked = add_sat(*asked, fbytes(a, b));
    return falloc(a, b);
}

/* The K and V caches of n_ctx positions: [L][KV][n_ctx][hd] floats each. */
static uint64_t kv_bytes(const skl_hparams *hp, int32_t n_ctx) {
    uint64_t rows = (uint64_t)hp->num_hidden_layers * (uint64_t)n_ctx; /* both < 2^31 */
    uint64_t one = fbytes(rows, (uint64_t)hp->num_key_value_heads * (uint64_t)hp->head_dim);
    return add_sat(one, one);
}

uint64_t skl_model_kv_bytes(const skl_model *m, int32_t n_ctx) {
    if (!m) return 0;
    if (n_ctx == 0) n_ctx = m->hp.max_position_embeddings;
    if (n_ctx < 1 || n_ctx > m->hp.max_position_embeddings) return 0;
    return kv_bytes(&m->hp, n_ctx);
}

/* The widest input of a linear layer: max(d, qd, f). */
static uint64_t vmax_in(const skl_dims *D) {
    uint64_t w = (uint64_t)(D->d > D->qd ? D->d : D->qd);
    return (uint64_t)D->f > w ? (uint64_t)D->f : w;
}

/* The model's dimensions in the names the forward pass uses (config.c bounds
 * H*hd, and KV divides H, so none overflows int32). */
static skl_dims dims_of(const skl_hparams *hp) {
    skl_dims D;
    D.d = hp->hidden_size;
    D.H = hp->num_attention_heads;
    D.KV = hp->num_key_value_heads;
    D.hd = hp->head_dim;
    D.qd = D.H * D.hd;
    D.kvd = D.KV * D.hd;
    D.f = hp->intermediate_size;
    D.V = hp->vocab_size;
    D.rot = hp->use_rope ? hp->rotary_dim : 0;
    D.half = D.rot / 2;
    D.group = D.H / D.KV;
    D.n_layers = hp->num_hidden_layers;
    return D;
}

int skl_context_create(const skl_model *m, const skl_context_params *params, skl_context **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: out is NULL");
    *out = NULL;
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: model is NULL");
    skl_context_params p;
    skl_context_params_init(&p, sizeof p);
    int prc = skl_params_read(&p, sizeof p, params, CONTEXT_PARAMS_V1, "skl_context_create");
    if (prc) return prc;
    const skl_hparams *hp = &m->hp;
    if (p.n_ctx == 0) p.n_ctx = hp->max_position_embeddings;
    if (p.n_ctx < 1 || p.n_ctx > hp->max_position_embeddings)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: n_ctx %d out of range [1, %d] (max_position_embeddings)",
                        p.n_ctx, hp->max_position_embeddings);
    if (p.n_threads < 1 || p.n_threads > 1024)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: n_threads %d out of range [1, 1024]", p.n_threads);
    if (p.n_batch < 1 || p.n_batch > 65536)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: n_batch %d out of range [1, 65536]", p.n_batch);
    if (p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;

    skl_context *c = calloc(1, sizeof *c);
    if (!c) return skl_fail(SKL_ERR_NOMEM, "skl_context_create: out of memory");
    c->m = m;
    c->n_ctx = p.n_ctx;
    c->n_threads = p.n_threads;
    c->n_batch = p.n_batch;
    c->logits_all = p.logits_all;
    c->dim = dims_of(hp);
    const skl_dims *D = &c->dim;
    uint64_t d = (uint64_t)D->d, qd = (uint64_t)D->qd, kvd = (uint64_t)D->kvd, f = (uint64_t)D->f,
             nb = (uint64_t)p.n_batch, half = (uint64_t)D->half;
    uint64_t cache_rows = (uint64_t)D->n_layers * (uint64_t)p.n_ctx, kv = 0, scratch = 0;
    c->kcache = falloc_asked(cache_rows, kvd, &kv);
    c->vcache = falloc_asked(cache_rows, kvd, &kv);
    c->rope_cos = falloc_asked((uint64_t)p.n_ctx, half, &scratch);
    c->rope_sin = falloc_asked((uint64_t)p.n_ctx, half, &scratch);
    c->x = falloc_asked(nb, d, &scratch);
    c->q = falloc_asked(nb, qd, &scratch);
    c->k = falloc_asked(nb, kvd, &scratch);
    c->v = falloc_asked(nb, kvd, &scratch);
    c->att = falloc_asked(nb, qd, &scratch);
    c->h = falloc_asked(nb, d, &scratch);
    c->g = falloc_asked(nb, f, &scratch);
    c->u = falloc_asked(nb, f, &scratch);
    c->ffo = falloc_asked(nb, d, &scratch);
    /* prefill scores: as many queries per block as fit SCORE_ELEMS (at least 1) */
    uint64_t H = (uint64_t)D->H, qb = SCORE_ELEMS / (H * (uint64_t)p.n_ctx);
    c->qblock = (int32_t)(qb < 1 ? 1 : qb > nb ? nb : qb);
    uint64_t srows = H * (uint64_t)c->qblock;
    c->scores = falloc_asked(srows, (uint64_t)p.n_ctx, &scratch);
    uint64_t vmax = d > qd ? d : qd;
    if (f > vmax) vmax = f;
    if ((uint64_t)D->V > vmax) vmax = (uint64_t)D->V;
    c->bvec = falloc_asked(vmax, 1, &scratch);
    /* a tile buffer only when some weight matrix is F16/BF16 */
    uint64_t biggest = 0;
    bool narrow = m->head.w.data && m->head.w.dtype != SKL_DT_F32;
    if (m->head.w.data) biggest = (uint64_t)m->head.w.rows * (uint64_t)m->head.w.cols;
    for (int32_t l = 0; l < D->n_layers; l++)
        for (int lin = 0; lin < SKL_LIN_COUNT; lin++) {
            const skl_tensor *w = &skl_layer_linear((skl_layer *)&m->layers[l], lin)->w;
            if (!w->data) continue;
            if (w->dtype != SKL_DT_F32) narrow = true;
            if ((uint64_t)w->rows * (uint64_t)w->cols > biggest) biggest = (uint64_t)w->rows * (uint64_t)w->cols;
        }
    /* a prepared decode input per quantized type present (qkernels.h) */
    bool qx_ok = true;
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) {
        int dt = it.l->w.data ? it.l->w.dtype : SKL_DT_F32, t = dt - SKL_DT_Q8_0;
        if (!skl_dtype_quantized(dt) || c->qx[t]) continue;
        size_t bytes = skl_qx_size((int32_t)vmax_in(D));
        scratch = add_sat(scratch, bytes);
        qx_ok = qx_ok && !posix_memalign(&c->qx[t], 64, (bytes + 63) / 64 * 64);
    }
    bool tile_ok = true;
    if (narrow && p.n_batch > 1) {
        /* at least one row of the widest matrix */
        uint64_t widest = d > qd ? d : qd;
        if (f > widest) widest = f;
        c->tile_elems = biggest < TILE_ELEMS ? (size_t)biggest : TILE_ELEMS;
        if (c->tile_elems < widest) c->tile_elems = (size_t)widest;
        c->wtile = falloc_asked(c->tile_elems, 1, &scratch);
        tile_ok = c->wtile != NULL;
    }
    if (!c->kcache || !c->vcache || !c->rope_cos || !c->rope_sin || !c->x || !c->q || !c->k || !c->v || !c->att ||
        !c->h || !c->g || !c->u || !c->ffo || !c->scores || !c->bvec || !tile_ok || !qx_ok) {
        skl_context_free(c);
        uint64_t total = add_sat(kv, scratch);
        return skl_fail(SKL_ERR_NOMEM,
                        "skl_context_create: out of memory for a %d-token context: %llu bytes asked for (%.2f GiB: "
                        "KV cache %llu bytes, scratch %llu bytes)",
                        p.n_ctx, (unsigned long long)total, (double)total / (1 << 30), (unsigned long long)kv,
                        (unsigned long long)scratch);
    }
    int rc = skl_pool_create(p.n_threads, &c->pool);
    if (rc) {
        skl_context_free(c);
        return rc;
    }
    *out = c;
    return SKL_OK;
}

/* RoPE rows [rope_rows, end), angles in double: inv_freq_i = theta^(-2i / rotary_dim).
 * Filled as positions are reached, not at creation: the tables are calloc'd for
 * n_ctx positions (pages the kernel gives on first touch), and a context of
 * 2^24 positions costs nothing for the positions it never evaluates. */
static void rope_fill(skl_context *c, int32_t end) {
    const skl_dims *D = &c->dim;
    uint64_t half = (uint64_t)D->half;
    for (int32_t pos = c->rope_rows; pos < end; pos++)
        for (uint64_t i = 0; i < half; i++) {
            double inv = pow((double)c->m->hp.rope_theta, -(double)(2 * i) / (double)D->rot);
            double a = (double)pos * inv;
            c->rope_cos[(uint64_t)pos * half + i] = (float)cos(a);
            c->rope_sin[(uint64_t)pos * half + i] = (float)sin(a);
        }
    if (end > c->rope_rows) c->rope_rows = end;
}

const skl_model *skl_context_model(const skl_context *c) { return c->m; }

int32_t skl_context_n_past(const skl_context *c) { return c ? c->n_past : 0; }
int32_t skl_context_n_ctx(const skl_context *c) { return c ? c->n_ctx : 0; }

int skl_kv_truncate(skl_context *c, int32_t n_keep) {
    if (!c) return skl_fail(SKL_ERR_INVALID_ARG, "skl_kv_truncate: context is NULL");
    if (n_keep < 0 || n_keep > c->n_past)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_kv_truncate: n_keep %d out of range [0, %d]", n_keep, c->n_past);
    c->n_past = n_keep; /* rows past n_past are overwritten by the next eval */
    c->n_logit_rows = 0;
    return SKL_OK;
}

int skl_kv_reset(skl_context *c) { return skl_kv_truncate(c, 0); }

const float *skl_logits(const skl_context *c, int32_t *n_rows) {
    if (n_rows) *n_rows = c ? c->n_logit_rows : 0;
    if (!c || c->n_logit_rows == 0) return NULL;
    return c->logits;
}

int skl_eval(skl_context *c, const int32_t *tokens, int32_t n) {
    if (!c) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: context is NULL");
    if (!tokens) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: tokens is NULL");
    if (n < 1) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: n_tokens %d must be >= 1", n);
    int32_t V = c->dim.V;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return skl_fail(SKL_ERR_TOKEN, "skl_eval: token %d (index %d) out of range [0, %d)", tokens[i], i, V);
    if (n > c->n_ctx - c->n_past)
        return skl_fail(SKL_ERR_CONTEXT_FULL, "skl_eval: %d tokens do not fit: %d of %d context positions used",
                        n, c->n_past, c->n_ctx);
    int32_t rows = c->logits_all ? n : 1;
    if (rows > c->logit_cap) {
        float *nl = falloc((uint64_t)rows, (uint64_t)V);
        if (!nl) return skl_fail(SKL_ERR_NOMEM, "skl_eval: out of memory for %d logit rows", rows);
        free(c->logits);
        c->logits = nl;
        c->logit_cap = rows;
    }
    rope_fill(c, c->n_past + n);
    for (int32_t i0 = 0; i0 < n; i0 += c->n_batch) {
        int32_t nb = n - i0 < c->n_batch ? n - i0 : c->n_batch;
        float *lg = NULL; /* only the last batch's last token needs logits without logits_all */
        if (c->logits_all) lg = c->logits + (size_t)i0 * (size_t)V;
        else if (i0 + nb == n) lg = c->logits;
        if (nb > 1) skl_blas_lock(c->n_threads); /* prefill: sgemm with this context's thread count */
        skl_forward(c, tokens + i0, nb, lg, c->logits_all);
        if (nb > 1) skl_blas_unlock();
        c->n_past += nb;
    }
    c->n_logit_rows = rows;
    return SKL_OK;
}
