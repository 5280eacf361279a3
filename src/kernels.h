/* kernels.h - the inner loops of decode (kernels.c).
 * Variants chosen at run time by CPU features; see kernels.c. */
#ifndef SKL_KERNELS_H
#define SKL_KERNELS_H

#include "dtype.h"

enum { SKL_KERN_GENERIC = 0, SKL_KERN_AVX2 = 1, SKL_KERN_AVX512 = 2, SKL_KERN_COUNT };
int skl_kernels_supported(int id);       /* 1 if this CPU runs variant id */
const char *skl_kernels_name(int id);    /* "generic", "avx2", "avx512"; NULL if unknown */
/* Use variant id from now on (tests); id < 0: back to the best supported.
 * Returns -1 (nothing changed) if the variant is unknown or unsupported.
 * Not to be called while another thread evaluates a context. */
int skl_kernels_force(int id);
/* The variant in use (SKL_KERN_*): the forced one, else the best supported;
 * qkernels.c follows it. */
int skl_kernels_active(void);
/* y[r] = sum_c W[r * ld + c] x[c] for r in [r0, r1), W of dtype (fp32 accumulation). */
void skl_gemv(int dtype, const void *W, size_t ld, int32_t cols, const float *x, float *y, int32_t r0, int32_t r1);
/* y[r] = W[r] . x and y1[r] = W1[r] . x for r in [r0, r1): two matrices of the same dtype,
 * shape and ld (gate_proj and up_proj), read as one stream of passes; each value equals skl_gemv's. */
void skl_gemv2(int dtype, const void *W, const void *W1, size_t ld, int32_t cols, const float *x, float *y, float *y1,
               int32_t r0, int32_t r1);
/* out[cols] = sum_j p[j] V[j * ld + c] (fp32). */
void skl_axpy_rows(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out);
/* s[j] = exp(scale s[j] - max) / sum over j in [0, len), in place, len >= 1
 * (attention weights; exp with a polynomial of about 2 ulp in the vector variants). */
void skl_softmax(float *s, int32_t len, float scale);
/* dst[n] = src[n] of dtype, widened to fp32 (exact). */
void skl_to_f32(int dtype, const void *src, float *dst, size_t n);

#endif
