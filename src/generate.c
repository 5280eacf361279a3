/* generate.c - prompt evaluation, then sample / stream / decode one token at a time. */
#include "internal.h"

#include <string.h>

void skl_generate_params_init(skl_generate_params *p) {
    if (!p) return;
    memset(p, 0, sizeof *p);
    skl_sampler_params_init(&p->sampling);
    p->max_tokens = 128;
}

int skl_generate(skl_context *ctx, const int32_t *prompt, int32_t n_prompt, const skl_generate_params *params,
                 skl_token_fn on_token, void *user_data, skl_generate_result *result) {
    if (result) {
        memset(result, 0, sizeof *result);
        result->stop_token = -1;
    }
    if (!ctx) return skl_fail(SKL_ERR_INVALID_ARG, "skl_generate: context is NULL");
    if (!prompt || n_prompt < 1)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generate: the prompt needs at least one token");
    skl_generate_params p;
    if (params) p = *params;
    else skl_generate_params_init(&p);
    if (p.max_tokens < 0)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generate: max_tokens %d must be >= 0", p.max_tokens);
    if (p.n_stop_tokens < 0 || (p.n_stop_tokens > 0 && !p.stop_tokens))
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generate: stop_tokens is NULL or n_stop_tokens < 0");
    skl_sampler *s;
    int rc = skl_sampler_create(&p.sampling, &s);
    if (rc) return rc;
    const skl_model *model = skl_context_model(ctx);
    skl_detokenizer *detok = NULL; /* text pieces when the model has a tokenizer */
    if (skl_model_has_tokenizer(model) && (rc = skl_detokenizer_create(model, &detok))) {
        skl_sampler_free(s);
        return rc;
    }
    double t0 = skl_now_s();
    rc = skl_eval(ctx, prompt, n_prompt);
    double t1 = skl_now_s();
    if (rc) {
        skl_sampler_free(s);
        skl_detokenizer_free(detok);
        return rc;
    }
    skl_stop_reason reason = SKL_STOP_MAX_TOKENS;
    int32_t n_gen = 0, stop_tok = -1, n_vocab = model->hp.vocab_size;
    while (n_gen < p.max_tokens) {
        int32_t rows, tok;
        const float *lg = skl_logits(ctx, &rows);
        if ((rc = skl_sample(s, lg + (size_t)(rows - 1) * n_vocab, n_vocab, &tok))) break;
        bool is_stop = false;
        for (int32_t i = 0; i < p.n_stop_tokens; i++) is_stop |= p.stop_tokens[i] == tok;
        if (is_stop) {
            reason = SKL_STOP_STOP_TOKEN;
            stop_tok = tok;
            break;
        }
        const char *piece = NULL;
        if (detok && (rc = skl_detokenizer_push(detok, tok, &piece, NULL))) break; /* an id without text */
        n_gen++;
        if (on_token && on_token(tok, piece, user_data)) {
            reason = SKL_STOP_CALLBACK;
            break;
        }
        if (n_gen == p.max_tokens) break;
        if (skl_context_n_past(ctx) >= skl_context_n_ctx(ctx)) {
            reason = SKL_STOP_CONTEXT_FULL;
            break;
        }
        if ((rc = skl_eval(ctx, &tok, 1))) break;
    }
    if (rc) reason = SKL_STOP_ERROR;
    else if (detok) { /* bytes of an unfinished character: one last call with token -1 */
        const char *piece;
        size_t len;
        if ((rc = skl_detokenizer_flush(detok, &piece, &len))) reason = SKL_STOP_ERROR;
        else if (len && on_token) on_token(-1, piece, user_data);
    }
    double t2 = skl_now_s();
    skl_sampler_free(s);
    skl_detokenizer_free(detok);
    if (result) {
        result->n_generated = n_gen;
        result->stop_token = stop_tok;
        result->stop_reason = reason;
        result->prompt_seconds = t1 - t0;
        result->decode_seconds = t2 - t1;
    }
    return rc;
}
