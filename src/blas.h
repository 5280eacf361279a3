/* blas.h - BLAS setup (blas.c). */
#ifndef SKL_BLAS_H
#define SKL_BLAS_H

#include "error.h"

/* Once per process, before the library's first BLAS call: make OpenBLAS use the
 * kernels this CPU supports (see blas.c).  Called by skl_model_load. */
void skl_blas_setup(void);

#endif
