/* Server metrics in the Prometheus text exposition format. Every update
 * takes the metrics mutex: updates are a few per token, far below the cost
 * of a forward step. */
#ifndef BEE_SERVE_METRICS_H
#define BEE_SERVE_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define BEE_HIST_BUCKETS 14

typedef struct {
    uint64_t counts[BEE_HIST_BUCKETS + 1]; /* last = +Inf */
    double sum;
    uint64_t n;
} bee_hist;

typedef struct {
    char endpoint[32];
    int status;
    uint64_t n;
} bee_req_count;

/* A counter keyed by a rendered label set such as stage="prompt",category="x",action="block". */
typedef struct {
    char labels[160];
    uint64_t n;
} bee_label_count;

typedef struct {
    pthread_mutex_t mu;
    bee_req_count *reqs;
    size_t n_reqs, cap_reqs;
    bee_label_count *safety; /* bee_safety_decisions_total */
    size_t n_safety, cap_safety;
    uint64_t feedback_responses, feedback_ratings, feedback_errors;
    uint64_t prompt_tokens, generated_tokens, steps, step_tokens, prefix_hits, prefill_slices;
    bee_hist ttft, itl, duration, step_time;
    /* gauges, set by the scheduler */
    int64_t queue_depth, active_slots, slots, kv_bytes, loaded;
    int64_t kv_blocks_total, kv_blocks_used; /* the pool's budget and referenced blocks */
    int64_t kv_blocks_shared, kv_cow;        /* counters kept by the pool, copied in with the gauges */
} bee_metrics;

int bee_metrics_init(bee_metrics *m);
void bee_metrics_free(bee_metrics *m);
void bee_metrics_request(bee_metrics *m, const char *endpoint, int status);
/* One content-safety decision (a match) of a category and action at a stage. */
void bee_metrics_safety(bee_metrics *m, const char *stage, const char *category, const char *action);
void bee_metrics_observe(bee_metrics *m, bee_hist *h, double seconds);
void bee_metrics_add(bee_metrics *m, uint64_t *counter, uint64_t v);
void bee_metrics_set(bee_metrics *m, int64_t *gauge, int64_t v);
/* Appends the exposition text. */
int bee_metrics_render(bee_metrics *m, bee_str *out);

#endif
