/* test_quant.c - quantized weights: loading compressed-tensors files, their
 * logits, saving them, skl_model_quantize_to, the dtype names.
 *
 * Oracles: test/models.py quantizes the manifest's "quantized" models itself
 * (numpy, llama.cpp's Q8_0 / Q4_0 rules as docs/quantization.md states them)
 * and writes them as compressed-tensors does; the library must load them,
 * save them back tensor for tensor, and make the same tensors (every byte of
 * the int8 / packed weights and the F16 scales) and the same
 * quantization_config from the source model.  The malformed quantized models
 * are rows of models.py's build_bad (test_load.c checks each status). */
#include "tests.h"

#include "dtype.h"
#include "qkernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void rm_rf(const char *dir) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Where a model of entry e's format goes under dir: dir/m.safetensors or dir/m. */
static void out_path(const char *dir, const json_t *e, char *path, size_t n) {
    snprintf(path, n, "%s/m%s", dir, strcmp(test_str(e, "format"), "file") ? "" : ".safetensors");
}

/* Bytes the library holds for the tensors of the header hdr: every tensor's, a scale as
 * F16 whatever its file dtype, a weight_shape not at all. */
static uint64_t held_bytes(const json_t *hdr) {
    uint64_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)hdr, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        const json_t *off = json_object_get(v, "data_offsets");
        uint64_t bytes = (uint64_t)(json_integer_value(json_array_get(off, 1)) - json_integer_value(json_array_get(off, 0)));
        size_t len = strlen(key);
        if (len > 13 && !strcmp(key + len - 13, ".weight_shape")) continue;
        if (len > 13 && !strcmp(key + len - 13, ".weight_scale")) {
            const char *dt = json_string_value(json_object_get(v, "dtype"));
            bytes = !strcmp(dt, "F32") ? bytes / 2 : bytes; /* F16 and BF16: 2 bytes each already */
        }
        n += bytes;
    }
    return n;
}

static int32_t n_linear_dtypes(const skl_model *m, uint64_t *total) {
    int32_t k = 0;
    *total = 0;
    for (int d = SKL_DTYPE_F32; d <= SKL_DTYPE_Q4_0; d++) {
        uint64_t w = skl_model_dtype_weights(m, (skl_dtype)d);
        *total += w;
        k += w > 0;
    }
    return k;
}

/* Every quantized model loads, mapped and read onto huge pages, holding its
 * weights in the types the manifest counts, and the queries count the scales. */
START_TEST(test_quant_load) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "quantized", _i);
    const char *name = test_str(e, "name");
    json_t *hdr = test_model_header(test_path(test_str(e, "path")));
    for (int k = 0; k < 2; k++) {
        skl_model *m = test_load_path(test_path(test_str(e, "path")), k == 0);
        ck_assert_msg(!strcmp(skl_model_weight_dtype(m), test_str(e, "weight_dtype")), "%s: weight dtype %s, expected %s",
                      name, skl_model_weight_dtype(m), test_str(e, "weight_dtype"));
        const json_t *counts = json_object_get(e, "dtype_weights");
        uint64_t total;
        ck_assert_int_eq(n_linear_dtypes(m, &total), (int)json_object_size(counts));
        const char *dt;
        json_t *cnt;
        json_object_foreach((json_t *)counts, dt, cnt) {
            skl_dtype d;
            ck_assert_int_eq(skl_dtype_parse(dt, &d), SKL_OK);
            ck_assert_msg(skl_model_dtype_weights(m, d) == (uint64_t)json_integer_value(cnt), "%s: %llu %s weights, expected %lld",
                          name, (unsigned long long)skl_model_dtype_weights(m, d), dt, (long long)json_integer_value(cnt));
        }
        skl_weight_counts wc;
        ck_assert_int_eq(skl_model_weight_counts(m, &wc, sizeof wc), SKL_OK);
        ck_assert_uint_eq(total, wc.linear_total - wc.embed);
        ck_assert_msg(skl_model_weight_bytes(m) == held_bytes(hdr), "%s: weight bytes %llu, the files hold %llu", name,
                      (unsigned long long)skl_model_weight_bytes(m), (unsigned long long)held_bytes(hdr));
        /* decode bytes: the regions, a quantized weight's scales a region of their own */
        size_t n = 0;
        ck_assert_int_eq(skl_model_decode_regions(m, NULL, NULL, 0, &n), SKL_ERR_BUFFER_TOO_SMALL);
        const void **bases = calloc(n, sizeof *bases);
        uint64_t *sizes = calloc(n, sizeof *sizes), sum = 0;
        ck_assert_int_eq(skl_model_decode_regions(m, bases, sizes, n, &n), SKL_OK);
        for (size_t i = 0; i < n; i++) sum += sizes[i];
        ck_assert_uint_eq(sum, skl_model_decode_bytes(m));
        ck_assert_uint_lt(skl_model_decode_bytes(m), skl_model_weight_bytes(m));
        free(bases);
        free(sizes);
        skl_model_free(m);
    }
    json_decref(hdr);
    json_decref(man);
}
END_TEST

/* skl_model_quantize_to of the source model, as models.py made it: the same tensors,
 * byte for byte, and the same quantization_config (as one file, a directory, shards). */
START_TEST(test_quant_same_as_python) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "quantized", _i);
    const json_t *made = json_object_get(e, "made_by");
    if (!made) { /* mixed types or F32 / BF16 scales: not made by one quantize */
        json_decref(man);
        return;
    }
    const json_t *src = NULL;
    for (int k = 0; k < 2 && !src; k++) {
        const json_t *list = json_object_get(man, k ? "sharded" : "models");
        for (size_t i = 0; i < json_array_size(list) && !src; i++)
            if (!strcmp(test_str(json_array_get(list, i), "name"), test_str(e, "source"))) src = json_array_get(list, i);
    }
    ck_assert_ptr_nonnull(src);
    skl_model *m = test_load(src);
    const json_t *keep = json_object_get(made, "keep");
    const char *names[8];
    for (size_t i = 0; i < json_array_size(keep); i++) names[i] = json_string_value(json_array_get(keep, i));
    skl_quantize_params qp;
    ck_assert_int_eq(skl_quantize_params_init(&qp, sizeof qp), SKL_OK);
    ck_assert_int_eq(qp.dtype, SKL_DTYPE_Q8_0);
    ck_assert_int_eq(skl_dtype_parse(test_str(made, "type"), &qp.dtype), SKL_OK);
    qp.keep = names;
    qp.n_keep = (int32_t)json_array_size(keep);
    skl_save_params sp;
    skl_save_params_init(&sp, sizeof sp);
    sp.max_shard_size = (uint64_t)json_integer_value(json_object_get(made, "max_shard_size"));
    char dir[] = "/tmp/skl_quant_XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    out_path(dir, e, path, sizeof path);
    ck_assert_msg(skl_model_quantize_to(m, path, &qp, &sp) == SKL_OK, "%s: %s", test_str(e, "name"), skl_last_error());
    test_same_tensors(path, test_path(test_str(e, "path")), test_str(e, "name"));
    json_t *cw = test_config_at(path), *cp = test_model_config(e);
    ck_assert_msg(json_equal(json_object_get(cw, "quantization_config"), json_object_get(cp, "quantization_config")),
                  "%s: quantization_config %s, models.py wrote %s", test_str(e, "name"),
                  json_dumps(json_object_get(cw, "quantization_config"), JSON_SORT_KEYS),
                  json_dumps(json_object_get(cp, "quantization_config"), JSON_SORT_KEYS));
    const json_t *tw = json_object_get(cw, "tie_word_embeddings"), *tp = json_object_get(cp, "tie_word_embeddings");
    ck_assert((!tw && !tp) || json_equal(tw, tp));
    if (sp.max_shard_size) ck_assert(exists(strcat(path, "/model.safetensors.index.json")));
    json_decref(cw);
    json_decref(cp);
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* The F16 value of scale element i of a file tensor of dtype dt (F16, BF16 or F32), as the library holds it. */
static uint16_t scale_f16(const char *dt, const void *data, size_t i) {
    if (!strcmp(dt, "F16")) return ((const uint16_t *)data)[i];
    float v = !strcmp(dt, "F32") ? ((const float *)data)[i] : skl_bf16_to_f32(((const uint16_t *)data)[i]);
    return skl_f32_to_f16(v);
}

/* load -> save -> load: the same tensors (a scale stored F32 or BF16 comes back as the
 * F16 it was held in) and the same quantization_config, as a file, a directory and
 * shards; saved again, the same files. */
START_TEST(test_quant_save_round_trip) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "quantized", _i);
    const char *src = test_path(test_str(e, "path"));
    char srcp[4000];
    snprintf(srcp, sizeof srcp, "%s", src);
    skl_model *m = test_load_path(srcp, true);
    json_t *hs = test_model_header(srcp), *cs = test_config_at(srcp);
    char dir[] = "/tmp/skl_qsave_XXXXXX", a[256], b[256], cmd[700];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (int layout = 0; layout < 3; layout++) {
        skl_save_params sp;
        skl_save_params_init(&sp, sizeof sp);
        sp.format = layout == 0 ? SKL_SAVE_FILE : SKL_SAVE_DIR;
        sp.max_shard_size = layout == 2 ? 4000 : 0;
        snprintf(a, sizeof a, "%s/a%d%s", dir, layout, layout == 0 ? ".safetensors" : "");
        snprintf(b, sizeof b, "%s/b%d%s", dir, layout, layout == 0 ? ".safetensors" : "");
        ck_assert_int_eq(skl_model_save_v2(m, a, &sp), SKL_OK);
        json_t *ha = test_model_header(a), *ca = test_config_at(a);
        json_object_del(hs, "__metadata__");
        json_object_del(ha, "__metadata__");
        ck_assert_uint_eq(json_object_size(ha), json_object_size(hs));
        const char *key;
        json_t *v;
        json_object_foreach(hs, key, v) {
            const json_t *w = json_object_get(ha, key);
            ck_assert_msg(w != NULL, "%s: %s not saved", test_str(e, "name"), key);
            ck_assert(json_equal(json_object_get(v, "shape"), json_object_get(w, "shape")));
            size_t ls, la;
            void *ds = test_tensor_data(srcp, key, &ls), *da = test_tensor_data(a, key, &la);
            const char *dt = json_string_value(json_object_get(v, "dtype"));
            size_t klen = strlen(key);
            if (klen > 13 && !strcmp(key + klen - 13, ".weight_scale")) {
                ck_assert_str_eq(json_string_value(json_object_get(w, "dtype")), "F16");
                for (size_t i = 0; i < la / 2; i++)
                    ck_assert_msg(((const uint16_t *)da)[i] == scale_f16(dt, ds, i), "%s: %s[%zu] saved as 0x%04x",
                                  test_str(e, "name"), key, i, ((const uint16_t *)da)[i]);
            } else {
                ck_assert_str_eq(json_string_value(json_object_get(w, "dtype")), dt);
                ck_assert_msg(la == ls && !memcmp(ds, da, la), "%s: %s changed by save", test_str(e, "name"), key);
            }
            free(ds);
            free(da);
        }
        ck_assert_msg(json_equal(json_object_get(ca, "quantization_config"), json_object_get(cs, "quantization_config")),
                      "%s: the saved quantization_config differs", test_str(e, "name"));
        skl_model *back = test_load_path(a, layout != 1);
        ck_assert_int_eq(skl_model_save_v2(back, b, &sp), SKL_OK);
        snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' >/dev/null", a, b);
        ck_assert_msg(system(cmd) == 0, "%s: saved twice, the files differ (layout %d)", test_str(e, "name"), layout);
        skl_model_free(back);
        json_decref(ha);
        json_decref(ca);
    }
    rm_rf(dir);
    json_decref(hs);
    json_decref(cs);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

static int cancel_at_2(uint64_t done, uint64_t total, void *ud) {
    (void)total;
    ++*(int *)ud;
    return done >= 2;
}

/* The arguments, the keep names, a cancel and a weight that cannot be quantized:
 * each refused with its status, nothing written, an existing model untouched. */
START_TEST(test_quant_refusals) {
    json_t *man = test_manifest();
    skl_model *m = test_load(test_find_model(man, "serial_mha_silu_glu"));
    char dir[] = "/tmp/skl_qref_XXXXXX", path[256], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    skl_quantize_params qp;
    ck_assert_int_eq(skl_quantize_params_init(NULL, sizeof qp), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_quantize_params_init(&qp, 4), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_quantize_to(NULL, path, NULL, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_quantize_to(m, "", NULL, NULL), SKL_ERR_INVALID_ARG);
    static const struct {
        skl_dtype dtype;
        const char *keep[2];
        int32_t n_keep;
        const char *mention;
    } bad[] = {
        {SKL_DTYPE_F16, {NULL, NULL}, 0, "not a quantized type"},
        {SKL_DTYPE_SAME, {NULL, NULL}, 0, "not a quantized type"},
        {(skl_dtype)9, {NULL, NULL}, 0, "not a quantized type"},
        {SKL_DTYPE_Q8_0, {"lm_head", NULL}, 2, "keep[1] is NULL"},
        {SKL_DTYPE_Q4_0, {"embed_tokens", NULL}, 1, "\"embed_tokens\""},
        {SKL_DTYPE_Q4_0, {"model.layers.2.mlp.down_proj", NULL}, 1, "model.layers.2.mlp.down_proj"},
        {SKL_DTYPE_Q4_0, {"model.layers.01.mlp.down_proj", NULL}, 1, "model.layers.01"},
        {SKL_DTYPE_Q4_0, {"down", NULL}, 1, "\"down\""},
        {SKL_DTYPE_Q4_0, {NULL, NULL}, -1, "n_keep -1"},
    };
    for (size_t i = 0; i < TEST_COUNT(bad); i++) {
        skl_quantize_params_init(&qp, sizeof qp);
        qp.dtype = bad[i].dtype;
        qp.keep = bad[i].n_keep ? bad[i].keep : NULL;
        qp.n_keep = bad[i].n_keep;
        ck_assert_int_eq(skl_model_quantize_to(m, path, &qp, NULL), SKL_ERR_INVALID_ARG);
        ck_assert_msg(strstr(skl_last_error(), bad[i].mention), "case %zu: \"%s\" does not name %s", i, skl_last_error(),
                      bad[i].mention);
        ck_assert(!exists(path));
    }
    /* valid names of every kind */
    const char *good[] = {"lm_head", "q_proj", "self_attn.k_proj", "mlp.up_proj", "model.layers.1.mlp.down_proj"};
    skl_quantize_params_init(&qp, sizeof qp);
    qp.keep = good;
    qp.n_keep = (int32_t)TEST_COUNT(good);
    ck_assert_int_eq(skl_model_quantize_to(m, path, &qp, NULL), SKL_OK);
    skl_model *q = test_load_path(path, true);
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    uint64_t d = (uint64_t)hp.hidden_size, f = (uint64_t)hp.intermediate_size, V = (uint64_t)hp.vocab_size;
    /* kept: lm_head, every q and k, every up, layer 1's down */
    ck_assert_uint_eq(skl_model_dtype_weights(q, SKL_DTYPE_F32), V * d + 2 * 2 * d * d + 2 * f * d + d * f);
    ck_assert_uint_eq(skl_model_dtype_weights(q, SKL_DTYPE_Q8_0), 2 * (2 * d * d + f * d) + d * f);
    skl_model_free(q);
    /* a cancel, and a weight that is not finite: the model just written stays as it was */
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s/snap'", path, dir);
    ck_assert_int_eq(system(cmd), 0);
    int calls = 0;
    skl_quantize_params_init(&qp, sizeof qp);
    qp.progress = cancel_at_2;
    qp.progress_user_data = &calls;
    ck_assert_int_eq(skl_model_quantize_to(m, path, &qp, NULL), SKL_ERR_CANCELLED);
    ck_assert_int_eq(calls, 2);
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s/snap' >/dev/null", path, dir);
    ck_assert_msg(system(cmd) == 0, "the existing model changed after a cancelled quantize");
    /* an inf in layer 1's up_proj, written into a copy of the source */
    char src[300], file[400];
    snprintf(src, sizeof src, "%s/inf", dir);
    snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", test_path(test_str(test_find_model(man, "serial_mha_silu_glu"), "path")),
             src);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(file, sizeof file, "%s/model.safetensors", src);
    json_t *h = test_st_header_path(file);
    const json_t *off = json_object_get(json_object_get(h, "model.layers.1.mlp.up_proj.weight"), "data_offsets");
    long at = (long)json_integer_value(json_array_get(off, 0)) + 4 * 70; /* row 1, column 6 */
    unsigned char len8[8];
    FILE *fp = fopen(file, "r+b");
    ck_assert_int_eq(fread(len8, 1, 8, fp), 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | len8[i];
    float inf = 1.0f / 0.0f;
    ck_assert_int_eq(fseek(fp, (long)(8 + hl) + at, SEEK_SET), 0);
    ck_assert_int_eq(fwrite(&inf, 4, 1, fp), 1);
    fclose(fp);
    json_decref(h);
    skl_model *mi = test_load_path(src, true);
    ck_assert_int_eq(skl_model_quantize_to(mi, path, NULL, NULL), SKL_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(skl_last_error(), "model.layers.1.mlp.up_proj") && strstr(skl_last_error(), "row 1"), "%s",
                  skl_last_error());
    ck_assert_msg(system(cmd) == 0, "the existing model changed after a failed quantize");
    skl_model_free(mi);
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* A model whose hidden size (48) is no multiple of 32: only down_proj (in 96) and
 * nothing else is quantized; the others stay F32 and the config ignores them. */
START_TEST(test_quant_partial) {
    json_t *man = test_manifest();
    const json_t *e = test_find_model(man, "serial_mha_gelu_glu_bias_file");
    skl_model *m = test_load(e);
    char dir[] = "/tmp/skl_qpart_XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    skl_quantize_params qp;
    skl_quantize_params_init(&qp, sizeof qp);
    qp.dtype = SKL_DTYPE_Q4_0;
    ck_assert_int_eq(skl_model_quantize_to(m, path, &qp, NULL), SKL_OK);
    skl_model *q = test_load_path(path, true);
    skl_weight_counts wc;
    skl_model_weight_counts(m, &wc, sizeof wc);
    ck_assert_uint_eq(skl_model_dtype_weights(q, SKL_DTYPE_Q4_0), wc.down);
    ck_assert_uint_eq(skl_model_dtype_weights(q, SKL_DTYPE_F32), wc.linear_total - wc.embed - wc.down);
    ck_assert_str_eq(skl_model_weight_dtype(q), "mixed");
    json_t *cfg = test_config_at(path);
    const json_t *ignore = json_object_get(json_object_get(cfg, "quantization_config"), "ignore");
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    ck_assert_int_eq((int)json_array_size(ignore), hp.num_hidden_layers * 6 + 1);
    ck_assert_str_eq(json_string_value(json_array_get(ignore, json_array_size(ignore) - 1)), "lm_head");
    json_decref(cfg);
    skl_model_free(q);
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* The int8 activations' tolerance.  An implementation of 8 activation bits rounds each
 * GEMV input x to int8 per group of 32 with the step amax_g / 127 (qkernels.c), so each
 * element moves by at most amax_g / 254 and, as amax_g^2 <= the group's sum of squares,
 * |dx| <= sqrt(32) / 254 |x| for the whole vector (2.2 %).  A token goes through 4 such
 * inputs per block (q/k/v, o, gate/up, down; a parallel block's two branches add theirs)
 * and one for lm_head.  To first order the relative errors add, and the seeded models
 * hold every block's output at RMS 1 (models.py), so their gain is about 1:
 * tol = (4 L + 1) sqrt(32) / 254 (0.20 for 2 layers; measured at most 0.07). */
static double int8_tol(const skl_model *m) {
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    return (4.0 * hp.num_hidden_layers + 1.0) * sqrt(32.0) / 254.0;
}

/* The logits of every quantized model against test/reference.py's float64 logits of
 * the same (dequantized) weights, with every quantized-kernel implementation this CPU
 * runs: prefill (tiles widened exactly, sgemm) and fp32-activation decode within
 * TEST_TOL, int8-activation decode within int8_tol; decode the same for 1 and 3 threads. */
START_TEST(test_quant_logits) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "quantized", _i);
    skl_model *m = test_load_path(test_path(test_str(e, "path")), true);
    int32_t n;
    int32_t *tok = test_tokens(e, &n);
    int checked = 0;
    for (int i = 0; i < skl_qkernels_count(); i++) {
        if (!skl_qkernels_supported(i)) continue;
        ck_assert_int_eq(skl_qkernels_force(i), 0);
        char what[96];
        snprintf(what, sizeof what, "%s, %s", test_str(e, "name"), skl_qkernels_name(i));
        test_logits_vs_ref(m, e, TEST_PREFILL, TEST_TOL, what);
        test_logits_vs_ref(m, e, TEST_DECODE, skl_qkernels_xbits(i) == 32 ? TEST_TOL : int8_tol(m), what);
        float *one = test_logits(m, tok, n, TEST_DECODE),
              *three = test_logits(m, tok, n, (test_eval){.decode = true, .n_threads = 3});
        skl_hparams hp;
        skl_model_hparams(m, &hp, sizeof hp);
        ck_assert_msg(!memcmp(one, three, (size_t)n * (size_t)hp.vocab_size * sizeof *one),
                      "%s: decode logits differ between 1 and 3 threads", what);
        free(one);
        free(three);
        checked++;
    }
    skl_qkernels_force(-1);
    ck_assert_int_ge(checked, 2); /* at least generic-f32 and generic-int8 */
    free(tok);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Merging a quantized model: its weights widen exactly, so with F32 storage the merged
 * model's probe logits (prefill: exact widening) stay within float32 rounding of the
 * source's; with SAME the changed weights are quantized again, once, from float64 (a
 * second rounding whose effect on the logits is the quantization's, not bounded here),
 * and the result holds no more float weights than the source. */
START_TEST(test_quant_merge_source) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "quantized", _i);
    skl_model *m = test_load_path(test_path(test_str(e, "path")), true);
    static const skl_dtype dts[] = {SKL_DTYPE_F32, SKL_DTYPE_SAME};
    uint64_t floats = 0;
    for (int d = SKL_DTYPE_F32; d <= SKL_DTYPE_BF16; d++) floats += skl_model_dtype_weights(m, (skl_dtype)d);
    for (int k = 0; k < 2; k++) {
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        mp.dtype = dts[k];
        mp.verify = k == 0;
        skl_model *mm = NULL;
        skl_merge_report *rep = NULL;
        int rc = skl_model_merge(m, &mp, &mm, &rep);
        if (rc == SKL_ERR_MERGE_NOT_APPLICABLE || rc == SKL_ERR_ALREADY_MERGED) continue; /* as for the source */
        ck_assert_msg(rc == SKL_OK, "%s: %s", test_str(e, "name"), skl_last_error());
        uint64_t mfloats = 0;
        for (int d = SKL_DTYPE_F32; d <= SKL_DTYPE_BF16; d++) mfloats += skl_model_dtype_weights(mm, (skl_dtype)d);
        if (k == 0) {
            ck_assert_msg(rep->verify_error >= 0 && rep->verify_error < 1e-4, "%s: verify error %g", test_str(e, "name"),
                          rep->verify_error);
            ck_assert_uint_gt(mfloats, 0);
        } else {
            ck_assert_msg(mfloats <= floats, "%s: %llu float weights after a SAME merge, %llu before", test_str(e, "name"),
                          (unsigned long long)mfloats, (unsigned long long)floats);
            test_logits_vs_ref(mm, e, TEST_PREFILL, 10.0, "merged SAME: evaluates"); /* finite logits of the right shape */
        }
        skl_merge_report_free(rep);
        skl_model_free(mm);
    }
    skl_model_free(m);
    json_decref(man);
}
END_TEST

START_TEST(test_dtype_names) {
    static const struct {
        skl_dtype d;
        const char *name, *alias;
    } rows[] = {{SKL_DTYPE_F32, "F32", "f32"},    {SKL_DTYPE_F16, "F16", "f16"},    {SKL_DTYPE_BF16, "BF16", "bf16"},
                {SKL_DTYPE_SAME, "SAME", "same"}, {SKL_DTYPE_Q8_0, "Q8_0", "q8_0"}, {SKL_DTYPE_Q4_0, "Q4_0", "Q4_0"}};
    for (size_t i = 0; i < TEST_COUNT(rows); i++) {
        ck_assert_str_eq(skl_dtype_name(rows[i].d), rows[i].name);
        skl_dtype d = (skl_dtype)-1;
        ck_assert_int_eq(skl_dtype_parse(rows[i].alias, &d), SKL_OK);
        ck_assert_int_eq(d, rows[i].d);
    }
    ck_assert_ptr_null(skl_dtype_name((skl_dtype)6));
    ck_assert_ptr_null(skl_dtype_name((skl_dtype)-1));
    skl_dtype d;
    ck_assert_int_eq(skl_dtype_parse("q5_0", &d), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "q5_0"));
    ck_assert_int_eq(skl_dtype_parse("I8", &d), SKL_ERR_INVALID_ARG); /* a file dtype, not a storage type */
    ck_assert_int_eq(skl_dtype_parse(NULL, &d), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_dtype_parse("f32", NULL), SKL_ERR_INVALID_ARG);
    ck_assert_uint_eq(skl_model_dtype_weights(NULL, SKL_DTYPE_F32), 0);
}
END_TEST

Suite *quant_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"load", test_quant_load, TEST_EACH_QUANTIZED, 0},
        {"logits", test_quant_logits, TEST_EACH_QUANTIZED, 0},
        {"merge", test_quant_merge_source, TEST_EACH_QUANTIZED, 0},
        {"save", test_quant_save_round_trip, TEST_EACH_QUANTIZED, 0},
        {"quantize", test_quant_same_as_python, TEST_EACH_QUANTIZED, 0},
        {"quantize", test_quant_refusals, 0, 0},
        {"quantize", test_quant_partial, 0, 0},
        {"names", test_dtype_names, 0, 0},
    };
    return test_suite("quant", tests, TEST_COUNT(tests));
}
