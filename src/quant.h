/* quant.h - quantizing weights to Q8_0 / Q4_0 (quant.c), for skl_model_quantize_to
 * (quantize.c) and the merge (merge.c): float64 rows -> int q and F16 scales,
 * one scale per group of 32 consecutive inputs of a row. */
#ifndef SKL_QUANT_H
#define SKL_QUANT_H

#include "model.h"

/* x [rows, cols] (cols a multiple of 32) quantized to type (SKL_DT_Q8_0 or
 * SKL_DT_Q4_0) into q (skl_dtype_bytes(type, rows * cols) bytes, the layout
 * of qkernels.h) and scale [rows, cols / 32].  SKL_ERR_UNSUPPORTED, naming
 * `what` and the row (counted from row0), when a weight is not finite or a
 * scale does not fit F16. */
int skl_quant_rows(int type, const double *x, int64_t rows, int32_t cols, void *q, uint16_t *scale, const char *what,
                   int64_t row0);
/* x [rows, cols] <- the values skl_quant_rows stores for it (q times the
 * scale), in place: quantizing them again gives the same q and scales. */
int skl_quant_round(int type, double *x, int64_t rows, int32_t cols, const char *what);

/* Rows [r0, r1) of t (any dtype) as float64 into dst [r1 - r0, cols]; exact. */
void skl_tensor_rows_f64(const skl_tensor *t, int64_t r0, int64_t r1, double *dst);
/* *t (cleared first) <- a [rows, cols] tensor of quantized type with new,
 * uninitialised data and scale buffers. */
int skl_tensor_alloc_quant(skl_tensor *t, int type, int32_t rows, int32_t cols);
/* *out (cleared first) <- src quantized to type, read from src (its stored
 * dtype; a quantized one exactly dequantized) a few rows at a time. */
int skl_tensor_quantize(const skl_tensor *src, int type, skl_tensor *out, const char *what);

/* A linear weight that can be quantized: present, its inputs a multiple of 32. */
static inline bool skl_quantizable(const skl_tensor *w) { return w->data && w->cols % SKL_DT_QGROUP == 0; }
/* keep[0..n) as skl_quantize_params.keep: each must name a linear layer of an
 * L-layer model (SKL_ERR_INVALID_ARG naming the first that does not, led by fn). */
int skl_quant_check_keep(const char *const *keep, int32_t n, int32_t L, const char *fn);
/* Whether keep[0..n) names linear (layer, lin) (lin SKL_LIN_HEAD: lm_head). */
bool skl_quant_kept(const char *const *keep, int32_t n, int32_t layer, int lin);

#endif
