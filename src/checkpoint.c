/* checkpoint.c - the files of one model on disk: a directory (model.safetensors,
 * config.json, tokenizer.json when present) or one .safetensors file whose
 * __metadata__ holds "config" and "tokenizer.json" as strings of JSON.
 * The format wing's one place that knows where a model's parts are: sharded
 * checkpoints (model.safetensors.index.json + shards) belong here. */
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int skl_ckpt_open(const char *path, bool use_mmap, skl_ckpt *ck) {
    memset(ck, 0, sizeof *ck);
    ck->path = path;
    struct stat st;
    if (stat(path, &st) != 0) return skl_fail(SKL_ERR_IO, "%s: %s", path, strerror(errno));
    ck->is_dir = S_ISDIR(st.st_mode);
    if (snprintf(ck->st_path, sizeof ck->st_path, ck->is_dir ? "%s/model.safetensors" : "%s", path) >=
            (int)sizeof ck->st_path ||
        snprintf(ck->config_what, sizeof ck->config_what, ck->is_dir ? "%s/config.json" : "%s: __metadata__.config",
                 path) >= (int)sizeof ck->config_what)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_load: path too long");
    return skl_st_open(ck->st_path, use_mmap, &ck->st);
}

void skl_ckpt_close(skl_ckpt *ck) { skl_st_close(&ck->st); }

/* Read a whole text file and hand it to a parser (which names it `path`). */
typedef int (*parse_fn)(const char *text, size_t len, const char *what, void *out);
static int parse_text_file(const char *path, parse_fn parse, void *out) {
    char *text = NULL;
    size_t len = 0;
    int rc = skl_read_text_file(path, &text, &len);
    if (rc) return rc;
    rc = parse(text, len, path, out);
    free(text);
    return rc;
}
static int parse_json_cb(const char *text, size_t len, const char *what, void *out) {
    return skl_json_parse(text, len, what, out);
}
static int parse_tok_cb(const char *text, size_t len, const char *what, void *out) {
    return skl_tok_load(text, len, what, out);
}

/* The config: DIR/config.json, or __metadata__ "config" (a string holding the JSON);
 * ck->config_what names either. */
int skl_ckpt_config(const skl_ckpt *ck, json_t **cfg) {
    if (ck->is_dir) return parse_text_file(ck->config_what, parse_json_cb, cfg);
    const json_t *c = ck->st.metadata ? json_object_get(ck->st.metadata, "config") : NULL;
    if (!c)
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: no config: a single-file model needs __metadata__.config (a JSON string)",
                        ck->st_path);
    if (!json_is_string(c))
        return skl_fail(SKL_ERR_CONFIG, "%s: __metadata__.config must be a string holding JSON", ck->st_path);
    return skl_json_parse(json_string_value(c), json_string_length(c), ck->config_what, cfg);
}

/* The tokenizer: DIR/tokenizer.json (absent: none) or __metadata__
 * "tokenizer.json" (a string holding the JSON). */
int skl_ckpt_tokenizer(const skl_ckpt *ck, skl_tok **out) {
    char what[4200];
    *out = NULL;
    if (ck->is_dir) {
        if (snprintf(what, sizeof what, "%s/tokenizer.json", ck->path) >= (int)sizeof what)
            return skl_fail(SKL_ERR_INVALID_ARG, "path too long");
        struct stat st;
        if (stat(what, &st) != 0) {
            if (errno == ENOENT) return SKL_OK;
            return skl_fail(SKL_ERR_IO, "%s: %s", what, strerror(errno));
        }
        return parse_text_file(what, parse_tok_cb, out);
    }
    const json_t *t = ck->st.metadata ? json_object_get(ck->st.metadata, "tokenizer.json") : NULL;
    if (!t) return SKL_OK;
    if (!json_is_string(t))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: __metadata__ \"tokenizer.json\" must be a string holding JSON", ck->st_path);
    if (snprintf(what, sizeof what, "%s: __metadata__ tokenizer.json", ck->st_path) >= (int)sizeof what)
        return skl_fail(SKL_ERR_INVALID_ARG, "path too long");
    return skl_tok_load(json_string_value(t), json_string_length(t), what, out);
}
