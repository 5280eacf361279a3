/* fuzz_load_file.c - skl_model_load on one .safetensors file of arbitrary bytes
 * (header, __metadata__ config and tokenizer, tensors); a model that loads is
 * evaluated and tokenized (fuzz_model.c). */
#include "fuzz.h"
#include "fuzz_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[512];
    fuzz_write("m.safetensors", data, n, path);
    skl_model_params mp;
    skl_model_params_init(&mp, sizeof mp);
    mp.use_mmap = n % 2 == 0; /* both ways of reading, chosen by the input */
    skl_model *m = NULL;
    if (skl_model_load(path, &mp, &m) == SKL_OK) fuzz_use(m);
    else if (m) fuzz_fail("failed load left *out set", path);
    skl_model_free(m);
    fuzz_clean();
    return 0;
}
