/* fuzz.h - what the libFuzzer harnesses share: a scratch directory of this
 * process and writing fuzzer bytes into files there. */
#ifndef SKL_FUZZ_H
#define SKL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* The process's scratch directory (created on first use, under $TMPDIR or /tmp). */
const char *fuzz_dir(void);
/* path = fuzz_dir()/name (room for 512 bytes); the file holds data[0..n). */
void fuzz_write(const char *name, const uint8_t *data, size_t n, char *path);
/* Remove everything in fuzz_dir() (not the directory). */
void fuzz_clean(void);
/* An input cut into records: [kind u8][length u16 LE][bytes]; a short last record takes the rest.
 * Returns the record count (at most max), each rec[i] pointing into data. */
typedef struct fuzz_rec {
    uint8_t kind;
    const uint8_t *p;
    size_t n;
} fuzz_rec;
size_t fuzz_records(const uint8_t *data, size_t n, fuzz_rec *rec, size_t max);
/* Stop the harness on a broken invariant (libFuzzer records the input as a crash). */
void fuzz_fail(const char *what, const char *detail);

#endif
