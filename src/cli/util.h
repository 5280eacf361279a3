/* util.h - what the CLI's commands share (src/cli/util.c): error messages,
 * option values, the context size and byte counts, the clock and JSON output. */
#ifndef SKL_CLI_UTIL_H
#define SKL_CLI_UTIL_H

#include <jansson.h>
#include <stdint.h>

/* Exit codes: 1 for a usage error (caught before any model is loaded), 2 for
 * a library or system error at run time. */
enum { EXIT_USAGE = 1, EXIT_RUNTIME = 2 };

/* "skipless: <message>\n" on stderr; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same for a run-time failure; returns EXIT_RUNTIME. */
int runtime_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "skipless: WHAT: <skl_last_error()> (<skl_strerror(rc)>)"; returns EXIT_RUNTIME. */
int lib_error(const char *what, int rc);

/* Option values: 0 ok, -1 malformed or out of range (*out unchanged). */
int parse_long(const char *s, long lo, long hi, long *out);   /* decimal integer in [lo, hi] */
int parse_u64(const char *s, uint64_t *out);                  /* decimal, no sign */
/* A size as Hugging Face writes max_shard_size: bytes, or an integer with KB, MB, GB, TB
 * (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive; > 0, no overflow. */
int parse_size(const char *s, uint64_t *out);
int parse_float(const char *s, float *out);
/* --keep NAME[,NAME]: the linear layers a quantization leaves alone, each "lm_head", a
 * projection ("q_proj" ... "down_proj", or "self_attn.q_proj", "mlp.down_proj") or a module
 * ("model.layers.3.mlp.down_proj", no leading zeros) -> malloc'd array of *n names
 * (strings in one block after it: free(*out) frees all); *max_layer the largest layer a
 * module names, -1 if none. */
int parse_keep(const char *s, char ***out, int32_t *n, long *max_layer);
/* "1,2,3" -> malloc'd int32 array of *n ids (at least one). */
int parse_tokens(const char *s, int32_t **out, int32_t *n);

/* Option `name` ("--ctx") or its short form `alias` ("-c"; NULL: none) at argv[*i]: 1 when
 * it is that option, with *val its value, from "--ctx=V" or the next argument (*i
 * advanced past it; *val NULL when there is none); 0 (*val untouched) for another argument. */
int opt_value(int argc, char **argv, int *i, const char *alias, const char *name, const char **val);

/* The context a command makes (-c/--ctx): `asked` when > 0, else the default,
 * min(CLI_DEFAULT_CTX, max_positions), as llama.cpp's.  The library's own default
 * (n_ctx 0) is max_position_embeddings, whose KV cache can dwarf the weights. */
enum { CLI_DEFAULT_CTX = 4096 };
int32_t cli_n_ctx(long asked, int32_t max_positions);

/* "N bytes" or "N bytes (X.XX MiB)" (binary units) into buf; returns buf. */
enum { BYTES_STR = 64 };
const char *bytes_str(uint64_t b, char buf[BYTES_STR]);

/* Monotonic clock, seconds. */
double now_s(void);

/* docs/merge.md's flops of merging `blocks` serial blocks, removing one d x d
 * projection each: per block (2/3) d^3 + 8 d^2 e + 6 f d^2, plus 2 V d^2 for the
 * embedding once blocks > 0 (e = KV * head_dim; the qp count, an estimate for
 * the other removals).  bench/report_7b.py writes the same formula in Python. */
double merge_flops(double d, double e, double f, double V, double blocks);

/* Set key of object o to a new value. */
void put_real(json_t *o, const char *key, double v);
void put_int(json_t *o, const char *key, long long v);
void put_str(json_t *o, const char *key, const char *v);
void put_bool(json_t *o, const char *key, int v);
/* An array of n reals. */
void put_reals(json_t *o, const char *key, const double *v, long n);
/* Write o (keys in insertion order, 2-space indent) and a newline to stdout,
 * then release it; 0, or EXIT_RUNTIME with a message when o is NULL (a
 * failed allocation while building it) or the write fails. */
int print_json(json_t *o);

#endif
