/* model.h - a loaded model and its tensors (model.c: load, free, clone, the linear
 * layers; model_info.c: the queries). */
#ifndef SKL_MODEL_H
#define SKL_MODEL_H

#include "buf.h"
#include "dtype.h"
#include "checkpoint.h"
#include "tokenizer.h"

#include <jansson.h>

/* A [rows, cols] row-major matrix (or a vector with rows = 1) of dtype
 * SKL_DT_F32, F16 or BF16 (the file's dtype; F16/BF16 stay 16-bit in memory,
 * little-endian, as in the file), or a linear weight quantized as SKL_DT_Q8_0
 * or SKL_DT_Q4_0 (qkernels.h's layouts: data the int8 q [rows, cols] or the
 * uint32 words [rows, cols / 8], scale F16 [rows, cols / 32]; cols a multiple
 * of 32).  data == NULL: absent. */
typedef struct skl_tensor {
    const void *data;
    int dtype;
    int32_t rows, cols;
    skl_buf *owner;        /* holds data alive */
    const uint16_t *scale; /* quantized: F16 [rows, cols / 32]; else NULL */
    skl_buf *scale_owner;  /* holds scale alive */
} skl_tensor;

/* Element i (row-major) of a tensor as float (quantized: q times its scale, exact). */
static inline float skl_tensor_at(const skl_tensor *t, size_t i) {
    return skl_dtype_quantized(t->dtype) ? skl_qelem(t->dtype, t->data, t->scale, i) : skl_elem(t->dtype, t->data, i);
}
/* Bytes of t's data (without scales); 0 when absent. */
static inline uint64_t skl_tensor_bytes(const skl_tensor *t) {
    return t->data ? skl_dtype_bytes(t->dtype, (uint64_t)t->rows * (uint64_t)t->cols) : 0;
}
/* Bytes of t's scales: 2 per 32 weights of a quantized tensor, else 0. */
static inline uint64_t skl_tensor_scale_bytes(const skl_tensor *t) {
    return t->data && t->scale ? 2 * ((uint64_t)t->rows * (uint64_t)t->cols / SKL_DT_QGROUP) : 0;
}

/* y = W x + b, W [out, in].  w.data == NULL: the identity (out == in). */
typedef struct skl_linear {
    skl_tensor w;
    skl_tensor b; /* [1, out] or absent */
} skl_linear;

typedef struct skl_layer {
    skl_linear q, k, v, o;        /* o is the paper's P */
    skl_linear gate, up, down;    /* down is the paper's O; gate absent: plain MLP */
} skl_layer;

struct skl_model {
    skl_hparams hp;
    skl_layer *layers;    /* [L] */
    skl_tensor embed;     /* [V, d] */
    skl_linear head;      /* [V, d]; tied: w shares embed's storage */
    skl_tensor norm;      /* [1, d] or absent */
    json_t *config;       /* the config object as loaded (for save) */
    char *path;
    skl_tok *tok;         /* tokenizer or NULL */
    int32_t eos_token_id; /* config "eos_token_id", -1 if absent */
    skl_source_id source; /* the files it was loaded from (clones and merges keep it): save refuses them */
};

void skl_tensor_clear(skl_tensor *t);
/* *dst = *src, with a reference to each of its buffers. */
void skl_tensor_share(skl_tensor *dst, const skl_tensor *src);

/* The 7 linear layers of a block in a fixed order, with their HF name stems. */
enum { SKL_LIN_Q, SKL_LIN_K, SKL_LIN_V, SKL_LIN_O, SKL_LIN_GATE, SKL_LIN_UP, SKL_LIN_DOWN, SKL_LIN_COUNT };
extern const char *const skl_linear_names[SKL_LIN_COUNT]; /* "self_attn.q_proj", ... */
skl_linear *skl_layer_linear(skl_layer *l, int lin);

/* ---- every linear layer of a model, one iterator ----
 *   for (skl_lin_iter it = skl_linears(m, 0, L, true); skl_lin_next(&it);)
 *       use(it.layer, it.lin, it.name, it.l);
 * visits blocks [first, end) in order, each block's 7 linear layers in
 * SKL_LIN_* order (absent ones too: it.l->w.data == NULL), then lm_head when
 * head is true (it.lin == SKL_LIN_HEAD, it.layer == num_hidden_layers).  it.l
 * points into the model; it is written only by the model's owner (free,
 * clone, merge), as skl_layer_linear. */
enum { SKL_LIN_HEAD = SKL_LIN_COUNT };
typedef struct skl_lin_iter {
    int32_t layer;     /* the block, or num_hidden_layers for the head */
    int lin;           /* SKL_LIN_Q .. SKL_LIN_DOWN, or SKL_LIN_HEAD */
    skl_linear *l;
    const char *name;  /* "self_attn.q_proj", ..., or "lm_head" */
    /* private */
    const skl_model *m_;
    int32_t end_;
    bool head_, done_;
} skl_lin_iter;
skl_lin_iter skl_linears(const skl_model *m, int32_t first, int32_t end, bool head);
bool skl_lin_next(skl_lin_iter *it);
/* Every linear layer of m, lm_head last. */
static inline skl_lin_iter skl_linears_all(const skl_model *m) {
    return skl_linears(m, 0, m->hp.num_hidden_layers, true);
}
/* The module name of linear (layer, lin): "model.layers.3.mlp.down_proj", or "lm_head" for SKL_LIN_HEAD. */
void skl_linear_module(int32_t layer, int lin, char *buf, size_t n);
/* The linear layer (layer, lin) of m as the iterator names it (SKL_LIN_HEAD: lm_head). */
skl_linear *skl_model_linear(const skl_model *m, int32_t layer, int lin);

/* A new model sharing every tensor of src (reference counted). */
int skl_model_clone(const skl_model *src, skl_model **out);

#endif
