/* test_merge.c - the weight merge: every removal on every seeded model.
 *
 * Oracles: the independent float64 reference logits of the ORIGINAL model
 * (test/reference.py never saw the merge), the original model's own greedy
 * tokens, and the paper's weight counts.  Each refusal is checked for its
 * exact status code. */
#include "tests.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const skl_removal removals[] = {SKL_REMOVE_AUTO, SKL_REMOVE_QP, SKL_REMOVE_KP,
                                       SKL_REMOVE_VP,   SKL_REMOVE_Q,  SKL_REMOVE_P};
#define N_REMOVALS 6

typedef struct { int32_t toks[128]; int32_t n; } collected;
static int collect(int32_t t, const char *piece, void *ud) {
    (void)piece;
    collected *c = ud;
    if (c->n < 128) c->toks[c->n++] = t;
    return 0;
}

static void greedy64(const skl_model *m, int32_t first, collected *out) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 64;
    skl_context *c;
    ck_assert_int_eq(skl_context_create(m, &cp, &c), SKL_OK);
    skl_generate_params gp;
    skl_sampler_params gp_sp;
    test_generate_params(&gp, &gp_sp, 64, 0.0f);
    out->n = 0;
    skl_generate_result res;
    ck_assert_int_eq(skl_generate(c, &first, 1, &gp, collect, out, &res, sizeof res), SKL_OK);
    ck_assert_int_eq(res.n_generated, 64);
    skl_context_free(c);
}

/* Linear weights of block `l` that removal r takes away, computed from the
 * config alone: d^2 per removed square matrix. */
static uint64_t expected_removed(const skl_hparams *hp, skl_removal r) {
    uint64_t d = (uint64_t)hp->hidden_size, L = (uint64_t)hp->num_hidden_layers;
    switch (r) {
    case SKL_REMOVE_QP: case SKL_REMOVE_KP: case SKL_REMOVE_VP: return 2 * L * d * d;
    case SKL_REMOVE_Q: return L * d * d;
    case SKL_REMOVE_P: return (hp->final_norm ? L - 1 : L) * d * d;
    default: return 0;
    }
}

/* Weights file of a saved model at `path` (directory or .safetensors). */
static json_t *saved_header(const char *path) {
    char p[300];
    size_t n = strlen(path);
    if (n > 12 && !strcmp(path + n - 12, ".safetensors")) snprintf(p, sizeof p, "%s", path);
    else snprintf(p, sizeof p, "%s/model.safetensors", path);
    return test_st_header_path(p);
}

static const char *dtype_of(const json_t *hdr, const char *tensor) {
    const json_t *t = json_object_get(hdr, tensor);
    return t ? json_string_value(json_object_get(t, "dtype")) : NULL;
}

static void rm_rf(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Save m into a fresh directory dir (char[32]) of /tmp: as the single file
 * dir/m.safetensors or the directory dir/m (path, char[256]); SKL_SAVE_AUTO. */
static void save_tmp(const skl_model *m, bool single_file, char *dir, char *path) {
    snprintf(dir, 32, "/tmp/skl_merge_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, 256, "%s/%s", dir, single_file ? "m.safetensors" : "m");
    ck_assert_int_eq(skl_model_save(m, path, SKL_SAVE_AUTO), SKL_OK);
}

START_TEST(test_merge_every_model) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", _i);
    skl_model *m = test_load(e);
    int32_t n;
    int32_t *tok = test_tokens(e, &n);
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    collected orig_greedy;
    greedy64(m, tok[0], &orig_greedy);
    for (int k = 0; k < N_REMOVALS; k++) {
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        mp.remove = removals[k];
        skl_model *mm = (skl_model *)0x1;
        skl_merge_report *rep = (skl_merge_report *)0x1;
        int rc = skl_model_merge(m, &mp, &mm, &rep);
        if (rc != SKL_OK) {
            ck_assert_msg(rc == SKL_ERR_MERGE_NOT_APPLICABLE || rc == SKL_ERR_ALREADY_MERGED,
                          "%s/%s: unexpected status %d: %s", test_str(e, "name"), skl_removal_name(removals[k]), rc,
                          skl_last_error());
            ck_assert_ptr_null(mm);
            ck_assert_ptr_null(rep);
            ck_assert(strlen(skl_last_error()) > 0);
            continue;
        }
        const char *name = test_str(e, "name");
        /* verification inside the merge, and the report's accounting */
        ck_assert_msg(rep->verify_error >= 0 && rep->verify_error < 1e-4, "%s: verify error %g", name, rep->verify_error);
        ck_assert_uint_eq(rep->weights_before - rep->weights_after, expected_removed(&hp, rep->removal));
        ck_assert_int_eq(rep->n_layers, hp.num_hidden_layers);
        ck_assert(rep->max_condition >= 1.0 && rep->max_residual < 1e-5);
        /* merged logits against the float64 reference of the ORIGINAL model */
        char what[64];
        snprintf(what, sizeof what, "merged %s", skl_removal_name(rep->removal));
        float *pre = test_logits(mm, tok, n, TEST_PREFILL);
        test_check_ref(pre, hp.vocab_size, e, 0, n, TEST_TOL, what);
        test_logits_vs_ref(mm, e, TEST_DECODE, TEST_TOL, what);
        /* greedy generation of 64 tokens is identical */
        collected mg;
        greedy64(mm, tok[0], &mg);
        ck_assert_msg(memcmp(mg.toks, orig_greedy.toks, 64 * sizeof(int32_t)) == 0, "%s/%s: greedy tokens differ",
                      name, skl_removal_name(rep->removal));
        /* saved and loaded back: same logits, projections absent, merge recorded */
        char dir[32], path[256];
        save_tmp(mm, k % 2, dir, path);
        skl_model *back;
        ck_assert_int_eq(skl_model_load(path, NULL, &back), SKL_OK);
        float *pb = test_logits(back, tok, n, TEST_PREFILL);
        ck_assert_msg(rel_error_f(pb, pre, (size_t)n * hp.vocab_size) < 1e-6, "%s: reloaded logits differ", name);
        for (int32_t l = 0; l < hp.num_hidden_layers; l++) {
            ck_assert_int_eq(skl_model_has_proj(back, l, 'q'), skl_model_has_proj(mm, l, 'q'));
            ck_assert_int_eq(skl_model_has_proj(back, l, 'o'), skl_model_has_proj(mm, l, 'o'));
        }
        /* merging the reloaded model the same way again is refused */
        skl_merge_params again;
        skl_merge_params_init(&again, sizeof again);
        again.remove = rep->removal;
        skl_model *m2;
        int rc2 = skl_model_merge(back, &again, &m2, NULL);
        ck_assert_msg(rc2 == SKL_ERR_ALREADY_MERGED || rc2 == SKL_ERR_MERGE_NOT_APPLICABLE,
                      "%s: second merge returned %d", name, rc2);
        ck_assert_ptr_null(m2);
        skl_model_free(back);
        free(pb);
        rm_rf(dir);
        /* the source model is untouched */
        test_logits_vs_ref(m, e, TEST_PREFILL, TEST_TOL, "the source model after a merge");
        free(pre);
        skl_merge_report_free(rep);
        skl_model_free(mm);
    }
    free(tok);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

START_TEST(test_merge_coverage) {
    /* Which removals apply where, derived from each model's config alone. */
    json_t *man = test_manifest();
    int applicable[N_REMOVALS] = {0};
    for (int i = 0; i < test_n_models(); i++) {
        const json_t *e = test_entry(man, "models", i);
        skl_model *m = test_load(e);
        for (int k = 1; k < N_REMOVALS; k++) {
            skl_merge_params mp;
            skl_merge_params_init(&mp, sizeof mp);
            mp.remove = removals[k];
            mp.verify = false;
            skl_model *mm;
            if (skl_model_merge(m, &mp, &mm, NULL) == SKL_OK) applicable[k]++;
            skl_model_free(mm);
        }
        skl_model_free(m);
    }
    for (int k = 1; k < N_REMOVALS; k++)
        ck_assert_msg(applicable[k] >= 2, "removal %s applied to only %d seeded models", skl_removal_name(removals[k]),
                      applicable[k]);
    json_decref(man);
}
END_TEST

/* --- storage dtypes ----------------------------------------------------- */

/* Saving keeps every tensor's file dtype; the reloaded model gives the same logits bit for bit. */
START_TEST(test_save_keeps_dtype) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", _i);
    const char *name = test_str(e, "name");
    skl_model *m = test_load(e);
    int32_t n;
    int32_t *tok = test_tokens(e, &n);
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    char dir[32], path[256];
    save_tmp(m, _i % 2, dir, path);
    json_t *orig = test_st_header(e), *saved = saved_header(path);
    const char *key;
    json_t *val;
    json_object_foreach(orig, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        const char *d = dtype_of(saved, key);
        ck_assert_msg(d && !strcmp(d, json_string_value(json_object_get(val, "dtype"))),
                      "%s: tensor %s saved as %s, file has %s", name, key, d ? d : "(missing)",
                      json_string_value(json_object_get(val, "dtype")));
    }
    ck_assert_uint_eq(json_object_size(orig) - (json_object_get(orig, "__metadata__") != NULL),
                      json_object_size(saved) - (json_object_get(saved, "__metadata__") != NULL));
    skl_model *back;
    ck_assert_int_eq(skl_model_load(path, NULL, &back), SKL_OK);
    ck_assert_uint_eq(skl_model_decode_bytes(back), skl_model_decode_bytes(m));
    float *a = test_logits(m, tok, n, TEST_PREFILL), *b = test_logits(back, tok, n, TEST_PREFILL);
    ck_assert_msg(memcmp(a, b, (size_t)n * hp.vocab_size * sizeof *a) == 0, "%s: reloaded logits differ", name);
    free(a);
    free(b);
    skl_model_free(back);
    json_decref(orig);
    json_decref(saved);
    rm_rf(dir);
    free(tok);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* _i: model.  Merge (auto) storing the changed tensors as F16, BF16 and SAME. */
START_TEST(test_merge_dtype) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", _i);
    const char *name = test_str(e, "name"), *file_dt = test_str(e, "dtype");
    skl_model *m = test_load(e);
    int32_t n;
    int32_t *tok = test_tokens(e, &n);
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    static const skl_dtype want[3] = {SKL_DTYPE_F16, SKL_DTYPE_BF16, SKL_DTYPE_SAME};
    static const char *const names[3] = {"F16", "BF16", NULL};
    for (int k = 0; k < 3; k++) {
        const char *dt = names[k] ? names[k] : file_dt;
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        ck_assert_int_eq(mp.dtype, SKL_DTYPE_F32);
        mp.dtype = want[k];
        skl_model *mm;
        skl_merge_report *rep;
        int rc = skl_model_merge(m, &mp, &mm, &rep);
        if (rc == SKL_ERR_MERGE_NOT_APPLICABLE || rc == SKL_ERR_ALREADY_MERGED) break;
        ck_assert_msg(rc == SKL_OK, "%s: merge to %s: %s", name, dt, skl_last_error());
        double tol = test_storage_tol(dt); /* the tolerance rule (tests.h) */
        ck_assert_msg(rep->verify_error >= 0 && rep->verify_error < tol, "%s -> %s: verify error %g (tolerance %g)",
                      name, dt, rep->verify_error, tol);
        if (strcmp(dt, "F32") != 0) /* the stored rounding shows in the report */
            ck_assert_msg(rep->verify_error > 1e-7 && rep->max_residual > 1e-6, "%s -> %s: verify %g residual %g", name,
                          dt, rep->verify_error, rep->max_residual);
        char what[64];
        snprintf(what, sizeof what, "merged, changed tensors stored as %s", dt);
        float *pre = test_logits(mm, tok, n, TEST_PREFILL);
        test_check_ref(pre, hp.vocab_size, e, 0, n, tol, what);
        test_logits_vs_ref(mm, e, TEST_DECODE, tol, what);
        /* saved: unchanged tensors keep the file dtype, changed ones have the requested one */
        char dir[32], path[256];
        save_tmp(mm, k % 2, dir, path);
        json_t *orig = test_st_header(e), *saved = saved_header(path);
        const char *key;
        json_t *val;
        int n_dt = 0;
        json_object_foreach(saved, key, val) {
            if (!strcmp(key, "__metadata__")) continue;
            const char *d = json_string_value(json_object_get(val, "dtype")), *o = dtype_of(orig, key);
            if (!o && !strcmp(key, "lm_head.weight")) o = dtype_of(orig, "model.embed_tokens.weight"); /* was tied */
            ck_assert_msg(!strcmp(d, dt) || (o && !strcmp(d, o)), "%s -> %s: tensor %s saved as %s (file: %s)", name,
                          dt, key, d, o ? o : "none");
            n_dt += !strcmp(d, dt);
        }
        ck_assert_msg(n_dt > 0, "%s -> %s: no tensor saved as %s", name, dt, dt);
        skl_model *back;
        ck_assert_int_eq(skl_model_load(path, NULL, &back), SKL_OK);
        float *pb = test_logits(back, tok, n, TEST_PREFILL);
        ck_assert_msg(memcmp(pb, pre, (size_t)n * hp.vocab_size * sizeof *pb) == 0, "%s -> %s: reloaded logits differ",
                      name, dt);
        free(pb);
        skl_model_free(back);
        json_decref(orig);
        json_decref(saved);
        rm_rf(dir);
        free(pre);
        skl_merge_report_free(rep);
        skl_model_free(mm);
    }
    /* an unknown dtype is refused */
    skl_merge_params bad;
    skl_merge_params_init(&bad, sizeof bad);
    bad.dtype = (skl_dtype)7;
    skl_model *mm = (skl_model *)0x1;
    ck_assert_int_eq(skl_model_merge(m, &bad, &mm, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_ptr_null(mm);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "dtype"));
    free(tok);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* --- refusals with their exact codes ------------------------------------ */

static skl_model *load_named(json_t *man, const char *name) {
    return test_load(test_find_model(man, name));
}

START_TEST(test_refusals) {
    json_t *man = test_manifest();
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    skl_model *out = NULL;
    skl_model *gqa = load_named(man, "serial_gqa_relu_mlp_bf16_nonorm");
    mp.remove = SKL_REMOVE_KP; /* K removal with GQA */
    ck_assert_int_eq(skl_model_merge(gqa, &mp, &out, NULL), SKL_ERR_MERGE_NOT_APPLICABLE);
    ck_assert_ptr_null(out);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "k_proj"));
    mp.remove = SKL_REMOVE_Q; /* parallel removal on a serial model */
    ck_assert_int_eq(skl_model_merge(gqa, &mp, &out, NULL), SKL_ERR_MERGE_NOT_APPLICABLE);
    skl_model_free(gqa);
    skl_model *wide = load_named(man, "serial_gqa_wideheads_bias");
    mp.remove = SKL_REMOVE_QP; /* non-square Q: heads * head_dim != hidden */
    ck_assert_int_eq(skl_model_merge(wide, &mp, &out, NULL), SKL_ERR_MERGE_NOT_APPLICABLE);
    mp.remove = SKL_REMOVE_AUTO;
    ck_assert_int_eq(skl_model_merge(wide, &mp, &out, NULL), SKL_ERR_MERGE_NOT_APPLICABLE);
    skl_model_free(wide);
    skl_model *noqo = load_named(man, "serial_noq_noo");
    mp.remove = SKL_REMOVE_QP;
    ck_assert_int_eq(skl_model_merge(noqo, &mp, &out, NULL), SKL_ERR_ALREADY_MERGED);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "layer 0"));
    skl_model_free(noqo);
    skl_model *par = load_named(man, "parallel_mha_relu_glu_bias_theta5e5");
    mp.remove = SKL_REMOVE_QP; /* Q and P from a parallel block is not lossless */
    ck_assert_int_eq(skl_model_merge(par, &mp, &out, NULL), SKL_ERR_MERGE_NOT_APPLICABLE);
    mp.remove = (skl_removal)99;
    ck_assert_int_eq(skl_model_merge(par, &mp, &out, NULL), SKL_ERR_INVALID_ARG);
    mp.remove = SKL_REMOVE_AUTO;
    ck_assert_int_eq(skl_model_merge(NULL, &mp, &out, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_merge(par, &mp, NULL, NULL), SKL_ERR_INVALID_ARG);
    skl_model_free(par);
    json_decref(man);
}
END_TEST

static int cancel_at_2(uint64_t done, uint64_t total, void *ud) {
    (void)total;
    *(int *)ud += 1;
    return done >= 2;
}

/* Merge params whose progress callback counts its calls in *calls and cancels after block 2. */
static skl_merge_params cancelling(int *calls) {
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    *calls = 0;
    mp.progress = cancel_at_2;
    mp.progress_user_data = calls;
    return mp;
}

START_TEST(test_cancel) {
    json_t *man = test_manifest();
    skl_model *m = load_named(man, "serial_mha_gelu_glu_bias_file"); /* 3 layers */
    int calls;
    skl_merge_params mp = cancelling(&calls);
    skl_model *out = (skl_model *)0x1;
    skl_merge_report *rep = (skl_merge_report *)0x1;
    ck_assert_int_eq(skl_model_merge(m, &mp, &out, &rep), SKL_ERR_CANCELLED);
    ck_assert_ptr_null(out);
    ck_assert_ptr_null(rep);
    ck_assert_int_eq(calls, 2);
    for (int l = 0; l < 3; l++) ck_assert_int_eq(skl_model_has_proj(m, l, 'q'), 1);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Copy a single-file F32 model and damage q_proj of layer 0: row 1 = s * row 1. */
static void damaged_copy(const json_t *e, double s, const char *dst) {
    json_t *hdr = test_st_header(e);
    const json_t *t = json_object_get(hdr, "model.layers.0.self_attn.q_proj.weight");
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "F32");
    long begin = (long)json_integer_value(json_array_get(json_object_get(t, "data_offsets"), 0));
    long cols = (long)json_integer_value(json_array_get(json_object_get(t, "shape"), 1));
    json_decref(hdr);
    FILE *in = fopen(test_path(test_str(e, "path")), "rb");
    ck_assert_ptr_nonnull(in);
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    ck_assert_int_eq(fread(buf, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    float *row1 = (float *)(void *)(buf + 8 + hl + begin + cols * 4);
    for (long j = 0; j < cols; j++) {
        float v;
        memcpy(&v, &row1[j], 4);
        v = (float)(v * s);
        memcpy(&row1[j], &v, 4);
    }
    FILE *out = fopen(dst, "wb");
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(fwrite(buf, 1, (size_t)size, out), (size_t)size);
    fclose(out);
    free(buf);
}

START_TEST(test_singular_and_ill_conditioned) {
    json_t *man = test_manifest();
    const json_t *e = test_find_model(man, "serial_mha_gelu_glu_bias_file");
    const char *p_sing = "/tmp/skl_test_singular.safetensors", *p_ill = "/tmp/skl_test_illcond.safetensors";
    damaged_copy(e, 0.0, p_sing);   /* a zero row: exactly singular */
    damaged_copy(e, 1e-6, p_ill);   /* condition ~1e6 > 0.01 / 2^-24 */
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.remove = SKL_REMOVE_QP;
    skl_model *m, *out;
    ck_assert_int_eq(skl_model_load(p_sing, NULL, &m), SKL_OK);
    ck_assert_int_eq(skl_model_merge(m, &mp, &out, NULL), SKL_ERR_SINGULAR);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "layer 0"));
    ck_assert_ptr_null(out);
    skl_model_free(m);
    ck_assert_int_eq(skl_model_load(p_ill, NULL, &m), SKL_OK);
    ck_assert_int_eq(skl_model_merge(m, &mp, &out, NULL), SKL_ERR_ILL_CONDITIONED);
    ck_assert_ptr_nonnull(strstr(skl_last_error(), "condition number"));
    mp.max_condition = 1e9; /* the caller may accept it */
    skl_merge_report *rep;
    ck_assert_int_eq(skl_model_merge(m, &mp, &out, &rep), SKL_OK);
    ck_assert(skl_merge_report_layer(rep, 0)->condition > 1e5);
    ck_assert_ptr_null(skl_merge_report_layer(rep, rep->n_layers));
    ck_assert_ptr_null(skl_merge_report_layer(rep, -1));
    skl_merge_report_free(rep);
    skl_model_free(out);
    skl_model_free(m);
    unlink(p_sing);
    unlink(p_ill);
    json_decref(man);
}
END_TEST

/* --- accounting: the paper's table -------------------------------------- */

static const skl_plan_row *row_of(const skl_plan *p, skl_removal r, bool lossless) {
    for (int i = 0; i < p->n_rows; i++) {
        const skl_plan_row *row = skl_plan_row_at(p, i);
        if (row->removal == r && row->lossless == lossless) return row;
    }
    ck_assert_ptr_null(skl_plan_row_at(p, p->n_rows));
    return NULL;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_plan_paper_table) {
    /* Mistral-7B's Hugging Face config (the keys that matter) */
    const char *mistral = "/tmp/skl_test_mistral.json", *pythia = "/tmp/skl_test_pythia.json";
    write_text(mistral, "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", \"hidden_act\": \"silu\","
                        " \"hidden_size\": 4096, \"intermediate_size\": 14336, \"max_position_embeddings\": 32768,"
                        " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
                        " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
                        " \"vocab_size\": 32000}");
    /* Pythia-6.9B (GPT-NeoX) with the paper's vocabulary of 50,400 */
    write_text(pythia, "{\"model_type\": \"gpt_neox\", \"hidden_act\": \"gelu\", \"hidden_size\": 4096,"
                       " \"intermediate_size\": 16384, \"max_position_embeddings\": 2048, \"num_attention_heads\": 32,"
                       " \"num_hidden_layers\": 32, \"rotary_pct\": 0.25, \"use_parallel_residual\": true,"
                       " \"vocab_size\": 50400}");
    skl_plan *p;
    ck_assert_int_eq(skl_plan_config(mistral, &p), SKL_OK);
    ck_assert_int_eq(p->block_type, SKL_BLOCK_SERIAL);
    const skl_plan_row *qp = row_of(p, SKL_REMOVE_QP, true);
    ck_assert_ptr_nonnull(qp);
    ck_assert_uint_eq(qp->total, 7241465856ull);
    ck_assert_uint_eq(qp->after, 6167724032ull);
    ck_assert_int_eq((int)(qp->saving_percent * 100 + 0.5), 1483);
    ck_assert_int_eq((int)(qp->speedup_bound * 1000 + 0.5), 1174);
    ck_assert(!row_of(p, SKL_REMOVE_KP, true)->applicable); /* GQA */
    skl_plan_free(p);
    ck_assert_int_eq(skl_plan_config(pythia, &p), SKL_OK);
    ck_assert_int_eq(p->block_type, SKL_BLOCK_PARALLEL);
    const skl_plan_row *trained = row_of(p, SKL_REMOVE_QP, false), *q = row_of(p, SKL_REMOVE_Q, true);
    ck_assert_uint_eq(trained->total, 6855327744ull);
    ck_assert_int_eq((int)(trained->saving_percent * 100 + 0.5), 1566);
    ck_assert_int_eq((int)(trained->speedup_bound * 1000 + 0.5), 1186);
    ck_assert_int_eq((int)(q->saving_percent * 100 + 0.5), 783);
    ck_assert_int_eq((int)(q->speedup_bound * 1000 + 0.5), 1085);
    skl_plan_free(p);
    ck_assert_int_eq(skl_plan_config("/nonexistent/config.json", &p), SKL_ERR_IO);
    ck_assert_ptr_null(p);
    unlink(mistral);
    unlink(pythia);
}
END_TEST

/* ------------------------------------------------------------ sharded save */

static bool exists(const char *dir, const char *name) {
    char p[400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* The *.safetensors files of dir, sorted, as one "a,b,c" string (static). */
static const char *weight_files(const char *dir) {
    static char out[4096];
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cd '%s' && ls | grep '\\.safetensors$' | sort | paste -sd, -", dir);
    FILE *fp = popen(cmd, "r");
    ck_assert_ptr_nonnull(fp);
    out[0] = 0;
    if (!fgets(out, sizeof out, fp)) out[0] = 0;
    pclose(fp);
    out[strcspn(out, "\n")] = 0;
    return out;
}

static int save_sharded(const skl_model *m, const char *path, uint64_t limit) {
    skl_save_params sp;
    ck_assert_int_eq(skl_save_params_init(&sp, sizeof sp), SKL_OK);
    sp.max_shard_size = limit;
    return skl_model_save_v2(m, path, &sp);
}

/* A sharded model saved with its own shard limit: the shards models.py wrote
 * (Hugging Face's split), the same weight_map, bitwise the same logits; saved
 * again with the default limit: one model.safetensors, no index, no shard
 * left over; and back to shards. */
START_TEST(test_save_sharded_round_trip) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", _i);
    skl_model *m = test_load(e);
    int32_t n = 0;
    int32_t *tok = test_tokens(e, &n);
    float *want = test_logits(m, tok, n, TEST_PREFILL);
    char dir[] = "/tmp/skl_shard_XXXXXX", path[256], expect[4096] = "";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    const json_t *shards = json_object_get(e, "shards");
    for (size_t i = 0; i < json_array_size(shards); i++)
        snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "%s%s", i ? "," : "",
                 json_string_value(json_array_get(shards, i)));
    uint64_t limit = (uint64_t)json_integer_value(json_object_get(e, "max_shard_size"));
    for (int round = 0; round < 3; round++) {
        bool sharded = round != 1;
        ck_assert_msg(save_sharded(m, path, sharded ? limit : 0) == SKL_OK, "%s", skl_last_error());
        ck_assert_str_eq(weight_files(path), sharded ? expect : "model.safetensors");
        ck_assert(exists(path, "model.safetensors.index.json") == sharded);
        ck_assert(!exists(path, "model.safetensors.tmp") && !exists(path, "config.json.tmp"));
        if (sharded) { /* the same weight_map as the index models.py wrote */
            char a[400], b[4000];
            snprintf(a, sizeof a, "%s/model.safetensors.index.json", path);
            snprintf(b, sizeof b, "%s/model.safetensors.index.json", test_path(test_str(e, "path")));
            json_t *ja = json_load_file(a, 0, NULL), *jb = json_load_file(b, 0, NULL);
            ck_assert_msg(ja && jb && json_equal(ja, jb), "%s: the saved index differs from models.py's", a);
            json_decref(ja);
            json_decref(jb);
        }
        for (int mm = 0; mm < 2; mm++) {
            skl_model *back = test_load_path(path, mm);
            test_same_logits(back, tok, n, want, round == 1 ? "saved as one file" : "saved sharded");
            skl_model_free(back);
        }
    }
    free(want);
    free(tok);
    skl_model_free(m);
    rm_rf(dir);
    json_decref(man);
}
END_TEST

/* skl_save_params: defaults, NULL params, sizes. */
START_TEST(test_save_params) {
    skl_save_params sp;
    memset(&sp, 0xff, sizeof sp);
    ck_assert_int_eq(skl_save_params_init(&sp, sizeof sp), SKL_OK);
    ck_assert_int_eq(sp.struct_size, sizeof sp);
    ck_assert_int_eq(sp.format, SKL_SAVE_AUTO);
    ck_assert(sp.max_shard_size == 0);
    ck_assert_int_eq(skl_save_params_init(NULL, sizeof sp), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_save_params_init(&sp, 2), SKL_ERR_INVALID_ARG);
    test_model t;
    test_open_named(&t, "serial_mha_silu_glu");
    char dir[] = "/tmp/skl_sp_XXXXXX", path[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    ck_assert_int_eq(skl_model_save_v2(t.model, path, NULL), SKL_OK); /* defaults: a directory, one file */
    ck_assert_str_eq(weight_files(path), "model.safetensors");
    sp.struct_size = 4;
    ck_assert_int_eq(skl_model_save_v2(t.model, path, &sp), SKL_ERR_INVALID_ARG);
    skl_save_params_init(&sp, sizeof sp);
    sp.format = (skl_save_format)7;
    ck_assert_int_eq(skl_model_save_v2(t.model, path, &sp), SKL_ERR_INVALID_ARG);
    /* SKL_SAVE_FILE ignores the limit: one file. */
    skl_save_params_init(&sp, sizeof sp);
    sp.format = SKL_SAVE_FILE;
    sp.max_shard_size = 1000;
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    ck_assert_int_eq(skl_model_save_v2(t.model, path, &sp), SKL_OK);
    test_logits_vs_ref(t.model, t.entry, TEST_PREFILL, TEST_TOL, "saved file");
    rm_rf(dir);
    test_close(&t);
}
END_TEST

/* The two writers of a saved model: the plain save of m, or the streaming merge
 * of m (auto removal) into path. */
static int write_sharded(const skl_model *m, const char *path, uint64_t limit, bool merge) {
    if (!merge) return save_sharded(m, path, limit);
    skl_save_params sp;
    skl_save_params_init(&sp, sizeof sp);
    sp.max_shard_size = limit;
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.verify = false;
    return skl_model_merge_to(m, path, &mp, &sp, NULL);
}

/* A failed save or streaming merge (a file-size limit as a full disk, in a
 * child; or a directory in the place of the last new shard, so that its rename
 * fails after 17 shards were renamed into place and the commit must undo
 * them) leaves the existing model byte-identical and no temporary behind. */
START_TEST(test_save_failure_leaves_output) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", 0);
    skl_model *m = test_load(e);
    char dir[] = "/tmp/skl_fail_XXXXXX", path[256], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    char blocker[400], trial[300];
    snprintf(trial, sizeof trial, "%s/trial", dir);
    for (int k = 0; k < 8; k++) {
        bool old_sharded = k % 2, full_disk = k % 4 < 2 || old_sharded, merge = k >= 4;
        ck_assert_int_eq(save_sharded(m, path, old_sharded ? 5000 : 0), SKL_OK);
        if (!full_disk) { /* the last shard of what the failing call writes (a merge has fewer) */
            ck_assert_int_eq(write_sharded(m, trial, 5000, merge), SKL_OK);
            char ipath[400];
            json_error_t jerr;
            snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", trial);
            json_t *index = json_load_file(ipath, 0, &jerr);
            ck_assert_msg(index != NULL, "%s: %s", ipath, jerr.text);
            int n = (int)json_object_size(json_object_get(index, "weight_map")), last = 0;
            const char *key;
            json_t *val;
            json_object_foreach(json_object_get(index, "weight_map"), key, val) {
                int i, of;
                ck_assert_int_eq(sscanf(json_string_value(val), "model-%5d-of-%5d", &i, &of), 2);
                if (i > last) last = i;
            }
            ck_assert_int_gt(n, 0);
            snprintf(blocker, sizeof blocker, "%s/model-%05d-of-%05d.safetensors", path, last, last);
            json_decref(index);
            rm_rf(trial);
            ck_assert_int_eq(mkdir(blocker, 0700), 0);
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s/snap' && cp -a '%s' '%s/snap'", dir, path, dir);
        ck_assert_int_eq(system(cmd), 0);
        uint64_t limit = old_sharded ? 0 : 5000; /* the other layout */
        int rc;
        if (full_disk) {
            pid_t pid = fork();
            ck_assert_int_ge(pid, 0);
            if (pid == 0) {
                struct rlimit rl = {2048, 2048};
                signal(SIGXFSZ, SIG_IGN);
                setrlimit(RLIMIT_FSIZE, &rl);
                _exit(write_sharded(m, path, limit, merge) == SKL_ERR_IO ? 0 : 1);
            }
            int status = 0;
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            ck_assert_msg(rc == 0, "case %d: the save under RLIMIT_FSIZE did not fail with SKL_ERR_IO", k);
        } else {
            rc = write_sharded(m, path, limit, merge);
            ck_assert_msg(rc == SKL_ERR_IO && strstr(skl_last_error(), blocker) &&
                              strstr(skl_last_error(), "nothing was changed"),
                          "case %d: %d %s", k, rc, skl_last_error());
        }
        snprintf(cmd, sizeof cmd, "diff -r '%s' '%s/snap' >/dev/null", path, dir);
        ck_assert_msg(system(cmd) == 0, "case %d: the existing model changed after a failed save", k);
        if (!full_disk) ck_assert_int_eq(rmdir(blocker), 0);
        skl_model *back = NULL;
        ck_assert_int_eq(skl_model_load(path, NULL, &back), SKL_OK);
        test_logits_vs_ref(back, e, TEST_PREFILL, TEST_TOL, "after a failed save");
        skl_model_free(back);
    }
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* The bytes of a file (or the target of a symlink, readlink) as a malloc'd string. */
static char *file_text(const char *path, bool link) {
    char *t = calloc(1, 4096);
    ck_assert_ptr_nonnull(t);
    if (link) ck_assert_int_gt(readlink(path, t, 4095), 0);
    else {
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(t, 1, 4095, f);
        t[n] = '\0';
        fclose(f);
    }
    return t;
}

/* Issue 15, defect 2: temporaries of the old fixed names ("NAME.tmp") planted
 * in the output beforehand, as regular files and as symlinks to a victim file,
 * are neither followed nor touched by a save (into a directory and as one
 * file); the save succeeds.  It used to fopen("NAME.tmp", "wb") them. */
START_TEST(test_save_planted_temporaries) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", 0);
    skl_model *m = test_load(e);
    char dir[] = "/tmp/skl_planted_XXXXXX", victim[64], p[300], out[300];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs("the victim's own bytes\n", f);
    fclose(f);
    static const char *const planted[] = {"m/model.safetensors.tmp", "m/config.json.tmp", "m/tokenizer.json.tmp",
                                          "m/model-00001-of-00018.safetensors.tmp", "m/model.safetensors.index.json.tmp",
                                          "m.safetensors.tmp"};
    snprintf(out, sizeof out, "%s/m", dir);
    ck_assert_int_eq(mkdir(out, 0700), 0);
    for (size_t i = 0; i < TEST_COUNT(planted); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, planted[i]);
        if (i % 2 == 0) ck_assert_int_eq(symlink(victim, p), 0);
        else {
            f = fopen(p, "w");
            ck_assert_ptr_nonnull(f);
            fprintf(f, "planted %zu\n", i);
            fclose(f);
        }
    }
    for (int k = 0; k < 3; k++) { /* a directory, shards, one file */
        snprintf(p, sizeof p, "%s/%s", dir, k == 2 ? "m.safetensors" : "m");
        ck_assert_msg(save_sharded(m, p, k == 1 ? 5000 : 0) == SKL_OK, "%s: %s", p, skl_last_error());
        skl_model *back = NULL;
        ck_assert_int_eq(skl_model_load(p, NULL, &back), SKL_OK);
        test_logits_vs_ref(back, e, TEST_PREFILL, test_storage_tol(test_str(e, "dtype")), "saved beside planted names");
        skl_model_free(back);
    }
    char *v = file_text(victim, false);
    ck_assert_str_eq(v, "the victim's own bytes\n");
    free(v);
    for (size_t i = 0; i < TEST_COUNT(planted); i++) {
        snprintf(p, sizeof p, "%s/%s", dir, planted[i]);
        char *t = file_text(p, i % 2 == 0), want[64];
        if (i % 2 == 0) ck_assert_str_eq(t, victim);
        else {
            snprintf(want, sizeof want, "planted %zu\n", i);
            ck_assert_str_eq(t, want);
        }
        free(t);
    }
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Two threads saving one model into one directory at once, 4 times each: every
 * save succeeds and the result loads with the reference logits (with one fixed
 * temporary name they wrote one file and renamed it from under each other). */
typedef struct saver {
    const skl_model *m;
    const char *path;
    uint64_t limit;
    int rc;
    char msg[512];
} saver;

static void *save_loop(void *arg) {
    saver *s = arg;
    for (int i = 0; i < 4 && !s->rc; i++) {
        skl_save_params sp;
        skl_save_params_init(&sp, sizeof sp);
        sp.max_shard_size = s->limit;
        if ((s->rc = skl_model_save_v2(s->m, s->path, &sp))) snprintf(s->msg, sizeof s->msg, "%s", skl_last_error());
    }
    return NULL;
}

START_TEST(test_save_concurrent_same_output) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", 0);
    skl_model *m = test_load(e);
    char dir[] = "/tmp/skl_concurrent_XXXXXX", path[64];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    saver s[2] = {{m, path, 0, 0, ""}, {m, path, 0, 0, ""}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, save_loop, &s[i]), 0);
    for (int i = 0; i < 2; i++) ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < 2; i++) ck_assert_msg(s[i].rc == SKL_OK, "thread %d: %s", i, s[i].msg);
    skl_model *back = NULL;
    ck_assert_int_eq(skl_model_load(path, NULL, &back), SKL_OK);
    test_logits_vs_ref(back, e, TEST_PREFILL, test_storage_tol(test_str(e, "dtype")), "after concurrent saves");
    skl_model_free(back);
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Issue 15, defect 6: a save or streaming merge onto the files the model was
 * loaded from is SKL_ERR_SAME_AS_SOURCE, by the same path, through a symlink,
 * or spelled otherwise ("D/.", "D/../m", "./" relative), for a directory and a
 * single-file model and for a merged model (whose source is the original's);
 * the files stay byte-identical.  `skipless merge MODEL MODEL` used to rewrite
 * the model in place. */
START_TEST(test_save_refuses_source) {
    json_t *man = test_manifest();
    skl_model *orig = test_load(test_find_model(man, "serial_mha_silu_glu"));
    for (int single = 0; single < 2; single++) {
        char dir[32], path[256], cmd[800], alias[6][300];
        save_tmp(orig, single, dir, path);
        skl_model *m = NULL, *merged = NULL;
        ck_assert_int_eq(skl_model_load(path, NULL, &m), SKL_OK);
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        mp.verify = false;
        ck_assert_int_eq(skl_model_merge(m, &mp, &merged, NULL), SKL_OK);
        snprintf(cmd, sizeof cmd, "cp -a '%s' '%s/snap'", path, dir);
        ck_assert_int_eq(system(cmd), 0);
        const char *name = single ? "m.safetensors" : "m";
        snprintf(alias[0], sizeof alias[0], "%s", path);
        snprintf(alias[1], sizeof alias[1], "%s/link", dir);
        ck_assert_int_eq(symlink(path, alias[1]), 0);
        snprintf(alias[2], sizeof alias[2], "%s/./%s", dir, name);
        snprintf(alias[3], sizeof alias[3], "%s/../%s/%s", dir, dir + 5, name);
        snprintf(alias[4], sizeof alias[4], "/tmp//%s//%s", dir + 5, name);
        /* a directory model: its own weights file, saved as one file */
        snprintf(alias[5], sizeof alias[5], "%s/model.safetensors", path);
        for (int a = 0; a < (single ? 5 : 6); a++)
            for (int k = 0; k < 3; k++) {
                skl_save_params sp;
                skl_save_params_init(&sp, sizeof sp);
                sp.format = single || a == 5 ? SKL_SAVE_FILE : SKL_SAVE_DIR;
                int rc = k == 0 ? skl_model_save_v2(m, alias[a], &sp)
                       : k == 1 ? skl_model_save_v2(merged, alias[a], &sp)
                                : skl_model_merge_to(m, alias[a], &mp, &sp, NULL);
                ck_assert_msg(rc == SKL_ERR_SAME_AS_SOURCE, "%s, call %d onto %s: %s: %s", name, k, alias[a],
                              skl_status_name(rc), skl_last_error());
                ck_assert_ptr_nonnull(strstr(skl_last_error(), alias[a]));
            }
        snprintf(cmd, sizeof cmd, "diff -r '%s' '%s/snap' >/dev/null", path, dir);
        ck_assert_msg(system(cmd) == 0, "%s changed", path);
        /* beside it is fine */
        snprintf(alias[0], sizeof alias[0], "%s/other%s", dir, single ? ".safetensors" : "");
        ck_assert_int_eq(skl_model_save(merged, alias[0], SKL_SAVE_AUTO), SKL_OK);
        skl_model_free(merged);
        skl_model_free(m);
        rm_rf(dir);
    }
    skl_model_free(orig);
    json_decref(man);
}
END_TEST

/* Disk faults on a real filesystem (issue 15, defect 1): a tmpfs of 1 MiB
 * mounted for the test (root only; skipped with a message otherwise).  The
 * model is saved into it; then the free space is cut to X bytes, for X from 0
 * up to what a save needs in steps of 4 KiB, and the model saved again (one
 * file, shards, the streaming merge; into the existing directory and into a
 * new one).  Each call either succeeds or fails with SKL_ERR_IO saying "No
 * space left on device"; a failure leaves the existing directory
 * byte-identical with no temporary beside it, and no new directory.  Last, the
 * filesystem remounted read-only: "Read-only file system", nothing changed. */
static uint64_t free_bytes(const char *dir) {
    struct statvfs v;
    ck_assert_int_eq(statvfs(dir, &v), 0);
    return (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

static void same_tree(const char *a, const char *b, const char *what) {
    char cmd[800];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' >/dev/null", a, b);
    ck_assert_msg(system(cmd) == 0, "%s: %s differs from its snapshot", what, a);
}

START_TEST(test_save_disk_full) {
    char mnt[] = "/tmp/skl_tmpfs_XXXXXX", out[300], fresh[300], snap[300], filler[300], cmd[1000];
    ck_assert_ptr_nonnull(mkdtemp(mnt));
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        fprintf(stderr, "test_save_disk_full: skipped: cannot mount a tmpfs (%s)\n",
                geteuid() != 0 ? "not root" : strerror(errno));
        rmdir(mnt);
        return;
    }
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "sharded", 0);
    skl_model *m = test_load(e);
    snprintf(out, sizeof out, "%s/m", mnt);
    snprintf(fresh, sizeof fresh, "%s/new", mnt);
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    snprintf(snap, sizeof snap, "%s.snap", mnt);
    ck_assert_int_eq(save_sharded(m, out, 0), SKL_OK);
    int failures = 0, successes = 0;
    for (int variant = 0; variant < 6; variant++) {
        uint64_t limit = variant % 3 == 1 ? 5000 : 0;
        bool merge = variant % 3 == 2, into_fresh = variant >= 3;
        for (uint64_t x = 0; x < 160 * 1024; x += 4096) {
            snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", snap, out, snap);
            ck_assert_int_eq(system(cmd), 0);
            uint64_t avail = free_bytes(mnt);
            int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            ck_assert_int_ge(fd, 0);
            if (avail > x) ck_assert_int_eq(posix_fallocate(fd, 0, (off_t)(avail - x)), 0);
            close(fd);
            const char *target = into_fresh ? fresh : out;
            int rc = write_sharded(m, target, limit, merge);
            if (rc == SKL_OK) successes++;
            else {
                failures++;
                ck_assert_msg(rc == SKL_ERR_IO && strstr(skl_last_error(), "No space left on device"),
                              "variant %d, %llu bytes free: %s: %s", variant, (unsigned long long)x, skl_status_name(rc),
                              skl_last_error());
                same_tree(out, snap, "after a failed save");
                ck_assert_msg(!into_fresh || access(fresh, F_OK) != 0, "a failed save left %s behind", fresh);
            }
            unlink(filler);
            rm_rf(fresh);
            skl_model *back = NULL;
            ck_assert_int_eq(skl_model_load(out, NULL, &back), SKL_OK);
            test_logits_vs_ref(back, e, TEST_PREFILL, merge ? 1e-3 : TEST_TOL, "after a save on a full disk");
            skl_model_free(back);
            if (rc == SKL_OK && !into_fresh) ck_assert_int_eq(save_sharded(m, out, 0), SKL_OK); /* back to the start */
        }
    }
    ck_assert_int_gt(failures, 0);
    ck_assert_int_gt(successes, 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", snap, out, snap);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
    for (int variant = 0; variant < 3; variant++) {
        int rc = write_sharded(m, out, variant == 1 ? 5000 : 0, variant == 2);
        ck_assert_msg(rc == SKL_ERR_IO && strstr(skl_last_error(), "Read-only file system"), "read-only: %s: %s",
                      skl_status_name(rc), skl_last_error());
        same_tree(out, snap, "after a save on a read-only filesystem");
    }
    ck_assert_int_eq(umount2(mnt, MNT_DETACH), 0);
    rmdir(mnt);
    rm_rf(snap);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* ------------------------------------------------------- streaming merge */

/* skl_model_merge_to against skl_model_merge + skl_model_save_v2, for every
 * removal: the same files byte for byte (so the same tensors bit for bit, the
 * same headers and config), as one file, a directory and shards of at most
 * 5000 bytes, in several dtypes (quantized ones too); the same report; the
 * same refusals, with nothing written. */
START_TEST(test_merge_to_same_files) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "models", _i);
    skl_model *m = test_load(e);
    static const skl_dtype dts[] = {SKL_DTYPE_F32, SKL_DTYPE_SAME, SKL_DTYPE_BF16, SKL_DTYPE_Q8_0, SKL_DTYPE_Q4_0};
    char dir[] = "/tmp/skl_mto_XXXXXX", a[256], b[256], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (int k = 0; k < N_REMOVALS; k++)
        for (int layout = 0; layout < 3; layout++) { /* one file, a directory, shards */
            skl_merge_params mp;
            skl_merge_params_init(&mp, sizeof mp);
            mp.remove = removals[k];
            mp.dtype = dts[(k + layout) % 5];
            mp.verify = layout == 0;
            skl_save_params sp;
            skl_save_params_init(&sp, sizeof sp);
            sp.format = layout == 0 ? SKL_SAVE_FILE : SKL_SAVE_DIR;
            sp.max_shard_size = layout == 2 ? 5000 : 0;
            snprintf(a, sizeof a, "%s/a%s", dir, layout == 0 ? ".safetensors" : "");
            snprintf(b, sizeof b, "%s/b%s", dir, layout == 0 ? ".safetensors" : "");
            skl_model *mm = NULL;
            skl_merge_report *ra = NULL, *rb = (skl_merge_report *)0x1;
            int rc = skl_model_merge(m, &mp, &mm, &ra);
            int rc2 = skl_model_merge_to(m, b, &mp, &sp, &rb);
            const char *what = skl_removal_name(removals[k]);
            ck_assert_msg(rc2 == rc, "%s/%s: merge_to %d, merge %d (%s)", test_str(e, "name"), what, rc2, rc,
                          skl_last_error());
            if (rc) {
                ck_assert_ptr_null(rb);
                ck_assert(!exists(dir, layout == 0 ? "b.safetensors" : "b"));
                continue;
            }
            ck_assert_int_eq(skl_model_save_v2(mm, a, &sp), SKL_OK);
            snprintf(cmd, sizeof cmd, "diff -r '%s' '%s' >/dev/null", a, b);
            ck_assert_msg(system(cmd) == 0, "%s/%s layout %d: the streaming merge wrote other files", test_str(e, "name"),
                          what, layout);
            ck_assert_int_eq(rb->removal, ra->removal);
            ck_assert_uint_eq(rb->weights_before, ra->weights_before);
            ck_assert_uint_eq(rb->weights_after, ra->weights_after);
            ck_assert(rb->max_condition == ra->max_condition && rb->max_residual == ra->max_residual);
            for (int32_t l = 0; l < ra->n_layers; l++) {
                const skl_merge_layer *la = skl_merge_report_layer(ra, l), *lb = skl_merge_report_layer(rb, l);
                ck_assert(la->weights_after == lb->weights_after && la->condition == lb->condition &&
                          la->removed_q == lb->removed_q && la->removed_o == lb->removed_o);
            }
            /* verified on the written model: the same tensors, so the same logits as verified in memory */
            if (mp.verify) ck_assert_msg(rb->verify_error == ra->verify_error, "verify %g, in memory %g", rb->verify_error,
                                         ra->verify_error);
            else ck_assert(rb->verify_error == -1.0);
            skl_merge_report_free(ra);
            skl_merge_report_free(rb);
            skl_model_free(mm);
            snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", a, b);
            ck_assert_int_eq(system(cmd), 0);
        }
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* A cancelled streaming merge: no output at a new path, an existing one untouched. */
START_TEST(test_merge_to_cancel) {
    json_t *man = test_manifest();
    skl_model *m = load_named(man, "serial_mha_gelu_glu_bias_file"); /* 3 layers */
    char dir[] = "/tmp/skl_mtc_XXXXXX", path[256], cmd[800];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m", dir);
    for (int existing = 0; existing < 2; existing++) {
        if (existing) {
            ck_assert_int_eq(skl_model_save(m, path, SKL_SAVE_DIR), SKL_OK);
            snprintf(cmd, sizeof cmd, "cp -a '%s' '%s/snap'", path, dir);
            ck_assert_int_eq(system(cmd), 0);
        }
        int calls;
        skl_merge_params mp = cancelling(&calls);
        skl_merge_report *rep = (skl_merge_report *)0x1;
        ck_assert_int_eq(skl_model_merge_to(m, path, &mp, NULL, &rep), SKL_ERR_CANCELLED);
        ck_assert_ptr_null(rep);
        ck_assert_int_eq(calls, 2);
        ck_assert_ptr_nonnull(strstr(skl_last_error(), "cancelled"));
        if (existing) {
            snprintf(cmd, sizeof cmd, "diff -r '%s' '%s/snap' >/dev/null", path, dir);
            ck_assert_msg(system(cmd) == 0, "the existing model changed after a cancelled merge");
        } else ck_assert(!exists(dir, "m"));
    }
    ck_assert_int_eq(skl_model_merge_to(NULL, path, NULL, NULL, NULL), SKL_ERR_INVALID_ARG);
    ck_assert_int_eq(skl_model_merge_to(m, "", NULL, NULL, NULL), SKL_ERR_INVALID_ARG);
    rm_rf(dir);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Models whose activations vanish or overflow (manifest "degenerate"): the
 * original's probe logits are all zero or not finite, so verification can
 * show no difference; the report says NaN (inconclusive), never 0. */
START_TEST(test_verify_inconclusive) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "degenerate", _i);
    skl_model *m = test_load(e), *mm = NULL;
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.remove = SKL_REMOVE_QP;
    skl_merge_report *rep = NULL;
    ck_assert_int_eq(skl_model_merge(m, &mp, &mm, &rep), SKL_OK);
    ck_assert_msg(isnan(rep->verify_error), "%s: verify error %g, want NaN", test_str(e, "name"), rep->verify_error);
    skl_merge_report_free(rep);
    skl_model_free(mm);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

/* Issue 15, defect 8: a NaN or infinity in a weight the merge reads (manifest
 * "nonfinite") is SKL_ERR_NOT_FINITE naming the tensor and the element, for
 * every removal and for the streaming merge (which then writes nothing); it
 * used to reach dgetrf ("argument 4 invalid") or read as "singular". */
START_TEST(test_merge_refuses_nonfinite) {
    json_t *man = test_manifest();
    const json_t *e = test_entry(man, "nonfinite", _i);
    skl_model *m = test_load(e);
    const json_t *at = json_object_get(e, "at");
    char want[200], out[] = "/tmp/skl_nonfinite_XXXXXX", path[64];
    snprintf(want, sizeof want, "%s [", test_str(e, "tensor"));
    char where[64];
    snprintf(where, sizeof where, "at [%lld, %lld]", (long long)json_integer_value(json_array_get(at, 0)),
             (long long)json_integer_value(json_array_get(at, 1)));
    ck_assert_ptr_nonnull(mkdtemp(out));
    snprintf(path, sizeof path, "%s/merged", out);
    static const skl_removal rms[] = {SKL_REMOVE_AUTO, SKL_REMOVE_QP, SKL_REMOVE_KP, SKL_REMOVE_VP};
    for (size_t k = 0; k < TEST_COUNT(rms) * 2; k++) {
        skl_merge_params mp;
        skl_merge_params_init(&mp, sizeof mp);
        mp.remove = rms[k % TEST_COUNT(rms)];
        skl_model *mm = NULL;
        int rc = k < TEST_COUNT(rms) ? skl_model_merge(m, &mp, &mm, NULL) : skl_model_merge_to(m, path, &mp, NULL, NULL);
        const char *msg = skl_last_error();
        ck_assert_msg(rc == SKL_ERR_NOT_FINITE && strstr(msg, want) && strstr(msg, where),
                      "%s, %s: got %s: %s (want %s... %s)", test_str(e, "name"), skl_removal_name(mp.remove),
                      skl_status_name(rc), msg, want, where);
        ck_assert_ptr_null(mm);
        ck_assert_int_ne(access(path, F_OK), 0); /* nothing written */
    }
    rmdir(out);
    skl_model_free(m);
    json_decref(man);
}
END_TEST

Suite *merge_suite(void) {
    /* One row a test (tests.h, test_def); every suite's table has this shape, by design. */
    const test_def tests[] = {
        {"merge", test_merge_every_model, TEST_EACH_MODEL, TEST_TIMEOUT * 3},
        {"merge", test_merge_dtype, TEST_EACH_MODEL, 0},
        {"merge", test_save_keeps_dtype, TEST_EACH_MODEL, 0},
        {"merge", test_merge_coverage, 0, 0},
        {"merge", test_refusals, 0, 0},
        {"merge", test_cancel, 0, 0},
        {"merge", test_singular_and_ill_conditioned, 0, 0},
        {"merge", test_plan_paper_table, 0, 0},
        {"merge", test_verify_inconclusive, 2, 0}, /* manifest "degenerate": vanishing, overflowing */
        {"merge", test_merge_refuses_nonfinite, 3, 0}, /* manifest "nonfinite": nan_q, inf_down, ninf_embed */
        {"save", test_save_sharded_round_trip, TEST_EACH_SHARDED, 0},
        {"save", test_save_params, 0, 0},
        {"save", test_save_failure_leaves_output, 0, 0},
        {"save", test_save_planted_temporaries, 0, 0},
        {"save", test_save_concurrent_same_output, 0, 0},
        {"save", test_save_refuses_source, 0, 0},
        {"save", test_save_disk_full, 0, 0},
        {"merge_to", test_merge_to_same_files, TEST_EACH_MODEL, TEST_TIMEOUT * 3},
        {"merge_to", test_merge_to_cancel, 0, 0},
    };
    return test_suite("merge", tests, TEST_COUNT(tests));
}
