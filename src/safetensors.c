/* safetensors.c - map a .safetensors file and validate its layout.
 *
 * Layout: u64 little-endian N | N bytes of JSON header | data area.
 * The header maps tensor names to {dtype, shape, data_offsets: [begin, end]}
 * (offsets relative to the data area) plus an optional "__metadata__" object.
 * Everything read from the file is checked before it is used: the header
 * length, the JSON (duplicate keys rejected), dtypes, overflow-checked sizes,
 * and that the tensors tile the data area exactly (no overlap, gap, or
 * trailing bytes). */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* the format's own limit: 100 MB */

size_t skl_dtype_size(int dtype) { return dtype == SKL_DT_F32 ? 4 : 2; }

const char *skl_dtype_name(int dtype) {
    switch (dtype) {
    case SKL_DT_F32: return "F32";
    case SKL_DT_F16: return "F16";
    default: return "BF16";
    }
}

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

#define HUGE_PAGE ((size_t)2 << 20)

/* An anonymous mapping of len bytes (rounded up to whole pages) starting at a
 * 2 MiB-aligned address: len + 2 MiB are mapped, then the ends around the
 * aligned part are unmapped.  MAP_FAILED (errno set) on failure. */
static uint8_t *map_anon_aligned(size_t len, int prot, int flags) {
    size_t span = len + HUGE_PAGE;
    uint8_t *raw = mmap(NULL, span, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (raw == MAP_FAILED) return MAP_FAILED;
    uint8_t *a = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    uint8_t *end = (uint8_t *)(((uintptr_t)a + len + 4095) & ~(uintptr_t)4095);
    if (a > raw) munmap(raw, (size_t)(a - raw));
    if (end < raw + span) munmap(end, (size_t)(raw + span - end));
    return a;
}

/* Read the whole file into anonymous memory aligned to (and padded to) 2 MiB,
 * advised for transparent huge pages (skl_model_params.use_mmap false):
 * batch-1 decode streams every weight once per token, and huge pages avoid
 * TLB misses (no gain measured reliably here; docs/performance.md).  The
 * file's page cache is dropped afterwards so the weights are not held twice. */
static int read_to_huge_pages(const char *path, int fd, size_t len, skl_buf *b) {
    size_t alloc = (len + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *p = map_anon_aligned(alloc, PROT_READ | PROT_WRITE, 0);
    if (p == MAP_FAILED)
        return skl_fail(SKL_ERR_NOMEM, "%s: out of memory for %zu bytes of weights", path, len);
#ifdef MADV_HUGEPAGE
    (void)madvise(p, alloc, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
#endif
    for (size_t off = 0; off < len;) {
        size_t chunk = len - off < ((size_t)1 << 30) ? len - off : ((size_t)1 << 30);
        ssize_t n = pread(fd, p + off, chunk, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = errno;
            munmap(p, alloc);
            if (n == 0)
                return skl_fail(SKL_ERR_TRUNCATED, "%s: file shrank to %zu bytes while being read (expected %zu)",
                                path, off, len);
            return skl_fail(SKL_ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        off += (size_t)n;
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    (void)mprotect(p, alloc, PROT_READ); /* weights are never written */
    b->base = p;
    b->len = len;
    b->map_len = alloc;
    return SKL_OK;
}

/* Map the whole file read-only, for files of 2 MiB or more at a 2 MiB-aligned
 * address, advised for huge pages.  Decode reads every weight once per token;
 * on 4 KiB pages that costs a TLB miss every 4 KiB and the hardware
 * prefetchers stop at each page.  The page cache of a kernel with large
 * folios (Linux 6.x, ext4/xfs) can then hold the file in 2 MiB folios that
 * are mapped with one page-table entry each: read-ahead on a huge-page-advised
 * mapping allocates them, and large writes (cp, dd, our save) create them.
 * Parts of the file already cached in small folios stay on 4 KiB pages until
 * the kernel evicts them.  MAP_FAILED (errno set) on failure. */
static void *map_aligned(int fd, size_t len) {
    if (len < HUGE_PAGE) return mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    /* reserve the aligned range, then map the file exactly over it */
    uint8_t *a = map_anon_aligned(len, PROT_NONE, MAP_NORESERVE);
    if (a == MAP_FAILED) return MAP_FAILED;
    void *p = mmap(a, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(a, len);
        errno = e;
    }
    return p;
}

static int map_file(const char *path, bool use_mmap, skl_buf **out) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return skl_fail(SKL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return skl_fail(SKL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return skl_fail(SKL_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return skl_fail(SKL_ERR_TRUNCATED,
                        "%s: file is %lld bytes, shorter than the 8-byte header length", path,
                        (long long)st.st_size);
    }
    skl_buf *b = calloc(1, sizeof *b);
    if (!b) {
        close(fd);
        return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", path);
    }
    atomic_init(&b->refs, 1);
    b->mapped = 1;
    if (!use_mmap) {
        int rc = read_to_huge_pages(path, fd, (size_t)st.st_size, b);
        close(fd);
        if (rc) free(b);
        else *out = b;
        return rc;
    }
    size_t len = (size_t)st.st_size;
    void *p = map_aligned(fd, len);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) {
        free(b);
        return skl_fail(SKL_ERR_IO, "%s: cannot mmap: %s", path, strerror(e));
    }
#ifdef MADV_HUGEPAGE
    if (len >= HUGE_PAGE) (void)madvise(p, len, MADV_HUGEPAGE); /* advice only */
#endif
    b->base = p;
    b->len = len;
    *out = b;
    return SKL_OK;
}

static int parse_dtype(const char *s) {
    if (!strcmp(s, "F32")) return SKL_DT_F32;
    if (!strcmp(s, "F16")) return SKL_DT_F16;
    if (!strcmp(s, "BF16")) return SKL_DT_BF16;
    return -1;
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
    t->dtype = parse_dtype(json_string_value(dt));
    if (t->dtype < 0)
        return skl_fail(SKL_ERR_DTYPE,
                        "%s: tensor '%s': dtype \"%s\" is not supported (expected F32, F16 or BF16)",
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
                        (long long)(t->end - t->begin), skl_dtype_name(t->dtype),
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
    int rc = skl_json_parse((const char *)base + 8, (size_t)n, what, &f->header);
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
