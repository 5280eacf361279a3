/* util.c - what the CLI's commands share: error messages, option values, the context size and
 * byte counts, the clock, JSON output. */
#include "util.h"

#include "skipless.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void vmessage(const char *fmt, va_list ap) {
    fputs("skipless: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* usage_error and runtime_error are intentional twins: they differ only in the exit
 * status, and a variadic function cannot hand its arguments on but through vmessage. */
int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

int runtime_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmessage(fmt, ap);
    va_end(ap);
    return EXIT_RUNTIME;
}

int lib_error(const char *what, int rc) {
    const char *msg = skl_last_error();
    return runtime_error("%s: %s (%s)", what, msg[0] ? msg : skl_strerror(rc), skl_strerror(rc));
}

int parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return -1; /* strtoull accepts "-1" as 2^64 - 1 */
    *out = v;
    return 0;
}

int parse_size(const char *s, uint64_t *out) {
    static const struct { const char *unit; uint64_t mul; } units[] = {
        {"", 1}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}, {"TB", 1000000000000ull},
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
    size_t digits = strspn(s, "0123456789");
    if (digits == 0) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(s + digits, units[i].unit) != 0) continue;
        uint64_t v = 0;
        for (size_t k = 0; k < digits; k++) {
            unsigned d = (unsigned)(s[k] - '0');
            if (v > (UINT64_MAX - d) / 10) return -1;
            v = v * 10 + d;
        }
        if (v == 0 || v > UINT64_MAX / units[i].mul) return -1;
        *out = v * units[i].mul;
        return 0;
    }
    return -1;
}

/* A projection name, with (full) or without its "self_attn." / "mlp." prefix. */
static int is_projection(const char *s, int full) {
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"}, *const mlp[] = {"gate_proj", "up_proj",
                                                                                                  "down_proj"};
    for (int i = 0; i < 4; i++)
        if ((!full && !strcmp(s, attn[i])) || (!strncmp(s, "self_attn.", 10) && !strcmp(s + 10, attn[i]))) return 1;
    for (int i = 0; i < 3; i++)
        if ((!full && !strcmp(s, mlp[i])) || (!strncmp(s, "mlp.", 4) && !strcmp(s + 4, mlp[i]))) return 1;
    return 0;
}

int parse_keep(const char *s, char ***out, int32_t *n, long *max_layer) {
    size_t len = strlen(s), count = 1;
    for (const char *c = s; *c; c++) count += *c == ',';
    char **names = malloc(count * sizeof *names + len + 1);
    if (!names) return -1;
    char *text = (char *)(names + count);
    memcpy(text, s, len + 1);
    *max_layer = -1;
    int32_t k = 0;
    for (char *tok = text, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        const char *p = tok + 13;
        long layer = -1;
        if (!strncmp(tok, "model.layers.", 13) && *p >= '0' && *p <= '9' && !(p[0] == '0' && p[1] != '.')) {
            char *end;
            layer = strtol(p, &end, 10);
            p = *end == '.' ? end + 1 : "";
        } else {
            p = tok;
        }
        if (!(layer < 0 && !strcmp(tok, "lm_head")) && !is_projection(p, layer >= 0)) {
            free(names);
            return -1;
        }
        if (layer > *max_layer) *max_layer = layer;
        names[k++] = tok;
    }
    *out = names;
    *n = k;
    return 0;
}

int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

int parse_tokens(const char *s, int32_t **out, int32_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *t = malloc(cap * sizeof *t);
    if (!t) return -1;
    int32_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return -1;
        }
        t[k++] = (int32_t)v;
        if (!*end) break;
        p = end + 1;
    }
    *out = t;
    *n = k;
    return 0;
}

int opt_value(int argc, char **argv, int *i, const char *alias, const char *name, const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) != 0 && (!alias || strcmp(a, alias) != 0)) return 0; /* *val left alone */
    *val = *i + 1 < argc ? argv[++*i] : NULL;
    return 1;
}

int32_t cli_n_ctx(long asked, int32_t max_positions) {
    if (asked > 0) return (int32_t)asked;
    return max_positions < CLI_DEFAULT_CTX ? max_positions : CLI_DEFAULT_CTX;
}

const char *bytes_str(uint64_t b, char buf[BYTES_STR]) {
    static const char *unit[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = (double)b;
    int k = -1;
    while (v >= 1024 && k < 5) v /= 1024, k++;
    if (k < 0) snprintf(buf, BYTES_STR, "%llu bytes", (unsigned long long)b);
    else snprintf(buf, BYTES_STR, "%llu bytes (%.2f %s)", (unsigned long long)b, v, unit[k]);
    return buf;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double merge_flops(double d, double e, double f, double V, double blocks) {
    double per_block = 2.0 / 3.0 * d * d * d + 8.0 * d * d * e + 6.0 * f * d * d;
    return blocks * per_block + (blocks > 0 ? 2.0 * V * d * d : 0.0);
}

void put_real(json_t *o, const char *key, double v) { json_object_set_new(o, key, json_real(v)); }
void put_int(json_t *o, const char *key, long long v) { json_object_set_new(o, key, json_integer(v)); }
void put_str(json_t *o, const char *key, const char *v) { json_object_set_new(o, key, json_string(v)); }
void put_bool(json_t *o, const char *key, int v) { json_object_set_new(o, key, json_boolean(v)); }

void put_reals(json_t *o, const char *key, const double *v, long n) {
    json_t *a = json_array();
    for (long i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    json_object_set_new(o, key, a);
}

int print_json(json_t *o) {
    int bad = !o || json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8)) != 0 ||
              fputc('\n', stdout) == EOF || fflush(stdout) != 0;
    json_decref(o);
    return bad ? runtime_error("cannot write the JSON output") : 0;
}
