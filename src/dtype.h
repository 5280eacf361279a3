/* dtype.h - the weight dtypes: sizes, names, scalar conversions (dtype.c).
 * A new weight type is added here and in kernels.c. */
#ifndef SKL_DTYPE_H
#define SKL_DTYPE_H

#include "error.h"

#include <string.h>

/* Equal to the public SKL_DTYPE_F32 / F16 / BF16. */
enum { SKL_DT_F32 = SKL_DTYPE_F32, SKL_DT_F16 = SKL_DTYPE_F16, SKL_DT_BF16 = SKL_DTYPE_BF16 };

/* Dtype element size, name ("F32", "F16", "BF16"). */
size_t skl_dtype_size(int dtype);
const char *skl_dtype_name(int dtype);
/* The dtype named s (safetensors spelling), -1 if not one of ours. */
int skl_dtype_parse(const char *s);

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
/* Element i of an array of dtype as float. */
float skl_elem(int dtype, const void *base, size_t i);

#endif
