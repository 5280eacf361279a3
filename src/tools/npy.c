/* npy.c - see npy.h.  Format: "\x93NUMPY", version, u16/u32 header length,
 * a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)},
 * padded with spaces and a newline to a multiple of 64 bytes, then the data. */
#include "npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols) {
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)rows, (long long)cols);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    int hlen = n + pad + 1;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    int ok = fwrite(pre, 1, 10, fp) == 10 && fwrite(dict, 1, (size_t)n, fp) == (size_t)n;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', fp) != EOF;
    ok = ok && fputc('\n', fp) != EOF;
    size_t cnt = (size_t)(rows * cols);
    ok = ok && fwrite(data, sizeof(float), cnt, fp) == cnt; /* x86/ARM little-endian */
    if (fclose(fp) != 0) ok = 0;
    return ok ? 0 : -1;
}

int npy_read(const char *path, double **out, int64_t *rows, int64_t *cols, char *err, int errlen) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(err, (size_t)errlen, "%s: cannot open", path); return -1; }
    unsigned char pre[12];
    char *hdr = NULL;
    double *d = NULL;
    int rc = -1;
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        snprintf(err, (size_t)errlen, "%s: not a .npy file", path);
        goto done;
    }
    size_t hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, fp) != 2) goto done;
        hlen |= ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
    }
    if (hlen > (1u << 20) || !(hdr = calloc(1, hlen + 1)) || fread(hdr, 1, hlen, fp) != hlen) {
        snprintf(err, (size_t)errlen, "%s: bad header", path);
        goto done;
    }
    int f8 = strstr(hdr, "'<f8'") != NULL, f4 = strstr(hdr, "'<f4'") != NULL;
    const char *sh = strstr(hdr, "'shape': (");
    if ((!f8 && !f4) || strstr(hdr, "'fortran_order': True") || !sh) {
        snprintf(err, (size_t)errlen, "%s: need C-order <f8 or <f4", path);
        goto done;
    }
    long long a = 0, b = 1;
    int k = sscanf(sh + 10, "%lld, %lld", &a, &b);
    if (k < 1 || a < 0 || b < 0) { snprintf(err, (size_t)errlen, "%s: bad shape", path); goto done; }
    if (k == 1) { b = a; a = 1; }
    size_t n = (size_t)(a * b), es = f8 ? 8 : 4;
    d = malloc((n ? n : 1) * sizeof *d);
    unsigned char *raw = malloc((n ? n : 1) * es);
    if (!d || !raw || fread(raw, es, n, fp) != n) {
        free(raw);
        snprintf(err, (size_t)errlen, "%s: short data", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (f8) memcpy(&d[i], raw + 8 * i, 8);
        else { float x; memcpy(&x, raw + 4 * i, 4); d[i] = x; }
    }
    free(raw);
    *out = d;
    d = NULL;
    *rows = a;
    *cols = b;
    rc = 0;
done:
    free(d);
    free(hdr);
    fclose(fp);
    return rc;
}
