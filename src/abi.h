/* abi.h - the size rules of include/skipless.h ("Versions and the ABI"), for
 * every public function that reads or fills a struct in the caller's memory. */
#ifndef SKL_ABI_H
#define SKL_ABI_H

#include <stddef.h>

/* Bytes of `type` up to and including `field`: the size of version 1.0 of a
 * struct whose 1.0 layout ends with `field`; smaller sizes are refused. */
#define SKL_SIZE_THROUGH(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* skl_*_params_init: copy the library's defaults (`defaults`, `full` bytes,
 * beginning with uint32_t struct_size) into the caller's `size` bytes at p,
 * zero what lies beyond the library's struct, and set p->struct_size = size. */
int skl_params_init(void *p, size_t size, const void *defaults, size_t full, size_t v1, const char *fn);

/* A function taking a params struct: `dst` (`full` bytes) holds the defaults;
 * overwrite it with the first struct_size bytes of the caller's `src` (NULL:
 * keep the defaults) and set dst's struct_size to `full`. */
int skl_params_read(void *dst, size_t full, const void *src, size_t v1, const char *fn);

/* A function filling a caller's struct of `size` bytes from the library's
 * `src` of `full` bytes: copy the common prefix, zero the rest of *out. */
int skl_copy_out(void *out, size_t size, const void *src, size_t full, size_t v1, const char *fn);

#endif
