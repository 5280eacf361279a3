/* npy.h - minimal NumPy .npy reader/writer for 2-D float arrays (CLI and tests only,
 * not part of the library). */
#ifndef SKL_NPY_H
#define SKL_NPY_H
#include <stdint.h>

/* Write float32 [rows, cols] C-order as .npy version 1.0.  Returns 0 or -1 (errno set). */
int npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols);

/* Read a 1-D or 2-D little-endian '<f8' or '<f4' C-order .npy into a malloc'd
 * double array; a 1-D array has rows = 1.  Returns 0, or -1 with a message in err. */
int npy_read(const char *path, double **data, int64_t *rows, int64_t *cols, char *err, int errlen);
#endif
