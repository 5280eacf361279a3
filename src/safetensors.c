/* safetensors.c - map one .safetensors file (buf.c) and validate its layout.
 *
 * Layout: u64 little-endian N | N bytes of JSON header | data area.
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the data area) plus an optional "__metadata__" object.
 * Everything read from the file is checked before it is used: the header
 * length, the JSON (duplicate keys rejected), dtypes (F32, F16, BF16, and the
 * integer I8, I32, I64 that quantized weights are stored in: model.c decides
 * which tensors may have them), overflow-checked sizes,
 * and that the tensors tile the data area exactly (no overlap, gap, or
 * trailing bytes). */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* the format's own limit: 100 MB */
/* At most this many JSON values in a header (a tensor entry has 6 to 14; a
 * 7B shard has about 300 entries): the tree costs at most about 50 MiB. */
#define ST_MAX_HEADER_VALUES ((size_t)1 << 20)

static int map_file(const char *path, bool use_mmap, skl_buf **out) {
    int fd;
    uint64_t size;
    int rc = skl_file_open(path, &fd, &size);
    if (rc) return rc;
    if (size < 8) {
        close(fd);
        return skl_fail(SKL_ERR_TRUNCATED,
                        "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                        (long long)size);
    }
    rc = skl_buf_map_file(path, fd, (size_t)size, use_mmap, out);
    close(fd);
    return rc;
}

/* Read a JSON integer >= 0 into *v. */
static int get_u64(const json_t *j, uint64_t *v) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

static int parse_entry(const char *path, const char *name, const json_t *e, skl_st_tensor *t) {
    if (!json_is_object(e))
        return skl_fail(SKL_ERR_HEADER, "%s: tensor '%s': header entry is not an object", path,
                        name);
    const json_t *dt = json_object_get(e, "dtype");
    const json_t *sh = json_object_get(e, "shape");
    const json_t *of = json_object_get(e, "data_offsets");
    if (!json_is_string(dt))
        return skl_fail(SKL_ERR_HEADER, "%s: tensor '%s': \"dtype\" missing or not a string",
                        path, name);
    if (!json_is_array(sh))
        return skl_fail(SKL_ERR_HEADER, "%s: tensor '%s': \"shape\" missing or not a list", path,
                        name);
    if (!json_is_array(of) || json_array_size(of) != 2)
        return skl_fail(SKL_ERR_HEADER,
                        "%s: tensor '%s': \"data_offsets\" missing or not a list of 2 integers",
                        path, name);
    t->name = name;
    t->dtype = skl_dtype_from_st(json_string_value(dt));
    if (t->dtype < 0)
        return skl_fail(SKL_ERR_DTYPE,
                        "%s: tensor '%s': dtype \"%s\" is not supported (expected F32, F16 or BF16; I8, I32 or I64 "
                        "in the parts of a quantized weight)",
                        path, name, json_string_value(dt));
    size_t nd = json_array_size(sh);
    if (nd > SKL_ST_MAX_DIMS)
        return skl_fail(SKL_ERR_HEADER, "%s: tensor '%s': %zu dimensions (at most %d supported)",
                        path, name, nd, SKL_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t nbytes = skl_dtype_size(t->dtype);
    for (size_t i = 0; i < nd; i++) {
        if (get_u64(json_array_get(sh, i), &t->shape[i]) != 0)
            return skl_fail(SKL_ERR_HEADER,
                            "%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name,
                            i);
        if (skl_mul_u64(nbytes, t->shape[i], &nbytes) != 0)
            return skl_fail(SKL_ERR_TENSOR_SIZE, "%s: tensor '%s': byte size overflows 64 bits",
                            path, name);
    }
    if (get_u64(json_array_get(of, 0), &t->begin) != 0 ||
        get_u64(json_array_get(of, 1), &t->end) != 0)
        return skl_fail(SKL_ERR_HEADER,
                        "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (t->end < t->begin || t->end - t->begin != nbytes)
        return skl_fail(SKL_ERR_TENSOR_SIZE,
                        "%s: tensor '%s': data_offsets [%llu, %llu] span %lld bytes, but shape x "
                        "%s needs %llu",
                        path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (long long)(t->end - t->begin), skl_dtype_str(t->dtype),
                        (unsigned long long)nbytes);
    return SKL_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const skl_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end);
}

static int validate(const char *path, skl_st_file *f) {
    const uint8_t *base = f->map->base;
    uint64_t size = f->map->len;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | base[i];
    if (n < 2 || n > ST_MAX_HEADER)
        return skl_fail(SKL_ERR_HEADER_SIZE,
                        "%s: header length %llu out of bounds (expected 2 to %u bytes)", path,
                        (unsigned long long)n, ST_MAX_HEADER);
    if (n > size - 8)
        return skl_fail(SKL_ERR_HEADER_SIZE,
                        "%s: header length %llu is larger than the %llu bytes after it", path,
                        (unsigned long long)n, (unsigned long long)(size - 8));
    f->data = base + 8 + n;
    f->data_size = size - 8 - n;

    char what[4400];
    if (snprintf(what, sizeof what, "%s: header", path) >= (int)sizeof what)
        return skl_fail(SKL_ERR_INVALID_ARG, "%.200s...: path too long", path);
    int rc = skl_json_parse_max((const char *)base + 8, (size_t)n, what, ST_MAX_HEADER_VALUES, &f->header);
    if (rc) return rc;
    if (!json_is_object(f->header))
        return skl_fail(SKL_ERR_HEADER, "%s: header is not a JSON object", path);

    size_t cap = json_object_size(f->header);
    f->tensors = calloc(cap ? cap : 1, sizeof *f->tensors);
    if (!f->tensors) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", path);
    const char *key;
    json_t *val;
    uint64_t total = 0;
    json_object_foreach(f->header, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(val))
                return skl_fail(SKL_ERR_HEADER, "%s: __metadata__ is not an object", path);
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv))
                    return skl_fail(SKL_ERR_METADATA,
                                    "%s: __metadata__[\"%s\"] is %s, expected a string (safetensors metadata maps "
                                    "strings to strings)",
                                    path, mk, skl_json_type_name(mv));
            }
            f->metadata = val;
            continue;
        }
        skl_st_tensor *t = &f->tensors[f->n_tensors];
        if ((rc = parse_entry(path, key, val, t))) return rc;
        if (skl_add_u64(total, t->end - t->begin, &total) != 0)
            return skl_fail(SKL_ERR_TENSOR_SIZE, "%s: total tensor size overflows", path);
        f->n_tensors++;
    }
    /* A tensor past the end: the file was cut short if the tensors together
     * need more bytes than it has, else an offset points out of range. */
    for (size_t i = 0; i < f->n_tensors; i++) {
        const skl_st_tensor *t = &f->tensors[i];
        if (t->end <= f->data_size) continue;
        if (total > f->data_size)
            return skl_fail(SKL_ERR_TRUNCATED,
                            "%s: truncated: tensors need %llu bytes of data but the file has %llu after the "
                            "header (tensor '%s' ends at %llu)",
                            path, (unsigned long long)total, (unsigned long long)f->data_size, t->name,
                            (unsigned long long)t->end);
        return skl_fail(SKL_ERR_OUT_OF_RANGE,
                        "%s: tensor '%s': data_offsets [%llu, %llu] end beyond the data area of %llu bytes",
                        path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)f->data_size);
    }
    /* Sorted by offset, the tensors must tile [0, data_size) exactly. */
    skl_st_tensor *sorted = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *sorted);
    if (!sorted) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", path);
    memcpy(sorted, f->tensors, f->n_tensors * sizeof *sorted);
    qsort(sorted, f->n_tensors, sizeof *sorted, cmp_begin);
    uint64_t pos = 0;
    const char *prev = NULL;
    rc = SKL_OK;
    for (size_t i = 0; i < f->n_tensors && !rc; i++) {
        const skl_st_tensor *t = &sorted[i];
        if (t->begin < pos)
            rc = skl_fail(SKL_ERR_OVERLAP,
                          "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s' (ending at %llu)",
                          path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                          prev, (unsigned long long)pos);
        else if (t->begin > pos)
            rc = skl_fail(SKL_ERR_GAP, "%s: %llu unused bytes before tensor '%s' (expected offset %llu, got %llu)",
                          path, (unsigned long long)(t->begin - pos), t->name,
                          (unsigned long long)pos, (unsigned long long)t->begin);
        pos = t->end;
        prev = t->name;
    }
    free(sorted);
    if (rc) return rc;
    if (pos != f->data_size)
        return skl_fail(SKL_ERR_GAP, "%s: %llu unused bytes after the last tensor (data area %llu bytes, tensors end at %llu)",
                        path, (unsigned long long)(f->data_size - pos),
                        (unsigned long long)f->data_size, (unsigned long long)pos);
    return SKL_OK;
}

int skl_st_open(const char *path, bool use_mmap, skl_st_file *out) {
    memset(out, 0, sizeof *out);
    int rc = map_file(path, use_mmap, &out->map);
    if (rc) return rc;
    rc = validate(path, out);
    if (rc) skl_st_close(out);
    return rc;
}

void skl_st_close(skl_st_file *f) {
    if (!f) return;
    free(f->tensors);
    if (f->header) json_decref(f->header);
    skl_buf_release(f->map);
    memset(f, 0, sizeof *f);
}

const skl_st_tensor *skl_st_find(const skl_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}
