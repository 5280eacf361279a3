/* footprint.c - bytes of a model's weights as held in memory.
 *
 * Batch-1 decoding multiplies one vector by every linear layer, so it reads
 * each of them once per token: their bytes in memory bound decode speed by
 * memory bandwidth (skipless bench compares against that bound).  The input
 * embedding contributes one row per token, which is negligible and counted
 * apart. */
#include "internal.h"

#include <string.h>

/* Bytes of one tensor as stored (weights are fp32 in memory in this version). */
static uint64_t tensor_bytes(const skl_tensor *t) {
    return t->data ? (uint64_t)t->rows * (uint64_t)t->cols * sizeof(float) : 0;
}

static const char *tensor_dtype(const skl_tensor *t) {
    (void)t;
    return "F32";
}

/* Fold one linear weight into the running dtype name ("" before the first). */
static void note_dtype(const char **dtype, const skl_tensor *t) {
    if (!t->data) return;
    const char *d = tensor_dtype(t);
    if (!**dtype) *dtype = d;
    else if (strcmp(*dtype, d) != 0) *dtype = "mixed";
}

int skl_model_weight_bytes(const skl_model *m, skl_weight_bytes *out) {
    if (!m || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_weight_bytes: NULL argument");
    memset(out, 0, sizeof *out);
    const char *dtype = "";
    for (int32_t l = 0; l < m->hp.num_hidden_layers; l++)
        for (int lin = 0; lin < SKL_LIN_COUNT; lin++) {
            const skl_linear *L = skl_layer_linear((skl_layer *)&m->layers[l], lin); /* read only */
            out->linear += tensor_bytes(&L->w);
            out->other += tensor_bytes(&L->b);
            note_dtype(&dtype, &L->w);
        }
    out->linear += tensor_bytes(&m->head.w);
    note_dtype(&dtype, &m->head.w);
    out->other += tensor_bytes(&m->head.b) + tensor_bytes(&m->norm);
    /* a tied head reads the embedding table itself: counted once, in linear */
    out->embed = m->hp.tie_word_embeddings ? 0 : tensor_bytes(&m->embed);
    out->dtype = dtype;
    return SKL_OK;
}
