/* save.c - write a model as safetensors + config, readable by skl_model_load;
 * each tensor in its in-memory dtype (F32, F16 or BF16, little-endian; a
 * quantized weight as compressed-tensors stores it: Q8_0 as X.weight int8 and
 * X.weight_scale, Q4_0 as X.weight_packed int32, X.weight_shape and
 * X.weight_scale), and the config's "quantization_config" made to describe
 * the quantized weights (quant_config.c).
 *
 * A directory gets config.json, tokenizer.json (when the model has one) and
 * its weights as Hugging Face lays them out: one model.safetensors when they
 * fit in one shard, else model-00001-of-0000N.safetensors ... filled in tensor
 * order (a tensor larger than the limit alone in its shard) and
 * model.safetensors.index.json.  Every file is first written (and fsync'd)
 * under a temporary name of its own in the target directory, created
 * exclusively (O_EXCL: an existing file or symlink of that name is never
 * followed or overwritten; saves in other threads or processes get other
 * names).  Only when all were written does the commit replace the files:
 * each existing file to be replaced is first linked to a backup name, each
 * file of an earlier save that the new layout does not use is renamed to one,
 * then the temporaries are renamed into place.  A failure at any step puts
 * the backups back and removes the temporaries, so the target is left as it
 * was; success removes the backups. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"

/* One tensor of a file: a model tensor, or a part of a quantized weight. */
enum { E_DATA, E_SCALE, E_SHAPE };
typedef struct entry {
    char name[112];
    const skl_tensor *t;
    int part;          /* E_DATA: t's data; E_SCALE: its scales; E_SHAPE: its [rows, cols] (wshape) */
    int32_t layer;     /* -1: embedding; num_hidden_layers: final norm, head */
    int dtype;         /* in the file: F32, F16, BF16, I8, I32, I64 */
    int ndim;
    int64_t shape[2];
    uint64_t bytes;    /* of its data */
    int64_t wshape[2]; /* E_SHAPE: the data */
} entry;

/* The tensors of m in file order; e has room for max_entries(m). */
static size_t max_entries(const skl_model *m) { return 4 + ((size_t)m->hp.num_hidden_layers * 7 + 1) * 4 + 4; }

static entry *add(entry *e, const skl_tensor *t, int part, int32_t layer, int dtype, int ndim, int64_t s0, int64_t s1) {
    e->t = t;
    e->part = part;
    e->layer = layer;
    e->dtype = dtype;
    e->ndim = ndim;
    e->shape[0] = s0;
    e->shape[1] = s1;
    e->bytes = skl_dtype_size(dtype) * (uint64_t)s0 * (uint64_t)(ndim == 2 ? s1 : 1);
    e->wshape[0] = t->rows;
    e->wshape[1] = t->cols;
    return e;
}

/* Tensor t named `stem` + ".weight" (or its parts, quantized as compressed-tensors stores them) or, vector,
 * + suffix; returns the number of entries. */
static size_t add_tensor(entry *e, const skl_tensor *t, int32_t layer, bool vector, const char *stem,
                         const char *suffix) {
    if (!t->data) return 0;
    if (vector) {
        snprintf(add(e, t, E_DATA, layer, t->dtype, 1, t->cols, 0)->name, sizeof e->name, "%s%s", stem, suffix);
        return 1;
    }
    if (!skl_dtype_quantized(t->dtype)) {
        snprintf(add(e, t, E_DATA, layer, t->dtype, 2, t->rows, t->cols)->name, sizeof e->name, "%s.weight", stem);
        return 1;
    }
    bool packed = t->dtype == SKL_DT_Q4_0; /* pack-quantized: eight nibbles an int32 */
    snprintf(add(e, t, E_DATA, layer, packed ? SKL_DT_I32 : SKL_DT_I8, 2, t->rows, packed ? t->cols / 8 : t->cols)->name,
             sizeof e->name, "%s.%s", stem, packed ? "weight_packed" : "weight");
    snprintf(add(e + 1, t, E_SCALE, layer, SKL_DT_F16, 2, t->rows, t->cols / SKL_DT_QGROUP)->name, sizeof e->name,
             "%s.weight_scale", stem);
    if (!packed) return 2;
    snprintf(add(e + 2, t, E_SHAPE, layer, SKL_DT_I64, 1, 2, 0)->name, sizeof e->name, "%s.weight_shape", stem);
    return 3;
}

static size_t collect(const skl_model *m, entry *e) {
    size_t n = 0;
    int32_t L = m->hp.num_hidden_layers;
    n += add_tensor(e + n, &m->embed, -1, false, "model.embed_tokens", "");
    for (skl_lin_iter it = skl_linears(m, 0, L, false); skl_lin_next(&it);) {
        char stem[96];
        skl_linear_module(it.layer, it.lin, stem, sizeof stem);
        n += add_tensor(e + n, &it.l->w, it.layer, false, stem, "");
        n += add_tensor(e + n, &it.l->b, it.layer, true, stem, ".bias");
    }
    n += add_tensor(e + n, &m->norm, L, true, "model.norm", ".weight");
    if (!m->hp.tie_word_embeddings) n += add_tensor(e + n, &m->head.w, L, false, "lm_head", "");
    n += add_tensor(e + n, &m->head.b, L, true, "lm_head", ".bias");
    return n;
}

/* The bytes entry e of the model it was collected from writes. */
static const void *entry_data(const entry *e) {
    return e->part == E_DATA ? e->t->data : e->part == E_SCALE ? (const void *)e->t->scale : (const void *)e->wshape;
}

/* m's config as saved: its "quantization_config" made from its tensors (removed when none is quantized). */
static json_t *saved_config(const skl_model *m) {
    json_t *cfg = json_deep_copy(m->config);
    size_t n = (size_t)m->hp.num_hidden_layers * 7 + 1, k = 0;
    char (*names)[96] = calloc(n, sizeof *names);
    const char **np = calloc(n, sizeof *np);
    int *types = calloc(n, sizeof *types);
    bool nomem = !cfg || !names || !np || !types;
    for (skl_lin_iter it = skl_linears_all(m); !nomem && skl_lin_next(&it);) {
        if (!it.l->w.data) continue;
        skl_linear_module(it.layer, it.lin, names[k], sizeof names[k]);
        np[k] = names[k];
        types[k++] = skl_dtype_quantized(it.l->w.dtype) ? it.l->w.dtype : -1; /* a tied head is the embedding */
    }
    json_t *qc = nomem ? NULL : skl_qcfg_build(np, types, k, &nomem);
    if (!nomem && qc) nomem = json_object_set_new(cfg, "quantization_config", qc) != 0;
    else if (!nomem) json_object_del(cfg, "quantization_config"); /* -1 when there was none: fine */
    free(names);
    free(np);
    free(types);
    if (nomem) {
        json_decref(cfg);
        return NULL;
    }
    return cfg;
}

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

static int nomem(void) { return skl_fail(SKL_ERR_NOMEM, "save: out of memory"); }

/* The header of one .safetensors file holding e[0..n), with __metadata__ meta:
 * the 8-byte length, the JSON, the padding to 8 bytes. */
static int st_header(const entry *e, size_t n, json_t *meta, char **text, size_t *len) {
    json_t *hdr = json_object();
    char *js = NULL;
    int rc = SKL_OK;
    *text = NULL;
    if (!hdr || json_object_set(hdr, "__metadata__", meta) != 0) { rc = nomem(); goto done; }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *shape = e[i].ndim == 1 ? json_pack("[I]", (json_int_t)e[i].shape[0])
                                       : json_pack("[I,I]", (json_int_t)e[i].shape[0], (json_int_t)e[i].shape[1]);
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", skl_dtype_str(e[i].dtype), "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + e[i].bytes));
        if (!ent || json_object_set_new(hdr, e[i].name, ent) != 0) { rc = nomem(); goto done; }
        off += e[i].bytes;
    }
    if (!(js = json_dumps(hdr, JSON_COMPACT))) { rc = nomem(); goto done; }
    size_t hl = strlen(js), padded = (hl + 7) / 8 * 8;
    if (!(*text = malloc(8 + padded))) { rc = nomem(); goto done; }
    for (int i = 0; i < 8; i++) (*text)[i] = (char)(unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(*text + 8, js, hl);
    memset(*text + 8 + hl, ' ', padded - hl);
    *len = 8 + padded;
done:
    free(js);
    json_decref(hdr);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* __metadata__: "format": "pt", and for a single file the config and the tokenizer. */
static json_t *make_meta(const skl_model *m, const json_t *config, bool single_file) {
    json_t *meta = json_pack("{s:s}", "format", "pt");
    if (!meta || !single_file) return meta;
    char *cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
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

/* One file of a save: written to tmp, renamed to final at the commit; backup
 * holds the final it replaces (or, for a stale file, the file itself) until
 * the commit is complete. */
typedef struct out_file {
    char final[4400], tmp[4500], backup[4500]; /* path (<= 4000, checked) + / + a name (<= 255) */
    bool written;   /* tmp exists */
    bool stale;     /* no new content: final is removed (moved to backup) at the commit */
    bool existed;   /* final existed at the commit */
    bool backed_up; /* backup exists */
    bool renamed;   /* tmp (or, stale, final) has been renamed */
} out_file;

typedef struct out_set {
    out_file *f;
    size_t n, cap;
} out_set;

static out_file *add_file(out_set *s, const char *dir, const char *name) {
    out_file *f = &s->f[s->n++];
    memset(f, 0, sizeof *f);
    snprintf(f->final, sizeof f->final, "%s/%s", dir, name);
    return f;
}

/* A fresh name beside final ("final.tmp.PID.N" / "final.old.PID.N"); the caller
 * creates it exclusively and asks again on EEXIST. */
static void unique_name(char *out, size_t size, const char *final, const char *kind) {
    static atomic_uint counter;
    snprintf(out, size, "%s.%s.%ld.%u", final, kind, (long)getpid(), atomic_fetch_add(&counter, 1));
}

/* Create f's temporary exclusively (never following a symlink, never reusing a
 * name): the mode is 0666 less the umask, as fopen would give. */
static int temp_open(out_file *f, FILE **fp) {
    *fp = NULL;
    for (int tries = 0; tries < 100; tries++) {
        unique_name(f->tmp, sizeof f->tmp, f->final, "tmp");
        int fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return skl_fail(SKL_ERR_IO, "save: cannot create %s: %s", f->tmp, strerror(errno));
        f->written = true;
        if (!(*fp = fdopen(fd, "wb"))) {
            int err = errno;
            close(fd);
            return skl_fail(err == ENOMEM ? SKL_ERR_NOMEM : SKL_ERR_IO, "save: %s: %s", f->tmp, strerror(err));
        }
        return SKL_OK;
    }
    return skl_fail(SKL_ERR_IO, "save: no free temporary name beside %s", f->final);
}

/* Flush, fsync and close a temporary: the errors of a full disk come here. */
static int temp_close(const out_file *f, FILE *fp) {
    int bad = fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    int err = errno;
    if (fclose(fp) != 0 && !bad) bad = 1, err = errno;
    return bad ? skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", f->tmp, strerror(err)) : SKL_OK;
}

static int write_text(out_file *f, const char *text, size_t len) {
    FILE *fp;
    int rc = temp_open(f, &fp);
    if (rc) return rc;
    if (write_all(fp, text, len)) {
        int err = errno;
        fclose(fp);
        return skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", f->tmp, strerror(err));
    }
    return temp_close(f, fp);
}

static void remove_temporaries(out_set *s) {
    for (size_t i = 0; i < s->n; i++)
        if (s->f[i].written) {
            unlink(s->f[i].tmp); /* not remove(): never a directory */
            s->f[i].written = false;
        }
}

/* Back up what file f will replace or remove: an existing regular file (or
 * symlink) final is linked (a replaced file) or renamed (a stale one) to a
 * fresh name.  A final that is absent needs nothing; a directory is left for
 * the rename to refuse. */
static int backup(out_file *f) {
    struct stat st;
    if (lstat(f->final, &st) != 0) {
        if (errno == ENOENT) return SKL_OK;
        return skl_fail(SKL_ERR_IO, "save: %s: %s", f->final, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return SKL_OK; /* not one of ours: a stale one is left alone, a new one's rename fails */
    f->existed = true;
    for (int tries = 0; tries < 100; tries++) {
        unique_name(f->backup, sizeof f->backup, f->final, "old");
        int r = f->stale ? (access(f->backup, F_OK) == 0 ? (errno = EEXIST, -1) : rename(f->final, f->backup))
                         : link(f->final, f->backup);
        if (r == 0) {
            f->backed_up = true;
            f->renamed = f->stale;
            return SKL_OK;
        }
        if (!f->stale && (errno == EPERM || errno == EOPNOTSUPP)) { /* no hard links here (FAT): rename still replaces */
            skl_log(SKL_LOG_WARN, "save: %s: no hard links (%s): a failed save cannot restore it", f->final,
                    strerror(errno));
            return SKL_OK;
        }
        if (errno != EEXIST) return skl_fail(SKL_ERR_IO, "save: cannot keep %s as %s: %s", f->final, f->backup, strerror(errno));
    }
    return skl_fail(SKL_ERR_IO, "save: no free backup name beside %s", f->final);
}

/* Undo a failed commit: every replaced final back from its backup (or removed
 * when there was none), every stale file back, the temporaries removed. */
static void rollback(out_set *s) {
    for (size_t i = s->n; i-- > 0;) {
        out_file *f = &s->f[i];
        if (f->backed_up && !f->renamed) unlink(f->backup); /* a link beside a final never touched */
        else if (f->backed_up) {
            if (rename(f->backup, f->final) != 0)
                skl_log(SKL_LOG_ERROR, "save: cannot restore %s from %s: %s", f->final, f->backup, strerror(errno));
        } else if (f->renamed && !f->existed) unlink(f->final); /* new: it was not there */
        else if (f->renamed) skl_log(SKL_LOG_ERROR, "save: %s was replaced and cannot be restored", f->final);
        f->backed_up = f->renamed = false;
    }
    remove_temporaries(s);
}

/* Back everything up, then rename every temporary into place (the weights
 * first); all or nothing. */
static int commit(out_set *s) {
    int rc = SKL_OK;
    for (size_t i = 0; i < s->n && !rc; i++) rc = backup(&s->f[i]);
    for (size_t i = 0; i < s->n && !rc; i++) {
        out_file *f = &s->f[i];
        if (f->stale) continue;
        if (rename(f->tmp, f->final) != 0)
            rc = skl_fail(SKL_ERR_IO, "save: cannot rename %s to %s: %s", f->tmp, f->final, strerror(errno));
        else f->written = false, f->renamed = true;
    }
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", skl_last_error());
        rollback(s);
        return skl_fail(rc, "%s (nothing was changed)", msg);
    }
    for (size_t i = 0; i < s->n; i++)
        if (s->f[i].backed_up) unlink(s->f[i].backup);
    return SKL_OK;
}

/* model-%05d-of-%05d.safetensors (32 characters): *of its shard count. */
static bool shard_file_name(const char *name, int *of) {
    int i, end = 0;
    return strlen(name) == 32 && sscanf(name, "model-%5d-of-%5d.safetensors%n", &i, of, &end) == 2 && end == 32;
}

/* The files of an earlier save the new layout does not use (model.safetensors
 * or the index, model-*-of-*.safetensors of another count, a tokenizer.json
 * the model does not have), as stale members of the set: the commit removes them. */
static int add_stale(out_set *s, const skl_model *m, const char *dir, int n_shards) {
    if (s->n + 2 > s->cap) return nomem();
    add_file(s, dir, n_shards > 1 ? "model.safetensors" : INDEX_NAME)->stale = true;
    if (!m->tok) add_file(s, dir, "tokenizer.json")->stale = true;
    DIR *d = opendir(dir);
    if (!d) return skl_fail(SKL_ERR_IO, "save: %s: %s", dir, strerror(errno));
    int rc = SKL_OK;
    for (struct dirent *de; !rc && (de = readdir(d));) {
        int of;
        if (!shard_file_name(de->d_name, &of) || (n_shards > 1 && of == n_shards)) continue;
        if (s->n == s->cap) {
            out_file *nf = realloc(s->f, (s->cap * 2) * sizeof *nf);
            if (!nf) { rc = nomem(); break; }
            s->f = nf;
            s->cap *= 2;
        }
        add_file(s, dir, de->d_name)->stale = true;
    }
    closedir(d);
    return rc;
}

/* A save must not write over the files its model was loaded from (also through
 * a symlink or another spelling of the path): those the save would replace or
 * remove are, in a directory, model.safetensors, the index, its shards,
 * config.json and tokenizer.json. */
static bool managed_name(const char *name) {
    int of;
    return !strcmp(name, "model.safetensors") || !strcmp(name, INDEX_NAME) || !strcmp(name, "config.json") ||
           !strcmp(name, "tokenizer.json") || shard_file_name(name, &of);
}

static bool same_file(const char *path, uint64_t dev, uint64_t ino) {
    struct stat st;
    return stat(path, &st) == 0 && (uint64_t)st.st_dev == dev && (uint64_t)st.st_ino == ino;
}

static int check_not_source(const skl_model *m, const char *path, bool dir) {
    const skl_source_id *id = &m->source;
    if (!id->known) return SKL_OK;
    bool same;
    if (dir) same = id->is_dir ? same_file(path, id->dev, id->ino)
                               : managed_name(id->name) && same_file(path, id->dir_dev, id->dir_ino);
    else if (!id->is_dir) same = same_file(path, id->dev, id->ino);
    else {
        char parent[4200];
        const char *slash = strrchr(path, '/');
        snprintf(parent, sizeof parent, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        if (slash == path) snprintf(parent, sizeof parent, "/");
        same = managed_name(slash ? slash + 1 : path) && same_file(parent, id->dev, id->ino);
    }
    return same ? skl_fail(SKL_ERR_SAME_AS_SOURCE, "save: %s is where the model was loaded from (%s): refused, it would "
                                                   "overwrite the model's own files",
                           path, m->path ? m->path : "?")
                : SKL_OK;
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

/* ----------------------------------------------------------------- writer */

#define SAVE_PARAMS_V1 SKL_SIZE_THROUGH(skl_save_params, max_shard_size)

struct skl_writer {
    const skl_model *m;   /* the layout: shapes, dtypes, config, tokenizer */
    json_t *config;       /* m's config as saved (saved_config) */
    bool dir;             /* a directory (shards, index, config, tokenizer), else one file */
    bool made_dir;        /* the directory was created by this writer: abort removes it if empty */
    char path[4100];
    entry *e;             /* [n] the layout's tensors in file order */
    entry *cur;           /* [max_entries] the tensors of the model being written */
    size_t n, next;       /* next: the first entry not yet written */
    size_t *first;        /* [n_shards + 1]: shard k holds e[first[k] .. first[k + 1]) */
    size_t n_shards, shard; /* shard: the one being (or next to be) written */
    FILE *fp;             /* the open shard, or NULL */
    json_t *meta;         /* __metadata__ of every shard */
    out_set s;            /* the shards first (in order), then index, config, tokenizer */
};

static void shard_name(const skl_writer *w, size_t k, char *name, size_t size) {
    if (w->n_shards == 1) snprintf(name, size, "model.safetensors");
    else snprintf(name, size, "model-%05zu-of-%05zu.safetensors", k + 1, w->n_shards);
}

static int shard_open(skl_writer *w) {
    out_file *f = &w->s.f[w->shard];
    char *text;
    size_t len = 0;
    int rc = st_header(w->e + w->first[w->shard], w->first[w->shard + 1] - w->first[w->shard], w->meta, &text, &len);
    if (rc) return rc;
    if (!(rc = temp_open(f, &w->fp)) && write_all(w->fp, text, len))
        rc = skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", f->tmp, strerror(errno));
    free(text);
    return rc;
}

static int shard_close(skl_writer *w) {
    int rc = temp_close(&w->s.f[w->shard], w->fp);
    w->fp = NULL;
    if (!rc) w->shard++;
    return rc;
}

int skl_writer_open(const skl_model *m, const char *path, const skl_save_params *params, skl_writer **out) {
    *out = NULL;
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
    skl_writer *w = calloc(1, sizeof *w);
    if (!w) return nomem();
    w->m = m;
    w->dir = format == SKL_SAVE_DIR;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->e = calloc(max_entries(m), sizeof *w->e);
    w->cur = calloc(max_entries(m), sizeof *w->cur);
    w->config = saved_config(m);
    w->meta = w->config ? make_meta(m, w->config, !w->dir) : NULL;
    if (!w->e || !w->cur || !w->meta) goto nomem;
    w->n = collect(m, w->e);
    if (!(w->first = malloc((w->n + 2) * sizeof *w->first))) goto nomem;
    if (w->dir) w->n_shards = split(w->e, w->n, limit, w->first);
    if (w->n_shards == 0) { /* one file whatever its size (also: no tensors) */
        w->n_shards = 1;
        w->first[0] = 0;
        w->first[1] = w->n;
    }
    w->s.cap = w->n_shards + 8; /* shards, index, config, tokenizer; stale files grow it */
    if (!(w->s.f = calloc(w->s.cap, sizeof *w->s.f))) goto nomem;
    if ((rc = check_not_source(m, path, w->dir))) {
        skl_writer_abort(w);
        return rc;
    }
    if (!w->dir) {
        out_file *f = &w->s.f[w->s.n++];
        snprintf(f->final, sizeof f->final, "%s", path);
    } else {
        if (mkdir(path, 0777) == 0) w->made_dir = true;
        else if (errno != EEXIST) {
            rc = skl_fail(SKL_ERR_IO, "save: cannot create directory %s: %s", path, strerror(errno));
            skl_writer_abort(w);
            return rc;
        }
        for (size_t k = 0; k < w->n_shards; k++) {
            char name[64];
            shard_name(w, k, name, sizeof name);
            add_file(&w->s, path, name);
        }
    }
    *out = w;
    return SKL_OK;
nomem:
    skl_writer_abort(w);
    return nomem();
}

int skl_writer_put(skl_writer *w, const skl_model *m, int32_t until) {
    size_t nc = collect(m, w->cur), j = 0;
    int rc = SKL_OK;
    for (; !rc && w->next < w->n && w->e[w->next].layer < until; w->next++) {
        const entry *pe = &w->e[w->next];
        while (j < nc && strcmp(w->cur[j].name, pe->name)) j++;
        if (j == nc) return skl_fail(SKL_ERR_INVALID_ARG, "save: tensor %s of the layout is missing", pe->name);
        const entry *ce = &w->cur[j];
        if (ce->t->dtype != pe->t->dtype || ce->dtype != pe->dtype || ce->ndim != pe->ndim ||
            ce->shape[0] != pe->shape[0] || ce->shape[1] != pe->shape[1])
            return skl_fail(SKL_ERR_INVALID_ARG, "save: %s is %s [%lld, %lld] of a %s tensor, the layout says %s [%lld, %lld] of %s",
                            pe->name, skl_dtype_str(ce->dtype), (long long)ce->shape[0], (long long)ce->shape[1],
                            skl_dtype_str(ce->t->dtype), skl_dtype_str(pe->dtype), (long long)pe->shape[0],
                            (long long)pe->shape[1], skl_dtype_str(pe->t->dtype));
        if (!w->fp && (rc = shard_open(w))) break;
        if (write_all(w->fp, entry_data(ce), (size_t)pe->bytes)) /* little-endian, as in memory on x86/ARM */
            rc = skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", w->s.f[w->shard].tmp, strerror(errno));
        else if (w->next + 1 == w->first[w->shard + 1]) rc = shard_close(w);
    }
    return rc;
}

/* model.safetensors.index.json as transformers writes it: sorted keys, 2-space indent, a final newline. */
static int write_index(skl_writer *w) {
    json_t *wm = json_object(), *index = NULL;
    char *text = NULL;
    uint64_t total = 0;
    int rc = wm ? SKL_OK : nomem();
    for (size_t k = 0; k < w->n_shards && !rc; k++) {
        char name[64];
        shard_name(w, k, name, sizeof name);
        for (size_t i = w->first[k]; i < w->first[k + 1] && !rc; i++) {
            total += w->e[i].bytes;
            if (json_object_set_new(wm, w->e[i].name, json_string(name)) != 0) rc = nomem();
        }
    }
    if (!rc) {
        index = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
        char *body = index ? json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        size_t len = body ? strlen(body) : 0;
        if (body && (text = malloc(len + 2))) snprintf(text, len + 2, "%s\n", body);
        free(body);
        out_file *f = add_file(&w->s, w->path, INDEX_NAME);
        rc = text ? write_text(f, text, len + 1) : nomem();
    }
    json_decref(wm);
    json_decref(index);
    free(text);
    return rc;
}

int skl_writer_finish(skl_writer *w) {
    int rc = SKL_OK;
    if (w->next != w->n)
        rc = skl_fail(SKL_ERR_INVALID_ARG, "save: %zu of %zu tensors were written", w->next, w->n);
    while (!rc && w->shard < w->n_shards) /* a shard without tensors */
        if (!(rc = shard_open(w))) rc = shard_close(w);
    if (!rc && w->dir && w->n_shards > 1) rc = write_index(w);
    if (!rc && w->dir) { /* as json_dump_file wrote it: no final newline; w->config: the model's, with the
                            quantization_config of the tensors written */
        char *cfg = json_dumps(w->config, JSON_INDENT(2) | JSON_SORT_KEYS);
        rc = cfg ? write_text(add_file(&w->s, w->path, "config.json"), cfg, strlen(cfg)) : nomem();
        free(cfg);
    }
    if (!rc && w->dir && w->m->tok) {
        size_t len;
        const char *tt = skl_tok_text(w->m->tok, &len);
        rc = write_text(add_file(&w->s, w->path, "tokenizer.json"), tt, len);
    }
    if (!rc && w->dir) rc = add_stale(&w->s, w->m, w->path, (int)w->n_shards);
    if (!rc) rc = commit(&w->s); /* all or nothing: undoes itself on failure */
    if (!rc) w->made_dir = false; /* the files are in place */
    skl_writer_abort(w); /* on failure: the temporaries, an empty directory it made */
    return rc;
}

void skl_writer_abort(skl_writer *w) {
    if (!w) return;
    if (w->fp) fclose(w->fp);
    if (w->s.f) remove_temporaries(&w->s);
    if (w->made_dir) rmdir(w->path); /* fails, as it should, once the files are in place */
    free(w->s.f);
    free(w->e);
    free(w->cur);
    free(w->first);
    json_decref(w->meta);
    json_decref(w->config);
    free(w);
}

/* ------------------------------------------------------------------ entry */

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
    skl_writer *w;
    int rc = skl_writer_open(m, path, params, &w);
    if (rc) return rc;
    if ((rc = skl_writer_put(w, m, INT32_MAX))) {
        skl_writer_abort(w);
        return rc;
    }
    return skl_writer_finish(w);
}
