/* quant_config.c - config.json's "quantization_config" as compressed-tensors
 * (the format vLLM and Hugging Face transformers read) writes it, for the two
 * layouts libskipless holds (docs/model-format.md, "Quantized weights"):
 *
 *   "int-quantized":  X.weight int8 [out, in]                       -> Q8_0
 *   "pack-quantized": X.weight_packed int32 [out, in / 8] (4 bits),
 *                     X.weight_shape int64 [2]                      -> Q4_0
 *   both with X.weight_scale [out, in / 32]: symmetric, strategy "group",
 *   group_size 32, no zero points; "mixed-precision" names the format of
 *   each config group instead.
 *
 * A module is quantized when a config group's target matches it (its exact
 * name, "re:" and a regular expression matched from the name's start as
 * Python's re.match does, or the class "Linear") and no "ignore" entry does
 * (name or "re:"); exact names win over expressions, expressions over the
 * class, as in vLLM.  Everything else the config may say is refused with a
 * message naming the key: another quant_method or format, activation or KV
 * cache quantization, zero points, reordering, sparsity. */
#include "quant_config.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FMT_INT "int-quantized"
#define FMT_PACK "pack-quantized"
#define FMT_MIXED "mixed-precision"

typedef struct target {
    char *name;       /* an exact module name, or NULL */
    pcre2_code *re;   /* a "re:" expression, or NULL */
    bool linear;      /* the class "Linear" */
} target;

typedef struct group {
    int type;         /* SKL_DT_Q8_0 or SKL_DT_Q4_0 */
    target *t;
    size_t n;
} group;

struct skl_qcfg {
    group *g;
    size_t n_groups;
    target *ig;       /* the entries of "ignore" */
    size_t n_ig;
};

static void targets_free(target *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        if (t[i].re) pcre2_code_free(t[i].re);
    }
    free(t);
}

void skl_qcfg_free(skl_qcfg *q) {
    if (!q) return;
    for (size_t i = 0; i < q->n_groups; i++) targets_free(q->g[i].t, q->g[i].n);
    free(q->g);
    targets_free(q->ig, q->n_ig);
    free(q);
}

/* One entry of "targets" or "ignore" (key names it in messages). */
static int parse_target(const json_t *j, const char *what, const char *key, bool classes, target *t) {
    if (!json_is_string(j) || json_string_length(j) == 0)
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%s holds a value that is not a non-empty string",
                        what, key);
    const char *s = json_string_value(j);
    if (!strncmp(s, "re:", 3)) {
        int err;
        PCRE2_SIZE off;
        t->re = pcre2_compile((PCRE2_SPTR)(s + 3), PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
        if (!t->re) {
            PCRE2_UCHAR buf[256];
            pcre2_get_error_message(err, buf, sizeof buf);
            return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%s: \"%s\" is not a regular expression (%s at %zu)",
                            what, key, s, (const char *)buf, (size_t)off);
        }
        return SKL_OK;
    }
    if (classes && !strcmp(s, "Linear")) {
        t->linear = true;
        return SKL_OK;
    }
    /* A module name: dotted identifiers.  Any other class name (a capitalised
     * word without dots, "Embedding", "LlamaDecoderLayer") is a module type
     * libskipless does not quantize. */
    if (classes && !strchr(s, '.') && s[0] >= 'A' && s[0] <= 'Z')
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.%s: target \"%s\" is a module class; only \"Linear\" is quantized", what,
                        key, s);
    if (!(t->name = strdup(s))) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    return SKL_OK;
}

static int parse_targets(const json_t *list, const char *what, const char *key, bool classes, bool empty_ok,
                         target **out, size_t *n) {
    *out = NULL;
    *n = 0;
    if (!list || json_is_null(list)) {
        if (empty_ok) return SKL_OK;
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%s is missing", what, key);
    }
    if (!json_is_array(list) || (!empty_ok && json_array_size(list) == 0))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%s must be a %slist of strings", what, key,
                        empty_ok ? "" : "non-empty ");
    size_t k = json_array_size(list);
    if (k && !(*out = calloc(k, sizeof **out))) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < k; i++) {
        int rc = parse_target(json_array_get(list, i), what, key, classes, &(*out)[i]);
        *n = i + 1; /* freed by the caller either way */
        if (rc) return rc;
    }
    return SKL_OK;
}

/* A key that must be absent, null or `allowed` (a JSON value compared with json_equal; NULL: none). */
static int must_be_null(const json_t *obj, const char *key, const json_t *allowed, const char *what, const char *path,
                        const char *why) {
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v) || (allowed && json_equal(v, allowed))) return SKL_OK;
    return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%s%s is set: %s", what, path, key, why);
}

/* The "weights" of a config group: symmetric int, group of 32; *type from num_bits and the format. */
static int parse_weights(const json_t *w, const char *what, const char *gname, const char *format, int *type) {
    char p[320];
    snprintf(p, sizeof p, "config_groups.%s.weights.", gname);
    if (!json_is_object(w))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.config_groups.%s.weights is %s, expected an object",
                        what, gname, w ? "not an object" : "missing");
    const json_t *bits = json_object_get(w, "num_bits"), *ty = json_object_get(w, "type"),
                 *sym = json_object_get(w, "symmetric"), *st = json_object_get(w, "strategy"),
                 *gs = json_object_get(w, "group_size"), *dyn = json_object_get(w, "dynamic"),
                 *ao = json_object_get(w, "actorder");
    json_int_t nb = json_is_integer(bits) ? json_integer_value(bits) : -1;
    if (!json_is_integer(bits) || (nb != 4 && nb != 8))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%snum_bits must be 4 or 8", what, p);
    if (ty && !json_is_null(ty) && !(json_is_string(ty) && !strcmp(json_string_value(ty), "int")))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%stype must be \"int\" (float weights are not supported)",
                        what, p);
    if (sym && !json_is_null(sym) && !json_is_true(sym))
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.%ssymmetric must be true (zero points are not supported)", what, p);
    if (dyn && !json_is_null(dyn) && !json_is_false(dyn))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%sdynamic must be false", what, p);
    /* actorder "weight" ("static") only changes how a calibration ran; "group" needs weight_g_idx */
    if (ao && !json_is_null(ao) && !json_is_false(ao) &&
        !(json_is_string(ao) && (!strcmp(json_string_value(ao), "weight") || !strcmp(json_string_value(ao), "static"))))
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.%sactorder reorders columns (weight_g_idx), which is not supported", what, p);
    int rc = must_be_null(w, "block_structure", NULL, what, p, "block quantization is not supported");
    if (rc) return rc;
    if (gs && !json_is_null(gs) && !json_is_integer(gs))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%sgroup_size must be an integer", what, p);
    if (st && !json_is_null(st) && !json_is_string(st))
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.%sstrategy must be a string", what, p);
    /* compressed-tensors infers an absent strategy from group_size: > 0 group, -1 channel, none tensor */
    json_int_t g = gs && json_is_integer(gs) ? json_integer_value(gs) : 0;
    const char *strategy = st && json_is_string(st) ? json_string_value(st)
                           : g > 0                  ? "group"
                           : g == -1                ? "channel"
                                                    : "tensor";
    if (strcmp(strategy, "group") != 0)
        return skl_fail(SKL_ERR_QUANT_GROUP,
                        "%s: quantization_config.%sstrategy is \"%s\"; only \"group\" with group_size %d is supported", what,
                        p, strategy, SKL_DT_QGROUP);
    if (!gs || json_is_null(gs))
        return skl_fail(SKL_ERR_QUANT_GROUP, "%s: quantization_config.%sgroup_size is missing, expected %d", what, p,
                        SKL_DT_QGROUP);
    if (g != SKL_DT_QGROUP)
        return skl_fail(SKL_ERR_QUANT_GROUP, "%s: quantization_config.%sgroup_size is %lld, expected %d", what, p,
                        (long long)g, SKL_DT_QGROUP);
    if (!strcmp(format, FMT_INT)) *type = SKL_DT_Q8_0; /* int8 storage holds 4-bit values as well */
    else if (nb == 4) *type = SKL_DT_Q4_0;
    else
        return skl_fail(SKL_ERR_UNSUPPORTED,
                        "%s: quantization_config.config_groups.%s: 8-bit \"pack-quantized\" weights are not supported "
                        "(libskipless reads 8-bit weights as \"int-quantized\")",
                        what, gname);
    return SKL_OK;
}

static int parse_group(const json_t *gj, const char *what, const char *gname, const char *top_format, group *g) {
    char key[320];
    if (!json_is_object(gj))
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.config_groups.%s is not an object (a scheme with targets and weights)",
                        what, gname);
    const json_t *fj = json_object_get(gj, "format");
    const char *format = top_format;
    if (fj && !json_is_null(fj)) {
        if (!json_is_string(fj) ||
            (strcmp(json_string_value(fj), FMT_INT) != 0 && strcmp(json_string_value(fj), FMT_PACK) != 0) ||
            (strcmp(top_format, FMT_MIXED) != 0 && strcmp(json_string_value(fj), top_format) != 0))
            return skl_fail(SKL_ERR_QUANT_CONFIG,
                            "%s: quantization_config.config_groups.%s.format must be \"%s\" or \"%s\"%s%s%s", what, gname,
                            FMT_INT, FMT_PACK, strcmp(top_format, FMT_MIXED) ? " and equal the top-level format \"" : "",
                            strcmp(top_format, FMT_MIXED) ? top_format : "", strcmp(top_format, FMT_MIXED) ? "\"" : "");
        format = json_string_value(fj);
    } else if (!strcmp(top_format, FMT_MIXED)) {
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.config_groups.%s.format is missing (format \"" FMT_MIXED
                        "\" names each group's)",
                        what, gname);
    }
    snprintf(key, sizeof key, "config_groups.%s.", gname);
    int rc = must_be_null(gj, "input_activations", NULL, what, key, "activation quantization is not supported");
    if (!rc) rc = must_be_null(gj, "output_activations", NULL, what, key, "activation quantization is not supported");
    if (!rc) rc = parse_weights(json_object_get(gj, "weights"), what, gname, format, &g->type);
    snprintf(key, sizeof key, "config_groups.%s.targets", gname);
    if (!rc) rc = parse_targets(json_object_get(gj, "targets"), what, key, true, false, &g->t, &g->n);
    return rc;
}

static int qcfg_parse(const json_t *qc, const char *what, skl_qcfg *q) {
    if (!json_is_object(qc)) return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config is not an object", what);
    const json_t *qm = json_object_get(qc, "quant_method"), *fmt = json_object_get(qc, "format"),
                 *status = json_object_get(qc, "quantization_status"), *groups = json_object_get(qc, "config_groups");
    if (!json_is_string(qm) || strcmp(json_string_value(qm), "compressed-tensors") != 0)
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.quant_method is %s%s%s, expected \"compressed-tensors\"", what,
                        json_is_string(qm) ? "\"" : "", json_is_string(qm) ? json_string_value(qm) : "not a string",
                        json_is_string(qm) ? "\"" : "");
    const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
    if (strcmp(f, FMT_INT) != 0 && strcmp(f, FMT_PACK) != 0 && strcmp(f, FMT_MIXED) != 0)
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.format is %s%s%s, expected \"" FMT_INT "\", \"" FMT_PACK
                        "\" or \"" FMT_MIXED "\"",
                        what, json_is_string(fmt) ? "\"" : "", json_is_string(fmt) ? f : "missing or not a string",
                        json_is_string(fmt) ? "\"" : "");
    if (status && !json_is_null(status) &&
        !(json_is_string(status) && !strcmp(json_string_value(status), "compressed")))
        return skl_fail(SKL_ERR_QUANT_CONFIG,
                        "%s: quantization_config.quantization_status must be \"compressed\" (the weights stored quantized)",
                        what);
    json_t *empty = json_object();
    if (!empty) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    int rc = must_be_null(qc, "kv_cache_scheme", NULL, what, "", "KV cache quantization is not supported");
    if (!rc) rc = must_be_null(qc, "sparsity_config", empty, what, "", "sparse weights are not supported");
    if (!rc) rc = must_be_null(qc, "transform_config", empty, what, "", "weight transforms are not supported");
    json_decref(empty);
    if (rc) return rc;
    if (!json_is_object(groups) || json_object_size(groups) == 0)
        return skl_fail(SKL_ERR_QUANT_CONFIG, "%s: quantization_config.config_groups must be a non-empty object", what);
    if (!(q->g = calloc(json_object_size(groups), sizeof *q->g))) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    const char *gname;
    json_t *gj;
    json_object_foreach((json_t *)groups, gname, gj) {
        rc = parse_group(gj, what, gname, f, &q->g[q->n_groups++]);
        if (rc) return rc;
    }
    return parse_targets(json_object_get(qc, "ignore"), what, "ignore", false, true, &q->ig, &q->n_ig);
}

int skl_qcfg_parse(const json_t *cfg, const char *what, skl_qcfg **out) {
    *out = NULL;
    const json_t *qc = json_object_get(cfg, "quantization_config");
    if (!qc || json_is_null(qc)) return SKL_OK;
    skl_qcfg *q = calloc(1, sizeof *q);
    if (!q) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    int rc = qcfg_parse(qc, what, q);
    if (rc) {
        skl_qcfg_free(q);
        return rc;
    }
    *out = q;
    return SKL_OK;
}

/* 3: exact name, 2: expression, 1: the class, 0: no match. */
static int match(const target *t, const char *name, bool linear) {
    if (t->name) return strcmp(t->name, name) == 0 ? 3 : 0;
    if (t->linear) return linear ? 1 : 0;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
    int r = md ? pcre2_match(t->re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL) : -1;
    pcre2_match_data_free(md);
    return r >= 0 ? 2 : 0;
}

int skl_qcfg_type(const skl_qcfg *q, const char *name, bool linear) {
    if (!q) return -1;
    for (size_t i = 0; i < q->n_ig; i++)
        if (match(&q->ig[i], name, linear)) return -1;
    int best = 0, type = -1;
    for (size_t i = 0; i < q->n_groups; i++)
        for (size_t k = 0; k < q->g[i].n; k++) {
            int s = match(&q->g[i].t[k], name, linear);
            if (s > best) best = s, type = q->g[i].type;
        }
    return type;
}

/* ---------------------------------------------------------------- writing */

/* One scheme: weights symmetric int in groups of 32, targets as given. */
static json_t *scheme(int type, json_t *targets, const char *format) {
    json_t *s = json_pack("{s:o, s:{s:i, s:s, s:b, s:s, s:i, s:b, s:n}, s:n, s:n}", "targets", targets, "weights",
                          "num_bits", type == SKL_DT_Q8_0 ? 8 : 4, "type", "int", "symmetric", 1, "strategy", "group",
                          "group_size", SKL_DT_QGROUP, "dynamic", 0, "actorder", "input_activations",
                          "output_activations");
    if (s && format && json_object_set_new(s, "format", json_string(format)) != 0) {
        json_decref(s);
        s = NULL;
    }
    return s;
}

static const char *format_of(int type) { return type == SKL_DT_Q8_0 ? FMT_INT : FMT_PACK; }

/* One type: the class "Linear" and the rest ignored; two: each group names
 * its modules (vLLM wants every linear layer in a group or in "ignore"). */
json_t *skl_qcfg_build(const char *const *names, const int *types, size_t n, bool *nomem) {
    *nomem = false;
    bool has[2] = {false, false};
    for (size_t i = 0; i < n; i++)
        if (types[i] >= 0) has[types[i] == SKL_DT_Q4_0] = true;
    if (!has[0] && !has[1]) return NULL;
    bool mixed = has[0] && has[1];
    json_t *ignore = json_array(), *groups = json_object(), *qc = NULL;
    bool bad = !ignore || !groups;
    for (int k = 0; k < 2 && !bad; k++) {
        if (!has[k]) continue;
        int type = k ? SKL_DT_Q4_0 : SKL_DT_Q8_0;
        json_t *targets = json_array();
        bad = !targets;
        if (!mixed && !bad) bad = json_array_append_new(targets, json_string("Linear")) != 0;
        for (size_t i = 0; i < n && mixed && !bad; i++)
            if (types[i] == type) bad = json_array_append_new(targets, json_string(names[i])) != 0;
        if (bad) {
            json_decref(targets);
            break;
        }
        json_t *s = scheme(type, targets, mixed ? format_of(type) : NULL); /* takes targets */
        bad = !s || json_object_set_new(groups, json_object_size(groups) ? "group_1" : "group_0", s) != 0;
    }
    for (size_t i = 0; i < n && !bad; i++)
        if (types[i] < 0) bad = json_array_append_new(ignore, json_string(names[i])) != 0;
    if (!bad)
        qc = json_pack("{s:s, s:s, s:s, s:O, s:O, s:n}", "quant_method", "compressed-tensors", "format",
                       mixed ? FMT_MIXED : format_of(has[0] ? SKL_DT_Q8_0 : SKL_DT_Q4_0), "quantization_status",
                       "compressed", "config_groups", groups, "ignore", ignore, "kv_cache_scheme");
    json_decref(ignore);
    json_decref(groups);
    *nomem = !qc;
    return qc;
}
