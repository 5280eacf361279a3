/* model_info.c - what a loaded model is: its hparams, weight counts, the bytes one
 * decode step reads and the bytes of all its weights (quantization scales
 * included), the dtype of its weights and the weights of each dtype
 * (skipless bench reports it next to skl_model_decode_bytes), which projections
 * a block still has. */
#include "model.h"
#include "abi.h"

#include <string.h>

int skl_model_hparams(const skl_model *m, skl_hparams *out, size_t size) {
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_hparams: model is NULL");
    return skl_copy_out(out, size, &m->hp, sizeof m->hp, SKL_SIZE_THROUGH(skl_hparams, final_norm),
                        "skl_model_hparams");
}

static uint64_t numel(const skl_tensor *t) { return t->data ? (uint64_t)t->rows * (uint64_t)t->cols : 0; }

int skl_model_weight_counts(const skl_model *m, skl_weight_counts *out, size_t size) {
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_weight_counts: model is NULL");
    skl_weight_counts counts = {0}, *c = &counts;
    c->embed = numel(&m->embed);
    c->head = numel(&m->head.w);
    c->norm = numel(&m->norm);
    c->bias = numel(&m->head.b);
    for (int l = 0; l < m->hp.num_hidden_layers; l++) {
        const skl_layer *L = &m->layers[l];
        c->q += numel(&L->q.w);
        c->k += numel(&L->k.w);
        c->v += numel(&L->v.w);
        c->o += numel(&L->o.w);
        c->gate += numel(&L->gate.w);
        c->up += numel(&L->up.w);
        c->down += numel(&L->down.w);
        for (int lin = 0; lin < SKL_LIN_COUNT; lin++) c->bias += numel(&skl_layer_linear((skl_layer *)L, lin)->b);
    }
    c->linear_total = c->embed + c->q + c->k + c->v + c->o + c->gate + c->up + c->down + c->head;
    return skl_copy_out(out, size, c, sizeof *c, SKL_SIZE_THROUGH(skl_weight_counts, linear_total),
                        "skl_model_weight_counts");
}

int skl_model_has_proj(const skl_model *m, int32_t layer, char which) {
    if (!m) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_has_proj: model is NULL");
    if (layer < 0 || layer >= m->hp.num_hidden_layers)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_has_proj: layer %d out of range [0, %d)",
                        layer, m->hp.num_hidden_layers);
    const skl_layer *L = &m->layers[layer];
    switch (which) {
    case 'q': return L->q.w.data != NULL;
    case 'k': return L->k.w.data != NULL;
    case 'v': return L->v.w.data != NULL;
    case 'o': return L->o.w.data != NULL;
    default: return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_has_proj: which '%c' is not q, k, v or o", which);
    }
}

/* Bytes of t with its scales. */
static uint64_t nbytes(const skl_tensor *t) { return skl_tensor_bytes(t) + skl_tensor_scale_bytes(t); }

static void decode_tensors(const skl_model *m, void (*region)(void *, const void *, uint64_t), void *ud);

static void add_bytes(void *ud, const void *base, uint64_t bytes) {
    (void)base;
    *(uint64_t *)ud += bytes;
}

uint64_t skl_model_decode_bytes(const skl_model *m) {
    uint64_t n = 0;
    if (m) decode_tensors(m, add_bytes, &n);
    return n;
}

uint64_t skl_model_weight_bytes(const skl_model *m) {
    if (!m) return 0;
    uint64_t n = nbytes(&m->embed) + nbytes(&m->norm);
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) {
        if (it.l->w.data != m->embed.data) n += nbytes(&it.l->w); /* a tied head is the embedding */
        n += nbytes(&it.l->b);
    }
    return n;
}

/* A weight matrix: its data, then its scales when quantized. */
static void weight_regions(const skl_tensor *w, void (*region)(void *, const void *, uint64_t), void *ud) {
    if (!w->data) return;
    region(ud, w->data, skl_tensor_bytes(w));
    if (w->scale) region(ud, w->scale, skl_tensor_scale_bytes(w));
}

/* The tensors skl_model_decode_bytes counts, in the order decode reads them:
 * region(ud, data, bytes) for each present one. */
static void decode_tensors(const skl_model *m, void (*region)(void *, const void *, uint64_t), void *ud) {
    for (skl_lin_iter it = skl_linears(m, 0, m->hp.num_hidden_layers, false); skl_lin_next(&it);) {
        weight_regions(&it.l->w, region, ud);
        if (it.l->b.data) region(ud, it.l->b.data, nbytes(&it.l->b));
    }
    if (m->norm.data) region(ud, m->norm.data, nbytes(&m->norm));
    weight_regions(&m->head.w, region, ud);
    if (m->head.b.data) region(ud, m->head.b.data, nbytes(&m->head.b));
    if (m->embed.data) region(ud, m->embed.data, skl_dtype_bytes(m->embed.dtype, (uint64_t)m->embed.cols));
}

typedef struct regions {
    const void **bases;
    uint64_t *sizes;
    size_t n, n_max;
} regions;

static void add_region(void *ud, const void *base, uint64_t bytes) {
    regions *r = ud;
    if (r->n < r->n_max) {
        r->bases[r->n] = base;
        r->sizes[r->n] = bytes;
    }
    r->n++;
}

int skl_model_decode_regions(const skl_model *m, const void **bases, uint64_t *sizes, size_t n_max,
                             size_t *n_regions) {
    if (!m || !n_regions) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_decode_regions: model or n_regions is NULL");
    if (n_max && (!bases || !sizes))
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_decode_regions: bases or sizes is NULL with n_max %zu", n_max);
    regions r = {bases, sizes, 0, n_max};
    decode_tensors(m, add_region, &r);
    *n_regions = r.n;
    if (r.n > n_max)
        return skl_fail(SKL_ERR_BUFFER_TOO_SMALL, "skl_model_decode_regions: %zu regions, room for %zu", r.n, n_max);
    return SKL_OK;
}

/* Fold one weight into the running dtype name ("" before the first). */
static void note_dtype(const char **dtype, const skl_tensor *t) {
    if (!t->data) return;
    const char *d = skl_dtype_str(t->dtype);
    if (!**dtype) *dtype = d;
    else if (strcmp(*dtype, d) != 0) *dtype = "mixed";
}

const char *skl_model_weight_dtype(const skl_model *m) {
    if (!m) return NULL;
    const char *dtype = "";
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) note_dtype(&dtype, &it.l->w);
    return dtype;
}

uint64_t skl_model_dtype_weights(const skl_model *m, skl_dtype dtype) {
    uint64_t n = 0;
    if (m)
        for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);)
            if (it.l->w.data && it.l->w.dtype == (int)dtype) n += numel(&it.l->w);
    return n;
}
