/* membw.h - memory bandwidth ceiling for skipless bench. */
#ifndef SKL_CLI_MEMBW_H
#define SKL_CLI_MEMBW_H

#include <stddef.h>

/* Memory to read: bytes at p (any alignment). */
typedef struct {
    const void *p;
    size_t bytes;
} membw_region;

/* A buffer of `bytes` on transparent huge pages (requested), written once so
 * its pages are resident; NULL if allocation fails. */
void *membw_alloc(size_t bytes);
void membw_free(void *buf);

/* Streaming read of the nr regions by `threads` threads (each reads its
 * share of every region as several prefetched vector streams; membw.c): the
 * best rate over `passes` passes, GB/s (1e9 bytes), or -1 when a thread
 * cannot be started or there is nothing to read.  With setting NULL or
 * *setting < 0 every pass tries each of a few read settings and *setting (if
 * not NULL) receives the best one; with *setting >= 0 only that one is read. */
double membw_read_gbps(const membw_region *r, int nr, int threads, int passes, int *setting);

/* A setting of membw_read_gbps in words, written to buf. */
const char *membw_setting_name(int setting, char *buf, size_t n);

/* Name of the read kernel chosen for this CPU ("avx512", "avx2", "generic"). */
const char *membw_kernel(void);

#endif
