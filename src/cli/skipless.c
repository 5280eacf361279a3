/* skipless - command-line tool for libskipless.
 *   skipless info MODEL
 *   skipless generate MODEL (--prompt TEXT | --tokens 1,2,3) [-n N] [-c N] [--temp T] [--top-k K]
 *                          [--top-p P] [--seed S] [--threads T]
 *   skipless logits MODEL --tokens 1,2,3 --out FILE.npy [--decode]
 *   skipless tokenize MODEL --text TEXT [--plain]
 *   skipless detokenize MODEL --tokens 1,2,3
 *   skipless merge MODEL OUT [--remove R] [--dtype D] [--keep NAMES] ...
 *   skipless quantize MODEL OUT --type q8_0|q4_0 [--keep NAMES] [--format dir|file] [--max-shard-size SIZE]
 *   skipless bench (MODEL | --blas) [--threads T] ... [--json]   (src/cli/bench.c)
 * Exit code 0 on success; on error one line on stderr and a non-zero code. */
#include "skipless.h"
#include "cli/bench.h"
#include "cli/util.h"
#include "tools/npy.h"

#include <errno.h>
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *usage =
    "usage: skipless COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  info MODEL                         hyper-parameters, weight counts, weight and KV cache bytes\n"
    "  generate MODEL (--prompt TEXT | --tokens 1,2,3) [-n N] [-c|--ctx N] [--temp T] [--top-k K]\n"
    "           [--top-p P] [--seed S] [--threads T] [--stop 1,2] [--no-eos-stop] [--ids]\n"
    "                                     stream generated text (ids with --ids or without a\n"
    "                                     tokenizer) to stdout, memory and stats to stderr; stops\n"
    "                                     at the eos token unless --no-eos-stop; -c: context\n"
    "                                     positions (KV cache), 1..max_position_embeddings,\n"
    "                                     default the smaller of 4096 and that\n"
    "  tokenize MODEL --text TEXT [--plain]\n"
    "                                     print the token ids, comma-separated (added tokens\n"
    "                                     in TEXT recognised unless --plain; no BOS/EOS)\n"
    "  detokenize MODEL --tokens 1,2,3    print the text of the ids\n"
    "  plan CONFIG.json [--json]          weights removed by each merge, from a config alone\n"
    "                                     (ours, or Hugging Face Llama/Mistral/GPT-NeoX)\n"
    "  merge MODEL OUT [--remove auto|qp|kp|vp|q|p] [--verify] [--format dir|file]\n"
    "                  [--dtype f32|f16|bf16|same|q8_0|q4_0]  storage of the changed weights (default\n"
    "                                     f32); q8_0, q4_0: every linear weight quantized, the changed\n"
    "                                     ones once from float64\n"
    "                  [--keep NAME[,NAME]]  with q8_0/q4_0: layers left unquantized (as quantize)\n"
    "                  [--max-shard-size SIZE]     dir: shards of at most SIZE (5GB, 500MB, 1GiB; default 5GB)\n"
    "                  [--in-memory]      build the whole merged model, then save (default: streamed)\n"
    "                                     remove weights exactly and save the merged model, each\n"
    "                                     tensor written when final (memory: about one block)\n"
    "  quantize MODEL OUT --type q8_0|q4_0 [--keep NAME[,NAME]] [--format dir|file]\n"
    "                  [--max-shard-size SIZE]\n"
    "                                     quantize every linear layer (lm_head too) in groups of 32\n"
    "                                     inputs, streamed tensor by tensor; the embedding, biases and\n"
    "                                     norm are copied.  --keep: layers left as they are, each\n"
    "                                     lm_head, a projection (q_proj .. down_proj: every block's)\n"
    "                                     or a module (model.layers.3.mlp.down_proj)\n"
    "  logits MODEL --tokens 1,2,3 --out FILE.npy [--decode] [--threads T]\n"
    "                                     write float32 logits [n_tokens, vocab] as .npy;\n"
    "                                     --decode feeds tokens one at a time\n"
    SKL_BENCH_USAGE
    "\n"
    "MODEL is a directory (config.json + model.safetensors [+ tokenizer.json]) or a\n"
    ".safetensors file with the config (and tokenizer) in its metadata.  See\n"
    "docs/model-format.md.\n";

static const char *act_name(skl_activation a) {
    switch (a) {
    case SKL_ACT_SILU: return "silu";
    case SKL_ACT_GELU: return "gelu";
    case SKL_ACT_GELU_TANH: return "gelu_tanh";
    default: return "relu";
    }
}

static void print_plan(const skl_plan *p) {
    printf("merge plan (paper's counting: linear layers + input and output embeddings):\n");
    printf("  %-6s %16s %16s %16s %9s %9s  %s\n", "remove", "total", "removed", "after", "saving", "speedup", "kind");
    for (int i = 0; i < p->n_rows; i++) {
        const skl_plan_row *r = skl_plan_row_at(p, i);
        if (!r->applicable) {
            printf("  %-6s %16s  not applicable: %s\n", skl_removal_name(r->removal), "", r->note);
            continue;
        }
        printf("  %-6s %16llu %16llu %16llu %8.2f%% %8.3fx  %s: %s\n", skl_removal_name(r->removal),
               (unsigned long long)r->total, (unsigned long long)r->removed, (unsigned long long)r->after,
               r->saving_percent, r->speedup_bound, r->lossless ? "lossless" : "trained form", r->note);
    }
}

static int cmd_plan(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-') return usage_error("plan: unknown option %s", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("plan: unexpected argument '%s'", argv[i]);
    }
    if (!path) return usage_error("plan: missing CONFIG.json");
    skl_plan *plan;
    int rc = skl_plan_config(path, &plan);
    if (rc) return lib_error("plan", rc);
    const skl_plan p = *plan; /* the fields of this header's version */
    if (!json) {
        printf("%s: %s blocks, hidden %d, kv dim %d, FFN %d (%s), %d layers, vocab %d%s\n", path,
               p.block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial", p.hidden_size, p.kv_dim,
               p.intermediate_size, p.glu ? "GLU" : "MLP", p.num_hidden_layers, p.vocab_size,
               p.final_norm ? ", final norm" : "");
        print_plan(plan);
        skl_plan_free(plan);
        return 0;
    }
    json_t *j = json_object(), *rows = json_array();
    put_str(j, "config", path);
    put_str(j, "block_type", p.block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial");
    put_int(j, "total", (long long)p.total);
    for (int i = 0; i < p.n_rows; i++) {
        const skl_plan_row *r = skl_plan_row_at(plan, i);
        json_t *row = json_object();
        put_str(row, "remove", skl_removal_name(r->removal));
        put_bool(row, "applicable", r->applicable);
        put_bool(row, "lossless", r->lossless);
        put_int(row, "total", (long long)r->total);
        put_int(row, "removed", (long long)r->removed);
        put_int(row, "after", (long long)r->after);
        put_real(row, "saving_percent", r->saving_percent);
        put_real(row, "speedup_bound", r->speedup_bound);
        put_str(row, "note", r->note);
        json_array_append_new(rows, row);
    }
    json_object_set_new(j, "removals", rows);
    skl_plan_free(plan);
    return print_json(j);
}

/* Progress of the streaming merge on stderr: block i of L, the rate by docs/merge.md's
 * formula (merge_flops, util.h), and the time left at that rate. */
typedef struct merge_meter {
    double t0, d, e, f, V;
    bool tty;
} merge_meter;

static int merge_progress(uint64_t done, uint64_t total, void *ud) {
    merge_meter *mm = ud;
    double dt = now_s() - mm->t0, flops = merge_flops(mm->d, mm->e, mm->f, mm->V, (double)done);
    double left = dt / flops * (merge_flops(mm->d, mm->e, mm->f, mm->V, (double)total) - flops);
    fprintf(stderr, "%sblock %llu of %llu, %.1f GFLOP/s, %.0f s left%s", mm->tty ? "\r" : "",
            (unsigned long long)done, (unsigned long long)total, flops / fmax(dt, 1e-9) / 1e9, left,
            mm->tty && done < total ? "" : "\n");
    return 0;
}

/* The save options merge and quantize share: --format and --max-shard-size (value val);
 * 1 when `a` is one of them (handled, or *rc an exit code), 0 when it is not. */
static int save_option(const char *cmd, const char *a, const char *val, skl_save_params *sv, int *rc) {
    *rc = 0;
    if (!strcmp(a, "--max-shard-size")) {
        if (parse_size(val, &sv->max_shard_size))
            *rc = usage_error("%s: --max-shard-size must be a size > 0 in bytes or with KB, MB, GB, "
                              "KiB, MiB or GiB (e.g. 5GB, 500MB, 1GiB), got '%s'", cmd, val);
        return 1;
    }
    if (strcmp(a, "--format") != 0) return 0;
    if (!strcmp(val, "dir")) sv->format = SKL_SAVE_DIR;
    else if (!strcmp(val, "file")) sv->format = SKL_SAVE_FILE;
    else *rc = usage_error("%s: --format must be dir or file, got '%s'", cmd, val);
    return 1;
}

/* --keep's names (parse_keep) or a usage error; the layers they name are checked against the model later. */
static int keep_option(const char *cmd, const char *val, char ***keep, int32_t *n, long *max_layer) {
    free(*keep);
    *keep = NULL;
    if (parse_keep(val, keep, n, max_layer))
        return usage_error("%s: --keep must be comma-separated layer names: lm_head, q_proj, k_proj, v_proj, o_proj, "
                           "gate_proj, up_proj, down_proj, or modules such as model.layers.0.mlp.down_proj; got '%s'",
                           cmd, val);
    return 0;
}

/* A module --keep names beyond the model's layers: a usage error found once the model says its layer count. */
static int keep_beyond(const char *cmd, long max_layer, const skl_model *m, const char *path) {
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    if (max_layer < hp.num_hidden_layers) return 0;
    return usage_error("%s: --keep names layer %ld, but %s has %d layers", cmd, max_layer, path, hp.num_hidden_layers);
}

static int cmd_merge(int argc, char **argv) {
    const char *in = NULL, *outp = NULL;
    skl_merge_params mp;
    skl_merge_params_init(&mp, sizeof mp);
    mp.verify = false;
    mp.progress = merge_progress;
    skl_save_params sv;
    skl_save_params_init(&sv, sizeof sv);
    bool in_memory = false;
    char **keep = NULL;
    long keep_layer = -1;
    int orc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        orc = 0;
        if (!strcmp(a, "--verify")) mp.verify = true;
        else if (!strcmp(a, "--in-memory")) in_memory = true;
        else if (!strcmp(a, "--remove") || !strcmp(a, "--format") || !strcmp(a, "--dtype") ||
                 !strcmp(a, "--max-shard-size") || !strcmp(a, "--keep")) {
            if (!val) orc = usage_error("merge: option %s needs a value", a);
            else if (save_option("merge", a, val, &sv, &orc)) {
            } else if (!strcmp(a, "--keep")) {
                orc = keep_option("merge", val, &keep, &mp.n_keep, &keep_layer);
                mp.keep = (const char *const *)keep;
            } else if (!strcmp(a, "--dtype")) {
                if (skl_dtype_parse(val, &mp.dtype))
                    orc = usage_error("merge: --dtype must be f32, f16, bf16, same, q8_0 or q4_0, got '%s'", val);
            } else if (skl_removal_parse(val, &mp.remove)) {
                orc = usage_error("merge: --remove must be auto, qp, kp, vp, q or p, got '%s'", val);
            }
            i++;
        } else if (a[0] == '-') orc = usage_error("merge: unknown option %s", a);
        else if (!in) in = a;
        else if (!outp) outp = a;
        else orc = usage_error("merge: unexpected argument '%s'", a);
        if (orc) {
            free(keep);
            return orc;
        }
    }
    if (keep && mp.dtype != SKL_DTYPE_Q8_0 && mp.dtype != SKL_DTYPE_Q4_0) {
        free(keep);
        return usage_error("merge: --keep goes with --dtype q8_0 or q4_0");
    }
    if (!in || !outp) {
        free(keep);
        return usage_error("merge: need MODEL and OUT");
    }
    skl_model *m = NULL, *merged = NULL;
    skl_merge_report *rep = NULL;
    int ret = 0, rc = skl_model_load(in, NULL, &m);
    if (rc) { ret = lib_error("load", rc); goto out; }
    if ((ret = keep_beyond("merge", keep_layer, m, in))) goto out;
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    merge_meter meter = {now_s(), hp.hidden_size, (double)hp.num_key_value_heads * hp.head_dim, hp.intermediate_size,
                         hp.vocab_size, isatty(2)};
    mp.progress_user_data = &meter;
    /* the streaming merge: each merged tensor written when final, memory about one block;
     * --in-memory: the whole merged model first, then saved (for comparison, bench/merge_memory.sh) */
    if (in_memory) rc = skl_model_merge(m, &mp, &merged, &rep);
    else rc = skl_model_merge_to(m, outp, &mp, &sv, &rep);
    if (rc) { ret = lib_error("merge", rc); goto out; }
    if (in_memory && (rc = skl_model_save_v2(merged, outp, &sv))) { ret = lib_error("save", rc); goto out; }
    printf("removed %s from %s\n", skl_removal_name(rep->removal), in);
    printf("  %5s %-8s %14s %14s %12s %12s\n", "layer", "removed", "before", "after", "kappa", "residual");
    for (int i = 0; i < rep->n_layers; i++) {
        const skl_merge_layer *l = skl_merge_report_layer(rep, i);
        char what[8] = "";
        if (l->removed_q) strcat(what, "q");
        if (l->removed_k) strcat(what, "k");
        if (l->removed_v) strcat(what, "v");
        if (l->removed_o) strcat(what, "o");
        if (!what[0]) strcpy(what, "-");
        printf("  %5d %-8s %14llu %14llu %12.4g %12.3g\n", l->layer, what, (unsigned long long)l->weights_before,
               (unsigned long long)l->weights_after, l->condition, l->residual);
    }
    printf("total weights: %llu -> %llu (%.2f%% removed, decode speedup bound %.3fx)\n",
           (unsigned long long)rep->weights_before, (unsigned long long)rep->weights_after,
           100.0 * (double)(rep->weights_before - rep->weights_after) / (double)rep->weights_before,
           (double)rep->weights_before / (double)rep->weights_after);
    printf("max condition number %.4g, max solve residual %.3g, merge time %.3f s\n", rep->max_condition,
           rep->max_residual, rep->seconds);
    if (isnan(rep->verify_error))
        printf("verification: inconclusive over %d probe tokens: the original model's own probe logits are all "
               "zero or not finite (its activations vanish or overflow), so they cannot show a difference\n",
               rep->n_probe_tokens);
    else if (rep->verify_error >= 0)
        printf("verification: max relative logit difference %.3g over %d probe tokens\n", rep->verify_error,
               rep->n_probe_tokens);
    printf("saved %s\n", outp);
out:
    skl_merge_report_free(rep);
    skl_model_free(merged);
    skl_model_free(m);
    free(keep);
    return ret;
}

/* Progress of the quantization on stderr: block i of L + 1 (the head last) and the time left. */
static int quantize_progress(uint64_t done, uint64_t total, void *ud) {
    const merge_meter *mm = ud;
    double dt = now_s() - mm->t0;
    fprintf(stderr, "%squantized block %llu of %llu, %.0f s left%s", mm->tty ? "\r" : "", (unsigned long long)done,
            (unsigned long long)total, dt / (double)done * (double)(total - done), mm->tty && done < total ? "" : "\n");
    return 0;
}

/* The weights of a model's linear layers per dtype, for info and quantize: "Q8_0 1234, F16 56" and `end`. */
static void print_dtype_weights(const skl_model *m, const char *end) {
    const char *sep = "";
    for (int d = SKL_DTYPE_F32; d <= SKL_DTYPE_Q4_0; d++) {
        uint64_t n = skl_model_dtype_weights(m, (skl_dtype)d);
        if (!n) continue;
        printf("%s%s %llu", sep, skl_dtype_name((skl_dtype)d), (unsigned long long)n);
        sep = ", ";
    }
    printf("%s\n", end);
}

/* Its option loop has cmd_merge's shape, as every command's has: an intentional twin. */
static int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *outp = NULL;
    skl_quantize_params qp;
    skl_quantize_params_init(&qp, sizeof qp);
    qp.progress = quantize_progress;
    skl_save_params sv;
    skl_save_params_init(&sv, sizeof sv);
    char **keep = NULL;
    long keep_layer = -1;
    bool typed = false;
    int orc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        orc = 0;
        if (!strcmp(a, "--type") || !strcmp(a, "--keep") || !strcmp(a, "--format") || !strcmp(a, "--max-shard-size")) {
            if (!val) orc = usage_error("quantize: option %s needs a value", a);
            else if (save_option("quantize", a, val, &sv, &orc)) {
            } else if (!strcmp(a, "--keep")) {
                orc = keep_option("quantize", val, &keep, &qp.n_keep, &keep_layer);
                qp.keep = (const char *const *)keep;
            } else if (!skl_dtype_parse(val, &qp.dtype) && (qp.dtype == SKL_DTYPE_Q8_0 || qp.dtype == SKL_DTYPE_Q4_0)) {
                typed = true;
            } else {
                orc = usage_error("quantize: --type must be q8_0 or q4_0, got '%s'", val);
            }
            i++;
        } else if (a[0] == '-') orc = usage_error("quantize: unknown option %s (see skipless --help)", a);
        else if (!in) in = a;
        else if (!outp) outp = a;
        else orc = usage_error("quantize: unexpected argument '%s'", a);
        if (orc) {
            free(keep);
            return orc;
        }
    }
    if (!in || !outp || !typed) {
        free(keep);
        return usage_error("quantize: need MODEL, OUT and --type q8_0|q4_0");
    }
    skl_model *m = NULL, *q = NULL;
    int ret = 0, rc = skl_model_load(in, NULL, &m);
    merge_meter meter = {now_s(), 0, 0, 0, 0, isatty(2)};
    qp.progress_user_data = &meter;
    if (rc) ret = lib_error("load", rc);
    else if ((ret = keep_beyond("quantize", keep_layer, m, in))) {
    } else if ((rc = skl_model_quantize_to(m, outp, &qp, &sv))) ret = lib_error("quantize", rc);
    else if ((rc = skl_model_load(outp, NULL, &q))) ret = lib_error("load the quantized model", rc);
    else {
        char a[BYTES_STR], b[BYTES_STR];
        printf("quantized %s to %s\n", in, skl_dtype_name(qp.dtype));
        printf("  linear weights by dtype: ");
        print_dtype_weights(q, "");
        printf("  weight bytes: %s -> %s (scales included)\n", bytes_str(skl_model_weight_bytes(m), a),
               bytes_str(skl_model_weight_bytes(q), b));
        printf("  decode bytes per token: %s -> %s\n", bytes_str(skl_model_decode_bytes(m), a),
               bytes_str(skl_model_decode_bytes(q), b));
        printf("saved %s\n", outp);
    }
    skl_model_free(q);
    skl_model_free(m);
    free(keep);
    return ret;
}

static int cmd_info(int argc, char **argv) {
    if (argc != 1) return usage_error("info: expected exactly one MODEL argument");
    if (argv[0][0] == '-') return usage_error("info: unknown option %s (see skipless --help)", argv[0]);
    skl_model *m;
    int rc = skl_model_load(argv[0], NULL, &m);
    if (rc) return lib_error("load", rc);
    skl_hparams hp;
    skl_weight_counts wc;
    skl_model_hparams(m, &hp, sizeof hp);
    skl_model_weight_counts(m, &wc, sizeof wc);
    const char *kind = hp.num_key_value_heads == hp.num_attention_heads ? "MHA"
                       : hp.num_key_value_heads == 1                   ? "MQA"
                                                                       : "GQA";
    printf("model:              %s\n", argv[0]);
    printf("block type:         %s\n", hp.block_type == SKL_BLOCK_PARALLEL ? "parallel" : "serial");
    printf("attention:          %s (%d heads, %d kv heads, head_dim %d)\n", kind, hp.num_attention_heads,
           hp.num_key_value_heads, hp.head_dim);
    printf("hidden_size:        %d\n", hp.hidden_size);
    printf("num_hidden_layers:  %d\n", hp.num_hidden_layers);
    printf("intermediate_size:  %d (%s, %s)\n", hp.intermediate_size, hp.glu ? "GLU" : "MLP", act_name(hp.hidden_act));
    printf("vocab_size:         %d\n", hp.vocab_size);
    printf("max_positions:      %d\n", hp.max_position_embeddings);
    if (hp.use_rope)
        printf("position embedding: RoPE theta %g, %d of %d dims rotated\n", (double)hp.rope_theta, hp.rotary_dim,
               hp.head_dim);
    else
        printf("position embedding: none\n");
    printf("final norm:         %s\n", hp.final_norm ? "RMSNorm" : "none");
    printf("tied embeddings:    %s\n", hp.tie_word_embeddings ? "yes" : "no");
    int absent[4] = {0, 0, 0, 0};
    const char which[4] = {'q', 'k', 'v', 'o'};
    for (int l = 0; l < hp.num_hidden_layers; l++)
        for (int i = 0; i < 4; i++) absent[i] += skl_model_has_proj(m, l, which[i]) == 0;
    printf("absent projections: q %d, k %d, v %d, o %d (of %d layers; absent = identity)\n", absent[0], absent[1],
           absent[2], absent[3], hp.num_hidden_layers);
    printf("weights:\n");
    struct { const char *name; uint64_t n; } rows[] = {
        {"embed_tokens", wc.embed}, {"q_proj", wc.q}, {"k_proj", wc.k}, {"v_proj", wc.v},
        {"o_proj", wc.o}, {"gate_proj", wc.gate}, {"up_proj", wc.up}, {"down_proj", wc.down},
        {"lm_head", wc.head}, {"biases", wc.bias}, {"norm", wc.norm}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("  %-14s %14llu\n", rows[i].name, (unsigned long long)rows[i].n);
    printf("  %-14s %14llu  (linear layers + embeddings%s)\n", "total", (unsigned long long)wc.linear_total,
           hp.tie_word_embeddings ? "; tied head counted once more" : "");
    char wb[BYTES_STR], db[BYTES_STR], kv[BYTES_STR], kv_max[BYTES_STR];
    int32_t n_ctx = cli_n_ctx(0, hp.max_position_embeddings);
    printf("weight dtype:       %s (linear layers and lm_head: ", skl_model_weight_dtype(m));
    print_dtype_weights(m, ")");
    printf("weight bytes:       %s in their stored dtypes (quantization scales included)\n",
           bytes_str(skl_model_weight_bytes(m), wb));
    printf("decode bytes:       %s a token (linear layers, lm_head, one embedding row)\n",
           bytes_str(skl_model_decode_bytes(m), db));
    printf("KV cache bytes:     %s at generate's default context %d; %s at max_positions %d\n",
           bytes_str(skl_model_kv_bytes(m, n_ctx), kv), n_ctx, bytes_str(skl_model_kv_bytes(m, 0), kv_max),
           hp.max_position_embeddings);
    skl_plan *plan;
    if ((rc = skl_model_plan(m, &plan))) {
        skl_model_free(m);
        return lib_error("plan", rc);
    }
    print_plan(plan);
    skl_plan_free(plan);
    skl_model_free(m);
    return 0;
}

typedef struct {
    int32_t count;
    int ids; /* --ids: print token ids even when the model has a tokenizer */
} stream_state;

static int on_token(int32_t token, const char *piece, void *ud) {
    stream_state *s = ud;
    if (s->ids && token < 0) return 0; /* the final flush of pending text bytes */
    if (piece && !s->ids) fputs(piece, stdout);
    else printf(s->count ? ",%d" : "%d", token);
    fflush(stdout);
    s->count++;
    return 0;
}

/* Tokenize into a malloc'd array (size query first). */
static int tokenize_alloc(const skl_model *m, const char *text, unsigned flags, int32_t **out, size_t *n) {
    size_t len = strlen(text), need = 0;
    *out = NULL;
    int rc = skl_tokenize(m, text, len, NULL, 0, &need, flags);
    if (rc && rc != SKL_ERR_BUFFER_TOO_SMALL) return rc;
    int32_t *t = malloc((need ? need : 1) * sizeof *t);
    if (!t) return SKL_ERR_NOMEM;
    if ((rc = skl_tokenize(m, text, len, t, need, n, flags))) {
        free(t);
        return rc;
    }
    *out = t;
    return SKL_OK;
}

static int cmd_tokenize(int argc, char **argv) {
    const char *model_path = NULL, *text = NULL;
    unsigned flags = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--plain")) flags |= SKL_TOKENIZE_PLAIN;
        else if (!strcmp(a, "--text")) {
            if (i + 1 >= argc) return usage_error("tokenize: option %s needs a value", a);
            text = argv[++i];
        } else if (a[0] == '-') return usage_error("tokenize: unknown option %s (see skipless --help)", a);
        else if (!model_path) model_path = a;
        else return usage_error("tokenize: unexpected argument '%s'", a);
    }
    if (!model_path || !text) return usage_error("tokenize: need MODEL and --text TEXT");
    skl_model *m = NULL;
    int32_t *toks = NULL;
    size_t n = 0;
    int ret = 0, rc = skl_model_load(model_path, NULL, &m);
    if (rc) ret = lib_error("load", rc);
    else if ((rc = tokenize_alloc(m, text, flags, &toks, &n))) ret = lib_error("tokenize", rc);
    else {
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", toks[i]);
        printf("\n");
    }
    free(toks);
    skl_model_free(m);
    return ret;
}

/* Its option loop has the shape of cmd_tokenize's, as every command's has: an
 * intentional twin, each command parsing its own options. */
static int cmd_detokenize(int argc, char **argv) {
    const char *model_path = NULL, *tokens_s = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokens")) {
            if (i + 1 >= argc) return usage_error("detokenize: option %s needs a value", a);
            tokens_s = argv[++i];
        } else if (a[0] == '-') return usage_error("detokenize: unknown option %s (see skipless --help)", a);
        else if (!model_path) model_path = a;
        else return usage_error("detokenize: unexpected argument '%s'", a);
    }
    if (!model_path || !tokens_s) return usage_error("detokenize: need MODEL and --tokens 1,2,3");
    int32_t *toks = NULL, n = 0;
    if (!*tokens_s) toks = malloc(sizeof *toks); /* "" : no tokens */
    else if (parse_tokens(tokens_s, &toks, &n))
        return usage_error("detokenize: --tokens must be comma-separated integers, got '%s'", tokens_s);
    skl_model *m = NULL;
    char *text = NULL;
    size_t len = 0;
    int ret = 0, rc = skl_model_load(model_path, NULL, &m);
    if (rc) ret = lib_error("load", rc);
    else if ((rc = skl_detokenize(m, toks, (size_t)n, NULL, 0, &len)) && rc != SKL_ERR_BUFFER_TOO_SMALL)
        ret = lib_error("detokenize", rc);
    else if (!(text = malloc(len + 1))) ret = runtime_error("detokenize: out of memory");
    else if ((rc = skl_detokenize(m, toks, (size_t)n, text, len + 1, &len))) ret = lib_error("detokenize", rc);
    else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    free(text);
    free(toks);
    skl_model_free(m);
    return ret;
}

static int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *tokens_s = NULL, *prompt = NULL, *stop_s = NULL;
    skl_generate_params gp;
    skl_generate_params_init(&gp, sizeof gp);
    skl_sampler_params sp;
    skl_sampler_params_init(&sp, sizeof sp);
    gp.sampling = &sp;
    long threads = 1, v, n_ctx = 0;
    int eos_stop = 1, ids = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (opt_value(argc, argv, &i, "-c", "--ctx", &val)) {
            if (!val) return usage_error("generate: option %s needs a value", a);
            if (parse_long(val, 1, INT32_MAX, &n_ctx))
                return usage_error("generate: -c/--ctx must be an integer in [1, max_position_embeddings], got '%s'", val);
            continue;
        }
        if (!strcmp(a, "--no-eos-stop")) {
            eos_stop = 0;
            continue;
        }
        if (!strcmp(a, "--ids")) {
            ids = 1;
            continue;
        }
        int takes = strcmp(a, "--tokens") == 0 || strcmp(a, "--prompt") == 0 || strcmp(a, "-n") == 0 ||
                    strcmp(a, "--temp") == 0 || strcmp(a, "--top-k") == 0 || strcmp(a, "--top-p") == 0 ||
                    strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "--stop") == 0;
        if (takes && !val) return usage_error("generate: option %s needs a value", a);
        if (!strcmp(a, "--tokens")) tokens_s = val;
        else if (!strcmp(a, "--prompt")) prompt = val;
        else if (!strcmp(a, "--stop")) stop_s = val;
        else if (!strcmp(a, "-n")) {
            if (parse_long(val, 0, INT32_MAX, &v)) return usage_error("generate: -n must be an integer >= 0, got '%s'", val);
            gp.max_tokens = (int32_t)v;
        } else if (!strcmp(a, "--temp")) {
            if (parse_float(val, &sp.temperature)) return usage_error("generate: --temp must be a number, got '%s'", val);
        } else if (!strcmp(a, "--top-k")) {
            if (parse_long(val, 0, INT32_MAX, &v)) return usage_error("generate: --top-k must be an integer >= 0, got '%s'", val);
            sp.top_k = (int32_t)v;
        } else if (!strcmp(a, "--top-p")) {
            if (parse_float(val, &sp.top_p)) return usage_error("generate: --top-p must be a number, got '%s'", val);
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(val, &sp.seed)) return usage_error("generate: --seed must be an unsigned integer, got '%s'", val);
        } else if (!strcmp(a, "--threads")) {
            if (parse_long(val, 1, 1024, &threads)) return usage_error("generate: --threads must be 1..1024, got '%s'", val);
        } else if (a[0] == '-') {
            return usage_error("generate: unknown option %s (see skipless --help)", a);
        } else if (!model_path) {
            model_path = a;
            continue;
        } else {
            return usage_error("generate: unexpected argument '%s'", a);
        }
        i++;
    }
    if (!model_path) return usage_error("generate: missing MODEL");
    if (!tokens_s == !prompt) return usage_error("generate: give either --tokens 1,2,3 or --prompt TEXT");
    int32_t *toks = NULL, n = 0, *stops = NULL, n_stops = 0;
    if (tokens_s && parse_tokens(tokens_s, &toks, &n))
        return usage_error("generate: --tokens must be comma-separated integers, got '%s'", tokens_s);
    if (stop_s && parse_tokens(stop_s, &stops, &n_stops)) {
        free(toks);
        return usage_error("generate: --stop must be comma-separated integers, got '%s'", stop_s);
    }
    skl_model *m = NULL;
    skl_context *ctx = NULL;
    int ret = 0;
    double t0 = now_s();
    int rc = skl_model_load(model_path, NULL, &m);
    if (rc) { ret = lib_error("load", rc); goto out; }
    double t_load = now_s() - t0;
    if (prompt) {
        size_t nt = 0;
        if ((rc = tokenize_alloc(m, prompt, 0, &toks, &nt))) { ret = lib_error("tokenize", rc); goto out; }
        if (nt > INT32_MAX) { ret = runtime_error("generate: prompt too long"); goto out; }
        n = (int32_t)nt;
    }
    int32_t eos = skl_token_eos(m);
    if (eos_stop && eos >= 0) { /* stop at the eos token too */
        int32_t *ns = realloc(stops, ((size_t)n_stops + 1) * sizeof *ns);
        if (!ns) { ret = runtime_error("generate: out of memory"); goto out; }
        stops = ns;
        stops[n_stops++] = eos;
    }
    gp.stop_tokens = stops;
    gp.n_stop_tokens = n_stops;
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    if (n_ctx > hp.max_position_embeddings) { /* a usage error found once the model says its limit */
        ret = usage_error("generate: -c/--ctx %ld exceeds the max_position_embeddings %d of %s", n_ctx,
                          hp.max_position_embeddings, model_path);
        goto out;
    }
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_threads = (int32_t)threads;
    cp.n_ctx = cli_n_ctx(n_ctx, hp.max_position_embeddings);
    if ((rc = skl_context_create(m, &cp, &ctx))) { ret = lib_error("context", rc); goto out; }
    stream_state st = {0, ids};
    skl_generate_result res;
    rc = skl_generate(ctx, toks, n, &gp, on_token, &st, &res, sizeof res);
    printf("\n");
    if (rc) { ret = lib_error("generate", rc); goto out; }
    static const char *reasons[] = {"max tokens", "stop token", "callback", "context full", "error"};
    char wb[BYTES_STR], kvb[BYTES_STR];
    fprintf(stderr, "load %.3f s | weights %s | KV cache %s, %d positions | prompt %d tokens in %.3f s (%.1f tok/s) | "
            "generated %d tokens in %.3f s (%.1f tok/s) | stop: %s\n",
            t_load, bytes_str(skl_model_weight_bytes(m), wb), bytes_str(skl_model_kv_bytes(m, cp.n_ctx), kvb), cp.n_ctx,
            n, res.prompt_seconds, n / (res.prompt_seconds > 0 ? res.prompt_seconds : 1e-9), res.n_generated,
            res.decode_seconds, res.n_generated / (res.decode_seconds > 0 ? res.decode_seconds : 1e-9),
            reasons[res.stop_reason]);
out:
    skl_context_free(ctx);
    skl_model_free(m);
    free(toks);
    free(stops);
    return ret;
}

static int cmd_logits(int argc, char **argv) {
    const char *model_path = NULL, *tokens_s = NULL, *out_path = NULL;
    int decode = 0;
    long threads = 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--decode")) { decode = 1; continue; }
        if (!strcmp(a, "--tokens") || !strcmp(a, "--out") || !strcmp(a, "--threads")) {
            if (!val) return usage_error("logits: option %s needs a value", a);
            if (!strcmp(a, "--tokens")) tokens_s = val;
            else if (!strcmp(a, "--out")) out_path = val;
            else if (parse_long(val, 1, 1024, &threads)) return usage_error("logits: --threads must be 1..1024, got '%s'", val);
            i++;
        } else if (a[0] == '-') {
            return usage_error("logits: unknown option %s (see skipless --help)", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return usage_error("logits: unexpected argument '%s'", a);
        }
    }
    if (!model_path || !tokens_s || !out_path) return usage_error("logits: need MODEL, --tokens and --out");
    int32_t *toks, n;
    if (parse_tokens(tokens_s, &toks, &n)) return usage_error("logits: --tokens must be comma-separated integers, got '%s'", tokens_s);
    skl_model *m = NULL;
    skl_context *ctx = NULL;
    float *all = NULL;
    int ret = 0, rc = skl_model_load(model_path, NULL, &m);
    if (rc) { ret = lib_error("load", rc); goto out; }
    skl_hparams hp;
    skl_model_hparams(m, &hp, sizeof hp);
    skl_context_params cp;
    skl_context_params_init(&cp, sizeof cp);
    cp.n_threads = (int32_t)threads;
    cp.n_ctx = n < hp.max_position_embeddings ? n : hp.max_position_embeddings; /* what the tokens need */
    cp.logits_all = !decode;
    if ((rc = skl_context_create(m, &cp, &ctx))) { ret = lib_error("context", rc); goto out; }
    all = malloc((size_t)n * (size_t)hp.vocab_size * sizeof *all);
    if (!all) { ret = runtime_error("logits: out of memory"); goto out; }
    if (decode) {
        for (int32_t i = 0; i < n; i++) {
            if ((rc = skl_eval(ctx, &toks[i], 1))) { ret = lib_error("eval", rc); goto out; }
            memcpy(all + (size_t)i * hp.vocab_size, skl_logits(ctx, NULL), (size_t)hp.vocab_size * sizeof *all);
        }
    } else {
        if ((rc = skl_eval(ctx, toks, n))) { ret = lib_error("eval", rc); goto out; }
        memcpy(all, skl_logits(ctx, NULL), (size_t)n * (size_t)hp.vocab_size * sizeof *all);
    }
    if (npy_write_f32(out_path, all, n, hp.vocab_size)) {
        ret = runtime_error("logits: cannot write %s: %s", out_path, strerror(errno));
        goto out;
    }
out:
    free(all);
    skl_context_free(ctx);
    skl_model_free(m);
    free(toks);
    return ret;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("skipless %s\n", skl_version());
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        }
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "logits")) return cmd_logits(argc - 2, argv + 2);
    if (!strcmp(argv[1], "plan")) return cmd_plan(argc - 2, argv + 2);
    if (!strcmp(argv[1], "merge")) return cmd_merge(argc - 2, argv + 2);
    if (!strcmp(argv[1], "quantize")) return cmd_quantize(argc - 2, argv + 2);
    if (!strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(argv[1], "detokenize")) return cmd_detokenize(argc - 2, argv + 2);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    return usage_error("unknown command '%s' (see skipless --help)", argv[1]);
}
