/* save.c - write a model as safetensors + config, readable by skl_model_load;
 * each tensor in its in-memory dtype (F32, F16 or BF16, little-endian).
 * Each file is written under a temporary name and renamed into place. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct entry {
    char name[96];
    const skl_tensor *t;
    bool vector; /* 1-D (bias, norm) */
} entry;

static size_t collect(const skl_model *m, entry *e) {
    size_t n = 0;
#define ADD(t_, vec_, ...)                                          \
    do {                                                            \
        if ((t_)->data) {                                           \
            snprintf(e[n].name, sizeof e[n].name, __VA_ARGS__);     \
            e[n].t = (t_);                                          \
            e[n].vector = (vec_);                                   \
            n++;                                                    \
        }                                                           \
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

static int write_safetensors(const skl_model *m, const char *path, bool with_config) {
    size_t cap = 4 + (size_t)m->hp.num_hidden_layers * 14 + 4;
    entry *e = calloc(cap, sizeof *e);
    json_t *hdr = json_object(), *meta = json_object();
    char *text = NULL, *cfg = NULL, tmp[4200];
    FILE *fp = NULL;
    int rc = SKL_OK;
    if (!e || !hdr || !meta) { rc = skl_fail(SKL_ERR_NOMEM, "save: out of memory"); goto done; }
    size_t n = collect(m, e);
    uint64_t off = 0;
    json_object_set_new(meta, "format", json_string("pt"));
    if (with_config) {
        cfg = json_dumps(m->config, JSON_COMPACT | JSON_SORT_KEYS);
        if (!cfg) { rc = skl_fail(SKL_ERR_NOMEM, "save: out of memory"); goto done; }
        json_object_set_new(meta, "config", json_string(cfg));
        if (m->tok) {
            size_t tl;
            const char *tt = skl_tok_text(m->tok, &tl);
            json_t *js = json_stringn(tt, tl);
            if (!js || json_object_set_new(meta, "tokenizer.json", js) != 0) {
                rc = skl_fail(SKL_ERR_NOMEM, "save: out of memory");
                goto done;
            }
        }
    }
    json_object_set(hdr, "__metadata__", meta);
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)e[i].t->rows * (uint64_t)e[i].t->cols * skl_dtype_size(e[i].t->dtype);
        json_t *shape = e[i].vector ? json_pack("[I]", (json_int_t)e[i].t->cols)
                                    : json_pack("[I,I]", (json_int_t)e[i].t->rows, (json_int_t)e[i].t->cols);
        json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", skl_dtype_name(e[i].t->dtype), "shape", shape, "data_offsets",
                                (json_int_t)off, (json_int_t)(off + bytes));
        if (!ent || json_object_set_new(hdr, e[i].name, ent) != 0) { rc = skl_fail(SKL_ERR_NOMEM, "save: out of memory"); goto done; }
        off += bytes;
    }
    text = json_dumps(hdr, JSON_COMPACT);
    if (!text) { rc = skl_fail(SKL_ERR_NOMEM, "save: out of memory"); goto done; }
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) { rc = skl_fail(SKL_ERR_INVALID_ARG, "save: path too long"); goto done; }
    fp = fopen(tmp, "wb");
    if (!fp) { rc = skl_fail(SKL_ERR_IO, "save: %s: %s", tmp, strerror(errno)); goto done; }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int bad = write_all(fp, len8, 8) || write_all(fp, text, hl);
    for (size_t i = hl; !bad && i < padded; i++) bad = fputc(' ', fp) == EOF;
    for (size_t i = 0; !bad && i < n; i++) /* little-endian, as in memory on x86/ARM */
        bad = write_all(fp, e[i].t->data,
                        (size_t)e[i].t->rows * (size_t)e[i].t->cols * skl_dtype_size(e[i].t->dtype));
    if (fclose(fp) != 0) bad = 1;
    fp = NULL;
    if (bad || rename(tmp, path) != 0) {
        rc = skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", path, strerror(errno));
        remove(tmp);
    }
done:
    if (fp) fclose(fp);
    free(e);
    free(text);
    free(cfg);
    json_decref(meta);
    json_decref(hdr);
    return rc;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* DIR/tokenizer.json: the text the model was loaded with; a stale one from an
 * earlier save is removed when the model has no tokenizer. */
static int write_tokenizer(const skl_model *m, const char *dir) {
    char p[4200], tmp[4300];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (!m->tok) {
        if (remove(p) != 0 && errno != ENOENT) return skl_fail(SKL_ERR_IO, "save: cannot remove stale %s: %s", p, strerror(errno));
        return SKL_OK;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    size_t len;
    const char *text = skl_tok_text(m->tok, &len);
    FILE *fp = fopen(tmp, "wb");
    int bad = !fp || write_all(fp, text, len);
    if (fp && fclose(fp) != 0) bad = 1;
    if (bad || rename(tmp, p) != 0) {
        int e = errno;
        remove(tmp);
        return skl_fail(SKL_ERR_IO, "save: cannot write %s: %s", p, strerror(e));
    }
    return SKL_OK;
}

int skl_model_save(const skl_model *m, const char *path, skl_save_format format) {
    if (!m || !path || !*path) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: NULL model or empty path");
    if (format < SKL_SAVE_AUTO || format > SKL_SAVE_FILE)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: unknown format %d", (int)format);
    if (strlen(path) > 4000) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_save: path too long");
    if (format == SKL_SAVE_AUTO) format = ends_with(path, ".safetensors") ? SKL_SAVE_FILE : SKL_SAVE_DIR;
    if (format == SKL_SAVE_FILE) return write_safetensors(m, path, true);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return skl_fail(SKL_ERR_IO, "save: cannot create directory %s: %s", path, strerror(errno));
    char p[4200], tmp[4300];
    snprintf(p, sizeof p, "%s/model.safetensors", path);
    int rc = write_safetensors(m, p, false);
    if (rc) return rc;
    snprintf(p, sizeof p, "%s/config.json", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    if (json_dump_file(m->config, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0 || rename(tmp, p) != 0) {
        remove(tmp);
        return skl_fail(SKL_ERR_IO, "save: cannot write %s", p);
    }
    return write_tokenizer(m, path);
}
