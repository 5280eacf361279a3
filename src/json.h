/* json.h - JSON text and text files (json.c), for the format wing. */
#ifndef SKL_JSON_H
#define SKL_JSON_H

#include "error.h"

#include <jansson.h>

/* Parse JSON text rejecting duplicate keys; maps jansson errors to statuses. */
int skl_json_parse(const char *text, size_t len, const char *what, json_t **out);
/* Read a whole text file (at most 64 MiB) into a malloc'd buffer (*out, *len bytes). */
int skl_read_text_file(const char *path, char **out, size_t *len);

#endif
