/* qkernels.c - GEMV and widening for the group-quantized weight types Q8_0
 * and Q4_0 (layouts in qkernels.h), dispatched as kernels.c's are.
 *
 * Two ways to compute a row's dot product, each an "implementation" in the
 * table at the end (tests and benchmarks can force any one; the calls use the
 * preferred one of the variant kernels.c has active):
 *   "f32"   x stays fp32; the integer weights are widened to fp32 in
 *           registers, each group's partial sum multiplied by its scale:
 *           the exact semantics of qkernels.h up to fp32 rounding.
 *   "int8"  x is rounded once per GEMV (skl_qx_prepare) to int8 per group
 *           of 32 with one fp32 scale d = amax / 127 (llama.cpp's Q8_0
 *           activations); a group's dot product is then exact in integers
 *           and one fp32 multiply-add by scale_w * d adds it to the row.
 * A row's summation order depends only on cols and the implementation, never
 * on the rows computed with it in one pass or on the thread computing it.
 *
 * Prepared input qx (skl_qx_size(cols) bytes, 64-byte aligned), G = cols / 32:
 *   f32:  float xf[cols]: x, in the order the implementation reads it
 *   int8: int8 xq[cols] (same remark), then at QX_D(cols) float d[G] (x's
 *         group scales), then at QX_S(cols) int32 sum[G] (the sum of each
 *         group's xq: Q4's stored nibbles are q + 8, so a group's dot product
 *         of nibbles and xq is the wanted one plus 8 sum). */
#include "qkernels.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SKL_X86 1
#include <immintrin.h>
#else
#define SKL_X86 0
#endif

#define QG SKL_QGROUP
#define QX_ALIGN(n) (((size_t)(n) + 63) & ~(size_t)63)
#define QX_D(cols) QX_ALIGN(cols)                                         /* offset of d[G] */
#define QX_S(cols) (QX_D(cols) + QX_ALIGN((size_t)(cols) / QG * sizeof(float))) /* offset of sum[G] */
#define QX_I8_BYTES(cols) (QX_S(cols) + QX_ALIGN((size_t)(cols) / QG * sizeof(int32_t)))
#define QX_F32_BYTES(cols) QX_ALIGN((size_t)(cols) * sizeof(float))

size_t skl_qx_size(int32_t cols) {
    size_t a = QX_I8_BYTES(cols), b = QX_F32_BYTES(cols);
    return a > b ? a : b;
}

/* Bytes of one row of q: Q8_0 one per weight, Q4_0 one per two. */
static inline size_t qrow_bytes(int qt, int32_t cols) { return qt == SKL_QT_Q8_0 ? (size_t)cols : (size_t)cols / 2; }

/* ------------------------------------------------------------------ generic */

/* The int8 rounding of one group of x (every implementation's): d = amax / 127,
 * xq = nearest integer to x * (127 / amax), ties to even (the vector variants'
 * cvtps2dq in its default mode); an all-zero group gets d = 0, xq = 0.
 * Returns d; xq[32], sum: the group's sum of xq. */
static float quantize_group(const float *x, int8_t *xq, int32_t *sum) {
    float amax = 0.0f;
    for (int k = 0; k < QG; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int32_t s = 0;
    for (int k = 0; k < QG; k++) s += xq[k] = (int8_t)nearbyintf(x[k] * id);
    *sum = s;
    return amax / 127.0f;
}

static void prepare_int8_generic(int qt, const float *x, int32_t cols, void *qx) {
    int8_t *xq = qx;                                        /* [cols] */
    float *d = (float *)((char *)qx + QX_D(cols));          /* [cols / 32] */
    int32_t *sum = (int32_t *)((char *)qx + QX_S(cols));    /* [cols / 32] */
    for (int32_t g = 0; g < cols / QG; g++) d[g] = quantize_group(x + g * QG, xq + g * QG, &sum[g]);
}

static void prepare_f32_generic(int qt, const float *x, int32_t cols, void *qx) {
    memcpy(qx, x, (size_t)cols * sizeof(float));
}

/* Element k of group g of row w (int8 [cols], or Q4's bytes [cols / 2]) as its integer q. */
#define Q8_AT(w, c) ((int32_t)((const int8_t *)(w))[c])
#define Q4_AT(w, c) ((int32_t)((((const uint8_t *)(w))[(c) / 2] >> (4 * ((c) & 1))) & 15) - 8)

/* One row per iteration, group by group: the group's dot product (fp32 or
 * integer), times its scale(s), added to the row's sum. */
#define QGEMV_GENERIC(NAME, AT, QT)                                                                              \
    static void gemv_##NAME##_f32_generic(const void *q, const uint16_t *scale, int32_t cols, const void *qx,   \
                                          float *y, int32_t r0, int32_t r1) {                                    \
        const float *x = qx;                                                                                     \
        int32_t G = cols / QG;                                                                                   \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const char *w = (const char *)q + (size_t)r * qrow_bytes(QT, cols);                                  \
            float s = 0.0f;                                                                                      \
            for (int32_t g = 0; g < G; g++) {                                                                    \
                float p = 0.0f;                                                                                  \
                for (int32_t c = g * QG; c < (g + 1) * QG; c++) p += (float)AT(w, c) * x[c];                     \
                s += skl_f16_to_f32(scale[(size_t)r * G + g]) * p;                                               \
            }                                                                                                    \
            y[r] = s;                                                                                            \
        }                                                                                                        \
    }                                                                                                            \
    static void gemv_##NAME##_int8_generic(const void *q, const uint16_t *scale, int32_t cols, const void *qx,  \
                                           float *y, int32_t r0, int32_t r1) {                                   \
        const int8_t *xq = qx;                                                                                   \
        const float *d = (const float *)((const char *)qx + QX_D(cols));                                         \
        int32_t G = cols / QG;                                                                                   \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const char *w = (const char *)q + (size_t)r * qrow_bytes(QT, cols);                                  \
            float s = 0.0f;                                                                                      \
            for (int32_t g = 0; g < G; g++) {                                                                    \
                int32_t p = 0;                                                                                   \
                for (int32_t c = g * QG; c < (g + 1) * QG; c++) p += AT(w, c) * xq[c];                           \
                s += skl_f16_to_f32(scale[(size_t)r * G + g]) * d[g] * (float)p;                                 \
            }                                                                                                    \
            y[r] = s;                                                                                            \
        }                                                                                                        \
    }                                                                                                            \
    static void dequant_##NAME##_generic(const void *q, const uint16_t *scale, int32_t cols, int32_t r0,        \
                                         int32_t r1, float *dst) {                                               \
        int32_t G = cols / QG;                                                                                   \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const char *w = (const char *)q + (size_t)r * qrow_bytes(QT, cols);                                  \
            float *o = dst + (size_t)(r - r0) * (size_t)cols; /* [cols] */                                      \
            for (int32_t c = 0; c < cols; c++)                                                                   \
                o[c] = (float)AT(w, c) * skl_f16_to_f32(scale[(size_t)r * G + c / QG]);                          \
        }                                                                                                        \
    }

QGEMV_GENERIC(q8, Q8_AT, SKL_QT_Q8_0)
QGEMV_GENERIC(q4, Q4_AT, SKL_QT_Q4_0)

/* ---------------------------------------------------------------- dispatch */

typedef void (*qgemv_fn)(const void *q, const uint16_t *scale, int32_t cols, const void *qx, float *y, int32_t r0,
                         int32_t r1);
typedef void (*dequant_fn)(const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1, float *dst);

typedef struct qimpl {
    const char *name;
    int kern;               /* the kernels.c variant (SKL_KERN_*) it belongs to */
    int xbits;              /* 32: fp32 x; 8: int8 x per group */
    int (*supported)(void); /* CPU features beyond the variant's; NULL: none */
    void (*prepare)(int qt, const float *x, int32_t cols, void *qx);
    qgemv_fn gemv[SKL_QT_COUNT];
    dequant_fn dequant[SKL_QT_COUNT];
} qimpl;

/* Within a variant, the first supported row is its default. */
static const qimpl impls[] = {
    {"generic-f32", SKL_KERN_GENERIC, 32, NULL, prepare_f32_generic, {gemv_q8_f32_generic, gemv_q4_f32_generic},
     {dequant_q8_generic, dequant_q4_generic}},
    {"generic-int8", SKL_KERN_GENERIC, 8, NULL, prepare_int8_generic, {gemv_q8_int8_generic, gemv_q4_int8_generic},
     {dequant_q8_generic, dequant_q4_generic}},
};
enum { N_IMPLS = sizeof impls / sizeof impls[0] };

static atomic_int forced = -1; /* index into impls, or -1 */

int skl_qkernels_count(void) { return N_IMPLS; }
const char *skl_qkernels_name(int i) { return i >= 0 && i < N_IMPLS ? impls[i].name : NULL; }
int skl_qkernels_supported(int i) {
    return i >= 0 && i < N_IMPLS && skl_kernels_supported(impls[i].kern) && (!impls[i].supported || impls[i].supported());
}
int skl_qkernels_xbits(int i) { return i >= 0 && i < N_IMPLS ? impls[i].xbits : 0; }

int skl_qkernels_force(int i) {
    if (i >= 0 && !skl_qkernels_supported(i)) return -1;
    atomic_store(&forced, i < 0 ? -1 : i);
    return 0;
}

/* The forced implementation, else the first supported one of the active variant
 * (or of the best variant below it, for a CPU whose variant lacks every one:
 * AVX-512F without BW, say); found once per variant. */
static atomic_int dflt[SKL_KERN_COUNT]; /* 1 + index; 0: not looked up yet */

int skl_qkernels_active(void) {
    int f = atomic_load_explicit(&forced, memory_order_relaxed);
    if (f >= 0) return f;
    int kern = skl_kernels_active(), d = atomic_load_explicit(&dflt[kern], memory_order_relaxed);
    if (d > 0) return d - 1;
    for (int k = kern; k >= 0 && d == 0; k--)
        for (int i = 0; i < N_IMPLS && d == 0; i++)
            if (impls[i].kern == k && skl_qkernels_supported(i)) d = 1 + i;
    atomic_store_explicit(&dflt[kern], d, memory_order_relaxed); /* racing lookups store the same */
    return d - 1;
}

static inline const qimpl *Q(void) { return &impls[skl_qkernels_active()]; }

void skl_qx_prepare(int qt, const float *x, int32_t cols, void *qx) { Q()->prepare(qt, x, cols, qx); }

void skl_gemv_q(int qt, const void *q, const uint16_t *scale, int32_t cols, const void *qx, float *y, int32_t r0,
                int32_t r1) {
    if (r0 < r1) Q()->gemv[qt](q, scale, cols, qx, y, r0, r1);
}

void skl_dequant_rows(int qt, const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1,
                      float *dst) {
    if (r0 < r1) Q()->dequant[qt](q, scale, cols, r0, r1, dst);
}
