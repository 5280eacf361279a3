/* buf.c - reference-counted buffers, and files mapped (or read onto huge pages) into them.
 * Knows nothing of any file format: the format wing (safetensors.c) checks what it maps. */
#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ buffers */

skl_buf *skl_buf_new(size_t len) {
    skl_buf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->base = malloc(len ? len : 1);
    if (!b->base) {
        free(b);
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

skl_buf *skl_buf_retain(skl_buf *b) {
    if (b) atomic_fetch_add(&b->refs, 1);
    return b;
}

void skl_buf_release(skl_buf *b) {
    if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
    if (b->mapped) munmap(b->base, b->map_len > b->len ? b->map_len : b->len);
    else free(b->base);
    free(b);
}

/* ------------------------------------------------------------------ mapping */

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

int skl_file_open(const char *path, int *fd_out, uint64_t *size) {
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
    *fd_out = fd;
    *size = (uint64_t)st.st_size;
    return SKL_OK;
}

int skl_buf_map_file(const char *path, int fd, size_t len, bool use_mmap, skl_buf **out) {
    skl_buf *b = calloc(1, sizeof *b);
    if (!b) return skl_fail(SKL_ERR_NOMEM, "%s: out of memory", path);
    atomic_init(&b->refs, 1);
    b->mapped = 1;
    if (!use_mmap) {
        int rc = read_to_huge_pages(path, fd, len, b);
        if (rc) free(b);
        else *out = b;
        return rc;
    }
    void *p = map_aligned(fd, len);
    if (p == MAP_FAILED) {
        int e = errno;
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
