/* fuzz_tokenize.c - skl_tokenize / skl_detokenize / the streaming detokenizer
 * on arbitrary bytes, with the tokenizer of examples/models/kjv-serial
 * (SKL_FUZZ_MODEL overrides): the ids are in range, detokenize's length query
 * agrees with its output, the streamed pieces concatenate to skl_detokenize,
 * and the input's bytes read as ids decode without error or with SKL_ERR_TOKEN. */
#include "fuzz.h"
#include "skipless.h"

#include <stdlib.h>
#include <string.h>

static skl_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("SKL_FUZZ_MODEL");
    if (!path) path = "examples/models/kjv-serial";
    if (skl_model_load(path, NULL, &model) != SKL_OK || !skl_model_has_tokenizer(model))
        fuzz_fail("the tokenizer model (run from the repository, or set SKL_FUZZ_MODEL)", skl_last_error());
    return 0;
}

static void decode_checked(const int32_t *ids, size_t n) {
    size_t need = 0;
    int rc = skl_detokenize(model, ids, n, NULL, 0, &need);
    if (rc == SKL_ERR_TOKEN) return;
    if (rc != SKL_ERR_BUFFER_TOO_SMALL && rc != SKL_OK) fuzz_fail("detokenize size query", skl_last_error());
    char *text = malloc(need + 1), *streamed = malloc(need * 2 + 64);
    size_t len = 0, sl = 0;
    if (!text || !streamed) fuzz_fail("malloc", "");
    if (skl_detokenize(model, ids, n, text, need + 1, &len) != SKL_OK || len != need)
        fuzz_fail("detokenize into a buffer of the size it asked for", skl_last_error());
    skl_detokenizer *d = NULL;
    if (skl_detokenizer_create(model, &d) != SKL_OK) fuzz_fail("detokenizer_create", skl_last_error());
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t pl;
        if ((i < n ? skl_detokenizer_push(d, ids[i], &piece, &pl) : skl_detokenizer_flush(d, &piece, &pl)) != SKL_OK)
            fuzz_fail("detokenizer", skl_last_error());
        if (sl + pl > need * 2 + 63) fuzz_fail("detokenizer", "the pieces are longer than the text");
        memcpy(streamed + sl, piece, pl);
        sl += pl;
    }
    skl_detokenizer_free(d);
    if (sl != len || memcmp(streamed, text, len) != 0) fuzz_fail("streamed pieces", "differ from skl_detokenize");
    free(text);
    free(streamed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    int32_t V = skl_tokenizer_size(model);
    for (unsigned flags = 0; flags < 2; flags++) {
        size_t count = 0;
        int rc = skl_tokenize(model, (const char *)data, n, NULL, 0, &count, flags);
        if (rc == SKL_ERR_INVALID_ARG) break; /* invalid UTF-8: named, refused */
        if (rc != SKL_OK && rc != SKL_ERR_BUFFER_TOO_SMALL) fuzz_fail("tokenize size query", skl_last_error());
        int32_t *ids = malloc((count ? count : 1) * sizeof *ids);
        size_t got = 0;
        if (!ids || skl_tokenize(model, (const char *)data, n, ids, count, &got, flags) != SKL_OK || got != count)
            fuzz_fail("tokenize into the size it asked for", skl_last_error());
        for (size_t i = 0; i < got; i++)
            if (ids[i] < 0 || ids[i] >= V) fuzz_fail("tokenize", "an id out of range");
        decode_checked(ids, got);
        free(ids);
    }
    /* the bytes as ids (little-endian 16-bit), some out of range */
    size_t m = n / 2;
    int32_t *raw = malloc((m ? m : 1) * sizeof *raw);
    for (size_t i = 0; i < m; i++) raw[i] = (int32_t)(data[2 * i] | data[2 * i + 1] << 8) % (V + 8);
    decode_checked(raw, m);
    free(raw);
    return 0;
}
