/* model.c - load a model: config + tensors by name (located by checkpoint.c) -> validated tensors.
 *
 * Every tensor name is resolved to a slot of the model (embedding, head, final
 * norm, or one linear layer of one block); a name that resolves to nothing is
 * an unexpected tensor.  Shapes are checked against the config, required
 * tensors against what is present, and only then is anything converted.
 * Every tensor keeps its file dtype (F32, F16 or BF16) in memory: used in
 * place from the mapping when aligned for its dtype, else copied once. */
#include "model.h"
#include "abi.h"

#include "blas.h"
#include "checkpoint.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void skl_tensor_clear(skl_tensor *t) {
    skl_buf_release(t->owner);
    memset(t, 0, sizeof *t);
}

/* -------------------------------------------------------------------- slots */

/* Per layer: 7 linear layers x {weight, bias}. */
enum { LIN_Q = SKL_LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };
const char *const skl_linear_names[SKL_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
enum { G_EMBED, G_HEAD_W, G_HEAD_B, G_NORM, G_COUNT };
#define LAYER_SLOTS (2 * LIN_COUNT)

typedef struct loader {
    const char *file;        /* the safetensors file or the shard index, for messages */
    const skl_hparams *hp;
    const skl_ckpt_tensor **slots; /* [G_COUNT + L * LAYER_SLOTS] */
} loader;

static size_t slot_index(int layer, int lin, int is_bias) {
    return G_COUNT + (size_t)layer * LAYER_SLOTS + (size_t)lin * 2 + (size_t)is_bias;
}

skl_linear *skl_layer_linear(skl_layer *l, int lin) {
    skl_linear *t[LIN_COUNT] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
    return t[lin];
}

skl_linear *skl_model_linear(const skl_model *m, int32_t layer, int lin) {
    skl_model *w = (skl_model *)m; /* written only by the model's owner, see model.h */
    return lin == SKL_LIN_HEAD ? &w->head : skl_layer_linear(&w->layers[layer], lin);
}

skl_lin_iter skl_linears(const skl_model *m, int32_t first, int32_t end, bool head) {
    return (skl_lin_iter){.layer = first, .lin = -1, .m_ = m, .end_ = end, .head_ = head};
}

bool skl_lin_next(skl_lin_iter *it) {
    if (it->done_) return false;
    if (it->layer < it->end_ && ++it->lin == LIN_COUNT) {
        it->lin = 0;
        it->layer++;
    }
    if (it->layer < it->end_) {
        it->l = skl_model_linear(it->m_, it->layer, it->lin);
        it->name = skl_linear_names[it->lin];
        return true;
    }
    it->done_ = true;
    if (!it->head_) return false;
    it->layer = it->m_->hp.num_hidden_layers;
    it->lin = SKL_LIN_HEAD;
    it->l = skl_model_linear(it->m_, it->layer, it->lin);
    it->name = "lm_head";
    return true;
}

/* Expected [out, in] of linear `lin`. */
static void lin_shape(const skl_hparams *hp, int lin, int64_t *out, int64_t *in) {
    int64_t d = hp->hidden_size, qd = (int64_t)hp->num_attention_heads * hp->head_dim,
            kvd = (int64_t)hp->num_key_value_heads * hp->head_dim, f = hp->intermediate_size;
    switch (lin) {
    case LIN_Q: *out = qd; *in = d; break;
    case LIN_K: case LIN_V: *out = kvd; *in = d; break;
    case LIN_O: *out = d; *in = qd; break;
    case LIN_GATE: case LIN_UP: *out = f; *in = d; break;
    default: *out = d; *in = f; break;
    }
}

/* Resolve a tensor name to a slot and its expected shape; -1 if unknown. */
static long resolve(const skl_hparams *hp, const char *name, int *ndim, int64_t shape[2]) {
    int64_t d = hp->hidden_size, V = hp->vocab_size;
    if (!strcmp(name, "model.embed_tokens.weight")) { *ndim = 2; shape[0] = V; shape[1] = d; return G_EMBED; }
    if (!strcmp(name, "lm_head.weight")) { *ndim = 2; shape[0] = V; shape[1] = d; return G_HEAD_W; }
    if (!strcmp(name, "lm_head.bias")) { *ndim = 1; shape[0] = V; return G_HEAD_B; }
    if (!strcmp(name, "model.norm.weight")) { *ndim = 1; shape[0] = d; return G_NORM; }
    const char *p = name;
    if (strncmp(p, "model.layers.", 13) != 0) return -1;
    p += 13;
    /* layer index: decimal, no sign, no leading zeros, < L */
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
    long layer = 0;
    while (*p >= '0' && *p <= '9') {
        layer = layer * 10 + (*p++ - '0');
        if (layer >= hp->num_hidden_layers) return -1;
    }
    if (*p++ != '.') return -1;
    for (int lin = 0; lin < LIN_COUNT; lin++) {
        size_t n = strlen(skl_linear_names[lin]);
        if (strncmp(p, skl_linear_names[lin], n) != 0) continue;
        const char *s = p + n;
        int64_t out, in;
        lin_shape(hp, lin, &out, &in);
        if (!strcmp(s, ".weight")) { *ndim = 2; shape[0] = out; shape[1] = in; return (long)slot_index((int)layer, lin, 0); }
        if (!strcmp(s, ".bias")) { *ndim = 1; shape[0] = out; return (long)slot_index((int)layer, lin, 1); }
        return -1;
    }
    return -1;
}

static void fmt_shape(char *buf, size_t n, int ndim, const uint64_t *s) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %llu" : "%llu", (unsigned long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int map_tensors(loader *ld, const skl_ckpt *ck) {
    const skl_hparams *hp = ld->hp;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const skl_st_tensor *t = ck->tensors[i].t;
        const char *file = ck->tensors[i].path;
        int ndim = 0;
        int64_t shape[2] = {0, 0};
        long s = resolve(hp, t->name, &ndim, shape);
        if (s < 0)
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                            "%s: unexpected tensor '%s' (not part of a %d-layer skipless model)",
                            file, t->name, hp->num_hidden_layers);
        if (s == G_HEAD_W && hp->tie_word_embeddings)
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                            "%s: unexpected tensor 'lm_head.weight': tie_word_embeddings is true",
                            file);
        int ok = t->ndim == ndim;
        for (int k = 0; ok && k < ndim; k++) ok = t->shape[k] == (uint64_t)shape[k];
        if (!ok) {
            char got[128], want[128];
            uint64_t ws[2] = {(uint64_t)shape[0], (uint64_t)shape[1]};
            fmt_shape(got, sizeof got, t->ndim, t->shape);
            fmt_shape(want, sizeof want, ndim, ws);
            return skl_fail(SKL_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s from the config",
                            file, t->name, got, want);
        }
        ld->slots[s] = &ck->tensors[i];
    }
    return SKL_OK;
}

static int check_required(loader *ld) {
    const skl_hparams *hp = ld->hp;
    int64_t d = hp->hidden_size, qd = (int64_t)hp->num_attention_heads * hp->head_dim,
            kvd = (int64_t)hp->num_key_value_heads * hp->head_dim;
    if (!ld->slots[G_EMBED])
        return skl_fail(SKL_ERR_MISSING_TENSOR, "%s: missing tensor 'model.embed_tokens.weight'", ld->file);
    if (!hp->tie_word_embeddings && !ld->slots[G_HEAD_W])
        return skl_fail(SKL_ERR_MISSING_TENSOR,
                        "%s: missing tensor 'lm_head.weight' (tie_word_embeddings is false)", ld->file);
    bool glu0 = ld->slots[slot_index(0, LIN_GATE, 0)] != NULL;
    for (int l = 0; l < hp->num_hidden_layers; l++) {
        for (int lin = 0; lin < LIN_COUNT; lin++) {
            bool w = ld->slots[slot_index(l, lin, 0)] != NULL;
            bool b = ld->slots[slot_index(l, lin, 1)] != NULL;
            if (!w && b)
                return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                                "%s: unexpected tensor 'model.layers.%d.%s.bias': the layer has no weight",
                                ld->file, l, skl_linear_names[lin]);
            if (w) continue;
            int64_t need_in = d, need_out = -1;
            switch (lin) {
            case LIN_Q: need_out = qd; break;
            case LIN_K: case LIN_V: need_out = kvd; break;
            case LIN_O: need_out = d; need_in = qd; break;
            case LIN_GATE:
                if (glu0)
                    return skl_fail(SKL_ERR_MISSING_TENSOR,
                                    "%s: missing tensor 'model.layers.%d.mlp.gate_proj.weight' (layer 0 has a GLU FFN)",
                                    ld->file, l);
                continue;
            default:
                return skl_fail(SKL_ERR_MISSING_TENSOR, "%s: missing tensor 'model.layers.%d.%s.weight'",
                                ld->file, l, skl_linear_names[lin]);
            }
            if (need_in != need_out)
                return skl_fail(SKL_ERR_MISSING_TENSOR,
                                "%s: missing tensor 'model.layers.%d.%s.weight': absent means identity, "
                                "which needs %lld == %lld",
                                ld->file, l, skl_linear_names[lin], (long long)need_out, (long long)need_in);
        }
        if (!glu0 && ld->slots[slot_index(l, LIN_GATE, 0)])
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                            "%s: unexpected tensor 'model.layers.%d.mlp.gate_proj.weight' (layer 0 has no gate)",
                            ld->file, l);
    }
    return SKL_OK;
}

/* ------------------------------------------------------------ tensors */

/* Tensors keep the file's dtype.  Used in place when the mapping is aligned
 * for the dtype, else copied once (same dtype) into aligned memory. */
static int make_tensor(const skl_ckpt_tensor *c, skl_tensor *out) {
    const skl_st_tensor *t = c->t;
    out->rows = t->ndim == 2 ? (int32_t)t->shape[0] : 1;
    out->cols = (int32_t)t->shape[t->ndim - 1];
    out->dtype = t->dtype;
    const uint8_t *src = c->file->data + t->begin;
    size_t bytes = (size_t)(t->end - t->begin);
    if (((uintptr_t)src % skl_dtype_size(t->dtype)) == 0) {
        out->data = src; /* read-only mapping, never written */
        out->owner = skl_buf_retain(c->file->map); /* its own file's mapping */
        return SKL_OK;
    }
    skl_buf *b = skl_buf_new(bytes);
    if (!b) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory for tensor '%s'", c->path, t->name);
    memcpy(b->base, src, bytes);
    out->data = b->base;
    out->owner = b;
    return SKL_OK;
}

/* ------------------------------------------------------------------- load */

#define MODEL_PARAMS_V1 SKL_SIZE_THROUGH(skl_model_params, use_mmap)

int skl_model_params_init(skl_model_params *p, size_t size) {
    skl_model_params d = {.use_mmap = true};
    return skl_params_init(p, size, &d, sizeof d, MODEL_PARAMS_V1, "skl_model_params_init");
}

void skl_model_free(skl_model *m) {
    if (!m) return;
    for (skl_lin_iter it = skl_linears(m, 0, m->layers ? m->hp.num_hidden_layers : 0, true); skl_lin_next(&it);) {
        skl_tensor_clear(&it.l->w);
        skl_tensor_clear(&it.l->b);
    }
    free(m->layers);
    skl_tensor_clear(&m->embed);
    skl_tensor_clear(&m->norm);
    if (m->config) json_decref(m->config);
    skl_tok_release(m->tok);
    free(m->path);
    free(m);
}

int skl_model_load(const char *path, const skl_model_params *params, skl_model **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_load: out is NULL");
    *out = NULL;
    skl_blas_setup(); /* before any BLAS call on this model (blas.c) */
    if (!path) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_load: path is NULL");
    if (strlen(path) > 4000) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_load: path too long");
    skl_model_params p;
    skl_model_params_init(&p, sizeof p);
    int prc = skl_params_read(&p, sizeof p, params, MODEL_PARAMS_V1, "skl_model_load");
    if (prc) return prc;
    params = &p;
    skl_ckpt ck;
    int rc = skl_ckpt_open(path, params->use_mmap, &ck);
    if (rc) return rc;
    json_t *cfg = NULL;
    skl_model *m = NULL;
    loader ld = {ck.st_path, NULL, NULL};
    if ((rc = skl_ckpt_config(&ck, &cfg))) goto done;
    m = calloc(1, sizeof *m);
    if (!m) { rc = skl_fail(SKL_ERR_NOMEM, "out of memory"); goto done; }
    m->config = cfg;
    cfg = NULL;
    if ((rc = skl_config_parse(m->config, ck.config_what, &m->hp)) ||
        (rc = skl_config_eos(m->config, ck.config_what, &m->eos_token_id)) || (rc = skl_ckpt_tokenizer(&ck, &m->tok)))
        goto done;
    skl_hparams *hp = &m->hp;
    ld.hp = hp;
    size_t nslots = G_COUNT + (size_t)hp->num_hidden_layers * LAYER_SLOTS;
    ld.slots = calloc(nslots, sizeof *ld.slots);
    m->layers = calloc((size_t)hp->num_hidden_layers, sizeof *m->layers);
    m->path = strdup(path);
    skl_ckpt_source(&ck, path, &m->source);
    if (!ld.slots || !m->layers || !m->path) { rc = skl_fail(SKL_ERR_NOMEM, "out of memory"); goto done; }
    if ((rc = map_tensors(&ld, &ck)) || (rc = check_required(&ld))) goto done;

    /* Convert: progress in bytes of the files' data areas. */
    uint64_t done_bytes = 0;
    for (size_t s = 0; s < nslots; s++) {
        const skl_ckpt_tensor *t = ld.slots[s];
        if (!t) continue;
        skl_tensor *dst;
        if (s == G_EMBED) dst = &m->embed;
        else if (s == G_HEAD_W) dst = &m->head.w;
        else if (s == G_HEAD_B) dst = &m->head.b;
        else if (s == G_NORM) dst = &m->norm;
        else {
            size_t r = s - G_COUNT;
            skl_linear *lin = skl_layer_linear(&m->layers[r / LAYER_SLOTS], (int)((r % LAYER_SLOTS) / 2));
            dst = (r % 2) ? &lin->b : &lin->w;
        }
        if ((rc = make_tensor(t, dst))) goto done;
        done_bytes += t->t->end - t->t->begin;
        if (params->progress && params->progress(done_bytes, ck.data_size, params->progress_user_data)) {
            rc = skl_fail(SKL_ERR_CANCELLED, "%s: loading cancelled by the progress callback", path);
            goto done;
        }
    }
    if (hp->tie_word_embeddings) {
        m->head.w = m->embed;
        skl_buf_retain(m->embed.owner);
    }
    hp->glu = m->layers[0].gate.w.data != NULL;
    hp->final_norm = m->norm.data != NULL;
    skl_log(SKL_LOG_INFO, "loaded %s: %d layers, d %d, %d/%d heads, f %d, vocab %d, %s blocks", path,
            hp->num_hidden_layers, hp->hidden_size, hp->num_attention_heads,
            hp->num_key_value_heads, hp->intermediate_size, hp->vocab_size,
            hp->block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial");
done:
    free(ld.slots);
    if (cfg) json_decref(cfg);
    skl_ckpt_close(&ck); /* tensors that point into the mapping hold their own reference */
    if (rc) {
        skl_model_free(m);
        return rc;
    }
    *out = m;
    return SKL_OK;
}

/* ------------------------------------------------------------------ clone */

static void share(skl_tensor *dst, const skl_tensor *src) {
    *dst = *src;
    skl_buf_retain(dst->owner);
}

int skl_model_clone(const skl_model *src, skl_model **out) {
    *out = NULL;
    skl_model *m = calloc(1, sizeof *m);
    if (!m) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    m->hp = src->hp;
    m->layers = calloc((size_t)src->hp.num_hidden_layers, sizeof *m->layers);
    m->config = json_deep_copy(src->config);
    m->path = strdup(src->path ? src->path : "");
    m->tok = skl_tok_retain(src->tok);
    m->eos_token_id = src->eos_token_id;
    m->source = src->source;
    if (!m->layers || !m->config || !m->path) {
        skl_model_free(m);
        return skl_fail(SKL_ERR_NOMEM, "out of memory");
    }
    for (skl_lin_iter it = skl_linears_all(src); skl_lin_next(&it);) {
        skl_linear *d = skl_model_linear(m, it.layer, it.lin);
        share(&d->w, &it.l->w);
        share(&d->b, &it.l->b);
    }
    share(&m->embed, &src->embed);
    share(&m->norm, &src->norm);
    *out = m;
    return SKL_OK;
}
