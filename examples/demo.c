/* demo.c - the main job of libskipless in one program (`make run`):
 * load a trained skipless model, merge it (remove Q and P), generate a
 * continuation of a prompt with the original and with the merged model (same
 * sampler seed), and show that the texts are identical while fewer weights are
 * read per token.  Greedy decoding of so small a model soon repeats itself, so
 * the demo samples (temperature 0.7, top-k 40, seed 42); test/test_trained.py
 * checks 200 greedy tokens as well.
 *   demo MODEL [PROMPT] [N_TOKENS] [N_THREADS]                              */
#include <skipless.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text_buf {
    char *data;
    size_t len, cap;
    int failed;
} text_buf;

static int collect(int32_t token, const char *piece, void *user_data) {
    (void)token;
    text_buf *t = user_data;
    if (!piece) return 0;
    size_t n = strlen(piece);
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *p = realloc(t->data, cap);
        if (!p) {
            t->failed = 1;
            return 1; /* stop generation */
        }
        t->data = p;
        t->cap = cap;
    }
    memcpy(t->data + t->len, piece, n + 1);
    t->len += n;
    return 0;
}

typedef struct run_result {
    text_buf text;
    int32_t n_generated;
    double decode_tokens_per_s;
} run_result;

static int run(const skl_model *model, const char *prompt, int32_t n_tokens, int32_t n_threads,
               run_result *out) {
    memset(out, 0, sizeof *out);
    size_t n_prompt = 0;
    int rc = skl_tokenize(model, prompt, strlen(prompt), NULL, 0, &n_prompt, 0);
    if (rc != SKL_OK && rc != SKL_ERR_BUFFER_TOO_SMALL) return rc;
    int32_t *ids = malloc((n_prompt ? n_prompt : 1) * sizeof *ids);
    if (!ids) return SKL_ERR_NOMEM;
    rc = skl_tokenize(model, prompt, strlen(prompt), ids, n_prompt, &n_prompt, 0);
    skl_context *ctx = NULL;
    if (rc == SKL_OK) {
        skl_context_params cp;
        skl_context_params_init(&cp, sizeof cp);
        cp.n_threads = n_threads;
        cp.n_ctx = (int32_t)n_prompt + n_tokens + 1;
        rc = skl_context_create(model, &cp, &ctx);
    }
    if (rc == SKL_OK) {
        skl_generate_params gp;
        skl_generate_params_init(&gp, sizeof gp);
        skl_sampler_params sp;
        skl_sampler_params_init(&sp, sizeof sp);
        gp.sampling = &sp;
        sp.temperature = 0.7f;
        sp.top_k = 40;
        sp.top_p = 1.0f;
        sp.seed = 42; /* the same seed for both models */
        gp.max_tokens = n_tokens;
        int32_t eos = skl_token_eos(model);
        if (eos >= 0) {
            gp.stop_tokens = &eos;
            gp.n_stop_tokens = 1;
        }
        skl_generate_result res;
        rc = skl_generate(ctx, ids, (int32_t)n_prompt, &gp, collect, &out->text, &res, sizeof res);
        if (rc == SKL_OK && out->text.failed) rc = SKL_ERR_NOMEM;
        out->n_generated = res.n_generated;
        /* the last generated token is not evaluated: n_generated - 1 decode steps */
        if (res.n_generated > 1 && res.decode_seconds > 0)
            out->decode_tokens_per_s = (res.n_generated - 1) / res.decode_seconds;
    }
    skl_context_free(ctx);
    free(ids);
    return rc;
}

static int fail(const char *what, int rc) {
    fprintf(stderr, "demo: %s failed: %s (%s)\n", what, skl_last_error(), skl_strerror(rc));
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [PROMPT] [N_TOKENS] [N_THREADS]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    const char *prompt = argc > 2 ? argv[2] : "In the beginning God created";
    int32_t n_tokens = argc > 3 ? atoi(argv[3]) : 200;
    int32_t n_threads = argc > 4 ? atoi(argv[4]) : 1;
    if (n_tokens < 1 || n_threads < 1) {
        fprintf(stderr, "demo: N_TOKENS and N_THREADS must be positive integers\n");
        return 2;
    }

    skl_model *model = NULL, *merged = NULL;
    skl_merge_report *report = NULL;
    run_result a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int status = 1, rc;

    if ((rc = skl_model_load(path, NULL, &model)) != SKL_OK) return fail("loading the model", rc);
    skl_hparams hp;
    skl_model_hparams(model, &hp, sizeof hp);
    printf("model      %s: %s blocks, %d layers, hidden %d, %d heads / %d KV heads, vocab %d\n",
           path, hp.block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial", hp.num_hidden_layers,
           hp.hidden_size, hp.num_attention_heads, hp.num_key_value_heads, hp.vocab_size);

    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.remove = SKL_REMOVE_AUTO; /* serial: remove Q and P; parallel: what is lossless */
    if ((rc = skl_model_merge(model, &mp, &merged, &report)) != SKL_OK) {
        fail("merging", rc);
        goto done;
    }
    printf("merge      removed %s in %.2f s; max condition %.3g, verify error %.2e\n",
           skl_removal_name(report->removal), report->seconds, report->max_condition,
           report->verify_error);
    printf("weights    %llu -> %llu (%.2f %% removed)\n",
           (unsigned long long)report->weights_before, (unsigned long long)report->weights_after,
           100.0 * (double)(report->weights_before - report->weights_after) /
               (double)report->weights_before);

    printf("prompt     \"%s\", %d tokens (temperature 0.7, top-k 40, seed 42), %d thread(s)\n\n",
           prompt, n_tokens, n_threads);
    /* Three interleaved rounds; the speed reported is each model's best round,
     * so a cold cache or a busy moment does not favour either model. */
    for (int round = 0; round < 3; round++) {
        run_result ra, rb;
        if ((rc = run(model, prompt, n_tokens, n_threads, &ra)) != SKL_OK) {
            free(ra.text.data);
            fail("generating with the original model", rc);
            goto done;
        }
        if ((rc = run(merged, prompt, n_tokens, n_threads, &rb)) != SKL_OK) {
            free(ra.text.data);
            free(rb.text.data);
            fail("generating with the merged model", rc);
            goto done;
        }
        if (round == 0) {
            a = ra;
            b = rb;
            continue;
        }
        if (ra.decode_tokens_per_s > a.decode_tokens_per_s) a.decode_tokens_per_s = ra.decode_tokens_per_s;
        if (rb.decode_tokens_per_s > b.decode_tokens_per_s) b.decode_tokens_per_s = rb.decode_tokens_per_s;
        free(ra.text.data);
        free(rb.text.data);
    }
    printf("original:  %s%s\n\n", prompt, a.text.data ? a.text.data : "");
    printf("merged:    %s%s\n\n", prompt, b.text.data ? b.text.data : "");
    int same = a.n_generated == b.n_generated &&
               strcmp(a.text.data ? a.text.data : "", b.text.data ? b.text.data : "") == 0;
    printf("identical  %s (%d and %d tokens)\n", same ? "yes" : "NO", a.n_generated,
           b.n_generated);
    printf("decode     original %.0f tokens/s, merged %.0f tokens/s (x%.2f; weights x%.3f)\n",
           a.decode_tokens_per_s, b.decode_tokens_per_s,
           a.decode_tokens_per_s > 0 ? b.decode_tokens_per_s / a.decode_tokens_per_s : 0.0,
           (double)report->weights_before / (double)report->weights_after);
    status = same ? 0 : 1;
done:
    free(a.text.data);
    free(b.text.data);
    skl_merge_report_free(report);
    skl_model_free(merged);
    skl_model_free(model);
    return status;
}
