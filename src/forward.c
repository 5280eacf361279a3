/* forward.c - the forward pass of a skipless stack over a context (context.c).
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
 * Decode (one token): every linear layer, lm_head included, is a GEMV of
 * kernels.c with its rows split across the context's thread pool (q/k/v in
 * one pool task, gate/up as one paired GEMV with the activation), and so is
 * the head of a prefill that needs only its last row; attention splits the
 * heads across the pool, a whole KV group per chunk when there are at least
 * two groups per thread.  Each row / head is computed by one thread in a
 * fixed order, so decode logits do not depend on the thread count.
 * Quantized weights (Q8_0, Q4_0) go to qkernels.c: the input is prepared
 * once per GEMV (skl_qx_prepare, by the calling thread) before the rows are
 * split, then skl_gemv_q computes each chunk of rows.
 * Prefill (a batch of n > 1 tokens): F32 linear layers are one cblas_sgemm
 * over the batch; F16/BF16 and quantized weights are widened tile by tile
 * (pool; skl_dequant_rows for quantized ones, exact) into fp32 and multiplied
 * by cblas_sgemm; attention is Q K^T, softmax, P V with
 * cblas_sgemm per head over blocks of queries.  OpenBLAS runs with n_threads
 * threads while the pool sleeps.  Activations are fp32.
 *
 * The file reads top down: skl_forward, then the steps it calls (each hides
 * decode versus prefill and the weights' dtype), then the scheduling under
 * them (decode: GEMV tasks on the pool; prefill: sgemm). */
#include "context.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One linear layer over n rows: y [n, out] = x [n, in] W^T + b, W [out, in];
 * W absent: y = x (out == in). */
typedef struct lin_job {
    const skl_linear *L;
    const float *x;
    float *y;
    int32_t out, in;
} lin_job;

static lin_job job(const skl_linear *L, const float *x, int32_t in, float *y, int32_t out) {
    lin_job j = {L, x, y, out, in};
    return j;
}

/* ---- the steps of skl_forward (defined below it) ---- */
static void embed(skl_context *c, const int32_t *tokens, int32_t n);
static void linears(skl_context *c, const lin_job *jobs, int count, int32_t n);
static void linear(skl_context *c, const skl_linear *L, const float *x, int32_t n, int32_t in, float *y,
                   int32_t out);
static void linears_act(skl_context *c, const lin_job *jobs, int count, int32_t n);
static void rope(skl_context *c, int32_t pos0, int32_t n);
static void kv_write(skl_context *c, int32_t layer, int32_t pos0, int32_t n);
static void attention(skl_context *c, int32_t layer, int32_t pos0, int32_t n);
static void ffn(skl_context *c, const skl_layer *L, const float *in, int32_t n, float *out);
static void rms_norm(skl_context *c, float *x, int32_t rows);

/* ---- the scheduling under the steps (defined below them) ---- */
enum { POST_NONE, POST_GLU, POST_ACT };
static void gemv_pool(skl_context *c, const lin_job *jobs, int count, int post);
static void attention_decode(skl_context *c, const float *kc, const float *vc, int32_t len);
static void linear_batch(skl_context *c, const lin_job *j, int32_t n);
static void act_batch(skl_context *c, float *u, const float *g, size_t len);
static void attention_batch(skl_context *c, const float *kc, const float *vc, int32_t pos0, int32_t n);

void skl_forward(skl_context *c, const int32_t *tokens, int32_t n, float *logits, bool all_rows) {
    const skl_model *m = c->m;
    const skl_dims *D = &c->dim;
    int32_t d = D->d, qd = D->qd, kvd = D->kvd, pos0 = c->n_past;

    /* x [n, d] = the tokens' rows of embed [V, d] */
    embed(c, tokens, n);
    for (int32_t l = 0; l < D->n_layers; l++) {
        const skl_layer *L = &m->layers[l];
        /* q [n, qd] = q_proj x, k [n, kvd] = k_proj x, v [n, kvd] = v_proj x;  x [n, d] */
        lin_job qkv[3] = {job(&L->q, c->x, d, c->q, qd), job(&L->k, c->x, d, c->k, kvd),
                          job(&L->v, c->x, d, c->v, kvd)};
        linears(c, qkv, 3, n);
        /* q [n, H, hd], k [n, KV, hd] rotated in place for positions pos0 .. pos0 + n - 1 */
        rope(c, pos0, n);
        /* kcache, vcache [l, KV, pos0 .. pos0 + n - 1, hd] = k, v [n, KV, hd] */
        kv_write(c, l, pos0, n);
        /* att [n, qd] = softmax(q k^T / sqrt(hd), causal) v over the cache's [pos0 + n, hd] per KV head */
        attention(c, l, pos0, n);
        /* h [n, d] = o_proj att [n, qd] */
        linear(c, &L->o, c->att, n, qd, c->h, d);
        if (m->hp.block_type == SKL_BLOCK_SERIAL) {
            /* x [n, d] = down(ffn(h [n, d])) */
            ffn(c, L, c->h, n, c->x);
        } else {
            /* ffo [n, d] = down(ffn(x [n, d])); x [n, d] = h + ffo */
            ffn(c, L, c->x, n, c->ffo);
            size_t nd = (size_t)n * (size_t)d;
            for (size_t i = 0; i < nd; i++) c->x[i] = c->h[i] + c->ffo[i];
        }
    }
    if (!logits) return;

    /* xr [rows, d]: every row, or only the last one (all a sampler needs) */
    int32_t rows = all_rows ? n : 1;
    float *xr = c->x + (size_t)(n - rows) * d;
    /* xr = norm [d] * xr / rms(xr), row by row */
    if (m->norm.data) rms_norm(c, xr, rows);
    /* logits [rows, V] = lm_head xr */
    linear(c, &m->head, xr, rows, d, logits, D->V);
}

/* ------------------------------------------------------------- the steps */

static void embed(skl_context *c, const int32_t *tokens, int32_t n) {
    const skl_tensor *e = &c->m->embed; /* [V, d] of the file's dtype */
    size_t d = (size_t)c->dim.d, esz = skl_dtype_size(e->dtype);
    for (int32_t i = 0; i < n; i++)
        skl_to_f32(e->dtype, (const uint8_t *)e->data + (size_t)tokens[i] * d * esz, c->x + (size_t)i * d, d);
}

/* count <= 3 linear layers over the same n rows.  One token: GEMVs, all
 * layers' rows in one pool task (q/k/v: one pool loop instead of three);
 * workers spin between the short loops of a decode step.  A batch: sgemm
 * each, while the pool sleeps so that OpenBLAS's threads have the cores.  The
 * pool loops of attention and the activation inherit the setting of the
 * linear layers before them. */
static void linears(skl_context *c, const lin_job *jobs, int count, int32_t n) {
    skl_pool_set_spin(c->pool, n == 1);
    if (n == 1) {
        gemv_pool(c, jobs, count, POST_NONE);
        return;
    }
    for (int i = 0; i < count; i++) linear_batch(c, &jobs[i], n);
}

/* y [n, out] = L x [n, in] */
static void linear(skl_context *c, const skl_linear *L, const float *x, int32_t n, int32_t in, float *y,
                   int32_t out) {
    lin_job j = job(L, x, in, y, out);
    linears(c, &j, 1, n);
}

/* The GLU's gate and up (count 2): jobs[1].y [n, out] *= act(jobs[0].y), or
 * an MLP's up (count 1): jobs[0].y = act(jobs[0].y).  One token: one paired
 * GEMV pass over both matrices with the activation, on the pool. */
static void linears_act(skl_context *c, const lin_job *jobs, int count, int32_t n) {
    if (n == 1) {
        gemv_pool(c, jobs, count, count == 2 ? POST_GLU : POST_ACT);
        return;
    }
    linears(c, jobs, count, n);
    act_batch(c, jobs[count - 1].y, count == 2 ? jobs[0].y : NULL, (size_t)n * (size_t)jobs[0].out);
}

/* Rotate the first rot dims of each of n_heads heads of one row, in place
 * (rotate-half form); cs, sn [half] of the row's position. */
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

static void rope(skl_context *c, int32_t pos0, int32_t n) {
    const skl_dims *D = &c->dim;
    if (!D->rot) return;
    for (int32_t i = 0; i < n; i++) {
        const float *cs = c->rope_cos + (size_t)(pos0 + i) * D->half; /* [half] */
        const float *sn = c->rope_sin + (size_t)(pos0 + i) * D->half;
        rope_row(c->q + (size_t)i * D->qd, D->H, D->hd, D->rot, cs, sn);
        rope_row(c->k + (size_t)i * D->kvd, D->KV, D->hd, D->rot, cs, sn);
    }
}

/* The batch's k, v [n, KV, hd] go head-major into the cache [layer, KV, n_ctx, hd]. */
static void kv_write(skl_context *c, int32_t layer, int32_t pos0, int32_t n) {
    const skl_dims *D = &c->dim;
    size_t hd = (size_t)D->hd, kvd = (size_t)D->kvd;
    for (int32_t g = 0; g < D->KV; g++) {
        size_t at = (((size_t)layer * D->KV + (size_t)g) * c->n_ctx + (size_t)pos0) * hd;
        for (int32_t i = 0; i < n; i++) {
            memcpy(c->kcache + at + (size_t)i * hd, c->k + (size_t)i * kvd + (size_t)g * hd, hd * sizeof(float));
            memcpy(c->vcache + at + (size_t)i * hd, c->v + (size_t)i * kvd + (size_t)g * hd, hd * sizeof(float));
        }
    }
}

/* att [n, qd] for queries q [n, qd] at positions pos0.., over this layer's
 * cache kc, vc [KV, n_ctx, hd] rows [0, pos0 + n). */
static void attention(skl_context *c, int32_t layer, int32_t pos0, int32_t n) {
    size_t at = (size_t)layer * c->n_ctx * (size_t)c->dim.kvd;
    if (n == 1) attention_decode(c, c->kcache + at, c->vcache + at, pos0 + 1);
    else attention_batch(c, c->kcache + at, c->vcache + at, pos0, n);
}

/* out [n, d] = down(ffn(in [n, d])), through u [n, f] (and g [n, f] for a GLU). */
static void ffn(skl_context *c, const skl_layer *L, const float *in, int32_t n, float *out) {
    int32_t d = c->dim.d, f = c->dim.f;
    /* u [n, f] = act(gate in) * up in (GLU), or act(up in) */
    lin_job gu[2] = {job(&L->gate, in, d, c->g, f), job(&L->up, in, d, c->u, f)};
    if (L->gate.w.data) linears_act(c, gu, 2, n);
    else linears_act(c, &gu[1], 1, n);
    /* out [n, d] = down u */
    linear(c, &L->down, c->u, n, f, out, d);
}

/* x [rows, d] = norm [d] * x / sqrt(mean(x^2) + eps), each row (sum in double). */
static void rms_norm(skl_context *c, float *x, int32_t rows) {
    const skl_model *m = c->m;
    int32_t d = c->dim.d;
    for (int32_t i = 0; i < rows; i++) {
        float *r = x + (size_t)i * d;
        double ss = 0.0;
        for (int32_t j = 0; j < d; j++) ss += (double)r[j] * r[j];
        float s = (float)(1.0 / sqrt(ss / d + (double)m->hp.rms_norm_eps));
        for (int32_t j = 0; j < d; j++) r[j] = r[j] * s * skl_tensor_at(&m->norm, (size_t)j);
    }
}

/* ------------------------------------------------------------ scheduling */

static float act(skl_activation a, float x) {
    switch (a) {
    case SKL_ACT_SILU: return x / (1.0f + expf(-x));
    case SKL_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case SKL_ACT_GELU_TANH:
        return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    default: return x > 0.0f ? x : 0.0f;
    }
}

/* Elements [*a, *b) of chunk k of n elements cut into chunks of `size`. */
static void chunk_range(int64_t k, int64_t size, int64_t n, int64_t *a, int64_t *b) {
    *a = k * size;
    *b = *a + size < n ? *a + size : n;
}

static int64_t n_chunks(int64_t n, int64_t size) { return (n + size - 1) / size; }

/* ---- decode: GEMV tasks on the pool */

/* Up to 3 GEMVs (q/k/v) in one pool loop, or gate + up + activation.  The
 * rows are cut into chunks of about CHUNK_BYTES of weights that threads take
 * from the pool's shared counter, so a thread slowed by other load does less
 * of the work.  Which thread computes a row does not change its value. */
typedef struct mv_task {
    lin_job jobs[3];   /* n == 1 each: x [in], y [out] */
    const void *qx[SKL_QT_COUNT]; /* the jobs' x prepared for each quantized type they use (they share x) */
    int n;
    int post;          /* POST_GLU: jobs[1].y *= act(jobs[0].y) (same rows); POST_ACT: jobs[0].y = act(..) */
    skl_activation a;
    int64_t chunk[3];  /* rows per chunk of each job */
    int64_t first[4];  /* chunk index where job i starts; first[n] = total */
} mv_task;

#define CHUNK_BYTES ((int64_t)256 << 10)

/* A quantized dtype's qkernels.h type is its distance from SKL_DT_Q8_0. */
_Static_assert(SKL_QT_Q8_0 == 0 && SKL_DT_Q4_0 - SKL_DT_Q8_0 == SKL_QT_Q4_0, "qkernels.h types follow the dtypes");

static void add_bias(const lin_job *j, int64_t r0, int64_t r1) {
    const skl_tensor *b = &j->L->b;
    if (b->data)
        for (int64_t r = r0; r < r1; r++) j->y[r] += skl_tensor_at(b, (size_t)r);
}

static void mv_rows(const mv_task *t, const lin_job *j, int64_t r0, int64_t r1) {
    const skl_tensor *w = &j->L->w;
    if (!w->data) memcpy(j->y + r0, j->x + r0, (size_t)(r1 - r0) * sizeof(float));
    else if (skl_dtype_quantized(w->dtype))
        skl_gemv_q(w->dtype - SKL_DT_Q8_0, w->data, w->scale, j->in, t->qx[w->dtype - SKL_DT_Q8_0], j->y, (int32_t)r0,
                   (int32_t)r1);
    else skl_gemv(w->dtype, w->data, (size_t)w->cols, j->in, j->x, j->y, (int32_t)r0, (int32_t)r1);
    add_bias(j, r0, r1);
}

static void mv_chunk(void *arg, int64_t k) {
    const mv_task *t = arg;
    int i = 0;
    while (k >= t->first[i + 1]) i++;
    int64_t r0, r1;
    chunk_range(k - t->first[i], t->chunk[i], t->jobs[i].out, &r0, &r1);
    if (t->post == POST_GLU) { /* the gate's rows and up's same rows (one paired GEMV), then the product */
        const lin_job *g = &t->jobs[0], *u = &t->jobs[1];
        const skl_tensor *gw = &g->L->w, *uw = &u->L->w;
        if (gw->data && uw->data && gw->dtype == uw->dtype && !skl_dtype_quantized(gw->dtype) && gw->cols == uw->cols &&
            g->in == u->in) {
            skl_gemv2(gw->dtype, gw->data, uw->data, (size_t)gw->cols, g->in, g->x, g->y, u->y, (int32_t)r0,
                      (int32_t)r1);
            add_bias(g, r0, r1);
            add_bias(u, r0, r1);
        } else {
            mv_rows(t, g, r0, r1);
            mv_rows(t, u, r0, r1);
        }
        for (int64_t r = r0; r < r1; r++) t->jobs[1].y[r] *= act(t->a, t->jobs[0].y[r]);
        return;
    }
    mv_rows(t, &t->jobs[i], r0, r1);
    if (t->post == POST_ACT)
        for (int64_t r = r0; r < r1; r++) t->jobs[0].y[r] = act(t->a, t->jobs[0].y[r]);
}

/* The count GEMVs of jobs as one pool task, with the post-processing post. */
static void gemv_pool(skl_context *c, const lin_job *jobs, int count, int post) {
    mv_task t = {.n = post == POST_GLU ? 1 : count, /* GLU: chunks of the gate carry the up rows */
                 .post = post, .a = c->m->hp.hidden_act};
    memcpy(t.jobs, jobs, (size_t)count * sizeof *jobs);
    for (int i = 0; i < count; i++) { /* quantized weights: x prepared once, before the rows are split */
        const skl_tensor *w = &jobs[i].L->w;
        int qt = w->data && skl_dtype_quantized(w->dtype) ? w->dtype - SKL_DT_Q8_0 : -1;
        if (qt < 0 || t.qx[qt]) continue;
        skl_qx_prepare(qt, jobs[i].x, jobs[i].in, c->qx[qt]);
        t.qx[qt] = c->qx[qt];
    }
    t.first[0] = 0;
    for (int i = 0; i < t.n; i++) {
        const skl_tensor *w = &t.jobs[i].L->w;
        int64_t in = t.jobs[i].in;
        int64_t row_bytes = !w->data ? in * 4
                                     : (int64_t)(skl_dtype_bytes(w->dtype, (uint64_t)in) +
                                                 (skl_dtype_quantized(w->dtype) ? 2 * (uint64_t)in / SKL_DT_QGROUP : 0));
        if (post == POST_GLU) row_bytes *= 2;
        int64_t rows = (CHUNK_BYTES / row_bytes + 7) & ~(int64_t)7; /* whole 8-row kernel passes */
        t.chunk[i] = rows < 8 ? 8 : rows;
        t.first[i + 1] = t.first[i] + n_chunks(t.jobs[i].out, t.chunk[i]);
    }
    skl_pool_for(c->pool, t.first[t.n], mv_chunk, &t);
}

typedef struct attn_task {
    skl_context *c;
    const float *kc, *vc; /* this layer's cache [KV, n_ctx, hd] */
    int32_t len;          /* keys: positions [0, len) */
    int32_t per_chunk;    /* query heads per pool chunk: 1, or a whole KV group */
} attn_task;

/* One query token over the cache, query head h (scores row h). */
static void attn_decode_head(const attn_task *t, int32_t h) {
    skl_context *c = t->c;
    const skl_dims *D = &c->dim;
    int32_t hd = D->hd;
    float scale = 1.0f / sqrtf((float)hd), *s = c->scores + (size_t)h * c->n_ctx; /* [len] */
    size_t koff = (size_t)(h / D->group) * c->n_ctx * hd; /* this KV head's [n_ctx, hd] block */
    skl_gemv(SKL_DT_F32, t->kc + koff, (size_t)hd, hd, c->q + (size_t)h * hd, s, 0, t->len);
    skl_softmax(s, t->len, scale);
    skl_axpy_rows(t->vc + koff, (size_t)hd, t->len, hd, s, c->att + (size_t)h * hd);
}

/* Chunk k: query heads [k per_chunk, (k + 1) per_chunk).  With a whole KV
 * group per chunk, one thread reads that group's keys and values from memory
 * once and again from its own cache for the group's other heads (decode
 * attention of shape S went from about 1.0 to 0.7 ms per token); each head
 * is computed the same either way. */
static void attn_decode_chunk(void *arg, int64_t k) {
    const attn_task *t = arg;
    for (int32_t h = (int32_t)k * t->per_chunk; h < (int32_t)(k + 1) * t->per_chunk; h++) attn_decode_head(t, h);
}

/* att [1, qd] of the one query q [1, qd] over cache positions [0, len). */
static void attention_decode(skl_context *c, const float *kc, const float *vc, int32_t len) {
    const skl_dims *D = &c->dim;
    /* whole KV groups per chunk while there are at least 2 groups per thread (balance) */
    int32_t per = D->KV >= 2 * c->n_threads ? D->group : 1;
    attn_task t = {c, kc, vc, len, per};
    skl_pool_for(c->pool, D->H / per, attn_decode_chunk, &t);
}

/* ---- prefill: the sgemm path */

#define TILE_CHUNK 16 /* weight rows widened per pool chunk */
#define ELEM_CHUNK 16384 /* activations per pool chunk */
#define ROW_CHUNK 8 /* softmax rows per pool chunk */

typedef struct tile_task {
    const skl_tensor *w;
    int32_t r0, rows; /* weight rows [r0, r0 + rows) */
    float *dst;       /* [rows, cols] */
} tile_task;

static void tile_chunk(void *arg, int64_t k) {
    const tile_task *t = arg;
    int64_t a, b;
    chunk_range(k, TILE_CHUNK, t->rows, &a, &b);
    size_t cols = (size_t)t->w->cols, esz = skl_dtype_size(t->w->dtype);
    if (b <= a) return;
    if (skl_dtype_quantized(t->w->dtype)) {
        skl_dequant_rows(t->w->dtype - SKL_DT_Q8_0, t->w->data, t->w->scale, (int32_t)cols, t->r0 + (int32_t)a,
                         t->r0 + (int32_t)b, t->dst + (size_t)a * cols);
        return;
    }
    const uint8_t *src = (const uint8_t *)t->w->data + ((size_t)t->r0 + (size_t)a) * cols * esz;
    skl_to_f32(t->w->dtype, src, t->dst + (size_t)a * cols, (size_t)(b - a) * cols);
}

/* y [n, out] = x [n, in] W^T + b for n > 1 tokens; F16/BF16 or quantized W
 * widened into wtile [tr, in] a tile of tr rows at a time. */
static void linear_batch(skl_context *c, const lin_job *j, int32_t n) {
    const skl_linear *L = j->L;
    const skl_tensor *w = &L->w;
    const float *x = j->x;
    float *y = j->y;
    int32_t in = j->in, out = j->out;
    if (!w->data) {
        memcpy(y, x, (size_t)n * (size_t)in * sizeof(float));
    } else if (w->dtype == SKL_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0f, x, in, w->data, in, 0.0f, y, out);
    } else {
        int32_t tr = (int32_t)(c->tile_elems / (size_t)in);
        if (tr > out) tr = out;
        for (int32_t r0 = 0; r0 < out; r0 += tr) {
            tile_task t = {w, r0, out - r0 < tr ? out - r0 : tr, c->wtile};
            skl_pool_for(c->pool, n_chunks(t.rows, TILE_CHUNK), tile_chunk, &t);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, t.rows, in, 1.0f, x, in, c->wtile, in, 0.0f,
                        y + r0, out);
        }
    }
    if (L->b.data) {
        skl_to_f32(L->b.dtype, L->b.data, c->bvec, (size_t)out); /* bvec [out] */
        for (int32_t i = 0; i < n; i++) cblas_saxpy(out, 1.0f, c->bvec, 1, y + (size_t)i * out, 1);
    }
}

typedef struct act_task {
    float *u;
    const float *g; /* NULL: u = act(u) */
    size_t n;
    skl_activation a;
} act_task;

static void act_chunk(void *arg, int64_t k) {
    const act_task *t = arg;
    int64_t a, b;
    chunk_range(k, ELEM_CHUNK, (int64_t)t->n, &a, &b);
    if (t->g)
        for (int64_t i = a; i < b; i++) t->u[i] *= act(t->a, t->g[i]);
    else
        for (int64_t i = a; i < b; i++) t->u[i] = act(t->a, t->u[i]);
}

/* u [len] *= act(g [len]), or u = act(u) when g is NULL, on the pool. */
static void act_batch(skl_context *c, float *u, const float *g, size_t len) {
    act_task t = {u, g, len, c->m->hp.hidden_act};
    skl_pool_for(c->pool, n_chunks((int64_t)len, ELEM_CHUNK), act_chunk, &t);
}

/* Softmax of s[0, len) in place; s[len, width) set to 0. */
static void softmax_row(float *s, int32_t len, int32_t width) {
    skl_softmax(s, len, 1.0f);
    for (int32_t j = len; j < width; j++) s[j] = 0.0f;
}

typedef struct softmax_task {
    float *s;           /* [H, qb, width] */
    int32_t H, qb, width, first_len; /* row r of a head has first_len + r keys */
} softmax_task;

static void softmax_chunk(void *arg, int64_t k) {
    const softmax_task *t = arg;
    int64_t a, b;
    chunk_range(k, ROW_CHUNK, (int64_t)t->H * t->qb, &a, &b);
    for (int64_t i = a; i < b; i++)
        softmax_row(t->s + (size_t)i * t->width, t->first_len + (int32_t)(i % t->qb), t->width);
}

/* att [n, qd] of n > 1 queries q [n, qd] at positions pos0.., causal, over
 * cache positions [0, pos0 + n) of kc, vc [KV, n_ctx, hd], qblock queries at a time. */
static void attention_batch(skl_context *c, const float *kc, const float *vc, int32_t pos0, int32_t n) {
    const skl_dims *D = &c->dim;
    int32_t H = D->H, hd = D->hd, qd = D->qd, group = D->group;
    float scale = 1.0f / sqrtf((float)hd);
    for (int32_t i0 = 0; i0 < n; i0 += c->qblock) {
        int32_t qb = n - i0 < c->qblock ? n - i0 : c->qblock, width = pos0 + i0 + qb;
        for (int32_t h = 0; h < H; h++) /* S_h [qb, width] = scale Q_h K_h^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, qb, width, hd, scale,
                        c->q + (size_t)i0 * qd + (size_t)h * hd, qd, kc + (size_t)(h / group) * c->n_ctx * hd, hd, 0.0f,
                        c->scores + (size_t)h * qb * width, width);
        softmax_task st = {c->scores, H, qb, width, pos0 + i0 + 1};
        skl_pool_for(c->pool, n_chunks((int64_t)H * qb, ROW_CHUNK), softmax_chunk, &st);
        for (int32_t h = 0; h < H; h++) /* att_h [qb, hd] = P_h V_h */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, qb, hd, width, 1.0f,
                        c->scores + (size_t)h * qb * width, width, vc + (size_t)(h / group) * c->n_ctx * hd, hd, 0.0f,
                        c->att + (size_t)i0 * qd + (size_t)h * hd, qd);
    }
}
