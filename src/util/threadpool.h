/* A persistent thread pool for the forward pass. The calling thread works as
 * thread 0; work is split statically so every output is computed by one
 * thread in a fixed order (results do not depend on the thread count). */
#ifndef BEE_UTIL_THREADPOOL_H
#define BEE_UTIL_THREADPOOL_H

#include <stddef.h>

typedef struct bee_pool bee_pool;

/* n_threads <= 0: one per online CPU. NULL on failure. */
bee_pool *bee_pool_init(int n_threads);
void bee_pool_free(bee_pool *p);
/* 1 for a NULL pool. */
int bee_pool_size(const bee_pool *p);
/* Runs fn(ctx, ith, nth) on every thread and waits for all (inline for NULL
 * or when called from inside a running job). */
void bee_pool_run(bee_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);
/* Splits [0, n) into one contiguous chunk per thread (multiples of grain). */
void bee_pool_for(bee_pool *p, size_t n, size_t grain, void (*fn)(void *ctx, size_t begin, size_t end, int ith),
                  void *ctx);

#endif
