/* json.c - JSON text (duplicate keys rejected) and whole text files, for the format wing. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int skl_json_parse(const char *text, size_t len, const char *what, json_t **out) {
    json_error_t err;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (*out) return SKL_OK;
    if (json_error_code(&err) == json_error_duplicate_key)
        return skl_fail(SKL_ERR_DUPLICATE_KEY, "%s: %s (line %d, column %d)", what, err.text,
                        err.line, err.column);
    if (json_error_code(&err) == json_error_out_of_memory)
        return skl_fail(SKL_ERR_NOMEM, "%s: out of memory parsing JSON", what);
    return skl_fail(SKL_ERR_JSON, "%s: invalid JSON: %s (line %d, column %d)", what, err.text,
                    err.line, err.column);
}

int skl_read_text_file(const char *path, char **out, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return skl_fail(SKL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int rc = SKL_OK;
    for (;;) {
        if (n == cap) {
            if (cap >= (64u << 20)) { rc = skl_fail(SKL_ERR_CONFIG, "%s: larger than 64 MiB", path); break; }
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, cap);
            if (!nb) { rc = skl_fail(SKL_ERR_NOMEM, "%s: out of memory", path); break; }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (k == 0) {
            if (ferror(fp)) rc = skl_fail(SKL_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(fp);
    if (rc) { free(buf); return rc; }
    *out = buf;
    *len = n;
    return SKL_OK;
}
