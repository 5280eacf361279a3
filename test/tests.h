/* tests.h - declarations shared by the libskipless unit tests (Check framework).
 *
 * The test models and their float64 reference logits are written by
 * test/models.py into the directory named by SKL_TEST_MODELS (default
 * build/testmodels); manifest.json there lists them. */
#ifndef SKL_TESTS_H
#define SKL_TESTS_H

#include <check.h>
#include <jansson.h>
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
Suite *merge_suite(void);
Suite *tokenizer_suite(void);
Suite *kernels_suite(void);
Suite *blas_suite(void);
Suite *regions_suite(void);

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
/* entry["tokens"] as a malloc'd array; *n gets its length. */
int32_t *test_tokens(const json_t *entry, int32_t *n);
/* The reference logits [*rows, *cols] (malloc'd float64) of an entry. */
double *test_ref(const json_t *entry, int64_t *rows, int64_t *cols);
/* The model's config JSON: config.json of a directory model, or the
 * __metadata__.config string of a single-file model (caller decrefs). */
json_t *test_model_config(const json_t *entry);
/* The safetensors header object of the model's weights file (caller decrefs). */
json_t *test_st_header(const json_t *entry);
/* The same for a safetensors file at `path`. */
json_t *test_st_header_path(const char *path);

/* ---- numerics ---- */

/* max|c - r| / max|r| over n values (INFINITY if c has a NaN or r is all zero). */
double rel_error(const float *c, const double *r, size_t n);
double rel_error_f(const float *c, const float *r, size_t n);
/* Index of the largest value, lowest index on ties. */
int32_t argmax_f(const float *x, int32_t n);

#endif
