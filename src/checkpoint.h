/* checkpoint.h - the files of one model on disk (checkpoint.c). */
#ifndef SKL_CHECKPOINT_H
#define SKL_CHECKPOINT_H

#include "safetensors.h"
#include "tokenizer.h"

/* One tensor of the model and the file it lives in. */
typedef struct skl_ckpt_tensor {
    const skl_st_tensor *t;
    const skl_st_file *file; /* its .safetensors file (a shard, or the one file) */
    const char *path;        /* that file's path, for messages */
} skl_ckpt_tensor;

/* A directory (config.json [+ tokenizer.json] + model.safetensors, or
 * model.safetensors.index.json and its shards) or one .safetensors file whose
 * __metadata__ holds the config and the tokenizer. */
typedef struct skl_ckpt {
    bool is_dir;
    char dir[4200];          /* the directory of config.json and tokenizer.json (is_dir) */
    char st_path[4200];      /* the safetensors file, or the index of a sharded model */
    char config_what[4200];  /* names the config in messages */
    skl_st_file *files;      /* [n_files]: the one file, or the shards in index order */
    char **file_paths;       /* [n_files] */
    size_t n_files;
    skl_ckpt_tensor *tensors; /* [n_tensors]: every tensor of every file, validated */
    size_t n_tensors;
    uint64_t data_size;      /* bytes of all files' data areas (= the tensors' bytes) */
} skl_ckpt;

/* Locate the files of the model at path and open (map and validate) its
 * safetensors file or shards. */
int skl_ckpt_open(const char *path, bool use_mmap, skl_ckpt *ck);
/* The config object (*cfg owned by the caller). */
int skl_ckpt_config(const skl_ckpt *ck, json_t **cfg);
/* The tokenizer, or *out = NULL when the model has none. */
int skl_ckpt_tokenizer(const skl_ckpt *ck, skl_tok **out);
void skl_ckpt_close(skl_ckpt *ck); /* tensors that point into the mappings keep their own reference */

/* Where a model was loaded from, by identity (st_dev, st_ino: symlinks and other
 * spellings of the path resolve to the same), so that a save can refuse to
 * write over it.  A directory model: its directory; a single file: the file,
 * its directory and its name. */
typedef struct skl_source_id {
    bool known, is_dir;
    uint64_t dev, ino;         /* the directory, or the file */
    uint64_t dir_dev, dir_ino; /* a single file's directory */
    char name[256];            /* a single file's name in it */
} skl_source_id;
/* Fill *id for the model ck opened from path (known = false when stat fails). */
void skl_ckpt_source(const skl_ckpt *ck, const char *path, skl_source_id *id);

#endif
