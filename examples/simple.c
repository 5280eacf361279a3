/* simple.c - the smallest complete use of libskipless: load a model, generate
 * greedily from a token prompt, print the token ids as they stream.
 *   simple MODEL [TOKEN ...]                                            */
#include <skipless.h>

#include <stdio.h>
#include <stdlib.h>

static int print_token(int32_t token, const char *piece, void *user_data) {
    (void)user_data;
    if (piece) printf("%s", piece);
    else printf("%d ", token);
    fflush(stdout);
    return 0; /* nonzero would stop generation */
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [TOKEN ...]\n", argv[0]);
        return 1;
    }
    skl_model *model;
    int rc = skl_model_load(argv[1], NULL, &model);
    if (rc != SKL_OK) {
        fprintf(stderr, "load failed: %s\n", skl_last_error());
        return 1;
    }
    skl_context *ctx;
    if ((rc = skl_context_create(model, NULL, &ctx)) != SKL_OK) {
        fprintf(stderr, "context failed: %s\n", skl_last_error());
        skl_model_free(model);
        return 1;
    }
    int32_t prompt[64] = {0};
    int32_t n = 0;
    for (int i = 2; i < argc && n < 64; i++) prompt[n++] = (int32_t)atoi(argv[i]);
    if (n == 0) n = 1; /* token 0 */

    skl_generate_params gp;
    skl_generate_params_init(&gp, sizeof gp);
    skl_sampler_params sp;
    skl_sampler_params_init(&sp, sizeof sp);
    gp.sampling = &sp;
    sp.temperature = 0.0f; /* greedy */
    gp.max_tokens = 16;
    rc = skl_generate(ctx, prompt, n, &gp, print_token, NULL, NULL, 0);
    printf("\n");
    if (rc != SKL_OK) fprintf(stderr, "generate failed: %s\n", skl_last_error());
    skl_context_free(ctx);
    skl_model_free(model);
    return rc == SKL_OK ? 0 : 1;
}
