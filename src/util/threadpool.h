/* A persistent thread pool for the forward pass, which dispatches hundreds of
 * parallel regions per token.
 *
 * The calling thread works as thread 0, so a pool of n threads starts n - 1
 * workers. A dispatch publishes the job and bumps an atomic generation
 * counter; idle workers poll that counter for a short while (pause, then
 * sched_yield; back-to-back regions cost under a microsecond on an idle
 * 2-core machine) and then sleep on a futex (a condition variable off Linux),
 * so an idle pool burns no CPU between tokens. The dispatcher waits for the
 * workers the same way. When the pool has more threads than CPUs the process
 * may use (online CPUs narrowed by the affinity mask), nobody polls: waits go
 * straight to sleep.
 *
 * Work is split statically: every index is computed by exactly one thread and
 * the split depends only on (n, grain, thread count), so kernels that reduce
 * per output element give results that do not depend on the thread count.
 *
 * Calls made from inside a running job (on any thread of any pool), and calls
 * made while another thread is dispatching on the same pool, run inline on
 * the calling thread as a one-thread job: they never deadlock. */
#ifndef BEE_UTIL_THREADPOOL_H
#define BEE_UTIL_THREADPOOL_H

#include <stddef.h>

typedef struct bee_pool bee_pool;

/* n_threads <= 0: one per online CPU. If some workers fail to start, the pool
 * runs with those that did. NULL (with bee_fail's message) when out of
 * memory. */
bee_pool *bee_pool_init(int n_threads);
/* Stops and joins the workers. NULL is a no-op. Must not be called while a
 * job is running on the pool. */
void bee_pool_free(bee_pool *p);
/* Number of threads, the caller included; 1 for a NULL pool. */
int bee_pool_size(const bee_pool *p);
/* Runs fn(ctx, ith, nth) for ith = 0 .. nth-1, one call per thread (ith 0 on
 * the calling thread), and returns when all have finished; everything the
 * calls wrote is visible to the caller afterwards. With a NULL pool, a
 * one-thread pool or a nested call: fn(ctx, 0, 1) inline. */
void bee_pool_run(bee_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx);
/* Splits [0, n) into ceil(n / grain) blocks of grain indices (the last one
 * may be short) and gives thread ith the contiguous run of blocks
 * [ith * B / nth, (ith + 1) * B / nth) (balanced, the first B % nth threads
 * one block more): fn(ctx, begin, end, ith) is called once per thread whose
 * range is not empty. grain 0 means 1. When there is a single block, or the
 * call runs inline, fn(ctx, 0, n, 0) is called on the calling thread. n == 0
 * calls nothing. */
void bee_pool_for(bee_pool *p, size_t n, size_t grain, void (*fn)(void *ctx, size_t begin, size_t end, int ith),
                  void *ctx);

#endif
