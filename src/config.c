/* config.c - read the model config (Hugging Face config.json keys plus ours). */
#include "config.h"

#include <math.h>
#include <string.h>

#define MAX_DIM (1 << 24)     /* any single dimension */
#define MAX_LAYERS 4096

/* get_int, get_num, get_bool and get_str are intentional twins: one reader per JSON
 * type, each "absent or null -> default, wrong type -> a message naming the key". */
static int get_int(const json_t *cfg, const char *what, const char *key, int required,
                   int32_t def, int32_t *out) {
    const json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        if (required) return skl_fail(SKL_ERR_CONFIG, "%s: required key \"%s\" is missing", what, key);
        *out = def;
        return SKL_OK;
    }
    if (!json_is_integer(j))
        return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" must be an integer", what, key);
    json_int_t v = json_integer_value(j);
    if (v < 1 || v > MAX_DIM)
        return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" is %lld, expected 1 to %d", what, key,
                        (long long)v, MAX_DIM);
    *out = (int32_t)v;
    return SKL_OK;
}

static int get_num(const json_t *cfg, const char *what, const char *key, double def, double *out) {
    const json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        *out = def;
        return SKL_OK;
    }
    if (!json_is_number(j))
        return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" must be a number", what, key);
    *out = json_number_value(j);
    if (!isfinite(*out)) return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" is not finite", what, key);
    return SKL_OK;
}

static int get_bool(const json_t *cfg, const char *what, const char *key, bool def, bool *out) {
    const json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        *out = def;
        return SKL_OK;
    }
    if (!json_is_boolean(j))
        return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" must be true or false", what, key);
    *out = json_is_true(j);
    return SKL_OK;
}

static int get_str(const json_t *cfg, const char *what, const char *key, const char *def,
                   const char **out) {
    const json_t *j = json_object_get(cfg, key);
    if (!j || json_is_null(j)) {
        *out = def;
        return SKL_OK;
    }
    if (!json_is_string(j))
        return skl_fail(SKL_ERR_CONFIG, "%s: \"%s\" must be a string", what, key);
    *out = json_string_value(j);
    return SKL_OK;
}

int skl_config_parse(const json_t *cfg, const char *what, skl_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    if (!json_is_object(cfg)) return skl_fail(SKL_ERR_CONFIG, "%s: config is not a JSON object", what);
    int rc;
    if ((rc = get_int(cfg, what, "hidden_size", 1, 0, &hp->hidden_size)) ||
        (rc = get_int(cfg, what, "num_hidden_layers", 1, 0, &hp->num_hidden_layers)) ||
        (rc = get_int(cfg, what, "num_attention_heads", 1, 0, &hp->num_attention_heads)) ||
        (rc = get_int(cfg, what, "num_key_value_heads", 0, hp->num_attention_heads,
                      &hp->num_key_value_heads)) ||
        (rc = get_int(cfg, what, "intermediate_size", 1, 0, &hp->intermediate_size)) ||
        (rc = get_int(cfg, what, "vocab_size", 1, 0, &hp->vocab_size)) ||
        (rc = get_int(cfg, what, "max_position_embeddings", 1, 0, &hp->max_position_embeddings)))
        return rc;
    if (hp->num_hidden_layers > MAX_LAYERS)
        return skl_fail(SKL_ERR_CONFIG, "%s: \"num_hidden_layers\" is %d, at most %d supported",
                        what, hp->num_hidden_layers, MAX_LAYERS);
    if (hp->num_attention_heads % hp->num_key_value_heads != 0)
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        what, hp->num_attention_heads, hp->num_key_value_heads);
    int32_t def_hd = hp->hidden_size / hp->num_attention_heads;
    const json_t *hdj = json_object_get(cfg, "head_dim");
    if ((!hdj || json_is_null(hdj)) && hp->hidden_size % hp->num_attention_heads != 0)
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: no \"head_dim\" and hidden_size %d is not a multiple of "
                        "num_attention_heads %d",
                        what, hp->hidden_size, hp->num_attention_heads);
    if ((rc = get_int(cfg, what, "head_dim", 0, def_hd, &hp->head_dim))) return rc;
    if ((int64_t)hp->num_attention_heads * hp->head_dim > MAX_DIM)
        return skl_fail(SKL_ERR_CONFIG, "%s: num_attention_heads x head_dim exceeds %d", what,
                        MAX_DIM);

    const json_t *rs = json_object_get(cfg, "rope_scaling");
    if (rs && !json_is_null(rs))
        return skl_fail(SKL_ERR_UNSUPPORTED, "%s: \"rope_scaling\" is not supported yet (only plain RoPE)", what);
    const char *act, *block, *pos;
    if ((rc = get_str(cfg, what, "hidden_act", NULL, &act))) return rc;
    if (!act) return skl_fail(SKL_ERR_CONFIG, "%s: required key \"hidden_act\" is missing", what);
    if (!strcmp(act, "silu") || !strcmp(act, "swish")) hp->hidden_act = SKL_ACT_SILU;
    else if (!strcmp(act, "gelu")) hp->hidden_act = SKL_ACT_GELU;
    else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh"))
        hp->hidden_act = SKL_ACT_GELU_TANH;
    else if (!strcmp(act, "relu")) hp->hidden_act = SKL_ACT_RELU;
    else
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: hidden_act \"%s\" is not supported (expected silu, gelu, gelu_new, "
                        "gelu_pytorch_tanh or relu)",
                        what, act);
    if ((rc = get_str(cfg, what, "block_type", "serial", &block))) return rc;
    if (!strcmp(block, "serial")) hp->block_type = SKL_BLOCK_SERIAL;
    else if (!strcmp(block, "parallel")) hp->block_type = SKL_BLOCK_PARALLEL;
    else
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: block_type \"%s\" is not supported (expected serial or parallel)",
                        what, block);
    if ((rc = get_str(cfg, what, "position_embedding", "rope", &pos))) return rc;
    if (!strcmp(pos, "rope")) hp->use_rope = true;
    else if (!strcmp(pos, "none")) hp->use_rope = false;
    else
        return skl_fail(SKL_ERR_CONFIG,
                        "%s: position_embedding \"%s\" is not supported (expected rope or none)",
                        what, pos);

    double theta, prf, eps;
    if ((rc = get_num(cfg, what, "rope_theta", 10000.0, &theta)) ||
        (rc = get_num(cfg, what, "partial_rotary_factor", 1.0, &prf)) ||
        (rc = get_num(cfg, what, "rms_norm_eps", 1e-6, &eps)) ||
        (rc = get_bool(cfg, what, "tie_word_embeddings", false, &hp->tie_word_embeddings)))
        return rc;
    if (!(theta > 0)) return skl_fail(SKL_ERR_CONFIG, "%s: rope_theta %g must be > 0", what, theta);
    if (!(prf > 0 && prf <= 1))
        return skl_fail(SKL_ERR_CONFIG, "%s: partial_rotary_factor %g must be in (0, 1]", what, prf);
    if (!(eps > 0)) return skl_fail(SKL_ERR_CONFIG, "%s: rms_norm_eps %g must be > 0", what, eps);
    hp->rope_theta = (float)theta;
    hp->partial_rotary_factor = (float)prf;
    hp->rms_norm_eps = (float)eps;
    if (hp->use_rope) {
        /* as Hugging Face: int(head_dim * partial_rotary_factor) */
        hp->rotary_dim = (int32_t)((double)hp->head_dim * prf);
        if (hp->rotary_dim < 2 || hp->rotary_dim % 2 != 0)
            return skl_fail(SKL_ERR_CONFIG,
                            "%s: head_dim %d x partial_rotary_factor %g gives %d rotary dims, "
                            "expected an even number >= 2",
                            what, hp->head_dim, prf, hp->rotary_dim);
    }
    return SKL_OK;
}

/* config "eos_token_id": absent/null, an id >= 0, or a list of ids (first used). */
int skl_config_eos(const json_t *cfg, const char *what, int32_t *out) {
    const json_t *e = json_object_get(cfg, "eos_token_id");
    *out = -1;
    if (!e || json_is_null(e)) return SKL_OK;
    if (json_is_array(e) && json_array_size(e) > 0) e = json_array_get(e, 0);
    if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > INT32_MAX)
        return skl_fail(SKL_ERR_CONFIG, "%s: \"eos_token_id\" must be a token id >= 0 or a non-empty list of them", what);
    *out = (int32_t)json_integer_value(e);
    return SKL_OK;
}
