/* buf.h - reference-counted storage for weights and the mapping of files (buf.c).
 * A buffer is either malloc'd or a read-only mapping (of a file, or of anonymous
 * memory holding a file's copy).  Tensors of a model (and of a merged model
 * derived from it) point into buffers and hold a reference, so unchanged
 * weights are shared rather than copied. */
#ifndef SKL_BUF_H
#define SKL_BUF_H

#include "error.h"

#include <stdatomic.h>
#include <stdbool.h>

typedef struct skl_buf {
    atomic_int refs;
    void *base;
    size_t len;
    size_t map_len; /* bytes to munmap when larger than len (anonymous copy), else 0 */
    int mapped;     /* 1: munmap on release, 0: free */
} skl_buf;

skl_buf *skl_buf_new(size_t len);  /* malloc'd, refs = 1; NULL on failure */
skl_buf *skl_buf_retain(skl_buf *b);
void skl_buf_release(skl_buf *b);

/* Open a regular file read-only: *fd and its *size (messages name path). */
int skl_file_open(const char *path, int *fd, uint64_t *size);
/* The whole file fd of len bytes as a read-only buffer (fd stays open).
 * use_mmap: the file mapping in place; else the file read into anonymous
 * memory on transparent huge pages (2 MiB aligned, MADV_HUGEPAGE, read-only
 * after loading) and the file's page cache dropped (POSIX_FADV_DONTNEED). */
int skl_buf_map_file(const char *path, int fd, size_t len, bool use_mmap, skl_buf **out);

#endif
