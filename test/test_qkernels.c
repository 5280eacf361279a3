/* test_qkernels.c - the group-quantized GEMV and widening (src/qkernels.c).
 *
 * Every implementation this CPU runs (forced one at a time) against float64
 * computations made here from the layout of qkernels.h (the weights decoded
 * by this file, not by the library): odd shapes and row ranges, every int8
 * and nibble value, F16 scales from subnormal to 65504, results bitwise
 * independent of the row split over threads sharing one prepared input, and
 * skl_dequant_rows bitwise exact. */
#include "tests.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define U32 0x1.0p-24 /* unit roundoff of fp32 */

/* A quantized matrix as qkernels.h lays it out. */
typedef struct qmat {
    int qt;
    int32_t rows, cols;
    void *q;         /* Q8_0: int8 [rows, cols]; Q4_0: uint32 [rows, cols / 8] */
    uint16_t *scale; /* F16 [rows, cols / 32] */
} qmat;

/* Weight (r, c)'s integer q, decoded from the header's definition (words for Q4_0). */
static int qval(const qmat *m, int32_t r, int32_t c) {
    if (m->qt == SKL_QT_Q8_0) return ((const int8_t *)m->q)[(size_t)r * m->cols + c];
    uint32_t word = ((const uint32_t *)m->q)[(size_t)r * (m->cols / 8) + c / 8];
    return (int)((word >> (4 * (c % 8))) & 15u) - 8;
}
static void qset(qmat *m, int32_t r, int32_t c, int v) {
    if (m->qt == SKL_QT_Q8_0) {
        ((int8_t *)m->q)[(size_t)r * m->cols + c] = (int8_t)v;
        return;
    }
    uint32_t *word = &((uint32_t *)m->q)[(size_t)r * (m->cols / 8) + c / 8];
    unsigned sh = 4 * (unsigned)(c % 8);
    *word = (*word & ~(15u << sh)) | ((uint32_t)(v + 8) << sh);
}
static double wval(const qmat *m, int32_t r, int32_t c) {
    return qval(m, r, c) * test_half_value(m->scale[(size_t)r * (m->cols / 32) + c / 32]);
}

/* How the integers and the scales are drawn. */
enum { Q_RANDOM, Q_CYCLE, Q_EXTREME };            /* uniform; every value in every row; rows all min / all max */
enum { S_NORMAL, S_SUBNORMAL, S_LARGE, S_MIXED }; /* |s| in [2^-5, 2); subnormal or 0; [32768, 65504]; any finite */

static uint16_t draw_scale(int how) {
    uint16_t sign = test_urand() < 0 ? 0x8000 : 0, man = (uint16_t)((test_urand() + 1.0) * 512.0) & 0x3ff;
    int e = how == S_NORMAL      ? 10 + (int)((test_urand() + 1.0) * 3.5) /* 10..16 */
            : how == S_SUBNORMAL ? 0
            : how == S_LARGE     ? 30
                                 : (int)((test_urand() + 1.0) * 15.5); /* 0..30 */
    return (uint16_t)(sign | (uint16_t)(e << 10) | man);
}

static qmat make_qmat(int qt, int32_t rows, int32_t cols, int qhow, int show) {
    int lo = qt == SKL_QT_Q8_0 ? -128 : -8, n = qt == SKL_QT_Q8_0 ? 256 : 16;
    size_t qbytes = (size_t)rows * cols / (qt == SKL_QT_Q8_0 ? 1 : 2); /* exactly, for ASan */
    qmat m = {qt, rows, cols, calloc(qbytes, 1), malloc((size_t)rows * (cols / 32) * sizeof(uint16_t))};
    ck_assert(m.q && m.scale);
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < cols; c++) {
            int v = qhow == Q_RANDOM  ? lo + (int)((test_urand() + 1.0) * 0.5 * n)
                    : qhow == Q_CYCLE ? lo + (int)(((size_t)r * 7 + (size_t)c) % (size_t)n)
                                      : (r % 2 ? lo + n - 1 : lo);
            qset(&m, r, c, v);
        }
    for (size_t i = 0; i < (size_t)rows * (cols / 32); i++) m.scale[i] = draw_scale(show);
    return m;
}
static void free_qmat(qmat *m) {
    free(m->q);
    free(m->scale);
}

/* x[cols] in [-1, 1), with group 1 all zero (a zero activation scale) and one
 * value of group 2 at 1000 (a group whose other values round to few levels). */
static float *make_x(int32_t cols) {
    float *x = malloc((size_t)cols * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (int32_t c = 0; c < cols; c++) x[c] = (float)test_urand();
    if (cols >= 64) memset(x + 32, 0, 32 * sizeof *x);
    if (cols >= 96) x[64 + 5] = 1000.0f;
    return x;
}

static void *prepared(int qt, const float *x, int32_t cols) {
    void *qx = aligned_alloc(64, (skl_qx_size(cols) + 63) / 64 * 64);
    ck_assert_ptr_nonnull(qx);
    skl_qx_prepare(qt, x, cols, qx);
    return qx;
}

/* The activations as an int8 implementation must round them (qkernels.h):
 * per group of 32, d = amax / 127 and xq = x * (127 / amax) rounded to the
 * nearest integer, ties to even, all in fp32; d = 0 and xq = 0 for a zero
 * group.  xq[cols], d[cols / 32]. */
static void round_x(const float *x, int32_t cols, int *xq, double *d) {
    for (int32_t g = 0; g < cols / 32; g++) {
        float amax = 0.0f;
        for (int k = 0; k < 32; k++) amax = fmaxf(amax, fabsf(x[g * 32 + k]));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[g] = amax / 127.0f;
        for (int k = 0; k < 32; k++) xq[g * 32 + k] = (int)nearbyintf(x[g * 32 + k] * id);
    }
}

/* Checks y[r0, r1) of implementation `impl` against float64, row by row.
 *
 * Exact product: ref = sum_c w[r][c] x[c] with w decoded here.  An fp32
 * implementation (xbits 32) is within the fp32 dot-product bound
 * (cols + 4) u sum_c |w x| (u = 2^-24; at most cols products and additions
 * plus the scale's multiply-add lie on any path of the sum).
 *
 * An int8 implementation multiplies x's rounding xq d instead of x.  With
 * id = fl(127 / amax), d = fl(amax / 127) (relative errors <= u each) and
 * |x id| <= 127 (1 + u): |fl(x id) - x id| <= 127 u, |xq - fl(x id)| <= 1/2
 * and |x / d - x id| <= 127 (3 u), so |xq - x / d| <= 1/2 + 508 u < 1/2 + 2^-15
 * and e = x - d xq has |e| <= d (1/2 + 2^-15) <= (amax / 127)(1 + 2u)(1/2 + 2^-15).
 * Hence, over the groups g of the row,
 *     |exact(w, xq d) - exact(w, x)| <= Q = sum_g |s_g| sum_{c in g} |q_c| (amax_g / 127)(1 + 2u)(1/2 + 2^-15),
 * and a group's integer dot product is exact, so the rest is fp32 rounding
 * of terms whose magnitudes sum to at most sum |w| |xq d| <= sum |w x| + Q:
 *     |y - ref| <= Q + (cols + 4) u (sum |w x| + Q).
 * That bound is loose (every rounding of x taken at its worst), so int8
 * implementations are also checked against float64 of the rounded x itself
 * (round_x, from the rule above) within the fp32 term alone:
 *     |y - sum_c w xq d| <= (cols + 4) u sum_c |w xq d|. */
static void check_rows(const qmat *m, const float *x, const float *y, int32_t r0, int32_t r1, int impl,
                       const char *what) {
    int32_t cols = m->cols;
    int *xq = malloc((size_t)cols * sizeof *xq);
    double *d = malloc((size_t)(cols / 32) * sizeof *d);
    ck_assert(xq && d);
    round_x(x, cols, xq, d);
    bool int8 = skl_qkernels_xbits(impl) == 8;
    for (int32_t r = r0; r < r1; r++) {
        double ref = 0.0, mag = 0.0, Q = 0.0, refq = 0.0, magq = 0.0;
        for (int32_t c = 0; c < cols; c++) {
            double w = wval(m, r, c), xr = xq[c] * d[c / 32];
            ref += w * x[c];
            mag += fabs(w * x[c]);
            refq += w * xr;
            magq += fabs(w * xr);
            Q += fabs(w) * d[c / 32] * (1.0 + 2 * U32) * (0.5 + 0x1.0p-15);
        }
        double acc = (cols + 4) * U32, tol = int8 ? Q + acc * (mag + Q) : acc * mag;
        ck_assert_msg(fabs(y[r] - ref) <= tol, "%s %s row %d: %.9g vs %.9g (tol %.3g)", skl_qkernels_name(impl), what,
                      r, y[r], ref, tol);
        if (int8)
            ck_assert_msg(fabs(y[r] - refq) <= acc * magq, "%s %s row %d: %.9g vs %.9g of the rounded x (tol %.3g)",
                          skl_qkernels_name(impl), what, r, y[r], refq, acc * magq);
    }
    free(xq);
    free(d);
}

/* Force implementation _i; false (the test passes as skipped) when this CPU lacks it. */
static bool use_impl(int i) {
    if (!skl_qkernels_supported(i)) return false;
    ck_assert_int_eq(skl_qkernels_force(i), 0);
    ck_assert_int_eq(skl_qkernels_active(), i);
    return true;
}

static const char *qt_name(int qt) { return qt == SKL_QT_Q8_0 ? "Q8_0" : "Q4_0"; }

/* One row a case: the type and how its integers and scales are drawn. */
static const struct {
    int qt, qhow, show;
} cases[] = {
    {SKL_QT_Q8_0, Q_RANDOM, S_NORMAL},    {SKL_QT_Q8_0, Q_CYCLE, S_NORMAL},   {SKL_QT_Q8_0, Q_EXTREME, S_NORMAL},
    {SKL_QT_Q8_0, Q_RANDOM, S_SUBNORMAL}, {SKL_QT_Q8_0, Q_CYCLE, S_LARGE},    {SKL_QT_Q8_0, Q_EXTREME, S_LARGE},
    {SKL_QT_Q8_0, Q_RANDOM, S_MIXED},     {SKL_QT_Q4_0, Q_RANDOM, S_NORMAL},  {SKL_QT_Q4_0, Q_CYCLE, S_NORMAL},
    {SKL_QT_Q4_0, Q_EXTREME, S_NORMAL},   {SKL_QT_Q4_0, Q_RANDOM, S_SUBNORMAL}, {SKL_QT_Q4_0, Q_CYCLE, S_LARGE},
    {SKL_QT_Q4_0, Q_EXTREME, S_LARGE},    {SKL_QT_Q4_0, Q_RANDOM, S_MIXED},
};
static const int32_t rows_list[] = {1, 3, 4, 5, 8, 9, 17, 33};
static const int32_t cols_list[] = {32, 64, 96, 160, 544, 4128};

/* _i: implementation.  Every case on every shape, rows [0, rows) and [rows / 3 + 1, rows). */
START_TEST(test_qgemv_vs_f64) {
    if (!use_impl(_i)) return;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        for (size_t ri = 0; ri < sizeof rows_list / sizeof *rows_list; ri++)
            for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
                int32_t rows = rows_list[ri], cols = cols_list[ci];
                qmat m = make_qmat(cases[k].qt, rows, cols, cases[k].qhow, cases[k].show);
                float *x = make_x(cols), *y = malloc((size_t)(rows + 2) * sizeof *y);
                ck_assert_ptr_nonnull(y);
                void *qx = prepared(m.qt, x, cols);
                char what[96];
                for (int32_t r0 = 0; r0 < rows; r0 += rows / 3 + 1) {
                    for (int32_t r = 0; r < rows + 2; r++) y[r] = -7.0f; /* sentinels */
                    skl_gemv_q(m.qt, m.q, m.scale, cols, qx, y + 1, r0, rows);
                    ck_assert(y[r0] == -7.0f && y[rows + 1] == -7.0f);
                    snprintf(what, sizeof what, "%s case %zu rows %d cols %d from %d", qt_name(m.qt), k, rows, cols, r0);
                    check_rows(&m, x, y + 1, r0, rows, _i, what);
                }
                free(qx);
                free(x);
                free(y);
                free_qmat(&m);
            }
    skl_qkernels_force(-1);
}
END_TEST

/* Rows of one GEMV split over threads that share one prepared input. */
typedef struct split_arg {
    const qmat *m;
    const void *qx;
    float *y;
    int32_t r0, r1;
} split_arg;
static void *split_part(void *p) {
    split_arg *a = p;
    skl_gemv_q(a->m->qt, a->m->q, a->m->scale, a->m->cols, a->qx, a->y, a->r0, a->r1);
    return NULL;
}

/* _i: implementation.  One call over all rows against 3 threads on cuts at
 * odd rows, and against one call per row: bitwise the same. */
START_TEST(test_qgemv_split) {
    if (!use_impl(_i)) return;
    static const int32_t cuts[][2] = {{1, 2}, {5, 38}, {13, 14}, {31, 66}};
    for (int qt = 0; qt < SKL_QT_COUNT; qt++)
        for (int32_t cols = 96; cols <= 4128; cols += 4032) {
            int32_t rows = 67;
            qmat m = make_qmat(qt, rows, cols, Q_RANDOM, S_MIXED);
            float *x = make_x(cols), *y = malloc((size_t)rows * sizeof *y), *ys = malloc((size_t)rows * sizeof *ys);
            ck_assert(y && ys);
            void *qx = prepared(qt, x, cols);
            skl_gemv_q(qt, m.q, m.scale, cols, qx, y, 0, rows);
            for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
                int32_t b[4] = {0, cuts[k][0], cuts[k][1], rows};
                split_arg a[3];
                pthread_t th[3];
                memset(ys, 0, (size_t)rows * sizeof *ys);
                for (int t = 0; t < 3; t++) {
                    a[t] = (split_arg){&m, qx, ys, b[t], b[t + 1]};
                    ck_assert_int_eq(pthread_create(&th[t], NULL, split_part, &a[t]), 0);
                }
                for (int t = 0; t < 3; t++) pthread_join(th[t], NULL);
                ck_assert_msg(memcmp(y, ys, (size_t)rows * sizeof *y) == 0, "%s %s cols %d: cut at %d, %d differs",
                              skl_qkernels_name(_i), qt_name(qt), cols, b[1], b[2]);
            }
            memset(ys, 0, (size_t)rows * sizeof *ys);
            for (int32_t r = 0; r < rows; r++) skl_gemv_q(qt, m.q, m.scale, cols, qx, ys, r, r + 1);
            ck_assert_msg(memcmp(y, ys, (size_t)rows * sizeof *y) == 0, "%s %s cols %d: row by row differs",
                          skl_qkernels_name(_i), qt_name(qt), cols);
            free(qx);
            free(x);
            free(y);
            free(ys);
            free_qmat(&m);
        }
    skl_qkernels_force(-1);
}
END_TEST

/* _i: implementation.  skl_dequant_rows bitwise: each value the float64
 * product q * scale rounded to fp32 (exact, being at most 19 bits), rows
 * [r0, r1) not from 0, nothing written past the tile. */
START_TEST(test_dequant_exact) {
    if (!use_impl(_i)) return;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
            int32_t rows = 9, cols = cols_list[ci], r0 = 2, r1 = 9;
            qmat m = make_qmat(cases[k].qt, rows, cols, cases[k].qhow, cases[k].show);
            size_t n = (size_t)(r1 - r0) * cols;
            float *dst = malloc((n + 1) * sizeof *dst); /* [r1 - r0, cols] + a sentinel */
            ck_assert_ptr_nonnull(dst);
            dst[n] = -7.0f;
            skl_dequant_rows(m.qt, m.q, m.scale, cols, r0, r1, dst);
            ck_assert(dst[n] == -7.0f);
            for (int32_t r = r0; r < r1; r++)
                for (int32_t c = 0; c < cols; c++) {
                    float want = (float)wval(&m, r, c), got = dst[(size_t)(r - r0) * cols + c];
                    ck_assert_msg(memcmp(&want, &got, sizeof got) == 0, "%s %s case %zu cols %d (%d, %d): %a vs %a",
                                  skl_qkernels_name(_i), qt_name(m.qt), k, cols, r, c, got, want);
                }
            free(dst);
            free_qmat(&m);
        }
    skl_qkernels_force(-1);
}
END_TEST

/* Whether implementation i belongs to kernel variant id (named "<variant>-..."). */
static bool of_variant(int i, int id) {
    const char *name = skl_qkernels_name(i), *kern = skl_kernels_name(id);
    return strncmp(name, kern, strlen(kern)) == 0 && name[strlen(kern)] == '-';
}

/* skl_kernels_force switches the quantized kernels: to the first supported
 * implementation of its variant, or of the best variant below it that has one;
 * skl_qkernels_force refuses what it cannot run. */
START_TEST(test_qkernels_follow_variant) {
    ck_assert_int_eq(skl_qkernels_force(skl_qkernels_count()), -1);
    ck_assert_int_eq(skl_qkernels_force(-7 - skl_qkernels_count()), 0); /* any negative: back to the default */
    ck_assert_ptr_null(skl_qkernels_name(skl_qkernels_count()));
    for (int id = 0; id < SKL_KERN_COUNT; id++) {
        if (!skl_kernels_supported(id)) continue;
        ck_assert_int_eq(skl_kernels_force(id), 0);
        int want = -1;
        for (int k = id; k >= 0 && want < 0; k--)
            for (int i = 0; i < skl_qkernels_count() && want < 0; i++)
                if (of_variant(i, k) && skl_qkernels_supported(i)) want = i;
        ck_assert_msg(skl_qkernels_active() == want, "variant %s: quantized kernels %s, not %s", skl_kernels_name(id),
                      skl_qkernels_name(skl_qkernels_active()), skl_qkernels_name(want));
        ck_assert(skl_qkernels_xbits(want) == 8 || skl_qkernels_xbits(want) == 32);
    }
    skl_kernels_force(-1);
    for (int i = 0; i < skl_qkernels_count(); i++)
        if (!skl_qkernels_supported(i)) ck_assert_int_eq(skl_qkernels_force(i), -1);
    skl_qkernels_force(-1);
}
END_TEST

Suite *qkernels_suite(void) {
    const test_def tests[] = {
        {"select", test_qkernels_follow_variant, 0, 0},
        {"impls", test_qgemv_vs_f64, skl_qkernels_count(), TEST_TIMEOUT * 2},
        {"impls", test_qgemv_split, skl_qkernels_count(), 0},
        {"impls", test_dequant_exact, skl_qkernels_count(), 0},
    };
    return test_suite("qkernels", tests, TEST_COUNT(tests));
}
