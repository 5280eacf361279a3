/* test_regions.c - skl_model_decode_regions: the memory one decode step reads.
 *
 * Oracles: the model's safetensors file itself (test_st_header and the raw
 * bytes, read here with stdio): for every seeded model, loaded with the file
 * mapping used in place and with use_mmap = false, the regions are the
 * file's tensors in evaluation order, each with the byte size of its shape
 * and dtype and the file's bytes at its offset, then one embedding row; each
 * lies in readable mappings of the process (/proc/self/maps): the model
 * file's when used in place, never the file's with use_mmap = false.  A
 * merged model (whose new tensors the file does not have) is checked against
 * its weight counts times the dtype size.  Exact status codes for bad
 * arguments and a too small buffer. */
#include "tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const lin_names[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* One region a decode step should read: bytes at offset `off` of the file. */
typedef struct {
    uint64_t off, bytes;
    int aligned; /* the file offset suits the dtype: the loader uses the mapping in place */
} want;

/* A model's weights file, read whole, and the regions its header says decode reads. */
typedef struct {
    char path[4096]; /* realpath of the weights file */
    unsigned char *data;
    size_t size;
    want *w;
    size_t n;
    uint64_t bytes; /* sum of w[].bytes */
} expected;

static uint64_t dtype_size(const char *dtype) {
    if (!strcmp(dtype, "F32")) return 4;
    if (!strcmp(dtype, "F16") || !strcmp(dtype, "BF16")) return 2;
    ck_abort_msg("unexpected dtype %s", dtype);
    return 0;
}

/* Tensor `name` of the header as a region (first_row: only its first row); 1, or 0 if absent. */
static int add_tensor(expected *e, const json_t *hdr, uint64_t data_start, const char *name, int first_row) {
    const json_t *t = json_object_get(hdr, name);
    if (!t) return 0;
    const json_t *shape = json_object_get(t, "shape"), *off = json_object_get(t, "data_offsets");
    uint64_t es = dtype_size(json_string_value(json_object_get(t, "dtype"))), numel = 1;
    for (size_t i = 0; i < json_array_size(shape); i++) numel *= (uint64_t)json_integer_value(json_array_get(shape, i));
    uint64_t a = (uint64_t)json_integer_value(json_array_get(off, 0)), b = (uint64_t)json_integer_value(json_array_get(off, 1));
    ck_assert_msg(b - a == numel * es, "%s: data_offsets span %llu bytes, shape x dtype %llu", name,
                  (unsigned long long)(b - a), (unsigned long long)(numel * es));
    uint64_t bytes = first_row ? (uint64_t)json_integer_value(json_array_get(shape, 1)) * es : numel * es;
    e->w[e->n++] = (want){data_start + a, bytes, (data_start + a) % es == 0};
    e->bytes += bytes;
    return 1;
}

static void expected_of(const json_t *entry, expected *e) {
    memset(e, 0, sizeof *e);
    json_t *hdr = test_st_header(entry), *cfg = test_model_config(entry);
    int layers = (int)json_integer_value(json_object_get(cfg, "num_hidden_layers"));
    ck_assert_int_gt(layers, 0);
    const char *p = test_path(test_str(entry, "path"));
    char file[4096];
    snprintf(file, sizeof file, strcmp(test_str(entry, "format"), "dir") ? "%s" : "%s/model.safetensors", p);
    ck_assert_ptr_nonnull(realpath(file, e->path));
    FILE *fp = fopen(e->path, "rb");
    ck_assert_ptr_nonnull(fp);
    fseek(fp, 0, SEEK_END);
    e->size = (size_t)ftell(fp);
    rewind(fp);
    e->data = malloc(e->size);
    ck_assert_ptr_nonnull(e->data);
    ck_assert_uint_eq(fread(e->data, 1, e->size, fp), e->size);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | e->data[i];
    e->w = calloc(json_object_size(hdr) + 2, sizeof *e->w);
    ck_assert_ptr_nonnull(e->w);
    char name[256];
    size_t in_file = 0; /* tensors of the header a decode step reads whole (all but an untied embedding) */
    for (int l = 0; l < layers; l++)
        for (size_t k = 0; k < sizeof lin_names / sizeof lin_names[0]; k++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, lin_names[k]);
            in_file += add_tensor(e, hdr, 8 + hlen, name, 0);
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", l, lin_names[k]);
            in_file += add_tensor(e, hdr, 8 + hlen, name, 0);
        }
    in_file += add_tensor(e, hdr, 8 + hlen, "model.norm.weight", 0);
    int tied = !add_tensor(e, hdr, 8 + hlen, "lm_head.weight", 0);
    if (tied) ck_assert(add_tensor(e, hdr, 8 + hlen, "model.embed_tokens.weight", 0)); /* the head is the embedding */
    in_file += 1 + (size_t)add_tensor(e, hdr, 8 + hlen, "lm_head.bias", 0); /* 1: lm_head or the tied embedding */
    ck_assert(add_tensor(e, hdr, 8 + hlen, "model.embed_tokens.weight", 1));
    /* every tensor of the file is accounted for: the regions are the tensors but an untied embedding, + 1 row */
    size_t tensors = json_object_size(hdr) - (json_object_get(hdr, "__metadata__") != NULL);
    ck_assert_uint_eq(in_file + (size_t)!tied, tensors);
    ck_assert_uint_eq(e->n, tensors + (size_t)tied);
    json_decref(hdr);
    json_decref(cfg);
}

static void expected_free(expected *e) {
    free(e->data);
    free(e->w);
}

/* ---- the process's mappings (/proc/self/maps) ---- */

typedef struct {
    uintptr_t lo, hi;
    int readable;
    char path[4096];
} vma;

/* The mappings, read whole into static memory before they are parsed, so that no allocation
 * changes them while the kernel lists them. */
static vma *read_maps(size_t *n) {
    static char text[8 << 20];
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    setvbuf(f, NULL, _IONBF, 0);
    size_t len = 0, k;
    while ((k = fread(text + len, 1, sizeof text - 1 - len, f)) > 0) len += k;
    fclose(f);
    ck_assert_uint_lt(len, sizeof text - 1);
    text[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    vma *v = calloc(lines + 1, sizeof *v);
    ck_assert_ptr_nonnull(v);
    *n = 0;
    for (char *line = text, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) break;
        *nl = '\0';
        unsigned long lo, hi;
        char perms[8];
        int off = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &off) < 3) continue;
        vma *m = &v[(*n)++];
        m->lo = lo;
        m->hi = hi;
        m->readable = perms[0] == 'r';
        snprintf(m->path, sizeof m->path, "%s", off > 0 ? line + off : "");
    }
    return v;
}

/* Check that [p, p + bytes) lies in readable mappings without a hole (an allocation may span
 * neighbouring mappings, e.g. where part of it was advised onto huge pages) and return how many
 * of them are mappings of `file`: 0 (none), 1 (all) or -1 (some). */
static int mapped(const vma *v, size_t n, const void *p, uint64_t bytes, const char *file) {
    uintptr_t a = (uintptr_t)p, end = a + bytes;
    int in = 0, out = 0;
    while (a < end) {
        size_t i = 0;
        while (i < n && !(v[i].lo <= a && a < v[i].hi)) i++;
        ck_assert_msg(i < n, "region %p + %llu: byte %p is in no mapping", p, (unsigned long long)bytes, (void *)a);
        ck_assert_msg(v[i].readable, "region %p + %llu: mapping %lx-%lx is not readable", p, (unsigned long long)bytes,
                      (unsigned long)v[i].lo, (unsigned long)v[i].hi);
        if (strcmp(v[i].path, file) == 0) in = 1;
        else out = 1;
        a = v[i].hi;
    }
    return in && out ? -1 : in;
}

/* ---- queries ---- */

typedef struct {
    const void **bases;
    uint64_t *sizes;
    size_t n;
} regions;

static regions query(const skl_model *m) {
    regions r = {NULL, NULL, 0};
    ck_assert_int_eq(skl_model_decode_regions(m, NULL, NULL, 0, &r.n), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_gt(r.n, 0);
    r.bases = calloc(r.n, sizeof *r.bases);
    r.sizes = calloc(r.n, sizeof *r.sizes);
    ck_assert(r.bases && r.sizes);
    size_t n2 = 0;
    ck_assert_int_eq(skl_model_decode_regions(m, r.bases, r.sizes, r.n, &n2), SKL_OK);
    ck_assert_uint_eq(n2, r.n);
    return r;
}

static void regions_free(regions *r) {
    free(r->bases);
    free(r->sizes);
}

static skl_model *load(const json_t *entry, bool use_mmap) {
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    mp.use_mmap = use_mmap;
    skl_model *m = NULL;
    int rc = skl_model_load(test_path(test_str(entry, "path")), &mp, &m);
    ck_assert_msg(rc == SKL_OK, "loading %s (use_mmap %d): %s", test_str(entry, "name"), use_mmap, skl_last_error());
    return m;
}

/* Every model, both ways of loading: the regions are the file's tensors (sizes and bytes), in its mapping
 * when used in place and outside it with use_mmap = false, and their sizes sum to skl_model_decode_bytes. */
START_TEST(test_regions_match_file) {
    json_t *man = test_manifest();
    const json_t *entry = test_entry(man, "models", _i);
    const char *name = test_str(entry, "name");
    expected e;
    expected_of(entry, &e);
    for (int mode = 0; mode < 2; mode++) {
        bool use_mmap = mode == 0;
        skl_model *m = load(entry, use_mmap);
        regions r = query(m);
        size_t nv;
        vma *v = read_maps(&nv);
        ck_assert_msg(r.n == e.n, "%s (use_mmap %d): %zu regions, the file has %zu", name, use_mmap, r.n, e.n);
        uint64_t sum = 0;
        for (size_t i = 0; i < r.n; i++) {
            ck_assert_msg(r.sizes[i] == e.w[i].bytes, "%s (use_mmap %d): region %zu has %llu bytes, the file's tensor %llu",
                          name, use_mmap, i, (unsigned long long)r.sizes[i], (unsigned long long)e.w[i].bytes);
            int in_file = mapped(v, nv, r.bases[i], r.sizes[i], e.path);
            ck_assert_msg(memcmp(r.bases[i], e.data + e.w[i].off, r.sizes[i]) == 0,
                          "%s (use_mmap %d): region %zu differs from the file's bytes at %llu", name, use_mmap, i,
                          (unsigned long long)e.w[i].off);
            if (use_mmap && e.w[i].aligned)
                ck_assert_msg(in_file == 1, "%s: region %zu is not (all) in the mapping of %s", name, i, e.path);
            if (!use_mmap) ck_assert_msg(in_file == 0, "%s: region %zu in the file mapping with use_mmap false", name, i);
            sum += r.sizes[i];
        }
        ck_assert_uint_eq(sum, e.bytes);
        ck_assert_uint_eq(sum, skl_model_decode_bytes(m));
        free(v);
        regions_free(&r);
        skl_model_free(m);
    }
    expected_free(&e);
    json_decref(man);
}
END_TEST

/* NULL arguments; a buffer too small gets the needed count and is filled up to n_max, never past it. */
START_TEST(test_regions_args) {
    json_t *man = test_manifest();
    const json_t *entry = test_find_model(man, "serial_mha_gelu_glu_bias_file");
    expected e;
    expected_of(entry, &e);
    skl_model *m = test_load(entry);
    const void *b[1];
    uint64_t s[1];
    size_t n = 12345;
    ck_assert_int_eq(skl_model_decode_regions(NULL, b, s, 1, &n), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_decode_regions(m, b, s, 1, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_decode_regions(m, NULL, s, 1, &n), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_decode_regions(m, b, NULL, 1, &n), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_decode_regions(m, NULL, NULL, 0, &n), SKL_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(n, e.n);
    enum { PAD = 3 };
    const void **bases = calloc(e.n + PAD, sizeof *bases);
    uint64_t *sizes = calloc(e.n + PAD, sizeof *sizes);
    ck_assert(bases && sizes);
    for (size_t n_max = e.n - 1; n_max <= e.n + 1; n_max++) {
        for (size_t i = 0; i < e.n + PAD; i++) {
            bases[i] = &e; /* a sentinel no region has */
            sizes[i] = UINT64_MAX;
        }
        n = 0;
        ck_assert_int_eq(skl_model_decode_regions(m, bases, sizes, n_max, &n),
                         n_max < e.n ? SKL_ERR_BUFFER_TOO_SMALL : SKL_OK);
        ck_assert_uint_eq(n, e.n);
        size_t filled = n_max < e.n ? n_max : e.n;
        for (size_t i = 0; i < e.n + PAD; i++) {
            if (i < filled) {
                ck_assert_uint_eq(sizes[i], e.w[i].bytes);
                ck_assert(bases[i] != (const void *)&e);
            } else {
                ck_assert_msg(sizes[i] == UINT64_MAX && bases[i] == (const void *)&e,
                              "entry %zu written with n_max %zu and %zu regions", i, n_max, e.n);
            }
        }
    }
    free(bases);
    free(sizes);
    skl_model_free(m);
    expected_free(&e);
    json_decref(man);
}
END_TEST

/* Bytes a decode step reads by skl_model_weight_counts, every tensor being `es` bytes an element. */
static uint64_t bytes_by_counts(const skl_model *m, uint64_t es) {
    skl_weight_counts c;
    skl_hparams hp;
    ck_assert_int_eq(skl_model_weight_counts(m, &c, sizeof c), SKL_OK);
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    return es * (c.q + c.k + c.v + c.o + c.gate + c.up + c.down + c.head + c.bias + c.norm + (uint64_t)hp.hidden_size);
}

/* Weight tensors a decode step reads, by the model's own shape queries (biases apart). */
static size_t weight_tensors(const skl_model *m) {
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    size_t n = (size_t)hp.final_norm + 2; /* norm, lm_head, the embedding row */
    for (int32_t l = 0; l < hp.num_hidden_layers; l++) {
        n += hp.glu ? 3 : 2;
        for (const char *p = "qkvo"; *p; p++) n += skl_model_has_proj(m, l, *p) == 1;
    }
    return n;
}

/* A merged model (single-dtype F32 sources, merged tensors kept in the source dtype): fewer regions and
 * bytes than its source, bytes as its weight counts say, every region readable. */
static const char *const merge_models[] = {"serial_mha_silu_glu", "serial_mha_gelu_glu_bias_file",
                                           "parallel_mha_relu_glu_bias_theta5e5", "parallel_mha_silu_mlp_nope_nonorm"};

START_TEST(test_regions_merged) {
    json_t *man = test_manifest();
    const json_t *entry = test_find_model(man, merge_models[_i]);
    ck_assert_str_eq(test_str(entry, "dtype"), "F32");
    skl_model *m = test_load(entry), *mm = NULL;
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.verify = false;
    mp.dtype = SKL_DTYPE_SAME;
    ck_assert_int_eq(skl_model_merge(m, &mp, &mm, NULL), SKL_OK);
    regions r = query(m), rm = query(mm);
    uint64_t sum = 0, sum_m = 0;
    for (size_t i = 0; i < r.n; i++) sum += r.sizes[i];
    for (size_t i = 0; i < rm.n; i++) sum_m += rm.sizes[i];
    ck_assert_uint_eq(sum, bytes_by_counts(m, 4));
    ck_assert_uint_eq(sum_m, bytes_by_counts(mm, 4));
    ck_assert_uint_eq(sum_m, skl_model_decode_bytes(mm));
    ck_assert_msg(rm.n < r.n && sum_m < sum, "%s: merged %zu regions / %llu bytes, source %zu / %llu", merge_models[_i],
                  rm.n, (unsigned long long)sum_m, r.n, (unsigned long long)sum);
    /* the weight tensors, plus at most one bias each */
    size_t wt = weight_tensors(mm);
    ck_assert_msg(rm.n >= wt && rm.n <= 2 * wt, "%s: %zu merged regions for %zu weight tensors", merge_models[_i],
                  rm.n, wt);
    size_t nv;
    vma *v = read_maps(&nv);
    for (size_t i = 0; i < rm.n; i++) mapped(v, nv, rm.bases[i], rm.sizes[i], "");
    free(v);
    regions_free(&r);
    regions_free(&rm);
    skl_model_free(mm);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

Suite *regions_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"decode_regions", test_regions_match_file, TEST_EACH_MODEL, 0},
        {"decode_regions", test_regions_args, 0, 0},
        {"decode_regions", test_regions_merged, (int)(sizeof merge_models / sizeof merge_models[0]), 0},
    };
    return test_suite("regions", tests, TEST_COUNT(tests));
}
