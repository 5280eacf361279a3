/* error.h - what every file of the library uses (error.c): failing with a message, the log,
 * checked arithmetic and the clock. */
#ifndef SKL_ERROR_H
#define SKL_ERROR_H

#include "skipless.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Record a formatted message as this thread's last error, log it, return status. */
int skl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void skl_log(skl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- checked arithmetic ---- */

static inline int skl_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int skl_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* Monotonic wall clock in seconds (timings in reports). */
double skl_now_s(void);

#endif
