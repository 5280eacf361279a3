/* dtype.c - the weight dtypes (F32, F16, BF16; the quantized Q8_0 and Q4_0;
 * the integer dtypes of their files): sizes, names, scalar conversions.
 * The vector kernels that read them are in kernels.c and qkernels.c. */
#include "dtype.h"

#include <strings.h>

size_t skl_dtype_size(int dtype) {
    switch (dtype) {
    case SKL_DT_F32: case SKL_DT_I32: return 4;
    case SKL_DT_F16: case SKL_DT_BF16: return 2;
    case SKL_DT_I64: return 8;
    default: return 1; /* I8, Q8_0; Q4_0 has half a byte: skl_dtype_bytes */
    }
}

uint64_t skl_dtype_bytes(int dtype, uint64_t n) { return dtype == SKL_DT_Q4_0 ? n / 2 : n * skl_dtype_size(dtype); }

size_t skl_dtype_align(int dtype) { return dtype == SKL_DT_Q4_0 ? 4 : skl_dtype_size(dtype); }

const char *skl_dtype_str(int dtype) {
    switch (dtype) {
    case SKL_DT_F32: return "F32";
    case SKL_DT_F16: return "F16";
    case SKL_DT_BF16: return "BF16";
    case SKL_DTYPE_SAME: return "SAME";
    case SKL_DT_Q8_0: return "Q8_0";
    case SKL_DT_Q4_0: return "Q4_0";
    case SKL_DT_I8: return "I8";
    case SKL_DT_I32: return "I32";
    case SKL_DT_I64: return "I64";
    default: return NULL;
    }
}

const char *skl_dtype_name(skl_dtype dtype) {
    return (int)dtype >= SKL_DTYPE_F32 && (int)dtype <= SKL_DTYPE_Q4_0 ? skl_dtype_str((int)dtype) : NULL;
}

int skl_dtype_parse(const char *name, skl_dtype *out) {
    if (!name || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_dtype_parse: NULL argument");
    for (int d = SKL_DTYPE_F32; d <= SKL_DTYPE_Q4_0; d++)
        if (!strcasecmp(name, skl_dtype_str(d))) {
            *out = (skl_dtype)d;
            return SKL_OK;
        }
    return skl_fail(SKL_ERR_INVALID_ARG, "unknown dtype '%s' (expected f32, f16, bf16, same, q8_0 or q4_0)", name);
}

int skl_dtype_from_st(const char *s) {
    static const int st[] = {SKL_DT_F32, SKL_DT_F16, SKL_DT_BF16, SKL_DT_I8, SKL_DT_I32, SKL_DT_I64};
    for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
        if (!strcmp(s, skl_dtype_str(st[i]))) return st[i];
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

float skl_qelem(int dtype, const void *q, const uint16_t *scale, size_t i) {
    return (float)skl_q_at(dtype, q, i) * skl_f16_to_f32(scale[i / SKL_DT_QGROUP]);
}
