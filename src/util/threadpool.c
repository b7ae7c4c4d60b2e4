#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "util/threadpool.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/error.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#define BEE_POOL_FUTEX 1
#else
#define BEE_POOL_FUTEX 0
#endif

/* How long a waiting thread polls before it goes to sleep on the futex:
 * back-to-back regions of a forward pass are microseconds apart, and between
 * tokens (sampling, I/O) the workers fall asleep after this. For the first
 * BEE_POOL_PAUSE_NS it polls with `pause` only; after that it yields the CPU
 * between polls, which costs little on an idle core and lets the thread it
 * waits for run when the machine is busy (measured on a loaded 2-core VM:
 * 2-3x faster dispatch than pure spinning). Compile-time tunables. */
#ifndef BEE_POOL_SPIN_NS
#define BEE_POOL_SPIN_NS 200000L
#endif
#ifndef BEE_POOL_PAUSE_NS
#define BEE_POOL_PAUSE_NS 20000L
#endif
#define MAX_THREADS 1024
#define CACHE_LINE 64

/* One wait/wake channel on a 32-bit atomic word: futex on Linux, a mutex and
 * condition variable elsewhere. Waking is only done when someone registered
 * as a sleeper (the slow path). */
typedef struct {
    atomic_int sleepers;
#if !BEE_POOL_FUTEX
    pthread_mutex_t mu;
    pthread_cond_t cv;
#endif
} waitq;

struct bee_pool {
    /* written by the dispatcher, read by the workers */
    _Alignas(CACHE_LINE) atomic_uint gen; /* bumped once per job */
    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
    int n;        /* threads, the caller included */
    int stop;     /* read by workers after they see a new generation */
    long spin_ns; /* 0 when oversubscribed */
    waitq gen_q;
    /* decremented by the workers */
    _Alignas(CACHE_LINE) atomic_uint pending; /* workers still running the job */
    waitq done_q;
    _Alignas(CACHE_LINE) atomic_flag busy; /* a dispatch is in flight */
    pthread_t *threads;
    struct worker_arg *args;
};

struct worker_arg {
    bee_pool *p;
    int ith;
};

/* 1 while this thread is running a job (always, on workers): nested calls
 * run inline. */
static _Thread_local int t_in_job;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void waitq_init(waitq *q) {
    atomic_init(&q->sleepers, 0);
#if !BEE_POOL_FUTEX
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
#endif
}

static void waitq_destroy(waitq *q) {
#if !BEE_POOL_FUTEX
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
#else
    (void)q;
#endif
}

/* Sleeps while *word == val (spurious returns allowed: callers loop). The
 * sleeper count is raised before *word is re-checked and the waker bumps
 * *word before reading the count (both sequentially consistent), so either the
 * waker sees the sleeper or the sleeper sees the new value. */
static void waitq_wait(waitq *q, atomic_uint *word, unsigned val) {
    atomic_fetch_add(&q->sleepers, 1);
#if BEE_POOL_FUTEX
    if (atomic_load(word) == val) syscall(SYS_futex, (void *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
#else
    pthread_mutex_lock(&q->mu);
    while (atomic_load(word) == val) pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
#endif
    atomic_fetch_sub(&q->sleepers, 1);
}

/* Call after changing *word (with a sequentially consistent operation). */
static void waitq_wake(waitq *q, atomic_uint *word) {
    if (atomic_load(&q->sleepers) == 0) return;
#if BEE_POOL_FUTEX
    syscall(SYS_futex, (void *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)word;
    pthread_mutex_lock(&q->mu);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
#endif
}

/* Polls *word until it differs from val (done_at_zero == 0) or is 0
 * (done_at_zero == 1), for at most spin_ns: busy (with pause) for the first
 * BEE_POOL_PAUSE_NS, then yielding the CPU between polls so that a thread we
 * wait for that shares our CPU (an oversubscribed or busy machine) can run.
 * Returns the last value read. */
static unsigned spin(atomic_uint *word, unsigned val, int done_at_zero, long spin_ns) {
    long start = 0;
    int yielding = 0;
    for (unsigned i = 1;; i++) {
        unsigned v = atomic_load_explicit(word, memory_order_acquire);
        if (done_at_zero ? v == 0 : v != val) return v;
        if (spin_ns <= 0) return v;
        if (yielding || (i & 31) == 0) {
            long t = now_ns();
            if (!start)
                start = t;
            else if (t - start > spin_ns)
                return v;
            else if (t - start > BEE_POOL_PAUSE_NS)
                yielding = 1;
        }
        if (yielding)
            sched_yield();
        else
            cpu_relax();
    }
}

/* Waits until gen differs from seen: spins first, then sleeps. */
static unsigned wait_gen(bee_pool *p, unsigned seen) {
    unsigned g = spin(&p->gen, seen, 0, p->spin_ns);
    while (g == seen) {
        waitq_wait(&p->gen_q, &p->gen, seen);
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
    }
    return g;
}

/* The dispatcher waits for the workers to finish: spins, then sleeps. */
static void wait_done(bee_pool *p) {
    unsigned v = spin(&p->pending, 0, 1, p->spin_ns);
    while (v != 0) {
        waitq_wait(&p->done_q, &p->pending, v);
        v = atomic_load_explicit(&p->pending, memory_order_acquire);
    }
}

static void *worker_main(void *arg) {
    const struct worker_arg *a = arg;
    bee_pool *p = a->p;
    const int ith = a->ith;
    unsigned seen = 0; /* the pool starts at generation 0 */
    t_in_job = 1;
    for (;;) {
        seen = wait_gen(p, seen);
        if (p->stop) break;
        p->fn(p->ctx, ith, p->n);
        /* release: the job's writes become visible to the dispatcher */
        if (atomic_fetch_sub(&p->pending, 1u) == 1u) waitq_wake(&p->done_q, &p->pending);
    }
    return NULL;
}

static int online_cpus(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (c > MAX_THREADS ? MAX_THREADS : (int)c) : 1;
}

/* CPUs this process may run on (taskset, cpusets), for the spin decision. */
static int usable_cpus(int online) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0 && c < online) return c;
    }
#endif
    return online;
}

bee_pool *bee_pool_init(int n_threads) {
    int online = online_cpus();
    if (n_threads <= 0) n_threads = online;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    bee_pool *p = NULL;
    if (posix_memalign((void **)&p, CACHE_LINE, sizeof *p) != 0) {
        bee_fail("out of memory (thread pool)");
        return NULL;
    }
    memset(p, 0, sizeof *p);
    atomic_init(&p->gen, 0u);
    atomic_init(&p->pending, 0u);
    atomic_flag_clear(&p->busy);
    waitq_init(&p->gen_q);
    waitq_init(&p->done_q);
    p->n = 1;
    p->spin_ns = n_threads <= usable_cpus(online) ? BEE_POOL_SPIN_NS : 0;
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof *p->threads);
        p->args = calloc((size_t)n_threads, sizeof *p->args);
        if (!p->threads || !p->args) {
            bee_pool_free(p);
            bee_fail("out of memory (thread pool)");
            return NULL;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        p->args[i] = (struct worker_arg){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->args[i]) != 0) break; /* run with those started */
        p->n = i + 1;
    }
    return p;
}

void bee_pool_free(bee_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        p->stop = 1;
        atomic_fetch_add(&p->gen, 1u); /* release: workers read stop after seeing it */
        waitq_wake(&p->gen_q, &p->gen);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    }
    waitq_destroy(&p->gen_q);
    waitq_destroy(&p->done_q);
    free(p->threads);
    free(p->args);
    free(p);
}

int bee_pool_size(const bee_pool *p) { return p ? p->n : 1; }

void bee_pool_run(bee_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    if (!p || p->n == 1 || t_in_job || atomic_flag_test_and_set_explicit(&p->busy, memory_order_acquire)) {
        int outer = t_in_job;
        t_in_job = 1;
        fn(ctx, 0, 1);
        t_in_job = outer;
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->pending, (unsigned)p->n - 1u, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1u); /* seq_cst: publishes fn, ctx, pending */
    waitq_wake(&p->gen_q, &p->gen);
    t_in_job = 1;
    fn(ctx, 0, p->n);
    t_in_job = 0;
    wait_done(p);
    atomic_flag_clear_explicit(&p->busy, memory_order_release);
}

typedef struct {
    size_t n, grain, blocks;
    void (*fn)(void *ctx, size_t begin, size_t end, int ith);
    void *ctx;
} for_job;

/* Start of thread i's blocks: i * B / nth rounded so that the first B % nth
 * threads get one more, without overflow. */
static size_t block_start(size_t blocks, size_t i, size_t nth) {
    size_t q = blocks / nth, r = blocks % nth;
    return i * q + (i < r ? i : r);
}

static void for_chunk(void *arg, int ith, int nth) {
    const for_job *j = arg;
    size_t b0 = block_start(j->blocks, (size_t)ith, (size_t)nth);
    size_t b1 = block_start(j->blocks, (size_t)ith + 1, (size_t)nth);
    if (b0 >= b1) return;
    /* b < blocks implies b * grain < n: no overflow */
    size_t begin = b0 * j->grain, end = b1 >= j->blocks ? j->n : b1 * j->grain;
    j->fn(j->ctx, begin, end, ith);
}

void bee_pool_for(bee_pool *p, size_t n, size_t grain, void (*fn)(void *ctx, size_t begin, size_t end, int ith),
                  void *ctx) {
    if (n == 0) return;
    if (grain == 0) grain = 1;
    for_job j = {n, grain, n / grain + (n % grain != 0), fn, ctx};
    if (j.blocks == 1 || bee_pool_size(p) == 1) {
        int outer = t_in_job;
        t_in_job = 1;
        fn(ctx, 0, n, 0);
        t_in_job = outer;
        return;
    }
    bee_pool_run(p, for_chunk, &j);
}
