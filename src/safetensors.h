/* safetensors.h - one .safetensors file, mapped and validated (safetensors.c). */
#ifndef SKL_SAFETENSORS_H
#define SKL_SAFETENSORS_H

#include "buf.h"
#include "dtype.h"
#include "json.h"

#define SKL_ST_MAX_DIMS 8

typedef struct skl_st_tensor {
    const char *name;  /* points into the header JSON (kept alive by skl_st_file) */
    int dtype;
    int ndim;
    uint64_t shape[SKL_ST_MAX_DIMS];
    uint64_t begin, end; /* byte range in the data area */
} skl_st_tensor;

typedef struct skl_st_file {
    skl_buf *map;        /* the whole file, mapped read-only */
    const uint8_t *data; /* start of the data area */
    uint64_t data_size;
    json_t *header;      /* parsed header (owns the tensor names) */
    json_t *metadata;    /* header's __metadata__ object or NULL (borrowed) */
    skl_st_tensor *tensors;
    size_t n_tensors;
} skl_st_file;

/* Map and fully validate a safetensors file (layout only, not model shapes).
 * use_mmap: use the file mapping in place; else read the file into anonymous
 * memory on transparent huge pages (see skl_buf_map_file). */
int skl_st_open(const char *path, bool use_mmap, skl_st_file *out);
void skl_st_close(skl_st_file *f);
const skl_st_tensor *skl_st_find(const skl_st_file *f, const char *name);

#endif
