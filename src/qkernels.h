/* qkernels.h - GEMV and widening for the group-quantized weight types
 * (qkernels.c), beside kernels.c's F32/F16/BF16 ones and dispatched the same
 * way (the variant kernels.c chose at run time: "avx512", "avx2", "generic").
 *
 * Layouts (docs/model-format.md; compressed-tensors' "int-quantized" and
 * "pack-quantized" weights, symmetric, one scale per group of 32 consecutive
 * inputs of a row; the loader keeps scales as F16, converting others):
 *   SKL_QT_Q8_0  q: int8 [rows, cols] row-major;
 *                w[r][c] = q[r][c] * scale[r][c / 32]
 *   SKL_QT_Q4_0  q: uint32 words [rows, cols / 8] row-major; element c of a
 *                row is bits 4 (c % 8) .. 4 (c % 8) + 3 of word c / 8 of the
 *                row (little-endian words, so byte k of a row holds elements
 *                2k (low nibble) and 2k + 1 (high nibble)), stored as the
 *                unsigned value n = q + 8, q in [-8, 7];
 *                w[r][c] = (n[r][c] - 8) * scale[r][c / 32]
 *   scale: F16 [rows, cols / 32] row-major.  cols is a multiple of 32.
 *
 * A GEMV reads x once per call through a prepared copy qx (whatever form the
 * kernel computes with: see qkernels.c), made by one thread before the rows
 * are split among threads.  A row's result depends only on its weights, x
 * and the variant, never on the row split (any thread count). */
#ifndef SKL_QKERNELS_H
#define SKL_QKERNELS_H

#include "kernels.h"

#include <stddef.h>
#include <stdint.h>

enum { SKL_QT_Q8_0 = 0, SKL_QT_Q4_0 = 1, SKL_QT_COUNT };
enum { SKL_QGROUP = 32 }; /* inputs per scale */

/* Bytes of a prepared input of cols (a multiple of 32) values, for any type. */
size_t skl_qx_size(int32_t cols);
/* Prepare x[cols] for skl_gemv_q of type qt into qx (skl_qx_size(cols)
 * bytes, 64-byte aligned). */
void skl_qx_prepare(int qt, const float *x, int32_t cols, void *qx);
/* y[r] = sum_c w[r][c] x[c] for r in [r0, r1), w of type qt (q, scale as
 * above), qx from skl_qx_prepare(qt, x, cols, qx). */
void skl_gemv_q(int qt, const void *q, const uint16_t *scale, int32_t cols, const void *qx, float *y, int32_t r0,
                int32_t r1);
/* dst[(r - r0) * cols + c] = w[r][c] in fp32 for r in [r0, r1) (exact: the
 * product of a small integer and an F16 scale); prefill widens tiles of
 * rows with it and multiplies them with sgemm. */
void skl_dequant_rows(int qt, const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1, float *dst);

/* The implementations behind these calls, for tests and benchmarks.  Each
 * belongs to one kernels.c variant and is named "<variant>-<how>" (e.g.
 * "avx2-int8", "avx512-vnni-int8", "generic-f32"); by default the calls use
 * the preferred one of the variant kernels.c has active (skl_kernels_active,
 * so skl_kernels_force switches these too).  A qx is valid only for the
 * implementation that prepared it. */
int skl_qkernels_count(void);            /* number of implementations */
const char *skl_qkernels_name(int i);    /* NULL if i is out of range */
int skl_qkernels_supported(int i);       /* 1 if this CPU runs implementation i */
/* Bits of the activations implementation i multiplies the weights with: 32
 * (x as fp32, the exact semantics above up to fp32 rounding) or 8 (x rounded
 * to int8 per group of 32 with an fp32 scale, as llama.cpp's Q8_0
 * activations: d = amax / 127 and xq = x * (127 / amax) rounded to the
 * nearest integer, ties to even, all in fp32; d = 0, xq = 0 for a group of
 * zeros; each group's integer dot product is exact). */
int skl_qkernels_xbits(int i);
/* Use implementation i from now on (tests, benchmarks); i < 0: back to the
 * default of the active variant.  Returns -1 (nothing changed) if i is
 * unknown or unsupported.  Not while another thread computes. */
int skl_qkernels_force(int i);
int skl_qkernels_active(void);           /* the implementation in use */

#endif
