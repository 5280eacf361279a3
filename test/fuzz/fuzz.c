/* fuzz.c - the harnesses' scratch files (fuzz.h). */
#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

const char *fuzz_dir(void) {
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/skl_fuzz_XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) fuzz_fail("mkdtemp", dir);
    }
    return dir;
}

void fuzz_write(const char *name, const uint8_t *data, size_t n, char *path) {
    snprintf(path, 512, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) fuzz_fail("cannot write", path);
}

static void clean(const char *d) {
    DIR *dd = opendir(d);
    if (!dd) return;
    for (struct dirent *de; (de = readdir(dd));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
            clean(p);
            rmdir(p);
        } else unlink(p);
    }
    closedir(dd);
}

void fuzz_clean(void) { clean(fuzz_dir()); }

size_t fuzz_records(const uint8_t *data, size_t n, fuzz_rec *rec, size_t max) {
    size_t k = 0, i = 0;
    while (i < n && k < max) {
        uint8_t kind = data[i++];
        size_t len = i + 2 <= n ? (size_t)data[i] | (size_t)data[i + 1] << 8 : 0;
        i = i + 2 <= n ? i + 2 : n;
        if (len > n - i) len = n - i;
        rec[k++] = (fuzz_rec){kind, data + i, len};
        i += len;
    }
    return k;
}

void fuzz_fail(const char *what, const char *detail) {
    fprintf(stderr, "fuzz: %s: %s\n", what, detail);
    abort();
}
