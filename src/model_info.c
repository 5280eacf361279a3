/* model_info.c - what a loaded model is: its hparams, weight counts, the bytes one
 * decode step reads, the dtype of its weights (skipless bench reports it next to
 * skl_model_decode_bytes), which projections a block still has. */
#include "model.h"

#include <string.h>

int skl_model_hparams(const skl_model *m, skl_hparams *out) {
    if (!m || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_hparams: NULL argument");
    *out = m->hp;
    return SKL_OK;
}

static uint64_t numel(const skl_tensor *t) { return t->data ? (uint64_t)t->rows * (uint64_t)t->cols : 0; }

int skl_model_weight_counts(const skl_model *m, skl_weight_counts *c) {
    if (!m || !c) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_weight_counts: NULL argument");
    memset(c, 0, sizeof *c);
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
    return SKL_OK;
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

static uint64_t nbytes(const skl_tensor *t) {
    return t->data ? (uint64_t)t->rows * (uint64_t)t->cols * skl_dtype_size(t->dtype) : 0;
}

uint64_t skl_model_decode_bytes(const skl_model *m) {
    if (!m) return 0;
    uint64_t n = nbytes(&m->norm);
    if (m->embed.data) n += (uint64_t)m->embed.cols * skl_dtype_size(m->embed.dtype);
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) n += nbytes(&it.l->w) + nbytes(&it.l->b);
    return n;
}

/* Fold one weight into the running dtype name ("" before the first). */
static void note_dtype(const char **dtype, const skl_tensor *t) {
    if (!t->data) return;
    const char *d = skl_dtype_name(t->dtype);
    if (!**dtype) *dtype = d;
    else if (strcmp(*dtype, d) != 0) *dtype = "mixed";
}

const char *skl_model_weight_dtype(const skl_model *m) {
    if (!m) return NULL;
    const char *dtype = "";
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) note_dtype(&dtype, &it.l->w);
    return dtype;
}
