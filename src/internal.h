/* internal.h - types shared by the library's source files (not installed). */
#ifndef SKL_INTERNAL_H
#define SKL_INTERNAL_H

#include "skipless.h"
#include "abi.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- errors and logging (error.c) ---- */

/* Record a formatted message as this thread's last error, log it, return status. */
int skl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void skl_log(skl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- checked arithmetic ---- */

static inline int skl_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int skl_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* ---- reference-counted storage for weights (model.c) ----
 * A buffer is either malloc'd or a read-only file mapping.  Tensors of a model
 * (and of a merged model derived from it) point into buffers and hold a
 * reference, so unchanged weights are shared rather than copied. */
typedef struct skl_buf {
    atomic_int refs;
    void *base;
    size_t len;
    size_t map_len; /* bytes to munmap when larger than len (anonymous copy), else 0 */
    int mapped;     /* 1: munmap on release, 0: free */
} skl_buf;

skl_buf *skl_buf_new(size_t len);  /* malloc'd, refs = 1; NULL on failure */
skl_buf *skl_buf_retain(skl_buf *b);
void skl_buf_release(skl_buf *b);

/* ---- safetensors container (safetensors.c) ---- */

/* Equal to the public SKL_DTYPE_F32 / F16 / BF16. */
enum { SKL_DT_F32 = SKL_DTYPE_F32, SKL_DT_F16 = SKL_DTYPE_F16, SKL_DT_BF16 = SKL_DTYPE_BF16 };
#define SKL_ST_MAX_DIMS 8

typedef struct skl_st_tensor {
    const char *name;  /* points into the header JSON (kept alive by skl_st_file) */
    int dtype;
    int ndim;
    uint64_t shape[SKL_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data area */
} skl_st_tensor;

typedef struct skl_st_file {
    skl_buf *map;        /* the whole file, mapped read-only */
    const uint8_t *data; /* start of the data area */
    uint64_t data_size;
    json_t *header;      /* parsed header (owns the tensor names) */
    json_t *metadata;    /* header's __metadata__ object or NULL (borrowed) */
    skl_st_tensor *tensors;
    size_t n_tensors;
} skl_st_file;

/* Map and fully validate a safetensors file (layout only, not model shapes).
 * use_mmap: use the file mapping in place; else read the file into anonymous
 * memory on transparent huge pages (2 MiB aligned, MADV_HUGEPAGE, read-only
 * after loading) and drop the file's page cache (POSIX_FADV_DONTNEED). */
int skl_st_open(const char *path, bool use_mmap, skl_st_file *out);
void skl_st_close(skl_st_file *f);
const skl_st_tensor *skl_st_find(const skl_st_file *f, const char *name);
/* Dtype element size, name. */
size_t skl_dtype_size(int dtype);
const char *skl_dtype_name(int dtype);

/* Parse JSON text rejecting duplicate keys; maps jansson errors to statuses. */
int skl_json_parse(const char *text, size_t len, const char *what, json_t **out);

/* ---- config (config.c) ---- */

/* Fill hp from a config object (tensor-dependent fields glu/final_norm left false). */
int skl_config_parse(const json_t *cfg, const char *what, skl_hparams *hp);

/* ---- tokenizer (tokenizer.c) ---- */

/* A parsed tokenizer.json, reference counted (a merged model shares its
 * source's). */
typedef struct skl_tok skl_tok;
/* Parse tokenizer.json text; `what` names it in messages.  A well-formed but
 * unsupported file gives a tokenizer whose calls fail with SKL_ERR_UNSUPPORTED. */
int skl_tok_load(const char *text, size_t len, const char *what, skl_tok **out);
skl_tok *skl_tok_retain(skl_tok *t);
void skl_tok_release(skl_tok *t);
/* The JSON text as loaded (for save). */
const char *skl_tok_text(const skl_tok *t, size_t *len);

/* ---- model (model.c) ---- */

/* A [rows, cols] row-major matrix (or a vector with rows = 1) of dtype
 * SKL_DT_F32, F16 or BF16 (the file's dtype; F16/BF16 stay 16-bit in memory,
 * little-endian, as in the file).  data == NULL: absent. */
typedef struct skl_tensor {
    const void *data;
    int dtype;
    int32_t rows, cols;
    skl_buf *owner; /* holds data alive */
} skl_tensor;

/* Element i (row-major) of a tensor as float. */
static inline float skl_tensor_at(const skl_tensor *t, size_t i);

/* y = W x + b, W [out, in].  w.data == NULL: the identity (out == in). */
typedef struct skl_linear {
    skl_tensor w;
    skl_tensor b; /* [1, out] or absent */
} skl_linear;

typedef struct skl_layer {
    skl_linear q, k, v, o;        /* o is the paper's P */
    skl_linear gate, up, down;    /* down is the paper's O; gate absent: plain MLP */
} skl_layer;

struct skl_model {
    skl_hparams hp;
    skl_layer *layers;    /* [L] */
    skl_tensor embed;     /* [V, d] */
    skl_linear head;      /* [V, d]; tied: w shares embed's storage */
    skl_tensor norm;      /* [1, d] or absent */
    json_t *config;       /* the config object as loaded (for save) */
    char *path;
    skl_tok *tok;         /* tokenizer or NULL */
    int32_t eos_token_id; /* config "eos_token_id", -1 if absent */
};

void skl_tensor_clear(skl_tensor *t);

/* The 7 linear layers of a block in a fixed order, with their HF name stems. */
enum { SKL_LIN_Q, SKL_LIN_K, SKL_LIN_V, SKL_LIN_O, SKL_LIN_GATE, SKL_LIN_UP, SKL_LIN_DOWN, SKL_LIN_COUNT };
extern const char *const skl_linear_names[SKL_LIN_COUNT]; /* "self_attn.q_proj", ... */
skl_linear *skl_layer_linear(skl_layer *l, int lin);

/* Monotonic wall clock in seconds (timings in reports). */
double skl_now_s(void);
/* A new model sharing every tensor of src (reference counted). */
int skl_model_clone(const skl_model *src, skl_model **out);

/* ---- kernels (kernels.c) ----
 * Variants chosen at run time by CPU features; see kernels.c. */
enum { SKL_KERN_GENERIC = 0, SKL_KERN_AVX2 = 1, SKL_KERN_AVX512 = 2, SKL_KERN_COUNT };
int skl_kernels_supported(int id);       /* 1 if this CPU runs variant id */
const char *skl_kernels_name(int id);    /* "generic", "avx2", "avx512"; NULL if unknown */
/* Use variant id from now on (tests); id < 0: back to the best supported.
 * Returns -1 (nothing changed) if the variant is unknown or unsupported.
 * Not to be called while another thread evaluates a context. */
int skl_kernels_force(int id);
/* y[r] = sum_c W[r * ld + c] x[c] for r in [r0, r1), W of dtype (fp32 accumulation). */
void skl_gemv(int dtype, const void *W, size_t ld, int32_t cols, const float *x, float *y, int32_t r0, int32_t r1);
/* y[r] = W[r] . x and y1[r] = W1[r] . x for r in [r0, r1): two matrices of the same dtype,
 * shape and ld (gate_proj and up_proj), read as one stream of passes; each value equals skl_gemv's. */
void skl_gemv2(int dtype, const void *W, const void *W1, size_t ld, int32_t cols, const float *x, float *y, float *y1,
               int32_t r0, int32_t r1);
/* out[cols] = sum_j p[j] V[j * ld + c] (fp32). */
void skl_axpy_rows(const float *V, size_t ld, int32_t rows, int32_t cols, const float *p, float *out);
/* s[j] = exp(scale s[j] - max) / sum over j in [0, len), in place, len >= 1
 * (attention weights; exp with a polynomial of about 2 ulp in the vector variants). */
void skl_softmax(float *s, int32_t len, float scale);
/* dst[n] = src[n] of dtype, widened to fp32 (exact). */
void skl_to_f32(int dtype, const void *src, float *dst, size_t n);
float skl_f16_to_f32(uint16_t h);
uint16_t skl_f32_to_f16(float f);   /* round to nearest even; overflow to inf */
uint16_t skl_f32_to_bf16(float f);  /* round to nearest even */
float skl_elem(int dtype, const void *base, size_t i);

static inline float skl_tensor_at(const skl_tensor *t, size_t i) { return skl_elem(t->dtype, t->data, i); }

/* ---- thread pool (pool.c) ---- */
typedef struct skl_pool skl_pool;
typedef void (*skl_chunk_fn)(void *arg, int64_t chunk);
int skl_pool_create(int n_threads, skl_pool **out); /* n_threads - 1 workers + the caller */
void skl_pool_free(skl_pool *p);
int skl_pool_size(const skl_pool *p);
/* fn(arg, k) once for each k in [0, n_chunks), on the caller and the workers
 * (chunks taken from a shared counter); returns when all are done.  Which
 * thread runs a chunk must not matter to fn. */
void skl_pool_for(skl_pool *p, int64_t n_chunks, skl_chunk_fn fn, void *arg);
/* spin = 0: idle workers sleep at once (set before OpenBLAS runs); 1: spin briefly first. */
void skl_pool_set_spin(skl_pool *p, int spin);

/* ---- BLAS setup (blas.c) ---- */
/* Once per process, before the library's first BLAS call: make OpenBLAS use the
 * kernels this CPU supports (see blas.c).  Called by skl_model_load. */
void skl_blas_setup(void);

/* ---- context (context.c) ---- */
const skl_model *skl_context_model(const skl_context *ctx);

#endif
