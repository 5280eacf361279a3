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
    case SKL_OK: return "success";
    case SKL_ERR_INVALID_ARG: return "invalid argument";
    case SKL_ERR_NOMEM: return "out of memory";
    case SKL_ERR_IO: return "input/output error";
    case SKL_ERR_TRUNCATED: return "file is truncated";
    case SKL_ERR_HEADER_SIZE: return "safetensors header length out of bounds";
    case SKL_ERR_JSON: return "invalid JSON";
    case SKL_ERR_DUPLICATE_KEY: return "duplicate JSON key";
    case SKL_ERR_HEADER: return "malformed safetensors header";
    case SKL_ERR_DTYPE: return "unknown or unsupported dtype";
    case SKL_ERR_TENSOR_SIZE: return "tensor byte size does not match its shape";
    case SKL_ERR_OUT_OF_RANGE: return "tensor data outside the data area";
    case SKL_ERR_OVERLAP: return "tensors overlap";
    case SKL_ERR_GAP: return "unused bytes between or after tensors";
    case SKL_ERR_CONFIG: return "invalid model config";
    case SKL_ERR_SHAPE: return "tensor shape inconsistent with config";
    case SKL_ERR_MISSING_TENSOR: return "required tensor missing";
    case SKL_ERR_UNEXPECTED_TENSOR: return "unexpected tensor";
    case SKL_ERR_TOKEN: return "token id out of range";
    case SKL_ERR_CONTEXT_FULL: return "context is full";
    case SKL_ERR_CANCELLED: return "cancelled by callback";
    case SKL_ERR_MERGE_NOT_APPLICABLE: return "merge does not apply to this model";
    case SKL_ERR_SINGULAR: return "matrix is singular";
    case SKL_ERR_ILL_CONDITIONED: return "matrix too ill-conditioned";
    case SKL_ERR_ALREADY_MERGED: return "model already merged";
    case SKL_ERR_UNSUPPORTED: return "unsupported";
    case SKL_ERR_TOKENIZER: return "malformed tokenizer.json";
    case SKL_ERR_NO_TOKENIZER: return "model has no tokenizer";
    case SKL_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    default: return "unknown status";
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
