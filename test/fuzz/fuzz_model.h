/* fuzz_model.h - what the loader harnesses do with a model that loaded:
 * evaluate, tokenize, merge, save, reload (fuzz_model.c). */
#ifndef SKL_FUZZ_MODEL_H
#define SKL_FUZZ_MODEL_H

#include "skipless.h"

/* A context of a few positions, two tokens evaluated, the logits finite or
 * not but readable; the tokenizer (if any) on a fixed text and back. */
void fuzz_use(const skl_model *m);
/* Merge in memory and save into fuzz_dir()/out, reload, use; the streaming
 * merge into fuzz_dir()/out2, reload, use.  A merge may refuse (not applicable,
 * singular, ...); a save of a merge that succeeded must load again. */
void fuzz_merge_save_reload(const skl_model *m);

#endif
