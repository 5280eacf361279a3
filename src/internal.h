/* internal.h - the library's internal headers in one (not installed).
 *
 * Layers, bottom to top.  A file calls only into files of the layers below it
 * or, within its layer, into the files listed before it; no two files call
 * each other (checked with nm on the objects: the graph "file -> files whose
 * symbols it uses" has no cycle).
 *   utilities  error.c       status strings, last error, log, version, clock   error.h
 *              abi.c         struct sizes across versions (the ABI rule)       abi.h
 *              json.c        JSON text (duplicate keys rejected), text files   json.h
 *              buf.c         refcounted buffers, file mapping, huge pages      buf.h
 *              dtype.c       dtype sizes, names, parse, scalar conversions     dtype.h
 *              blas.c        the OpenBLAS core check                           blas.h
 *   format     safetensors.c one .safetensors file, validated                  safetensors.h
 *   wing       config.c      config.json -> skl_hparams, eos_token_id          config.h
 *              tokenizer.c   tokenizer.json, byte-level BPE                    tokenizer.h
 *              checkpoint.c  which files make a model (dir, shards, single file) checkpoint.h
 *              quant_config.c "quantization_config" (compressed-tensors)     quant_config.h
 *   model      model.c       load, free, clone, the linear-layer iterator      model.h
 *              model_info.c  hparams, weight counts, decode bytes, dtype
 *              quant.c       quantizing float64 rows to Q8_0 / Q4_0            quant.h
 *   compute    kernels.c     GEMV / softmax / widening kernels (uses dtype.c)  kernels.h
 *              qkernels.c    quantized (Q8_0, Q4_0) GEMV and widening          qkernels.h
 *              pool.c        thread pool                                       pool.h
 *              context.c     contexts: KV cache, scratch, skl_eval batching    context.h
 *              forward.c     one forward pass: prefill and decode              context.h
 *   top        sampling.c, plan.c, save.c, merge.c, quantize.c, generate.c     skipless.h
 *              (save.c's writer, used by merge.c's streaming merge)          save.h
 * The format wing knows nothing of computing; it makes no call into the model
 * (tokenizer.c's public calls take a skl_model only to read its m->tok).
 * The CLI (src/cli) and the bindings use include/skipless.h only. */
#ifndef SKL_INTERNAL_H
#define SKL_INTERNAL_H

#include "error.h"
#include "abi.h"
#include "json.h"
#include "buf.h"
#include "dtype.h"
#include "blas.h"
#include "safetensors.h"
#include "config.h"
#include "tokenizer.h"
#include "checkpoint.h"
#include "quant_config.h"
#include "model.h"
#include "quant.h"
#include "kernels.h"
#include "qkernels.h"
#include "pool.h"
#include "save.h"

/* ---- context (context.c), for the top layer ---- */
const skl_model *skl_context_model(const skl_context *ctx);

#endif
