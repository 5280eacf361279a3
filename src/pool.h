/* pool.h - the thread pool (pool.c). */
#ifndef SKL_POOL_H
#define SKL_POOL_H

#include "error.h"

typedef struct skl_pool skl_pool;
typedef void (*skl_chunk_fn)(void *arg, int64_t chunk);
int skl_pool_create(int n_threads, skl_pool **out); /* n_threads - 1 workers + the caller */
void skl_pool_free(skl_pool *p);
int skl_pool_size(const skl_pool *p);
/* fn(arg, k) once for each k in [0, n_chunks), on the caller and the workers
 * (chunks taken from a shared counter); returns when all are done.  Which
 * thread runs a chunk must not matter to fn. */
void skl_pool_for(skl_pool *p, int64_t n_chunks, skl_chunk_fn fn, void *arg);
/* spin = 0: idle workers sleep at once (set before OpenBLAS runs); 1: spin briefly first. */
void skl_pool_set_spin(skl_pool *p, int spin);

#endif
