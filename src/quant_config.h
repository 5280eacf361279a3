/* quant_config.h - config.json's "quantization_config" in the compressed-tensors
 * convention (quant_config.c): which linear layers are quantized, and how. */
#ifndef SKL_QUANT_CONFIG_H
#define SKL_QUANT_CONFIG_H

#include "dtype.h"
#include "json.h"

typedef struct skl_qcfg skl_qcfg;

/* The "quantization_config" of the config object cfg, validated
 * (docs/model-format.md, "Quantized weights"); *out = NULL when it is absent
 * or null (nothing quantized).  `what` names the config in messages. */
int skl_qcfg_parse(const json_t *cfg, const char *what, skl_qcfg **out);
void skl_qcfg_free(skl_qcfg *q);
/* How the config stores module `name` ("model.layers.0.self_attn.q_proj",
 * "lm_head"; linear = it is an nn.Linear, which a "Linear" target matches):
 * SKL_DT_Q8_0 or SKL_DT_Q4_0, or -1 when it leaves the module unquantized
 * (also for q == NULL). */
int skl_qcfg_type(const skl_qcfg *q, const char *name, bool linear);

/* A quantization_config describing n modules: names[i] stored as types[i]
 * (SKL_DT_Q8_0, SKL_DT_Q4_0, or -1: not quantized).  NULL when no module is
 * quantized or memory runs out (*nomem tells which). */
json_t *skl_qcfg_build(const char *const *names, const int *types, size_t n, bool *nomem);

#endif
