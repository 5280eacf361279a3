/* generate.c - pull-style generation (skl_generator: prompt evaluation, then
 * sample / hand out / decode one token per call) and skl_generate, the push
 * loop over it that streams tokens to a callback. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define GENERATE_PARAMS_V1 SKL_SIZE_THROUGH(skl_generate_params, n_stop_tokens)

int skl_generate_params_init(skl_generate_params *p, size_t size) {
    skl_generate_params d = {.sampling = NULL, .max_tokens = 128, .stop_tokens = NULL, .n_stop_tokens = 0};
    return skl_params_init(p, size, &d, sizeof d, GENERATE_PARAMS_V1, "skl_generate_params_init");
}

struct skl_generator {
    skl_context *ctx;
    skl_sampler *sampler;
    skl_detokenizer *detok;   /* text pieces when the model has a tokenizer, else NULL */
    int32_t max_tokens;
    int32_t *stop_tokens;     /* [n_stop] the caller's, copied */
    int32_t n_stop;
    int32_t n_vocab;
    int32_t pending;          /* token handed out but not yet evaluated, or -1 */
    bool done;                /* generation has ended: next() gives -1 */
    bool flushed;             /* the held-back bytes were handed out */
    skl_generate_result res;
    double t_prompt_end;      /* skl_now_s() after the prompt eval */
};

void skl_generator_free(skl_generator *g) {
    if (!g) return;
    skl_sampler_free(g->sampler);
    skl_detokenizer_free(g->detok);
    free(g->stop_tokens);
    free(g);
}

int skl_generator_create(skl_context *ctx, const int32_t *prompt, int32_t n_prompt, const skl_generate_params *params,
                         skl_generator **out) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_create: out is NULL");
    *out = NULL;
    if (!ctx) return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_create: context is NULL");
    if (!prompt || n_prompt < 1)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_create: the prompt needs at least one token");
    skl_generate_params p;
    skl_generate_params_init(&p, sizeof p);
    int rc = skl_params_read(&p, sizeof p, params, GENERATE_PARAMS_V1, "skl_generator_create");
    if (rc) return rc;
    if (p.max_tokens < 0)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_create: max_tokens %d must be >= 0", p.max_tokens);
    if (p.n_stop_tokens < 0 || (p.n_stop_tokens > 0 && !p.stop_tokens))
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_create: stop_tokens is NULL or n_stop_tokens < 0");
    skl_generator *g = calloc(1, sizeof *g);
    if (!g) return skl_fail(SKL_ERR_NOMEM, "skl_generator_create: out of memory");
    g->ctx = ctx;
    g->max_tokens = p.max_tokens;
    g->n_stop = p.n_stop_tokens;
    g->pending = -1;
    g->res.stop_token = -1;
    g->res.stop_reason = SKL_STOP_MAX_TOKENS;
    const skl_model *model = skl_context_model(ctx);
    g->n_vocab = model->hp.vocab_size;
    if (g->n_stop) {
        g->stop_tokens = malloc((size_t)g->n_stop * sizeof *g->stop_tokens);
        if (!g->stop_tokens) {
            skl_generator_free(g);
            return skl_fail(SKL_ERR_NOMEM, "skl_generator_create: out of memory for %d stop tokens", g->n_stop);
        }
        memcpy(g->stop_tokens, p.stop_tokens, (size_t)g->n_stop * sizeof *g->stop_tokens);
    }
    if ((rc = skl_sampler_create(p.sampling, &g->sampler)) ||
        (skl_model_has_tokenizer(model) && (rc = skl_detokenizer_create(model, &g->detok)))) {
        skl_generator_free(g);
        return rc;
    }
    double t0 = skl_now_s();
    if ((rc = skl_eval(ctx, prompt, n_prompt))) {
        skl_generator_free(g);
        return rc;
    }
    g->t_prompt_end = skl_now_s();
    g->res.prompt_seconds = g->t_prompt_end - t0;
    *out = g;
    return SKL_OK;
}

static void end(skl_generator *g, skl_stop_reason reason) {
    g->done = true;
    g->res.stop_reason = reason;
}

/* The text a finished generation still holds back (U+FFFD for an incomplete
 * character), once; "" afterwards; NULL without a tokenizer. */
static int flush_piece(skl_generator *g, const char **piece, size_t *len) {
    *piece = g->detok ? "" : NULL;
    *len = 0;
    if (!g->detok || g->flushed) return SKL_OK;
    g->flushed = true;
    int rc = skl_detokenizer_flush(g->detok, piece, len);
    if (rc) end(g, SKL_STOP_ERROR);
    return rc;
}

/* One step: evaluate the token handed out last, then sample the next one. */
static int step(skl_generator *g, int32_t *token, const char **piece, size_t *len) {
    if (g->res.n_generated == g->max_tokens) {
        end(g, SKL_STOP_MAX_TOKENS);
        return SKL_OK;
    }
    int rc;
    if (g->pending >= 0) {
        if (skl_context_n_past(g->ctx) >= skl_context_n_ctx(g->ctx)) {
            end(g, SKL_STOP_CONTEXT_FULL);
            return SKL_OK;
        }
        if ((rc = skl_eval(g->ctx, &g->pending, 1))) return rc;
        g->pending = -1;
    }
    int32_t rows, tok;
    const float *lg = skl_logits(g->ctx, &rows);
    if ((rc = skl_sample(g->sampler, lg + (size_t)(rows - 1) * g->n_vocab, g->n_vocab, &tok))) return rc;
    for (int32_t i = 0; i < g->n_stop; i++)
        if (g->stop_tokens[i] == tok) {
            g->res.stop_token = tok;
            end(g, SKL_STOP_STOP_TOKEN);
            return SKL_OK;
        }
    if (g->detok && (rc = skl_detokenizer_push(g->detok, tok, piece, len))) return rc; /* an id without text */
    g->res.n_generated++;
    g->pending = tok;
    *token = tok;
    return SKL_OK;
}

int skl_generator_next(skl_generator *g, int32_t *token, const char **piece, size_t *piece_len) {
    if (!g || !token || !piece)
        return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_next: generator, token or piece is NULL");
    size_t len_ = 0, *len = piece_len ? piece_len : &len_;
    *token = -1;
    *piece = g->detok ? "" : NULL;
    *len = 0;
    int rc = SKL_OK;
    if (!g->done) {
        rc = step(g, token, piece, len);
        g->res.decode_seconds = skl_now_s() - g->t_prompt_end;
        if (rc) {
            *token = -1;
            end(g, SKL_STOP_ERROR);
            return rc;
        }
        if (!g->done) return SKL_OK;
    }
    return flush_piece(g, piece, len);
}

int skl_generator_result(const skl_generator *g, skl_generate_result *out, size_t size) {
    if (!g) return skl_fail(SKL_ERR_INVALID_ARG, "skl_generator_result: generator is NULL");
    return skl_copy_out(out, size, &g->res, sizeof g->res, SKL_SIZE_THROUGH(skl_generate_result, decode_seconds),
                        "skl_generator_result");
}

int skl_generate(skl_context *ctx, const int32_t *prompt, int32_t n_prompt, const skl_generate_params *params,
                 skl_token_fn on_token, void *user_data, skl_generate_result *result, size_t result_size) {
    int rc;
    if (result) { /* "nothing generated" until there is a generator to ask */
        skl_generate_result none = {.stop_token = -1, .stop_reason = SKL_STOP_MAX_TOKENS};
        rc = skl_copy_out(result, result_size, &none, sizeof none, SKL_SIZE_THROUGH(skl_generate_result, decode_seconds),
                          "skl_generate");
        if (rc) return rc;
    }
    skl_generator *g;
    rc = skl_generator_create(ctx, prompt, n_prompt, params, &g);
    if (rc) return rc;
    for (;;) {
        int32_t tok;
        const char *piece;
        size_t len;
        if ((rc = skl_generator_next(g, &tok, &piece, &len))) break;
        if (tok < 0) { /* ended: the bytes still held back, if any */
            if (len && on_token) on_token(-1, piece, user_data);
            break;
        }
        if (on_token && on_token(tok, piece, user_data)) {
            end(g, SKL_STOP_CALLBACK);
            if (!(rc = flush_piece(g, &piece, &len)) && len) on_token(-1, piece, user_data);
            break;
        }
    }
    g->res.decode_seconds = skl_now_s() - g->t_prompt_end;
    if (result) skl_generator_result(g, result, result_size);
    skl_generator_free(g);
    return rc;
}
