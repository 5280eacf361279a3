/* error.c - status strings, the thread-local last error, the log callback, version; and the
 * clock.  The clock is here rather than in a file of its own: it is one function that
 * merge.c and generate.c use for the timings they report, and this is the one file at the
 * bottom that every other file already depends on. */
#include "error.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static _Thread_local char last_error[1024];
static skl_log_fn log_fn;
static void *log_user_data;

const char *skl_strerror(int status) {
    switch (status) {
#define STATUS_TEXT(name, value, text) \
    case value: return text;
        SKL_STATUS_LIST(STATUS_TEXT)
#undef STATUS_TEXT
    default: return "unknown status";
    }
}

const char *skl_status_name(int status) {
    switch (status) {
#define STATUS_NAME(name, value, text) \
    case value: return #name;
        SKL_STATUS_LIST(STATUS_NAME)
#undef STATUS_NAME
    default: return NULL;
    }
}

const char *skl_last_error(void) { return last_error; }

void skl_log_set(skl_log_fn fn, void *user_data) {
    log_fn = fn;
    log_user_data = user_data;
}

static void vlog(skl_log_level level, const char *fmt, va_list ap) {
    if (!log_fn) return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    log_fn(level, msg, log_user_data);
}

void skl_log(skl_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

int skl_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    skl_log(SKL_LOG_ERROR, "%s", last_error);
    return status;
}

const char *skl_version(void) { return SKL_VERSION_STRING; }
int skl_version_number(void) { return SKL_VERSION_NUMBER; }

double skl_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
