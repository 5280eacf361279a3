/* save.c - write a model as safetensors + config, readable by skl_model_load;
 * each tensor in its in-memory dtype (F32, F16 or BF16, little-endian).
 *
 * A directory gets config.json, tokenizer.json (when the model has one) and
 * its weights as Hugging Face lays them out: one model.safetensors when they
 * fit in one shard, else model-00001-of-0000N.safetensors ... filled in tensor
 * order (a tensor larger than the limit alone in its shard) and
 * model.safetensors.index.json.  Every file is first written under a
 * temporary name in the target directory; only when all were written are they
 * renamed into place, and only then are the files of an earlier save that the
 * new layout does not use removed.  A failure removes the temporaries. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"

typedef struct entry {
    char name[96];
    const skl_tensor *t;
    bool vector;    /* 1-D (bias, norm) */
    uint64_t bytes; /* of its data */
} entry;

static size_t collect(const skl_model *m, entry *e) {
    size_t n = 0;
#define ADD(t_, vec_, ...)                                                                               \
    do {                                                                                                 \
        if ((t_)->data) {                                                                                \
            snprintf(e[n].name, sizeof e[n].name, __VA_ARGS__);                                          \
            e[n].t = (t_);                                                                               \
            e[n].vector = (vec_);                                                                        \
            e[n].bytes = (uint64_t)(t_)->rows * (uint64_t)(t_)->cols * skl_dtype_size((t_)->dtype);      \
            n++;                                                                                         \
        }                                                                                                \
    } while (0)
    ADD(&m->embed, false, "model.embed_tokens.weight");
    for (skl_lin_iter it = skl_linears(m, 0, m->hp.num_hidden_layers, false); skl_lin_next(&it);) {
        ADD(&it.l->w, false, "model.layers.%d.%s.weight", it.layer, it.name);
        ADD(&it.l->b, true, "model.layers.%d.%s.bias", it.layer, it.name);
    }
    ADD(&m->norm, true, "model.norm.weight");
    if (!m->hp.tie_word_embeddings) ADD(&m->head.w, false, "lm_head.weight");
    ADD(&m->head.b, true, "lm_head.bias");
#undef ADD
    return n;
}

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

static int nomem(void) { return skl_fail(SKL_ERR_NOMEM, "save: out of memory"); }

/* e[0..n) as one .safetensors file at `tmp`, with __metadata__ meta. */
static int write_st(const char *tmp, const entry *e, size_t n, json_t *meta) {
    json_t *hdr = json_object();
    char *text = NULL;
    int rc = SKL_OK;
    if (!hdr || json_object_set(hdr, "__metadata__", meta) != 0) { rc = nomem(); goto done; }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = e[i].vector ? json_pack("[I]", (json_int_t)e[i].t->cols)
                                    : json_pack("[I,I]", (json_int_t)e[i].t->rows, (json_int_t)e[i].t->cols);
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", skl_dtype_name(e[i].t->dtype), "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + e[i].bytes));
        if (!ent || json_object_set_new(hdr, e[i].name, ent) != 0) { rc = nomem(); goto done; }
        off += e[i].bytes;
    }
    if (!(text = json_dumps(hdr, JSON_COMPACT))) { rc = nomem(); goto done; }
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) { rc = skl_fail(SKL_ERR_IO, "save: %s: %s", tmp, strerror(errno)); goto done; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int bad = write_all(fp, len8, 8) || write_all(fp, text, hl);
    for (size_t i = hl; !bad && i < padded; i++) bad = fputc(' ', fp) == EOF;
    for (size_t i = 0; !bad && i < n; i++) /* little-endian, as in memory on x86/ARM */
        bad = write_all(fp, e[i].t->data, (size_t)e[i].bytes);
    int err = errno;
    if (fclose(fp) != 0 && !bad) bad = 1, err = errno;
    if (bad) rc = skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", tmp, strerror(err));
done:
    free(text);
    json_decref(hdr);
    return rc;
}

static int write_text(const char *tmp, const char *text, size_t len) {
    FILE *fp = fopen(tmp, "wb");
    int bad = !fp || write_all(fp, text, len);
    int err = errno;
    if (fp && fclose(fp) != 0 && !bad) bad = 1, err = errno;
    return bad ? skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", tmp, strerror(err)) : SKL_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* __metadata__: "format": "pt", and for a single file the config and the tokenizer. */
static json_t *make_meta(const skl_model *m, bool single_file) {
    json_t *meta = json_pack("{s:s}", "format", "pt");
    if (!meta || !single_file) return meta;
    char *cfg = json_dumps(m->config, JSON_COMPACT | JSON_SORT_KEYS);
    int bad = !cfg || json_object_set_new(meta, "config", json_string(cfg)) != 0;
    free(cfg);
    if (!bad && m->tok) {
        size_t tl;
        const char *tt = skl_tok_text(m->tok, &tl);
        bad = json_object_set_new(meta, "tokenizer.json", json_stringn(tt, tl)) != 0;
    }
    if (bad) json_decref(meta);
    return bad ? NULL : meta;
}

/* ------------------------------------------------------- the set of files */

/* The files of one save: each written to tmp, renamed to final at the end. */
typedef struct out_file {
    char final[4200], tmp[4300];
    bool written;
} out_file;

typedef struct out_set {
    out_file *f;
    size_t n;
} out_set;

static out_file *add_file(out_set *s, const char *dir, const char *name) {
    out_file *f = &s->f[s->n++];
    snprintf(f->final, sizeof f->final, "%s/%s", dir, name);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", f->final);
    return f;
}

static void remove_temporaries(out_set *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->f[i].written) unlink(s->f[i].tmp); /* not remove(): never a directory */
}

/* Rename every temporary into place (in order: the weights first). */
static int commit(out_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        if (rename(s->f[i].tmp, s->f[i].final) != 0) {
            int rc = skl_fail(SKL_ERR_IO, "save: cannot rename %s to %s: %s", s->f[i].tmp, s->f[i].final,
                              strerror(errno));
            remove_temporaries(s);
            return rc;
        }
        s->f[i].written = false;
    }
    return SKL_OK;
}

/* After the renames: the weights files of an earlier save the new layout does
 * not use (model.safetensors, the index, model-*-of-*.safetensors of another
 * count), and a stale tokenizer.json. */
static int remove_file(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (remove(p) != 0 && errno != ENOENT) return skl_fail(SKL_ERR_IO, "save: cannot remove stale %s: %s", p, strerror(errno));
    return SKL_OK;
}

static int remove_stale(const skl_model *m, const char *dir, int n_shards) {
    int rc = remove_file(dir, n_shards > 1 ? "model.safetensors" : INDEX_NAME);
    if (!m->tok && !rc) rc = remove_file(dir, "tokenizer.json");
    DIR *d = opendir(dir);
    if (!d) return skl_fail(SKL_ERR_IO, "save: %s: %s", dir, strerror(errno));
    for (struct dirent *de; !rc && (de = readdir(d));) {
        int i, of, end = 0; /* model-%05d-of-%05d.safetensors: 32 characters */
        if (strlen(de->d_name) == 32 && sscanf(de->d_name, "model-%5d-of-%5d.safetensors%n", &i, &of, &end) == 2 &&
            end == 32 && (n_shards == 1 || of != n_shards))
            rc = remove_file(dir, de->d_name);
    }
    closedir(d);
    return rc;
}

/* ----------------------------------------------------------------- shards */

/* Shard k holds e[first[k] .. first[k + 1]): Hugging Face's split in tensor
 * order, a tensor larger than the limit alone.  Returns the shard count. */
static size_t split(const entry *e, size_t n, uint64_t limit, size_t *first) {
    size_t k = 0;
    uint64_t size = 0; /* of the shard being filled */
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || size + e[i].bytes > limit) { /* also after and before a tensor over the limit */
            first[k++] = i;
            size = 0;
        }
        size += e[i].bytes;
    }
    first[k] = n;
    return k;
}

static int write_dir(const skl_model *m, const char *dir, const entry *e, size_t n, uint64_t limit) {
    size_t *first = malloc((n + 1) * sizeof *first);
    out_set s = {calloc(n + 3, sizeof *s.f), 0};
    json_t *meta = make_meta(m, false), *index = NULL;
    char *text = NULL;
    int rc = SKL_OK;
    if (!first || !s.f || !meta) { rc = nomem(); goto done; }
    size_t n_shards = split(e, n, limit, first);
    json_t *wm = json_object();
    uint64_t total = 0;
    for (size_t k = 0; k < n_shards && !rc; k++) {
        char name[64];
        if (n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
        else snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, n_shards);
        out_file *f = add_file(&s, dir, name);
        f->written = true; /* from here on a failure removes it */
        rc = write_st(f->tmp, e + first[k], first[k + 1] - first[k], meta);
        for (size_t i = first[k]; i < first[k + 1] && wm; i++) {
            total += e[i].bytes;
            if (json_object_set_new(wm, e[i].name, json_string(name)) != 0) rc = nomem();
        }
    }
    if (!wm && !rc) rc = nomem();
    if (!rc && n_shards > 1) {
        /* as transformers writes it: sorted keys, 2-space indent, a final newline */
        index = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        char *body = index ? json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        size_t len = body ? strlen(body) : 0;
        if (body && (text = malloc(len + 2))) snprintf(text, len + 2, "%s\n", body);
        free(body);
        out_file *f = add_file(&s, dir, INDEX_NAME);
        f->written = true;
        rc = text ? write_text(f->tmp, text, len + 1) : nomem();
    }
    json_decref(wm);
    if (!rc) {
        out_file *f = add_file(&s, dir, "config.json");
        f->written = true;
        if (json_dump_file(m->config, f->tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
            rc = skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", f->tmp, strerror(errno));
    }
    if (!rc && m->tok) {
        size_t len;
        const char *tt = skl_tok_text(m->tok, &len);
        out_file *f = add_file(&s, dir, "tokenizer.json");
        f->written = true;
        rc = write_text(f->tmp, tt, len);
    }
    if (rc) remove_temporaries(&s);
    else if (!(rc = commit(&s))) rc = remove_stale(m, dir, (int)n_shards);
done:
    free(first);
    free(s.f);
    free(text);
    json_decref(index);
    json_decref(meta);
    return rc;
}

/* One .safetensors file with the config and tokenizer in __metadata__ (the
 * shard limit does not apply: one file was asked for). */
static int write_file(const skl_model *m, const char *path, const entry *e, size_t n) {
    json_t *meta = make_meta(m, true);
    if (!meta) return nomem();
    out_file f = {.written = true};
    snprintf(f.final, sizeof f.final, "%s", path);
    snprintf(f.tmp, sizeof f.tmp, "%s.tmp", path);
    out_set s = {&f, 1};
    int rc = write_st(f.tmp, e, n, meta);
    json_decref(meta);
    if (rc) remove_temporaries(&s);
    return rc ? rc : commit(&s);
}

/* ------------------------------------------------------------------ entry */

#define SAVE_PARAMS_V1 SKL_SIZE_THROUGH(skl_save_params, max_shard_size)

int skl_save_params_init(skl_save_params *p, size_t size) {
    skl_save_params d = {.format = SKL_SAVE_AUTO, .max_shard_size = 0};
    return skl_params_init(p, size, &d, sizeof d, SAVE_PARAMS_V1, "skl_save_params_init");
}

int skl_model_save(const skl_model *m, const char *path, skl_save_format format) {
    skl_save_params p;
    skl_save_params_init(&p, sizeof p);
    p.format = format;
    return skl_model_save_v2(m, path, &p);
}

int skl_model_save_v2(const skl_model *m, const char *path, const skl_save_params *params) {
    if (!m || !path || !*path) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: NULL model or empty path");
    skl_save_params p;
    skl_save_params_init(&p, sizeof p);
    int rc = skl_params_read(&p, sizeof p, params, SAVE_PARAMS_V1, "skl_model_save_v2");
    if (rc) return rc;
    skl_save_format format = p.format;
    if (format < SKL_SAVE_AUTO || format > SKL_SAVE_FILE)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: unknown format %d", (int)format);
    if (strlen(path) > 4000) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: path too long");
    uint64_t limit = p.max_shard_size ? p.max_shard_size : SKL_SAVE_DEFAULT_MAX_SHARD_SIZE;
    if (format == SKL_SAVE_AUTO) format = ends_with(path, ".safetensors") ? SKL_SAVE_FILE : SKL_SAVE_DIR;
    size_t cap = 4 + (size_t)m->hp.num_hidden_layers * 14 + 4;
    entry *e = calloc(cap, sizeof *e);
    if (!e) return nomem();
    size_t n = collect(m, e);
    if (format == SKL_SAVE_FILE) rc = write_file(m, path, e, n);
    else if (mkdir(path, 0777) != 0 && errno != EEXIST)
        rc = skl_fail(SKL_ERR_IO, "save: cannot create directory %s: %s", path, strerror(errno));
    else rc = write_dir(m, path, e, n, limit);
    free(e);
    return rc;
}
