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
 * The vector variants default to int8, measured (bench/qgemv_bench.c,
 * docs/performance.md) 2.0-3.1x faster for Q4_0 (whose f32 form is bound by
 * its arithmetic, about 14 G weights/s a core) and 1.0-1.4x for Q8_0; their
 * f32 forms stay as the exact alternative.  The generic variant defaults to
 * f32, the reference.
 * A row's summation order depends only on cols and the implementation, never
 * on the rows computed with it in one pass or on the thread computing it.
 *
 * Prepared input qx (skl_qx_size(cols) bytes, 64-byte aligned), G = cols / 32
 * groups, G4 and G16: G rounded up to a multiple of 4 and 16:
 *   f32:  float x[cols]: x; the vector variants' Q4_0 order is, per group,
 *         its 16 even elements then its 16 odd ones (low nibbles meet evens)
 *   int8: int8 xq[G4 * 32] at 0: x rounded, zero past cols; Q8_0 in x's
 *         order; Q4_0 (vector variants) in blocks of 4 groups, 128 bytes: the
 *         16 even elements of each of the 4 groups, then their 16 odd ones, so
 *         that the low nibbles of 64 weight bytes (4 groups) meet the first
 *         64 bytes; the generic variant keeps x's order;
 *         int32 corr[G4 * 8] at QX_CORR (Q4_0, vector variants): per 4
 *         bytes of xq (an integer lane of the dot products), minus the
 *         offset the unsigned nibbles q + 8 add against the lane's 4 even
 *         and 4 odd values, -8 sum xq;
 *         float d[G16] at QX_D: each group's scale, zero past G. */
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
#define QX_G4(cols) (((size_t)(cols) / QG + 3) / 4 * 4)
#define QX_G16(cols) (((size_t)(cols) / QG + 15) / 16 * 16)
#define QX_CORR(cols) QX_ALIGN(QX_G4(cols) * QG)                              /* offset of corr[G4 * 8] */
#define QX_D(cols) (QX_CORR(cols) + QX_ALIGN(QX_G4(cols) * 8 * sizeof(int32_t))) /* offset of d[G16] */
#define QX_I8_BYTES(cols) (QX_D(cols) + QX_ALIGN(QX_G16(cols) * sizeof(float)))
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
 * cvtps2dq in its default mode), all in fp32; an all-zero group gets d = 0,
 * xq = 0.  Returns d; xq[32]. */
static float quantize_group(const float *x, int8_t *xq) {
    float amax = 0.0f;
    for (int k = 0; k < QG; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int k = 0; k < QG; k++) xq[k] = (int8_t)nearbyintf(x[k] * id);
    return amax / 127.0f;
}

static void prepare_int8_generic(int qt, const float *x, int32_t cols, void *qx) {
    int8_t *xq = qx;                               /* [cols], x's order */
    float *d = (float *)((char *)qx + QX_D(cols)); /* [cols / 32] */
    for (int32_t g = 0; g < cols / QG; g++) d[g] = quantize_group(x + g * QG, xq + g * QG);
}

static void prepare_f32_generic(int qt, const float *x, int32_t cols, void *qx) {
    memcpy(qx, x, (size_t)cols * sizeof(float));
}

/* Element k of group g of row w (int8 [cols], or Q4's bytes [cols / 2]) as its integer q. */
#define Q8_AT(w, c) ((int32_t)((const int8_t *)(w))[c])
#define Q4_AT(w, c) ((int32_t)((((const uint8_t *)(w))[(c) / 2] >> (4 * ((c) & 1))) & 15) - 8)

/* One row per iteration, group by group: the group's dot product (fp32, or
 * exact in integers: PT), times its scale and XS(g) (1, or x's scale d[g]),
 * added to the row's sum.  XT: the prepared x's element type. */
#define QGEMV_GENERIC(NAME, AT, QT, HOW, XT, PT, XS)                                                             \
    static void gemv_##NAME##_##HOW##_generic(const void *q, const uint16_t *scale, int32_t cols, const void *qx, \
                                              float *y, int32_t r0, int32_t r1) {                                \
        const XT *x = qx;                                                                                        \
        const float *d = (const float *)((const char *)qx + QX_D(cols));                                         \
        int32_t G = cols / QG;                                                                                   \
        (void)d;                                                                                                 \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const char *w = (const char *)q + (size_t)r * qrow_bytes(QT, cols);                                  \
            float s = 0.0f;                                                                                      \
            for (int32_t g = 0; g < G; g++) {                                                                    \
                PT p = 0;                                                                                        \
                for (int32_t c = g * QG; c < (g + 1) * QG; c++) p += (PT)AT(w, c) * x[c];                        \
                s += skl_f16_to_f32(scale[(size_t)r * G + g]) * XS(g) * (float)p;                                \
            }                                                                                                    \
            y[r] = s;                                                                                            \
        }                                                                                                        \
    }
#define XS_ONE(g) 1.0f
#define XS_D(g) d[g]
QGEMV_GENERIC(q8, Q8_AT, SKL_QT_Q8_0, f32, float, float, XS_ONE)
QGEMV_GENERIC(q4, Q4_AT, SKL_QT_Q4_0, f32, float, float, XS_ONE)
QGEMV_GENERIC(q8, Q8_AT, SKL_QT_Q8_0, int8, int8_t, int32_t, XS_D)
QGEMV_GENERIC(q4, Q4_AT, SKL_QT_Q4_0, int8, int8_t, int32_t, XS_D)

static void dequant_generic(int qt, const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1,
                            float *dst) {
    int32_t G = cols / QG;
    for (int32_t r = r0; r < r1; r++) {
        const char *w = (const char *)q + (size_t)r * qrow_bytes(qt, cols);
        float *o = dst + (size_t)(r - r0) * cols; /* [cols] */
        for (int32_t c = 0; c < cols; c++)
            o[c] = (float)(qt == SKL_QT_Q8_0 ? Q8_AT(w, c) : Q4_AT(w, c)) * skl_f16_to_f32(scale[(size_t)r * G + c / QG]);
    }
}

/* ------------------------------------------------------------------- x86 */

#if SKL_X86
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define ALWAYS inline __attribute__((always_inline))

enum { QR_MAX = 8 }; /* most rows per pass */
/* Rows per pass (weight streams read in lockstep): 4.  8 measured 10-25 %
 * fewer weights/s than 4, relative to F32 skl_gemv in the same runs, for
 * Q4_0 and Q8_0 on both variants (2 threads, 14336 x 4096 and 2048 x 5632). */
#ifndef Q4_ROWS512
#define Q4_ROWS512 4
#endif
#ifndef Q8_ROWS512
#define Q8_ROWS512 4
#endif
#ifndef Q4_ROWS256
#define Q4_ROWS256 4
#endif
#ifndef Q8_ROWS256
#define Q8_ROWS256 4
#endif

/* Software prefetch distances (bytes ahead in each row's stream): 512 B into
 * L1 and 2 KiB into L2, as kernels.c's AVX-512 ones, for both variants.  For
 * AVX2 kernels.c's one level (1 KiB into L1) left Q8_0 at 0.64 and Q4_0 at
 * 0.44 of a fresh-buffer read on one core, two levels at 1.02 and 0.99 (AMD
 * EPYC Zen 4, avx2 forced, 14336 x 4096); 1 KiB + 2 KiB, 512 B + 4 KiB and
 * 256 B + 2 KiB for AVX-512 were within the noise of 512 B + 2 KiB.  A
 * distance is counted along each row's stream (PF_LEVEL), whole rows crossed
 * when a row is shorter: Q4_0 rows of 2048 columns are 1 KiB, and wrapping
 * only once sent a quarter of the L2 prefetches into the wrong row (one
 * core: 18-19 GB/s on 5632 x 2048 against 27-30 on 2048 x 5632; 24-28
 * after). */
#ifndef QPF512_L1
#define QPF512_L1 512
#endif
#ifndef QPF512_L2
#define QPF512_L2 2048
#endif
#ifndef QPF256_L1
#define QPF256_L1 512
#endif
#ifndef QPF256_L2
#define QPF256_L2 2048
#endif

/* The first lines of n rows at w (rowb bytes each) a chunk's first pass reads:
 * at a chunk's start no earlier step prefetched them. */
static void prefetch_rows(const char *w, size_t rowb, int n, size_t pf, size_t pf2) {
    size_t n1 = pf < rowb ? pf : rowb, n2 = pf2 < rowb ? pf2 : rowb;
    for (size_t off = 0; off < n1; off += 64)
        for (int i = 0; i < n; i++) _mm_prefetch(w + (size_t)i * rowb + off, _MM_HINT_T0);
    for (size_t off = n1; off < n2; off += 64)
        for (int i = 0; i < n; i++) _mm_prefetch(w + (size_t)i * rowb + off, _MM_HINT_T1);
}

/* A pass over rows r .. r + n - 1: w (row r's q bytes; rowb a row; next =
 * n rowb, the same row of the next pass), sc (row r's scales, G a row), and
 * the prepared x. */
typedef struct qpass {
    int32_t G;
    size_t rowb, next;
    size_t pfq[2], pfr[2]; /* prefetch distances (L1, L2; 0: none) as whole rows and the rest */
    const char *w;
    const uint16_t *sc;
    const int8_t *xq;
    const int32_t *corr;
    const float *d, *xf;
} qpass;

static ALWAYS qpass pass_start(int qt, const void *q, const uint16_t *scale, int32_t cols, const void *qx, int32_t r,
                               int n, size_t pf, size_t pf2) {
    qpass p;
    p.G = cols / QG;
    p.rowb = qrow_bytes(qt, cols);
    p.next = (size_t)n * p.rowb;
    p.pfq[0] = pf / p.rowb, p.pfr[0] = pf % p.rowb;
    p.pfq[1] = pf2 / p.rowb, p.pfr[1] = pf2 % p.rowb;
    p.w = (const char *)q + (size_t)r * p.rowb;
    p.sc = scale + (size_t)r * (size_t)p.G;
    p.xq = qx;
    p.corr = (const int32_t *)((const char *)qx + QX_CORR(cols));
    p.d = (const float *)((const char *)qx + QX_D(cols));
    p.xf = qx;
    return p;
}

/* A kernel from its superblock function NAME_sb(p, acc, g0, ng, n), which adds
 * groups g0 .. g0 + ng - 1 of the pass's n rows to acc[n] (called with ng =
 * SBG, a constant, for every whole superblock, then once for the rest):
 * NAME_pass computes rows r .. r + n - 1, gemv_NAME the rows [r0, r1) in passes of
 * R rows (one weight stream each, sharing the loads of x) and then one at a
 * time.  A row's order of summation is the same whatever n. */
#define QGEMV_FN(NAME, TARGET, QT, VEC, ZERO, HSUM, SBG, R, PF, PF2)                                              \
    TARGET static ALWAYS void NAME##_pass(const void *q, const uint16_t *scale, int32_t cols, const void *qx,     \
                                          float *y, int32_t r, const int n) {                                     \
        qpass p = pass_start(QT, q, scale, cols, qx, r, n, PF, PF2);                                              \
        VEC acc[QR_MAX];                                                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) acc[i] = ZERO;                                        \
        int32_t g0 = 0;                                                                                           \
        for (; g0 + SBG <= p.G; g0 += SBG) NAME##_sb(&p, acc, g0, SBG, n);                                        \
        if (g0 < p.G) NAME##_sb(&p, acc, g0, p.G - g0, n);                                                        \
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) y[r + i] = HSUM(acc[i]);                              \
    }                                                                                                             \
    TARGET static void gemv_##NAME(const void *q, const uint16_t *scale, int32_t cols, const void *qx, float *y,  \
                                   int32_t r0, int32_t r1) {                                                      \
        size_t rowb = qrow_bytes(QT, cols);                                                                       \
        int32_t r = r0;                                                                                           \
        prefetch_rows((const char *)q + (size_t)r0 * rowb, rowb, r1 - r0 < R ? r1 - r0 : R, PF, PF2);           \
        for (; r + R <= r1; r += R) NAME##_pass(q, scale, cols, qx, y, r, R);                                     \
        for (; r < r1; r++) NAME##_pass(q, scale, cols, qx, y, r, 1);                                             \
    }

/* Prefetches of a step at byte off of every row of the pass, dist bytes
 * ahead in each row's stream (the row, then the same row of the next passes,
 * next bytes apart: rows shorter than dist are crossed whole): into L1 (j =
 * 0) and, when its distance is not 0, L2 (j = 1). */
#define PF_LEVEL(p, off, n, j, HINT)                                                                             \
    do {                                                                                                         \
        size_t po_ = (size_t)(off) + (p)->pfr[j], k_ = (p)->pfq[j];                                             \
        if (po_ >= (p)->rowb) po_ -= (p)->rowb, k_++;                                                            \
        const char *a_ = (p)->w + k_ * (p)->next + po_;                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) _mm_prefetch(a_ + (size_t)i * (p)->rowb, HINT);      \
    } while (0)
#define PF_ROWS(p, off, n)                                                                                       \
    do {                                                                                                         \
        PF_LEVEL(p, off, n, 0, _MM_HINT_T0);                                                                     \
        if ((p)->pfq[1] | (p)->pfr[1]) PF_LEVEL(p, off, n, 1, _MM_HINT_T1);                                      \
    } while (0)

/* --- AVX-512: superblocks of 16 groups, whose 16 scales are one vcvtph2ps.
 * Integer lanes: a dot-product instruction sums 4 byte products per int32
 * lane (vpdpbusd with VNNI; vpmaddubsw + vpmaddwd without); a 64-byte weight
 * step holds 2 (Q8_0) or 4 (Q4_0) groups, each 8 or 4 lanes; the lanes are
 * widened to fp32 and multiplied by their group's scale_w * d, permuted into
 * place from the superblock's 16. */

/* Q4_0 step: t = corr + nibbles . xq, lo (even) and hi (odd) nibbles. */
#define Q4DOT_VNNI(cv, lo, hi, xe, xo) _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(cv, lo, xe), hi, xo)
#define Q4DOT_BW(cv, lo, hi, xe, xo)                                                                             \
    _mm512_add_epi32(cv, _mm512_madd_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(lo, xe), _mm512_maddubs_epi16(hi, xo)), \
                                           _mm512_set1_epi16(1)))
/* Q8_0 step: |w| . (xq signed as w); |w| <= 128 keeps a vpmaddubsw pair <= 32512.  (With VNNI,
 * (w + 128) . xq + corr is 2 instructions instead of 4, and the fastest on a matrix in cache,
 * but measured 5-15 % slower than this from memory: bench/qgemv_bench.c, docs/performance.md.) */
#define SIGNED_XQ(v, xv) _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(v), _mm512_setzero_si512(), xv)
#define Q8DOT_VNNI(v, xv) _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(v), SIGNED_XQ(v, xv))
#define Q8DOT_BW(v, xv) _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_abs_epi8(v), SIGNED_XQ(v, xv)), _mm512_set1_epi16(1))

/* s[n]: the scales of groups g0 .. g0 + ng - 1 (ng <= 16) of the pass's rows,
 * times d when D, zero past ng; the next pass's are prefetched. */
#define SCALES512(p, s, g0, ng, n, D)                                                                            \
    __m512 s[QR_MAX];                                                                                            \
    _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {                                                        \
        const uint16_t *si = (p)->sc + (size_t)i * (p)->G + (g0);                                                \
        __mmask16 ms = (__mmask16)((ng) == 16 ? 0xffff : (1u << (ng)) - 1);                                      \
        s[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(ms, si));                                                \
        if (D) s[i] = _mm512_mul_ps(s[i], _mm512_loadu_ps((p)->d + (g0)));                                        \
        _mm_prefetch((const char *)(si + (p)->next / (p)->rowb * (size_t)(p)->G), _MM_HINT_T0);                  \
    }

#define INT8_512(SFX, TARGET, Q4DOT, Q8DOT)                                                                       \
    TARGET static ALWAYS void q4_##SFX##_sb(const qpass *p, __m512 *acc, int32_t g0, int32_t ng, const int n) {   \
        const __m512i m4 = _mm512_set1_epi8(0x0f);                                                               \
        const __m512i lane_g = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);                 \
        SCALES512(p, s, g0, ng, n, 1)                                                                            \
        for (int32_t b = 0; 4 * b < ng; b++) { /* 4 groups, 64 bytes a row */                                   \
            size_t off = (size_t)(g0 + 4 * b) * 16, blk = (size_t)g0 / 4 + (size_t)b;                            \
            __mmask64 mw = ng - 4 * b >= 4 ? ~(__mmask64)0 : ((__mmask64)1 << (16 * (ng - 4 * b))) - 1;          \
            __m512i xe = _mm512_load_si512(p->xq + blk * 128), xo = _mm512_load_si512(p->xq + blk * 128 + 64);   \
            __m512i cv = _mm512_load_si512(p->corr + blk * 16), idx = _mm512_add_epi32(lane_g, _mm512_set1_epi32(4 * b)); \
            PF_ROWS(p, off, n);                                                                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {                                                \
                __m512i v = _mm512_maskz_loadu_epi8(mw, p->w + (size_t)i * p->rowb + off);                       \
                __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);        \
                __m512i t = Q4DOT(cv, lo, hi, xe, xo);                                                           \
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_permutexvar_ps(idx, s[i]), acc[i]);       \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
    TARGET static ALWAYS void q8_##SFX##_sb(const qpass *p, __m512 *acc, int32_t g0, int32_t ng, const int n) {   \
        const __m512i lane_g = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);                 \
        SCALES512(p, s, g0, ng, n, 1)                                                                            \
        for (int32_t k = 0; 2 * k < ng; k++) { /* 2 groups, 64 bytes a row */                                   \
            size_t off = (size_t)(g0 + 2 * k) * 32;                                                              \
            __mmask64 mw = ng - 2 * k >= 2 ? ~(__mmask64)0 : ((__mmask64)1 << 32) - 1;                           \
            __m512i xv = _mm512_load_si512(p->xq + off);                                                         \
            __m512i idx = _mm512_add_epi32(lane_g, _mm512_set1_epi32(2 * k));                                    \
            PF_ROWS(p, off, n);                                                                                  \
            _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {                                                \
                __m512i t = Q8DOT(_mm512_maskz_loadu_epi8(mw, p->w + (size_t)i * p->rowb + off), xv);        \
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_permutexvar_ps(idx, s[i]), acc[i]);       \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
    QGEMV_FN(q4_##SFX, TARGET, SKL_QT_Q4_0, __m512, _mm512_setzero_ps(), _mm512_reduce_add_ps, 16, Q4_ROWS512, \
             QPF512_L1, QPF512_L2)                                                                               \
    QGEMV_FN(q8_##SFX, TARGET, SKL_QT_Q8_0, __m512, _mm512_setzero_ps(), _mm512_reduce_add_ps, 16, Q8_ROWS512, \
             QPF512_L1, QPF512_L2)

INT8_512(int8_vnni, T_VNNI, Q4DOT_VNNI, Q8DOT_VNNI)
INT8_512(int8_512, T_AVX512, Q4DOT_BW, Q8DOT_BW)

/* fp32 x against weights widened in registers: per group, 16 lanes of even
 * and 16 of odd elements (Q4_0, x de-interleaved to match) or 2 x 16 (Q8_0),
 * the group's partial sum times its scale. */
T_AVX512 static ALWAYS void q4_f32_512_sb(const qpass *p, __m512 *acc, int32_t g0, int32_t ng, const int n) {
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    SCALES512(p, s, g0, ng, n, 0)
    for (int32_t k = 0; k < ng; k++) {
        size_t off = (size_t)(g0 + k) * 16;
        const float *xg = p->xf + (size_t)(g0 + k) * 32;
        __m512 xe = _mm512_loadu_ps(xg), xo = _mm512_loadu_ps(xg + 16);
        __m512i idx = _mm512_set1_epi32(k);
        if (k % 4 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p->w + (size_t)i * p->rowb + off));
            __m128i lo = _mm_sub_epi8(_mm_and_si128(v, m4), eight);
            __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), eight);
            __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), xe);
            t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), xo, t);
            acc[i] = _mm512_fmadd_ps(t, _mm512_permutexvar_ps(idx, s[i]), acc[i]);
        }
    }
}

T_AVX512 static ALWAYS void q8_f32_512_sb(const qpass *p, __m512 *acc, int32_t g0, int32_t ng, const int n) {
    SCALES512(p, s, g0, ng, n, 0)
    for (int32_t k = 0; k < ng; k++) {
        size_t off = (size_t)(g0 + k) * 32;
        __m512 x0 = _mm512_loadu_ps(p->xf + off), x1 = _mm512_loadu_ps(p->xf + off + 16);
        __m512i idx = _mm512_set1_epi32(k);
        if (k % 2 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            const char *wi = p->w + (size_t)i * p->rowb + off;
            __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)wi))), x0);
            t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(wi + 16)))),
                                x1, t);
            acc[i] = _mm512_fmadd_ps(t, _mm512_permutexvar_ps(idx, s[i]), acc[i]);
        }
    }
}
QGEMV_FN(q4_f32_512, T_AVX512, SKL_QT_Q4_0, __m512, _mm512_setzero_ps(), _mm512_reduce_add_ps, 16, Q4_ROWS512,
         QPF512_L1, QPF512_L2)
QGEMV_FN(q8_f32_512, T_AVX512, SKL_QT_Q8_0, __m512, _mm512_setzero_ps(), _mm512_reduce_add_ps, 16, Q8_ROWS512,
         QPF512_L1, QPF512_L2)

/* --- AVX2: superblocks of 8 groups (one vcvtph2ps); vpmaddubsw + vpmaddwd
 * sum 4 byte products per int32 lane; a 32-byte step holds 2 (Q4_0) or 1
 * (Q8_0) groups.  The fp32-activation functions are intentional twins of the
 * AVX-512 ones at 8 lanes, one body per instruction set, as kernels.c's. */

T_AVX2 static ALWAYS float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* s[n]: as SCALES512, for ng <= 8. */
#define SCALES256(p, s, g0, ng, n, D)                                                                            \
    __m256 s[QR_MAX];                                                                                            \
    _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {                                                        \
        const uint16_t *si = (p)->sc + (size_t)i * (p)->G + (g0);                                                \
        __m128i h;                                                                                               \
        if ((ng) == 8) {                                                                                         \
            h = _mm_loadu_si128((const __m128i *)si);                                                            \
        } else {                                                                                                 \
            uint16_t t[8] = {0};                                                                                 \
            memcpy(t, si, (size_t)(ng) * sizeof *t);                                                             \
            h = _mm_loadu_si128((const __m128i *)t);                                                             \
        }                                                                                                        \
        s[i] = _mm256_cvtph_ps(h);                                                                               \
        if (D) s[i] = _mm256_mul_ps(s[i], _mm256_loadu_ps((p)->d + (g0)));                                        \
        _mm_prefetch((const char *)(si + (p)->next / (p)->rowb * (size_t)(p)->G), _MM_HINT_T0);                  \
    }

T_AVX2 static ALWAYS void q4_int8_256_sb(const qpass *p, __m256 *acc, int32_t g0, int32_t ng, const int n) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i lane_g = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0);
    SCALES256(p, s, g0, ng, n, 1)
    for (int32_t k = 0; 2 * k < ng; k++) { /* 2 groups, 32 bytes a row */
        size_t gp = (size_t)g0 + 2 * (size_t)k, off = gp * 16;
        const int8_t *xb = p->xq + gp / 4 * 128 + 32 * (gp % 4 / 2);
        __m256i xe = _mm256_load_si256((const __m256i *)xb), xo = _mm256_load_si256((const __m256i *)(xb + 64));
        __m256i cv = _mm256_load_si256((const __m256i *)(p->corr + gp / 4 * 16 + 8 * (gp % 4 / 2)));
        __m256i idx = _mm256_add_epi32(lane_g, _mm256_set1_epi32(2 * k));
        if (k % 2 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            const char *wi = p->w + (size_t)i * p->rowb + off;
            __m256i v = ng - 2 * k >= 2 ? _mm256_loadu_si256((const __m256i *)wi)
                                        : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)wi));
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            __m256i t = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xo));
            t = _mm256_add_epi32(cv, _mm256_madd_epi16(t, ones));
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_permutevar8x32_ps(s[i], idx), acc[i]);
        }
    }
}

T_AVX2 static ALWAYS void q8_int8_256_sb(const qpass *p, __m256 *acc, int32_t g0, int32_t ng, const int n) {
    const __m256i ones = _mm256_set1_epi16(1);
    SCALES256(p, s, g0, ng, n, 1)
    for (int32_t k = 0; k < ng; k++) { /* 1 group, 32 bytes a row */
        size_t off = (size_t)(g0 + k) * 32;
        __m256i xv = _mm256_load_si256((const __m256i *)(p->xq + off)), idx = _mm256_set1_epi32(k);
        if (k % 2 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(p->w + (size_t)i * p->rowb + off));
            __m256i t = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(xv, v)), ones);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_permutevar8x32_ps(s[i], idx), acc[i]);
        }
    }
}

T_AVX2 static ALWAYS void q4_f32_256_sb(const qpass *p, __m256 *acc, int32_t g0, int32_t ng, const int n) {
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    SCALES256(p, s, g0, ng, n, 0)
    for (int32_t k = 0; k < ng; k++) {
        size_t off = (size_t)(g0 + k) * 16;
        const float *xg = p->xf + (size_t)(g0 + k) * 32;
        __m256i idx = _mm256_set1_epi32(k);
        if (k % 4 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p->w + (size_t)i * p->rowb + off));
            __m128i e[2] = {_mm_sub_epi8(_mm_and_si128(v, m4), eight),
                            _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), eight)}; /* evens, odds */
            __m256 t = _mm256_setzero_ps();
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) t = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(j % 2 ? _mm_srli_si128(e[j / 2], 8) : e[j / 2])),
                _mm256_loadu_ps(xg + 8 * j), t);
            acc[i] = _mm256_fmadd_ps(t, _mm256_permutevar8x32_ps(s[i], idx), acc[i]);
        }
    }
}

T_AVX2 static ALWAYS void q8_f32_256_sb(const qpass *p, __m256 *acc, int32_t g0, int32_t ng, const int n) {
    SCALES256(p, s, g0, ng, n, 0)
    for (int32_t k = 0; k < ng; k++) {
        size_t off = (size_t)(g0 + k) * 32;
        __m256i idx = _mm256_set1_epi32(k);
        if (k % 2 == 0) PF_ROWS(p, off, n);
        _Pragma("GCC unroll 8") for (int i = 0; i < n; i++) {
            const char *wi = p->w + (size_t)i * p->rowb + off;
            __m256 t = _mm256_setzero_ps();
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++) t = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(wi + 8 * j)))),
                _mm256_loadu_ps(p->xf + off + 8 * j), t);
            acc[i] = _mm256_fmadd_ps(t, _mm256_permutevar8x32_ps(s[i], idx), acc[i]);
        }
    }
}
QGEMV_FN(q4_int8_256, T_AVX2, SKL_QT_Q4_0, __m256, _mm256_setzero_ps(), hsum256, 8, Q4_ROWS256, QPF256_L1, QPF256_L2)
QGEMV_FN(q8_int8_256, T_AVX2, SKL_QT_Q8_0, __m256, _mm256_setzero_ps(), hsum256, 8, Q8_ROWS256, QPF256_L1, QPF256_L2)
QGEMV_FN(q4_f32_256, T_AVX2, SKL_QT_Q4_0, __m256, _mm256_setzero_ps(), hsum256, 8, Q4_ROWS256, QPF256_L1, QPF256_L2)
QGEMV_FN(q8_f32_256, T_AVX2, SKL_QT_Q8_0, __m256, _mm256_setzero_ps(), hsum256, 8, Q8_ROWS256, QPF256_L1, QPF256_L2)

/* --- x prepared for the vector variants */

/* int8 (every vector int8 implementation): per group, the rounding of
 * quantize_group (fp32 multiply by 127 / amax, vcvtps2dq to nearest even),
 * packed to bytes in x's order, then stored as the layout wants, with Q4_0's
 * lane corrections. */
T_AVX2 static void prepare_int8_avx2(int qt, const float *x, int32_t cols, void *qx) {
    int32_t G = cols / QG;
    int8_t *xq = qx;                                                 /* [G4 * 32] */
    int32_t *corr = (int32_t *)((char *)qx + QX_CORR(cols));         /* [G4 * 8] */
    float *d = (float *)((char *)qx + QX_D(cols));                   /* [G16] */
    memset(xq + (size_t)G * QG, 0, (QX_G4(cols) - (size_t)G) * QG);
    memset(corr + (size_t)G * 8, 0, (QX_G4(cols) - (size_t)G) * 8 * sizeof *corr);
    memset(d + G, 0, (QX_G16(cols) - (size_t)G) * sizeof *d);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    /* per 128-bit half: its 8 even bytes, then its 8 odd ones */
    const __m256i deint = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10,
                                           12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    for (int32_t g = 0; g < G; g++) {
        const float *xg = x + (size_t)g * QG;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k] = _mm256_loadu_ps(xg + 8 * k)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        d[g] = amax / 127.0f;
        __m256i iv[4];
        for (int k = 0; k < 4; k++) iv[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
        __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(iv[0], iv[1]), _mm256_packs_epi32(iv[2], iv[3]));
        b = _mm256_permutevar8x32_epi32(b, order); /* the 32 bytes in x's order */
        if (qt == SKL_QT_Q8_0) {
            _mm256_store_si256((__m256i *)(xq + (size_t)g * QG), b);
        } else {
            /* [16 even | 16 odd] */
            __m256i eo = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(b, deint), 0xd8);
            int8_t *blk = xq + (size_t)g / 4 * 128 + 16 * (size_t)(g % 4);
            _mm_store_si128((__m128i *)blk, _mm256_castsi256_si128(eo));
            _mm_store_si128((__m128i *)(blk + 64), _mm256_extracti128_si256(eo, 1));
            __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, eo), ones16); /* 4 even sums | 4 odd */
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
            _mm_store_si128((__m128i *)(corr + (size_t)g / 4 * 16 + 4 * (size_t)(g % 4)),
                            _mm_mullo_epi32(s, _mm_set1_epi32(-8)));
        }
    }
}

/* fp32, the vector variants' order: Q4_0 groups de-interleaved. */
static void prepare_f32_deint(int qt, const float *x, int32_t cols, void *qx) {
    float *xf = qx; /* [cols] */
    if (qt == SKL_QT_Q8_0) {
        memcpy(xf, x, (size_t)cols * sizeof *xf);
        return;
    }
    for (int32_t c = 0; c < cols; c++) xf[c / QG * QG + (c % 2) * 16 + c % QG / 2] = x[c];
}

/* --- widening: per group, its 32 integers in x's order as bytes (SSE2,
 * so both variants inline it), widened and multiplied by the scale. */
static inline void group_bytes(int qt, const char *w, int32_t g, __m128i e[2]) {
    if (qt == SKL_QT_Q8_0) {
        e[0] = _mm_loadu_si128((const __m128i *)(w + g * QG));
        e[1] = _mm_loadu_si128((const __m128i *)(w + g * QG + 16));
        return;
    }
    const __m128i m4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    __m128i v = _mm_loadu_si128((const __m128i *)(w + g * 16));
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    e[0] = _mm_sub_epi8(_mm_unpacklo_epi8(lo, hi), eight);
    e[1] = _mm_sub_epi8(_mm_unpackhi_epi8(lo, hi), eight);
}

/* WIDEN(o, e, s): the 32 bytes e[2] times s, into o[32]. */
#define DEQUANT_FN(NAME, TARGET, VEC, SET1, WIDEN)                                                               \
    TARGET static void NAME(int qt, const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1, \
                            float *dst) {                                                                        \
        int32_t G = cols / QG;                                                                                   \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const char *w = (const char *)q + (size_t)r * qrow_bytes(qt, cols);                                  \
            float *o = dst + (size_t)(r - r0) * cols; /* [cols] */                                              \
            for (int32_t g = 0; g < G; g++) {                                                                    \
                VEC s = SET1(skl_f16_to_f32(scale[(size_t)r * G + g]));                                          \
                __m128i e[2];                                                                                    \
                group_bytes(qt, w, g, e);                                                                        \
                WIDEN(o + g * QG, e, s);                                                                         \
            }                                                                                                    \
        }                                                                                                        \
    }
#define WIDEN512(o, e, s)                                                                                        \
    for (int h = 0; h < 2; h++) _mm512_storeu_ps((o) + 16 * h, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(e[h])), s))
#define WIDEN256(o, e, s)                                                                                        \
    for (int h = 0; h < 4; h++)                                                                                  \
    _mm256_storeu_ps((o) + 8 * h, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                         \
                                                    h % 2 ? _mm_srli_si128(e[h / 2], 8) : e[h / 2])),            \
                                                s))
DEQUANT_FN(dequant_512, T_AVX512, __m512, _mm512_set1_ps, WIDEN512)
DEQUANT_FN(dequant_256, T_AVX2, __m256, _mm256_set1_ps, WIDEN256)

static int has_avx512bw(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}
static int has_vnni(void) { return has_avx512bw() && __builtin_cpu_supports("avx512vnni"); }
#endif /* SKL_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef void (*qgemv_fn)(const void *q, const uint16_t *scale, int32_t cols, const void *qx, float *y, int32_t r0,
                         int32_t r1);
typedef void (*dequant_fn)(int qt, const void *q, const uint16_t *scale, int32_t cols, int32_t r0, int32_t r1, float *dst);

typedef struct qimpl {
    const char *name;
    int kern;               /* the kernels.c variant (SKL_KERN_*) it belongs to */
    int xbits;              /* 32: fp32 x; 8: int8 x per group */
    int (*supported)(void); /* CPU features beyond the variant's; NULL: none */
    void (*prepare)(int qt, const float *x, int32_t cols, void *qx);
    qgemv_fn gemv[SKL_QT_COUNT];
    dequant_fn dequant;
} qimpl;

/* Within a variant, the first supported row is its default: with VNNI,
 * avx512-vnni-int8 (from memory within the noise of avx512-int8, 9-35 %
 * faster on a matrix in cache). */
static const qimpl impls[] = {
    {"generic-f32", SKL_KERN_GENERIC, 32, NULL, prepare_f32_generic, {gemv_q8_f32_generic, gemv_q4_f32_generic},
     dequant_generic},
    {"generic-int8", SKL_KERN_GENERIC, 8, NULL, prepare_int8_generic, {gemv_q8_int8_generic, gemv_q4_int8_generic},
     dequant_generic},
#if SKL_X86
    {"avx2-int8", SKL_KERN_AVX2, 8, NULL, prepare_int8_avx2, {gemv_q8_int8_256, gemv_q4_int8_256},
     dequant_256},
    {"avx2-f32", SKL_KERN_AVX2, 32, NULL, prepare_f32_deint, {gemv_q8_f32_256, gemv_q4_f32_256},
     dequant_256},
    {"avx512-vnni-int8", SKL_KERN_AVX512, 8, has_vnni, prepare_int8_avx2, {gemv_q8_int8_vnni, gemv_q4_int8_vnni},
     dequant_512},
    {"avx512-int8", SKL_KERN_AVX512, 8, has_avx512bw, prepare_int8_avx2, {gemv_q8_int8_512, gemv_q4_int8_512},
     dequant_512},
    {"avx512-f32", SKL_KERN_AVX512, 32, has_avx512bw, prepare_f32_deint, {gemv_q8_f32_512, gemv_q4_f32_512},
     dequant_512},
#endif
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
    if (r0 < r1) Q()->dequant(qt, q, scale, cols, r0, r1, dst);
}
