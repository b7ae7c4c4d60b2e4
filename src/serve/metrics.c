#include "serve/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

static const double k_bounds[BEE_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                  0.25,  0.5,    1,     2.5,  5,     10,  30};

int bee_metrics_init(bee_metrics *m) {
    memset(m, 0, sizeof *m);
    return pthread_mutex_init(&m->mu, NULL) ? bee_fail("mutex init failed") : 0;
}

void bee_metrics_free(bee_metrics *m) {
    free(m->reqs);
    free(m->safety);
    pthread_mutex_destroy(&m->mu);
}

void bee_metrics_request(bee_metrics *m, const char *endpoint, int status) {
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->n_reqs && !(m->reqs[i].status == status && strcmp(m->reqs[i].endpoint, endpoint) == 0)) i++;
    if (i == m->n_reqs && m->n_reqs == m->cap_reqs) {
        size_t cap = m->cap_reqs ? m->cap_reqs * 2 : 16;
        bee_req_count *r = realloc(m->reqs, cap * sizeof *r);
        if (r) m->reqs = r, m->cap_reqs = cap;
    }
    if (i == m->n_reqs && m->n_reqs < m->cap_reqs) {
        memset(&m->reqs[i], 0, sizeof m->reqs[i]);
        strncpy(m->reqs[i].endpoint, endpoint, sizeof m->reqs[i].endpoint - 1);
        m->reqs[i].status = status;
        m->n_reqs++;
    }
    if (i < m->n_reqs) m->reqs[i].n++;
    pthread_mutex_unlock(&m->mu);
}

/* Category names come from the policy file: keep them from breaking the label syntax. */
static void label_value(char *dst, size_t cap, const char *v) {
    size_t k = 0;
    for (; *v && k + 1 < cap; v++) dst[k++] = (*v == '"' || *v == '\\' || *v == '\n') ? '_' : *v;
    dst[k] = 0;
}

void bee_metrics_safety(bee_metrics *m, const char *stage, const char *category, const char *action) {
    char cat[96], key[160];
    label_value(cat, sizeof cat, category ? category : "");
    snprintf(key, sizeof key, "stage=\"%s\",category=\"%s\",action=\"%s\"", stage, cat, action);
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->n_safety && strcmp(m->safety[i].labels, key) != 0) i++;
    if (i == m->n_safety && m->n_safety == m->cap_safety) {
        size_t cap = m->cap_safety ? m->cap_safety * 2 : 8;
        bee_label_count *r = realloc(m->safety, cap * sizeof *r);
        if (r) m->safety = r, m->cap_safety = cap;
    }
    if (i == m->n_safety && m->n_safety < m->cap_safety) {
        snprintf(m->safety[i].labels, sizeof m->safety[i].labels, "%s", key);
        m->safety[i].n = 0;
        m->n_safety++;
    }
    if (i < m->n_safety) m->safety[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void bee_metrics_observe(bee_metrics *m, bee_hist *h, double s) {
    pthread_mutex_lock(&m->mu);
    size_t b = 0;
    while (b < BEE_HIST_BUCKETS && s > k_bounds[b]) b++;
    h->counts[b]++;
    h->sum += s;
    h->n++;
    pthread_mutex_unlock(&m->mu);
}

void bee_metrics_add(bee_metrics *m, uint64_t *counter, uint64_t v) {
    pthread_mutex_lock(&m->mu);
    *counter += v;
    pthread_mutex_unlock(&m->mu);
}

void bee_metrics_set(bee_metrics *m, int64_t *gauge, int64_t v) {
    pthread_mutex_lock(&m->mu);
    *gauge = v;
    pthread_mutex_unlock(&m->mu);
}

/* ================================================================ exposition */

static void render_hist(bee_str *o, const char *name, const char *help, const bee_hist *h) {
    bee_str_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t b = 0; b < BEE_HIST_BUCKETS; b++) {
        cum += h->counts[b];
        bee_str_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, k_bounds[b], (unsigned long long)cum);
    }
    cum += h->counts[BEE_HIST_BUCKETS];
    bee_str_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
                   h->sum, name, (unsigned long long)h->n);
}

static void render_counter(bee_str *o, const char *name, const char *help, uint64_t v) {
    bee_str_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

static void render_gauge(bee_str *o, const char *name, const char *help, int64_t v) {
    bee_str_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, (long long)v);
}

int bee_metrics_render(bee_metrics *m, bee_str *o) {
    pthread_mutex_lock(&m->mu);
    bee_str_printf(o, "# HELP bee_requests_total HTTP requests by endpoint and status.\n# TYPE bee_requests_total counter\n");
    for (size_t i = 0; i < m->n_reqs; i++)
        bee_str_printf(o, "bee_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", m->reqs[i].endpoint,
                       m->reqs[i].status, (unsigned long long)m->reqs[i].n);
    render_counter(o, "bee_prompt_tokens_total", "Prompt tokens of admitted generation requests.", m->prompt_tokens);
    render_counter(o, "bee_generated_tokens_total", "Generated tokens.", m->generated_tokens);
    render_counter(o, "bee_forward_steps_total", "Batched forward passes run by the scheduler.", m->steps);
    render_counter(o, "bee_forward_step_tokens_total", "Tokens fed to those forward passes.", m->step_tokens);
    render_counter(o, "bee_prefix_cache_hits_total", "Prompts whose KV cache was reused from a finished slot.",
                   m->prefix_hits);
    render_counter(o, "bee_prefill_slices_total", "Layer slices of long prompts' prefills run between decode steps.",
                   m->prefill_slices);
    bee_str_printf(o, "# HELP bee_safety_decisions_total Content-policy matches by stage, category and action.\n"
                      "# TYPE bee_safety_decisions_total counter\n");
    for (size_t i = 0; i < m->n_safety; i++)
        bee_str_printf(o, "bee_safety_decisions_total{%s} %llu\n", m->safety[i].labels, (unsigned long long)m->safety[i].n);
    bee_str_printf(o, "# HELP bee_feedback_rows_total Rows written to the feedback store.\n"
                      "# TYPE bee_feedback_rows_total counter\n"
                      "bee_feedback_rows_total{kind=\"response\"} %llu\nbee_feedback_rows_total{kind=\"rating\"} %llu\n",
                   (unsigned long long)m->feedback_responses, (unsigned long long)m->feedback_ratings);
    render_counter(o, "bee_feedback_errors_total", "Responses that could not be stored in the feedback store.",
                   m->feedback_errors);
    render_hist(o, "bee_time_to_first_token_seconds", "Time from arrival to the first generated token.", &m->ttft);
    render_hist(o, "bee_inter_token_seconds", "Time between consecutive generated tokens of a choice.", &m->itl);
    render_hist(o, "bee_request_duration_seconds", "Time from arrival to the end of generation.", &m->duration);
    render_hist(o, "bee_forward_step_seconds", "Duration of one batched forward step.", &m->step_time);
    render_gauge(o, "bee_queue_depth", "Requests waiting for a slot.", m->queue_depth);
    render_gauge(o, "bee_active_slots", "Slots generating now.", m->active_slots);
    render_gauge(o, "bee_slots", "Configured parallel slots.", m->slots);
    render_gauge(o, "bee_kv_cache_bytes", "Bytes held by the KV block pool (active slots and cached prefixes).", m->kv_bytes);
    render_gauge(o, "bee_kv_blocks_total", "KV cache blocks of 64 tokens the budget holds (--kv-budget).", m->kv_blocks_total);
    render_gauge(o, "bee_kv_blocks_used", "KV cache blocks referenced by slots or cached prefixes.", m->kv_blocks_used);
    render_counter(o, "bee_kv_blocks_shared_total", "KV cache blocks shared (prefix hits, n > 1 choices) instead of copied.",
                   (uint64_t)m->kv_blocks_shared);
    render_counter(o, "bee_kv_cow_copies_total", "Shared KV cache blocks copied on a sequence's first write into them.",
                   (uint64_t)m->kv_cow);
    render_gauge(o, "bee_model_loaded", "1 once the model is loaded.", m->loaded);
    pthread_mutex_unlock(&m->mu);
    return o->s ? 0 : bee_fail("out of memory");
}
