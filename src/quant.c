/* quant.c - quantizing weights to Q8_0 and Q4_0, as llama.cpp's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref choose them, in float64:
 *
 *   each group g of 32 consecutive inputs x of a row
 *   Q8_0: d = max|x| / 127
 *   Q4_0: d = m / -8, m the x of largest magnitude (the first of equals),
 *         so that m itself is q = -8 exactly and the group uses all 16 levels
 *         (d is negative when m is positive: the sign of a scale is free)
 *   s = d rounded to float32, then to F16 (nearest even): the stored scale
 *   q = round(x / s) (half away from zero), clamped to [-127, 127] / [-8, 7];
 *       q = 0 for the whole group when s is 0 (all zero, or d below F16's
 *       smallest subnormal)
 *
 * q is computed from the stored s, not from d as llama.cpp does, so each
 * weight is the nearest of the grid it is stored on; quantizing q * s again
 * gives the same q and s (the rounding is idempotent: the merge relies on it
 * for its residuals).  The layouts are qkernels.h's: Q8_0 int8 [rows, cols];
 * Q4_0 the nibble q + 8, element c of a row in byte c / 2 of the row (low
 * nibble for even c), which is compressed-tensors' pack_to_int32 order of
 * eight nibbles in a little-endian int32 word. */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The scale of one group of 32 (d before rounding); -1 if an x is not finite. */
static int group_scale(int type, const double *x, double *d) {
    double amax = 0.0, m = 0.0;
    for (int i = 0; i < SKL_DT_QGROUP; i++) {
        if (!isfinite(x[i])) return -1;
        if (fabs(x[i]) > amax) {
            amax = fabs(x[i]);
            m = x[i];
        }
    }
    *d = type == SKL_DT_Q8_0 ? amax / 127.0 : m / -8.0;
    return 0;
}

int skl_quant_rows(int type, const double *x, int64_t rows, int32_t cols, void *q, uint16_t *scale, const char *what,
                   int64_t row0) {
    int qmin = type == SKL_DT_Q8_0 ? -127 : -8, qmax = type == SKL_DT_Q8_0 ? 127 : 7;
    int8_t *q8 = q;
    uint8_t *q4 = q;
    size_t groups = (size_t)cols / SKL_DT_QGROUP;
    for (int64_t r = 0; r < rows; r++)
        for (size_t g = 0; g < groups; g++) {
            size_t at = (size_t)r * (size_t)cols + g * SKL_DT_QGROUP;
            const double *xg = x + at;
            double d;
            if (group_scale(type, xg, &d))
                return skl_fail(SKL_ERR_UNSUPPORTED, "%s: row %lld has a weight that is not finite; it cannot be quantized",
                                what, (long long)(row0 + r));
            uint16_t h = skl_f32_to_f16((float)d);
            if ((h & 0x7c00) == 0x7c00)
                return skl_fail(SKL_ERR_UNSUPPORTED,
                                "%s: row %lld: scale %g (weights up to %g) does not fit F16, the scales' storage", what,
                                (long long)(row0 + r), d, fabs(d) * (type == SKL_DT_Q8_0 ? 127 : 8));
            double s = skl_f16_to_f32(h);
            scale[(size_t)r * groups + g] = h;
            for (int i = 0; i < SKL_DT_QGROUP; i++) {
                double v = s != 0.0 ? round(xg[i] / s) : 0.0;
                int qi = v < qmin ? qmin : v > qmax ? qmax : (int)v;
                if (type == SKL_DT_Q8_0) q8[at + (size_t)i] = (int8_t)qi;
                else if (i & 1) q4[(at + (size_t)i) / 2] |= (uint8_t)((qi + 8) << 4);
                else q4[(at + (size_t)i) / 2] = (uint8_t)(qi + 8);
            }
        }
    return SKL_OK;
}

int skl_quant_round(int type, double *x, int64_t rows, int32_t cols, const char *what) {
    /* one row at a time through a small q and scale buffer */
    size_t n = (size_t)cols, groups = n / SKL_DT_QGROUP;
    void *q = malloc(n ? n : 1);
    uint16_t *s = malloc((groups ? groups : 1) * sizeof *s);
    int rc = q && s ? SKL_OK : skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    for (int64_t r = 0; r < rows && !rc; r++) {
        double *xr = x + (size_t)r * n;
        if ((rc = skl_quant_rows(type, xr, 1, cols, q, s, what, r))) break;
        for (size_t i = 0; i < n; i++) xr[i] = skl_qelem(type, q, s, i);
    }
    free(q);
    free(s);
    return rc;
}

void skl_tensor_rows_f64(const skl_tensor *t, int64_t r0, int64_t r1, double *dst) {
    size_t base = (size_t)r0 * (size_t)t->cols, n = (size_t)(r1 - r0) * (size_t)t->cols;
    for (size_t i = 0; i < n; i++) dst[i] = skl_tensor_at(t, base + i);
}

int skl_tensor_alloc_quant(skl_tensor *t, int type, int32_t rows, int32_t cols) {
    skl_tensor_clear(t);
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    skl_buf *b = skl_buf_new((size_t)skl_dtype_bytes(type, n) + 1), *s = skl_buf_new((size_t)(2 * (n / SKL_DT_QGROUP)) + 2);
    if (!b || !s) {
        skl_buf_release(b);
        skl_buf_release(s);
        return skl_fail(SKL_ERR_NOMEM, "out of memory for a quantized [%d, %d] matrix", rows, cols);
    }
    *t = (skl_tensor){.data = b->base, .dtype = type, .rows = rows, .cols = cols, .owner = b,
                      .scale = s->base, .scale_owner = s};
    return SKL_OK;
}

#define QUANT_CHUNK ((size_t)1 << 19) /* float64 values widened at a time (4 MiB) */

int skl_tensor_quantize(const skl_tensor *src, int type, skl_tensor *out, const char *what) {
    int rc = skl_tensor_alloc_quant(out, type, src->rows, src->cols);
    if (rc) return rc;
    int64_t chunk = (int64_t)(QUANT_CHUNK / (size_t)src->cols);
    if (chunk < 1) chunk = 1;
    double *x = malloc((size_t)chunk * (size_t)src->cols * sizeof *x); /* [chunk, cols] */
    if (!x) rc = skl_fail(SKL_ERR_NOMEM, "%s: out of memory", what);
    size_t groups = (size_t)src->cols / SKL_DT_QGROUP;
    for (int64_t r0 = 0; r0 < src->rows && !rc; r0 += chunk) {
        int64_t r1 = r0 + chunk < src->rows ? r0 + chunk : src->rows;
        skl_tensor_rows_f64(src, r0, r1, x);
        uint8_t *q = (uint8_t *)out->owner->base + skl_dtype_bytes(type, (uint64_t)r0 * (uint64_t)src->cols);
        rc = skl_quant_rows(type, x, r1 - r0, src->cols, q, (uint16_t *)out->scale_owner->base + (size_t)r0 * groups,
                            what, r0);
    }
    free(x);
    if (rc) skl_tensor_clear(out);
    return rc;
}

/* The short names of the projections: skl_linear_names after the dot. */
static const char *short_name(int lin) {
    const char *s = strchr(skl_linear_names[lin], '.');
    return s ? s + 1 : skl_linear_names[lin];
}

/* keep names (layer, lin): its module name, or the projection's (short or full) name. */
static bool names(const char *k, int32_t layer, int lin) {
    char mod[96];
    skl_linear_module(layer, lin, mod, sizeof mod);
    if (!strcmp(k, mod)) return true;
    return lin != SKL_LIN_HEAD && (!strcmp(k, short_name(lin)) || !strcmp(k, skl_linear_names[lin]));
}

bool skl_quant_kept(const char *const *keep, int32_t n, int32_t layer, int lin) {
    for (int32_t i = 0; i < n; i++)
        if (keep[i] && names(keep[i], layer, lin)) return true;
    return false;
}

int skl_quant_check_keep(const char *const *keep, int32_t n, int32_t L, const char *fn) {
    if (n < 0 || (n > 0 && !keep)) return skl_fail(SKL_ERR_INVALID_ARG, "%s: keep is NULL with n_keep %d", fn, n);
    for (int32_t i = 0; i < n; i++) {
        if (!keep[i]) return skl_fail(SKL_ERR_INVALID_ARG, "%s: keep[%d] is NULL", fn, i);
        const char *k = keep[i];
        bool found = !strcmp(k, "lm_head");
        int l = -1, end = 0; /* a module's layer, from its name */
        if (sscanf(k, "model.layers.%d.%n", &l, &end) != 1 || end == 0) l = -1;
        for (int lin = 0; lin < SKL_LIN_COUNT && !found; lin++)
            found = !strcmp(k, short_name(lin)) || !strcmp(k, skl_linear_names[lin]) || (l >= 0 && l < L && names(k, l, lin));
        if (!found)
            return skl_fail(SKL_ERR_INVALID_ARG,
                            "%s: keep[%d] \"%s\" names no linear layer of this %d-layer model (expected lm_head, a "
                            "projection such as down_proj, or a module such as model.layers.0.mlp.down_proj)",
                            fn, i, keep[i], L);
    }
    return SKL_OK;
}
