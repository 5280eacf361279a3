/* quantize.c - skl_model_quantize_to: a model's linear layers quantized to
 * Q8_0 or Q4_0 (quant.c) and saved, streaming, through save.c's writer.
 *
 * Two steps, as the streaming merge: the layout (every tensor's name, dtype
 * and shape: the quantized weights as placeholders) fixes every file header;
 * then block by block each linear weight is read from the source model (in
 * place, through its mapping), quantized, written and released, so the
 * memory held is one block's quantized weights and a few rows of float64.
 * What is quantized: every linear weight (lm_head too) but the kept ones and
 * those whose input size is not a multiple of 32 (docs/quantization.md). */
#include "internal.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUANTIZE_PARAMS_V1 SKL_SIZE_THROUGH(skl_quantize_params, progress_user_data)

int skl_quantize_params_init(skl_quantize_params *p, size_t size) {
    skl_quantize_params d = {.dtype = SKL_DTYPE_Q8_0};
    return skl_params_init(p, size, &d, sizeof d, QUANTIZE_PARAMS_V1, "skl_quantize_params_init");
}

/* The type the weight of linear (layer, lin) is stored in: p->dtype, or -1 (kept as it is). */
static int target(const skl_quantize_params *p, const skl_tensor *w, int32_t layer, int lin) {
    if (!skl_quantizable(w) || skl_quant_kept(p->keep, p->n_keep, layer, lin)) return -1;
    return (int)p->dtype;
}

/* The layout of the quantized model: a clone of src whose quantized weights are placeholders. */
static int make_layout(const skl_model *src, const skl_quantize_params *p, skl_model **out, bool *untie) {
    static const unsigned char placeholder[2]; /* never read: the writer reads shapes and dtypes */
    skl_model *m;
    int rc = skl_model_clone(src, &m);
    if (rc) return rc;
    char skipped[1024] = "";
    int n_skipped = 0;
    *untie = false;
    for (skl_lin_iter it = skl_linears_all(m); skl_lin_next(&it);) {
        skl_tensor *w = &it.l->w;
        int t = target(p, w, it.layer, it.lin);
        if (w->data && t < 0 && !skl_quant_kept(p->keep, p->n_keep, it.layer, it.lin)) {
            char name[96];
            skl_linear_module(it.layer, it.lin, name, sizeof name);
            size_t k = strlen(skipped);
            if (n_skipped++ < 8) snprintf(skipped + k, sizeof skipped - k, "%s%s (%d inputs)", k ? ", " : "", name, w->cols);
        }
        if (t < 0) continue;
        if (it.lin == SKL_LIN_HEAD && m->hp.tie_word_embeddings) *untie = true;
        skl_tensor q = {.data = placeholder, .dtype = t, .rows = w->rows, .cols = w->cols,
                        .scale = (const uint16_t *)(const void *)placeholder};
        skl_tensor_clear(w);
        *w = q;
    }
    if (n_skipped)
        skl_log(SKL_LOG_WARN, "quantize: %d linear layer%s kept unquantized, their inputs not a multiple of %d: %s%s",
                n_skipped, n_skipped > 1 ? "s" : "", SKL_DT_QGROUP, skipped, n_skipped > 8 ? ", ..." : "");
    if (*untie) {
        /* the head becomes its own quantized matrix; the embedding stays as it is */
        m->hp.tie_word_embeddings = false;
        if (json_object_set_new(m->config, "tie_word_embeddings", json_false()) != 0) rc = skl_fail(SKL_ERR_NOMEM, "out of memory");
    }
    if (rc) skl_model_free(m);
    else *out = m;
    return rc;
}

/* Quantize the linear weights of block `layer` (SKL_LIN_HEAD's layer: the head) of m in place. */
static int quantize_block(skl_model *m, const skl_quantize_params *p, int32_t layer, bool head) {
    skl_lin_iter it = head ? skl_linears(m, layer, layer, true) : skl_linears(m, layer, layer + 1, false);
    while (skl_lin_next(&it)) {
        int t = target(p, &it.l->w, it.layer, it.lin);
        if (t < 0) continue;
        char name[96];
        skl_linear_module(it.layer, it.lin, name, sizeof name);
        skl_tensor q = {0};
        int rc = skl_tensor_quantize(&it.l->w, t, &q, name);
        if (rc) return rc;
        skl_tensor_clear(&it.l->w);
        it.l->w = q;
    }
    return SKL_OK;
}

int skl_model_quantize_to(const skl_model *src, const char *path, const skl_quantize_params *params,
                          const skl_save_params *save) {
    static const char *fn = "skl_model_quantize_to";
    if (!src || !path || !*path) return skl_fail(SKL_ERR_INVALID_ARG, "%s: NULL model or empty path", fn);
    skl_quantize_params p;
    skl_quantize_params_init(&p, sizeof p);
    int rc = skl_params_read(&p, sizeof p, params, QUANTIZE_PARAMS_V1, fn);
    if (rc) return rc;
    if (p.dtype != SKL_DTYPE_Q8_0 && p.dtype != SKL_DTYPE_Q4_0)
        return skl_fail(SKL_ERR_INVALID_ARG, "%s: type %d is not a quantized type (expected Q8_0 or Q4_0)", fn, (int)p.dtype);
    int32_t L = src->hp.num_hidden_layers;
    if ((rc = skl_quant_check_keep(p.keep, p.n_keep, L, fn))) return rc;
    skl_model *layout = NULL, *work = NULL;
    skl_writer *w = NULL;
    bool untie;
    if ((rc = make_layout(src, &p, &layout, &untie)) || (rc = skl_writer_open(layout, path, save, &w)) ||
        (rc = skl_model_clone(src, &work)))
        goto done;
    work->hp.tie_word_embeddings = layout->hp.tie_word_embeddings; /* its head (the embedding's storage) is quantized */
    skl_log(SKL_LOG_INFO, "quantize: %s to %s into %s", src->path ? src->path : "model", skl_dtype_str((int)p.dtype), path);
    for (int32_t i = 0; i <= L && !rc; i++) {
        bool head = i == L;
        if ((rc = quantize_block(work, &p, i, head)) || (rc = skl_writer_put(w, work, head ? INT32_MAX : i + 1))) break;
        for (skl_lin_iter it = skl_linears(work, i, head ? i : i + 1, false); skl_lin_next(&it);) { /* written: release */
            skl_tensor_clear(&it.l->w);
            skl_tensor_clear(&it.l->b);
        }
        if (p.progress && p.progress((uint64_t)i + 1, (uint64_t)L + 1, p.progress_user_data))
            rc = skl_fail(SKL_ERR_CANCELLED, "%s: cancelled by the progress callback after %d of %d blocks", fn, i + 1, L + 1);
    }
    if (!rc) {
        rc = skl_writer_finish(w); /* the renames: the output appears whole or not at all */
        w = NULL;
    }
done:
    skl_writer_abort(w);
    skl_model_free(work);
    skl_model_free(layout);
    return rc;
}
