/* tests.h - declarations shared by the libskipless unit tests (Check framework).
 *
 * The test models and their float64 reference logits are written by
 * test/models.py into the directory named by SKL_TEST_MODELS (default
 * build/testmodels); manifest.json there lists them. */
#ifndef SKL_TESTS_H
#define SKL_TESTS_H

#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "skipless.h"

/* Generous per-test timeout (seconds): the sanitizer build is slow. */
#define TEST_TIMEOUT 120

/* ---- suites (one per file) ---- */
Suite *logits_suite(void);
Suite *load_suite(void);
Suite *api_suite(void);
Suite *sampling_suite(void);
Suite *generate_suite(void);
Suite *merge_suite(void);
Suite *tokenizer_suite(void);
Suite *kernels_suite(void);
Suite *blas_suite(void);
Suite *regions_suite(void);
Suite *quant_suite(void);
Suite *qkernels_suite(void);

/* A suite as a table: one row a test.  Consecutive rows with the same tcase
 * share one TCase (its timeout: the largest of its rows).  A new test is one
 * row in its file's table:
 *
 *     const test_def tests[] = {   (automatic: Check's test names are variables)
 *         {"context", test_bad_token, 0, 0},
 *         {"threads", test_threads, TEST_EACH_MODEL, 0},
 *     };
 *     return test_suite("api", tests, TEST_COUNT(tests));
 */
typedef struct test_def {
    const char *tcase;
    const TTest *fn;
    int loop;    /* 0: run once; N > 0: _i = 0..N-1; TEST_EACH_MODEL / TEST_EACH_BAD / TEST_EACH_SHARDED /
                    TEST_EACH_QUANTIZED: _i = manifest entry */
    int timeout; /* seconds; 0: TEST_TIMEOUT */
} test_def;
#define TEST_EACH_MODEL (-1)
#define TEST_EACH_BAD (-2)
#define TEST_EACH_SHARDED (-3)
#define TEST_EACH_QUANTIZED (-4)
#define TEST_COUNT(table) (sizeof(table) / sizeof((table)[0]))
Suite *test_suite(const char *name, const test_def *defs, size_t n);

/* ---- test models (helpers.c) ---- */

/* $SKL_TEST_MODELS, or "build/testmodels" when unset. */
const char *test_models_dir(void);
/* "<models dir>/<rel>" in a static buffer (overwritten by the next call). */
const char *test_path(const char *rel);
/* The parsed manifest (caller json_decref()s it); fails the test when unreadable. */
json_t *test_manifest(void);
/* Number of entries of manifest["models"] / manifest["bad"]; 0 when the
 * manifest cannot be read (used to size loop tests at suite construction). */
int test_n_models(void);
int test_n_bad(void);
int test_n_sharded(void); /* manifest["sharded"]: sharded directories (index + shards) */
int test_n_quantized(void); /* manifest["quantized"]: quantized models (compressed-tensors) */
/* Entry i of manifest[section] (borrowed from manifest). */
const json_t *test_entry(const json_t *manifest, const char *section, int i);
/* The first entry of manifest["models"] named `name`; fails the test when absent. */
const json_t *test_find_model(const json_t *manifest, const char *name);
/* String field of a manifest entry (fails the test when absent). */
const char *test_str(const json_t *entry, const char *key);
/* Whether entry["features"] contains `feature`. */
int test_has_feature(const json_t *entry, const char *feature);

/* Load the model of a manifest entry; fails the test on error. */
skl_model *test_load(const json_t *entry);
/* Load the model at path, mapped or (use_mmap false) read onto huge pages; fails the test on error. */
skl_model *test_load_path(const char *path, bool use_mmap);
/* The prefill logits of toks[0..n) through m are bitwise `want` ([n, vocab]); else fails naming `what`. */
void test_same_logits(const skl_model *m, const int32_t *toks, int32_t n, const float *want, const char *what);
/* entry["tokens"] as a malloc'd array; *n gets its length. */
int32_t *test_tokens(const json_t *entry, int32_t *n);
/* The reference logits [*rows, *cols] (malloc'd float64) of an entry. */
double *test_ref(const json_t *entry, int64_t *rows, int64_t *cols);
/* The model's config JSON: config.json of a directory model, or the
 * __metadata__.config string of a single-file model (caller decrefs). */
json_t *test_model_config(const json_t *entry);
/* The config of the model at path: a directory's config.json or a file's __metadata__.config (caller decrefs). */
json_t *test_config_at(const char *path);
/* The bytes of tensor `name` of the model at path (a file, a directory or a sharded
 * directory): malloc'd, *len of them; fails the test when it is not there. */
void *test_tensor_data(const char *path, const char *name, size_t *len);
/* The models at a and b hold the same tensors: names, dtypes, shapes and bytes (in any
 * order and any shards); else fails naming `what` and the first tensor that differs. */
void test_same_tensors(const char *a, const char *b, const char *what);
/* The safetensors header object of the model's weights file (caller decrefs). */
json_t *test_st_header(const json_t *entry);
/* The same for a safetensors file at `path`. */
json_t *test_st_header_path(const char *path);
/* The tensors' header of the model at `path`: a .safetensors file, a
 * directory's model.safetensors, or a sharded directory's shards merged
 * (without __metadata__). */
json_t *test_model_header(const char *path);

/* One manifest model, opened: what most model tests start from. */
typedef struct test_model {
    json_t *manifest;
    const json_t *entry; /* manifest["models"][i] */
    const char *name;
    skl_model *model;
    skl_hparams hp;
    int32_t *tokens, n; /* entry["tokens"] (the reference's input) */
} test_model;
/* manifest["models"][i] / the model named `name`; fails the test on any error. */
void test_open(test_model *t, int i);
void test_open_named(test_model *t, const char *name);
void test_close(test_model *t);

/* ---- logits against the float64 reference ---- */

/* The tolerance rule: the max relative error (rel_error) of the logits
 * against test/reference.py's float64 logits is below TEST_TOL for F32, F16
 * and BF16 weights computed in float32; below test_storage_tol(dtype) for a
 * model whose (merged) weights were rounded to `dtype` on top of that. */
#define TEST_TOL 1e-4
/* 8 unit roundoffs of F16 (2^-11) or BF16 (2^-8); TEST_TOL for anything else.
 * Rounding perturbs each weight by up to one unit roundoff and the logits of
 * these 2-3 layer models by a few (measured: at most 4.1 for F16, 4.3 for BF16). */
double test_storage_tol(const char *dtype);

/* How the logits are computed (zero-initialised fields are the defaults). */
typedef struct test_eval {
    bool decode;       /* one skl_eval per token (the decode path); else one skl_eval for all */
    bool last_row;     /* (not decode) logits_all off: only the last row comes back */
    int32_t n_batch;   /* context n_batch; 0: the library default */
    int32_t n_threads; /* context n_threads; 0: the library default (1) */
} test_eval;
#define TEST_PREFILL ((test_eval){.decode = false})
#define TEST_DECODE ((test_eval){.decode = true})
/* "prefill", "decode", "prefill n_batch 3 last row 2 threads", ... (static buffer). */
const char *test_eval_name(test_eval how);
/* Rows of logits `how` yields for n tokens: 1 when last_row, else n. */
int32_t test_eval_rows(test_eval how, int32_t n);

/* A context for `how` (n_ctx 0: max_position_embeddings); fails the test on error. */
skl_context *test_context(const skl_model *m, test_eval how, int32_t n_ctx);
/* skl_eval of toks[0..n) in one call; checks SKL_OK, that n_past grew by n
 * and that `rows` logit rows came back; returns skl_logits(). */
const float *test_eval_tokens(skl_context *ctx, const int32_t *toks, int32_t n, int32_t rows, const char *what);
/* Logits of toks[0..n) on a fresh context, as `how` says: malloc'd
 * [test_eval_rows(how, n), vocab_size] floats (each decode step's last row). */
float *test_logits(const skl_model *m, const int32_t *toks, int32_t n, test_eval how);

/* lg [rows, V] against rows row0.. of entry's reference (whose shape must be
 * [len(entry tokens), V]); fails the test, naming entry, `what` and the error,
 * unless the error is below tol.  Returns the error. */
double test_check_ref(const float *lg, int32_t V, const json_t *entry, int32_t row0, int32_t rows, double tol,
                      const char *what);
/* THE logits check: entry's tokens through m (entry's own model, or one made
 * from it: merged, saved and reloaded, forced to a kernel variant) as `how`
 * says, against entry's reference within tol (TEST_TOL or test_storage_tol).
 * The last row only for how.last_row.  `what` (may be NULL) goes into the
 * message.  Returns the error. */
double test_logits_vs_ref(const skl_model *m, const json_t *entry, test_eval how, double tol, const char *what);

/* ---- sampling ---- */

/* *gp for max_tokens new tokens, sampling with *sp (both initialised, gp->sampling = sp):
 * temperature 0: greedy; > 0: that temperature over the whole distribution
 * (top_k 0, top_p 1); TEST_SAMPLER_DEFAULT: the sampler's defaults. */
#define TEST_SAMPLER_DEFAULT (-1.0f)
void test_generate_params(skl_generate_params *gp, skl_sampler_params *sp, int32_t max_tokens, float temperature);
/* skl_sample of logits[n]; fails the test unless SKL_OK and the token is in [0, n). */
int32_t test_sample(skl_sampler *s, const float *logits, int32_t n);

/* ---- memory ---- */

/* Reset the process's peak resident set (VmHWM) to its current size (/proc/self/clear_refs);
 * test_rss_growth() is then the growth of the peak since, in bytes. */
void test_rss_reset(void);
uint64_t test_rss_growth(void);
/* A directory model in a fresh /tmp directory: entry's weights (a symlink) under its config
 * with max_position_embeddings set to n_pos.  *dir gets the path (room for 64 bytes). */
void test_long_model(const json_t *entry, int32_t n_pos, char *dir);
void remove_long_model(const char *dir);

/* ---- numerics ---- */

/* max|c - r| / max|r| over n values (INFINITY if c has a NaN or r is all zero). */
double rel_error(const float *c, const double *r, size_t n);
double rel_error_f(const float *c, const float *r, size_t n);
/* Index of the largest value, lowest index on ties. */
int32_t argmax_f(const float *x, int32_t n);
int32_t argmax_d(const double *x, int32_t n);
/* Seeded uniform values in [-1, 1) (xorshift64*; one stream per test process,
 * so a case's values depend on the cases before it in its process only). */
double test_urand(void);
/* The value of an IEEE half, decoded here (not by the library). */
double test_half_value(uint16_t h);

#endif
