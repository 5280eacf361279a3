/* merge.c - remove weights from skipless blocks exactly (N. Graef, arXiv 2404.12362;
 * the formulas as implemented are in ../shared/docs/merge-math.md and docs/merge.md).
 *
 * Hugging Face layout, y = W x with W [out, in].  Without skip connections, the
 * stream entering block i can be replaced by R x for any invertible d x d
 * projection R of that block (q_proj, k_proj or v_proj): the writer of the
 * stream (the previous down_proj, or the embedding) absorbs R, every other
 * reader X of the stream becomes X R^-1, and R itself becomes the identity.
 * In a serial block the o_proj (paper: P) is followed only by the FFN's first
 * layers, so they absorb it: G* = G P, U* = U P.
 *
 * Numerics: float64 throughout; LAPACKE dgetrf + dgecon + dgetrs (never an
 * explicit inverse); products with cblas_dgemm.  F16/BF16 weights are read
 * exactly into float64; the changed tensors are stored in
 * skl_merge_params.dtype (F32 by default) and residuals are those of the
 * stored values.
 * The source model is never modified: the result is a clone that shares the
 * unchanged tensors and owns the new ones. */
#include "internal.h"
#include "quant.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FP32_UNIT_ROUNDOFF 5.9604644775390625e-08 /* 2^-24 */

const char *skl_removal_name(skl_removal r) {
    switch (r) {
    case SKL_REMOVE_AUTO: return "auto";
    case SKL_REMOVE_QP: return "qp";
    case SKL_REMOVE_KP: return "kp";
    case SKL_REMOVE_VP: return "vp";
    case SKL_REMOVE_Q: return "q";
    case SKL_REMOVE_P: return "p";
    default: return NULL;
    }
}

int skl_removal_parse(const char *name, skl_removal *out) {
    if (!name || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_removal_parse: NULL argument");
    for (int r = SKL_REMOVE_AUTO; r <= SKL_REMOVE_P; r++)
        if (!strcmp(name, skl_removal_name((skl_removal)r))) {
            *out = (skl_removal)r;
            return SKL_OK;
        }
    return skl_fail(SKL_ERR_INVALID_ARG, "unknown removal '%s' (expected auto, qp, kp, vp, q or p)", name);
}

#define MERGE_PARAMS_V1 SKL_SIZE_THROUGH(skl_merge_params, dtype)

int skl_merge_params_init(skl_merge_params *p, size_t size) {
    skl_merge_params d = {.remove = SKL_REMOVE_AUTO, .verify = true, .n_probe_tokens = 32, .probe_seed = 1,
                          .dtype = SKL_DTYPE_F32};
    return skl_params_init(p, size, &d, sizeof d, MERGE_PARAMS_V1, "skl_merge_params_init");
}

/* The report the caller sees, and its blocks behind an accessor (so that
 * skl_merge_layer may grow in later versions). */
typedef struct report_impl {
    skl_merge_report pub; /* first: a skl_merge_report * is a report_impl * */
    skl_merge_layer *layers; /* [pub.n_layers] */
} report_impl;

const skl_merge_layer *skl_merge_report_layer(const skl_merge_report *r, int32_t i) {
    if (!r || i < 0 || i >= r->n_layers) return NULL;
    return &((const report_impl *)r)->layers[i];
}

void skl_merge_report_free(skl_merge_report *r) {
    if (!r) return;
    free(((report_impl *)r)->layers);
    free(r);
}

/* -------------------------------------------------------------- helpers */

typedef struct merger {
    skl_model *m;           /* the clone being merged */
    int dtype;              /* storage of changed tensors (skl_dtype, SAME allowed; Q8_0 / Q4_0: of every linear weight) */
    const char *const *keep; /* quantized dtype: the linear layers left as SAME would store them */
    int32_t n_keep;
    int new_dtype;          /* SAME: dtype of a tensor that did not exist (the embedding's) */
    double max_cond;
    skl_pool *pool;         /* elementwise passes (widening, rounding), as many threads as OpenBLAS */
    double *s[2];           /* float64 scratch for the operands of one product or solve, reused */
    size_t cap[2];          /* their capacity in elements */
    char msg[512];          /* first error message */
    int status;
    bool dry;               /* the layout only (skl_model_merge_to's first pass): shapes, no arithmetic */
    skl_writer *w;          /* skl_model_merge_to: tensors go out as soon as they are final */
} merger;

static int mfail(merger *g, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int mfail(merger *g, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    g->status = status;
    return status;
}

/* Scratch buffer k (0 or 1) of at least n doubles, contents undefined; NULL when out of memory.
 * Kept from call to call: a fresh 0.5-1 GB allocation per product cost a page fault and a
 * page clearing per 4 KiB (about 7 % of the merge's time on the 7B shape). */
static double *scratch(merger *g, int k, size_t n) {
    if (n > g->cap[k]) {
        free(g->s[k]);
        g->s[k] = malloc((n ? n : 1) * sizeof *g->s[k]);
        g->cap[k] = g->s[k] ? n : 0;
    }
    return g->s[k];
}

static void scratch_free(merger *g) {
    for (int k = 0; k < 2; k++) {
        free(g->s[k]);
        g->s[k] = NULL;
        g->cap[k] = 0;
    }
}

/* Elementwise passes over whole matrices run on the pool in chunks of this many elements. */
#define ELEM_CHUNK ((size_t)1 << 18)

typedef struct elem_job {
    const void *src;  /* widen: tensor data of dtype dt; round: double */
    void *dst;        /* widen: double; round: data of dtype dt */
    int dt;
    size_t n;
    const uint16_t *scale; /* widen of a quantized tensor: its scales (the flat element i's is scale[i / 32]) */
} elem_job;

static void widen_chunk(void *arg, int64_t k) {
    const elem_job *j = arg;
    size_t lo = (size_t)k * ELEM_CHUNK, hi = lo + ELEM_CHUNK < j->n ? lo + ELEM_CHUNK : j->n;
    double *d = j->dst;
    if (skl_dtype_quantized(j->dt)) {
        for (size_t i = lo; i < hi; i++) d[i] = skl_qelem(j->dt, j->src, j->scale, i);
    } else if (j->dt == SKL_DT_F32) {
        const float *f = j->src;
        for (size_t i = lo; i < hi; i++) d[i] = f[i];
    } else {
        const uint16_t *h = j->src;
        if (j->dt == SKL_DT_F16)
            for (size_t i = lo; i < hi; i++) d[i] = skl_f16_to_f32(h[i]);
        else
            for (size_t i = lo; i < hi; i++) d[i] = skl_bf16_to_f32(h[i]);
    }
}

/* float64 -> float32 first, then (F16/BF16) round to nearest even, as stored. */
static void round_chunk(void *arg, int64_t k) {
    const elem_job *j = arg;
    size_t lo = (size_t)k * ELEM_CHUNK, hi = lo + ELEM_CHUNK < j->n ? lo + ELEM_CHUNK : j->n;
    const double *x = j->src;
    if (j->dt == SKL_DT_F32) {
        float *f = j->dst;
        for (size_t i = lo; i < hi; i++) f[i] = (float)x[i];
    } else {
        uint16_t *h = j->dst;
        if (j->dt == SKL_DT_F16)
            for (size_t i = lo; i < hi; i++) h[i] = skl_f32_to_f16((float)x[i]);
        else
            for (size_t i = lo; i < hi; i++) h[i] = skl_f32_to_bf16((float)x[i]);
    }
}

static void elementwise(merger *g, skl_chunk_fn fn, const void *src, void *dst, int dt, size_t n) {
    elem_job j = {src, dst, dt, n, NULL};
    skl_pool_for(g->pool, (int64_t)((n + ELEM_CHUNK - 1) / ELEM_CHUNK), fn, &j);
}

/* a [rows, cols] <- float64 copy of tensor t; the identity when absent (rows == cols);
 * zeros when `zero_if_absent`.  Exact for every dtype. */
static void widen(merger *g, const skl_tensor *t, int32_t rows, int32_t cols, bool zero_if_absent, double *a) {
    size_t n = (size_t)rows * (size_t)cols;
    if (t->data) {
        elem_job j = {t->data, a, t->dtype, n, t->scale};
        skl_pool_for(g->pool, (int64_t)((n + ELEM_CHUNK - 1) / ELEM_CHUNK), widen_chunk, &j);
        return;
    }
    memset(a, 0, n * sizeof *a);
    if (!zero_if_absent)
        for (int32_t i = 0; i < rows && i < cols; i++) a[(size_t)i * cols + i] = 1.0;
}

/* A newly allocated float64 copy of t (see widen); NULL when out of memory. */
static double *to_f64(merger *g, const skl_tensor *t, int32_t rows, int32_t cols, bool zero_if_absent) {
    size_t n = (size_t)rows * (size_t)cols;
    double *a = malloc((n ? n : 1) * sizeof *a);
    if (a) widen(g, t, rows, cols, zero_if_absent, a);
    return a;
}

/* Whether t is the weight of a linear layer of g->m: *layer, *lin (SKL_LIN_HEAD: lm_head). */
static bool linear_of(const merger *g, const skl_tensor *t, int32_t *layer, int *lin) {
    for (skl_lin_iter it = skl_linears_all(g->m); skl_lin_next(&it);)
        if (&it.l->w == t) {
            *layer = it.layer;
            *lin = it.lin;
            return true;
        }
    return false;
}

/* The dtype a changed tensor t, [.., cols], is stored in.  A quantized dtype
 * is for linear weights whose inputs are a multiple of 32 and which keep does
 * not name; everything else is stored as SAME stores it. */
static int target_dtype(const merger *g, const skl_tensor *t, int32_t cols) {
    int32_t layer;
    int lin;
    if (g->dtype != SKL_DTYPE_SAME && !skl_dtype_quantized(g->dtype)) return g->dtype;
    if (skl_dtype_quantized(g->dtype) && cols % SKL_DT_QGROUP == 0 && linear_of(g, t, &layer, &lin) &&
        !skl_quant_kept(g->keep, g->n_keep, layer, lin))
        return g->dtype;
    return t->data ? t->dtype : g->new_dtype;
}

/* x [rows, cols] <- its values rounded to dtype, as they will be stored (float64 -> float32 first;
 * quantized: group by group, as set_tensor quantizes them). */
static int store_round(merger *g, int dtype, double *x, int32_t rows, int32_t cols) {
    size_t n = (size_t)rows * (size_t)cols;
    if (skl_dtype_quantized(dtype)) {
        int rc = skl_quant_round(dtype, x, rows, cols, "merge");
        return rc ? mfail(g, rc, "%s", skl_last_error()) : SKL_OK;
    }
    for (size_t k = 0; k < n; k++) {
        float f = (float)x[k];
        x[k] = dtype == SKL_DT_F16 ? skl_f16_to_f32(skl_f32_to_f16(f)) : dtype == SKL_DT_BF16 ? skl_bf16_to_f32(skl_f32_to_bf16(f)) : f;
    }
    return SKL_OK;
}

/* Dry run: t becomes a placeholder with the shape and dtype the merge gives it
 * (data points to one byte that is never read). */
static int set_layout(merger *g, skl_tensor *t, int32_t rows, int32_t cols) {
    static const uint16_t placeholder;
    int dt = target_dtype(g, t, cols);
    skl_tensor_clear(t);
    *t = (skl_tensor){.data = &placeholder, .dtype = dt, .rows = rows, .cols = cols,
                      .scale = skl_dtype_quantized(dt) ? &placeholder : NULL};
    return SKL_OK;
}

/* Tensor t becomes b's data, dtype dt, [rows, cols] (t's old storage released). */
static void install(skl_tensor *t, skl_buf *b, int dt, int32_t rows, int32_t cols) {
    skl_tensor_clear(t);
    *t = (skl_tensor){.data = b->base, .dtype = dt, .rows = rows, .cols = cols, .owner = b};
}

/* Replace tensor t by src [rows, cols] stored in target_dtype (src may be NULL: remove t). */
static int set_tensor(merger *g, skl_tensor *t, const double *src, int32_t rows, int32_t cols) {
    if (!src) {
        skl_tensor_clear(t);
        return SKL_OK;
    }
    int dt = target_dtype(g, t, cols);
    size_t n = (size_t)rows * (size_t)cols;
    if (skl_dtype_quantized(dt)) {
        int32_t layer = 0;
        int lin = 0;
        char name[96];
        linear_of(g, t, &layer, &lin);
        skl_linear_module(layer, lin, name, sizeof name);
        skl_tensor q = {0};
        int rc = skl_tensor_alloc_quant(&q, dt, rows, cols);
        if (!rc) rc = skl_quant_rows(dt, src, rows, cols, q.owner->base, q.scale_owner->base, name, 0);
        if (rc) {
            skl_tensor_clear(&q);
            return mfail(g, rc, "%s", skl_last_error());
        }
        skl_tensor_clear(t);
        *t = q;
        return SKL_OK;
    }
    skl_buf *b = skl_buf_new(n * skl_dtype_size(dt));
    if (!b) return mfail(g, SKL_ERR_NOMEM, "out of memory for a merged [%d, %d] matrix", rows, cols);
    elementwise(g, round_chunk, src, b->base, dt, n);
    install(t, b, dt, rows, cols);
    return SKL_OK;
}

static double frob(const double *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

/* An LU factorization of an n x n matrix A (or of A^T, see layout). */
typedef struct lu {
    int layout;           /* LAPACK_COL_MAJOR on a row-major buffer factors A^T */
    int32_t n;
    double *a;            /* the factors */
    double *orig;         /* A itself, row-major, for residuals */
    lapack_int *ipiv;
    double cond;
} lu;

static void lu_free(lu *f) {
    free(f->a);
    free(f->orig);
    free(f->ipiv);
    memset(f, 0, sizeof *f);
}

static int lu_factor(merger *g, int layer, const char *name, const skl_tensor *w, int32_t n, int layout, lu *f) {
    memset(f, 0, sizeof *f);
    f->layout = layout;
    f->n = n;
    if (!g->dry) {
        f->a = to_f64(g, w, n, n, false);
        f->orig = malloc((size_t)n * n * sizeof *f->orig);
        f->ipiv = malloc((size_t)n * sizeof *f->ipiv);
    }
    if (g->dry) return SKL_OK; /* nothing allocated: lu_free is a no-op */
    if (!f->a || !f->orig || !f->ipiv) return mfail(g, SKL_ERR_NOMEM, "out of memory factoring a %d x %d matrix", n, n);
    memcpy(f->orig, f->a, (size_t)n * n * sizeof *f->orig);
    double anorm = LAPACKE_dlange(layout, '1', n, n, f->a, n);
    lapack_int info = LAPACKE_dgetrf(layout, n, n, f->a, n, f->ipiv);
    if (info > 0)
        return mfail(g, SKL_ERR_SINGULAR, "layer %d: %s is singular (dgetrf: U(%d,%d) is exactly zero)", layer, name,
                     (int)info, (int)info);
    if (info < 0) return mfail(g, SKL_ERR_INVALID_ARG, "layer %d: dgetrf argument %d invalid", layer, (int)-info);
    double rcond = 0.0;
    info = LAPACKE_dgecon(layout, '1', n, f->a, n, anorm, &rcond);
    if (info != 0 || !(rcond > 0.0))
        return mfail(g, SKL_ERR_SINGULAR, "layer %d: %s is numerically singular (reciprocal condition %g)", layer, name,
                     rcond);
    f->cond = 1.0 / rcond;
    if (f->cond > g->max_cond)
        return mfail(g, SKL_ERR_ILL_CONDITIONED,
                     "layer %d: %s has condition number %.3g, above the limit %.3g for float32 storage "
                     "(unit roundoff 6e-8)",
                     layer, name, f->cond, g->max_cond);
    return SKL_OK;
}

/* X <- X A^-1 for linear X ([rows, n]), with bias b_X <- b_X - X* b_A when A has bias bA.
 * f must be a COL_MAJOR factorization (of A^T).  Updates *resid with the relative
 * residual |X* A - X|_F / |X|_F of the stored fp32 X*. */
static int right_solve(merger *g, const lu *f, skl_linear *X, const skl_tensor *bA, double *resid) {
    int32_t n = f->n, rows = X->w.data ? X->w.rows : n;
    size_t cnt = (size_t)rows * (size_t)n;
    if (g->dry) {
        if (bA->data) set_layout(g, &X->b, 1, rows);
        return set_layout(g, &X->w, rows, n);
    }
    /* x: X, then X*, then stored(X*); x0: X, then the residual stored(X*) A - X; both [rows, n] */
    double *x = scratch(g, 0, cnt), *x0 = scratch(g, 1, cnt), *bx = NULL;
    int rc = SKL_OK;
    if (!x || !x0) return mfail(g, SKL_ERR_NOMEM, "out of memory for a [%d, %d] solve", rows, n);
    widen(g, &X->w, rows, n, false, x);
    widen(g, &X->w, rows, n, false, x0);
    lapack_int info = LAPACKE_dgetrs(LAPACK_COL_MAJOR, 'N', n, rows, f->a, n, f->ipiv, x, n);
    if (info != 0) return mfail(g, SKL_ERR_INVALID_ARG, "dgetrs failed (%d)", (int)info);
    if (bA->data) { /* b*_X = b_X - X* b_A */
        bx = to_f64(g, &X->b, 1, rows, true);
        double *ba = to_f64(g, bA, 1, n, true);
        if (!bx || !ba) { free(ba); rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
        cblas_dgemv(CblasRowMajor, CblasNoTrans, rows, n, -1.0, x, n, ba, 1, 1.0, bx, 1);
        free(ba);
        if ((rc = set_tensor(g, &X->b, bx, 1, rows))) goto done;
    }
    if ((rc = set_tensor(g, &X->w, x, rows, n))) goto done;
    /* residual of the stored matrix, one dgemm: x0 <- stored(X*) A - X */
    widen(g, &X->w, rows, n, false, x);
    double nx = frob(x0, cnt);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0, x, n, f->orig, n, -1.0, x0, n);
    double e = frob(x0, cnt) / fmax(nx, 1e-300);
    if (e > *resid) *resid = e;
done:
    free(bx);
    return rc;
}

/* W <- A W for W [n, cols] (the writer of a stream absorbs A); with bias
 * b_W <- A b_W (+ b_add when given). */
static int left_multiply(merger *g, const double *A, int32_t n, skl_linear *W, int32_t wrows, int32_t cols,
                         const skl_tensor *b_add) {
    if (g->dry) {
        if (W->b.data || (b_add && b_add->data)) set_layout(g, &W->b, 1, n);
        return set_layout(g, &W->w, n, cols);
    }
    /* w [wrows, cols], out [n, cols] */
    double *w = scratch(g, 0, (size_t)wrows * cols), *out = scratch(g, 1, (size_t)n * cols), *b = NULL, *bo = NULL;
    int rc = SKL_OK;
    if (!w || !out) return mfail(g, SKL_ERR_NOMEM, "out of memory for a [%d, %d] product", n, cols);
    widen(g, &W->w, wrows, cols, false, w);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, wrows, 1.0, A, n, w, cols, 0.0, out, cols);
    if (W->b.data || (b_add && b_add->data)) {
        b = to_f64(g, &W->b, 1, wrows, true);
        bo = to_f64(g, b_add ? b_add : &(skl_tensor){0}, 1, n, true);
        if (!b || !bo) { rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
        cblas_dgemv(CblasRowMajor, CblasNoTrans, n, wrows, 1.0, A, n, b, 1, 1.0, bo, 1);
        if ((rc = set_tensor(g, &W->b, bo, 1, n))) goto done;
    }
    rc = set_tensor(g, &W->w, out, n, cols);
done:
    free(b);
    free(bo);
    return rc;
}

/* The mirror of left_multiply (an intentional twin: X A instead of A W, biases folded the
 * other way). */
/* X <- X A for a reader X [rows, n] of a stream that now carries A^-1 x (bias unchanged),
 * or X <- X A, b_X <- X b_A + b_X when a projection A with bias is folded into X. */
static int right_multiply(merger *g, skl_linear *X, int32_t n, const double *A, const skl_tensor *bA) {
    int32_t rows = X->w.data ? X->w.rows : n;
    if (g->dry) {
        if (bA && bA->data) set_layout(g, &X->b, 1, rows);
        return set_layout(g, &X->w, rows, n);
    }
    /* x, out: [rows, n] */
    double *x = scratch(g, 0, (size_t)rows * n), *out = scratch(g, 1, (size_t)rows * n), *bx = NULL, *ba = NULL;
    int rc = SKL_OK;
    if (!x || !out) return mfail(g, SKL_ERR_NOMEM, "out of memory for a [%d, %d] product", rows, n);
    widen(g, &X->w, rows, n, false, x);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0, x, n, A, n, 0.0, out, n);
    if (bA && bA->data) {
        bx = to_f64(g, &X->b, 1, rows, true);
        ba = to_f64(g, bA, 1, n, true);
        if (!bx || !ba) { rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
        cblas_dgemv(CblasRowMajor, CblasNoTrans, rows, n, 1.0, x, n, ba, 1, 1.0, bx, 1);
        if ((rc = set_tensor(g, &X->b, bx, 1, rows))) goto done;
    }
    rc = set_tensor(g, &X->w, out, rows, n);
done:
    free(bx);
    free(ba);
    return rc;
}

/* Embedding rows e -> A e + b_A (E* = E A^T + b_A), in chunks of intermediate_size rows, so
 * that the float64 scratch is no larger than a block's ([f, n] each). */
static int embed_absorb(merger *g, const double *A, int32_t n, const skl_tensor *bA) {
    skl_model *m = g->m;
    int32_t V = m->embed.rows;
    if (g->dry) {
        m->hp.tie_word_embeddings = false;
        return set_layout(g, &m->embed, V, n);
    }
    int32_t chunk = m->hp.intermediate_size > 0 ? m->hp.intermediate_size : V;
    int dt = target_dtype(g, &m->embed, n);
    size_t in_es = skl_dtype_size(m->embed.dtype), out_es = skl_dtype_size(dt);
    /* e, out: [chunk, n] */
    double *e = scratch(g, 0, (size_t)chunk * n), *out = scratch(g, 1, (size_t)chunk * n);
    skl_buf *b = skl_buf_new((size_t)V * n * out_es); /* the new embedding [V, n] in dt */
    if (!e || !out || !b) {
        skl_buf_release(b);
        return mfail(g, SKL_ERR_NOMEM, "out of memory for the [%d, %d] embedding", V, n);
    }
    for (int32_t r0 = 0; r0 < V; r0 += chunk) {
        int32_t rows = V - r0 < chunk ? V - r0 : chunk;
        size_t cnt = (size_t)rows * n, off = (size_t)r0 * n;
        elementwise(g, widen_chunk, (const char *)m->embed.data + off * in_es, e, m->embed.dtype, cnt);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, n, 1.0, e, n, A, n, 0.0, out, n);
        if (bA->data)
            for (int32_t t = 0; t < rows; t++)
                for (int32_t j = 0; j < n; j++) out[(size_t)t * n + j] += skl_tensor_at(bA, (size_t)j);
        elementwise(g, round_chunk, out, (char *)b->base + off * out_es, dt, cnt);
    }
    /* a tied head keeps the original matrix: it still holds its own reference */
    install(&m->embed, b, dt, V, n);
    m->hp.tie_word_embeddings = false;
    return SKL_OK;
}

/* ------------------------------------------------------- applicability */

static skl_linear *proj(skl_layer *L, char c) {
    return c == 'q' ? &L->q : c == 'k' ? &L->k : c == 'v' ? &L->v : &L->o;
}

/* Check that `r` applies to model m, without side effects.  Message into g. */
static int check_removal(merger *g, const skl_model *m, skl_removal r) {
    const skl_hparams *hp = &m->hp;
    int32_t d = hp->hidden_size, qd = hp->num_attention_heads * hp->head_dim, kvd = hp->num_key_value_heads * hp->head_dim;
    int32_t L = hp->num_hidden_layers;
    bool serial = hp->block_type == SKL_BLOCK_SERIAL;
    const char *name = skl_removal_name(r);
    const char *kind = hp->num_key_value_heads == hp->num_attention_heads ? "MHA"
                       : hp->num_key_value_heads == 1                    ? "MQA"
                                                                         : "GQA";
    if (serial && (r == SKL_REMOVE_Q || r == SKL_REMOVE_P))
        return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                     "removal '%s' is for parallel blocks; this model has serial blocks (use qp, kp or vp)", name);
    if (!serial && (r == SKL_REMOVE_QP || r == SKL_REMOVE_KP || r == SKL_REMOVE_VP))
        return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                     "removal '%s' is for serial blocks; this model has parallel blocks (use q or p; removing both Q "
                     "and P from a parallel block is exact only for a model trained that way)",
                     name);
    char rm = r == SKL_REMOVE_KP ? 'k' : r == SKL_REMOVE_VP ? 'v' : r == SKL_REMOVE_P ? 'o' : 'q';
    int32_t rm_out = rm == 'k' || rm == 'v' ? kvd : qd; /* o_proj is [d, qd] */
    if (rm_out != d)
        return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                     "removal '%s' needs a square %s_proj, but %s has %d heads x head_dim %d = %d != hidden_size %d%s", name,
                     rm == 'o' ? "o" : (char[]){rm, 0}, kind,
                     rm == 'q' || rm == 'o' ? hp->num_attention_heads : hp->num_key_value_heads, hp->head_dim, rm_out,
                     d, rm == 'k' || rm == 'v' ? " (k/v removal is for MHA only)" : "");
    if (serial && qd != d)
        return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE, "removal '%s' needs a square o_proj, but it is [%d, %d]", name, d,
                     qd);
    int32_t first = 0, last = L; /* layers [first, last) lose their projection */
    if (r == SKL_REMOVE_P && hp->final_norm) last = L - 1;
    if (last <= first)
        return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                     "removal 'p' does not apply: the only block is followed by a final norm");
    for (int32_t i = first; i < last; i++) {
        skl_layer *Li = &m->layers[i];
        if (!proj(Li, rm)->w.data)
            return mfail(g, SKL_ERR_ALREADY_MERGED, "layer %d has no %s_proj: the model is already merged that way", i,
                         rm == 'o' ? "o" : (char[]){rm, 0});
        if (serial && !Li->o.w.data)
            return mfail(g, SKL_ERR_ALREADY_MERGED, "layer %d has no o_proj: the model is already merged that way", i);
        /* A merge must not turn an absent (identity) projection back into a matrix. */
        const char *others = rm == 'q' ? "kv" : rm == 'k' ? "qv" : rm == 'v' ? "qk" : "";
        for (const char *c = others; *c; c++)
            if (!proj(Li, *c)->w.data)
                return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                             "layer %d: %c_proj is absent (identity); removing %s would bring it back", i, *c, name);
        if (r == SKL_REMOVE_Q && i > 0 && !m->layers[i - 1].o.w.data)
            return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                         "layer %d: o_proj is absent (identity); removing q from layer %d would bring it back", i - 1, i);
        if (r == SKL_REMOVE_P && i + 1 < L)
            for (const char *c = "qkv"; *c; c++)
                if (!proj(&m->layers[i + 1], *c)->w.data)
                    return mfail(g, SKL_ERR_MERGE_NOT_APPLICABLE,
                                 "layer %d: %c_proj is absent (identity); removing o_proj from layer %d would bring it "
                                 "back",
                                 i + 1, *c, i);
    }
    return SKL_OK;
}

static int choose_auto(merger *g, const skl_model *m, skl_removal *out) {
    static const skl_removal serial_order[] = {SKL_REMOVE_QP, SKL_REMOVE_KP, SKL_REMOVE_VP};
    /* q removes one d x d matrix from every block; p not from a last block before a final norm */
    static const skl_removal parallel_order[] = {SKL_REMOVE_Q, SKL_REMOVE_P};
    bool serial = m->hp.block_type == SKL_BLOCK_SERIAL;
    const skl_removal *order = serial ? serial_order : parallel_order;
    int n = serial ? 3 : 2;
    char reasons[512] = "";
    int first_status = 0;
    for (int i = 0; i < n; i++) {
        int rc = check_removal(g, m, order[i]);
        if (!rc) {
            *out = order[i];
            return SKL_OK;
        }
        if (!first_status) first_status = rc;
        size_t k = strlen(reasons);
        /* truncation is fine here (the reasons are a message); the check keeps gcc's
         * -Wformat-truncation quiet, which fires depending on how this function is inlined */
        if (snprintf(reasons + k, sizeof reasons - k, "%s%s: %s", i ? "; " : "", skl_removal_name(order[i]), g->msg) < 0)
            break;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "auto: no removal applies (%s)", reasons);
    return mfail(g, first_status, "%s", buf);
}

/* ------------------------------------------------------------ per block */

static int merge_serial_block(merger *g, int32_t i, char rm, double *cond, double *resid) {
    skl_model *m = g->m;
    int32_t d = m->hp.hidden_size;
    skl_layer *Li = &m->layers[i];
    skl_linear *R = proj(Li, rm);
    char name[16];
    snprintf(name, sizeof name, "%c_proj", rm);
    lu f;
    double *P = NULL;
    int rc = lu_factor(g, i, name, &R->w, d, LAPACK_COL_MAJOR, &f);
    if (rc) goto done;
    *cond = f.cond;
    /* the other two attention projections read R x now: X* = X R^-1, b*_X = b_X - X* b_R */
    for (const char *c = "qkv"; *c; c++)
        if (*c != rm && (rc = right_solve(g, &f, proj(Li, *c), &R->b, resid))) goto done;
    /* o_proj (P) folds into the FFN's first layers: G* = G P, b*_G = G b_P + b_G */
    if (!g->dry && !(P = to_f64(g, &Li->o.w, d, d, false))) { rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
    if (Li->gate.w.data && (rc = right_multiply(g, &Li->gate, d, P, &Li->o.b))) goto done;
    if ((rc = right_multiply(g, &Li->up, d, P, &Li->o.b))) goto done;
    /* the writer of the stream absorbs R: down*_{i-1} = R down_{i-1}, b* = R b + b_R */
    if (i == 0) rc = embed_absorb(g, f.orig, d, &R->b);
    else rc = left_multiply(g, f.orig, d, &m->layers[i - 1].down, d, m->hp.intermediate_size, &R->b);
    if (rc) goto done;
    skl_tensor_clear(&R->w);
    skl_tensor_clear(&R->b);
    skl_tensor_clear(&Li->o.w);
    skl_tensor_clear(&Li->o.b);
done:
    lu_free(&f);
    free(P);
    return rc;
}

static int merge_parallel_q(merger *g, int32_t i, double *cond, double *resid) {
    skl_model *m = g->m;
    int32_t d = m->hp.hidden_size;
    skl_layer *Li = &m->layers[i];
    lu f;
    int rc = lu_factor(g, i, "q_proj", &Li->q.w, d, LAPACK_COL_MAJOR, &f);
    if (rc) goto done;
    *cond = f.cond;
    /* every other reader of the stream: K, V, G, U */
    skl_linear *readers[4] = {&Li->k, &Li->v, &Li->gate, &Li->up};
    for (int r = 0; r < 4; r++)
        if ((r != 2 || Li->gate.w.data) && (rc = right_solve(g, &f, readers[r], &Li->q.b, resid))) goto done;
    /* writers: embedding, or o_proj and down_proj of the previous block (b_Q added once, to down) */
    if (i == 0) rc = embed_absorb(g, f.orig, d, &Li->q.b);
    else {
        skl_layer *Lp = &m->layers[i - 1];
        int32_t qd = m->hp.num_attention_heads * m->hp.head_dim;
        rc = left_multiply(g, f.orig, d, &Lp->o, d, qd, NULL);
        if (!rc) rc = left_multiply(g, f.orig, d, &Lp->down, d, m->hp.intermediate_size, &Li->q.b);
    }
    if (rc) goto done;
    skl_tensor_clear(&Li->q.w);
    skl_tensor_clear(&Li->q.b);
done:
    lu_free(&f);
    return rc;
}

/* D <- P^-1 D for D [n, cols] (f: ROW_MAJOR factorization of P); the residual
 * is that of D rounded to dtype dt, as it will be stored. */
static int left_solve(merger *g, const lu *f, double *D, int32_t cols, int dt, double *resid) {
    int32_t n = f->n;
    size_t cnt = (size_t)n * cols;
    double *d0 = scratch(g, 1, cnt); /* D, then the residual P stored(Y) - D; [n, cols] */
    if (!d0) return mfail(g, SKL_ERR_NOMEM, "out of memory");
    memcpy(d0, D, cnt * sizeof *d0);
    lapack_int info = LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', n, cols, f->a, n, f->ipiv, D, cols);
    if (info != 0) return mfail(g, SKL_ERR_INVALID_ARG, "dgetrs failed (%d)", (int)info);
    /* D <- stored(Y) in place (rounding is idempotent: storing it again gives the same values);
     * residual |P stored(Y) - D| / |D| */
    int rc = store_round(g, dt, D, n, cols);
    if (rc) return rc;
    double nd = frob(d0, cnt);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, n, 1.0, f->orig, n, D, cols, -1.0, d0, cols);
    double e = frob(d0, cnt) / fmax(nd, 1e-300);
    if (e > *resid) *resid = e;
    return SKL_OK;
}

/* The block now writes P^-1 x': down* = P^-1 down, b*_down = P^-1 (b_P + b_down). */
static int down_solve(merger *g, const lu *f, skl_layer *Li, int32_t d, int32_t fdim, double *resid) {
    double *down = scratch(g, 0, (size_t)d * fdim), *b = NULL; /* down: [d, fdim] */
    int rc = SKL_OK;
    if (!down) { rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
    widen(g, &Li->down.w, d, fdim, false, down);
    if ((rc = left_solve(g, f, down, fdim, target_dtype(g, &Li->down.w, fdim), resid))) goto done;
    if (Li->o.b.data || Li->down.b.data) {
        b = to_f64(g, &Li->down.b, 1, d, true);
        if (!b) { rc = mfail(g, SKL_ERR_NOMEM, "out of memory"); goto done; }
        for (int32_t j = 0; Li->o.b.data && j < d; j++) b[j] += skl_tensor_at(&Li->o.b, (size_t)j);
        if ((rc = left_solve(g, f, b, 1, target_dtype(g, &Li->down.b, 1), resid))) goto done;
        if ((rc = set_tensor(g, &Li->down.b, b, 1, d))) goto done;
    }
    if ((rc = set_tensor(g, &Li->down.w, down, d, fdim))) goto done;
done:
    free(b);
    return rc;
}

static int merge_parallel_p(merger *g, int32_t i, double *cond, double *resid) {
    skl_model *m = g->m;
    int32_t d = m->hp.hidden_size, fdim = m->hp.intermediate_size, L = m->hp.num_hidden_layers;
    skl_layer *Li = &m->layers[i];
    lu f;
    int rc = lu_factor(g, i, "o_proj", &Li->o.w, d, LAPACK_ROW_MAJOR, &f);
    if (rc) goto done;
    *cond = f.cond;
    if (g->dry) {
        if (Li->o.b.data || Li->down.b.data) set_layout(g, &Li->down.b, 1, d);
        set_layout(g, &Li->down.w, d, fdim);
    } else if ((rc = down_solve(g, &f, Li, d, fdim, resid))) goto done;
    /* every reader of the next stream absorbs P: X* = X P */
    if (i + 1 < L) {
        skl_layer *Ln = &m->layers[i + 1];
        skl_linear *readers[5] = {&Ln->q, &Ln->k, &Ln->v, &Ln->gate, &Ln->up};
        for (int r = 0; r < 5; r++)
            if ((r != 3 || Ln->gate.w.data) && (rc = right_multiply(g, readers[r], d, f.orig, NULL))) goto done;
    } else {
        /* the LM head (a tied head becomes its own matrix; the embedding is unchanged) */
        if ((rc = right_multiply(g, &m->head, d, f.orig, NULL))) goto done;
        m->hp.tie_word_embeddings = false;
    }
    skl_tensor_clear(&Li->o.w);
    skl_tensor_clear(&Li->o.b);
done:
    lu_free(&f);
    return rc;
}

/* ---------------------------------------------------------- verification */

static int probe_logits(const skl_model *m, const int32_t *tok, int32_t n, int threads, float **out) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = n;
    cp.n_threads = threads;
    cp.logits_all = true;
    skl_context *c;
    int rc = skl_context_create(m, &cp, &c);
    if (rc) return rc;
    rc = skl_eval(c, tok, n);
    if (!rc) {
        size_t cnt = (size_t)n * (size_t)m->hp.vocab_size;
        *out = malloc(cnt * sizeof **out);
        if (!*out) rc = skl_fail(SKL_ERR_NOMEM, "out of memory");
        else memcpy(*out, skl_logits(c, NULL), cnt * sizeof **out);
    }
    skl_context_free(c);
    return rc;
}

static int verify(const skl_model *a, const skl_model *b, int32_t n, uint64_t seed, int threads, double *err) {
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    float *la = NULL, *lb = NULL;
    if (!tok) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int32_t i = 0; i < n; i++) { /* xorshift64 */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        tok[i] = (int32_t)(s % (uint64_t)a->hp.vocab_size);
    }
    int rc = probe_logits(a, tok, n, threads, &la);
    if (!rc) rc = probe_logits(b, tok, n, threads, &lb);
    if (!rc) {
        /* fmax ignores a NaN operand: non-finite logits are counted apart */
        size_t cnt = (size_t)n * (size_t)a->hp.vocab_size, bad_a = 0, bad_b = 0;
        double md = 0.0, mx = 0.0;
        for (size_t i = 0; i < cnt; i++) {
            bad_a += !isfinite(la[i]);
            bad_b += !isfinite(lb[i]);
            md = fmax(md, fabs((double)la[i] - lb[i]));
            mx = fmax(mx, fabs((double)la[i]));
        }
        if (bad_a || mx == 0.0) { /* the probe carries nothing through the original model */
            *err = NAN;
            skl_log(SKL_LOG_WARN, "merge: verification inconclusive: %zu of the original's %zu probe logits are "
                    "not finite and the largest finite one is %g (its activations overflow or vanish on the probe)",
                    bad_a, cnt, mx);
        } else {
            *err = bad_b ? INFINITY : md / mx;
        }
    }
    free(tok);
    free(la);
    free(lb);
    return rc;
}

/* ------------------------------------------------------------------ main */

static uint64_t block_weights(const skl_model *m, int32_t layer) {
    uint64_t n = 0;
    for (skl_lin_iter it = skl_linears(m, layer, layer + 1, false); skl_lin_next(&it);) {
        const skl_tensor *w = &it.l->w;
        if (w->data) n += (uint64_t)w->rows * (uint64_t)w->cols;
    }
    return n;
}

/* One call of skl_model_merge or skl_model_merge_to. */
typedef struct merge_run {
    skl_merge_params p;
    merger g;
    skl_removal r;    /* AUTO resolved */
    report_impl *rep;
    int threads;      /* OpenBLAS's and the pool's */
    double t0;
} merge_run;

/* Every tensor the merge reads (the embedding, the blocks' weights and biases)
 * finite: a NaN or infinity would reach LAPACK as "argument 4 invalid" or a
 * false "singular", or spread silently through the solves. */
static int check_tensor_finite(merger *g, const skl_tensor *t, const char *what) {
    for (size_t n = t->data ? (size_t)t->rows * (size_t)t->cols : 0, k = 0; k < n; k++) {
        float v = skl_tensor_at(t, k);
        if (!isfinite(v))
            return mfail(g, SKL_ERR_NOT_FINITE, "%s [%d, %d] holds %s at [%zu, %zu]: refused before the merge", what,
                         t->rows, t->cols, isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", k / (size_t)t->cols,
                         k % (size_t)t->cols);
    }
    return SKL_OK;
}

static int check_finite(merger *g, const skl_model *m) {
    char name[96];
    int rc = check_tensor_finite(g, &m->embed, "model.embed_tokens.weight");
    for (skl_lin_iter it = skl_linears(m, 0, m->hp.num_hidden_layers, false); !rc && skl_lin_next(&it);) {
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", it.layer, it.name);
        rc = check_tensor_finite(g, &it.l->w, name);
        snprintf(name, sizeof name, "model.layers.%d.%s.bias", it.layer, it.name);
        if (!rc) rc = check_tensor_finite(g, &it.l->b, name);
    }
    return rc;
}

/* The parameters read and checked, the removal chosen, the report and the pool
 * allocated (g.m not yet: each caller clones). */
static int merge_begin(const skl_model *src, const skl_merge_params *params, const char *fn, merge_run *run) {
    skl_merge_params *p = &run->p;
    merger *g = &run->g;
    skl_removal *r = &run->r;
    report_impl **rep = &run->rep;
    int *threads = &run->threads;
    run->t0 = skl_now_s();
    skl_merge_params_init(p, sizeof *p);
    int rc = skl_params_read(p, sizeof *p, params, MERGE_PARAMS_V1, fn);
    if (rc) return rc;
    if (!skl_removal_name(p->remove)) return skl_fail(SKL_ERR_INVALID_ARG, "%s: unknown removal %d", fn, (int)p->remove);
    if (p->verify && p->n_probe_tokens < 1)
        return skl_fail(SKL_ERR_INVALID_ARG, "%s: n_probe_tokens %d must be >= 1", fn, p->n_probe_tokens);
    if (p->dtype < SKL_DTYPE_F32 || p->dtype > SKL_DTYPE_Q4_0)
        return skl_fail(SKL_ERR_INVALID_ARG, "%s: unknown dtype %d (expected F32, F16, BF16, SAME, Q8_0 or Q4_0)", fn,
                        (int)p->dtype);
    if (skl_dtype_quantized(p->dtype) && (rc = skl_quant_check_keep(p->keep, p->n_keep, src->hp.num_hidden_layers, fn)))
        return rc;
    if (p->max_condition < 0 || isnan(p->max_condition))
        return skl_fail(SKL_ERR_INVALID_ARG, "%s: max_condition %g must be >= 0", fn, p->max_condition);
    *g = (merger){.m = NULL, .dtype = (int)p->dtype, .new_dtype = src->embed.dtype, .keep = p->keep, .n_keep = p->n_keep,
                  .max_cond = p->max_condition > 0 ? p->max_condition : 0.01 / FP32_UNIT_ROUNDOFF};
    *r = p->remove;
    rc = *r == SKL_REMOVE_AUTO ? choose_auto(g, src, r) : check_removal(g, src, *r);
    if (!rc) rc = check_finite(g, src);
    if (rc) return skl_fail(rc, "%s: %s", src->path ? src->path : "model", g->msg);
    int32_t L = src->hp.num_hidden_layers;
    *rep = calloc(1, sizeof **rep);
    if (*rep) (*rep)->layers = calloc((size_t)L, sizeof *(*rep)->layers);
    if (!*rep || !(*rep)->layers) {
        if (*rep) skl_merge_report_free(&(*rep)->pub);
        return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", fn);
    }
    /* The merge runs on as many threads as OpenBLAS has now (the process's setting: all cores
     * by default, OPENBLAS_NUM_THREADS, or the host's openblas_set_num_threads); the pool does
     * the elementwise passes with the same count and sleeps while OpenBLAS runs. */
    *threads = openblas_get_num_threads();
    if (*threads < 1) *threads = 1;
    if (*threads > 1024) *threads = 1024;
    if ((rc = skl_pool_create(*threads, &g->pool))) {
        skl_merge_report_free(&(*rep)->pub);
        return rc;
    }
    skl_pool_set_spin(g->pool, 0);
    return SKL_OK;
}

/* A quantized merge: the linear weights of blocks [first, end) (and the head) that the
 * merge left unchanged, quantized too (from their stored dtype; dry: their layout). */
static int quantize_rest(merger *g, int32_t first, int32_t end, bool head) {
    if (!skl_dtype_quantized(g->dtype)) return SKL_OK;
    for (skl_lin_iter it = skl_linears(g->m, first, end, head); skl_lin_next(&it);) {
        skl_tensor *w = &it.l->w;
        int dt = w->data ? target_dtype(g, w, w->cols) : w->dtype;
        if (dt == w->dtype) continue; /* absent, kept, or already quantized so */
        if (it.lin == SKL_LIN_HEAD) g->m->hp.tie_word_embeddings = false; /* a tied head becomes its own matrix */
        if (g->dry) {
            set_layout(g, w, w->rows, w->cols);
            continue;
        }
        char name[96];
        skl_linear_module(it.layer, it.lin, name, sizeof name);
        skl_tensor q = {0};
        int rc = skl_tensor_quantize(w, dt, &q, name);
        if (rc) return mfail(g, rc, "%s", skl_last_error());
        skl_tensor_clear(w);
        *w = q;
    }
    return SKL_OK;
}

/* Streaming: write every tensor that belongs before block `until` (they are final) and
 * release them; the unchanged ones stay in the source's mapping (or, quantized, are
 * quantized now). */
static int stream_out(merger *g, int32_t until) {
    int32_t L0 = g->m->hp.num_hidden_layers;
    int rc = quantize_rest(g, 0, until < L0 ? until : L0, until > L0);
    if (rc) return rc;
    rc = skl_writer_put(g->w, g->m, until);
    if (rc) return mfail(g, rc, "%s", skl_last_error());
    int32_t L = g->m->hp.num_hidden_layers;
    if (until >= 0) skl_tensor_clear(&g->m->embed);
    for (skl_lin_iter it = skl_linears(g->m, 0, until < L ? until : L, false); skl_lin_next(&it);) {
        skl_tensor_clear(&it.l->w);
        skl_tensor_clear(&it.l->b);
    }
    return SKL_OK;
}

/* Every block of g->m in order, into rep's layers.  Streaming, after block i the
 * blocks before i are final (block i changes only itself and its neighbours) and
 * go out; at most two blocks' changed tensors are held. */
static int merge_blocks(merger *g, const skl_model *src, skl_removal r, report_impl *rep, const skl_merge_params *p) {
    int32_t L = src->hp.num_hidden_layers;
    int rc = SKL_OK;
    for (int32_t i = 0; i < L && !rc; i++) {
        skl_merge_layer *lr = &rep->layers[i];
        lr->layer = i;
        lr->weights_before = block_weights(src, i);
        if (r == SKL_REMOVE_QP || r == SKL_REMOVE_KP || r == SKL_REMOVE_VP) {
            char rm = r == SKL_REMOVE_QP ? 'q' : r == SKL_REMOVE_KP ? 'k' : 'v';
            rc = merge_serial_block(g, i, rm, &lr->condition, &lr->residual);
            lr->removed_q = rm == 'q';
            lr->removed_k = rm == 'k';
            lr->removed_v = rm == 'v';
            lr->removed_o = true;
        } else if (r == SKL_REMOVE_Q) {
            rc = merge_parallel_q(g, i, &lr->condition, &lr->residual);
            lr->removed_q = true;
        } else if (!(i == L - 1 && src->hp.final_norm)) {
            rc = merge_parallel_p(g, i, &lr->condition, &lr->residual);
            lr->removed_o = true;
        }
        if (!rc && g->w) rc = stream_out(g, i);
        if (!rc && !g->dry && p->progress && p->progress((uint64_t)i + 1, (uint64_t)L, p->progress_user_data))
            rc = mfail(g, SKL_ERR_CANCELLED, "cancelled by the progress callback after block %d of %d", i + 1, L);
    }
    return rc;
}

/* The merge recorded in m's config. */
static int merge_record(skl_model *m, skl_removal r) {
    json_t *hist = json_object_get(m->config, "skipless_merge");
    if (!json_is_array(hist)) {
        hist = json_array();
        if (hist && json_object_set_new(m->config, "skipless_merge", hist) != 0) hist = NULL;
    }
    if (!hist || json_array_append_new(hist, json_string(skl_removal_name(r))) != 0 ||
        json_object_set_new(m->config, "tie_word_embeddings", json_boolean(m->hp.tie_word_embeddings)) != 0)
        return skl_fail(SKL_ERR_NOMEM, "merge: out of memory");
    return SKL_OK;
}

/* The report's totals; m: the merged model (or its layout). */
static void report_fill(report_impl *rep, const skl_model *src, const skl_model *m, skl_removal r) {
    skl_weight_counts before, after;
    skl_model_weight_counts(src, &before, sizeof before);
    skl_model_weight_counts(m, &after, sizeof after);
    rep->pub.removal = r;
    rep->pub.n_layers = src->hp.num_hidden_layers;
    rep->pub.weights_before = before.linear_total;
    rep->pub.weights_after = after.linear_total;
    rep->pub.verify_error = -1.0;
    for (int32_t i = 0; i < rep->pub.n_layers; i++) {
        rep->layers[i].weights_after = block_weights(m, i);
        rep->pub.max_condition = fmax(rep->pub.max_condition, rep->layers[i].condition);
        rep->pub.max_residual = fmax(rep->pub.max_residual, rep->layers[i].residual);
    }
}

/* verify() as the merge's verify step: n probe tokens, the merge's threads restored after. */
static int merge_verify(const skl_model *src, const skl_model *m, const skl_merge_params *p, int threads,
                        report_impl *rep) {
    int32_t n = p->n_probe_tokens < src->hp.max_position_embeddings ? p->n_probe_tokens : src->hp.max_position_embeddings;
    rep->pub.n_probe_tokens = n;
    /* the probe contexts set OpenBLAS's thread count (context.c): the merge's, then restored */
    int rc = verify(src, m, n, p->probe_seed, threads, &rep->pub.verify_error);
    openblas_set_num_threads(threads);
    return rc;
}

/* A successful merge: the time, the log line, the report handed out (or freed). */
static int merge_end(merge_run *run, skl_merge_report **report) {
    report_impl *rep = run->rep;
    rep->pub.seconds = skl_now_s() - run->t0;
    skl_log(SKL_LOG_INFO, "merge '%s': %llu -> %llu weights, max condition %.3g, verify error %.3g",
            skl_removal_name(rep->pub.removal), (unsigned long long)rep->pub.weights_before,
            (unsigned long long)rep->pub.weights_after, rep->pub.max_condition, rep->pub.verify_error);
    if (report) *report = &rep->pub;
    else skl_merge_report_free(&rep->pub);
    return SKL_OK;
}

int skl_model_merge(const skl_model *src, const skl_merge_params *params, skl_model **out, skl_merge_report **report) {
    if (out) *out = NULL;
    if (report) *report = NULL;
    if (!src || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_merge: NULL model or out");
    merge_run run;
    int rc = merge_begin(src, params, "skl_model_merge", &run);
    if (rc) return rc;
    merger *g = &run.g;
    if (!(rc = skl_model_clone(src, &g->m))) {
        skl_log(SKL_LOG_INFO, "merge: removing %s from %d blocks", skl_removal_name(run.r), src->hp.num_hidden_layers);
        rc = merge_blocks(g, src, run.r, run.rep, &run.p);
        if (!rc) rc = quantize_rest(g, 0, src->hp.num_hidden_layers, true);
        if (rc) skl_fail(rc, "%s: merge '%s': %s", src->path ? src->path : "model", skl_removal_name(run.r), g->msg);
    }
    scratch_free(g);
    skl_pool_free(g->pool);
    if (!rc && !(rc = merge_record(g->m, run.r))) report_fill(run.rep, src, g->m, run.r);
    if (!rc && run.p.verify) rc = merge_verify(src, g->m, &run.p, run.threads, run.rep);
    if (rc) {
        skl_model_free(g->m);
        skl_merge_report_free(&run.rep->pub);
        return rc;
    }
    *out = g->m;
    return merge_end(&run, report);
}

/* Two passes over the blocks: the layout (the same merge without arithmetic: which
 * tensors change, disappear or appear, their shapes and dtypes) fixes every header;
 * then the merge itself, each tensor written as soon as it is final. */
int skl_model_merge_to(const skl_model *src, const char *path, const skl_merge_params *params,
                       const skl_save_params *sp, skl_merge_report **report) {
    if (report) *report = NULL;
    if (!src || !path || !*path) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_merge_to: NULL model or empty path");
    merge_run run;
    int rc = merge_begin(src, params, "skl_model_merge_to", &run);
    if (rc) return rc;
    merger *g = &run.g;
    skl_model *layout = NULL, *back = NULL;
    g->dry = true;
    if (!(rc = skl_model_clone(src, &layout))) {
        g->m = layout;
        rc = merge_blocks(g, src, run.r, run.rep, &run.p);
        if (!rc) rc = quantize_rest(g, 0, src->hp.num_hidden_layers, true);
        g->m = NULL;
    }
    g->dry = false;
    if (!rc && !(rc = merge_record(layout, run.r))) rc = skl_writer_open(layout, path, sp, &g->w);
    if (!rc && !(rc = skl_model_clone(src, &g->m))) {
        skl_log(SKL_LOG_INFO, "merge: removing %s from %d blocks into %s", skl_removal_name(run.r),
                src->hp.num_hidden_layers, path);
        rc = merge_blocks(g, src, run.r, run.rep, &run.p);
        if (!rc) rc = stream_out(g, INT32_MAX);
    }
    bool from_merge = rc && g->status; /* the message is in g->msg, else in skl_last_error() */
    scratch_free(g);
    skl_pool_free(g->pool);
    skl_model_free(g->m);
    if (rc) skl_writer_abort(g->w);
    else rc = skl_writer_finish(g->w); /* the renames: the output appears whole or not at all */
    if (from_merge) skl_fail(rc, "%s: merge '%s': %s", src->path ? src->path : "model", skl_removal_name(run.r), g->msg);
    if (!rc) report_fill(run.rep, src, layout, run.r);
    if (!rc && run.p.verify && !(rc = skl_model_load(path, NULL, &back)))
        rc = merge_verify(src, back, &run.p, run.threads, run.rep);
    skl_model_free(back);
    skl_model_free(layout);
    if (rc) {
        skl_merge_report_free(&run.rep->pub);
        return rc;
    }
    return merge_end(&run, report);
}
