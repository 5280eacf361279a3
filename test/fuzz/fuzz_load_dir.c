/* fuzz_load_dir.c - skl_model_load on a directory made from records of the
 * input (fuzz_records): kind 0 config.json, 1 model.safetensors, 2
 * tokenizer.json, 3 model.safetensors.index.json, 4 + k the shard
 * model-(k+1)-of-N.safetensors (N: the count of shard records).  A model that
 * loads is evaluated, merged, saved, reloaded and evaluated again
 * (fuzz_model.c). */
#include "fuzz.h"
#include "fuzz_model.h"

#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fuzz_rec rec[40];
    size_t k = fuzz_records(data, n, rec, 40), shards = 0;
    for (size_t i = 0; i < k; i++) shards += rec[i].kind >= 4;
    for (size_t i = 0; i < k; i++) {
        static const char *const names[] = {"config.json", "model.safetensors", "tokenizer.json",
                                            "model.safetensors.index.json"};
        char name[64], path[512];
        if (rec[i].kind < 4) snprintf(name, sizeof name, "%s", names[rec[i].kind]);
        else snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", rec[i].kind - 3, (int)shards);
        fuzz_write(name, rec[i].p, rec[i].n, path);
    }
    skl_model *m = NULL;
    if (skl_model_load(fuzz_dir(), NULL, &m) == SKL_OK) {
        fuzz_use(m);
        fuzz_merge_save_reload(m);
    } else if (m) fuzz_fail("failed load left *out set", fuzz_dir());
    skl_model_free(m);
    fuzz_clean();
    return 0;
}
