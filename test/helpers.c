/* helpers.c - suite tables, manifest, model and reference helpers shared by the tests. */
#include "tests.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/npy.h"

Suite *test_suite(const char *name, const test_def *defs, size_t n) {
    Suite *s = suite_create(name);
    TCase *tc = NULL;
    int timeout = 0;
    for (size_t i = 0; i < n; i++) {
        const test_def *d = &defs[i];
        if (!tc || (i > 0 && strcmp(d->tcase, defs[i - 1].tcase) != 0)) {
            tc = tcase_create(d->tcase);
            suite_add_tcase(s, tc);
            timeout = 0;
        }
        int t = d->timeout ? d->timeout : TEST_TIMEOUT;
        if (t > timeout) tcase_set_timeout(tc, timeout = t);
        int loops = d->loop == TEST_EACH_MODEL       ? test_n_models()
                    : d->loop == TEST_EACH_BAD       ? test_n_bad()
                    : d->loop == TEST_EACH_SHARDED   ? test_n_sharded()
                    : d->loop == TEST_EACH_QUANTIZED ? test_n_quantized()
                                                     : d->loop;
        if (d->loop == 0) tcase_add_test(tc, d->fn);
        else tcase_add_loop_test(tc, d->fn, 0, loops);
    }
    return s;
}

const char *test_models_dir(void) {
    const char *d = getenv("SKL_TEST_MODELS");
    return d && *d ? d : "build/testmodels";
}

const char *test_path(const char *rel) {
    static char buf[3800];
    snprintf(buf, sizeof buf, "%s/%s", test_models_dir(), rel);
    return buf;
}

static json_t *load_manifest(json_error_t *err) {
    return json_load_file(test_path("manifest.json"), 0, err);
}

json_t *test_manifest(void) {
    json_error_t err;
    json_t *m = load_manifest(&err);
    ck_assert_msg(m != NULL, "cannot read %s: %s (run test/models.py first)",
                  test_path("manifest.json"), err.text);
    return m;
}

static int section_size(const char *section) {
    json_error_t err;
    json_t *m = load_manifest(&err);
    if (!m) return 0;
    int n = (int)json_array_size(json_object_get(m, section));
    json_decref(m);
    return n;
}

int test_n_models(void) { return section_size("models"); }
int test_n_bad(void) { return section_size("bad"); }
int test_n_sharded(void) { return section_size("sharded"); }
int test_n_quantized(void) { return section_size("quantized"); }

const json_t *test_entry(const json_t *manifest, const char *section, int i) {
    const json_t *e = json_array_get(json_object_get(manifest, section), (size_t)i);
    ck_assert_msg(e != NULL, "manifest has no %s[%d]", section, i);
    return e;
}

const json_t *test_find_model(const json_t *manifest, const char *name) {
    const json_t *arr = json_object_get(manifest, "models");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        if (!strcmp(json_string_value(json_object_get(e, "name")), name)) return e;
    }
    ck_abort_msg("manifest has no model named %s", name);
    return NULL;
}

const char *test_str(const json_t *entry, const char *key) {
    const char *s = json_string_value(json_object_get(entry, key));
    ck_assert_msg(s != NULL, "manifest entry has no string \"%s\"", key);
    return s;
}

int test_has_feature(const json_t *entry, const char *feature) {
    const json_t *f = json_object_get(entry, "features");
    for (size_t i = 0; i < json_array_size(f); i++)
        if (!strcmp(json_string_value(json_array_get(f, i)), feature)) return 1;
    return 0;
}

skl_model *test_load(const json_t *entry) {
    skl_model *m = NULL;
    int rc = skl_model_load(test_path(test_str(entry, "path")), NULL, &m);
    ck_assert_msg(rc == SKL_OK && m != NULL, "loading %s: %s (%s)", test_str(entry, "name"),
                  skl_strerror(rc), skl_last_error());
    return m;
}

skl_model *test_load_path(const char *path, bool use_mmap) {
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    mp.use_mmap = use_mmap;
    skl_model *m = NULL;
    int rc = skl_model_load(path, &mp, &m);
    ck_assert_msg(rc == SKL_OK && m != NULL, "loading %s%s: %s (%s)", path, use_mmap ? "" : " (no mmap)",
                  skl_strerror(rc), skl_last_error());
    return m;
}

void test_same_logits(const skl_model *m, const int32_t *toks, int32_t n, const float *want, const char *what) {
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    float *got = test_logits(m, toks, n, TEST_PREFILL);
    ck_assert_msg(!memcmp(got, want, (size_t)n * (size_t)hp.vocab_size * sizeof *got), "%s: logits differ", what);
    free(got);
}

int32_t *test_tokens(const json_t *entry, int32_t *n) {
    const json_t *t = json_object_get(entry, "tokens");
    size_t len = json_array_size(t);
    ck_assert_msg(len > 0, "%s: no tokens in the manifest", test_str(entry, "name"));
    int32_t *out = malloc(len * sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < len; i++) out[i] = (int32_t)json_integer_value(json_array_get(t, i));
    *n = (int32_t)len;
    return out;
}

double *test_ref(const json_t *entry, int64_t *rows, int64_t *cols) {
    double *data = NULL;
    char err[256] = "";
    int rc = npy_read(test_path(test_str(entry, "ref")), &data, rows, cols, err, sizeof err);
    ck_assert_msg(rc == 0, "reading %s: %s", test_str(entry, "ref"), err);
    return data;
}

json_t *test_st_header(const json_t *entry) { return test_model_header(test_path(test_str(entry, "path"))); }

json_t *test_model_header(const char *path) {
    char p[4200];
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return test_st_header_path(path);
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    if (stat(p, &st) == 0) return test_st_header_path(p);
    /* sharded: every shard the index names, once */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    json_error_t err;
    json_t *index = json_load_file(p, 0, &err), *merged = json_object(), *done = json_object();
    ck_assert_msg(index != NULL, "%s: neither model.safetensors nor a readable index: %s", path, err.text);
    const char *key;
    json_t *val;
    json_object_foreach(json_object_get(index, "weight_map"), key, val) {
        const char *shard = json_string_value(val);
        if (json_object_get(done, shard)) continue;
        json_object_set_new(done, shard, json_true());
        snprintf(p, sizeof p, "%s/%s", path, shard);
        json_t *h = test_st_header_path(p);
        json_object_del(h, "__metadata__");
        json_object_update(merged, h);
        json_decref(h);
    }
    json_decref(done);
    json_decref(index);
    return merged;
}

json_t *test_st_header_path(const char *path) {
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    unsigned char len8[8];
    ck_assert_msg(fread(len8, 1, 8, fp) == 8, "%s: short read", path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    ck_assert_msg(n > 0 && n < (1u << 26), "%s: header length %llu", path, (unsigned long long)n);
    char *text = malloc((size_t)n);
    ck_assert_ptr_nonnull(text);
    size_t got = fread(text, 1, (size_t)n, fp);
    fclose(fp);
    json_error_t err;
    json_t *h = got == n ? json_loadb(text, (size_t)n, 0, &err) : NULL;
    free(text);
    ck_assert_msg(h != NULL && json_is_object(h), "%s: cannot parse the header", path);
    return h;
}

json_t *test_model_config(const json_t *entry) { return test_config_at(test_path(test_str(entry, "path"))); }

json_t *test_config_at(const char *path) {
    json_error_t err;
    json_t *cfg;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* dir or sharded */
        char p[4200];
        snprintf(p, sizeof p, "%s/config.json", path);
        cfg = json_load_file(p, 0, &err);
        ck_assert_msg(cfg != NULL, "%s: %s", p, err.text);
    } else {
        json_t *h = test_st_header_path(path);
        const char *s = json_string_value(json_object_get(json_object_get(h, "__metadata__"), "config"));
        ck_assert_msg(s != NULL, "%s: no __metadata__.config string", path);
        cfg = json_loads(s, 0, &err);
        json_decref(h);
        ck_assert_msg(cfg != NULL, "%s: embedded config: %s", path, err.text);
    }
    return cfg;
}

/* The safetensors file of the model at path that holds tensor `name`, into file[size]. */
static void tensor_file(const char *path, const char *name, char *file, size_t size) {
    struct stat st;
    snprintf(file, size, "%s", path);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    snprintf(file, size, "%s/model.safetensors", path);
    if (stat(file, &st) == 0) return;
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", path);
    json_t *index = json_load_file(p, 0, NULL);
    const char *shard = json_string_value(json_object_get(json_object_get(index, "weight_map"), name));
    ck_assert_msg(shard != NULL, "%s: tensor %s is not in the index", path, name);
    snprintf(file, size, "%s/%s", path, shard);
    json_decref(index);
}

void *test_tensor_data(const char *path, const char *name, size_t *len) {
    char file[4300];
    tensor_file(path, name, file, sizeof file);
    json_t *h = test_st_header_path(file);
    const json_t *off = json_object_get(json_object_get(h, name), "data_offsets");
    ck_assert_msg(json_array_size(off) == 2, "%s: no tensor %s", file, name);
    uint64_t b = (uint64_t)json_integer_value(json_array_get(off, 0)), e = (uint64_t)json_integer_value(json_array_get(off, 1));
    json_decref(h);
    FILE *fp = fopen(file, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", file);
    unsigned char len8[8];
    ck_assert_int_eq(fread(len8, 1, 8, fp), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    *len = (size_t)(e - b);
    void *data = malloc(*len ? *len : 1);
    ck_assert_ptr_nonnull(data);
    ck_assert_msg(fseek(fp, (long)(8 + n + b), SEEK_SET) == 0 && fread(data, 1, *len, fp) == *len, "%s: short read of %s",
                  file, name);
    fclose(fp);
    return data;
}

void test_same_tensors(const char *a, const char *b, const char *what) {
    json_t *ha = test_model_header(a), *hb = test_model_header(b);
    json_object_del(ha, "__metadata__");
    json_object_del(hb, "__metadata__");
    ck_assert_msg(json_object_size(ha) == json_object_size(hb), "%s: %zu tensors in %s, %zu in %s", what,
                  json_object_size(ha), a, json_object_size(hb), b);
    const char *key;
    json_t *val;
    json_object_foreach(ha, key, val) {
        const json_t *other = json_object_get(hb, key);
        ck_assert_msg(other != NULL, "%s: tensor %s of %s is not in %s", what, key, a, b);
        ck_assert_msg(json_equal(json_object_get(val, "dtype"), json_object_get(other, "dtype")) &&
                          json_equal(json_object_get(val, "shape"), json_object_get(other, "shape")),
                      "%s: tensor %s: %s %s in %s, %s %s in %s", what, key,
                      json_string_value(json_object_get(val, "dtype")), json_dumps(json_object_get(val, "shape"), 0), a,
                      json_string_value(json_object_get(other, "dtype")), json_dumps(json_object_get(other, "shape"), 0), b);
        size_t la, lb;
        void *da = test_tensor_data(a, key, &la), *db = test_tensor_data(b, key, &lb);
        ck_assert_msg(la == lb && memcmp(da, db, la) == 0, "%s: tensor %s differs between %s and %s", what, key, a, b);
        free(da);
        free(db);
    }
    json_decref(ha);
    json_decref(hb);
}

void test_open(test_model *t, int i) {
    memset(t, 0, sizeof *t);
    t->manifest = test_manifest();
    t->entry = test_entry(t->manifest, "models", i);
    t->name = test_str(t->entry, "name");
    t->model = test_load(t->entry);
    ck_assert_int_eq(skl_model_hparams(t->model, &t->hp, sizeof t->hp), SKL_OK);
    t->tokens = test_tokens(t->entry, &t->n);
}

void test_open_named(test_model *t, const char *name) {
    json_t *man = test_manifest();
    const json_t *arr = json_object_get(man, "models");
    test_find_model(man, name); /* fails the test when absent */
    size_t i = 0;
    while (strcmp(json_string_value(json_object_get(json_array_get(arr, i), "name")), name) != 0) i++;
    json_decref(man);
    test_open(t, (int)i);
}

void test_close(test_model *t) {
    free(t->tokens);
    skl_model_free(t->model);
    json_decref(t->manifest);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------- logits vs the reference */

double test_storage_tol(const char *dtype) {
    if (dtype && !strcmp(dtype, "F16")) return 8 * 0x1.0p-11;
    if (dtype && !strcmp(dtype, "BF16")) return 8 * 0x1.0p-8;
    return TEST_TOL;
}

const char *test_eval_name(test_eval how) {
    static char buf[128];
    int k = snprintf(buf, sizeof buf, "%s", how.decode ? "decode" : "prefill");
    if (how.n_batch) k += snprintf(buf + k, sizeof buf - (size_t)k, " n_batch %d", how.n_batch);
    if (how.last_row) k += snprintf(buf + k, sizeof buf - (size_t)k, " last row");
    if (how.n_threads) snprintf(buf + k, sizeof buf - (size_t)k, " %d threads", how.n_threads);
    return buf;
}

int32_t test_eval_rows(test_eval how, int32_t n) { return how.last_row && !how.decode ? 1 : n; }

skl_context *test_context(const skl_model *m, test_eval how, int32_t n_ctx) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.logits_all = !how.decode && !how.last_row;
    cp.n_ctx = n_ctx;
    if (how.n_batch) cp.n_batch = how.n_batch;
    if (how.n_threads) cp.n_threads = how.n_threads;
    skl_context *ctx = NULL;
    int rc = skl_context_create(m, &cp, &ctx);
    ck_assert_msg(rc == SKL_OK && ctx != NULL, "context (%s): %s (%s)", test_eval_name(how), skl_strerror(rc),
                  skl_last_error());
    return ctx;
}

const float *test_eval_tokens(skl_context *ctx, const int32_t *toks, int32_t n, int32_t rows, const char *what) {
    int32_t before = skl_context_n_past(ctx), got_rows = -1;
    int rc = skl_eval(ctx, toks, n);
    ck_assert_msg(rc == SKL_OK, "%s: skl_eval of %d tokens: %s (%s)", what, n, skl_strerror(rc), skl_last_error());
    ck_assert_msg(skl_context_n_past(ctx) == before + n, "%s: n_past %d after %d + %d tokens", what,
                  skl_context_n_past(ctx), before, n);
    const float *lg = skl_logits(ctx, &got_rows);
    ck_assert_msg(lg != NULL && got_rows == rows, "%s: %d logit rows, expected %d", what, got_rows, rows);
    return lg;
}

float *test_logits(const skl_model *m, const int32_t *toks, int32_t n, test_eval how) {
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    size_t V = (size_t)hp.vocab_size;
    int32_t rows = test_eval_rows(how, n);
    const char *what = test_eval_name(how);
    float *out = malloc((size_t)rows * V * sizeof *out);
    ck_assert_ptr_nonnull(out);
    skl_context *ctx = test_context(m, how, 0);
    if (how.decode)
        for (int32_t i = 0; i < n; i++)
            memcpy(out + (size_t)i * V, test_eval_tokens(ctx, &toks[i], 1, 1, what), V * sizeof *out);
    else memcpy(out, test_eval_tokens(ctx, toks, n, rows, what), (size_t)rows * V * sizeof *out);
    skl_context_free(ctx);
    return out;
}

double test_check_ref(const float *lg, int32_t V, const json_t *entry, int32_t row0, int32_t rows, double tol,
                      const char *what) {
    const char *name = test_str(entry, "name");
    int32_t n_tok;
    free(test_tokens(entry, &n_tok));
    int64_t rr, cc;
    double *ref = test_ref(entry, &rr, &cc);
    ck_assert_msg(rr == n_tok && cc == V, "%s: reference is [%lld, %lld], expected [%d, %d]", name, (long long)rr,
                  (long long)cc, n_tok, V);
    ck_assert_msg(row0 >= 0 && rows >= 1 && row0 + rows <= rr, "%s: rows %d..%d of a %lld-row reference", name, row0,
                  row0 + rows, (long long)rr);
    double err = rel_error(lg, ref + (size_t)row0 * (size_t)V, (size_t)rows * (size_t)V);
    free(ref);
    ck_assert_msg(err < tol, "%s: %s: max rel error %.3g vs the float64 reference (tolerance %g)", name, what, err,
                  tol);
    return err;
}

double test_logits_vs_ref(const skl_model *m, const json_t *entry, test_eval how, double tol, const char *what) {
    skl_hparams hp;
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    int32_t n;
    int32_t *toks = test_tokens(entry, &n);
    float *lg = test_logits(m, toks, n, how);
    char desc[256];
    snprintf(desc, sizeof desc, "%s%s%s", what ? what : "", what ? ", " : "", test_eval_name(how));
    int32_t rows = test_eval_rows(how, n);
    double err = test_check_ref(lg, hp.vocab_size, entry, n - rows, rows, tol, desc);
    free(lg);
    free(toks);
    return err;
}

void test_generate_params(skl_generate_params *gp, skl_sampler_params *sp, int32_t max_tokens, float temperature) {
    skl_generate_params_init(gp, sizeof *gp);
    skl_sampler_params_init(sp, sizeof *sp);
    gp->sampling = sp;
    gp->max_tokens = max_tokens;
    if (temperature == TEST_SAMPLER_DEFAULT) return;
    sp->temperature = temperature;
    if (temperature > 0.0f) {
        sp->top_k = 0;
        sp->top_p = 1.0f;
    }
}

int32_t test_sample(skl_sampler *s, const float *logits, int32_t n) {
    int32_t tok = -1;
    int rc = skl_sample(s, logits, n, &tok);
    ck_assert_msg(rc == SKL_OK, "skl_sample: %s (%s)", skl_strerror(rc), skl_last_error());
    ck_assert_msg(tok >= 0 && tok < n, "sampled token %d outside [0, %d)", tok, n);
    return tok;
}

/* ------------------------------------------------------------- numerics */

double rel_error(const float *c, const double *r, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)c[i] - r[i]);
        if (isnan(d)) return INFINITY;
        if (d > num) num = d;
        if (fabs(r[i]) > den) den = fabs(r[i]);
    }
    return den > 0.0 ? num / den : INFINITY;
}

double rel_error_f(const float *c, const float *r, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)c[i] - (double)r[i]);
        if (isnan(d)) return INFINITY;
        if (d > num) num = d;
        if (fabs((double)r[i]) > den) den = fabs((double)r[i]);
    }
    return den > 0.0 ? num / den : INFINITY;
}

int32_t argmax_f(const float *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int32_t argmax_d(const double *x, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static uint64_t rng_state = 0x1234567u;
double test_urand(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * 0x1.0p-52 - 1.0;
}

double test_half_value(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v = e == 0 ? ldexp(man, -24) : e == 31 ? (man ? NAN : INFINITY) : ldexp(1024 + man, e - 25);
    return sign ? -v : v;
}

/* ---------------------------------------------------------------- memory */

static uint64_t status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    unsigned long long kb = 0;
    size_t n = strlen(field);
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && sscanf(line + n, " %llu", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb << 10;
}

static uint64_t rss_base;

void test_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    ck_assert_msg(f != NULL, "/proc/self/clear_refs: cannot open");
    ck_assert_int_ge(fputs("5", f), 0); /* 5: reset the peak RSS */
    ck_assert_int_eq(fclose(f), 0);
    rss_base = status_kb("VmRSS:");
}

uint64_t test_rss_growth(void) {
    uint64_t peak = status_kb("VmHWM:");
    return peak > rss_base ? peak - rss_base : 0;
}

void test_long_model(const json_t *entry, int32_t n_pos, char *dir) {
    json_t *cfg = test_model_config(entry);
    char file[128], weights[PATH_MAX];
    json_object_set_new(cfg, "max_position_embeddings", json_integer(n_pos));
    snprintf(dir, 64, "/tmp/skl_long_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/config.json", dir);
    ck_assert_int_eq(json_dump_file(cfg, file, 0), 0);
    json_decref(cfg);
    ck_assert_ptr_nonnull(realpath(test_path(test_str(entry, "path")), weights));
    strncat(weights, "/model.safetensors", sizeof weights - strlen(weights) - 1);
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    ck_assert_int_eq(symlink(weights, file), 0);
}

void remove_long_model(const char *dir) {
    char file[128];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    unlink(file);
    snprintf(file, sizeof file, "%s/config.json", dir);
    unlink(file);
    rmdir(dir);
}
