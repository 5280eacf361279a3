/* checkpoint.c - the files of one model on disk: a directory (config.json,
 * tokenizer.json when present, and model.safetensors or
 * model.safetensors.index.json with its shards) or one .safetensors file whose
 * __metadata__ holds "config" and "tokenizer.json" as strings of JSON.
 * The format wing's one place that knows where a model's parts are; model.c
 * gets the tensors by name, each with the file it lives in.
 *
 * A sharded model is validated as strictly as one file: every shard like one
 * file (safetensors.c), every weight_map value a plain file name of a regular
 * file in the directory, every indexed tensor in the shard the index names and
 * in no other, every tensor of every shard indexed.  metadata.total_size is
 * only compared (a difference is a warning: Hugging Face does not check it). */
#include "checkpoint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* snprintf into buf[size]; SKL_ERR_INVALID_ARG when it does not fit. */
static int fmt_path(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fmt_path(char *buf, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size ? skl_fail(SKL_ERR_INVALID_ARG, "skl_model_load: path too long") : SKL_OK;
}

/* Room for n files (the tensors point into this array: it never grows). */
static int alloc_files(skl_ckpt *ck, size_t n) {
    ck->files = calloc(n, sizeof *ck->files);
    ck->file_paths = calloc(n, sizeof *ck->file_paths);
    return ck->files && ck->file_paths ? SKL_OK : skl_fail(SKL_ERR_NOMEM, "out of memory");
}

/* Map and validate the next file. */
static int open_file(skl_ckpt *ck, const char *path, bool use_mmap) {
    size_t i = ck->n_files;
    if (!(ck->file_paths[i] = strdup(path))) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    int rc = skl_st_open(path, use_mmap, &ck->files[i]);
    if (rc) {
        free(ck->file_paths[i]);
        ck->file_paths[i] = NULL;
        return rc;
    }
    ck->n_files++;
    return SKL_OK;
}

/* ck->tensors: every tensor of every file, in file order. */
static int list_tensors(skl_ckpt *ck) {
    size_t n = 0;
    for (size_t i = 0; i < ck->n_files; i++) n += ck->files[i].n_tensors;
    ck->tensors = calloc(n ? n : 1, sizeof *ck->tensors);
    if (!ck->tensors) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ck->n_files; i++) {
        const skl_st_file *f = &ck->files[i];
        if (skl_add_u64(ck->data_size, f->data_size, &ck->data_size) != 0)
            return skl_fail(SKL_ERR_TENSOR_SIZE, "%s: total tensor size overflows", ck->st_path);
        for (size_t k = 0; k < f->n_tensors; k++)
            ck->tensors[ck->n_tensors++] = (skl_ckpt_tensor){&f->tensors[k], f, ck->file_paths[i]};
    }
    return SKL_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* A weight_map value must name a file in the model's directory itself. */
static bool plain_name(const json_t *v) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    return n > 0 && strlen(s) == n && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* The first tensor weight_map places in shard `name` (for messages). */
static const char *first_tensor_of(const json_t *wm, const char *name) {
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        if (!strcmp(json_string_value(val), name)) return key;
    }
    return "?";
}

/* The index's structure: weight_map an object of plain file names; *shards
 * gets the distinct names in order of first use (name -> position). */
static int check_index(const char *index, const json_t *idx, const json_t **wm_out, json_t *shards) {
    if (!json_is_object(idx)) return skl_fail(SKL_ERR_INDEX, "%s: the index is not a JSON object", index);
    const json_t *wm = json_object_get(idx, "weight_map");
    if (!json_is_object(wm))
        return skl_fail(SKL_ERR_INDEX, "%s: \"weight_map\" missing or not an object", index);
    if (json_object_size(wm) == 0) return skl_fail(SKL_ERR_INDEX, "%s: \"weight_map\" is empty", index);
    const json_t *meta = json_object_get(idx, "metadata");
    if (meta && !json_is_object(meta)) return skl_fail(SKL_ERR_INDEX, "%s: \"metadata\" is not an object", index);
    const json_t *ts = meta ? json_object_get(meta, "total_size") : NULL;
    if (ts && (!json_is_number(ts) || json_number_value(ts) < 0))
        return skl_fail(SKL_ERR_INDEX, "%s: metadata.total_size is not a non-negative number", index);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        if (!json_is_string(val))
            return skl_fail(SKL_ERR_INDEX, "%s: weight_map[\"%s\"] is not a string (a shard's file name)", index, key);
        if (!plain_name(val))
            return skl_fail(SKL_ERR_SHARD_NAME,
                            "%s: weight_map[\"%s\"] is \"%s\": a shard must be a plain file name in the model's "
                            "directory (no '/', not \".\" or \"..\", not empty)",
                            index, key, json_string_value(val));
        const char *name = json_string_value(val);
        if (!json_object_get(shards, name) &&
            json_object_set_new(shards, name, json_integer((json_int_t)json_object_size(shards))) != 0)
            return skl_fail(SKL_ERR_NOMEM, "out of memory");
    }
    *wm_out = wm;
    return SKL_OK;
}

/* Each shard present, regular, and valid as one file. */
static int open_shards(skl_ckpt *ck, const json_t *wm, const json_t *shards, bool use_mmap) {
    int rc = alloc_files(ck, json_object_size(shards));
    const char *name;
    json_t *val;
    json_object_foreach((json_t *)shards, name, val) {
        char path[4200];
        if (rc || (rc = fmt_path(path, sizeof path, "%s/%s", ck->dir, name))) return rc;
        struct stat st;
        if (stat(path, &st) != 0) {
            if (errno == ENOENT || errno == ENOTDIR)
                return skl_fail(SKL_ERR_SHARD_MISSING, "%s: shard %s (named for tensor '%s') is missing: %s",
                                ck->st_path, name, first_tensor_of(wm, name), strerror(errno));
            return skl_fail(SKL_ERR_IO, "%s: shard %s: %s", ck->st_path, path, strerror(errno));
        }
        if (!S_ISREG(st.st_mode))
            return skl_fail(SKL_ERR_SHARD_MISSING, "%s: shard %s (named for tensor '%s') is not a regular file",
                            ck->st_path, name, first_tensor_of(wm, name));
        if ((rc = open_file(ck, path, use_mmap))) { /* the shard's own message, led by the index */
            char msg[2048];
            snprintf(msg, sizeof msg, "%s", skl_last_error());
            return skl_fail(rc, "%s: %s", ck->st_path, msg);
        }
    }
    return rc;
}

/* The tensors of the shards against weight_map, in both directions. */
static int check_tensors(const skl_ckpt *ck, const json_t *wm, json_t *seen) {
    const char *index = ck->st_path;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const skl_ckpt_tensor *c = &ck->tensors[i];
        const char *shard = base_name(c->path);
        if (!json_object_get(wm, c->t->name))
            return skl_fail(SKL_ERR_SHARD_UNINDEXED, "%s: tensor '%s' of shard %s is not in weight_map", index,
                            c->t->name, shard);
        const json_t *prev = json_object_get(seen, c->t->name);
        if (prev)
            return skl_fail(SKL_ERR_SHARD_DUPLICATE, "%s: tensor '%s' is in two shards, %s and %s", index,
                            c->t->name, base_name(ck->file_paths[json_integer_value(prev)]), shard);
        if (json_object_set_new(seen, c->t->name, json_integer((json_int_t)(c->file - ck->files))) != 0)
            return skl_fail(SKL_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const skl_ckpt_tensor *c = &ck->tensors[i];
        const char *want = json_string_value(json_object_get(wm, c->t->name));
        if (strcmp(want, base_name(c->path)) != 0)
            return skl_fail(SKL_ERR_SHARD_MISMATCH, "%s: tensor '%s' is in shard %s, but weight_map names shard %s",
                            index, c->t->name, base_name(c->path), want);
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)wm, key, val) {
        if (!json_object_get(seen, key))
            return skl_fail(SKL_ERR_SHARD_MISMATCH,
                            "%s: tensor '%s' is not in shard %s, which weight_map names, nor in any other shard",
                            index, key, json_string_value(val));
    }
    return SKL_OK;
}

static int open_sharded(skl_ckpt *ck, bool use_mmap) {
    char *text = NULL;
    size_t len = 0;
    json_t *idx = NULL, *shards = json_object(), *seen = json_object();
    const json_t *wm = NULL;
    int rc = shards && seen ? skl_read_text_file(ck->st_path, &text, &len) : skl_fail(SKL_ERR_NOMEM, "out of memory");
    if (!rc) rc = skl_json_parse(text, len, ck->st_path, &idx);
    free(text);
    if (!rc) rc = check_index(ck->st_path, idx, &wm, shards);
    if (!rc) rc = open_shards(ck, wm, shards, use_mmap);
    if (!rc) rc = list_tensors(ck);
    if (!rc) rc = check_tensors(ck, wm, seen);
    if (!rc) {
        const json_t *ts = json_object_get(json_object_get(idx, "metadata"), "total_size");
        if (ts && json_number_value(ts) != (double)ck->data_size)
            skl_log(SKL_LOG_WARN, "%s: metadata.total_size is %.0f, but the shards' tensors have %llu bytes (ignored)",
                    ck->st_path, json_number_value(ts), (unsigned long long)ck->data_size);
    }
    json_decref(seen);
    json_decref(shards);
    json_decref(idx);
    return rc;
}

/* A directory: model.safetensors if present (it wins, as in transformers),
 * else model.safetensors.index.json. */
static int open_dir(skl_ckpt *ck, bool use_mmap) {
    struct stat st;
    int rc = fmt_path(ck->st_path, sizeof ck->st_path, "%s/" SINGLE_NAME, ck->dir);
    if (rc) return rc;
    if (stat(ck->st_path, &st) != 0 && errno == ENOENT) {
        if ((rc = fmt_path(ck->st_path, sizeof ck->st_path, "%s/" INDEX_NAME, ck->dir))) return rc;
        if (stat(ck->st_path, &st) != 0 && errno == ENOENT)
            return skl_fail(SKL_ERR_IO, "%s: a model directory needs %s or %s (sharded): neither is there", ck->dir,
                            SINGLE_NAME, INDEX_NAME);
        return open_sharded(ck, use_mmap);
    }
    if ((rc = alloc_files(ck, 1)) || (rc = open_file(ck, ck->st_path, use_mmap))) return rc;
    return list_tensors(ck);
}

static int ckpt_open(const char *path, bool use_mmap, skl_ckpt *ck) {
    struct stat st;
    if (stat(path, &st) != 0) return skl_fail(SKL_ERR_IO, "%s: %s", path, strerror(errno));
    /* The index itself stands for its directory (and must be named there as it
     * would be looked for: *.safetensors.index.json). */
    bool index = !S_ISDIR(st.st_mode) && ends_with(path, ".safetensors.index.json");
    ck->is_dir = S_ISDIR(st.st_mode) || index;
    int rc;
    if (index) {
        const char *slash = strrchr(path, '/');
        rc = slash ? fmt_path(ck->dir, sizeof ck->dir, "%.*s", (int)(slash - path), path)
                   : fmt_path(ck->dir, sizeof ck->dir, ".");
        if (!rc && slash == path) rc = fmt_path(ck->dir, sizeof ck->dir, "/");
    } else {
        rc = fmt_path(ck->dir, sizeof ck->dir, "%s", ck->is_dir ? path : "");
    }
    if (rc || (rc = fmt_path(ck->config_what, sizeof ck->config_what,
                             ck->is_dir ? "%s/config.json" : "%s: __metadata__.config", ck->is_dir ? ck->dir : path)))
        return rc;
    if (index) {
        if ((rc = fmt_path(ck->st_path, sizeof ck->st_path, "%s", path))) return rc;
        return open_sharded(ck, use_mmap);
    }
    if (ck->is_dir) return open_dir(ck, use_mmap);
    if ((rc = fmt_path(ck->st_path, sizeof ck->st_path, "%s", path)) || (rc = alloc_files(ck, 1)) ||
        (rc = open_file(ck, path, use_mmap)))
        return rc;
    return list_tensors(ck);
}

int skl_ckpt_open(const char *path, bool use_mmap, skl_ckpt *ck) {
    memset(ck, 0, sizeof *ck);
    int rc = ckpt_open(path, use_mmap, ck);
    if (rc) skl_ckpt_close(ck); /* what was opened before the failure */
    return rc;
}

void skl_ckpt_close(skl_ckpt *ck) {
    for (size_t i = 0; i < ck->n_files; i++) {
        skl_st_close(&ck->files[i]);
        free(ck->file_paths[i]);
    }
    free(ck->files);
    free(ck->file_paths);
    free(ck->tensors);
    memset(ck, 0, sizeof *ck);
}

void skl_ckpt_source(const skl_ckpt *ck, const char *path, skl_source_id *id) {
    struct stat st, ds;
    memset(id, 0, sizeof *id);
    id->is_dir = ck->is_dir;
    if (stat(ck->is_dir ? ck->dir : path, &st) != 0) return;
    id->dev = (uint64_t)st.st_dev;
    id->ino = (uint64_t)st.st_ino;
    if (!ck->is_dir) {
        char dir[4200];
        const char *slash = strrchr(path, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == path) snprintf(dir, sizeof dir, "/");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        if (stat(dir, &ds) != 0 || snprintf(id->name, sizeof id->name, "%s", base_name(path)) >= (int)sizeof id->name)
            return;
        id->dir_dev = (uint64_t)ds.st_dev;
        id->dir_ino = (uint64_t)ds.st_ino;
    }
    id->known = true;
}

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
    const json_t *meta = ck->files[0].metadata;
    const json_t *c = meta ? json_object_get(meta, "config") : NULL;
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
    char what[4400];
    *out = NULL;
    if (ck->is_dir) {
        if (snprintf(what, sizeof what, "%s/tokenizer.json", ck->dir) >= (int)sizeof what)
            return skl_fail(SKL_ERR_INVALID_ARG, "path too long");
        struct stat st;
        if (stat(what, &st) != 0) {
            if (errno == ENOENT) return SKL_OK;
            return skl_fail(SKL_ERR_IO, "%s: %s", what, strerror(errno));
        }
        return parse_text_file(what, parse_tok_cb, out);
    }
    const json_t *meta = ck->files[0].metadata;
    const json_t *t = meta ? json_object_get(meta, "tokenizer.json") : NULL;
    if (!t) return SKL_OK;
    if (!json_is_string(t))
        return skl_fail(SKL_ERR_TOKENIZER, "%s: __metadata__ \"tokenizer.json\" must be a string holding JSON", ck->st_path);
    if (snprintf(what, sizeof what, "%s: __metadata__ tokenizer.json", ck->st_path) >= (int)sizeof what)
        return skl_fail(SKL_ERR_INVALID_ARG, "path too long");
    return skl_tok_load(json_string_value(t), json_string_length(t), what, out);
}
