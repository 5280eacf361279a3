/* context.h - the context, shared by context.c (its life and skl_eval) and
 * forward.c (the forward pass over it).  Not installed. */
#ifndef SKL_CONTEXT_H
#define SKL_CONTEXT_H

#include "internal.h"

/* The model's dimensions, derived once when the context is created. */
typedef struct skl_dims {
    int32_t d;         /* hidden_size */
    int32_t H, KV;     /* query heads, key/value heads */
    int32_t hd;        /* head_dim */
    int32_t qd, kvd;   /* H*hd, KV*hd: a token's queries, its keys (or values) */
    int32_t f;         /* intermediate_size */
    int32_t V;         /* vocab_size */
    int32_t rot, half; /* rotary_dim and rot/2; 0 without RoPE */
    int32_t group;     /* H/KV: query heads reading one KV head */
    int32_t n_layers;
} skl_dims;

struct skl_context {
    const skl_model *m;
    skl_dims dim;
    int32_t n_ctx, n_threads, n_batch;
    bool logits_all;
    int32_t n_past;
    /* [n_layers, KV, n_ctx, hd] each, head-major: the cached keys (after RoPE)
     * and values of one KV head are contiguous, so decode attention streams
     * them instead of gathering 4-line pieces 2 KiB apart */
    float *kcache, *vcache;
    float *rope_cos, *rope_sin; /* [n_ctx, half]; rows [0, rope_rows) filled, by skl_eval as positions are reached */
    int32_t rope_rows;
    /* scratch for one batch of nb <= n_batch tokens */
    float *x;      /* [nb, d] the stream */
    float *q;      /* [nb, qd] queries (a rotated copy of x when q_proj is absent) */
    float *k, *v;  /* [nb, kvd] this batch's keys and values, before they go to the cache */
    float *att;    /* [nb, qd] attention output, heads concatenated */
    float *h;      /* [nb, d] o_proj output */
    float *g, *u;  /* [nb, f] FFN hidden (gate, up) */
    float *ffo;    /* [nb, d] FFN output (parallel blocks) */
    float *scores; /* decode: [H, n_ctx] attention weights, one row per query head;
                      prefill: [H, qblock, n_ctx] scores of a block of queries */
    int32_t qblock; /* queries per attention block in prefill */
    float *bvec;   /* [max(d, qd, f, V)] a bias widened to fp32 (prefill) */
    float *wtile;  /* [tile_elems] an F16/BF16 or quantized weight tile widened to fp32 (prefill); NULL: all F32 */
    void *qx[SKL_QT_COUNT]; /* [skl_qx_size(max(d, qd, f))] one GEMV input prepared for each quantized
                               type (qkernels.h), 64-byte aligned; NULL: no weight of that type */
    size_t tile_elems;
    skl_pool *pool;
    float *logits; /* [n_logit_rows, V] */
    int32_t n_logit_rows, logit_cap;
};

/* forward.c: run n <= n_batch tokens at positions n_past.. (n_past is left
 * to the caller).  logits == NULL: no head; else all_rows: logits [n, V],
 * one row per token; !all_rows: logits [V] of the last token only. */
void skl_forward(skl_context *c, const int32_t *tokens, int32_t n, float *logits, bool all_rows);

#endif
