#include "util/threadpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

struct bee_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long generation; /* bumped for every job */
    int pending;              /* workers still running the current job */
    int stop;
    void (*fn)(void *ctx, int ith, int nth);
    void *ctx;
};

static _Thread_local int t_in_job;

typedef struct {
    bee_pool *p;
    int ith;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg a = *(worker_arg *)arg;
    free(arg);
    bee_pool *p = a.p;
    unsigned long seen = 0;
    t_in_job = 1; /* workers only ever run jobs: nested calls run inline */
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        void (*fn)(void *, int, int) = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, a.ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

bee_pool *bee_pool_init(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 1024) n_threads = 1024;
    bee_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a) *a = (worker_arg){p, i};
        if (!a || pthread_create(&p->threads[i], NULL, worker_main, a) != 0) {
            free(a);
            p->n = i; /* run with the threads that started */
            break;
        }
    }
    return p;
}

void bee_pool_free(bee_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int bee_pool_size(const bee_pool *p) { return p ? p->n : 1; }

void bee_pool_run(bee_pool *p, void (*fn)(void *ctx, int ith, int nth), void *ctx) {
    if (!p || p->n == 1 || t_in_job) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    t_in_job = 1;
    fn(ctx, 0, p->n);
    t_in_job = 0;
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

typedef struct {
    size_t n, grain;
    void (*fn)(void *ctx, size_t begin, size_t end, int ith);
    void *ctx;
} for_job;

static void for_chunk(void *arg, int ith, int nth) {
    const for_job *j = arg;
    size_t blocks = (j->n + j->grain - 1) / j->grain;
    size_t b0 = blocks * (size_t)ith / (size_t)nth, b1 = blocks * (size_t)(ith + 1) / (size_t)nth;
    size_t begin = b0 * j->grain, end = b1 * j->grain < j->n ? b1 * j->grain : j->n;
    if (begin < end) j->fn(j->ctx, begin, end, ith);
}

void bee_pool_for(bee_pool *p, size_t n, size_t grain, void (*fn)(void *ctx, size_t begin, size_t end, int ith),
                  void *ctx) {
    if (n == 0) return;
    for_job j = {n, grain ? grain : 1, fn, ctx};
    bee_pool_run(p, for_chunk, &j);
}
