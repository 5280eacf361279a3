/* fuzz_model.c - using a model that loaded (fuzz_model.h). */
#include "fuzz_model.h"

#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_use(const skl_model *m) {
    skl_hparams hp;
    if (skl_model_hparams(m, &hp, sizeof hp) != SKL_OK) fuzz_fail("hparams of a loaded model", skl_last_error());
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = hp.max_position_embeddings < 4 ? hp.max_position_embeddings : 4;
    skl_context *c = NULL;
    if (skl_context_create(m, &cp, &c) == SKL_OK) {
        int32_t toks[2] = {0, hp.vocab_size - 1};
        int32_t n = cp.n_ctx < 2 ? 1 : 2;
        if (skl_eval(c, toks, n) == SKL_OK) {
            int32_t rows = 0;
            const float *lg = skl_logits(c, &rows);
            volatile float sink = 0;
            for (int32_t i = 0; lg && i < hp.vocab_size; i++) sink += lg[i];
            (void)sink;
        }
        skl_context_free(c);
    }
    if (skl_model_has_tokenizer(m)) {
        static const char text[] = "In the beginning, don't stop \xc3\xa9 \xf0\x9f\x98\x80!";
        int32_t ids[256];
        size_t n = 0;
        if (skl_tokenize(m, text, sizeof text - 1, ids, 256, &n, 0) == SKL_OK) {
            char out[4096];
            size_t len = 0;
            int rc = skl_detokenize(m, ids, n, out, sizeof out, &len);
            if (rc != SKL_OK && rc != SKL_ERR_BUFFER_TOO_SMALL) fuzz_fail("detokenize of tokenize's ids", skl_last_error());
        }
    }
}

static void reload_use(const char *path) {
    skl_model *back = NULL;
    int rc = skl_model_load(path, NULL, &back);
    if (rc) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s: %s", path, skl_last_error());
        fuzz_fail("a saved model does not load", msg);
    }
    fuzz_use(back);
    skl_model_free(back);
}

void fuzz_merge_save_reload(const skl_model *m) {
    char out[600], out2[600];
    snprintf(out, sizeof out, "%s/out", fuzz_dir());
    snprintf(out2, sizeof out2, "%s/out2", fuzz_dir());
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.verify = false;
    skl_model *mm = NULL;
    if (skl_model_merge(m, &mp, &mm, NULL) == SKL_OK) {
        fuzz_use(mm);
        if (skl_model_save(mm, out, SKL_SAVE_DIR) == SKL_OK) reload_use(out);
        skl_model_free(mm);
        if (skl_model_merge_to(m, out2, &mp, NULL, NULL) == SKL_OK) reload_use(out2);
    }
    /* the original saved as it is */
    if (skl_model_save(m, out, SKL_SAVE_DIR) == SKL_OK) reload_use(out);
}
