/* footprint.c - the storage dtype of a model's weights (skipless bench reports it
 * next to skl_model_decode_bytes). */
#include "internal.h"

#include <string.h>

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
    for (int32_t l = 0; l < m->hp.num_hidden_layers; l++)
        for (int lin = 0; lin < SKL_LIN_COUNT; lin++)
            note_dtype(&dtype, &skl_layer_linear((skl_layer *)&m->layers[l], lin)->w); /* read only */
    note_dtype(&dtype, &m->head.w);
    return dtype;
}
