/* kernels.c - the inner loops of decode: y = W x for W in F32, F16 or BF16,
 * the attention's weighted sum of value rows, and the widening of rows to fp32
 * (the scalar conversions are in dtype.c).
 *
 * Three variants of every kernel, chosen once at run time from the CPU's
 * features (__builtin_cpu_supports), each compiled with its own per-function
 * target attribute so the library itself needs no -march flag and runs on any
 * x86-64 (and builds on other architectures with the generic variant only):
 *   "avx512"  AVX-512F + F16C + FMA: 16 floats per register, vcvtph2ps zmm
 *   "avx2"    AVX2 + FMA + F16C: 8 floats per register
 *   "generic" portable C
 *
 * GEMV layout: W row-major [rows, cols] with leading dimension ld (elements);
 * a pass reads R rows at once (R weight streams, 2 accumulators each: R = 4
 * for F32, 8 for F16/BF16 with AVX-512), prefetching each line a step reads
 * ahead (AVX-512: 512 B into L1 and 2 KiB into L2; AVX2: 1 KiB, not for
 * F32) and, near a row's end, the start of the
 * same row of the next pass, so the streams never start cold inside a chunk;
 * then one vector step, then a scalar tail.  A row's summation order depends
 * only on cols and the variant, never on which rows share its pass or which
 * thread computes it, so results are identical for any row split (any thread
 * count). */
#include "kernels.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define SKL_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SKL_X86 0
#endif

/* ------------------------------------------------------------------ generic */

/* Per row: 8 partial sums over 8-column steps, combined pairwise, then the tail. */
#define GEMV_GENERIC(DT, T, CVT)                                                                                 \
    static void gemv_##DT##_generic(const void *W, size_t ld, int32_t cols, const float *x, float *y,           \
                                    int32_t r0, int32_t r1) {                                                    \
        for (int32_t r = r0; r < r1; r++) {                                                                      \
            const T *w = (const T *)W + (size_t)r * ld;                                                          \
            float acc[8] = {0};                                                                                  \
            int32_t c = 0;                                                                                       \
            for (; c + 8 <= cols; c += 8)                                                                        \
                for (int k = 0; k < 8; k++) acc[k] += CVT(w[c + k]) * x[c + k];                                  \
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));         \
            for (; c < cols; c++) s += CVT(w[c]) * x[c];                                                         \
            y[r] = s;                                                                                            \
        }                                                                                                        \
    }

#define AS_FLOAT(v) (v)
GEMV_GENERIC(f32, float, AS_FLOAT)
GEMV_GENERIC(f16, uint16_t, skl_f16_to_f32)
GEMV_GENERIC(bf16, uint16_t, skl_bf16_to_f32)

static void axpy_rows_generic(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out) {
    for (int32_t c = 0; c < cols; c++) out[c] = 0.0f;
    for (int32_t j = 0; j < rows; j++) {
        const float *v = V + (size_t)j * ld;
        float pj = p[j];
        for (int32_t c = 0; c < cols; c++) out[c] += pj * v[c];
    }
}

static void softmax_generic(float *s, int32_t len, float scale) {
    float mx = scale * s[0], sum = 0.0f;
    for (int32_t j = 1; j < len; j++) mx = scale * s[j] > mx ? scale * s[j] : mx;
    for (int32_t j = 0; j < len; j++) sum += (s[j] = expf(scale * s[j] - mx));
    float inv = 1.0f / sum;
    for (int32_t j = 0; j < len; j++) s[j] *= inv;
}

static void to_f32_generic(int dtype, const void *src, float *dst, size_t n) {
    if (dtype == SKL_DT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = skl_elem(dtype, src, i);
}

/* ------------------------------------------------------------------- x86 */

#if SKL_X86
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* Load 16 (AVX-512) or 8 (AVX2) weights of dtype DT at p as floats. */
#define LD512_F32(p) _mm512_loadu_ps((const float *)(p))
#define LD512_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LD512_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LD256_F32(p) _mm256_loadu_ps((const float *)(p))
#define LD256_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LD256_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX512 static inline float hsum512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The first pf (into L1) and pf2 (into L2) bytes of `rows` rows at p (ld_bytes apart), at most
 * row_bytes each: at the start of a call, where no earlier step has prefetched them. */
static inline void prefetch_start(const char *p, size_t ld_bytes, int rows, size_t row_bytes, size_t pf, size_t pf2) {
    size_t n1 = pf < row_bytes ? pf : row_bytes, n2 = pf2 < row_bytes ? pf2 : row_bytes;
    for (size_t off = 0; off < n1; off += 64)
        for (int i = 0; i < rows; i++) _mm_prefetch(p + (size_t)i * ld_bytes + off, _MM_HINT_T0);
    for (size_t off = n1; off < n2; off += 64)
        for (int i = 0; i < rows; i++) _mm_prefetch(p + (size_t)i * ld_bytes + off, _MM_HINT_T1);
}

/* Inside GEMV_BODY's step loop: prefetch every line of the step D bytes
 * ahead in each of the pass's R rows; past a row's end, in the same row of
 * the next pass (RM rows further on in the same matrix). */
#define PREFETCH_STEP(D, HINT, T, R, RM, VW)                                                                     \
    if (D) {                                                                                                     \
        size_t po = (size_t)c + (D) / sizeof(T);                                                                 \
        if (po >= (size_t)cols) po += RM * ld - (size_t)cols;                                                    \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {                                                    \
            _mm_prefetch((const char *)(rp[i] + po), HINT);                                                      \
            if (2 * VW * sizeof(T) > 64) _mm_prefetch((const char *)(rp[i] + po) + 64, HINT);                    \
        }                                                                                                        \
    }

/* One GEMV kernel body per (width, dtype).  T: element type; LD: load macro;
 * VW: floats per register; R: rows per pass (4 or 8: each row is one weight
 * stream, and the 16-bit dtypes need 8 streams to keep enough cache lines in
 * flight per step); NM: matrices (1, or 2 for the paired kernel: y = W x and
 * y1 = W1 x over the same rows, R / NM rows of each per pass, so that a
 * gate/up pair is one stream of passes instead of two calls that each start
 * cold); PF, PF2: prefetch distances in bytes (0: none).  Every row, in an
 * R-row pass or in the 1-row pass of the remainder, is summed in the same
 * order: accumulators a (even vector steps) and b (odd), one vector step
 * more into a, a + b reduced, then the scalar tail; so a row's value does not
 * depend on the kernel (paired or not) nor on where a chunk starts. */
#define GEMV_BODY(VEC, ZERO, FMA, ADD, HSUM, LOADX, LD, T, VW, R, NM, PF, PF2)                                     \
    enum { RM = R / NM };                                                                                        \
    const T *wm[2] = {(const T *)W, (const T *)W1};                                                              \
    float *ym[2] = {y, y1};                                                                                      \
    int32_t step2 = cols / (2 * VW) * (2 * VW), step1 = cols / VW * VW;                                          \
    int32_t r = r0;                                                                                              \
    if (r + RM <= r1) /* a chunk starts cold: the lines its first pass's prefetches would have fetched */      \
        for (int m = 0; m < NM; m++)                                                                             \
            prefetch_start((const char *)(wm[m] + (size_t)r * ld), ld * sizeof(T), RM, (size_t)cols * sizeof(T), \
                           PF, PF2);                                                                             \
    for (; r + RM <= r1; r += RM) {                                                                              \
        const T *rp[R];                                                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) rp[i] = wm[i / RM] + (size_t)(r + i % RM) * ld;     \
        VEC a[R], b[R];                                                                                          \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i] = b[i] = ZERO;                                  \
        int32_t c = 0;                                                                                           \
        for (; c < step2; c += 2 * VW) {                                                                         \
            PREFETCH_STEP(PF, _MM_HINT_T0, T, R, RM, VW)  /* every line of the step, PF bytes ahead, into L1 */ \
            PREFETCH_STEP(PF2, _MM_HINT_T1, T, R, RM, VW) /* and PF2 bytes ahead into L2 */                       \
            VEC xa = LOADX(x + c), xb = LOADX(x + c + VW);                                                       \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {                                                \
                a[i] = FMA(LD(rp[i] + c), xa, a[i]);                                                             \
                b[i] = FMA(LD(rp[i] + c + VW), xb, b[i]);                                                        \
            }                                                                                                    \
        }                                                                                                        \
        if (c < step1) {                                                                                         \
            VEC xa = LOADX(x + c);                                                                               \
            _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) a[i] = FMA(LD(rp[i] + c), xa, a[i]);             \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int i = 0; i < R; i++) {                                                    \
            const T *wi = rp[i];                                                                                 \
            float si = HSUM(ADD(a[i], b[i]));                                                                    \
            for (c = step1; c < cols; c++) si += ELEM(wi[c]) * x[c];                                             \
            ym[i / RM][r + i % RM] = si;                                                                         \
        }                                                                                                        \
    }                                                                                                            \
    for (int m = 0; m < NM; m++)                                                                                 \
        for (int32_t rr = r; rr < r1; rr++) {                                                                    \
            const T *w0 = wm[m] + (size_t)rr * ld;                                                               \
            VEC a0 = ZERO, b0 = ZERO;                                                                            \
            int32_t c = 0;                                                                                       \
            for (; c < step2; c += 2 * VW) {                                                                     \
                a0 = FMA(LD(w0 + c), LOADX(x + c), a0);                                                          \
                b0 = FMA(LD(w0 + c + VW), LOADX(x + c + VW), b0);                                                \
            }                                                                                                    \
            if (c < step1) a0 = FMA(LD(w0 + c), LOADX(x + c), a0);                                               \
            float s0 = HSUM(ADD(a0, b0));                                                                        \
            for (c = step1; c < cols; c++) s0 += ELEM(w0[c]) * x[c];                                             \
            ym[m][rr] = s0;                                                                                      \
        }

#define GEMV512(DT, T, LD, R, PF, PF2)                                                                           \
    AVX512 static void gemv_##DT##_avx512(const void *W, size_t ld, int32_t cols, const float *x, float *y,     \
                                          int32_t r0, int32_t r1) {                                              \
        const void *W1 = NULL;                                                                                   \
        float *y1 = NULL;                                                                                        \
        GEMV_BODY(__m512, _mm512_setzero_ps(), _mm512_fmadd_ps, _mm512_add_ps, hsum512, _mm512_loadu_ps, LD, T,  \
                  16, R, 1, PF, PF2)                                                                             \
    }                                                                                                            \
    AVX512 static void gemv2_##DT##_avx512(const void *W, const void *W1, size_t ld, int32_t cols, const float *x, \
                                           float *y, float *y1, int32_t r0, int32_t r1) {                        \
        GEMV_BODY(__m512, _mm512_setzero_ps(), _mm512_fmadd_ps, _mm512_add_ps, hsum512, _mm512_loadu_ps, LD, T,  \
                  16, R, 2, PF, PF2)                                                                             \
    }
#define GEMV256(DT, T, LD, R, PF, PF2)                                                                           \
    AVX2 static void gemv_##DT##_avx2(const void *W, size_t ld, int32_t cols, const float *x, float *y,         \
                                      int32_t r0, int32_t r1) {                                                  \
        const void *W1 = NULL;                                                                                   \
        float *y1 = NULL;                                                                                        \
        GEMV_BODY(__m256, _mm256_setzero_ps(), _mm256_fmadd_ps, _mm256_add_ps, hsum256, _mm256_loadu_ps, LD, T, \
                  8, R, 1, PF, PF2)                                                                              \
    }

/* Software prefetch distances (bytes).  AVX2: 1 KiB ahead into L1 (+10 %
 * single-core bandwidth measured on Sapphire Rapids for F16; 512, 2048 or
 * none were slower).  AVX-512, measured with 2 threads on 2 MiB pages with an
 * interleaved A/B driver (each variant's rate over the read ceiling of the
 * same round, medians of 15):
 *  - F16 with 4 rows per pass reached 85-90 % of the ceiling on rows of 5632
 *    and 14336 columns; 8 rows per pass (8 lines in flight per step, as F32
 *    has with 4) 92-94 %, the same elsewhere.  An F16-row-shaped read without
 *    the half-to-float conversion reaches ~100 %.
 *  - one level 1 KiB ahead into L1 -> 512 B into L1 plus 2 KiB into L2:
 *    F16 +3 to +6 points in 4 of 4 runs (to 96-98 % on 2048 and 5632
 *    columns); F32 +1.6 and +5 points (noise there is about +-2). */
#define PF_BYTES 1024 /* AVX2 variants (one level) */
#define PF_L1 512     /* AVX-512 variants: into L1 ... */
#define PF_L2 2048    /* ... and into L2 */
#define ELEM(v) (v)
GEMV512(f32, float, LD512_F32, 4, PF_L1, PF_L2)
GEMV256(f32, float, LD256_F32, 4, 0, 0) /* not measured without AVX-512 here */
#undef ELEM
#define ELEM(v) skl_f16_to_f32(v)
GEMV512(f16, uint16_t, LD512_F16, 8, PF_L1, PF_L2)
GEMV256(f16, uint16_t, LD256_F16, 4, PF_BYTES, 0)
#undef ELEM
#define ELEM(v) skl_bf16_to_f32(v)
GEMV512(bf16, uint16_t, LD512_BF16, 8, PF_L1, PF_L2)
GEMV256(bf16, uint16_t, LD256_BF16, 4, PF_BYTES, 0)
#undef ELEM

/* out[cols] = sum_j p[j] V[j, :] (value rows with leading dimension ld).  The
 * value rows of decode attention come from memory (the weights streamed since
 * the last token evicted them): the AVX-512 loop prefetches the 64-column
 * block of the row AXPY_AHEAD rows ahead. */
#define AXPY_AHEAD 8
AVX512 static void axpy_rows_avx512(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p,
                                    float *out) {
    int32_t c = 0;
    for (; c + 64 <= cols; c += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t j = 0; j < rows; j++) {
            const float *v = V + (size_t)j * ld + c;
            _mm_prefetch((const char *)(v + AXPY_AHEAD * ld), _MM_HINT_T0); /* past the end: harmless */
            _mm_prefetch((const char *)(v + AXPY_AHEAD * ld) + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)(v + AXPY_AHEAD * ld) + 128, _MM_HINT_T0);
            _mm_prefetch((const char *)(v + AXPY_AHEAD * ld) + 192, _MM_HINT_T0);
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v), a0);
            a1 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 16), a1);
            a2 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 32), a2);
            a3 = _mm512_fmadd_ps(pj, _mm512_loadu_ps(v + 48), a3);
        }
        _mm512_storeu_ps(out + c, a0);
        _mm512_storeu_ps(out + c + 16, a1);
        _mm512_storeu_ps(out + c + 32, a2);
        _mm512_storeu_ps(out + c + 48, a3);
    }
    for (; c < cols; c += 16) {
        __mmask16 m = cols - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (cols - c)) - 1);
        __m512 a0 = _mm512_setzero_ps();
        for (int32_t j = 0; j < rows; j++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(m, V + (size_t)j * ld + c), a0);
        _mm512_mask_storeu_ps(out + c, m, a0);
    }
}

AVX2 static void axpy_rows_avx2(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out) {
    int32_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t j = 0; j < rows; j++) {
            const float *v = V + (size_t)j * ld + c;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v), a0);
            a1 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 8), a1);
            a2 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 16), a2);
            a3 = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + 24), a3);
        }
        _mm256_storeu_ps(out + c, a0);
        _mm256_storeu_ps(out + c + 8, a1);
        _mm256_storeu_ps(out + c + 16, a2);
        _mm256_storeu_ps(out + c + 24, a3);
    }
    for (; c + 8 <= cols; c += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int32_t j = 0; j < rows; j++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(V + (size_t)j * ld + c), a0);
        _mm256_storeu_ps(out + c, a0);
    }
    for (; c < cols; c++) {
        float s = 0.0f;
        for (int32_t j = 0; j < rows; j++) s += p[j] * V[(size_t)j * ld + c];
        out[c] = s;
    }
}

/* exp(x) for x <= 0 (softmax after subtracting the max): Cephes' expf
 * (range reduction by ln 2 in two parts, degree-7 polynomial; about 2 ulp);
 * below -87.3 (where expf underflows) it returns about 1e-38 instead of a
 * subnormal or 0, which no softmax sum notices; nan stays nan. */
#define EXP_C1 0.693359375f
#define EXP_C2 -2.12194440e-4f
#define EXP_POLY(FMA, SET1, r)                                                                                   \
    FMA(FMA(FMA(FMA(FMA(SET1(1.9875691500e-4f), r, SET1(1.3981999507e-3f)), r, SET1(8.3334519073e-3f)), r,   \
                SET1(4.1665795894e-2f)),                                                                          \
            r, SET1(1.6666665459e-1f)),                                                                           \
        r, SET1(5.0000001201e-1f))

AVX512 static inline __m512 exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x); /* nan in x stays */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C1), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_C2), r);
    __m512 p = EXP_POLY(_mm512_fmadd_ps, _mm512_set1_ps, r);
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

AVX512 static void softmax_avx512(float *s, int32_t len, float scale) {
    __m512 sc = _mm512_set1_ps(scale), mx = _mm512_set1_ps(scale * s[0]);
    int32_t j = 0;
    for (; j + 16 <= len; j += 16) mx = _mm512_max_ps(mx, _mm512_mul_ps(sc, _mm512_loadu_ps(s + j)));
    float m = _mm512_reduce_max_ps(mx);
    for (; j < len; j++) m = scale * s[j] > m ? scale * s[j] : m;
    __m512 vm = _mm512_set1_ps(m), sum = _mm512_setzero_ps();
    for (j = 0; j < len; j += 16) {
        __mmask16 k = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
        __m512 e = exp512(_mm512_fmsub_ps(sc, _mm512_maskz_loadu_ps(k, s + j), vm));
        _mm512_mask_storeu_ps(s + j, k, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (j = 0; j < len; j += 16) {
        __mmask16 k = len - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (len - j)) - 1);
        _mm512_mask_storeu_ps(s + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv));
    }
}

AVX2 static inline __m256 exp256(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C1), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_C2), r);
    __m256 p = EXP_POLY(_mm256_fmadd_ps, _mm256_set1_ps, r);
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* 2^n for n in [-126, 0]: the exponent field */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 static void softmax_avx2(float *s, int32_t len, float scale) {
    __m256 sc = _mm256_set1_ps(scale), mx = _mm256_set1_ps(scale * s[0]);
    int32_t j = 0;
    for (; j + 8 <= len; j += 8) mx = _mm256_max_ps(mx, _mm256_mul_ps(sc, _mm256_loadu_ps(s + j)));
    float t[8], m;
    _mm256_storeu_ps(t, mx);
    m = t[0];
    for (int i = 1; i < 8; i++) m = t[i] > m ? t[i] : m;
    for (int32_t i = j; i < len; i++) m = scale * s[i] > m ? scale * s[i] : m;
    __m256 vm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= len; j += 8) {
        __m256 e = exp256(_mm256_fmsub_ps(sc, _mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    float tail = 0.0f;
    for (int32_t i = j; i < len; i++) tail += (s[i] = expf(scale * s[i] - m));
    float inv = 1.0f / (hsum256(sum) + tail);
    for (j = 0; j < len; j++) s[j] *= inv;
}

/* Intentional twins: to_f32_avx512 / to_f32_avx2, softmax_avx512 / softmax_avx2 and
 * axpy_rows_avx512 / axpy_rows_avx2 are the same loop at 16 and at 8 lanes, one body per
 * instruction set, as the variant table below dispatches (a macro over the width would
 * hide the intrinsics each ISA needs). */
AVX512 static void to_f32_avx512(int dtype, const void *src, float *dst, size_t n) {
    if (dtype == SKL_DT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    size_t i = 0;
    if (dtype == SKL_DT_F16)
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, LD512_F16(s + i));
    else
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, LD512_BF16(s + i));
    for (; i < n; i++) dst[i] = skl_elem(dtype, src, i);
}

AVX2 static void to_f32_avx2(int dtype, const void *src, float *dst, size_t n) {
    if (dtype == SKL_DT_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    const uint16_t *s = src;
    size_t i = 0;
    if (dtype == SKL_DT_F16)
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LD256_F16(s + i));
    else
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, LD256_BF16(s + i));
    for (; i < n; i++) dst[i] = skl_elem(dtype, src, i);
}
#endif /* SKL_X86 */

/* ---------------------------------------------------------------- dispatch */

typedef void (*gemv_fn)(const void *W, size_t ld, int32_t cols, const float *x, float *y, int32_t r0, int32_t r1);
typedef void (*gemv2_fn)(const void *W, const void *W1, size_t ld, int32_t cols, const float *x, float *y, float *y1,
                         int32_t r0, int32_t r1);

typedef struct kernels {
    const char *name;
    gemv_fn gemv[3];   /* by SKL_DT_* */
    gemv2_fn gemv2[3]; /* paired; NULL: two gemv calls */
    void (*axpy_rows)(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out);
    void (*to_f32)(int dtype, const void *src, float *dst, size_t n);
    void (*softmax)(float *s, int32_t len, float scale);
} kernels;

static const kernels table[SKL_KERN_COUNT] = {
    [SKL_KERN_GENERIC] = {"generic", {gemv_f32_generic, gemv_f16_generic, gemv_bf16_generic}, {NULL}, axpy_rows_generic,
                          to_f32_generic, softmax_generic},
#if SKL_X86
    [SKL_KERN_AVX2] = {"avx2", {gemv_f32_avx2, gemv_f16_avx2, gemv_bf16_avx2}, {NULL}, axpy_rows_avx2,
                       to_f32_avx2, softmax_avx2},
    [SKL_KERN_AVX512] = {"avx512", {gemv_f32_avx512, gemv_f16_avx512, gemv_bf16_avx512},
                         {gemv2_f32_avx512, gemv2_f16_avx512, gemv2_bf16_avx512}, axpy_rows_avx512, to_f32_avx512,
                         softmax_avx512},
#endif
};

static _Atomic(const kernels *) active;

#if SKL_X86
/* F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does
 * not know "f16c" (an invalid feature string there), gcc's does; CPUID is the
 * same answer for both.  The OS's saving of the YMM state is already implied
 * by __builtin_cpu_supports("avx2"), which F16C always accompanies here. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

int skl_kernels_supported(int id) {
    if (id == SKL_KERN_GENERIC) return 1;
#if SKL_X86
    __builtin_cpu_init();
    if (id == SKL_KERN_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    if (id == SKL_KERN_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && has_f16c();
#endif
    return 0;
}

const char *skl_kernels_name(int id) { return id >= 0 && id < SKL_KERN_COUNT ? table[id].name : NULL; }

static const kernels *best(void) {
    for (int id = SKL_KERN_COUNT - 1; id > 0; id--)
        if (table[id].name && skl_kernels_supported(id)) return &table[id];
    return &table[SKL_KERN_GENERIC];
}

static inline const kernels *K(void) {
    const kernels *k = atomic_load_explicit(&active, memory_order_acquire);
    if (!k) { /* first use; racing initialisations store the same pointer */
        k = best();
        atomic_store_explicit(&active, k, memory_order_release);
    }
    return k;
}

int skl_kernels_force(int id) {
    if (id < 0) {
        atomic_store(&active, best());
        return 0;
    }
    if (id >= SKL_KERN_COUNT || !table[id].name || !skl_kernels_supported(id)) return -1;
    atomic_store(&active, &table[id]);
    return 0;
}

const char *skl_cpu_kernels(void) { return K()->name; }

int skl_kernels_active(void) { return (int)(K() - table); }

void skl_gemv(int dtype, const void *W, size_t ld, int32_t cols, const float *x, float *y, int32_t r0, int32_t r1) {
    if (r0 < r1) K()->gemv[dtype](W, ld, cols, x, y, r0, r1);
}

void skl_gemv2(int dtype, const void *W, const void *W1, size_t ld, int32_t cols, const float *x, float *y, float *y1,
               int32_t r0, int32_t r1) {
    if (r0 >= r1) return;
    const kernels *k = K();
    if (k->gemv2[dtype]) {
        k->gemv2[dtype](W, W1, ld, cols, x, y, y1, r0, r1);
    } else {
        k->gemv[dtype](W, ld, cols, x, y, r0, r1);
        k->gemv[dtype](W1, ld, cols, x, y1, r0, r1);
    }
}

void skl_axpy_rows(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out) {
    K()->axpy_rows(V, ld, rows, cols, p, out);
}

void skl_to_f32(int dtype, const void *src, float *dst, size_t n) { K()->to_f32(dtype, src, dst, n); }

void skl_softmax(float *s, int32_t len, float scale) { K()->softmax(s, len, scale); }
