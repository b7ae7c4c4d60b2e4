/* The scheduler: one thread owns the model and runs continuous batching.
 *
 * KV caches live in one block pool (model.h) of --kv-budget bytes shared by
 * every slot: a job is admitted when its blocks are free (a queued job
 * waits, in order), n > 1 choices and prompt-prefix hits share blocks
 * instead of copying them (copy on write), and the prefixes kept by free
 * slots are evicted, least recently used first, when admission needs
 * their blocks.
 *
 * Each step is ONE bee_forward over every active slot: the next token of
 * each decoding choice plus the whole context of each newly admitted short
 * prompt (admissions per step are bounded by a prompt-token budget; one
 * prompt always fits). CPM-Bee context tokens attend to each other in both
 * directions, so a prompt cannot be split by tokens without changing its KV
 * cache; a long prompt (prompt tokens x layers above the chunk budget) is
 * instead split by layers: after each batched step, one slice of a few
 * layers of its prefill runs (bee_prefill_step), so running streams keep
 * getting tokens while it is prefilled, and its cache ends up exactly what
 * one bee_forward would have made.
 * Each slot's logits row is cut out of the batch (its own ext columns), so a
 * choice samples exactly as `bee generate` would: batching does not change
 * results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/eval.h"
#include "model/lora.h"
#include "serve/internal.h"
#include "util/error.h"
#include "util/threadpool.h"

double bee_serve_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ================================================================ jobs */

bee_job *bee_job_new(struct bee_server *s, const char *endpoint) {
    bee_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->srv = s;
    j->endpoint = endpoint;
    j->refs = 1;
    j->t_arrive = bee_serve_now();
    j->created = (long long)time(NULL);
    pthread_cond_init(&j->cv, NULL);
    pthread_mutex_lock(&s->mu);
    s->n_jobs++;
    uint64_t k = ++s->id_counter;
    pthread_mutex_unlock(&s->mu);
    const char *pre = strcmp(endpoint, "/v1/chat/completions") == 0 ? "chatcmpl"
                      : strcmp(endpoint, "/v1/cpmbee") == 0         ? "cpmbee"
                      : strcmp(endpoint, "/v1/digest") == 0         ? "digest"
                      : strcmp(endpoint, "/v1/ask") == 0            ? "ask"
                                                                    : "cmpl";
    snprintf(j->id, sizeof j->id, "%s-%llx%06llx", pre, (unsigned long long)j->created, (unsigned long long)k);
    return j;
}

static void job_free(bee_job *j) {
    for (int i = 0; j->choices && i < j->rq.n; i++) {
        bee_choice *c = &j->choices[i];
        bee_str_free(&c->text);
        bee_str_free(&c->raw);
        bee_safety_stream_free(c->safe);
        json_decref(c->lp_tokens), json_decref(c->lp_logprobs), json_decref(c->lp_top), json_decref(c->lp_offsets);
    }
    free(j->choices);
    if (j->b_ok) bee_gen_batch_free(&j->b);
    if (j->in_ok) bee_gen_input_free(&j->in);
    free(j->ctx_toks);
    json_decref(j->result);
    bee_str_free(&j->sse);
    bee_api_req_free(&j->rq);
    free(j->body);
    pthread_cond_destroy(&j->cv);
    free(j);
}

void bee_job_unref_locked(bee_job *j) {
    if (--j->refs > 0) return;
    struct bee_server *s = j->srv;
    job_free(j);
    s->n_jobs--;
    pthread_cond_broadcast(&s->ready_cv);
}

void bee_job_cancel_locked(bee_job *j) {
    if (j->state == BEE_JOB_DONE || j->cancelled) return;
    j->cancelled = 1;
    pthread_cond_signal(&j->srv->work_cv);
}

json_t *bee_job_usage(const bee_job *j) {
    long long gen = j->beam_tokens;
    for (int i = 0; i < j->rq.n; i++) gen += j->choices[i].n_gen;
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->n_ctx, "completion_tokens", (json_int_t)gen,
                     "total_tokens", (json_int_t)(j->n_ctx + (size_t)gen));
}

/* ================================================================ streaming output */

static void sse_append_locked(bee_job *j, json_t *chunk) {
    char *s = json_dumps(chunk, JSON_COMPACT);
    if (s) bee_str_printf(&j->sse, "data: %s\n\n", s);
    free(s);
    json_decref(chunk);
    pthread_cond_broadcast(&j->cv);
}

static json_t *chunk_base(const bee_job *j) {
    int chat = j->rq.kind == BEE_API_CHAT;
    return json_pack("{s:s,s:s,s:I,s:s}", "id", j->id, "object", chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)j->created, "model", j->srv->model_name);
}

static const char *finish_name(const bee_choice *c) {
    if (c->filtered) return "content_filter";
    return c->finish == BEE_FINISH_LENGTH ? "length" : "stop";
}

/* One choice's delta (text != NULL) or its final chunk (text == NULL). */
static json_t *choice_chunk(const bee_job *j, const bee_choice *c, const char *text, size_t len) {
    json_t *ch = json_pack("{s:i}", "index", c->index);
    json_t *fin = text ? json_null() : json_string(finish_name(c));
    if (j->rq.kind == BEE_API_CHAT) {
        json_t *delta = json_object();
        if (text && c->n_deltas == 0) json_object_set_new(delta, "role", json_string("assistant"));
        if (text) json_object_set_new(delta, "content", json_stringn(text, len));
        json_object_set_new(ch, "delta", delta);
    } else {
        json_object_set_new(ch, "text", json_stringn(text ? text : "", text ? len : 0));
    }
    json_object_set_new(ch, "logprobs", json_null());
    json_object_set_new(ch, "finish_reason", fin);
    json_t *o = chunk_base(j);
    json_object_set_new(o, "choices", json_pack("[o]", ch));
    return o;
}

/* Unescapes a piece into the choice's text. With a policy the piece passes
 * the streaming filter first, which appends only what can no longer become
 * part of a match; the filter failing counts as a block (fail closed). */
static void choice_feed(bee_choice *c, const char *text, size_t len, int final) {
    if (!c->safe) {
        bee_unescape_feed(&c->unesc, text, len, final, &c->text);
        return;
    }
    c->raw.n = 0;
    int rc = bee_unescape_feed(&c->unesc, text, len, final, &c->raw);
    if (rc == 0 && c->raw.n) rc = bee_safety_stream_push(c->safe, c->raw.s, c->raw.n, &c->text);
    if (rc == 0 && final) rc = bee_safety_stream_finish(c->safe, &c->text);
    if (rc || bee_safety_stream_action(c->safe) == BEE_SAFETY_BLOCK) c->filtered = 1;
}

/* Stream callback of a choice's sampler (scheduler thread). The chunk is
 * built off the lock; the connection thread is woken once per step, after
 * every slot has sampled (after_step), not once per piece. */
static void on_piece(void *user, size_t slot, const char *text, size_t len) {
    (void)slot;
    bee_choice *c = user;
    if (c->filtered) return; /* blocked: nothing more leaves, the slot stops after this token */
    size_t before = c->text.n;
    choice_feed(c, text, len, 0);
    bee_job *j = c->job;
    if (!j->rq.stream || c->text.n == before) return;
    json_t *ch = choice_chunk(j, c, c->text.s + before, c->text.n - before);
    char *txt = json_dumps(ch, JSON_COMPACT);
    json_decref(ch);
    pthread_mutex_lock(&j->srv->mu);
    if (txt) bee_str_printf(&j->sse, "data: %s\n\n", txt);
    c->n_deltas++;
    pthread_mutex_unlock(&j->srv->mu);
    free(txt);
}

/* Final stream events: finish reasons, usage (when asked for), [DONE] (or an error event).
 * Appended by the connection thread once the job is done, after the output
 * check hook had its say. */
void bee_job_sse_finish_locked(bee_job *j) {
    if (j->failed) {
        char *e = bee_api_error_json(&j->err);
        if (e) bee_str_printf(&j->sse, "data: %s\n\n", e);
        free(e);
    } else {
        for (int i = 0; i < j->rq.n; i++) {
            json_t *ch = choice_chunk(j, &j->choices[i], NULL, 0);
            char *s = json_dumps(ch, JSON_COMPACT);
            if (s) bee_str_printf(&j->sse, "data: %s\n\n", s);
            free(s);
            json_decref(ch);
        }
        if (j->rq.stream_usage) {
            json_t *u = chunk_base(j);
            json_object_set_new(u, "choices", json_array());
            json_object_set_new(u, "usage", bee_job_usage(j));
            char *s = json_dumps(u, JSON_COMPACT);
            if (s) bee_str_printf(&j->sse, "data: %s\n\n", s);
            free(s);
            json_decref(u);
        }
    }
    bee_str_appendz(&j->sse, "data: [DONE]\n\n");
}

/* Marks a job done (under mu) and drops the scheduler's reference. */
static void job_finish_locked(struct bee_server *s, bee_job *j) {
    if (j->state == BEE_JOB_DONE) return;
    j->state = BEE_JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    bee_metrics_observe(&s->metrics, &s->metrics.duration, bee_serve_now() - j->t_arrive);
    bee_job_unref_locked(j);
}

static void job_fail_locked(struct bee_server *s, bee_job *j, int status, const char *type, const char *msg) {
    if (j->state == BEE_JOB_DONE) return;
    j->failed = 1;
    bee_api_error_set(&j->err, status, type, NULL, "%s", msg);
    job_finish_locked(s, j);
}

/* ================================================================ preparing */

static int prep_fail(bee_api_error *e, const bee_job *j, const char *what) {
    const char *param = j->rq.kind == BEE_API_CHAT ? "messages" : j->rq.kind == BEE_API_CPMBEE ? "data" : "prompt";
    return bee_api_error_set(e, 400, "invalid_request_error", param, "%s: %s", what, bee_error_message());
}

/* ---------------------------------------------------------------- KV blocks */

static size_t blocks_for(size_t rows) { return (rows + BEE_KV_BLOCK - 1) / BEE_KV_BLOCK; }

/* Cache rows one choice of j may fill: the context, one <s> per answer slot,
 * max_tokens and the last token fed back. */
static size_t job_rows(const bee_job *j) { return j->n_ctx + j->in.n_slots + (size_t)j->max_tokens + 1; }

/* Blocks job j needs at most: choice 0 all of its rows; every other choice
 * shares the context's full blocks and needs the rest (its copy of the
 * shared partial block included). */
static size_t job_blocks(const bee_job *j) {
    size_t b = blocks_for(job_rows(j)), shared = j->n_ctx / BEE_KV_BLOCK;
    return b + (size_t)(j->rq.n - 1) * (b - shared);
}

static int prepare_limits(struct bee_server *s, bee_job *j, bee_api_error *e) {
    long ctx = s->o.ctx, n_ctx = (long)j->n_ctx, extra = (long)j->in.n_slots; /* one <s> per answer slot */
    if (n_ctx + extra >= ctx)
        return bee_api_error_set(e, 400, "invalid_request_error", j->rq.kind == BEE_API_CHAT ? "messages" : "prompt",
                                 "the prompt is %ld tokens; the server's context is %ld (--ctx)", n_ctx, ctx);
    if (!j->rq.max_tokens_set && n_ctx + extra + j->rq.max_tokens > ctx) j->rq.max_tokens = (int)(ctx - n_ctx - extra);
    if (n_ctx + extra + j->rq.max_tokens > ctx)
        return bee_api_error_set(e, 400, "invalid_request_error", "max_tokens",
                                 "prompt (%ld tokens) + max_tokens (%d) exceeds the server's context of %ld tokens",
                                 n_ctx, j->rq.max_tokens, ctx);
    if (j->rq.n > s->o.parallel)
        return bee_api_error_set(e, 400, "invalid_request_error", "n", "'n' (%d) exceeds the server's %d slots",
                                 j->rq.n, s->o.parallel);
    j->max_tokens = j->rq.max_tokens;
    size_t need = job_blocks(j);
    if (need > s->kv_max_blocks)
        return bee_api_error_set(e, 400, "invalid_request_error", "max_tokens",
                                 "prompt (%ld tokens) + max_tokens (%d) x n (%d) needs %zu KV cache blocks of %d tokens; "
                                 "the server's KV budget (--kv-budget) holds %u",
                                 n_ctx, j->max_tokens, j->rq.n, need, BEE_KV_BLOCK, s->kv_max_blocks);
    return 0;
}

/* An echo job scores its prompt (no slots, no sampling): checks that the
 * context fits and fixes the window. */
static int prepare_echo(struct bee_server *s, bee_job *j, bee_api_error *e) {
    bee_eval_enc enc;
    if (bee_eval_enc_init(s->model, j->rq.context, j->rq.echo_text, &enc)) return prep_fail(e, j, "bad input");
    size_t n_prefix = enc.n_prefix, n_ans = enc.n - enc.n_prefix;
    bee_eval_enc_free(&enc);
    long ctx = s->o.ctx;
    if ((long)n_prefix + 8 > ctx)
        return bee_api_error_set(e, 400, "invalid_request_error", j->rq.context ? "bee_context" : "prompt",
                                 "the context is %zu tokens; the server's context is %ld (--ctx)", n_prefix, ctx);
    if (j->rq.window && (long)n_prefix + j->rq.window > ctx)
        return bee_api_error_set(e, 400, "invalid_request_error", "bee_window",
                                 "context (%zu tokens) + bee_window (%d) exceeds the server's context of %ld tokens", n_prefix,
                                 j->rq.window, ctx);
    if (!j->rq.window) j->rq.window = (int)(ctx - (long)n_prefix);
    j->n_ctx = n_prefix + n_ans;
    j->choices = calloc(1, sizeof *j->choices);
    if (!j->choices) return bee_api_error_set(e, 500, "server_error", NULL, "out of memory");
    j->choices[0].job = j;
    if (j->rq.logprobs >= 0) {
        bee_choice *c = &j->choices[0];
        c->lp_tokens = json_array(), c->lp_logprobs = json_array(), c->lp_top = json_array(), c->lp_offsets = json_array();
    }
    return 0;
}

int bee_job_prepare(struct bee_server *s, bee_job *j, bee_api_error *e) {
    const bee_model *m = s->model;
    if (j->rq.echo) return prepare_echo(s, j, e);
    if (bee_gen_input_init(m->tok, j->rq.data, &j->in)) return prep_fail(e, j, "bad input");
    j->in_ok = 1;
    j->n_ctx = j->in.ids.n;
    if (prepare_limits(s, j, e)) return -1;
    j->rq.sp.max_tokens = j->max_tokens;
    if (bee_sampler_check(&j->rq.sp))
        return bee_api_error_set(e, 400, "invalid_request_error", "temperature", "%s", bee_error_message());
    if (bee_gen_batch_init(&j->b, m, &j->in, 1)) return prep_fail(e, j, "bad input");
    j->b_ok = 1;
    int32_t nseg = j->in.enc.n_seg;
    j->ctx_toks = malloc((j->n_ctx ? j->n_ctx : 1) * sizeof *j->ctx_toks);
    j->choices = calloc((size_t)j->rq.n, sizeof *j->choices);
    if (!j->ctx_toks || !j->choices) return bee_api_error_set(e, 500, "server_error", NULL, "out of memory");
    for (size_t t = 0; t < j->n_ctx; t++)
        j->ctx_toks[t] = (bee_token){j->in.ids.v[t], j->in.subs.v[t], (int32_t)t, j->in.segs.v[t], 0, nseg, 0, 1};
    uint64_t seed = j->rq.seed_set ? j->rq.sp.seed : (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uintptr_t)j;
    for (int i = 0; i < j->rq.n; i++) {
        bee_choice *c = &j->choices[i];
        c->job = j;
        c->index = i;
        c->sp = j->rq.sp;
        c->sp.seed = seed + (uint64_t)i;
        c->sp.stream = j->rq.kind == BEE_API_CPMBEE ? NULL : on_piece;
        c->sp.stream_user = c;
        if (s->o.policy && j->rq.kind != BEE_API_CPMBEE && bee_safety_stream_init(&c->safe, s->o.policy))
            return bee_api_error_set(e, 500, "server_error", NULL, "%s", bee_error_message());
        if (j->rq.logprobs >= 0) {
            c->lp_tokens = json_array(), c->lp_logprobs = json_array(), c->lp_top = json_array();
            c->lp_offsets = json_array();
        }
    }
    return 0;
}

int bee_job_submit(struct bee_server *s, bee_job *j, bee_api_error *e) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->draining || s->stopping) {
        rc = bee_api_error_set(e, 503, "server_error", NULL, "the server is shutting down");
    } else if (s->q_n >= (size_t)s->o.queue) {
        rc = bee_api_error_set(e, 503, "server_error", NULL, "the request queue is full (%d); retry later", s->o.queue);
    } else {
        j->state = BEE_JOB_QUEUED;
        j->refs++;
        j->deadline = s->o.timeout_s > 0 ? j->t_arrive + s->o.timeout_s : 0;
        s->queue[(s->q_head + s->q_n++) % (size_t)s->o.queue] = j;
        pthread_cond_signal(&s->work_cv);
    }
    /* under mu, so it cannot overwrite a newer value from the scheduler */
    bee_metrics_set(&s->metrics, &s->metrics.queue_depth, (int64_t)s->q_n);
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ================================================================ slots */

static void slot_release(struct bee_server *s, bee_serve_slot *sl) {
    if (sl->smp_ok) bee_sampler_free(&sl->smp);
    sl->smp_ok = 0;
    bee_prefill_cancel(sl->pf); /* mid-prefill: the cache goes back to empty */
    sl->pf = NULL;
    sl->chunked = 0;
    sl->cached_n = sl->prefilled && sl->job ? sl->job->n_ctx : 0;
    bee_seq_truncate(&sl->seq, (uint32_t)sl->cached_n); /* a kept prefix holds its blocks only */
    sl->prefilled = 0;
    sl->job = NULL;
    sl->phase = BEE_SLOT_FREE;
    sl->last_used = ++s->tick;
}

/* Releases every slot of a job and fails it (under mu). */
static void job_abort_locked(struct bee_server *s, bee_job *j, int status, const char *type, const char *msg) {
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i].job == j) slot_release(s, &s->slots[i]);
    j->n_running = 0;
    job_fail_locked(s, j, status, type, msg);
}

static void choice_done_locked(struct bee_server *s, bee_serve_slot *sl) {
    bee_job *j = sl->job;
    bee_choice *c = &j->choices[sl->choice];
    size_t before = c->text.n;
    if (!c->filtered) choice_feed(c, "", 0, 1); /* the held-back tail, decided now */
    if (c->safe && j->rq.stream && c->text.n > before) {
        sse_append_locked(j, choice_chunk(j, c, c->text.s + before, c->text.n - before));
        c->n_deltas++;
    }
    c->finish = sl->smp.finish;
    if (j->rq.kind == BEE_API_CPMBEE && !j->result) j->result = bee_sampler_result(&sl->smp);
    slot_release(s, sl);
    if (--j->n_running == 0) job_finish_locked(s, j);
}

/* The free slot whose kept context equals the job's, or -1. */
static int find_cached(struct bee_server *s, const bee_job *j) {
    size_t nrel = (size_t)j->in.enc.n_seg * (size_t)j->in.enc.n_seg;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_serve_slot *sl = &s->slots[i];
        if (sl->phase != BEE_SLOT_FREE || sl->cached_n != j->n_ctx || sl->seq.n < j->n_ctx || !j->n_ctx) continue;
        if (sl->seq.n_seg_rel != nrel || memcmp(sl->seq.seg_rel, j->in.enc.seg_rel, nrel * sizeof(int32_t))) continue;
        if (memcmp(sl->seq.keys, j->ctx_toks, j->n_ctx * sizeof *j->ctx_toks) == 0) return i;
    }
    return -1;
}

/* A free slot other than `keep`, preferring ones without a kept context,
 * then the least recently used. */
static int find_free(struct bee_server *s, int keep) {
    int best = -1;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_serve_slot *sl = &s->slots[i];
        if (sl->phase != BEE_SLOT_FREE || i == keep) continue;
        if (best < 0 || (sl->cached_n == 0 && s->slots[best].cached_n != 0) ||
            ((sl->cached_n == 0) == (s->slots[best].cached_n == 0) && sl->last_used < s->slots[best].last_used))
            best = i;
    }
    return best;
}

static int n_free(const struct bee_server *s) {
    int n = 0;
    for (int i = 0; i < s->o.parallel; i++) n += s->slots[i].phase == BEE_SLOT_FREE;
    return n;
}

/* Puts choice `ci` of job j into slot `si`: fresh prefill, later a copy of
 * slot `src`, or the kept context of slot `cached` (>= 0; its blocks are
 * shared unless it is si itself). */
static int slot_take(struct bee_server *s, int si, bee_job *j, int ci, int src, int cached) {
    bee_serve_slot *sl = &s->slots[si];
    sl->job = j, sl->choice = ci, sl->src = src, sl->cached_n = 0;
    sl->chunked = 0, sl->admitted = ++s->tick;
    if (bee_sampler_init(&sl->smp, &j->b, &j->choices[ci].sp)) return -1;
    sl->smp_ok = 1;
    if (sl->logits_cap < j->b.width) {
        float *l = realloc(sl->logits, j->b.width * sizeof *l);
        if (!l) return bee_fail("out of memory");
        sl->logits = l, sl->logits_cap = j->b.width;
    }
    sl->prefilled = 0;
    sl->phase = src >= 0 ? BEE_SLOT_WAIT : BEE_SLOT_PREFILL;
    if (cached != si) {
        size_t nrel = (size_t)j->in.enc.n_seg * (size_t)j->in.enc.n_seg;
        bee_seq_free(&sl->seq); /* releases the blocks of a prefix it kept */
        if (bee_seq_init_pooled(&sl->seq, s->model, &s->kv, j->in.enc.seg_rel, nrel)) return -1;
        if (cached >= 0 && bee_seq_copy(&sl->seq, &s->slots[cached].seq, s->model)) return -1;
    }
    if (cached >= 0) {
        s->slots[cached].last_used = ++s->tick;
        bee_seq_truncate(&sl->seq, (uint32_t)j->n_ctx);
        sl->prefilled = 1;
        sl->phase = BEE_SLOT_DECODE;
    }
    return 0;
}

/* A prompt whose prefill is more work than one step's chunk budget. */
static int is_long(const struct bee_server *s, const bee_job *j) {
    return s->chunk && (double)j->n_ctx * s->model->hp.n_layers > (double)s->chunk;
}

/* Moves one queued job into slots; 0 when admitted. */
static int admit_one(struct bee_server *s, bee_job *j) {
    /* a hit stays kept for later requests when an empty slot is free; never
     * at the price of another kept prefix (that would turn its next hit into
     * a miss) */
    int hit = find_cached(s, j), first = find_free(s, hit);
    if (hit >= 0 && (first < 0 || s->slots[first].cached_n)) first = hit;
    j->state = BEE_JOB_RUNNING;
    j->n_running = j->rq.n;
    int rc = slot_take(s, first, j, 0, -1, hit);
    if (rc == 0 && hit < 0 && is_long(s, j)) s->slots[first].chunked = 1;
    if (rc == 0 && hit >= 0) bee_metrics_add(&s->metrics, &s->metrics.prefix_hits, 1);
    for (int i = 1; rc == 0 && i < j->rq.n; i++) { /* other choices copy choice 0's cache once it is filled */
        int si = find_free(s, hit);
        if (si < 0) si = find_free(s, -1);
        bee_serve_slot *sl = &s->slots[si];
        rc = slot_take(s, si, j, i, first, -1);
        if (rc == 0 && hit >= 0 && (rc = bee_seq_copy(&sl->seq, &s->slots[first].seq, s->model)) == 0)
            sl->prefilled = 1, sl->phase = BEE_SLOT_DECODE;
    }
    if (rc) job_abort_locked(s, j, 400, "invalid_request_error", bee_error_message());
    return rc;
}

/* ================================================================ admission and reaping */

static int job_expired(const bee_job *j, double now) { return j->deadline > 0 && now > j->deadline; }

static void reap_locked(struct bee_server *s) {
    double now = bee_serve_now();
    size_t keep = 0, Q = (size_t)s->o.queue;
    for (size_t k = 0; k < s->q_n; k++) { /* queued jobs: drop cancelled and expired ones, keep order */
        bee_job *j = s->queue[(s->q_head + k) % Q];
        if (j->cancelled || job_expired(j, now)) {
            j->failed = 1;
            if (j->cancelled) bee_api_error_set(&j->err, 499, "cancelled", NULL, "the client closed the request");
            else bee_api_error_set(&j->err, 504, "timeout", NULL, "the request timed out after %g s in the queue", s->o.timeout_s);
            job_finish_locked(s, j);
        } else {
            s->queue[(s->q_head + keep++) % Q] = j;
        }
    }
    s->q_n = keep;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_job *j = s->slots[i].job;
        if (!j) continue;
        if (j->cancelled) job_abort_locked(s, j, 499, "cancelled", "the client closed the request");
        else if (job_expired(j, now)) job_abort_locked(s, j, 504, "timeout", "the request timed out");
    }
}

/* Blocks an active slot may still allocate: up to its job's rows, plus a
 * copy of the shared partial block it will write into. A WAIT slot will
 * share the context's blocks from its source. */
static size_t slot_pending(const struct bee_server *s, const bee_serve_slot *sl) {
    if (!sl->job) return 0;
    size_t b = blocks_for(job_rows(sl->job)), c = sl->job->n_ctx;
    if (sl->phase == BEE_SLOT_WAIT) return b - c / BEE_KV_BLOCK;
    const bee_seq *q = &sl->seq;
    size_t pend = b > q->n_blk ? b - q->n_blk : 0;
    uint32_t last = q->n / BEE_KV_BLOCK;
    if (q->n % BEE_KV_BLOCK && last < q->n_blk && s->kv.ref[q->blocks[last]] > 1) pend++;
    return pend;
}

/* Blocks free for a new job: the pool's, less what active slots may still take. */
static size_t kv_free(const struct bee_server *s) {
    size_t avail = bee_kv_pool_available(&s->kv), pend = 0;
    for (int i = 0; i < s->o.parallel; i++) pend += slot_pending(s, &s->slots[i]);
    return avail > pend ? avail - pend : 0;
}

/* Blocks that evicting every kept prefix but slot `keep`'s would free:
 * those referenced by such prefixes only. */
static size_t kv_reclaimable(const struct bee_server *s, int keep) {
    uint32_t *cnt = calloc(s->kv.cap_blocks ? s->kv.cap_blocks : 1, sizeof *cnt);
    if (!cnt) return 0;
    for (int i = 0; i < s->o.parallel; i++) {
        const bee_serve_slot *sl = &s->slots[i];
        if (sl->phase != BEE_SLOT_FREE || i == keep) continue;
        for (uint32_t b = 0; b < sl->seq.n_blk; b++) cnt[sl->seq.blocks[b]]++;
    }
    size_t n = 0;
    for (uint32_t b = 0; b < s->kv.cap_blocks; b++) n += cnt[b] && cnt[b] == s->kv.ref[b];
    free(cnt);
    return n;
}

/* Evicts kept prefixes, least recently used first (never slot `keep`'s),
 * until `need` blocks are free. */
static void kv_evict(struct bee_server *s, size_t need, int keep) {
    while (kv_free(s) < need) {
        int v = -1;
        for (int i = 0; i < s->o.parallel; i++) {
            const bee_serve_slot *sl = &s->slots[i];
            if (sl->phase == BEE_SLOT_FREE && i != keep && sl->seq.n_blk && (v < 0 || sl->last_used < s->slots[v].last_used))
                v = i;
        }
        if (v < 0) return;
        bee_seq_truncate(&s->slots[v].seq, 0);
        s->slots[v].cached_n = 0;
    }
}

static int any_active(const struct bee_server *s) {
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i].job) return 1;
    return 0;
}

/* Whether job j's blocks can be had now, evicting kept prefixes if that is
 * enough; 0: j waits for running jobs to finish. A prefix hit needs fewer
 * blocks (the context's are shared); when the hit itself is in the way and
 * nothing runs, it is evicted too and j runs as a miss. */
static int kv_room(struct bee_server *s, const bee_job *j) {
    int hit = find_cached(s, j);
    size_t b = blocks_for(job_rows(j));
    size_t need = hit >= 0 ? (size_t)j->rq.n * (b - j->n_ctx / BEE_KV_BLOCK) : job_blocks(j);
    if (kv_free(s) + kv_reclaimable(s, hit) >= need) {
        kv_evict(s, need, hit);
        return 1;
    }
    if (hit < 0 || any_active(s)) return 0;
    kv_evict(s, job_blocks(j), -1);
    return kv_free(s) >= job_blocks(j);
}

/* Admits queued jobs in order while slots and the step's prompt budget allow.
 * Returns a beam job to run now (beam search runs whole, outside the slots). */
static bee_job *admit_locked(struct bee_server *s) {
    size_t budget = (size_t)s->o.prefill_budget, used = 0, Q = (size_t)s->o.queue;
    while (s->q_n) {
        bee_job *j = s->queue[s->q_head];
        if (j->rq.beam > 0 || j->rq.echo) {
            s->q_head = (s->q_head + 1) % Q, s->q_n--;
            j->state = BEE_JOB_RUNNING;
            return j;
        }
        int sliced = is_long(s, j); /* prefilled outside the batch: not under the budget */
        if (n_free(s) < j->rq.n || (!sliced && used && used + j->n_ctx > budget) || !kv_room(s, j)) break;
        s->q_head = (s->q_head + 1) % Q, s->q_n--;
        if (admit_one(s, j) == 0 && !sliced) used += j->n_ctx;
    }
    return NULL;
}

/* ================================================================ one step */

static int scratch_reserve(struct bee_server *s, size_t n, size_t n_ext, size_t n_logits) {
    if (n > s->scratch_n) {
        void *a = realloc(s->st_seqs, n * sizeof *s->st_seqs), *b = realloc(s->st_toks, n * sizeof *s->st_toks);
        if (a) s->st_seqs = a;
        if (b) s->st_toks = b;
        void *c = realloc(s->st_ntok, n * sizeof(size_t)), *d = realloc(s->st_slot, n * sizeof(size_t));
        if (c) s->st_ntok = c;
        if (d) s->st_slot = d;
        void *e = realloc(s->st_extoff, n * sizeof(size_t));
        if (e) s->st_extoff = e;
        if (!a || !b || !c || !d || !e) return bee_fail("out of memory");
        s->scratch_n = n;
    }
    if (n_ext > s->scratch_ext) {
        void *a = realloc(s->st_ext_ids, n_ext * sizeof(int32_t)), *b = realloc(s->st_ext_subs, n_ext * sizeof(int32_t));
        if (a) s->st_ext_ids = a;
        if (b) s->st_ext_subs = b;
        if (!a || !b) return bee_fail("out of memory");
        s->scratch_ext = n_ext;
    }
    if (n_logits > s->scratch_logits) {
        float *l = realloc(s->st_logits, n_logits * sizeof *l);
        if (!l) return bee_fail("out of memory");
        s->st_logits = l;
        s->scratch_logits = n_logits;
    }
    return 0;
}

/* Top-k alternatives and the chosen token's log-probability (completions). */
static void record_logprobs(struct bee_server *s, bee_serve_slot *sl, bee_choice *c) {
    const bee_gen_batch *b = &sl->job->b;
    size_t W = b->width;
    float *x = sl->logits;
    bee_log_softmax(x, W);
    int k = sl->job->rq.logprobs;
    int32_t best[BEE_API_MAX_LOGPROBS];
    for (int r = 0; r < k; r++) {
        best[r] = -1;
        for (size_t v = 0; v < W; v++) {
            int taken = 0;
            for (int q = 0; q < r; q++) taken |= best[q] == (int32_t)v;
            if (!taken && (best[r] < 0 || x[v] > x[best[r]])) best[r] = (int32_t)v;
        }
    }
    bee_str t = {0};
    bee_unescape u = {0};
    bee_unescape_feed(&u, sl->smp.piece.s ? sl->smp.piece.s : "", sl->smp.piece.n, 1, &t);
    json_array_append_new(c->lp_tokens, json_stringn(t.s ? t.s : "", t.n));
    json_array_append_new(c->lp_logprobs, json_real(x[sl->smp.last]));
    json_array_append_new(c->lp_offsets, json_integer((json_int_t)c->lp_off));
    c->lp_off += t.n;
    json_t *top = json_array(); /* [text, logprob] pairs, best first (rendered per endpoint) */
    for (int r = 0; r < k; r++) {
        bee_str p = {0}, q = {0};
        bee_unescape u2 = {0};
        if (bee_tokenizer_decode_one(s->model->tok, best[r], &b->dt[0], &p) == 0)
            bee_unescape_feed(&u2, p.s ? p.s : "", p.n, 1, &q);
        json_array_append_new(top, json_pack("[s%,f]", q.s ? q.s : "", q.n, (double)x[best[r]]));
        bee_str_free(&p), bee_str_free(&q);
    }
    json_array_append_new(c->lp_top, top);
    bee_str_free(&t);
}

/* Feeds one slot's logits row (its vocab columns and its own ext columns). */
static int slot_accept(struct bee_server *s, bee_serve_slot *sl, const float *row, size_t ext_off) {
    const bee_gen_batch *b = &sl->job->b;
    size_t nv = s->model->hp.n_vocab;
    memcpy(sl->logits, row, nv * sizeof *row);
    if (b->ext.n) memcpy(sl->logits + nv, row + nv + ext_off, b->ext.n * sizeof *row);
    if (bee_sampler_accept(&sl->smp, sl->logits)) return -1;
    bee_choice *c = &sl->job->choices[sl->choice];
    c->n_gen = sl->smp.made;
    double now = bee_serve_now();
    bee_metrics_observe(&s->metrics, c->started ? &s->metrics.itl : &s->metrics.ttft,
                        now - (c->started ? c->t_prev : sl->job->t_arrive));
    c->started = 1;
    c->t_prev = now;
    if (c->lp_tokens && sl->smp.last != bee_tokenizer_special(s->model->tok)->eos) record_logprobs(s, sl, c);
    return 0;
}

/* Gathers the active slots into one bee_forward call. */
static size_t gather(struct bee_server *s, size_t *n_ext) {
    size_t n = 0, ext = 0;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_serve_slot *sl = &s->slots[i];
        if (sl->phase != BEE_SLOT_PREFILL && sl->phase != BEE_SLOT_DECODE) continue;
        if (sl->phase == BEE_SLOT_DECODE && sl->smp.done) continue; /* max_tokens 0 on a reused cache */
        if (sl->chunked) continue;                                 /* prefilled in slices (prefill_slice) */
        s->st_slot[n] = (size_t)i;
        s->st_seqs[n] = &sl->seq;
        s->st_toks[n] = sl->phase == BEE_SLOT_PREFILL ? sl->job->ctx_toks : &sl->smp.next;
        s->st_ntok[n] = sl->phase == BEE_SLOT_PREFILL ? sl->job->n_ctx : 1;
        s->st_extoff[n] = ext;
        const bee_ext *e = &sl->job->b.ext;
        if (e->n) {
            memcpy(s->st_ext_ids + ext, e->ids, e->n * sizeof(int32_t));
            memcpy(s->st_ext_subs + ext, e->subs, e->n * sizeof(int32_t));
        }
        ext += e->n;
        n++;
    }
    *n_ext = ext;
    return n;
}

static void update_gauges(struct bee_server *s);

/* Slot si's prefill is complete: it decodes from now on, and the job's
 * other choices copy its cache. */
static void prefill_done(struct bee_server *s, size_t si) {
    bee_serve_slot *sl = &s->slots[si];
    sl->prefilled = 1;
    sl->phase = BEE_SLOT_DECODE;
    sl->chunked = 0;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_serve_slot *w = &s->slots[i];
        if (w->phase != BEE_SLOT_WAIT || w->src != (int)si) continue;
        if (bee_seq_copy(&w->seq, &sl->seq, s->model) == 0) {
            w->prefilled = 1, w->phase = BEE_SLOT_DECODE;
            continue;
        }
        pthread_mutex_lock(&s->mu);
        job_abort_locked(s, w->job, 500, "server_error", bee_error_message());
        pthread_mutex_unlock(&s->mu);
    }
}

/* ---------------------------------------------------------------- sampling on the pool
 * Between forward passes the model's worker threads are idle: when every
 * decoding slot of the step belongs to a different job (so no two touch the
 * same job, choice or decode table) and no policy filter is attached, the
 * slots sample on the pool, each as it would alone (its own sampler, rng and
 * text), and wake their own stream. */

typedef struct {
    struct bee_server *s;
    size_t W;
    const size_t *ks; /* batch rows of the decoding slots */
    int *rc;          /* per batch row: slot_accept's result */
    char **err;       /* per batch row: the failure message (thread-local on the worker) */
} accept_job;

static void accept_range(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const accept_job *a = ctx;
    struct bee_server *s = a->s;
    for (size_t i = begin; i < end; i++) {
        size_t k = a->ks[i];
        bee_serve_slot *sl = &s->slots[s->st_slot[k]];
        a->rc[k] = slot_accept(s, sl, s->st_logits + k * a->W, s->st_extoff[k]);
        if (a->rc[k]) a->err[k] = strdup(bee_error_message());
        else if (sl->job->rq.stream) pthread_cond_broadcast(&sl->job->cv);
    }
}

/* Samples the step's decoding slots on the pool when allowed; returns 1 if it did. */
static int accept_parallel(struct bee_server *s, size_t n, size_t W, int *rc, char **err) {
    if (bee_pool_size(s->model->pool) < 2) return 0;
    size_t ks[n ? n : 1], nd = 0;
    for (size_t k = 0; k < n; k++) {
        bee_serve_slot *sl = &s->slots[s->st_slot[k]];
        if (!sl->job || sl->phase == BEE_SLOT_PREFILL) continue;
        if (sl->job->rq.n != 1 || sl->job->choices[sl->choice].safe) return 0;
        ks[nd++] = k;
    }
    if (nd < 2) return 0;
    accept_job a = {s, W, ks, rc, err};
    bee_pool_for(s->model->pool, nd, 1, accept_range, &a);
    return 1;
}

/* After the forward: prefills become decodes (siblings copy the cache); decodes take their token. */
static void after_step(struct bee_server *s, size_t n, size_t W) {
    size_t gen = 0;
    int rc[n ? n : 1];
    char *err[n ? n : 1];
    memset(err, 0, sizeof err);
    int par = accept_parallel(s, n, W, rc, err);
    for (size_t k = 0; k < n; k++) {
        bee_serve_slot *sl = &s->slots[s->st_slot[k]];
        if (!sl->job) continue; /* released when a sibling failed */
        if (sl->phase == BEE_SLOT_PREFILL) {
            prefill_done(s, s->st_slot[k]);
            continue;
        }
        if (par ? rc[k] : slot_accept(s, sl, s->st_logits + k * W, s->st_extoff[k])) {
            pthread_mutex_lock(&s->mu);
            job_abort_locked(s, sl->job, 500, "server_error", par && err[k] ? err[k] : bee_error_message());
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        if (sl->job->choices[sl->choice].filtered && !sl->smp.done) { /* policy block: stop generating */
            sl->smp.done = 1;
            sl->smp.finish = BEE_FINISH_STOP;
        }
        gen++;
    }
    bee_metrics_add(&s->metrics, &s->metrics.generated_tokens, gen);
    for (size_t k = 0; k < n; k++) free(err[k]);
    for (size_t k = 0; !par && k < n; k++) { /* one wake-up per stream for this step's text, outside mu */
        bee_serve_slot *sl = &s->slots[s->st_slot[k]];
        if (sl->job && sl->job->rq.stream) pthread_cond_broadcast(&sl->job->cv);
    }
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->o.parallel; i++) { /* finished choices */
        bee_serve_slot *sl = &s->slots[i];
        if (sl->phase == BEE_SLOT_DECODE && sl->job && sl->smp.done) choice_done_locked(s, sl);
    }
    update_gauges(s); /* in the same critical section that marks jobs done: clients never see stale gauges */
    pthread_mutex_unlock(&s->mu);
}

/* One slice of the oldest chunked prefill: about s->chunk prompt tokens x
 * layers of work (at least one layer). Its logits are not needed: the first
 * decode step feeds the answer's <s>, as after a batched prefill. */
static void prefill_slice(struct bee_server *s) {
    int si = -1;
    for (int i = 0; i < s->o.parallel; i++) {
        bee_serve_slot *sl = &s->slots[i];
        if (sl->job && sl->phase == BEE_SLOT_PREFILL && sl->chunked && (si < 0 || sl->admitted < s->slots[si].admitted))
            si = i;
    }
    if (si < 0) return;
    bee_serve_slot *sl = &s->slots[si];
    bee_job *j = sl->job;
    size_t per = s->chunk / (j->n_ctx ? j->n_ctx : 1);
    uint32_t layers = per < 1 ? 1 : per > UINT32_MAX ? UINT32_MAX : (uint32_t)per;
    int rc = sl->pf ? 0 : bee_prefill_begin(s->model, &sl->seq, j->ctx_toks, j->n_ctx, &sl->pf);
    if (rc == 0) rc = bee_prefill_step(sl->pf, layers);
    if (rc == 0) bee_metrics_add(&s->metrics, &s->metrics.prefill_slices, 1);
    if (rc == 0 && bee_prefill_layers_left(sl->pf) == 0) {
        rc = bee_prefill_finish(sl->pf, NULL, BEE_LOGITS_NONE, NULL);
        sl->pf = NULL; /* finish frees it, also on failure */
        if (rc == 0) prefill_done(s, (size_t)si);
    }
    if (rc) {
        pthread_mutex_lock(&s->mu);
        job_abort_locked(s, j, 500, "server_error", bee_error_message());
        pthread_mutex_unlock(&s->mu);
    }
}

static void step_batch(struct bee_server *s);

/* The batched step of the decoding and short-prompt slots, then one slice
 * of a long prompt's prefill. */
static void step(struct bee_server *s) {
    step_batch(s);
    prefill_slice(s);
}

static void step_batch(struct bee_server *s) {
    size_t n_ext_max = 0, n_max = (size_t)s->o.parallel;
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i].job) n_ext_max += s->slots[i].job->b.ext.n;
    size_t W = s->model->hp.n_vocab + n_ext_max;
    if (scratch_reserve(s, n_max, n_ext_max + 1, n_max * W)) return;
    size_t n_ext = 0, n = gather(s, &n_ext);
    if (!n) {
        after_step(s, 0, 0);
        return;
    }
    W = s->model->hp.n_vocab + n_ext;
    bee_ext ext = {s->st_ext_ids, s->st_ext_subs, n_ext};
    size_t tokens = 0;
    for (size_t k = 0; k < n; k++) tokens += s->st_ntok[k];
    double t0 = bee_serve_now();
    int rc = bee_forward(s->model, s->st_seqs, s->st_toks, s->st_ntok, n, &ext, BEE_LOGITS_LAST, s->st_logits, NULL);
    bee_metrics_observe(&s->metrics, &s->metrics.step_time, bee_serve_now() - t0);
    bee_metrics_add(&s->metrics, &s->metrics.steps, 1);
    bee_metrics_add(&s->metrics, &s->metrics.step_tokens, tokens);
    if (rc) {
        pthread_mutex_lock(&s->mu);
        for (size_t k = 0; k < n; k++)
            if (s->slots[s->st_slot[k]].job)
                job_abort_locked(s, s->slots[s->st_slot[k]].job, 500, "server_error", bee_error_message());
        pthread_mutex_unlock(&s->mu);
        return;
    }
    after_step(s, n, W);
}

/* ================================================================ beam search */

static int count_answer_tokens(const bee_model *m, json_t *v) {
    if (json_is_string(v)) {
        bee_ext_table e = {0};
        bee_ivec ids = {0};
        int n = bee_tokenizer_encode(m->tok, json_string_value(v), json_string_length(v), &e, &ids) ? 0 : (int)ids.n;
        bee_ivec_free(&ids);
        bee_ext_table_free(&e);
        return n;
    }
    int n = 0;
    const char *k;
    json_t *x;
    if (json_is_object(v)) json_object_foreach(v, k, x) n += count_answer_tokens(m, x);
    return n;
}

static void run_beam(struct bee_server *s, bee_job *j) {
    bee_beam_params bp;
    bee_beam_params_default(&bp);
    bp.beam_size = j->rq.beam;
    bp.max_length = j->max_tokens;
    bp.repetition_penalty = j->rq.sp.repetition_penalty;
    json_t *out = NULL;
    int rc = bee_beam_search(s->model, &j->in, 1, &bp, &out);
    int n = rc == 0 ? count_answer_tokens(s->model, json_object_get(out, "<ans>")) : 0;
    bee_metrics_add(&s->metrics, &s->metrics.generated_tokens, (uint64_t)n);
    pthread_mutex_lock(&s->mu);
    j->result = out;
    j->beam_tokens = n;
    if (rc) job_fail_locked(s, j, 500, "server_error", bee_error_message());
    else job_finish_locked(s, j);
    pthread_mutex_unlock(&s->mu);
}

/* ================================================================ echo scoring */

/* Prompt log-probs (the OpenAI echo shape): the answer segment's tokens, the
 * first (<s>, text "") with a null log-prob. */
static void run_echo(struct bee_server *s, bee_job *j) {
    bee_eval_lps o;
    int k = j->rq.logprobs > 0 ? j->rq.logprobs : 0;
    int rc = bee_eval_token_logprobs(s->model, j->rq.context, j->rq.echo_text, (size_t)j->rq.window, k, &o);
    bee_choice *c = &j->choices[0];
    if (rc == 0 && bee_str_appendz(&c->text, j->rq.echo_text)) rc = bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && c->lp_tokens && i < o.n; i++) {
        json_array_append_new(c->lp_tokens, json_string(o.text[i]));
        json_array_append_new(c->lp_logprobs, i == 0 ? json_null() : json_real(o.lp[i]));
        json_array_append_new(c->lp_offsets, json_integer((json_int_t)o.offset[i]));
        json_t *top = json_array();
        for (int r = 0; i > 0 && r < k; r++)
            if (o.top_text[i * (size_t)k + (size_t)r])
                json_array_append_new(top, json_pack("[s,f]", o.top_text[i * (size_t)k + (size_t)r], o.top_lp[i * (size_t)k + (size_t)r]));
        json_array_append_new(c->lp_top, top);
    }
    c->finish = BEE_FINISH_LENGTH;
    j->echo_prefix = o.n_prefix;
    if (rc == 0) bee_eval_lps_free(&o);
    pthread_mutex_lock(&s->mu);
    if (rc) job_fail_locked(s, j, 400, "invalid_request_error", bee_error_message());
    else job_finish_locked(s, j);
    pthread_mutex_unlock(&s->mu);
}

/* ================================================================ thread */

static int load(struct bee_server *s) {
    if (bee_model_load(s->model_path, &s->model) || bee_model_set_threads(s->model, s->o.threads) ||
        bee_model_set_kv_type(s->model, s->o.kv_type))
        return -1;
    if (s->lora_path && bee_model_apply_lora(s->model, s->lora_path)) return bee_fail_prefix("--lora %s: ", s->lora_path);
    s->slots = calloc((size_t)s->o.parallel, sizeof *s->slots);
    if (!s->slots) return bee_fail("out of memory");
    size_t per_slot = blocks_for((size_t)s->o.ctx + 1); /* the most rows a request may fill */
    size_t budget = s->o.kv_budget ? s->o.kv_budget : per_slot * (size_t)s->o.parallel * bee_kv_block_bytes(s->model);
    if (bee_kv_pool_init(&s->kv, s->model, budget)) return bee_fail_prefix("--kv-budget: ");
    s->kv_ok = 1;
    s->kv_max_blocks = s->kv.max_blocks;
    for (int i = 0; i < s->o.parallel; i++)
        if (bee_seq_init_pooled(&s->slots[i].seq, s->model, &s->kv, NULL, 0)) return -1;
    long c = s->o.prefill_chunk;
    s->chunk = c < 0 ? 0 : c > 0 ? (size_t)c : (size_t)s->o.prefill_budget * s->model->hp.n_layers;
    return 0;
}

static void update_gauges(struct bee_server *s) {
    int64_t active = 0;
    for (int i = 0; i < s->o.parallel; i++) active += s->slots[i].job != NULL;
    bee_metrics_set(&s->metrics, &s->metrics.active_slots, active);
    bee_metrics_set(&s->metrics, &s->metrics.kv_bytes, (int64_t)bee_kv_pool_bytes(&s->kv));
    bee_metrics_set(&s->metrics, &s->metrics.kv_blocks_total, (int64_t)s->kv.max_blocks);
    bee_metrics_set(&s->metrics, &s->metrics.kv_blocks_used, (int64_t)s->kv.n_used);
    bee_metrics_set(&s->metrics, &s->metrics.kv_blocks_shared, (int64_t)s->kv.n_shared);
    bee_metrics_set(&s->metrics, &s->metrics.kv_cow, (int64_t)s->kv.n_cow);
    bee_metrics_set(&s->metrics, &s->metrics.queue_depth, (int64_t)s->q_n);
}

void *bee_sched_main(void *arg) {
    struct bee_server *s = arg;
    int rc = load(s);
    if (rc == 0) update_gauges(s); /* the pool's size is known to /metrics once the server is ready */
    pthread_mutex_lock(&s->mu);
    if (rc) {
        s->load_failed = 1;
        snprintf(s->load_error, sizeof s->load_error, "%s", bee_error_message());
    } else {
        s->loaded = 1;
    }
    pthread_cond_broadcast(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
    if (rc) return NULL;
    bee_metrics_set(&s->metrics, &s->metrics.loaded, 1);
    bee_metrics_set(&s->metrics, &s->metrics.slots, s->o.parallel);
    pthread_mutex_lock(&s->mu);
    for (;;) {
        reap_locked(s);
        if (s->stopping) { /* bee_server_stop has drained or cancelled everything */
            while (s->q_n) {
                bee_job *j = s->queue[s->q_head];
                s->q_head = (s->q_head + 1) % (size_t)s->o.queue, s->q_n--;
                job_fail_locked(s, j, 503, "server_error", "the server is shutting down");
            }
            for (int i = 0; i < s->o.parallel; i++)
                if (s->slots[i].job) job_abort_locked(s, s->slots[i].job, 503, "server_error", "the server is shutting down");
            break;
        }
        bee_job *beam = admit_locked(s);
        int active = 0;
        for (int i = 0; i < s->o.parallel; i++) active += s->slots[i].job != NULL;
        update_gauges(s);
        if (!active && !beam) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s->work_cv, &s->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        if (beam && beam->rq.echo) run_echo(s, beam);
        else if (beam) run_beam(s, beam);
        else step(s);
        pthread_mutex_lock(&s->mu);
    }
    update_gauges(s);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}
