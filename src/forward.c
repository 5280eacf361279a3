/* forward.c - contexts and the forward pass of a skipless stack.
 *
 * Per block (no skip connections, no normalization; absent projection = identity):
 *   q = q_proj x, k = k_proj x, v = v_proj x        (k, v appended to the KV cache)
 *   RoPE on the first rotary_dim dims of each q and k head (rotate-half form)
 *   a = softmax(q k^T / sqrt(hd), causal) v          (query head h reads KV head h / (H/KV))
 *   serial:   x' = down(ffn(o_proj a))
 *   parallel: x' = o_proj a + down(ffn(x))
 * ffn(h) = act(gate h) * up h  (GLU), or act(up h).
 * After the last block: optional RMSNorm, then logits = lm_head x.
 *
 * A batch of n tokens goes through every linear layer as one cblas_sgemm;
 * a single token (decode) through cblas_sgemv.  Activations are fp32. */
#include "internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct skl_context {
    const skl_model *m;
    int32_t n_ctx, n_threads, n_batch;
    bool logits_all;
    int32_t n_past;
    float *kcache, *vcache;   /* [L, n_ctx, KV*hd] each; keys stored after RoPE */
    float *rope_cos, *rope_sin; /* [n_ctx, rotary_dim/2] */
    /* scratch for one batch of nb <= n_batch tokens */
    float *x;      /* [nb, d] the stream */
    float *q;      /* [nb, H*hd] queries (a rotated copy of x when q_proj is absent) */
    float *att;    /* [nb, H*hd] attention output, heads concatenated */
    float *h;      /* [nb, d] o_proj output */
    float *g, *u;  /* [nb, f] FFN hidden (gate, up) */
    float *ffo;    /* [nb, d] FFN output (parallel blocks) */
    float *scores; /* [n_ctx] attention weights of one query head */
    float *logits; /* [n_logit_rows, V] */
    int32_t n_logit_rows, logit_cap;
};

void skl_context_params_init(skl_context_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->n_ctx = 0;
    p->n_threads = 1;
    p->n_batch = 64;
    p->logits_all = false;
}

void skl_context_free(skl_context *c) {
    if (!c) return;
    free(c->kcache); free(c->vcache); free(c->rope_cos); free(c->rope_sin);
    free(c->x); free(c->q); free(c->att); free(c->h); free(c->g); free(c->u);
    free(c->ffo); free(c->scores); free(c->logits);
    free(c);
}

/* calloc of a*b floats with overflow check */
static float *falloc(uint64_t a, uint64_t b) {
    uint64_t n;
    if (skl_mul_u64(a, b, &n) || skl_mul_u64(n, sizeof(float), &n) || n > SIZE_MAX) return NULL;
    return calloc(n ? (size_t)n : 1, 1);
}

int skl_context_create(const skl_model *m, const skl_context_params *params, skl_context **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: out is NULL");
    *out = NULL;
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "skl_context_create: model is NULL");
    skl_context_params p;
    if (params) p = *params;
    else skl_context_params_init(&p);
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
    uint64_t d = (uint64_t)hp->hidden_size, qd = (uint64_t)hp->num_attention_heads * (uint64_t)hp->head_dim,
             kvd = (uint64_t)hp->num_key_value_heads * (uint64_t)hp->head_dim,
             f = (uint64_t)hp->intermediate_size, nb = (uint64_t)p.n_batch;
    uint64_t cache_rows = (uint64_t)hp->num_hidden_layers * (uint64_t)p.n_ctx;
    uint64_t half = hp->use_rope ? (uint64_t)hp->rotary_dim / 2 : 0;
    c->kcache = falloc(cache_rows, kvd);
    c->vcache = falloc(cache_rows, kvd);
    c->rope_cos = falloc((uint64_t)p.n_ctx, half);
    c->rope_sin = falloc((uint64_t)p.n_ctx, half);
    c->x = falloc(nb, d);
    c->q = falloc(nb, qd);
    c->att = falloc(nb, qd);
    c->h = falloc(nb, d);
    c->g = falloc(nb, f);
    c->u = falloc(nb, f);
    c->ffo = falloc(nb, d);
    c->scores = falloc((uint64_t)p.n_ctx, 1);
    if (!c->kcache || !c->vcache || !c->rope_cos || !c->rope_sin || !c->x || !c->q || !c->att ||
        !c->h || !c->g || !c->u || !c->ffo || !c->scores) {
        skl_context_free(c);
        return skl_fail(SKL_ERR_NOMEM, "skl_context_create: out of memory for a %d-token context (KV cache %llu MiB)",
                        p.n_ctx, (unsigned long long)(2 * cache_rows * kvd * 4 >> 20));
    }
    /* RoPE table, angles in double: inv_freq_i = theta^(-2i / rotary_dim). */
    for (int32_t pos = 0; pos < p.n_ctx; pos++)
        for (uint64_t i = 0; i < half; i++) {
            double inv = pow((double)hp->rope_theta, -(double)(2 * i) / (double)hp->rotary_dim);
            double a = (double)pos * inv;
            c->rope_cos[(uint64_t)pos * half + i] = (float)cos(a);
            c->rope_sin[(uint64_t)pos * half + i] = (float)sin(a);
        }
    *out = c;
    return SKL_OK;
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

/* ------------------------------------------------------------- kernels */

/* y[n, out] = x[n, in] W^T + b; identity when W is absent (in == out). */
static void linear(const skl_linear *L, const float *x, int32_t n, int32_t in, float *y, int32_t out) {
    if (!L->w.data) {
        memcpy(y, x, (size_t)n * (size_t)in * sizeof(float));
    } else if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, out, in, 1.0f, L->w.data, in, x, 1, 0.0f, y, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, L->w.data, in,
                    0.0f, y, out);
    }
    if (L->b.data)
        for (int32_t i = 0; i < n; i++) cblas_saxpy(out, 1.0f, L->b.data, 1, y + (size_t)i * out, 1);
}

/* Rotate the first rotary_dim dims of each of n_heads heads of one row, in place. */
static void rope_row(float *row, int32_t n_heads, int32_t hd, int32_t rot, const float *cs, const float *sn) {
    int32_t half = rot / 2;
    for (int32_t h = 0; h < n_heads; h++) {
        float *v = row + (size_t)h * hd;
        for (int32_t i = 0; i < half; i++) {
            float x1 = v[i], x2 = v[i + half];
            v[i] = x1 * cs[i] - x2 * sn[i];
            v[i + half] = x2 * cs[i] + x1 * sn[i];
        }
    }
}

static float act(skl_activation a, float x) {
    switch (a) {
    case SKL_ACT_SILU: return x / (1.0f + expf(-x));
    case SKL_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case SKL_ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    default: return x > 0.0f ? x : 0.0f;
    }
}

/* out[n, d] = down(ffn(in[n, d])) */
static void ffn(skl_context *c, const skl_layer *L, const float *in, int32_t n, float *out) {
    const skl_hparams *hp = &c->m->hp;
    int32_t d = hp->hidden_size, f = hp->intermediate_size;
    size_t nf = (size_t)n * (size_t)f;
    linear(&L->up, in, n, d, c->u, f);
    if (L->gate.w.data) {
        linear(&L->gate, in, n, d, c->g, f);
        for (size_t i = 0; i < nf; i++) c->u[i] *= act(hp->hidden_act, c->g[i]);
    } else {
        for (size_t i = 0; i < nf; i++) c->u[i] = act(hp->hidden_act, c->u[i]);
    }
    linear(&L->down, c->u, n, f, out, d);
}

/* Causal attention of n queries at positions pos0.. over cache rows [0, pos0 + n). */
static void attention(skl_context *c, int32_t layer, int32_t pos0, int32_t n) {
    const skl_hparams *hp = &c->m->hp;
    int32_t H = hp->num_attention_heads, hd = hp->head_dim, qd = H * hd;
    int32_t kvd = hp->num_key_value_heads * hd, group = H / hp->num_key_value_heads;
    const float *kc = c->kcache + (size_t)layer * c->n_ctx * kvd;
    const float *vc = c->vcache + (size_t)layer * c->n_ctx * kvd;
    float scale = 1.0f / sqrtf((float)hd);
    for (int32_t i = 0; i < n; i++) {
        int32_t len = pos0 + i + 1;
        for (int32_t h = 0; h < H; h++) {
            const float *qh = c->q + (size_t)i * qd + (size_t)h * hd;
            size_t koff = (size_t)(h / group) * hd;
            /* scores[len] = K[0:len, head] qh * scale */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, len, hd, scale, kc + koff, kvd, qh, 1, 0.0f,
                        c->scores, 1);
            float mx = c->scores[0], sum = 0.0f;
            for (int32_t j = 1; j < len; j++) mx = c->scores[j] > mx ? c->scores[j] : mx;
            for (int32_t j = 0; j < len; j++) sum += (c->scores[j] = expf(c->scores[j] - mx));
            float inv = 1.0f / sum;
            for (int32_t j = 0; j < len; j++) c->scores[j] *= inv;
            /* att_h[hd] = V[0:len, head]^T scores */
            cblas_sgemv(CblasRowMajor, CblasTrans, len, hd, 1.0f, vc + koff, kvd, c->scores, 1, 0.0f,
                        c->att + (size_t)i * qd + (size_t)h * hd, 1);
        }
    }
}

/* Run n <= n_batch tokens at positions n_past..; write logits rows from `logit_row`. */
static void forward(skl_context *c, const int32_t *tokens, int32_t n, int32_t logit_row) {
    const skl_model *m = c->m;
    const skl_hparams *hp = &m->hp;
    int32_t d = hp->hidden_size, H = hp->num_attention_heads, KV = hp->num_key_value_heads;
    int32_t hd = hp->head_dim, qd = H * hd, kvd = KV * hd, rot = hp->rotary_dim, half = rot / 2;
    int32_t pos0 = c->n_past;

    for (int32_t i = 0; i < n; i++)
        memcpy(c->x + (size_t)i * d, m->embed.data + (size_t)tokens[i] * d, (size_t)d * sizeof(float));

    for (int32_t l = 0; l < hp->num_hidden_layers; l++) {
        const skl_layer *L = &m->layers[l];
        float *kdst = c->kcache + ((size_t)l * c->n_ctx + (size_t)pos0) * kvd; /* [n, kvd] */
        float *vdst = c->vcache + ((size_t)l * c->n_ctx + (size_t)pos0) * kvd;
        linear(&L->q, c->x, n, d, c->q, qd);
        linear(&L->k, c->x, n, d, kdst, kvd);
        linear(&L->v, c->x, n, d, vdst, kvd);
        if (hp->use_rope)
            for (int32_t i = 0; i < n; i++) {
                const float *cs = c->rope_cos + (size_t)(pos0 + i) * half;
                const float *sn = c->rope_sin + (size_t)(pos0 + i) * half;
                rope_row(c->q + (size_t)i * qd, H, hd, rot, cs, sn);
                rope_row(kdst + (size_t)i * kvd, KV, hd, rot, cs, sn);
            }
        attention(c, l, pos0, n);
        linear(&L->o, c->att, n, qd, c->h, d);
        if (hp->block_type == SKL_BLOCK_SERIAL) {
            ffn(c, L, c->h, n, c->x);
        } else {
            ffn(c, L, c->x, n, c->ffo);
            size_t nd = (size_t)n * (size_t)d;
            for (size_t i = 0; i < nd; i++) c->x[i] = c->h[i] + c->ffo[i];
        }
    }

    /* Head: every row with logits_all, else only the last row of the last batch. */
    if (logit_row == -2) return;
    int32_t first = logit_row < 0 ? n - 1 : 0, rows = n - first;
    if (logit_row < 0) logit_row = 0;
    float *xr = c->x + (size_t)first * d;
    if (m->norm.data)
        for (int32_t i = 0; i < rows; i++) {
            float *r = xr + (size_t)i * d;
            double ss = 0.0;
            for (int32_t j = 0; j < d; j++) ss += (double)r[j] * r[j];
            float s = (float)(1.0 / sqrt(ss / d + (double)hp->rms_norm_eps));
            for (int32_t j = 0; j < d; j++) r[j] = r[j] * s * m->norm.data[j];
        }
    linear(&m->head, xr, rows, d, c->logits + (size_t)logit_row * hp->vocab_size, hp->vocab_size);
}

int skl_eval(skl_context *c, const int32_t *tokens, int32_t n) {
    if (!c) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: context is NULL");
    if (!tokens) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: tokens is NULL");
    if (n < 1) return skl_fail(SKL_ERR_INVALID_ARG, "skl_eval: n_tokens %d must be >= 1", n);
    const skl_hparams *hp = &c->m->hp;
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->vocab_size)
            return skl_fail(SKL_ERR_TOKEN, "skl_eval: token %d (index %d) out of range [0, %d)", tokens[i], i,
                            hp->vocab_size);
    if (n > c->n_ctx - c->n_past)
        return skl_fail(SKL_ERR_CONTEXT_FULL, "skl_eval: %d tokens do not fit: %d of %d context positions used",
                        n, c->n_past, c->n_ctx);
    int32_t rows = c->logits_all ? n : 1;
    if (rows > c->logit_cap) {
        float *nl = falloc((uint64_t)rows, (uint64_t)hp->vocab_size);
        if (!nl) return skl_fail(SKL_ERR_NOMEM, "skl_eval: out of memory for %d logit rows", rows);
        free(c->logits);
        c->logits = nl;
        c->logit_cap = rows;
    }
    openblas_set_num_threads(c->n_threads);
    for (int32_t i0 = 0; i0 < n; i0 += c->n_batch) {
        int32_t nb = n - i0 < c->n_batch ? n - i0 : c->n_batch;
        bool last = i0 + nb == n;
        if (c->logits_all) forward(c, tokens + i0, nb, i0);
        else if (last) forward(c, tokens + i0, nb, -1);
        else forward(c, tokens + i0, nb, -2); /* no logits needed */
        c->n_past += nb;
    }
    c->n_logit_rows = rows;
    return SKL_OK;
}
