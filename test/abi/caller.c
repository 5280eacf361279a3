/* caller.c - a program built against a frozen copy of an older public header
 * (skipless-1.0.h, never edited), run against the library being tested: the
 * proof of the rule in include/skipless.h, "Versions and the ABI".
 *
 * Every struct that crosses the API in this program's memory is placed so
 * that it ends exactly at the start of an inaccessible page: a library that
 * read or wrote one byte past this header's sizeof of a struct would fault
 * here.  The Makefile (check-abi) runs it against the current library and
 * against a "grown" build of it, whose header appends a field to every
 * public struct, as a later minor version may. */
#include "skipless-1.0.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "abi: FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);                                     \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fprintf(stderr, " (last error: %s)\n", skl_last_error());                                                  \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

/* size bytes ending at an inaccessible page, filled with 0xA5 (never freed:
 * the program is short). */
static void *guarded(size_t size) {
    long page = sysconf(_SC_PAGESIZE);
    size_t span = ((size + (size_t)page - 1) / (size_t)page + 1) * (size_t)page;
    unsigned char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p + span - (size_t)page, (size_t)page, PROT_NONE) != 0) {
        perror("abi: mmap");
        exit(2);
    }
    unsigned char *s = p + span - (size_t)page - size;
    memset(s, 0xA5, size);
    return s;
}
#define GUARDED(type) ((type *)guarded(sizeof(type)))

typedef struct {
    int32_t toks[64];
    int n;
} collected;

static int collect(int32_t token, const char *piece, void *ud) {
    collected *c = ud;
    (void)piece;
    if (token >= 0 && c->n < 64) c->toks[c->n++] = token;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    CHECK(skl_version_number() / 10000 == SKL_VERSION_MAJOR, "library %s, header %s", skl_version(),
          SKL_VERSION_STRING);
    CHECK(skl_version_number() >= SKL_VERSION_NUMBER, "library %s older than header %s", skl_version(),
          SKL_VERSION_STRING);
    CHECK(skl_status_name(SKL_ERR_TOKEN) && !strcmp(skl_status_name(SKL_ERR_TOKEN), "SKL_ERR_TOKEN"), "status name");

    skl_blas_info *bi = GUARDED(skl_blas_info);
    CHECK(skl_blas_get_info(bi, sizeof *bi) == SKL_OK, "blas info");
    CHECK(bi->core && bi->detected_core && bi->cpu_isa && bi->auto_core, "blas info fields");

    skl_model_params *mp = GUARDED(skl_model_params);
    CHECK(skl_model_params_init(mp, sizeof *mp) == SKL_OK, "model params");
    CHECK(mp->struct_size == sizeof *mp && mp->use_mmap && !mp->progress, "model params defaults");
    skl_model *model = NULL;
    if (skl_model_load(argv[1], mp, &model) != SKL_OK) {
        fprintf(stderr, "abi: cannot load %s: %s\n", argv[1], skl_last_error());
        return 2;
    }
    skl_hparams *hp = GUARDED(skl_hparams);
    CHECK(skl_model_hparams(model, hp, sizeof *hp) == SKL_OK, "hparams");
    CHECK(hp->vocab_size > 0 && hp->hidden_size > 0 && hp->num_hidden_layers > 0, "hparams values");
    skl_weight_counts *wc = GUARDED(skl_weight_counts);
    CHECK(skl_model_weight_counts(model, wc, sizeof *wc) == SKL_OK, "weight counts");
    CHECK(wc->embed == (uint64_t)hp->vocab_size * (uint64_t)hp->hidden_size, "embed count %llu",
          (unsigned long long)wc->embed);
    size_t n_regions = 0;
    CHECK(skl_model_decode_regions(model, NULL, NULL, 0, &n_regions) == SKL_ERR_BUFFER_TOO_SMALL && n_regions > 0,
          "regions count");

    skl_plan *plan = NULL;
    CHECK(skl_model_plan(model, &plan) == SKL_OK && plan, "plan");
    for (int32_t i = 0; plan && i < plan->n_rows; i++) {
        const skl_plan_row *r = skl_plan_row_at(plan, i);
        CHECK(r && r->note && r->total == plan->total, "plan row %d", i);
    }
    skl_plan_free(plan);

    skl_context_params *cp = GUARDED(skl_context_params);
    CHECK(skl_context_params_init(cp, sizeof *cp) == SKL_OK, "context params");
    cp->n_threads = 2;
    skl_context *ctx = NULL;
    CHECK(skl_context_create(model, cp, &ctx) == SKL_OK, "context");

    skl_sampler_params *sp = GUARDED(skl_sampler_params);
    CHECK(skl_sampler_params_init(sp, sizeof *sp) == SKL_OK, "sampler params");
    sp->seed = 7;
    skl_generate_params *gp = GUARDED(skl_generate_params);
    CHECK(skl_generate_params_init(gp, sizeof *gp) == SKL_OK, "generate params");
    gp->sampling = sp;
    gp->max_tokens = 12;
    int32_t prompt[3] = {1, 2, 3};

    /* the same tokens pulled from a generator and pushed by skl_generate */
    collected pulled = {{0}, 0}, pushed = {{0}, 0};
    skl_generator *gen = NULL;
    CHECK(skl_generator_create(ctx, prompt, 3, gp, &gen) == SKL_OK, "generator");
    for (int step = 0; gen && step < 100; step++) {
        int32_t tok;
        const char *piece;
        if (skl_generator_next(gen, &tok, &piece, NULL) != SKL_OK || tok < 0) break;
        collect(tok, piece, &pulled);
    }
    skl_generate_result *res = GUARDED(skl_generate_result);
    CHECK(skl_generator_result(gen, res, sizeof *res) == SKL_OK && res->n_generated == pulled.n, "generator result");
    skl_generator_free(gen);
    CHECK(skl_kv_reset(ctx) == SKL_OK, "reset");
    CHECK(skl_generate(ctx, prompt, 3, gp, collect, &pushed, res, sizeof *res) == SKL_OK, "generate");
    CHECK(res->n_generated == pushed.n && pushed.n == pulled.n && pushed.n > 0, "generated %d and %d", pushed.n,
          pulled.n);
    CHECK(!memcmp(pushed.toks, pulled.toks, sizeof pushed.toks), "pulled and pushed tokens differ");
    skl_sampler *smp = NULL;
    CHECK(skl_sampler_create(sp, &smp) == SKL_OK, "sampler");
    skl_sampler_free(smp);
    skl_context_free(ctx);

    skl_merge_params *mg = GUARDED(skl_merge_params);
    CHECK(skl_merge_params_init(mg, sizeof *mg) == SKL_OK, "merge params");
    mg->verify = true;
    mg->n_probe_tokens = 8;
    skl_model *merged = NULL;
    skl_merge_report *rep = NULL;
    CHECK(skl_model_merge(model, mg, &merged, &rep) == SKL_OK && rep, "merge");
    if (rep) {
        CHECK(rep->n_layers == hp->num_hidden_layers && rep->weights_after < rep->weights_before, "report");
        for (int32_t i = 0; i < rep->n_layers; i++) {
            const skl_merge_layer *l = skl_merge_report_layer(rep, i);
            CHECK(l && l->layer == i && l->weights_after < l->weights_before, "report layer %d", i);
        }
        CHECK(rep->verify_error >= 0 && rep->verify_error < 1e-3, "verify error %g", rep->verify_error);
    }
    skl_merge_report_free(rep);
    skl_model_free(merged);
    skl_model_free(model);
    if (failures) return 1;
    printf("abi: caller built against skipless-1.0.h ran against libskipless %s: ok\n", skl_version());
    return 0;
}
