/* bench.h - the `skipless bench` command (src/cli/bench.c). */
#ifndef SKL_CLI_BENCH_H
#define SKL_CLI_BENCH_H

/* argv: the arguments after "bench"; returns the process exit code
 * (0 ok, 1 usage error, 2 library or system error). */
int cmd_bench(int argc, char **argv);

/* Lines for skipless --help. */
#define SKL_BENCH_USAGE \
    "  bench MODEL [--compare MODEL2] [--threads T] [--prompt-len N] [--gen N] [--repeat R]\n" \
    "        [--ceiling auto|weights|buffer] [--ceiling-mib M] [--no-mmap] [--json]\n" \
    "                                     prefill/decode tokens/s against a bandwidth ceiling (a\n" \
    "                                     read, before every decode step, of the memory a decode\n" \
    "                                     step reads, the model's own pages, also with --no-mmap;\n" \
    "                                     or of a buffer) and an sgemm measured in the same run\n" \
    "                                     (docs/performance.md); --compare: MODEL2 too, steps\n" \
    "                                     alternating, and its decode speedup over MODEL against\n" \
    "                                     the bound (bytes per token).  Defaults: --threads 1,\n" \
    "                                     --prompt-len 256, --gen 64, --repeat 3, --ceiling auto\n" \
    "                                     (weights if at least twice the last-level cache, else\n" \
    "                                     buffer), --ceiling-mib 1024\n" \
    "  bench --blas [--threads T] [--prompt-len N] [--ceiling-mib M] [--json]\n" \
    "                                     sgemm/sgemv before and after libskipless's OpenBLAS core check\n"

#endif
