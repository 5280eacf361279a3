/* helpers.c - manifest, model and reference helpers shared by the tests. */
#include "tests.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/npy.h"

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

/* The weights file of an entry: <path>/model.safetensors or <path> itself. */
static const char *weights_path(const json_t *entry) {
    static char buf[4000];
    const char *p = test_path(test_str(entry, "path"));
    if (!strcmp(test_str(entry, "format"), "dir")) snprintf(buf, sizeof buf, "%s/model.safetensors", p);
    else snprintf(buf, sizeof buf, "%s", p);
    return buf;
}

json_t *test_st_header(const json_t *entry) { return test_st_header_path(weights_path(entry)); }

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

json_t *test_model_config(const json_t *entry) {
    json_error_t err;
    json_t *cfg;
    if (!strcmp(test_str(entry, "format"), "dir")) {
        char path[4000];
        snprintf(path, sizeof path, "%s/config.json", test_path(test_str(entry, "path")));
        cfg = json_load_file(path, 0, &err);
        ck_assert_msg(cfg != NULL, "%s: %s", path, err.text);
    } else {
        json_t *h = test_st_header(entry);
        const char *s = json_string_value(json_object_get(json_object_get(h, "__metadata__"), "config"));
        ck_assert_msg(s != NULL, "%s: no __metadata__.config string", test_str(entry, "name"));
        cfg = json_loads(s, 0, &err);
        json_decref(h);
        ck_assert_msg(cfg != NULL, "%s: embedded config: %s", test_str(entry, "name"), err.text);
    }
    return cfg;
}

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
