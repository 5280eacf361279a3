/* plan.c - weight accounting of each removal, as in the paper's table.
 *
 * Total = L (2 d^2 + 2 d e + c d f) + 2 d V,  e = KV * head_dim,  c = 3 (GLU) or 2,
 * counting linear layers plus input and output embeddings (biases and norms
 * ignored; a tied head is still counted, as the paper does).  Removing a
 * d x d matrix from a block saves d^2; batch-1 decode reads every weight once
 * per token, so total / after bounds its speedup. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The plan the caller sees, and its rows behind an accessor (so that
 * skl_plan_row may grow in later versions). */
#define MAX_ROWS 3
typedef struct plan {
    skl_plan pub; /* first: a skl_plan * is a plan * */
    skl_plan_row rows[MAX_ROWS];
} plan;

typedef struct shape {
    skl_block_type block;
    uint64_t d, qd, e, f, L, V;
    bool glu, final_norm;
} shape;

/* note: a string literal (rows point to it) */
static void add_row(plan *pl, skl_removal r, bool applicable, bool lossless, uint64_t removed, const char *note) {
    skl_plan *p = &pl->pub;
    skl_plan_row *row = &pl->rows[p->n_rows++];
    row->removal = r;
    row->applicable = applicable;
    row->lossless = lossless;
    row->total = p->total;
    row->removed = applicable ? removed : 0;
    row->after = p->total - row->removed;
    row->saving_percent = p->total ? 100.0 * (double)row->removed / (double)p->total : 0.0;
    row->speedup_bound = row->after ? (double)p->total / (double)row->after : 0.0;
    row->note = note;
}

/* A new plan for shape s in *out. */
static int fill(const shape *s, skl_plan **out) {
    plan *pl = calloc(1, sizeof *pl);
    if (!pl) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    skl_plan *p = &pl->pub;
    p->block_type = s->block;
    p->hidden_size = (int32_t)s->d;
    p->kv_dim = (int32_t)s->e;
    p->intermediate_size = (int32_t)s->f;
    p->num_hidden_layers = (int32_t)s->L;
    p->vocab_size = (int32_t)s->V;
    p->glu = s->glu;
    p->final_norm = s->final_norm;
    uint64_t d = s->d, c = s->glu ? 3 : 2;
    p->total = s->L * (2 * d * s->qd + 2 * d * s->e + c * d * s->f) + 2 * d * s->V;
    bool sq = s->qd == d, kvsq = s->e == d;
    uint64_t dd = d * d;
    if (s->block == SKL_BLOCK_SERIAL) {
        add_row(pl, SKL_REMOVE_QP, sq, true, s->L * 2 * dd, sq ? "exact (MHA, MQA, GQA)" : "needs heads*head_dim == hidden");
        add_row(pl, SKL_REMOVE_KP, sq && kvsq, true, s->L * 2 * dd, kvsq ? "exact (MHA only)" : "MHA only: k_proj not square");
        add_row(pl, SKL_REMOVE_VP, sq && kvsq, true, s->L * 2 * dd, kvsq ? "exact (MHA only)" : "MHA only: v_proj not square");
    } else {
        uint64_t np = s->final_norm ? s->L - 1 : s->L; /* blocks whose o_proj can go */
        add_row(pl, SKL_REMOVE_Q, sq, true, s->L * dd, sq ? "exact (MHA, MQA, GQA)" : "needs heads*head_dim == hidden");
        add_row(pl, SKL_REMOVE_P, sq && np > 0, true, np * dd,
                s->final_norm ? "exact if o_proj invertible; not the last block (final norm)" : "exact if o_proj invertible");
        add_row(pl, SKL_REMOVE_QP, sq, false, s->L * 2 * dd, "needs a model trained without Q and P (paper Fig. 3)");
    }
    *out = p;
    return SKL_OK;
}

const skl_plan_row *skl_plan_row_at(const skl_plan *p, int32_t i) {
    if (!p || i < 0 || i >= p->n_rows) return NULL;
    return &((const plan *)p)->rows[i];
}

void skl_plan_free(skl_plan *p) { free(p); }

int skl_model_plan(const skl_model *m, skl_plan **out) {
    if (out) *out = NULL;
    if (!m || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_model_plan: NULL argument");
    const skl_hparams *hp = &m->hp;
    shape s = {hp->block_type,
               (uint64_t)hp->hidden_size,
               (uint64_t)hp->num_attention_heads * (uint64_t)hp->head_dim,
               (uint64_t)hp->num_key_value_heads * (uint64_t)hp->head_dim,
               (uint64_t)hp->intermediate_size,
               (uint64_t)hp->num_hidden_layers,
               (uint64_t)hp->vocab_size,
               hp->glu,
               hp->final_norm};
    return fill(&s, out);
}

int skl_plan_config(const char *path, skl_plan **out) {
    if (out) *out = NULL;
    if (!path || !out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_plan_config: NULL argument");
    json_error_t err;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!cfg) {
        int code = json_error_code(&err) == json_error_duplicate_key ? SKL_ERR_DUPLICATE_KEY
                   : json_error_code(&err) == json_error_cannot_open_file ? SKL_ERR_IO
                                                                          : SKL_ERR_JSON;
        return skl_fail(code, "%s: %s (line %d)", path, err.text, err.line);
    }
    /* Hugging Face families: hidden_act may be absent or differently named
     * (GPT-NeoX: "gelu"); our parser needs it, so fill a default first. */
    json_t *c = json_deep_copy(cfg);
    json_decref(cfg);
    if (!c) return skl_fail(SKL_ERR_NOMEM, "out of memory");
    if (!json_object_get(c, "hidden_act")) json_object_set_new(c, "hidden_act", json_string("silu"));
    const char *mt = json_string_value(json_object_get(c, "model_type"));
    json_t *pr = json_object_get(c, "use_parallel_residual");
    if (json_is_true(pr)) json_object_set_new(c, "block_type", json_string("parallel"));
    skl_hparams hp;
    int rc = skl_config_parse(c, path, &hp);
    if (rc) {
        json_decref(c);
        return rc;
    }
    /* GLU: Llama-family model types, or our "ffn_type": "glu"; GPT-NeoX/GPT-J: plain MLP. */
    const char *ft = json_string_value(json_object_get(c, "ffn_type"));
    bool glu;
    if (ft) glu = !strcmp(ft, "glu");
    else if (mt) glu = !(strcmp(mt, "gpt_neox") == 0 || strcmp(mt, "gptj") == 0 || strcmp(mt, "gpt2") == 0 ||
                         strcmp(mt, "falcon") == 0);
    else glu = hp.hidden_act == SKL_ACT_SILU;
    /* HF families end with a final norm; ours declares it with "final_norm" (default false). */
    bool norm = mt ? true : json_is_true(json_object_get(c, "final_norm"));
    shape s = {hp.block_type,
               (uint64_t)hp.hidden_size,
               (uint64_t)hp.num_attention_heads * (uint64_t)hp.head_dim,
               (uint64_t)hp.num_key_value_heads * (uint64_t)hp.head_dim,
               (uint64_t)hp.intermediate_size,
               (uint64_t)hp.num_hidden_layers,
               (uint64_t)hp.vocab_size,
               glu,
               norm};
    json_decref(c);
    return fill(&s, out);
}
