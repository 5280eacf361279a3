/* model.c - load a model: config + tensors by name (located by checkpoint.c) -> validated tensors.
 *
 * Every tensor name is resolved to a slot of the model (embedding, head, final
 * norm, or one part of one linear layer: weight, bias, and for a layer the
 * config's quantization_config quantizes (quant_config.c) weight_scale and,
 * packed, weight_shape); a name that resolves to nothing is an unexpected
 * tensor.  Dtypes and shapes are checked against the config, required
 * tensors against what is present, and only then is anything converted.
 * Every tensor keeps its file dtype (F32, F16 or BF16; a quantized weight its
 * int8 or packed int32 data as Q8_0 / Q4_0) in memory: used in place from the
 * mapping when aligned for its dtype, else copied once.  Scales become F16:
 * in place when they are, else converted; every one is checked. */
#include "model.h"
#include "abi.h"

#include "blas.h"
#include "checkpoint.h"
#include "config.h"
#include "quant_config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void skl_tensor_clear(skl_tensor *t) {
    skl_buf_release(t->owner);
    skl_buf_release(t->scale_owner);
    memset(t, 0, sizeof *t);
}

void skl_tensor_share(skl_tensor *dst, const skl_tensor *src) {
    *dst = *src;
    skl_buf_retain(dst->owner);
    skl_buf_retain(dst->scale_owner);
}

/* -------------------------------------------------------------------- slots */

enum { LIN_Q = SKL_LIN_Q, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };
const char *const skl_linear_names[SKL_LIN_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

/* The parts of a module a tensor name's suffix names; a linear layer
 * (lid = layer * 7 + lin, lm_head last) has a slot for each but P_PACKED,
 * which shares the weight's slot. */
enum { P_WEIGHT, P_BIAS, P_SCALE, P_SHAPE, P_PACKED, P_COUNT };
static const char *const part_suffix[P_COUNT] = {".weight", ".bias", ".weight_scale", ".weight_shape",
                                                 ".weight_packed"};
#define LIN_SLOTS 4 /* P_WEIGHT (or P_PACKED), P_BIAS, P_SCALE, P_SHAPE */
enum { G_EMBED, G_NORM, G_COUNT };
enum { K_EMBED, K_NORM, K_LINEAR };

typedef struct loader {
    const char *file;        /* the safetensors file or the shard index, for messages */
    const skl_hparams *hp;
    const skl_ckpt_tensor **slots; /* [G_COUNT + (7 L + 1) * LIN_SLOTS] */
    int *qtype;              /* [7 L + 1]: SKL_DT_Q8_0 / Q4_0 as the quantization_config says, or -1 */
} loader;

static int32_t n_lids(const skl_hparams *hp) { return hp->num_hidden_layers * LIN_COUNT + 1; }
static int32_t head_lid(const skl_hparams *hp) { return hp->num_hidden_layers * LIN_COUNT; }
static size_t slot_of(int32_t lid, int part) {
    return G_COUNT + (size_t)lid * LIN_SLOTS + (size_t)(part == P_PACKED ? P_WEIGHT : part);
}
static const skl_ckpt_tensor *lin_slot(const loader *ld, int32_t layer, int lin, int part) {
    return ld->slots[slot_of(layer * LIN_COUNT + lin, part)];
}

skl_linear *skl_layer_linear(skl_layer *l, int lin) {
    skl_linear *t[LIN_COUNT] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
    return t[lin];
}

skl_linear *skl_model_linear(const skl_model *m, int32_t layer, int lin) {
    skl_model *w = (skl_model *)m; /* written only by the model's owner, see model.h */
    return lin == SKL_LIN_HEAD ? &w->head : skl_layer_linear(&w->layers[layer], lin);
}

void skl_linear_module(int32_t layer, int lin, char *buf, size_t n) {
    if (lin == SKL_LIN_HEAD) snprintf(buf, n, "lm_head");
    else snprintf(buf, n, "model.layers.%d.%s", layer, skl_linear_names[lin]);
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
    case SKL_LIN_HEAD: *out = hp->vocab_size; *in = d; break;
    default: *out = d; *in = f; break;
    }
}

/* The part a name ends with after `stem` (-1: none). */
static int part_after(const char *name, const char *stem) {
    size_t n = strlen(stem);
    if (strncmp(name, stem, n) != 0) return -1;
    for (int p = 0; p < P_COUNT; p++)
        if (!strcmp(name + n, part_suffix[p])) return p;
    return -1;
}

/* Resolve a tensor name to a module (K_EMBED, K_NORM, or K_LINEAR with *lid)
 * and a part; -1 if unknown. */
static int resolve(const skl_hparams *hp, const char *name, int32_t *lid, int *part) {
    if ((*part = part_after(name, "model.embed_tokens")) >= 0) return K_EMBED;
    if ((*part = part_after(name, "model.norm")) >= 0) return K_NORM;
    if ((*part = part_after(name, "lm_head")) >= 0) {
        *lid = head_lid(hp);
        return K_LINEAR;
    }
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
    for (int lin = 0; lin < LIN_COUNT; lin++)
        if ((*part = part_after(p, skl_linear_names[lin])) >= 0) {
            *lid = (int32_t)layer * LIN_COUNT + lin;
            return K_LINEAR;
        }
    return -1;
}

static void fmt_shape(char *buf, size_t n, int ndim, const uint64_t *s) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %llu" : "%llu", (unsigned long long)s[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static bool float_dtype(int dt) { return dt == SKL_DT_F32 || dt == SKL_DT_F16 || dt == SKL_DT_BF16; }

/* Tensor t must have dtype `want` (-1: a float dtype) and shape [s0] (s1 < 0) or [s0, s1]; otherwise status
 * (dtype_status for the dtype), naming the file, the tensor, expected and actual. */
static int check_tensor(const char *file, const skl_st_tensor *t, int want, int dtype_status, int64_t s0, int64_t s1,
                        int status, const char *why) {
    if (want < 0 ? !float_dtype(t->dtype) : t->dtype != want)
        return skl_fail(dtype_status, "%s: tensor '%s' has dtype %s, expected %s%s", file, t->name,
                        skl_dtype_str(t->dtype), want < 0 ? "F32, F16 or BF16" : skl_dtype_str(want), why);
    int ndim = s1 < 0 ? 1 : 2, ok = t->ndim == ndim && t->shape[0] == (uint64_t)s0;
    if (ok && ndim == 2) ok = t->shape[1] == (uint64_t)s1;
    if (!ok) {
        char got[128], want_s[128];
        uint64_t ws[2] = {(uint64_t)s0, (uint64_t)s1};
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        fmt_shape(want_s, sizeof want_s, ndim, ws);
        return skl_fail(status, "%s: tensor '%s' has shape %s, expected %s%s", file, t->name, got, want_s, why);
    }
    return SKL_OK;
}

/* A quantized part of module lid, whose quantization_config type is qt. */
static int check_quant_part(const loader *ld, const skl_st_tensor *t, int qt, int part, int64_t out, int64_t in) {
    const char *file = ld->file;
    if (in % SKL_DT_QGROUP != 0)
        return skl_fail(SKL_ERR_QUANT_GROUP,
                        "%s: tensor '%s': the input size %lld is not a multiple of the group size %d, so the layer "
                        "cannot be quantized",
                        file, t->name, (long long)in, SKL_DT_QGROUP);
    switch (part) {
    case P_SCALE:
        if (!float_dtype(t->dtype))
            return skl_fail(SKL_ERR_QUANT_SCALE, "%s: tensor '%s' has dtype %s, expected F16, BF16 or F32", file, t->name,
                            skl_dtype_str(t->dtype));
        return check_tensor(file, t, t->dtype, SKL_ERR_QUANT_SCALE, out, in / SKL_DT_QGROUP, SKL_ERR_QUANT_SCALE,
                            " (one scale per 32 inputs of a row)");
    case P_WEIGHT:
        if (qt == SKL_DT_Q4_0)
            return skl_fail(SKL_ERR_QUANT_WEIGHT,
                            "%s: tensor '%s': the quantization_config stores this layer pack-quantized, as weight_packed "
                            "and weight_shape",
                            file, t->name);
        return check_tensor(file, t, SKL_DT_I8, SKL_ERR_QUANT_WEIGHT, out, in, SKL_ERR_QUANT_WEIGHT,
                            " (int-quantized: one int8 a weight)");
    case P_PACKED:
        if (qt != SKL_DT_Q4_0)
            return skl_fail(SKL_ERR_QUANT_WEIGHT,
                            "%s: tensor '%s': the quantization_config stores this layer int-quantized (an int8 "
                            "'weight'), not packed",
                            file, t->name);
        return check_tensor(file, t, SKL_DT_I32, SKL_ERR_QUANT_WEIGHT, out, in / 8, SKL_ERR_QUANT_WEIGHT,
                            " (pack-quantized: eight 4-bit weights an int32)");
    default: /* P_SHAPE */
        if (qt != SKL_DT_Q4_0)
            return skl_fail(SKL_ERR_QUANT_WEIGHT,
                            "%s: tensor '%s': weight_shape belongs to a pack-quantized layer, and the "
                            "quantization_config stores this one int-quantized",
                            file, t->name);
        return check_tensor(file, t, SKL_DT_I64, SKL_ERR_QUANT_WEIGHT, 2, -1, SKL_ERR_QUANT_WEIGHT,
                            " (the weight's [out, in])");
    }
}

/* Every tensor to its slot, its dtype and shape checked against the config and its quantization_config. */
static int map_tensors(loader *ld, const skl_ckpt *ck) {
    const skl_hparams *hp = ld->hp;
    for (size_t i = 0; i < ck->n_tensors; i++) {
        const skl_st_tensor *t = ck->tensors[i].t;
        const char *file = ck->tensors[i].path;
        int32_t lid = 0;
        int part = 0, kind = resolve(hp, t->name, &lid, &part), rc;
        if (kind < 0)
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                            "%s: unexpected tensor '%s' (not part of a %d-layer skipless model)",
                            file, t->name, hp->num_hidden_layers);
        int64_t d = hp->hidden_size, out = 0, in = 0;
        size_t slot;
        if (kind != K_LINEAR) {
            const char *what = kind == K_EMBED ? "the embedding" : "the final norm";
            if (part == P_SCALE)
                return skl_fail(SKL_ERR_QUANT_SCALE, "%s: tensor '%s': %s is never quantized", file, t->name, what);
            if (part != P_WEIGHT)
                return skl_fail(part == P_BIAS ? SKL_ERR_UNEXPECTED_TENSOR : SKL_ERR_QUANT_WEIGHT,
                                "%s: tensor '%s': %s has %s", file, t->name, what,
                                part == P_BIAS ? "no bias" : "no quantized parts (it is never quantized)");
            rc = kind == K_EMBED ? check_tensor(file, t, -1, SKL_ERR_DTYPE, hp->vocab_size, d, SKL_ERR_SHAPE, " from the config")
                                 : check_tensor(file, t, -1, SKL_ERR_DTYPE, d, -1, SKL_ERR_SHAPE, " from the config");
            if (rc) return rc;
            ld->slots[kind == K_EMBED ? G_EMBED : G_NORM] = &ck->tensors[i];
            continue;
        }
        bool head = lid == head_lid(hp);
        if (head && hp->tie_word_embeddings && part != P_BIAS)
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR, "%s: unexpected tensor '%s': tie_word_embeddings is true", file,
                            t->name);
        lin_shape(hp, head ? SKL_LIN_HEAD : lid % LIN_COUNT, &out, &in);
        int qt = ld->qtype[lid];
        if (part == P_BIAS)
            rc = check_tensor(file, t, -1, SKL_ERR_DTYPE, out, -1, SKL_ERR_SHAPE, " from the config");
        else if (qt >= 0)
            rc = check_quant_part(ld, t, qt, part, out, in);
        else if (part == P_SCALE)
            rc = skl_fail(SKL_ERR_QUANT_SCALE,
                          "%s: tensor '%s': a scale for a layer that no quantization_config quantizes", file, t->name);
        else if (part != P_WEIGHT)
            rc = skl_fail(SKL_ERR_QUANT_WEIGHT,
                          "%s: tensor '%s': a quantized part of a layer that no quantization_config quantizes", file,
                          t->name);
        else
            rc = check_tensor(file, t, -1, SKL_ERR_DTYPE, out, in, SKL_ERR_SHAPE,
                              float_dtype(t->dtype) ? " from the config"
                                                    : " (integer dtypes hold the weights of layers the "
                                                      "quantization_config quantizes)");
        if (rc) return rc;
        slot = slot_of(lid, part);
        ld->slots[slot] = &ck->tensors[i];
    }
    return SKL_OK;
}

/* The parts of a quantized layer (lid, named `name`) are all there or all absent. */
static int check_quant_parts(const loader *ld, int32_t lid, const char *name) {
    if (ld->qtype[lid] < 0) return SKL_OK;
    bool w = ld->slots[slot_of(lid, P_WEIGHT)], s = ld->slots[slot_of(lid, P_SCALE)],
         z = ld->slots[slot_of(lid, P_SHAPE)], packed = ld->qtype[lid] == SKL_DT_Q4_0;
    if (w && !s)
        return skl_fail(SKL_ERR_QUANT_SCALE, "%s: missing tensor '%s.weight_scale' (the quantization_config quantizes %s)",
                        ld->file, name, name);
    if (w && packed && !z)
        return skl_fail(SKL_ERR_QUANT_WEIGHT, "%s: missing tensor '%s.weight_shape' (%s is pack-quantized)", ld->file,
                        name, name);
    if (!w && s)
        return skl_fail(SKL_ERR_QUANT_SCALE, "%s: unexpected tensor '%s.weight_scale': the layer has no weight", ld->file,
                        name);
    if (!w && z)
        return skl_fail(SKL_ERR_QUANT_WEIGHT, "%s: unexpected tensor '%s.weight_shape': the layer has no weight",
                        ld->file, name);
    return SKL_OK;
}

static int check_required(loader *ld) {
    const skl_hparams *hp = ld->hp;
    int64_t d = hp->hidden_size, qd = (int64_t)hp->num_attention_heads * hp->head_dim,
            kvd = (int64_t)hp->num_key_value_heads * hp->head_dim;
    const char *weight = "";
    if (!ld->slots[G_EMBED])
        return skl_fail(SKL_ERR_MISSING_TENSOR, "%s: missing tensor 'model.embed_tokens.weight'", ld->file);
    if (!hp->tie_word_embeddings && !ld->slots[slot_of(head_lid(hp), P_WEIGHT)])
        return skl_fail(SKL_ERR_MISSING_TENSOR,
                        "%s: missing tensor 'lm_head.weight%s' (tie_word_embeddings is false)", ld->file,
                        ld->qtype[head_lid(hp)] == SKL_DT_Q4_0 ? "_packed" : "");
    bool glu0 = lin_slot(ld, 0, LIN_GATE, P_WEIGHT) != NULL;
    for (int l = 0; l < hp->num_hidden_layers; l++) {
        for (int lin = 0; lin < LIN_COUNT; lin++) {
            bool w = lin_slot(ld, l, lin, P_WEIGHT) != NULL, b = lin_slot(ld, l, lin, P_BIAS) != NULL;
            char name[96];
            skl_linear_module(l, lin, name, sizeof name);
            weight = ld->qtype[l * LIN_COUNT + lin] == SKL_DT_Q4_0 ? "weight_packed" : "weight";
            if (!w && b)
                return skl_fail(SKL_ERR_UNEXPECTED_TENSOR, "%s: unexpected tensor '%s.bias': the layer has no weight",
                                ld->file, name);
            int rc = check_quant_parts(ld, l * LIN_COUNT + lin, name);
            if (rc) return rc;
            if (w) continue;
            int64_t need_in = d, need_out = -1;
            switch (lin) {
            case LIN_Q: need_out = qd; break;
            case LIN_K: case LIN_V: need_out = kvd; break;
            case LIN_O: need_out = d; need_in = qd; break;
            case LIN_GATE:
                if (glu0)
                    return skl_fail(SKL_ERR_MISSING_TENSOR, "%s: missing tensor '%s.%s' (layer 0 has a GLU FFN)",
                                    ld->file, name, weight);
                continue;
            default:
                return skl_fail(SKL_ERR_MISSING_TENSOR, "%s: missing tensor '%s.%s'", ld->file, name, weight);
            }
            if (need_in != need_out)
                return skl_fail(SKL_ERR_MISSING_TENSOR,
                                "%s: missing tensor '%s.%s': absent means identity, which needs %lld == %lld", ld->file,
                                name, weight, (long long)need_out, (long long)need_in);
        }
        if (!glu0 && lin_slot(ld, l, LIN_GATE, P_WEIGHT))
            return skl_fail(SKL_ERR_UNEXPECTED_TENSOR,
                            "%s: unexpected tensor 'model.layers.%d.mlp.gate_proj.%s' (layer 0 has no gate)", ld->file,
                            l, ld->qtype[l * LIN_COUNT + LIN_GATE] == SKL_DT_Q4_0 ? "weight_packed" : "weight");
    }
    return check_quant_parts(ld, head_lid(hp), "lm_head");
}

/* What the quantization_config says of every linear layer (and that it leaves the embedding alone). */
static int quant_types(loader *ld, const json_t *cfg, const char *what) {
    skl_qcfg *qc = NULL;
    int rc = skl_qcfg_parse(cfg, what, &qc);
    if (rc) return rc;
    for (int32_t lid = 0; lid < n_lids(ld->hp); lid++) {
        char name[96];
        int32_t layer = lid / LIN_COUNT;
        skl_linear_module(layer, lid == head_lid(ld->hp) ? SKL_LIN_HEAD : lid % LIN_COUNT, name, sizeof name);
        ld->qtype[lid] = skl_qcfg_type(qc, name, true);
    }
    if (skl_qcfg_type(qc, "model.embed_tokens", false) >= 0)
        rc = skl_fail(SKL_ERR_QUANT_CONFIG,
                      "%s: quantization_config quantizes model.embed_tokens; the embedding is never quantized", what);
    skl_qcfg_free(qc);
    return rc;
}

/* ------------------------------------------------------------ tensors */

/* Tensors keep the file's dtype.  Used in place when the mapping is aligned
 * for the dtype, else copied once (same dtype) into aligned memory. */
static int make_tensor(const skl_ckpt_tensor *c, int dtype, skl_tensor *out) {
    const skl_st_tensor *t = c->t;
    const uint8_t *src = c->file->data + t->begin;
    size_t bytes = (size_t)(t->end - t->begin);
    out->dtype = dtype;
    if (((uintptr_t)src % skl_dtype_align(dtype)) == 0) {
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

/* Group g (flat index: row-major over [rows, cols / 32]) of q holds only zeros. */
static bool zero_group(const skl_tensor *q, size_t g) {
    for (size_t i = g * SKL_DT_QGROUP; i < (g + 1) * SKL_DT_QGROUP; i++)
        if (skl_q_at(q->dtype, q->data, i) != 0) return false;
    return true;
}

/* q's scales from c (F16, BF16 or F32): F16 used in place when aligned, the
 * others rounded to F16 (nearest even) into a buffer of their own.  Each must
 * be finite, a nonzero one must stay nonzero, and a zero one belongs to a
 * group of zeros. */
static int make_scales(const skl_ckpt_tensor *c, skl_tensor *q) {
    const skl_st_tensor *t = c->t;
    const uint8_t *src = c->file->data + t->begin;
    size_t n = (size_t)q->rows * (size_t)q->cols / SKL_DT_QGROUP, esz = skl_dtype_size(t->dtype);
    uint16_t *own = NULL;
    if (t->dtype == SKL_DT_F16 && (uintptr_t)src % 2 == 0) {
        q->scale = (const uint16_t *)(const void *)src;
        q->scale_owner = skl_buf_retain(c->file->map);
    } else {
        skl_buf *b = skl_buf_new((n ? n : 1) * 2);
        if (!b) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory for tensor '%s'", c->path, t->name);
        own = b->base;
        q->scale = own;
        q->scale_owner = b;
    }
    for (size_t i = 0; i < n; i++) {
        float v;
        uint16_t h = 0;
        if (t->dtype == SKL_DT_F32) memcpy(&v, src + 4 * i, 4);
        else {
            memcpy(&h, src + esz * i, 2);
            v = t->dtype == SKL_DT_F16 ? skl_f16_to_f32(h) : skl_bf16_to_f32(h);
        }
        h = own ? skl_f32_to_f16(v) : h;
        if (own) own[i] = h;
        size_t r = i / ((size_t)q->cols / SKL_DT_QGROUP), g = i % ((size_t)q->cols / SKL_DT_QGROUP);
        if (!isfinite(v) || (h & 0x7c00) == 0x7c00 || (v != 0.0f && (h & 0x7fff) == 0))
            return skl_fail(SKL_ERR_QUANT_SCALE, "%s: tensor '%s': scale [%zu, %zu] is %g, %s", c->path, t->name, r, g,
                            (double)v, isfinite(v) ? "not representable in F16 (the scales' storage)" : "not finite");
        if (v == 0.0f && !zero_group(q, i))
            return skl_fail(SKL_ERR_QUANT_SCALE,
                            "%s: tensor '%s': scale [%zu, %zu] is 0 but its group of 32 weights is not all zero", c->path,
                            t->name, r, g);
    }
    return SKL_OK;
}

/* The weight_shape of a pack-quantized layer must be the [out, in] the config gives. */
static int check_weight_shape(const skl_ckpt_tensor *c, int64_t out, int64_t in) {
    int64_t v[2];
    memcpy(v, c->file->data + c->t->begin, sizeof v); /* little-endian, as the file */
    if (v[0] != out || v[1] != in)
        return skl_fail(SKL_ERR_QUANT_WEIGHT, "%s: tensor '%s' holds [%lld, %lld], expected [%lld, %lld] from the config",
                        c->path, c->t->name, (long long)v[0], (long long)v[1], (long long)out, (long long)in);
    return SKL_OK;
}

/* Slot s of the loader becomes its tensor in m. */
static int make_slot(const loader *ld, size_t s, skl_model *m) {
    const skl_ckpt_tensor *c = ld->slots[s];
    const skl_st_tensor *t = c->t;
    if (s == G_EMBED || s == G_NORM) {
        skl_tensor *dst = s == G_EMBED ? &m->embed : &m->norm;
        dst->rows = t->ndim == 2 ? (int32_t)t->shape[0] : 1;
        dst->cols = (int32_t)t->shape[t->ndim - 1];
        return make_tensor(c, t->dtype, dst);
    }
    int32_t lid = (int32_t)((s - G_COUNT) / LIN_SLOTS);
    int part = (int)((s - G_COUNT) % LIN_SLOTS);
    bool head = lid == head_lid(ld->hp);
    skl_linear *L = skl_model_linear(m, lid / LIN_COUNT, head ? SKL_LIN_HEAD : lid % LIN_COUNT);
    int64_t out, in;
    lin_shape(ld->hp, head ? SKL_LIN_HEAD : lid % LIN_COUNT, &out, &in);
    int qt = ld->qtype[lid];
    if (part == P_BIAS) {
        L->b.rows = 1;
        L->b.cols = (int32_t)out;
        return make_tensor(c, t->dtype, &L->b);
    }
    if (part == P_SCALE) return SKL_OK; /* with the weight */
    if (part == P_SHAPE) return check_weight_shape(c, out, in);
    L->w.rows = (int32_t)out;
    L->w.cols = (int32_t)in;
    int rc = make_tensor(c, qt >= 0 ? qt : t->dtype, &L->w);
    if (!rc && qt >= 0) rc = make_scales(ld->slots[slot_of(lid, P_SCALE)], &L->w);
    return rc;
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
    loader ld = {ck.st_path, NULL, NULL, NULL};
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
    size_t nslots = G_COUNT + (size_t)n_lids(hp) * LIN_SLOTS;
    ld.slots = calloc(nslots, sizeof *ld.slots);
    ld.qtype = calloc((size_t)n_lids(hp), sizeof *ld.qtype);
    m->layers = calloc((size_t)hp->num_hidden_layers, sizeof *m->layers);
    m->path = strdup(path);
    skl_ckpt_source(&ck, path, &m->source);
    if (!ld.slots || !ld.qtype || !m->layers || !m->path) { rc = skl_fail(SKL_ERR_NOMEM, "out of memory"); goto done; }
    if ((rc = quant_types(&ld, m->config, ck.config_what)) || (rc = map_tensors(&ld, &ck)) ||
        (rc = check_required(&ld)))
        goto done;

    /* Convert: progress in bytes of the files' data areas. */
    uint64_t done_bytes = 0;
    for (size_t s = 0; s < nslots; s++) {
        const skl_ckpt_tensor *t = ld.slots[s];
        if (!t) continue;
        if ((rc = make_slot(&ld, s, m))) goto done;
        done_bytes += t->t->end - t->t->begin;
        if (params->progress && params->progress(done_bytes, ck.data_size, params->progress_user_data)) {
            rc = skl_fail(SKL_ERR_CANCELLED, "%s: loading cancelled by the progress callback", path);
            goto done;
        }
    }
    if (hp->tie_word_embeddings) skl_tensor_share(&m->head.w, &m->embed);
    hp->glu = m->layers[0].gate.w.data != NULL;
    hp->final_norm = m->norm.data != NULL;
    skl_log(SKL_LOG_INFO, "loaded %s: %d layers, d %d, %d/%d heads, f %d, vocab %d, %s blocks", path,
            hp->num_hidden_layers, hp->hidden_size, hp->num_attention_heads,
            hp->num_key_value_heads, hp->intermediate_size, hp->vocab_size,
            hp->block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial");
done:
    free(ld.slots);
    free(ld.qtype);
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
        skl_tensor_share(&d->w, &it.l->w);
        skl_tensor_share(&d->b, &it.l->b);
    }
    skl_tensor_share(&m->embed, &src->embed);
    skl_tensor_share(&m->norm, &src->norm);
    *out = m;
    return SKL_OK;
}
