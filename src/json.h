/* json.h - JSON text and text files (json.c), for the format wing. */
#ifndef SKL_JSON_H
#define SKL_JSON_H

#include "error.h"

#include <jansson.h>

/* The bound on the values of any JSON text the library parses (config.json, the
 * shard index, tokenizer.json); a safetensors header has its own, smaller one
 * (safetensors.c).  jansson's tree costs about 50 bytes a value, so parsing
 * needs at most about 200 MiB beyond the text (docs/format.md, "Bounds"). */
#define SKL_JSON_MAX_VALUES ((size_t)4 << 20)

/* Parse JSON text rejecting duplicate keys; maps jansson errors to statuses.
 * Text with more than SKL_JSON_MAX_VALUES values (max_values for _max) is
 * SKL_ERR_JSON_LIMIT, found by a scan before any tree is built. */
int skl_json_parse(const char *text, size_t len, const char *what, json_t **out);
int skl_json_parse_max(const char *text, size_t len, const char *what, size_t max_values, json_t **out);
/* "an object", "an integer", "null", ...: what a message says a value is. */
const char *skl_json_type_name(const json_t *j);
/* Read a whole text file (at most 64 MiB) into a malloc'd buffer (*out, *len bytes). */
int skl_read_text_file(const char *path, char **out, size_t *len);

#endif
