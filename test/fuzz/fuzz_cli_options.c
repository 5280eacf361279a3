/* fuzz_cli_options.c - the CLI's option parsing (src/cli/util.c) on arbitrary
 * argument vectors: the input's NUL-separated strings are argv; every option
 * form is scanned with opt_value as the commands do, and every value goes
 * through each value parser.  An accepted value must re-parse from its
 * canonical spelling to the same value. */
#include "../../src/cli/util.h"
#include "fuzz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *buf = malloc(n + 1);
    char *argv[64];
    int argc = 0;
    if (!buf) return 0;
    memcpy(buf, data, n);
    buf[n] = '\0';
    for (size_t i = 0; i <= n && argc < 63; i++) {
        argv[argc++] = buf + i;
        i += strlen(buf + i);
    }
    argv[argc] = NULL;
    static const char *const opts[][2] = {{"-c", "--ctx"}, {"-n", "--n-predict"}, {"-t", "--threads"},
                                          {NULL, "--max-shard-size"}, {NULL, "--tokens"}, {"-s", "--seed"}};
    for (int i = 0; i < argc; i++) {
        for (size_t o = 0; o < sizeof opts / sizeof *opts; o++) {
            const char *val = NULL;
            int j = i;
            if (opt_value(argc, argv, &j, opts[o][0], opts[o][1], &val) != 1) continue;
            if (j < i || j >= argc) fuzz_fail("opt_value", "index moved out of argv");
            if (!val) continue;
            long l;
            uint64_t u;
            float f;
            int32_t *toks = NULL, nt = 0;
            char again[64];
            if (parse_long(val, -1000000, 1000000, &l) == 0) {
                long l2;
                snprintf(again, sizeof again, "%ld", l);
                if (parse_long(again, -1000000, 1000000, &l2) != 0 || l2 != l) fuzz_fail("parse_long", val);
            }
            if (parse_u64(val, &u) == 0) {
                uint64_t u2;
                snprintf(again, sizeof again, "%" PRIu64, u);
                if (parse_u64(again, &u2) != 0 || u2 != u) fuzz_fail("parse_u64", val);
            }
            if (parse_size(val, &u) == 0) {
                uint64_t u2;
                snprintf(again, sizeof again, "%" PRIu64, u);
                if (parse_size(again, &u2) != 0 || u2 != u) fuzz_fail("parse_size", val);
            }
            (void)parse_float(val, &f);
            if (parse_tokens(val, &toks, &nt) == 0 && nt < 1) fuzz_fail("parse_tokens", "accepted no tokens");
            free(toks);
        }
    }
    free(buf);
    return 0;
}
