/* membw.h - memory bandwidth ceiling for skipless bench. */
#ifndef SKL_CLI_MEMBW_H
#define SKL_CLI_MEMBW_H

#include <stddef.h>

/* A buffer of `bytes` (rounded down to 4 KiB; transparent huge pages
 * requested), written once so its pages are resident; NULL if allocation fails. */
float *membw_alloc(size_t bytes);
void membw_free(float *buf);

/* Streaming read of the whole buffer by `threads` threads (contiguous slices,
 * each read as several prefetched vector streams; membw.c): the best rate
 * over `passes` passes, GB/s (1e9 bytes), or -1 when a thread cannot be
 * started.  With setting NULL or *setting < 0 every pass tries each of a few
 * (streams, prefetch distance) settings and *setting (if not NULL) receives
 * the best one; with *setting >= 0 only that setting is read. */
double membw_read_gbps(const float *buf, size_t bytes, int threads, int passes, int *setting);

/* A setting of membw_read_gbps in words, written to buf. */
const char *membw_setting_name(int setting, char *buf, size_t n);

/* Name of the read kernel chosen for this CPU ("avx512", "avx2", "generic"). */
const char *membw_kernel(void);

#endif
