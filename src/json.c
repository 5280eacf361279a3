/* json.c - JSON text (duplicate keys rejected) and whole text files, for the format wing. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_tree(const char *text, size_t len, const char *what, json_t **out) {
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

/* Opening brackets and commas outside strings: one more than it is at least the
 * number of values of the text (each value after the first in an array or
 * object follows a comma; each container opens with a bracket).  A linear
 * scan with no memory, so that a huge array is refused before jansson builds
 * a node (about 50 bytes) for each of its values. */
static size_t count_values(const char *text, size_t len, size_t stop) {
    size_t n = 1;
    bool in_string = false;
    for (size_t i = 0; i < len && n <= stop; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\\') i++;
            else if (ch == '"') in_string = false;
        } else if (ch == '"') in_string = true;
        else if (ch == '[' || ch == '{' || ch == ',') n++;
    }
    return n;
}

int skl_json_parse_max(const char *text, size_t len, const char *what, size_t max_values, json_t **out) {
    *out = NULL;
    size_t n = count_values(text, len, max_values);
    if (n > max_values)
        return skl_fail(SKL_ERR_JSON_LIMIT,
                        "%s: more than %zu JSON values (the bound; counted as brackets and commas outside strings "
                        "in %zu bytes), refused before parsing",
                        what, max_values, len);
    return parse_tree(text, len, what, out);
}

int skl_json_parse(const char *text, size_t len, const char *what, json_t **out) {
    return skl_json_parse_max(text, len, what, SKL_JSON_MAX_VALUES, out);
}

const char *skl_json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
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
