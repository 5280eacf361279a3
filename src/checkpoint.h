/* checkpoint.h - the files of one model on disk (checkpoint.c). */
#ifndef SKL_CHECKPOINT_H
#define SKL_CHECKPOINT_H

#include "safetensors.h"
#include "tokenizer.h"

/* A directory (model.safetensors + config.json [+ tokenizer.json]) or one
 * .safetensors file whose __metadata__ holds the config and the tokenizer. */
typedef struct skl_ckpt {
    const char *path;        /* as given (borrowed) */
    bool is_dir;
    char st_path[4200];      /* the safetensors file */
    char config_what[4200];  /* names the config in messages */
    skl_st_file st;          /* mapped and validated */
} skl_ckpt;

/* Locate the files of the model at path and open its safetensors file. */
int skl_ckpt_open(const char *path, bool use_mmap, skl_ckpt *ck);
/* The config object (*cfg owned by the caller). */
int skl_ckpt_config(const skl_ckpt *ck, json_t **cfg);
/* The tokenizer, or *out = NULL when the model has none. */
int skl_ckpt_tokenizer(const skl_ckpt *ck, skl_tok **out);
void skl_ckpt_close(skl_ckpt *ck); /* tensors that point into the mapping keep their own reference */

#endif
