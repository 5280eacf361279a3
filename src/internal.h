/* internal.h - the library's internal headers in one (not installed).
 *
 * Layers, bottom to top; a file uses only files of its own layer's lower rows
 * or of layers below it, never above (checked with nm: no two files call each
 * other, no circle):
 *   utilities   error.c (status, last error, log, clock)  error.h
 *               json.c (JSON text, text files)             json.h
 *               buf.c (refcounted buffers, file mapping)   buf.h
 *               dtype.c (dtype sizes, names, conversions)  dtype.h
 *               blas.c (OpenBLAS core check)               blas.h
 *   format      safetensors.c (one .safetensors file)      safetensors.h
 *   wing        config.c (config.json -> hparams)          config.h
 *               tokenizer.c (tokenizer.json, BPE)          tokenizer.h
 *               checkpoint.c (which files make a model)    checkpoint.h
 *   model       model.c (load, free, clone, linear layers) model.h
 *               model_info.c (hparams, counts, bytes, dtype)
 *   compute     kernels.c, pool.c                          kernels.h, pool.h
 *               forward.c (context, prefill, decode)       below
 *   top         merge.c, plan.c, save.c, sampling.c, generate.c
 * The CLI (src/cli) and bindings use include/skipless.h only. */
#ifndef SKL_INTERNAL_H
#define SKL_INTERNAL_H

#include "error.h"
#include "json.h"
#include "buf.h"
#include "dtype.h"
#include "blas.h"
#include "safetensors.h"
#include "config.h"
#include "tokenizer.h"
#include "checkpoint.h"
#include "model.h"
#include "kernels.h"
#include "pool.h"

/* ---- context (forward.c) ---- */
const skl_model *skl_context_model(const skl_context *ctx);

#endif
