/* blas.h - BLAS setup (blas.c). */
#ifndef SKL_BLAS_H
#define SKL_BLAS_H

#include "error.h"

/* Once per process, before the library's first BLAS call: make OpenBLAS use the
 * kernels this CPU supports (see blas.c).  Called by skl_model_load. */
void skl_blas_setup(void);

/* OpenBLAS's thread count is one setting of the process.  A context's prefill
 * runs its sgemms between skl_blas_lock(n_threads) (the count set to the
 * context's) and skl_blas_unlock() (the count set back), so that a prefill on
 * another thread cannot change it in between: each context's logits are those
 * of its own n_threads whatever other contexts do (prefills of different
 * contexts take turns at BLAS; decode does not use it). */
void skl_blas_lock(int n_threads);
void skl_blas_unlock(void);

#endif
