/* abi.c - struct sizes across library versions (include/skipless.h, "Versions
 * and the ABI"): the library never reads or writes more of a caller's struct
 * than the caller's own sizeof, whichever header the caller was built with. */
#include "abi.h"
#include "error.h"

#include <string.h>

static int check_size(size_t size, size_t v1, const char *fn, const char *what) {
    if (size < v1 || size > UINT32_MAX)
        return skl_fail(SKL_ERR_INVALID_ARG,
                        "%s: %s %zu is not a struct size of this major version (at least %zu): pass sizeof "
                        "the struct%s",
                        fn, what, size, v1, !strcmp(what, "struct_size") ? " to its skl_*_params_init first" : "");
    return SKL_OK;
}

int skl_params_init(void *p, size_t size, const void *defaults, size_t full, size_t v1, const char *fn) {
    if (!p) return skl_fail(SKL_ERR_INVALID_ARG, "%s: params is NULL", fn);
    int rc = skl_copy_out(p, size, defaults, full, v1, fn);
    if (rc) return rc;
    uint32_t s = (uint32_t)size; /* checked by skl_copy_out */
    memcpy(p, &s, sizeof s);     /* struct_size, the first field of every params struct */
    return SKL_OK;
}

int skl_params_read(void *dst, size_t full, const void *src, size_t v1, const char *fn) {
    if (src) {
        uint32_t s;
        memcpy(&s, src, sizeof s);
        int rc = check_size(s, v1, fn, "struct_size");
        if (rc) return rc;
        memcpy(dst, src, s < full ? s : full);
    }
    uint32_t s = (uint32_t)full;
    memcpy(dst, &s, sizeof s);
    return SKL_OK;
}

int skl_copy_out(void *out, size_t size, const void *src, size_t full, size_t v1, const char *fn) {
    if (!out) return skl_fail(SKL_ERR_INVALID_ARG, "%s: out is NULL", fn);
    int rc = check_size(size, v1, fn, "size");
    if (rc) return rc;
    size_t n = size < full ? size : full;
    memcpy(out, src, n);
    if (size > n) memset((char *)out + n, 0, size - n);
    return SKL_OK;
}
