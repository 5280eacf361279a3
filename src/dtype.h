/* dtype.h - the weight dtypes: sizes, names, scalar conversions (dtype.c).
 * A new weight type is added here and in kernels.c (quantized: qkernels.c). */
#ifndef SKL_DTYPE_H
#define SKL_DTYPE_H

#include "error.h"

#include <stdbool.h>
#include <string.h>

/* Equal to the public SKL_DTYPE_*: how a model holds a tensor. */
enum {
    SKL_DT_F32 = SKL_DTYPE_F32,
    SKL_DT_F16 = SKL_DTYPE_F16,
    SKL_DT_BF16 = SKL_DTYPE_BF16,
    SKL_DT_Q8_0 = SKL_DTYPE_Q8_0, /* int8 q [rows, cols] + F16 scale [rows, cols / 32] */
    SKL_DT_Q4_0 = SKL_DTYPE_Q4_0, /* uint32 words [rows, cols / 8] of nibbles q + 8 + F16 scale */
    /* Integer dtypes of a safetensors file: parts of the quantized layouts
     * only (the packed weight, weight_shape), never a model tensor by themselves. */
    SKL_DT_I8 = 16,
    SKL_DT_I32 = 17,
    SKL_DT_I64 = 18
};
/* Inputs of a row per scale of SKL_DT_Q8_0 / SKL_DT_Q4_0 (qkernels.h: SKL_QGROUP). */
enum { SKL_DT_QGROUP = 32 };

/* Bytes of one element: F32, I32 4; F16, BF16 2; I64 8; I8, Q8_0 1 (Q4_0's half byte: skl_dtype_bytes). */
size_t skl_dtype_size(int dtype);
static inline bool skl_dtype_quantized(int dtype) { return dtype == SKL_DT_Q8_0 || dtype == SKL_DT_Q4_0; }
/* Bytes of n elements of dtype (Q8_0: 1 each without scales; Q4_0: n / 2,
 * n even).  The scales of a quantized [rows, cols]: 2 * rows * cols / 32. */
uint64_t skl_dtype_bytes(int dtype, uint64_t n);
/* Alignment a tensor of dtype needs to be used in place (its element's, or the word's). */
size_t skl_dtype_align(int dtype);
/* The name of any dtype above ("F32", "Q4_0", "I64"); the safetensors spelling for file dtypes. */
const char *skl_dtype_str(int dtype);
/* The safetensors dtype named s ("F32", "F16", "BF16", "I8", "I32", "I64"), -1 if not one of ours. */
int skl_dtype_from_st(const char *s);

/* Half -> float, exact (F. Giesen's method): shift the exponent/mantissa into
 * place and rebias; inf/nan get the rest of the exponent; zero and subnormals
 * are renormalised by one float subtraction.  Inline: the generic GEMV
 * kernels convert every weight with it. */
static inline float skl_f16_to_f32(uint16_t h) {
    const uint32_t magic_bits = 113u << 23; /* 2^-14 */
    uint32_t o = (uint32_t)(h & 0x7fff) << 13, exp = o & 0x0f800000u;
    float f, magic;
    o += (uint32_t)(127 - 15) << 23;
    if (exp == 0x0f800000u) {
        o += (uint32_t)(128 - 16) << 23; /* inf / nan */
    } else if (exp == 0) {
        o += 1u << 23;
        memcpy(&f, &o, 4);
        memcpy(&magic, &magic_bits, 4);
        f -= magic;
        memcpy(&o, &f, 4);
    }
    o |= (uint32_t)(h & 0x8000) << 16;
    memcpy(&f, &o, 4);
    return f;
}

static inline float skl_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t skl_f32_to_f16(float f);   /* round to nearest even; overflow to inf */
uint16_t skl_f32_to_bf16(float f);  /* round to nearest even */
/* Element i of an array of dtype F32, F16 or BF16 as float. */
float skl_elem(int dtype, const void *base, size_t i);
/* Element i (row-major) of a quantized [rows, cols] tensor (cols a multiple
 * of 32, so its scale is scale[i / 32]): q[i] times the scale, exact. */
float skl_qelem(int dtype, const void *q, const uint16_t *scale, size_t i);
/* The integer q of element i of a quantized tensor ([-128, 127] or [-8, 7]). */
static inline int skl_q_at(int dtype, const void *q, size_t i) {
    if (dtype == SKL_DT_Q8_0) return ((const int8_t *)q)[i];
    uint8_t b = ((const uint8_t *)q)[i / 2]; /* little-endian words: byte k holds elements 2k, 2k + 1 */
    return (int)((i & 1) ? b >> 4 : b & 15) - 8;
}

#endif
