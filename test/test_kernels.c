/* test_kernels.c - the decode kernels and the thread pool.
 *
 * Every kernel variant this CPU supports (forced one at a time through the
 * internal selector) is compared with a float64 computation on odd sizes
 * (cols not a multiple of the vector width, rows not a multiple of the 4-row
 * blocking, a leading dimension larger than cols), for F32, F16 and BF16
 * weights, within the fp32 error bound of a dot product.  Conversions are
 * checked exhaustively against formulas written here.  The whole model's
 * logits are checked per variant against the float64 reference, the paired
 * (gate/up) GEMV against two single ones (bitwise), and logits
 * for different thread counts against each other (bitwise). */
#include "tests.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Independent decoders (not the library's). */
static double bf16_value(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
static double value_of(int dtype, const void *w, size_t i) {
    if (dtype == SKL_DT_F32) return ((const float *)w)[i];
    uint16_t h = ((const uint16_t *)w)[i];
    return dtype == SKL_DT_F16 ? test_half_value(h) : bf16_value(h);
}

static void *random_matrix(int dtype, size_t n) {
    void *w = malloc(n * (dtype == SKL_DT_F32 ? 4 : 2));
    ck_assert_ptr_nonnull(w);
    for (size_t i = 0; i < n; i++) {
        float f = (float)test_urand();
        if (dtype == SKL_DT_F32) ((float *)w)[i] = f;
        else ((uint16_t *)w)[i] = dtype == SKL_DT_F16 ? skl_f32_to_f16(f) : skl_f32_to_bf16(f);
    }
    return w;
}

static const int dtypes[3] = {SKL_DT_F32, SKL_DT_F16, SKL_DT_BF16};

/* Force kernel variant id (a loop test's _i); false, and the test passes as
 * skipped, when this CPU lacks it (test_variants_selectable checks which it has). */
static bool use_variant(int id) {
    if (!skl_kernels_supported(id)) return false;
    ck_assert_int_eq(skl_kernels_force(id), 0);
    return true;
}

/* _i: variant id. */
START_TEST(test_gemv_vs_f64) {
    if (!use_variant(_i)) return;
    static const int32_t rows_list[] = {1, 3, 4, 5, 7, 8, 13, 17, 37};
    static const int32_t cols_list[] = {1, 7, 8, 15, 16, 17, 31, 33, 47, 64, 100, 129, 515};
    for (int di = 0; di < 3; di++)
        for (size_t ri = 0; ri < sizeof rows_list / sizeof *rows_list; ri++)
            for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
                int dt = dtypes[di];
                int32_t rows = rows_list[ri], cols = cols_list[ci];
                size_t ld = (size_t)cols + 3;
                void *W = random_matrix(dt, (size_t)rows * ld);
                float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)(rows + 2) * sizeof *y),
                      *y1 = malloc((size_t)rows * sizeof *y1);
                ck_assert(x && y && y1);
                for (int32_t c = 0; c < cols; c++) x[c] = (float)test_urand();
                for (int32_t r = 0; r < rows + 2; r++) y[r] = -7.0f; /* sentinels */
                skl_gemv(dt, W, ld, cols, x, y + 1, 0, rows);
                ck_assert(y[0] == -7.0f && y[rows + 1] == -7.0f);
                for (int32_t r = 0; r < rows; r++) {
                    double ref = 0.0, mag = 0.0;
                    for (int32_t c = 0; c < cols; c++) {
                        double t = value_of(dt, W, (size_t)r * ld + (size_t)c) * x[c];
                        ref += t;
                        mag += fabs(t);
                    }
                    /* |fl(dot) - dot| <= gamma_n sum|w x|, gamma_n ~ n u; u = 2^-24 */
                    double tol = ((double)cols + 2.0) * 0x1.0p-24 * mag * 1.01 + 1e-30;
                    ck_assert_msg(fabs(y[r + 1] - ref) <= tol, "%s %s rows %d cols %d row %d: %.9g vs %.9g (tol %.3g)",
                                  skl_kernels_name(_i), skl_dtype_name(dt), rows, cols, r, y[r + 1], ref, tol);
                }
                /* row by row (other blocking, other row ranges): bitwise the same */
                for (int32_t r = 0; r < rows; r++) skl_gemv(dt, W, ld, cols, x, y1, r, r + 1);
                ck_assert_msg(memcmp(y1, y + 1, (size_t)rows * sizeof *y1) == 0,
                              "%s %s rows %d cols %d: row-by-row result differs", skl_kernels_name(_i),
                              skl_dtype_name(dt), rows, cols);
                /* paired (gate/up): each of the two outputs bitwise the single GEMV's, here with W and a
                 * second matrix, over the whole range and over a range starting at row 1 */
                void *W2 = random_matrix(dt, (size_t)rows * ld);
                float *p1 = malloc((size_t)(rows + 2) * sizeof *p1), *p2 = malloc((size_t)(rows + 2) * sizeof *p2),
                      *y2 = malloc((size_t)rows * sizeof *y2);
                ck_assert(W2 && p1 && p2 && y2);
                skl_gemv(dt, W2, ld, cols, x, y2, 0, rows);
                for (int32_t from = 0; from < 2 && from < rows; from++) {
                    for (int32_t r = 0; r < rows + 2; r++) p1[r] = p2[r] = -7.0f;
                    skl_gemv2(dt, W, W2, ld, cols, x, p1 + 1, p2 + 1, from, rows);
                    ck_assert(p1[from] == -7.0f && p1[rows + 1] == -7.0f && p2[from] == -7.0f && p2[rows + 1] == -7.0f);
                    ck_assert_msg(memcmp(p1 + 1 + from, y + 1 + from, (size_t)(rows - from) * sizeof *p1) == 0 &&
                                      memcmp(p2 + 1 + from, y2 + from, (size_t)(rows - from) * sizeof *p2) == 0,
                                  "%s %s rows %d cols %d from %d: paired GEMV differs from two single ones",
                                  skl_kernels_name(_i), skl_dtype_name(dt), rows, cols, from);
                }
                free(W2);
                free(p1);
                free(p2);
                free(y2);
                free(W);
                free(x);
                free(y);
                free(y1);
            }
    skl_kernels_force(-1);
}
END_TEST

START_TEST(test_axpy_rows_vs_f64) {
    if (!use_variant(_i)) return;
    static const int32_t rows_list[] = {1, 2, 9, 33};
    static const int32_t cols_list[] = {1, 5, 8, 12, 16, 24, 40, 64, 80, 100, 128, 200};
    for (size_t ri = 0; ri < 4; ri++)
        for (size_t ci = 0; ci < sizeof cols_list / sizeof *cols_list; ci++) {
            int32_t rows = rows_list[ri], cols = cols_list[ci];
            size_t ld = (size_t)cols + 5;
            float *V = random_matrix(SKL_DT_F32, (size_t)rows * ld), *p = malloc((size_t)rows * sizeof *p),
                  *out = malloc((size_t)(cols + 1) * sizeof *out);
            ck_assert(p && out);
            for (int32_t j = 0; j < rows; j++) p[j] = (float)test_urand();
            out[cols] = -7.0f;
            skl_axpy_rows(V, ld, rows, cols, p, out);
            ck_assert(out[cols] == -7.0f);
            for (int32_t c = 0; c < cols; c++) {
                double ref = 0.0, mag = 0.0;
                for (int32_t j = 0; j < rows; j++) {
                    ref += (double)p[j] * V[(size_t)j * ld + c];
                    mag += fabs((double)p[j] * V[(size_t)j * ld + c]);
                }
                double tol = ((double)rows + 2.0) * 0x1.0p-24 * mag * 1.01 + 1e-30;
                ck_assert_msg(fabs(out[c] - ref) <= tol, "%s rows %d cols %d col %d: %.9g vs %.9g",
                              skl_kernels_name(_i), rows, cols, c, out[c], ref);
            }
            free(V);
            free(p);
            free(out);
        }
    skl_kernels_force(-1);
}
END_TEST

/* skl_softmax against exp in float64: every length's tail path, scores spread over a wide range
 * (some far below the max, where the vector exp's clamp at -87 shows), and nan propagation. */
START_TEST(test_softmax_vs_f64) {
    if (!use_variant(_i)) return;
    static const int32_t lens[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 301};
    static const float scales[] = {1.0f, 0.125f, 30.0f};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++)
        for (size_t si = 0; si < sizeof scales / sizeof *scales; si++) {
            int32_t len = lens[li];
            float scale = scales[si], s[301];
            double ref[301], mx = -INFINITY, sum = 0.0;
            float ref_in[301];
            for (int32_t j = 0; j < len; j++) ref_in[j] = s[j] = (float)(4.0 * test_urand());
            for (int32_t j = 0; j < len; j++) mx = fmax(mx, (double)scale * s[j]);
            for (int32_t j = 0; j < len; j++) sum += (ref[j] = exp((double)scale * s[j] - mx));
            skl_softmax(s, len, scale);
            double total = 0.0;
            for (int32_t j = 0; j < len; j++) {
                double r = ref[j] / sum;
                total += s[j];
                /* a few ulp of exp, the float sum and the division, plus the rounding of the float
                 * argument scale * s - max (relative 2^-24 of each term, times the argument's size
                 * in exp); absolute below ~1e-37 */
                double arg_err = 0x1.0p-23 * (fabs((double)scale * ref_in[j]) + fabs(mx));
                ck_assert_msg(fabs(s[j] - r) <= (2e-6 + arg_err) * r + 1e-37, "%s len %d scale %g j %d: %.9g vs %.9g",
                              skl_kernels_name(_i), len, scale, j, s[j], r);
            }
            ck_assert_msg(fabs(total - 1.0) < 1e-5, "%s len %d: weights sum to %.9g", skl_kernels_name(_i), len, total);
        }
    float n[20];
    for (int j = 0; j < 20; j++) n[j] = (float)j;
    n[17] = NAN;
    skl_softmax(n, 20, 1.0f);
    ck_assert_msg(isnan(n[17]) && isnan(n[0]), "%s: nan score does not give nan weights", skl_kernels_name(_i));
    skl_kernels_force(-1);
}
END_TEST

/* All 65536 halves and bfloat16s widen exactly, through every variant's vector path. */
START_TEST(test_widen_exhaustive) {
    if (!use_variant(_i)) return;
    uint16_t *h = malloc(65536 * sizeof *h);
    float *f = malloc(65536 * sizeof *f);
    ck_assert(h && f);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (int k = 1; k < 3; k++) {
        int dt = dtypes[k];
        skl_to_f32(dt, h, f, 65536);
        for (uint32_t i = 0; i < 65536; i++) {
            double want = dt == SKL_DT_F16 ? test_half_value(h[i]) : bf16_value(h[i]);
            if (isnan(want)) ck_assert_msg(isnan(f[i]), "%s 0x%04x: not NaN", skl_dtype_name(dt), i);
            else ck_assert_msg((double)f[i] == want && !signbit(f[i]) == !signbit(want), "%s 0x%04x: %.9g vs %.9g",
                               skl_dtype_name(dt), i, f[i], want);
        }
    }
    free(h);
    free(f);
    skl_kernels_force(-1);
}
END_TEST

/* Narrowing rounds to nearest, ties to even: every representable value maps
 * to itself, every midpoint to the even neighbour, just above it upward. */
START_TEST(test_narrow_rounding) {
    for (int k = 1; k < 3; k++) {
        int dt = dtypes[k];
        for (uint32_t i = 0; i < 0x7c00 || (dt == SKL_DT_BF16 && i < 0x7f80); i++) { /* positive finite */
            uint16_t a = (uint16_t)i, b = (uint16_t)(i + 1);
            double va = dt == SKL_DT_F16 ? test_half_value(a) : bf16_value(a);
            double vb = dt == SKL_DT_F16 ? test_half_value(b) : bf16_value(b);
            uint16_t (*narrow)(float) = dt == SKL_DT_F16 ? skl_f32_to_f16 : skl_f32_to_bf16;
            ck_assert_uint_eq(narrow((float)va), a);
            ck_assert_uint_eq(narrow((float)-va), (uint16_t)(a | 0x8000));
            if (isinf(vb)) continue;
            float mid = (float)((va + vb) / 2); /* exact in float */
            ck_assert_msg(narrow(mid) == ((a & 1) ? b : a), "%s midpoint of 0x%04x: got 0x%04x", skl_dtype_name(dt),
                          a, narrow(mid));
            ck_assert_uint_eq(narrow(nextafterf(mid, INFINITY)), b);
            ck_assert_uint_eq(narrow(nextafterf(mid, 0.0f)), a);
        }
    }
    /* overflow and NaN */
    ck_assert_uint_eq(skl_f32_to_f16(65520.0f), 0x7c00);
    ck_assert_uint_eq(skl_f32_to_f16(65519.99f), 0x7bff);
    ck_assert_uint_eq(skl_f32_to_f16(-1e10f), 0xfc00);
    ck_assert(isnan(test_half_value(skl_f32_to_f16(NAN))));
    ck_assert(isnan(bf16_value(skl_f32_to_bf16(NAN))));
    ck_assert_uint_eq(skl_f32_to_bf16(INFINITY), 0x7f80);
}
END_TEST

START_TEST(test_variants_selectable) {
    ck_assert_int_eq(skl_kernels_supported(SKL_KERN_GENERIC), 1);
    ck_assert_int_eq(skl_kernels_force(SKL_KERN_COUNT), -1);
    const char *best = skl_cpu_kernels();
    ck_assert_ptr_nonnull(best);
    int found = 0;
    for (int id = 0; id < SKL_KERN_COUNT; id++)
        if (skl_kernels_name(id) && !strcmp(best, skl_kernels_name(id))) {
            found = 1;
            ck_assert_int_eq(skl_kernels_supported(id), 1);
            for (int j = id + 1; j < SKL_KERN_COUNT; j++) ck_assert_int_eq(skl_kernels_supported(j), 0);
        }
    ck_assert_msg(found, "skl_cpu_kernels() = '%s' is not a variant name", best);
    ck_assert_int_eq(skl_kernels_force(SKL_KERN_GENERIC), 0);
    ck_assert_str_eq(skl_cpu_kernels(), "generic");
    skl_kernels_force(-1);
    ck_assert_str_eq(skl_cpu_kernels(), best);
}
END_TEST

/* ---------------------------------------------------------- whole models */

/* _i: variant.  Every model (F32, F16, BF16), prefill and decode, vs float64. */
START_TEST(test_models_per_variant) {
    if (!use_variant(_i)) return;
    json_t *man = test_manifest();
    for (int k = 0; k < test_n_models(); k++) {
        const json_t *e = test_entry(man, "models", k);
        skl_model *m = test_load(e);
        char what[128];
        snprintf(what, sizeof what, "%s weights, %s kernels", test_str(e, "dtype"), skl_kernels_name(_i));
        for (int decode = 0; decode < 2; decode++)
            test_logits_vs_ref(m, e, (test_eval){.decode = decode, .n_threads = 2}, TEST_TOL, what);
        skl_model_free(m);
    }
    json_decref(man);
    skl_kernels_force(-1);
}
END_TEST

/* Decode logits are bitwise identical for 1..4 threads; prefill logits are
 * bitwise identical between two runs with the same thread count. */
START_TEST(test_thread_determinism) {
    test_model t;
    test_open(&t, _i);
    size_t bytes = (size_t)t.n * t.hp.vocab_size * sizeof(float);
    float *d1 = test_logits(t.model, t.tokens, t.n, (test_eval){.decode = true, .n_threads = 1});
    for (int k = 2; k <= 4; k++) {
        float *dk = test_logits(t.model, t.tokens, t.n, (test_eval){.decode = true, .n_threads = k});
        ck_assert_msg(memcmp(d1, dk, bytes) == 0, "%s: decode logits with %d threads differ from 1 thread", t.name, k);
        free(dk);
    }
    for (int k = 1; k <= 3; k++) {
        float *a = test_logits(t.model, t.tokens, t.n, (test_eval){.n_threads = k}),
              *b = test_logits(t.model, t.tokens, t.n, (test_eval){.n_threads = k});
        ck_assert_msg(memcmp(a, b, bytes) == 0, "%s: two prefills with %d threads differ", t.name, k);
        free(a);
        free(b);
    }
    free(d1);
    test_close(&t);
}
END_TEST

/* skl_model_decode_bytes from the file's header alone: all tensor bytes, the
 * embedding counted as one row (plus in full when it is also the tied head);
 * skl_model_weight_bytes: all tensor bytes, each tensor once. */
START_TEST(test_decode_bytes) {
    test_model t;
    test_open(&t, _i);
    json_t *h = test_st_header(t.entry);
    const char *key;
    json_t *val;
    uint64_t total = 0, embed = 0;
    json_object_foreach(h, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        const json_t *off = json_object_get(val, "data_offsets");
        uint64_t bytes = (uint64_t)(json_integer_value(json_array_get(off, 1)) - json_integer_value(json_array_get(off, 0)));
        if (!strcmp(key, "model.embed_tokens.weight")) embed = bytes;
        else total += bytes;
    }
    ck_assert_msg(skl_model_weight_bytes(t.model) == total + embed, "%s: weight bytes %llu, header gives %llu", t.name,
                  (unsigned long long)skl_model_weight_bytes(t.model), (unsigned long long)(total + embed));
    ck_assert_uint_eq(skl_model_weight_bytes(NULL), 0);
    total += embed / (uint64_t)t.hp.vocab_size + (t.hp.tie_word_embeddings ? embed : 0);
    ck_assert_msg(skl_model_decode_bytes(t.model) == total, "%s: decode bytes %llu, header gives %llu", t.name,
                  (unsigned long long)skl_model_decode_bytes(t.model), (unsigned long long)total);
    ck_assert_uint_eq(skl_model_decode_bytes(NULL), 0);
    json_decref(h);
    test_close(&t);
}
END_TEST

/* The pool runs every chunk exactly once and returns only when all are done,
 * many loops in a row, with spinning and sleeping hand-offs. */
typedef struct count_arg {
    atomic_int hits[64];
} count_arg;
static void count_chunk(void *arg, int64_t k) {
    count_arg *a = arg;
    atomic_fetch_add(&a->hits[k], 1);
}

START_TEST(test_pool) {
    for (int n = 1; n <= 4; n++) {
        skl_pool *p;
        ck_assert_int_eq(skl_pool_create(n, &p), SKL_OK);
        ck_assert_int_eq(skl_pool_size(p), n);
        count_arg a;
        for (int r = 0; r < 3000; r++) {
            int64_t chunks = 1 + r % 64;
            for (int k = 0; k < 64; k++) atomic_init(&a.hits[k], 0);
            skl_pool_set_spin(p, r % 3 != 0);
            skl_pool_for(p, chunks, count_chunk, &a);
            for (int k = 0; k < 64; k++)
                ck_assert_msg(atomic_load(&a.hits[k]) == (k < chunks), "%d threads, loop %d: chunk %d ran %d times", n,
                              r, k, atomic_load(&a.hits[k]));
        }
        skl_pool_free(p);
    }
}
END_TEST

Suite *kernels_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"variants", test_variants_selectable, 0, 0},
        {"variants", test_narrow_rounding, 0, 0},
        {"variants", test_gemv_vs_f64, SKL_KERN_COUNT, 0},
        {"variants", test_axpy_rows_vs_f64, SKL_KERN_COUNT, 0},
        {"variants", test_softmax_vs_f64, SKL_KERN_COUNT, 0},
        {"variants", test_widen_exhaustive, SKL_KERN_COUNT, 0},
        {"models", test_models_per_variant, SKL_KERN_COUNT, TEST_TIMEOUT * 3},
        {"models", test_thread_determinism, TEST_EACH_MODEL, TEST_TIMEOUT * 3},
        {"models", test_decode_bytes, TEST_EACH_MODEL, TEST_TIMEOUT * 3},
        {"pool", test_pool, 0, 0},
    };
    return test_suite("kernels", tests, TEST_COUNT(tests));
}
