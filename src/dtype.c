/* dtype.c - the weight dtypes (F32, F16, BF16): sizes, names, scalar conversions.
 * The vector kernels that read them are in kernels.c. */
#include "dtype.h"

size_t skl_dtype_size(int dtype) { return dtype == SKL_DT_F32 ? 4 : 2; }

const char *skl_dtype_name(int dtype) {
    switch (dtype) {
    case SKL_DT_F32: return "F32";
    case SKL_DT_F16: return "F16";
    default: return "BF16";
    }
}

int skl_dtype_parse(const char *s) {
    if (!strcmp(s, "F32")) return SKL_DT_F32;
    if (!strcmp(s, "F16")) return SKL_DT_F16;
    if (!strcmp(s, "BF16")) return SKL_DT_BF16;
    return -1;
}

/* Round-to-nearest-even float -> half, with overflow to inf and subnormals. */
uint16_t skl_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or nan (keep a quiet nan) */
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000u) {                                  /* below 2^-14: subnormal half or zero */
        if (ax < 0x33000000u) return (uint16_t)sign;         /* below 2^-25: rounds to zero */
        uint32_t e = ax >> 23, man = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24: value = man * 2^(e-150), half unit 2^-24 */
        uint32_t q = man >> shift, rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax + 0xfff + ((ax >> 13) & 1); /* RNE at bit 13 */
    return (uint16_t)(sign | (((r >> 13) - (112u << 10)) & 0x7fff));
}

uint16_t skl_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

float skl_elem(int dtype, const void *base, size_t i) {
    if (dtype == SKL_DT_F32) return ((const float *)base)[i];
    uint16_t h;
    memcpy(&h, (const uint8_t *)base + 2 * i, 2);
    return dtype == SKL_DT_F16 ? skl_f16_to_f32(h) : skl_bf16_to_f32(h);
}
