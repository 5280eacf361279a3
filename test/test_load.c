/* test_load.c - skl_model_load on malformed files (exact status codes and
 * messages), argument checks, status strings, and the model queries
 * (hparams, weight counts, has_proj) against the files' own config and
 * safetensors header, read here with jansson. */
#include "tests.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The status codes, from the one list in skipless.h. */
static const struct {
    const char *name;
    int code;
    const char *text;
} status_list[] = {
#define STATUS_ROW_(name, value, text) {#name, name, text},
    SKL_STATUS_LIST(STATUS_ROW_)
#undef STATUS_ROW_
};
#define N_STATUS ((int)TEST_COUNT(status_list))

/* The code a manifest "expect" names. */
static int status_of(const char *name) {
    for (int i = 0; i < N_STATUS; i++)
        if (!strcmp(status_list[i].name, name)) return status_list[i].code;
    ck_abort_msg("unknown status name %s in the manifest", name);
    return 1;
}

/* A non-NULL value *out must be overwritten with (NULL on failure). */
static int sentinel_storage;
#define SENTINEL ((skl_model *)(void *)&sentinel_storage)

/* Put a known message into skl_last_error() so a stale one cannot pass. */
static void clobber_last_error(void) {
    skl_model *m = NULL;
    ck_assert_int_eq(skl_model_load(NULL, NULL, &m), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
}

/* ------------------------------------------------------------ bad models */

/* Issue 15, defect 5: a header of 64 MB holding one array of 32 Mi values is
 * refused (SKL_ERR_JSON_LIMIT) with the peak resident memory growing by less
 * than the file plus 32 MiB, mapped or read (a tree of it took 50 bytes a value). */
START_TEST(test_header_memory_bounded) {
    const size_t n_values = (size_t)32 << 20, len = 2 * n_values + 16;
    char path[] = "/tmp/skl_huge_header_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    char *text = malloc(8 + len);
    ck_assert_ptr_nonnull(text);
    for (int i = 0; i < 8; i++) text[i] = (char)(unsigned char)((uint64_t)len >> (8 * i));
    size_t k = 8 + (size_t)sprintf(text + 8, "{\"a\":[0");
    for (size_t i = 1; i < n_values; i++) text[k++] = ',', text[k++] = '0';
    text[k++] = ']', text[k++] = '}';
    memset(text + k, ' ', 8 + len - k);
    ck_assert_int_eq(write(fd, text, 8 + len), (ssize_t)(8 + len));
    close(fd);
    free(text);
    for (int mapped = 0; mapped < 2; mapped++) {
        skl_model_params mp;
        skl_model_params_init(&mp, sizeof mp);
        mp.use_mmap = mapped;
        skl_model *m = NULL;
        test_rss_reset();
        int rc = skl_model_load(path, &mp, &m);
        uint64_t grew = test_rss_growth();
        ck_assert_msg(rc == SKL_ERR_JSON_LIMIT, "got %s: %s", skl_status_name(rc), skl_last_error());
        ck_assert_ptr_nonnull(strstr(skl_last_error(), path));
        ck_assert_msg(grew < len + ((uint64_t)32 << 20), "use_mmap %d: the peak RSS grew by %llu bytes for a %zu-byte header",
                      mapped, (unsigned long long)grew, len);
    }
    unlink(path);
}
END_TEST

START_TEST(test_bad_model) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "bad", _i);
    const char *name = test_str(e, "name"), *expect = test_str(e, "expect");
    int want = status_of(expect);
    clobber_last_error();
    skl_model *m = SENTINEL;
    int rc = skl_model_load(test_path(test_str(e, "path")), NULL, &m);
    ck_assert_msg(rc == want, "%s: got %d (%s), expected %d (%s); message: %s", name, rc, skl_strerror(rc),
                  want, expect, skl_last_error());
    ck_assert_msg(m == NULL, "%s: *out is not NULL after a failed load", name);
    const char *msg = skl_last_error();
    ck_assert_msg(msg != NULL && strstr(msg, name) != NULL,
                  "%s: last error \"%s\" does not name the file", name, msg ? msg : "(null)");
    const json_t *mention = json_object_get(e, "mention"); /* sharded: the index, the shard, the tensor */
    for (size_t k = 0; k < json_array_size(mention); k++) {
        const char *want_s = json_string_value(json_array_get(mention, k));
        ck_assert_msg(strstr(msg, want_s) != NULL, "%s: last error \"%s\" does not name %s", name, msg, want_s);
    }
    /* The same verdict when the file is read onto huge pages. */
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    mp.use_mmap = false;
    clobber_last_error();
    m = SENTINEL;
    rc = skl_model_load(test_path(test_str(e, "path")), &mp, &m);
    ck_assert_msg(rc == want, "%s (no mmap): got %d (%s), expected %d (%s)", name, rc, skl_strerror(rc), want,
                  expect);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(skl_last_error(), name) != NULL, "%s (no mmap): last error \"%s\" does not name the file",
                  name, skl_last_error());
    json_decref(man);
}
END_TEST

/* A model used in place from the file mapping (default) and one read onto
 * huge pages (use_mmap false) give bitwise identical logits, both within the
 * reference's tolerance. */
START_TEST(test_use_mmap_same_logits) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", _i);
    int32_t n = 0;
    int32_t *tok = test_tokens(e, &n);
    float *out[2] = {NULL, NULL};
    int32_t vocab = 0;
    for (int k = 0; k < 2; k++) {
        skl_model_params mp;
        skl_model_params_init(&mp, sizeof mp);
        ck_assert(mp.use_mmap); /* the default maps the file */
        mp.use_mmap = k == 1;
        skl_model *m = NULL;
        ck_assert_int_eq(skl_model_load(test_path(test_str(e, "path")), &mp, &m), SKL_OK);
        skl_hparams hp;
        ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
        vocab = hp.vocab_size;
        out[k] = test_logits(m, tok, n, TEST_PREFILL);
        test_check_ref(out[k], vocab, e, 0, n, TEST_TOL, k ? "use_mmap" : "no mmap");
        skl_model_free(m);
    }
    ck_assert_msg(memcmp(out[0], out[1], (size_t)n * vocab * sizeof(float)) == 0, "%s: logits differ with use_mmap",
                  test_str(e, "name"));
    free(out[0]);
    free(out[1]);
    free(tok);
    json_decref(man);
}
END_TEST

START_TEST(test_bad_manifest_complete) {
    /* Every bad entry expects an error, and the manifest has some. */
    json_t *man = test_manifest();
    const json_t *bad = json_object_get(man, "bad");
    ck_assert_msg(json_array_size(bad) >= 1, "the manifest lists no bad models");
    for (size_t i = 0; i < json_array_size(bad); i++)
        ck_assert_int_lt(status_of(test_str(json_array_get(bad, i), "expect")), 0);
    json_decref(man);
}
END_TEST

START_TEST(test_nonexistent_path) {
    const char *path = test_path("no/such/model.safetensors");
    skl_model *m = SENTINEL;
    ck_assert_int_eq(skl_model_load(path, NULL, &m), SKL_ERR_IO);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(skl_last_error(), "no/such/model.safetensors") != NULL,
                  "last error \"%s\" does not name the path", skl_last_error());
    /* A directory without model.safetensors is an I/O error too; the message
     * names both files looked for. */
    m = SENTINEL;
    ck_assert_int_eq(skl_model_load(test_models_dir(), NULL, &m), SKL_ERR_IO);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(skl_last_error(), "model.safetensors ") && strstr(skl_last_error(), "model.safetensors.index.json"),
                  "last error \"%s\" does not name both files", skl_last_error());
}
END_TEST

/* ------------------------------------------------------------ sharded models */

/* A sharded directory, loaded from the directory and from its index, mapped
 * and read onto huge pages: the reference's logits (prefill and decode), and
 * bitwise the same logits every way. */
START_TEST(test_sharded_vs_ref) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", _i);
    ck_assert_int_ge(json_array_size(json_object_get(e, "shards")), 3);
    char dir[4000], index[4100];
    snprintf(dir, sizeof dir, "%s", test_path(test_str(e, "path")));
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    int32_t n = 0;
    int32_t *tok = test_tokens(e, &n);
    float *first = NULL;
    for (int k = 0; k < 4; k++) {
        skl_model *m = test_load_path(k % 2 ? index : dir, k < 2);
        const char *what = k == 0 ? "dir" : k == 1 ? "index file" : k == 2 ? "dir, no mmap" : "index, no mmap";
        test_logits_vs_ref(m, e, TEST_PREFILL, TEST_TOL, what);
        test_logits_vs_ref(m, e, TEST_DECODE, TEST_TOL, what);
        if (!first) first = test_logits(m, tok, n, TEST_PREFILL);
        else test_same_logits(m, tok, n, first, what);
        skl_model_free(m);
    }
    free(first);
    free(tok);
    json_decref(man);
}
END_TEST

static char warned[4096];
static void keep_warning(skl_log_level level, const char *message, void *user_data) {
    if (level == SKL_LOG_WARN) snprintf(warned, sizeof warned, "%s", message);
}

/* metadata.total_size that disagrees with the shards is a warning, not a refusal. */
START_TEST(test_sharded_total_size_warns) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", 0);
    char tmp[] = "/tmp/skl_total_XXXXXX", cmd[8400], index[4200];
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'", test_path(test_str(e, "path")), tmp);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", tmp);
    json_t *idx = json_load_file(index, 0, NULL);
    ck_assert_ptr_nonnull(idx);
    json_object_set_new(json_object_get(idx, "metadata"), "total_size", json_integer(12345));
    ck_assert_int_eq(json_dump_file(idx, index, JSON_INDENT(2)), 0);
    json_decref(idx);
    warned[0] = 0;
    skl_log_set(keep_warning, NULL);
    skl_model *m = NULL;
    int rc = skl_model_load(tmp, NULL, &m);
    skl_log_set(NULL, NULL);
    ck_assert_msg(rc == SKL_OK, "%s", skl_last_error());
    ck_assert_msg(strstr(warned, "total_size is 12345") && strstr(warned, "model.safetensors.index.json"),
                  "warning \"%s\"", warned);
    test_logits_vs_ref(m, e, TEST_PREFILL, TEST_TOL, "wrong total_size");
    skl_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    ck_assert_int_eq(system(cmd), 0);
    json_decref(man);
}
END_TEST

START_TEST(test_null_args) {
    json_t *man = test_manifest();
    const char *path = test_path(test_str(test_entry(man, "models", 0), "path"));
    skl_model *m = SENTINEL;
    ck_assert_int_eq(skl_model_load(NULL, NULL, &m), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_null(m);
    ck_assert_str_ne(skl_last_error(), "");
    ck_assert_int_eq(skl_model_load(path, NULL, NULL), SKL_ERR_INVALID_ARG);

    skl_hparams hp;
    skl_weight_counts wc;
    ck_assert_int_eq(skl_model_hparams(NULL, &hp, sizeof hp), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_weight_counts(NULL, &wc, sizeof wc), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_has_proj(NULL, 0, 'q'), SKL_ERR_INVALID_ARG);
    m = test_load(test_entry(man, "models", 0));
    ck_assert_int_eq(skl_model_hparams(m, NULL, sizeof(skl_hparams)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_weight_counts(m, NULL, sizeof(skl_weight_counts)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    ck_assert_int_eq(skl_model_has_proj(m, -1, 'q'), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_has_proj(m, hp.num_hidden_layers, 'q'), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_has_proj(m, 0, 'x'), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_has_proj(m, 0, 'Q'), SKL_ERR_INVALID_ARG);

    skl_context *ctx = (skl_context *)(void *)&sentinel_storage;
    ck_assert_int_eq(skl_context_create(NULL, NULL, &ctx), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(skl_context_create(m, NULL, NULL), SKL_ERR_INVALID_ARG);
    skl_sampler *smp = (skl_sampler *)(void *)&sentinel_storage;
    skl_sampler_params sp;
    skl_sampler_params_init(&sp, sizeof sp);
    ck_assert_int_eq(skl_sampler_create(&sp, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sampler_create(NULL, &smp), SKL_OK); /* NULL params: defaults */
    ck_assert_ptr_nonnull(smp);
    skl_sampler_free(smp);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

START_TEST(test_free_null) {
    skl_model_free(NULL);
    skl_context_free(NULL);
    skl_sampler_free(NULL);
    ck_assert_int_eq(skl_model_params_init(NULL, sizeof(skl_model_params)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_context_params_init(NULL, sizeof(skl_context_params)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_sampler_params_init(NULL, sizeof(skl_sampler_params)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_generate_params_init(NULL, sizeof(skl_generate_params)), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_merge_params_init(NULL, sizeof(skl_merge_params)), SKL_ERR_INVALID_ARG);
    skl_generator_free(NULL);
    skl_plan_free(NULL);
    skl_merge_report_free(NULL);
}
END_TEST

/* ---------------------------------------------------------- status strings */

/* Every code of SKL_STATUS_LIST: values contiguous 0, -1, .., -(N-1); its
 * enumerator name from skl_status_name and its text from skl_strerror, each
 * distinct; values outside the list rejected by both. */
START_TEST(test_strerror) {
    ck_assert_int_ge(N_STATUS, 29); /* SKL_OK .. SKL_ERR_BUFFER_TOO_SMALL at least; codes are only ever added */
    for (int i = 0; i < N_STATUS; i++) {
        const char *name = status_list[i].name;
        ck_assert_msg(status_list[i].code == -i, "%s is %d, expected %d (pinned, contiguous values)", name,
                      status_list[i].code, -i);
        ck_assert_msg(skl_status_name(-i) && !strcmp(skl_status_name(-i), name), "skl_status_name(%d) is %s, not %s",
                      -i, skl_status_name(-i) ? skl_status_name(-i) : "NULL", name);
        const char *s = skl_strerror(-i);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(s[0] != '\0', "%s: empty string", name);
        ck_assert_msg(strcmp(s, "unknown status") != 0, "%s: \"unknown status\"", name);
        ck_assert_msg(!strcmp(s, status_list[i].text), "%s: skl_strerror \"%s\", the list says \"%s\"", name, s,
                      status_list[i].text);
        for (int j = 0; j < i; j++) {
            ck_assert_msg(strcmp(s, skl_strerror(-j)) != 0, "%s and %s share \"%s\"", name, status_list[j].name, s);
            ck_assert_msg(strcmp(name, skl_status_name(-j)) != 0, "codes %d and %d share the name %s", -i, -j, name);
        }
    }
    const int unknown[] = {1, 2, -N_STATUS, -N_STATUS - 1, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < TEST_COUNT(unknown); i++) {
        ck_assert_str_eq(skl_strerror(unknown[i]), "unknown status");
        ck_assert_msg(skl_status_name(unknown[i]) == NULL, "skl_status_name(%d) is %s, expected NULL", unknown[i],
                      skl_status_name(unknown[i]));
    }
}
END_TEST

/* --------------------------------------------------- queries vs the files */

static int cfg_int(const json_t *cfg, const char *key, int def) {
    const json_t *j = json_object_get(cfg, key);
    return j ? (int)json_integer_value(j) : def;
}

static double cfg_num(const json_t *cfg, const char *key, double def) {
    const json_t *j = json_object_get(cfg, key);
    return j ? json_number_value(j) : def;
}

static const char *cfg_str(const json_t *cfg, const char *key, const char *def) {
    const json_t *j = json_object_get(cfg, key);
    return j ? json_string_value(j) : def;
}

/* hparams of every model equal its config (Hugging Face defaults applied here). */
START_TEST(test_hparams_match_config) {
    test_model t;
    test_open(&t, _i);
    const json_t *e = t.entry;
    const char *name = t.name;
    json_t *cfg = test_model_config(e);
    json_t *hdr = test_st_header(e);
    skl_hparams hp; /* filled again here over a pattern, so a field it leaves alone shows */
    memset(&hp, 0x55, sizeof hp);
    ck_assert_int_eq(skl_model_hparams(t.model, &hp, sizeof hp), SKL_OK);

    int d = cfg_int(cfg, "hidden_size", -1), H = cfg_int(cfg, "num_attention_heads", -1);
    int hd = cfg_int(cfg, "head_dim", d / H);
    ck_assert_int_eq(hp.hidden_size, d);
    ck_assert_int_eq(hp.num_hidden_layers, cfg_int(cfg, "num_hidden_layers", -1));
    ck_assert_int_eq(hp.num_attention_heads, H);
    ck_assert_int_eq(hp.num_key_value_heads, cfg_int(cfg, "num_key_value_heads", H));
    ck_assert_int_eq(hp.head_dim, hd);
    ck_assert_int_eq(hp.intermediate_size, cfg_int(cfg, "intermediate_size", -1));
    ck_assert_int_eq(hp.vocab_size, cfg_int(cfg, "vocab_size", -1));
    ck_assert_int_eq(hp.max_position_embeddings, cfg_int(cfg, "max_position_embeddings", -1));

    const char *act = cfg_str(cfg, "hidden_act", "");
    int want_act = !strcmp(act, "silu")                                            ? SKL_ACT_SILU
                   : !strcmp(act, "gelu")                                          ? SKL_ACT_GELU
                   : !strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") ? SKL_ACT_GELU_TANH
                   : !strcmp(act, "relu")                                          ? SKL_ACT_RELU
                                                                                   : -1;
    ck_assert_msg((int)hp.hidden_act == want_act, "%s: hidden_act %d for \"%s\"", name, (int)hp.hidden_act,
                  act);
    const char *block = cfg_str(cfg, "block_type", "serial");
    ck_assert_int_eq(hp.block_type, !strcmp(block, "parallel") ? SKL_BLOCK_PARALLEL : SKL_BLOCK_SERIAL);
    bool rope = !strcmp(cfg_str(cfg, "position_embedding", "rope"), "rope");
    ck_assert_int_eq(hp.use_rope, rope);
    double partial = cfg_num(cfg, "partial_rotary_factor", 1.0);
    ck_assert_int_eq(hp.rotary_dim, rope ? (int)(hd * partial) : 0);
    ck_assert(hp.rope_theta == (float)cfg_num(cfg, "rope_theta", 10000.0));
    ck_assert(hp.partial_rotary_factor == (float)partial);
    ck_assert(hp.rms_norm_eps == (float)cfg_num(cfg, "rms_norm_eps", 1e-6));
    const json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    ck_assert_int_eq(hp.tie_word_embeddings, tie ? json_is_true(tie) : false);
    ck_assert_int_eq(hp.glu, json_object_get(hdr, "model.layers.0.mlp.gate_proj.weight") != NULL);
    ck_assert_int_eq(hp.final_norm, json_object_get(hdr, "model.norm.weight") != NULL);
    /* and the manifest's own description agrees */
    ck_assert_int_eq(hp.glu, test_has_feature(e, "glu"));
    ck_assert_int_eq(hp.final_norm, test_has_feature(e, "final_norm"));
    ck_assert_int_eq(hp.tie_word_embeddings, test_has_feature(e, "tied"));
    ck_assert_int_eq(hp.use_rope, !test_has_feature(e, "nope"));

    json_decref(hdr);
    json_decref(cfg);
    test_close(&t);
}
END_TEST

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Weight counts equal the element counts of the header's tensors; has_proj
 * equals the presence of each projection tensor. */
START_TEST(test_weight_counts_match_header) {
    test_model t;
    test_open(&t, _i);
    const json_t *e = t.entry;
    const char *name = t.name;
    const skl_model *m = t.model;
    const skl_hparams hp = t.hp;
    json_t *hdr = test_st_header(e);

    skl_weight_counts want;
    memset(&want, 0, sizeof want);
    static const struct {
        const char *suffix;
        size_t field;
    } kinds[] = {
        {"model.embed_tokens.weight", offsetof(skl_weight_counts, embed)},
        {"lm_head.weight", offsetof(skl_weight_counts, head)},
        {"model.norm.weight", offsetof(skl_weight_counts, norm)},
        {".self_attn.q_proj.weight", offsetof(skl_weight_counts, q)},
        {".self_attn.k_proj.weight", offsetof(skl_weight_counts, k)},
        {".self_attn.v_proj.weight", offsetof(skl_weight_counts, v)},
        {".self_attn.o_proj.weight", offsetof(skl_weight_counts, o)},
        {".mlp.gate_proj.weight", offsetof(skl_weight_counts, gate)},
        {".mlp.up_proj.weight", offsetof(skl_weight_counts, up)},
        {".mlp.down_proj.weight", offsetof(skl_weight_counts, down)},
        {".bias", offsetof(skl_weight_counts, bias)},
    };
    const char *key;
    json_t *val;
    json_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        uint64_t numel = 1;
        const json_t *shape = json_object_get(val, "shape");
        for (size_t i = 0; i < json_array_size(shape); i++)
            numel *= (uint64_t)json_integer_value(json_array_get(shape, i));
        size_t k = 0, nk = sizeof kinds / sizeof kinds[0];
        while (k < nk && !ends_with(key, kinds[k].suffix)) k++;
        ck_assert_msg(k < nk, "%s: test does not know tensor %s", name, key);
        *(uint64_t *)((char *)&want + kinds[k].field) += numel;
    }
    /* A tied head is the embedding matrix used a second time: counted as head weights. */
    if (hp.tie_word_embeddings) {
        ck_assert_msg(json_object_get(hdr, "lm_head.weight") == NULL, "%s: tied but has lm_head", name);
        want.head = want.embed;
    }
    want.linear_total = want.embed + want.q + want.k + want.v + want.o + want.gate + want.up + want.down + want.head;

    skl_weight_counts got;
    memset(&got, 0x55, sizeof got);
    ck_assert_int_eq(skl_model_weight_counts(m, &got, sizeof got), SKL_OK);
#define EQ(f)                                                                                                   \
    ck_assert_msg(got.f == want.f, "%s: weight count " #f " is %llu, header says %llu", name,                   \
                  (unsigned long long)got.f, (unsigned long long)want.f)
    EQ(embed); EQ(q); EQ(k); EQ(v); EQ(o); EQ(gate); EQ(up); EQ(down); EQ(head);
    EQ(bias); EQ(norm); EQ(linear_total);
#undef EQ
    /* independent of the header: the embedding is [V, d] */
    ck_assert_uint_eq(got.embed, (uint64_t)hp.vocab_size * (uint64_t)hp.hidden_size);

    for (int32_t l = 0; l < hp.num_hidden_layers; l++)
        for (const char *w = "qkvo"; *w; w++) {
            char tname[128];
            snprintf(tname, sizeof tname, "model.layers.%d.self_attn.%c_proj.weight", l, *w);
            int present = json_object_get(hdr, tname) != NULL;
            ck_assert_msg(skl_model_has_proj(m, l, *w) == present, "%s: has_proj(%d, '%c') is %d, expected %d",
                          name, l, *w, skl_model_has_proj(m, l, *w), present);
            char feat[8];
            snprintf(feat, sizeof feat, "no_%c", *w);
            ck_assert_int_eq(present, !test_has_feature(e, feat));
        }
    json_decref(hdr);
    test_close(&t);
}
END_TEST

/* skl_model_kv_bytes is 2 L n_ctx KV hd floats, from the config (Hugging
 * Face defaults: KV = H, hd = d / H); 0 outside [0, max_position_embeddings]. */
START_TEST(test_kv_bytes_match_config) {
    test_model t;
    test_open(&t, _i);
    json_t *cfg = test_model_config(t.entry);
    int d = cfg_int(cfg, "hidden_size", -1), H = cfg_int(cfg, "num_attention_heads", -1);
    uint64_t L = (uint64_t)cfg_int(cfg, "num_hidden_layers", -1), KV = (uint64_t)cfg_int(cfg, "num_key_value_heads", H),
             hd = (uint64_t)cfg_int(cfg, "head_dim", d / H);
    int32_t max = cfg_int(cfg, "max_position_embeddings", -1);
    const int32_t n_ctx[] = {1, 7, max - 1, max};
    for (size_t i = 0; i < sizeof n_ctx / sizeof n_ctx[0]; i++)
        ck_assert_msg(skl_model_kv_bytes(t.model, n_ctx[i]) == 2 * L * (uint64_t)n_ctx[i] * KV * hd * 4,
                      "%s: kv bytes of %d positions %llu, expected %llu", t.name, n_ctx[i],
                      (unsigned long long)skl_model_kv_bytes(t.model, n_ctx[i]),
                      (unsigned long long)(2 * L * (uint64_t)n_ctx[i] * KV * hd * 4));
    ck_assert_uint_eq(skl_model_kv_bytes(t.model, 0), 2 * L * (uint64_t)max * KV * hd * 4);
    ck_assert_uint_eq(skl_model_kv_bytes(t.model, max + 1), 0);
    ck_assert_uint_eq(skl_model_kv_bytes(t.model, -1), 0);
    ck_assert_uint_eq(skl_model_kv_bytes(t.model, INT32_MIN), 0);
    ck_assert_uint_eq(skl_model_kv_bytes(NULL, 1), 0);
    json_decref(cfg);
    test_close(&t);
}
END_TEST

/* The identity-projection model explicitly: no q and no o weights at all. */
START_TEST(test_absent_projections) {
    json_t *man = test_manifest();
    skl_model *m = test_load(test_find_model(man, "serial_noq_noo"));
    skl_weight_counts wc;
    skl_hparams hp;
    ck_assert_int_eq(skl_model_weight_counts(m, &wc, sizeof wc), SKL_OK);
    ck_assert_int_eq(skl_model_hparams(m, &hp, sizeof hp), SKL_OK);
    ck_assert_uint_eq(wc.q, 0);
    ck_assert_uint_eq(wc.o, 0);
    uint64_t L = (uint64_t)hp.num_hidden_layers, d = (uint64_t)hp.hidden_size,
             kvd = (uint64_t)hp.num_key_value_heads * (uint64_t)hp.head_dim;
    ck_assert_uint_eq(wc.k, L * kvd * d);
    ck_assert_uint_eq(wc.v, L * kvd * d);
    for (int32_t l = 0; l < hp.num_hidden_layers; l++) {
        ck_assert_int_eq(skl_model_has_proj(m, l, 'q'), 0);
        ck_assert_int_eq(skl_model_has_proj(m, l, 'k'), 1);
        ck_assert_int_eq(skl_model_has_proj(m, l, 'v'), 1);
        ck_assert_int_eq(skl_model_has_proj(m, l, 'o'), 0);
    }
    skl_model_free(m);
    json_decref(man);
}
END_TEST

Suite *load_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"bad_models", test_bad_manifest_complete, 0, 0},
        {"bad_models", test_bad_model, TEST_EACH_BAD, 0},
        {"bad_models", test_header_memory_bounded, 0, 0},
        {"sharded", test_sharded_vs_ref, TEST_EACH_SHARDED, 0},
        {"sharded", test_sharded_total_size_warns, 0, 0},
        {"args", test_nonexistent_path, 0, 0},
        {"args", test_null_args, 0, 0},
        {"args", test_free_null, 0, 0},
        {"args", test_strerror, 0, 0},
        {"queries", test_hparams_match_config, TEST_EACH_MODEL, 0},
        {"queries", test_weight_counts_match_header, TEST_EACH_MODEL, 0},
        {"queries", test_kv_bytes_match_config, TEST_EACH_MODEL, 0},
        {"queries", test_absent_projections, 0, 0},
        {"queries", test_use_mmap_same_logits, TEST_EACH_MODEL, 0},
    };
    return test_suite("load", tests, TEST_COUNT(tests));
}
