/* threads.c - several threads on one shared model, under ThreadSanitizer.
 *
 *     build/tsan/threads MODELS_DIR
 *
 * One model (serial_mha_silu_glu) and one model with a tokenizer (tok_plain)
 * are loaded once and shared by 4 threads; thread k, 3 rounds: a context with
 * k + 1 threads (its own pool; OpenBLAS set to k + 1 for its prefill), a
 * prefill of 12 tokens with every row's logits, which must equal bit for bit
 * the logits the same context computed alone before the threads started
 * (OpenBLAS's thread count is one process setting: without skl_blas_lock a
 * concurrent prefill changed it under another); decode steps; tokenize,
 * detokenize and stream on the shared tokenizer; threads 0 and 1 also merge
 * the shared model (with verification) and compare the merged logits with a
 * merge made before.  TSan reports (races, lock order) fail the run; races
 * inside uninstrumented OpenBLAS are suppressed (test/tsan/suppressions.txt). */
#include "skipless.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_THREADS 4
#define N_TOK 48

static skl_model *model, *tok_model;
static float *want[N_THREADS]; /* [N_TOK, V] the prefill logits of a context of k + 1 threads, alone */
static float *want_merged;     /* [V] the merged model's last-row logits */
static int32_t V;
static int failures;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *what, int k) {
    pthread_mutex_lock(&fail_lock);
    fprintf(stderr, "threads: FAIL (thread %d): %s: %s\n", k, what, skl_last_error());
    failures++;
    pthread_mutex_unlock(&fail_lock);
}

/* The logits of a prefill of N_TOK tokens (every row) on a context of n_threads, malloc'd. */
static float *prefill(const skl_model *m, int n_threads, int decode_steps) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 64;
    cp.n_threads = n_threads;
    cp.logits_all = true;
    skl_context *c = NULL;
    int32_t toks[N_TOK];
    for (int i = 0; i < N_TOK; i++) toks[i] = (i * 7 + 1) % V;
    if (skl_context_create(m, &cp, &c) || skl_eval(c, toks, N_TOK)) {
        skl_context_free(c);
        return NULL;
    }
    float *out = malloc((size_t)N_TOK * (size_t)V * sizeof *out);
    memcpy(out, skl_logits(c, NULL), (size_t)N_TOK * (size_t)V * sizeof *out);
    for (int s = 0; s < decode_steps; s++) {
        int32_t t = (s * 5 + 3) % V;
        if (skl_eval(c, &t, 1)) {
            free(out);
            out = NULL;
            break;
        }
    }
    skl_context_free(c);
    return out;
}

static skl_model *merged(void) {
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    skl_model *mm = NULL;
    return skl_model_merge(model, &mp, &mm, NULL) == SKL_OK ? mm : NULL;
}

static void *worker(void *arg) {
    int k = (int)(long)arg;
    for (int round = 0; round < 3; round++) {
        float *got = prefill(model, k + 1, 4);
        if (!got) fail("prefill", k);
        else if (memcmp(got, want[k], (size_t)N_TOK * (size_t)V * sizeof *got) != 0)
            fail("prefill logits differ from the same context's alone", k);
        free(got);
        static const char text[] = "In the beginning, don't stop \xc3\xa9!";
        int32_t ids[64];
        size_t n = 0, len = 0;
        char out[256];
        if (skl_tokenize(tok_model, text, sizeof text - 1, ids, 64, &n, 0) ||
            skl_detokenize(tok_model, ids, n, out, sizeof out, &len) || len != sizeof text - 1 ||
            memcmp(out, text, len) != 0)
            fail("tokenize / detokenize round trip", k);
        if (k < 2) {
            skl_model *mm = merged();
            float *ml = mm ? prefill(mm, 1, 0) : NULL;
            if (!ml || memcmp(ml + (size_t)(N_TOK - 1) * V, want_merged, (size_t)V * sizeof *ml) != 0)
                fail("merge of the shared model", k);
            free(ml);
            skl_model_free(mm);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: threads MODELS_DIR\n");
        return 2;
    }
    char p[1024];
    const char *big = getenv("SKL_TSAN_MODEL");
    if (big) snprintf(p, sizeof p, "%s", big);
    else snprintf(p, sizeof p, "%s/models/serial_mha_silu_glu", argv[1]);
    if (skl_model_load(p, NULL, &model)) return fprintf(stderr, "%s: %s\n", p, skl_last_error()), 2;
    snprintf(p, sizeof p, "%s/models/tok_plain", argv[1]);
    if (skl_model_load(p, NULL, &tok_model)) return fprintf(stderr, "%s: %s\n", p, skl_last_error()), 2;
    skl_hparams hp;
    skl_model_hparams(model, &hp, sizeof hp);
    V = hp.vocab_size;
    for (int k = 0; k < N_THREADS; k++)
        if (!(want[k] = prefill(model, k + 1, 0))) return fprintf(stderr, "prefill: %s\n", skl_last_error()), 2;
    skl_model *mm = merged();
    float *ml = mm ? prefill(mm, 1, 0) : NULL;
    if (!ml) return fprintf(stderr, "merge: %s\n", skl_last_error()), 2;
    want_merged = malloc((size_t)V * sizeof *want_merged);
    memcpy(want_merged, ml + (size_t)(N_TOK - 1) * V, (size_t)V * sizeof *want_merged);
    free(ml);
    skl_model_free(mm);
    pthread_t t[N_THREADS];
    for (long k = 0; k < N_THREADS; k++) pthread_create(&t[k], NULL, worker, (void *)k);
    for (int k = 0; k < N_THREADS; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < N_THREADS; k++) free(want[k]);
    free(want_merged);
    skl_model_free(tok_model);
    skl_model_free(model);
    printf("threads: %d threads x 3 rounds on one shared model: %s\n", N_THREADS, failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
