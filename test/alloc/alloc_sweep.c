/* alloc_sweep.c - every allocation failure survived, as SQLite tests it.
 *
 *     build/san/alloc_sweep MODELS_DIR [STRIDE_AFTER]
 *
 * Linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup
 * against the AddressSanitizer build of the library, so that every allocation
 * the library makes goes through fa_* below.  jansson's own allocations are
 * not failed: jansson 2.14 (Debian 12) does not survive them (this sweep,
 * hooking json_set_alloc_funcs, found a parse that silently dropped object
 * keys, so that a config read as "num_hidden_layers is missing", errors
 * reported as "invalid JSON", and an assert(0) in lex_scan_string that
 * aborts the process); docs/reliability.md says so.  For each scenario (load, context creation + eval,
 * tokenize + detokenize, generate, merge, save, streaming merge) and for n =
 * 1, 2, ... the n-th allocation of the scenario fails; the call must return
 * SKL_ERR_NOMEM (or succeed, when the library had a way around it, with the
 * same result as without the failure), LeakSanitizer must find nothing leaked
 * after it, and the model the scenario used must still give its logits bit
 * for bit.  The sweep of a scenario ends at the first n past its allocation
 * count.  Every n up to STRIDE_AFTER (default 4000) is tried, then every
 * 7th (prime, so that a stride does not keep hitting the same site of a loop).
 * Not covered: allocations inside jansson, libc (fopen, fdopen), OpenBLAS,
 * PCRE2 and pthread_create, and mmap. */
#include "skipless.h"

#include <sanitizer/lsan_interface.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t a, size_t b);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

static long fail_at;    /* the allocation (1-based) that fails; 0: none */
static long count;      /* allocations since arming */
static bool injected;   /* fail_at was reached */

static bool fail_now(void) {
    if (!fail_at) return false;
    if (++count == fail_at) {
        injected = true;
        return true;
    }
    return false;
}

void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t a, size_t b) { return fail_now() ? NULL : __real_calloc(a, b); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = __wrap_malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

static void arm(long n) { fail_at = n, count = 0, injected = false; }
static void disarm(void) { fail_at = 0; }

static int failures;
#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "alloc_sweep: FAIL %s:%d: ", __FILE__, __LINE__);                     \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

static const char *models;
static char scratch[256];

static skl_model *load(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", models, rel);
    skl_model *m = NULL;
    if (skl_model_load(p, NULL, &m) != SKL_OK) {
        fprintf(stderr, "alloc_sweep: cannot load %s: %s\n", p, skl_last_error());
        exit(2);
    }
    return m;
}

/* The logits of 3 tokens (a fresh context); NULL on failure. */
static float *logits_of(const skl_model *m, int *rc) {
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 8;
    skl_context *c = NULL;
    int32_t toks[3] = {1, 2, 3};
    float *out = NULL;
    if (!(*rc = skl_context_create(m, &cp, &c)) && !(*rc = skl_eval(c, toks, 3))) {
        out = __real_malloc((size_t)hp.vocab_size * sizeof *out);
        memcpy(out, skl_logits(c, NULL), (size_t)hp.vocab_size * sizeof *out);
    }
    skl_context_free(c);
    return out;
}

static bool same_logits(const skl_model *m, const float *want) {
    int rc;
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    float *got = logits_of(m, &rc);
    bool same = got && !memcmp(got, want, (size_t)hp.vocab_size * sizeof *got);
    free(got);
    return same;
}

/* Remove what is under dir (not dir); returns how many temporaries
 * (NAME.tmp.* / NAME.old.*, save.c's) were among them.  In process: a fork
 * of this sanitized process per call cost more than the sweep itself. */
static int clear_dir(const char *dir) {
    int temporaries = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        temporaries += strstr(de->d_name, ".tmp.") || strstr(de->d_name, ".old.");
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            temporaries += clear_dir(p);
            rmdir(p);
        } else unlink(p);
    }
    closedir(d);
    return temporaries;
}

static void rm_scratch(void) { (void)clear_dir(scratch); }

/* One scenario: run(m) with allocation n failing returns a status. */
typedef struct scenario {
    const char *name;
    const char *model;   /* relative to MODELS_DIR */
    int (*run)(skl_model *m);
} scenario;

static int run_load(skl_model *m) {
    skl_model *x = NULL;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", models, "models/tok_prefix.safetensors"); /* config + tokenizer in __metadata__ */
    int rc = skl_model_load(p, NULL, &x);
    if (!rc) {
        snprintf(p, sizeof p, "%s/%s", models, "models/sharded_parallel_mha_gelu_mlp_tied_bf16");
        skl_model *y = NULL;
        rc = skl_model_load(p, NULL, &y);
        skl_model_free(y);
    }
    skl_model_free(x);
    return rc;
}

static int run_eval(skl_model *m) {
    int rc;
    float *l = logits_of(m, &rc);
    free(l);
    return rc;
}

static int run_tokenize(skl_model *m) {
    static const char text[] = "In the beginning, don't stop \xc3\xa9 123!";
    int32_t ids[128];
    size_t n = 0, len = 0;
    char out[512];
    int rc = skl_tokenize(m, text, sizeof text - 1, ids, 128, &n, 0);
    if (!rc) rc = skl_detokenize(m, ids, n, out, sizeof out, &len);
    skl_detokenizer *d = NULL;
    if (!rc) rc = skl_detokenizer_create(m, &d);
    for (size_t i = 0; !rc && i < n; i++) {
        const char *piece;
        rc = skl_detokenizer_push(d, ids[i], &piece, NULL);
    }
    skl_detokenizer_free(d);
    return rc;
}

static int on_token(int32_t t, const char *piece, void *ud) { return 0; }

static int run_generate(skl_model *m) {
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_ctx = 16;
    skl_context *c = NULL;
    int rc = skl_context_create(m, &cp, &c);
    if (!rc) {
        skl_sampler_params sp;
        skl_sampler_params_init(&sp, sizeof sp);
        skl_generate_params gp;
        skl_generate_params_init(&gp, sizeof gp);
        gp.sampling = &sp;
        gp.max_tokens = 4;
        int32_t prompt[2] = {1, 2};
        skl_generate_result res;
        rc = skl_generate(c, prompt, 2, &gp, on_token, NULL, &res, sizeof res);
    }
    skl_context_free(c);
    return rc;
}

static int run_merge(skl_model *m) {
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    skl_model *mm = NULL;
    skl_merge_report *rep = NULL;
    int rc = skl_model_merge(m, &mp, &mm, &rep);
    skl_merge_report_free(rep);
    skl_model_free(mm);
    return rc;
}

/* scratch/name, in a buffer of its own per call site */
#define IN_SCRATCH(buf, name) (snprintf(buf, sizeof buf, "%s/%s", scratch, name), buf)

static int run_save(skl_model *m) {
    char p[600], q[600];
    skl_save_params sp;
    skl_save_params_init(&sp, sizeof sp);
    sp.max_shard_size = 5000;
    int rc = skl_model_save_v2(m, IN_SCRATCH(p, "saved"), &sp);
    return rc ? rc : skl_model_save(m, IN_SCRATCH(q, "saved.safetensors"), SKL_SAVE_AUTO);
}

static int run_merge_to(skl_model *m) {
    char p[600];
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    return skl_model_merge_to(m, IN_SCRATCH(p, "merged"), &mp, NULL, NULL);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: alloc_sweep MODELS_DIR [STRIDE_AFTER]\n");
        return 2;
    }
    models = argv[1];
    long stride_after = argc == 3 ? atol(argv[2]) : 4000;
    snprintf(scratch, sizeof scratch, "/tmp/skl_alloc_XXXXXX");
    if (!mkdtemp(scratch)) return 2;
    static const scenario sc[] = {
        {"load (single file with tokenizer, sharded directory)", "models/serial_mha_silu_glu", run_load},
        {"context + eval", "models/serial_mha_silu_glu", run_eval},
        {"tokenize + detokenize + streaming", "models/tok_plain", run_tokenize},
        {"generate", "models/tok_plain", run_generate},
        {"merge (with verification)", "models/serial_mha_silu_glu", run_merge},
        {"save (shards, one file)", "models/sharded_parallel_mha_gelu_mlp_tied_bf16", run_save},
        {"streaming merge (with verification)", "models/serial_mha_silu_glu", run_merge_to},
    };
    for (size_t s = 0; s < sizeof sc / sizeof *sc; s++) {
        skl_model *m = load(sc[s].model);
        int rc0;
        float *base = logits_of(m, &rc0);
        if (!base) return 2;
        rm_scratch();
        int want_ok = sc[s].run(m); /* the scenario without failures */
        CHECK(want_ok == SKL_OK, "%s: fails without an injected failure: %s", sc[s].name, skl_last_error());
        rm_scratch();
        long n = 1, tried = 0, nomem = 0, recovered = 0;
        for (;; n += n < stride_after ? 1 : 7) {
            arm(n);
            int rc = sc[s].run(m);
            bool hit = injected;
            disarm();
            tried++;
            if (!hit) break; /* n is past the scenario's allocations */
            if (rc == SKL_ERR_NOMEM) nomem++;
            else if (rc == SKL_OK) recovered++;
            else CHECK(0, "%s: allocation %ld failed: got %s, not SKL_ERR_NOMEM: %s", sc[s].name, n,
                       skl_status_name(rc), skl_last_error());
            CHECK(__lsan_do_recoverable_leak_check() == 0, "%s: allocation %ld failed: a leak (above)", sc[s].name, n);
            CHECK(same_logits(m, base), "%s: allocation %ld failed: the model no longer gives its logits", sc[s].name, n);
            CHECK(clear_dir(scratch) == 0, "%s: allocation %ld failed: a temporary was left in %s", sc[s].name, n,
                  scratch);
            if (failures > 20) break;
        }
        printf("alloc_sweep: %-52s %5ld allocations, %5ld failures injected: %ld SKL_ERR_NOMEM, %ld recovered\n",
               sc[s].name, n - 1, tried - 1, nomem, recovered);
        fflush(stdout);
        free(base);
        skl_model_free(m);
    }
    rmdir(scratch);
    printf("alloc_sweep: %s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
