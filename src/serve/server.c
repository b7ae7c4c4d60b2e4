/* HTTP front end of `bee serve` on libmicrohttpd (one thread per
 * connection: a handler may block while its request generates, and polls
 * its socket so a client that goes away cancels the work). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/digest.h"
#include "feedback/feedback.h"
#include "search/search.h"
#include "serve/internal.h"
#include "serve/web.h"
#include "util/error.h"
#include "util/types.h"

void bee_serve_opts_default(bee_serve_opts *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 4;
    o->ctx = 2048;
    o->queue = 64;
    o->timeout_s = 600;
    o->max_body = 1 << 20;
    o->prefill_budget = 512;
    o->drain_s = 30;
    o->kv_type = BEE_TYPE_F32;
}

#ifndef BEE_HAVE_MHD

int bee_serve_available(void) { return 0; }
int bee_server_start(const bee_serve_opts *o, bee_server **out) {
    (void)o;
    *out = NULL;
    return bee_fail("bee was built without libmicrohttpd (install libmicrohttpd-dev and rebuild to use bee serve)");
}
int bee_server_port(const bee_server *s) { return s ? s->port : -1; }
int bee_server_wait_ready(bee_server *s, double t) {
    (void)s, (void)t;
    return bee_fail("bee was built without libmicrohttpd");
}
void bee_server_stop(bee_server *s) { (void)s; }

#else

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

int bee_serve_available(void) { return 1; }

/* ================================================================ responses */

typedef struct {
    bee_str body;
    int too_big;
} conn_ctx;

static enum MHD_Result send_body(struct bee_server *s, struct MHD_Connection *c, const char *endpoint, int status,
                                 const char *ctype, const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (status == 503) MHD_add_response_header(r, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    bee_metrics_request(&s->metrics, endpoint, status);
    if (s->o.verbose) fprintf(stderr, "bee serve: %s %d\n", endpoint, status);
    return rc;
}

static enum MHD_Result send_json(struct bee_server *s, struct MHD_Connection *c, const char *endpoint, int status,
                                 json_t *o) {
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!txt) return send_body(s, c, endpoint, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37);
    enum MHD_Result rc = send_body(s, c, endpoint, status, "application/json", txt, strlen(txt));
    free(txt);
    return rc;
}

static enum MHD_Result send_error(struct bee_server *s, struct MHD_Connection *c, const char *endpoint,
                                  const bee_api_error *e) {
    char *txt = bee_api_error_json(e);
    enum MHD_Result rc = send_body(s, c, endpoint, e->status ? e->status : 500, "application/json", txt ? txt : "{}",
                                   txt ? strlen(txt) : 2);
    free(txt);
    return rc;
}

static enum MHD_Result send_err(struct bee_server *s, struct MHD_Connection *c, const char *endpoint, int status,
                                const char *type, const char *param, const char *msg) {
    bee_api_error e;
    bee_api_error_set(&e, status, type, param, "%s", msg);
    return send_error(s, c, endpoint, &e);
}

/* ================================================================ connection state */

/* 1 when the peer has closed or reset the connection. */
static int peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {ci->connect_fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) return 1;
    char b;
    return (p.revents & POLLIN) && recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

static void job_release(bee_job *j) {
    struct bee_server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    bee_job_cancel_locked(j);
    bee_job_unref_locked(j);
    pthread_mutex_unlock(&s->mu);
}

/* ================================================================ auth */

/* Time depends on the stored key's length only, not on where they differ. */
static int key_equal(const char *given, size_t n, const char *key) {
    size_t k = strlen(key);
    unsigned d = (unsigned)(n != k);
    for (size_t i = 0; i < k; i++) d |= (unsigned char)key[i] ^ (unsigned char)(i < n ? given[i] : 0);
    return d == 0;
}

static int authorized(const struct bee_server *s, struct MHD_Connection *c) {
    if (!s->n_keys) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    const char *t = h + 7;
    size_t n = strlen(t);
    int ok = 0;
    for (size_t i = 0; i < s->n_keys; i++) ok |= key_equal(t, n, s->keys[i]); /* no early exit */
    return ok;
}

static int load_keys(struct bee_server *s, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return bee_fail("--api-key-file %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t')) line[--n] = 0;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p || *p == '#') continue;
        char **k = realloc(s->keys, (s->n_keys + 1) * sizeof *k);
        if (!k || !(k[s->n_keys] = strdup(p))) rc = bee_fail("out of memory");
        if (k) s->keys = k;
        if (rc == 0) s->n_keys++;
    }
    free(line);
    fclose(f);
    if (rc == 0 && s->n_keys == 0) rc = bee_fail("--api-key-file %s: no keys (one per line)", path);
    return rc;
}

/* ================================================================ simple endpoints */

static enum MHD_Result handle_health(struct bee_server *s, struct MHD_Connection *c) {
    pthread_mutex_lock(&s->mu);
    int loaded = s->loaded, failed = s->load_failed, draining = s->draining;
    char err[512];
    snprintf(err, sizeof err, "%s", s->load_error);
    pthread_mutex_unlock(&s->mu);
    if (failed) return send_json(s, c, "/health", 503, json_pack("{s:s,s:s}", "status", "error", "message", err));
    if (!loaded) return send_json(s, c, "/health", 503, json_pack("{s:s}", "status", "loading"));
    if (draining) return send_json(s, c, "/health", 503, json_pack("{s:s}", "status", "draining"));
    return send_json(s, c, "/health", 200,
                     json_pack("{s:s,s:s,s:i,s:i}", "status", "ok", "model", s->model_name, "slots", s->o.parallel,
                               "ctx", s->o.ctx));
}

static enum MHD_Result handle_models(struct bee_server *s, struct MHD_Connection *c) {
    json_t *m = json_pack("{s:s,s:s,s:I,s:s}", "id", s->model_name, "object", "model", "created", (json_int_t)0,
                          "owned_by", "bee");
    return send_json(s, c, "/v1/models", 200, json_pack("{s:s,s:[o]}", "object", "list", "data", m));
}

static enum MHD_Result handle_metrics(struct bee_server *s, struct MHD_Connection *c) {
    bee_str o = {0};
    if (bee_metrics_render(&s->metrics, &o)) return send_err(s, c, "/metrics", 500, "server_error", NULL, "out of memory");
    enum MHD_Result rc = send_body(s, c, "/metrics", 200, "text/plain; version=0.0.4", o.s, o.n);
    bee_str_free(&o);
    return rc;
}

static json_t *ids_json(const int32_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static enum MHD_Result handle_tokenize(struct bee_server *s, struct MHD_Connection *c, bee_api_req *rq) {
    const bee_model *m = s->model;
    json_t *out = NULL;
    if (rq->content) {
        bee_ext_table ext = {0};
        bee_ivec ids = {0};
        if (bee_tokenizer_encode(m->tok, rq->content, strlen(rq->content), &ext, &ids) == 0) {
            json_t *tab = json_object();
            for (size_t k = 0; k < ext.n; k++) {
                char key[32];
                snprintf(key, sizeof key, "%zu", (size_t)m->hp.n_vocab + k);
                json_object_set_new(tab, key, json_stringn(ext.str[k], ext.len[k]));
            }
            out = json_pack("{s:o,s:I,s:o}", "tokens", ids_json(ids.v, ids.n), "count", (json_int_t)ids.n, "ext_table", tab);
        }
        bee_ivec_free(&ids);
        bee_ext_table_free(&ext);
    } else {
        bee_gen_input in;
        if (bee_gen_input_init(m->tok, rq->data, &in) == 0) {
            out = json_pack("{s:o,s:I}", "tokens", ids_json(in.ids.v, in.ids.n), "count", (json_int_t)in.ids.n);
            bee_gen_input_free(&in);
        }
    }
    if (!out) return send_err(s, c, "/tokenize", 400, "invalid_request_error", rq->content ? "content" : "prompt",
                              bee_error_message());
    return send_json(s, c, "/tokenize", 200, out);
}

/* ================================================================ results */

/* Counts each policy match and writes it to the audit table (connection
 * thread: SQLite never stalls the scheduler). */
static void policy_note(struct bee_server *s, const char *id, bee_safety_stage stage, const bee_safety_match *m,
                        size_t n) {
    for (size_t i = 0; i < n; i++)
        bee_metrics_safety(&s->metrics, bee_safety_stage_name(stage), m[i].category_name,
                           bee_safety_action_name(m[i].action));
    if (!n || !s->o.audit) return;
    pthread_mutex_lock(&s->audit_mu);
    int rc = bee_safety_audit_record(s->o.audit, id, stage, m, n);
    pthread_mutex_unlock(&s->audit_mu);
    if (rc) fprintf(stderr, "bee serve: audit: %s\n", bee_error_message());
}

static void run_output_checks(struct bee_server *s, bee_job *j) {
    for (int i = 0; j->choices && i < j->rq.n; i++) {
        size_t n = 0;
        const bee_safety_match *m = j->choices[i].safe ? bee_safety_stream_matches(j->choices[i].safe, &n) : NULL;
        policy_note(s, j->id, BEE_SAFETY_STAGE_OUTPUT, m, n);
    }
    if (!s->o.check || j->failed || j->rq.kind == BEE_API_CPMBEE) return;
    for (int i = 0; i < j->rq.n; i++) {
        bee_choice *ch = &j->choices[i];
        char *reason = NULL;
        if (s->o.check(s->o.hook_user, BEE_SERVE_TEXT_OUTPUT, ch->text.s ? ch->text.s : "", ch->text.n, &reason)) {
            ch->filtered = 1;
            if (!j->rq.stream) ch->text.n = 0;
        }
        free(reason);
    }
}

static const char *finish_reason(const bee_choice *c) {
    return c->filtered ? "content_filter" : c->finish == BEE_FINISH_LENGTH ? "length" : "stop";
}

static json_t *utf8_bytes(const char *t) {
    json_t *a = json_array();
    for (const unsigned char *p = (const unsigned char *)t; *p; p++) json_array_append_new(a, json_integer(*p));
    return a;
}

/* Chat form: {"content":[{"token","logprob","bytes","top_logprobs":[{"token","logprob","bytes"}]}]} */
static json_t *chat_logprobs(const bee_choice *c) {
    json_t *content = json_array();
    for (size_t i = 0; i < json_array_size(c->lp_tokens); i++) {
        const char *t = json_string_value(json_array_get(c->lp_tokens, i));
        json_t *tops = json_array(), *pairs = json_array_get(c->lp_top, i);
        for (size_t k = 0; k < json_array_size(pairs); k++) {
            const char *tt = json_string_value(json_array_get(json_array_get(pairs, k), 0));
            json_array_append_new(tops, json_pack("{s:s,s:O,s:o}", "token", tt, "logprob",
                                                  json_array_get(json_array_get(pairs, k), 1), "bytes", utf8_bytes(tt)));
        }
        json_array_append_new(content, json_pack("{s:s,s:O,s:o,s:o}", "token", t, "logprob",
                                                  json_array_get(c->lp_logprobs, i), "bytes", utf8_bytes(t),
                                                  "top_logprobs", tops));
    }
    return json_pack("{s:o}", "content", content);
}

/* Legacy completions form: parallel arrays; top_logprobs as {text: logprob}. */
static json_t *completion_logprobs(const bee_choice *c) {
    json_t *tops = json_array();
    for (size_t i = 0; i < json_array_size(c->lp_top); i++) {
        json_t *d = json_object(), *pairs = json_array_get(c->lp_top, i);
        for (size_t k = 0; k < json_array_size(pairs); k++)
            json_object_set(d, json_string_value(json_array_get(json_array_get(pairs, k), 0)),
                            json_array_get(json_array_get(pairs, k), 1));
        json_array_append_new(tops, d);
    }
    return json_pack("{s:O,s:O,s:o,s:O}", "tokens", c->lp_tokens, "token_logprobs", c->lp_logprobs, "top_logprobs",
                     tops, "text_offset", c->lp_offsets);
}

static json_t *choice_json(const bee_job *j, const bee_choice *c) {
    json_t *text = json_stringn(c->text.s ? c->text.s : "", c->text.n);
    if (j->rq.kind == BEE_API_CHAT)
        return json_pack("{s:i,s:{s:s,s:o},s:o,s:s}", "index", c->index, "message", "role", "assistant", "content", text,
                         "logprobs", c->lp_tokens ? chat_logprobs(c) : json_null(), "finish_reason", finish_reason(c));
    json_t *lp = c->lp_tokens ? completion_logprobs(c) : json_null();
    return json_pack("{s:o,s:i,s:o,s:s}", "text", text, "index", c->index, "logprobs", lp, "finish_reason",
                     finish_reason(c));
}

static json_t *result_json(const struct bee_server *s, const bee_job *j) {
    const char *obj = j->rq.kind == BEE_API_CHAT ? "chat.completion" : j->rq.kind == BEE_API_CPMBEE ? "cpmbee.result" : "text_completion";
    json_t *o = json_pack("{s:s,s:s,s:I,s:s}", "id", j->id, "object", obj, "created", (json_int_t)j->created, "model",
                          s->model_name);
    if (j->rq.kind == BEE_API_CPMBEE) {
        json_object_set(o, "data", j->result ? j->result : json_null());
    } else {
        json_t *arr = json_array();
        for (int i = 0; i < j->rq.n; i++) json_array_append_new(arr, choice_json(j, &j->choices[i]));
        json_object_set_new(o, "choices", arr);
    }
    if (j->rq.echo) /* says the bee extensions were honoured (a client's check that the scores mean what it asked) */
        json_object_set_new(o, "bee_echo", json_pack("{s:b,s:I,s:i}", "context", j->rq.context != NULL, "context_tokens",
                                                     (json_int_t)j->echo_prefix, "window", j->rq.window));
    json_object_set_new(o, "usage", bee_job_usage(j));
    return o;
}

/* The prompt as the client sent it: chat messages, the completion prompt or the dict. */
static char *request_prompt_json(const bee_job *j) {
    json_t *req = json_loads(j->body ? j->body : "", 0, NULL);
    const char *key = j->rq.kind == BEE_API_CHAT ? "messages" : j->rq.kind == BEE_API_CPMBEE ? "data" : "prompt";
    if (strcmp(j->endpoint, "/v1/ask") == 0) key = "question";
    json_t *v = req ? json_object_get(req, key) : NULL;
    char *out = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(req);
    return out;
}

/* Stores a successful response before the client sees its end, so feedback
 * posted right after the response always finds it. */
static void feedback_store(struct bee_server *s, bee_job *j) {
    if (!s->o.feedback || j->failed) return;
    char *prompt = request_prompt_json(j), *dict = NULL;
    const char *text = "";
    if (strcmp(j->endpoint, "/v1/ask") == 0) text = json_string_value(json_object_get(j->result, "<ans>"));
    else if (j->rq.kind == BEE_API_CPMBEE) text = dict = j->result ? json_dumps(j->result, JSON_COMPACT) : NULL;
    else if (j->choices && j->choices[0].text.n) text = j->choices[0].text.s;
    bee_feedback_response r = {j->id, s->model_name, prompt, text ? text : "", 0};
    int rc = prompt ? bee_feedback_record_response(s->o.feedback, &r, NULL, 0) : bee_fail("no prompt in the request");
    bee_metrics_add(&s->metrics, rc ? &s->metrics.feedback_errors : &s->metrics.feedback_responses, 1);
    if (rc) fprintf(stderr, "bee serve: feedback store: %s: %s\n", j->id, bee_error_message());
    free(prompt), free(dict);
}

static void record(struct bee_server *s, bee_job *j, const char *response, int status) {
    if (status == 200) feedback_store(s, j);
    if (!s->o.record) return;
    bee_serve_record r = {j->id, j->endpoint, j->body ? j->body : "", response ? response : "", status};
    s->o.record(s->o.hook_user, &r);
}

static enum MHD_Result send_result(struct bee_server *s, struct MHD_Connection *c, bee_job *j) {
    if (j->failed) {
        record(s, j, j->err.message, j->err.status);
        return send_error(s, c, j->endpoint, &j->err);
    }
    run_output_checks(s, j);
    json_t *o = result_json(s, j);
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!txt) return send_err(s, c, j->endpoint, 500, "server_error", NULL, "out of memory");
    record(s, j, txt, 200);
    enum MHD_Result rc = send_body(s, c, j->endpoint, 200, "application/json", txt, strlen(txt));
    free(txt);
    return rc;
}

/* ================================================================ streams */

typedef struct {
    struct bee_server *s;
    bee_job *job;
    struct MHD_Connection *c;
    int finished; /* final events appended */
    double peer_checked; /* when peer_gone last looked at the socket */
} stream_ctx;

/* Once the job is done: output checks (off the lock), then the final events. */
static void stream_finish_locked(stream_ctx *sc) {
    bee_job *j = sc->job;
    struct bee_server *s = sc->s;
    pthread_mutex_unlock(&s->mu);
    run_output_checks(s, j);
    if (s->o.record || s->o.feedback) {
        bee_str all = {0};
        for (int i = 0; i < j->rq.n; i++) bee_str_append(&all, j->choices[i].text.s ? j->choices[i].text.s : "", j->choices[i].text.n);
        record(s, j, j->failed ? j->err.message : all.s, j->failed ? j->err.status : 200);
        bee_str_free(&all);
    }
    pthread_mutex_lock(&s->mu);
    bee_job_sse_finish_locked(j);
    sc->finished = 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *sc = cls;
    bee_job *j = sc->job;
    struct bee_server *s = sc->s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        size_t avail = j->sse.n - j->sse_off;
        if (avail) {
            size_t n = avail < max ? avail : max;
            memcpy(buf, j->sse.s + j->sse_off, n);
            j->sse_off += n;
            pthread_mutex_unlock(&s->mu);
            return (ssize_t)n;
        }
        if (j->state == BEE_JOB_DONE) {
            if (!sc->finished) {
                stream_finish_locked(sc);
                continue;
            }
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        timed_wait(&j->cv, &s->mu, 100);
        /* a token wakes this thread every step: look at the socket (a
         * syscall) only when no data came or 100 ms after the last look */
        double now = bee_serve_now();
        if (j->sse.n > j->sse_off && now - sc->peer_checked < 0.1) continue;
        sc->peer_checked = now;
        if (j->state != BEE_JOB_DONE && peer_gone(sc->c)) {
            bee_job_cancel_locked(j);
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    job_release(sc->job);
    free(sc);
}

static enum MHD_Result send_stream(struct bee_server *s, struct MHD_Connection *c, bee_job *j) {
    stream_ctx *sc = calloc(1, sizeof *sc);
    if (!sc) {
        job_release(j);
        return send_err(s, c, j->endpoint, 500, "server_error", NULL, "out of memory");
    }
    *sc = (stream_ctx){s, j, c, 0};
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, sc, stream_free);
    if (!r) {
        stream_free(sc);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    bee_metrics_request(&s->metrics, j->endpoint, 200);
    return rc;
}

/* ================================================================ generation endpoints */

static const char *prompt_text(const bee_job *j, char **owned) {
    *owned = NULL;
    const char *t = json_string_value(json_object_get(j->rq.data, "input"));
    if (j->rq.kind != BEE_API_CPMBEE && t) return t;
    *owned = json_dumps(j->rq.data, JSON_COMPACT);
    return *owned ? *owned : "";
}

/* A masked prompt replaces the model input; a dict whose masked text is no
 * longer a JSON object is refused rather than generated from unmasked. */
static int prompt_replace(bee_job *j, const bee_safety_result *r, const char *param, bee_api_error *e) {
    if (j->rq.kind != BEE_API_CPMBEE)
        return json_object_set_new(j->rq.data, "input", json_stringn(r->text, r->len))
                   ? bee_api_error_set(e, 500, "server_error", NULL, "out of memory")
                   : 0;
    json_t *d = json_loadb(r->text, r->len, 0, NULL);
    if (!json_is_object(d)) {
        json_decref(d);
        return bee_api_error_set(e, 400, "content_filter", param, "the input was refused by the content policy");
    }
    json_decref(j->rq.data);
    j->rq.data = d;
    return 0;
}

/* The policy's say on a prompt, before it is tokenized: block refuses the
 * request, mask changes what the model reads, log only records. */
static int policy_prompt(struct bee_server *s, bee_job *j, bee_api_error *e) {
    if (!s->o.policy || !j->rq.data) return 0;
    char *owned;
    const char *t = prompt_text(j, &owned);
    const char *param = j->rq.kind == BEE_API_CHAT ? "messages" : j->rq.kind == BEE_API_CPMBEE ? "data" : "prompt";
    bee_safety_result r;
    int rc = bee_safety_check(s->o.policy, t, strlen(t), &r);
    free(owned);
    if (rc) return bee_api_error_set(e, 500, "server_error", NULL, "content policy: %s", bee_error_message());
    policy_note(s, j->id, BEE_SAFETY_STAGE_PROMPT, r.matches, r.n_matches);
    if (r.action == BEE_SAFETY_BLOCK) {
        const char *cat = "";
        for (size_t i = 0; i < r.n_matches; i++)
            if (r.matches[i].action == BEE_SAFETY_BLOCK) cat = r.matches[i].category_name;
        rc = bee_api_error_set(e, 400, "content_filter", param,
                               "the prompt was blocked by the content policy (category '%s')", cat);
    } else if (r.action == BEE_SAFETY_MASK && j->rq.echo) { /* scores would be of a text the policy hides */
        rc = bee_api_error_set(e, 400, "content_filter", param, "the content policy masks this prompt; echo scoring refused");
    } else if (r.action == BEE_SAFETY_MASK) {
        rc = prompt_replace(j, &r, param, e);
    }
    bee_safety_result_free(&r);
    return rc;
}

/* POST /v1/feedback. The store's messages name the field ("feedback: rating:
 * expected 1 or -1"), which becomes the error's param. */
static enum MHD_Result handle_feedback(struct bee_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    const char *ep = "/v1/feedback";
    if (!s->o.feedback)
        return send_err(s, c, ep, 404, "invalid_request_error", NULL, "the feedback store is off (bee serve --feedback-db)");
    if (bee_feedback_record_json(s->o.feedback, cc->body.s ? cc->body.s : "", cc->body.n) == 0) {
        bee_metrics_add(&s->metrics, &s->metrics.feedback_ratings, 1);
        return send_json(s, c, ep, 200, json_pack("{s:s}", "status", "ok"));
    }
    const char *msg = bee_error_message();
    if (strstr(msg, "unknown response id"))
        return send_err(s, c, ep, 404, "invalid_request_error", "response_id", msg);
    if (strncmp(msg, "feedback: ", 10) != 0) return send_err(s, c, ep, 500, "server_error", NULL, msg);
    char param[64] = "";
    const char *f = msg + 10, *colon = strchr(f, ':');
    if (colon && (size_t)(colon - f) < sizeof param && !memchr(f, ' ', (size_t)(colon - f)))
        snprintf(param, sizeof param, "%.*s", (int)(colon - f), f);
    return send_err(s, c, ep, 400, "invalid_request_error", param[0] ? param : NULL, msg);
}

/* Waits for a queued job; a client that goes away cancels it. */
static void wait_done(struct bee_server *s, struct MHD_Connection *c, bee_job *j) {
    pthread_mutex_lock(&s->mu);
    while (j->state != BEE_JOB_DONE) {
        timed_wait(&j->cv, &s->mu, 100);
        if (j->state != BEE_JOB_DONE && peer_gone(c)) bee_job_cancel_locked(j);
    }
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result handle_generate(struct bee_server *s, struct MHD_Connection *c, conn_ctx *cc, bee_api_kind kind,
                                       const char *endpoint) {
    bee_api_req rq;
    bee_api_error e;
    if (bee_api_parse(kind, cc->body.s ? cc->body.s : "", cc->body.n, &rq, &e)) return send_error(s, c, endpoint, &e);
    if (kind == BEE_API_TOKENIZE) {
        enum MHD_Result rc = handle_tokenize(s, c, &rq);
        bee_api_req_free(&rq);
        return rc;
    }
    bee_job *j = bee_job_new(s, endpoint);
    if (!j) {
        bee_api_req_free(&rq);
        return send_err(s, c, endpoint, 500, "server_error", NULL, "out of memory");
    }
    j->rq = rq;
    j->body = strndup(cc->body.s ? cc->body.s : "", cc->body.n);
    int rc = policy_prompt(s, j, &e);
    if (rc == 0) rc = bee_job_prepare(s, j, &e);
    if (rc == 0 && s->o.check) {
        char *owned, *reason = NULL;
        const char *t = prompt_text(j, &owned);
        if (s->o.check(s->o.hook_user, BEE_SERVE_TEXT_PROMPT, t, strlen(t), &reason))
            rc = bee_api_error_set(&e, 400, "content_filter", kind == BEE_API_CHAT ? "messages" : "prompt", "%s",
                                   reason ? reason : "the prompt was refused by the content check");
        free(owned), free(reason);
    }
    if (rc == 0) rc = bee_job_submit(s, j, &e);
    if (rc) {
        job_release(j);
        return send_error(s, c, endpoint, &e);
    }
    if (j->rq.stream) return send_stream(s, c, j);
    wait_done(s, c, j);
    enum MHD_Result r = send_result(s, c, j);
    job_release(j);
    return r;
}

/* ================================================================ digest */

/* Model calls of a digest run as /v1/cpmbee beam jobs through the scheduler,
 * so they batch with other requests and honour the queue and timeouts. */
typedef struct {
    struct bee_server *s;
    struct MHD_Connection *c;
    bee_api_error err; /* the failure of the last model call */
    int failed;
} digest_ctx;

static int digest_gen(void *user, json_t *dict, int max_length, char **answer) {
    digest_ctx *g = user;
    struct bee_server *s = g->s;
    json_t *body = json_pack("{s:O, s:i}", "data", dict, "max_tokens", max_length);
    char *txt = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!txt) return bee_fail("out of memory");
    bee_api_req rq;
    if (bee_api_parse(BEE_API_CPMBEE, txt, strlen(txt), &rq, &g->err)) {
        free(txt);
        g->failed = 1;
        return bee_fail("%s", g->err.message);
    }
    bee_job *j = bee_job_new(s, "/v1/digest");
    if (!j) {
        bee_api_req_free(&rq);
        free(txt);
        return bee_fail("out of memory");
    }
    j->rq = rq;
    j->body = txt;
    int rc = bee_job_prepare(s, j, &g->err);
    if (rc == 0) rc = bee_job_submit(s, j, &g->err);
    if (rc) {
        job_release(j);
        g->failed = 1;
        return bee_fail("%s", g->err.message);
    }
    pthread_mutex_lock(&s->mu);
    while (j->state != BEE_JOB_DONE) {
        timed_wait(&j->cv, &s->mu, 100);
        if (j->state != BEE_JOB_DONE && peer_gone(g->c)) bee_job_cancel_locked(j);
    }
    pthread_mutex_unlock(&s->mu);
    const char *ans = j->failed ? NULL : json_string_value(json_object_get(j->result, "<ans>"));
    if (j->failed) g->err = j->err, g->failed = 1, rc = bee_fail("%s", j->err.message);
    else if (!ans) rc = bee_fail("model output has no <ans> string");
    else if (!(*answer = strdup(ans))) rc = bee_fail("out of memory");
    job_release(j);
    return rc;
}

/* "request: answers[2].upvotes: expected ..." names the field "answers[2].upvotes". */
static void digest_param(const char *msg, char *param, size_t n) {
    param[0] = 0;
    if (strncmp(msg, "request: ", 9) != 0) return;
    const char *f = msg + 9, *colon = strstr(f, ": ");
    if (colon && (size_t)(colon - f) < n && !memchr(f, ' ', (size_t)(colon - f)) && strncmp(f, "invalid", 7))
        snprintf(param, n, "%.*s", (int)(colon - f), f);
}

/* The policy (and the check hook) on every input text: block refuses the
 * request naming the field, mask replaces the text the digest reads. */
static int digest_check_input(struct bee_server *s, const char *id, bee_digest_input *in, bee_api_error *e) {
    for (size_t i = 0; i <= in->n; i++) {
        char **t = i < in->n ? &in->answers[i].text : &in->question;
        char param[48];
        if (i < in->n) snprintf(param, sizeof param, "answers[%zu].text", i);
        else snprintf(param, sizeof param, "question");
        if (s->o.policy) {
            bee_safety_result r;
            if (bee_safety_check(s->o.policy, *t, strlen(*t), &r))
                return bee_api_error_set(e, 500, "server_error", NULL, "content policy: %s", bee_error_message());
            policy_note(s, id, BEE_SAFETY_STAGE_PROMPT, r.matches, r.n_matches);
            int rc = 0;
            if (r.action == BEE_SAFETY_BLOCK) {
                const char *cat = "";
                for (size_t k = 0; k < r.n_matches; k++)
                    if (r.matches[k].action == BEE_SAFETY_BLOCK) cat = r.matches[k].category_name;
                rc = bee_api_error_set(e, 400, "content_filter", param,
                                       "%s was blocked by the content policy (category '%s')", param, cat);
            } else if (r.action == BEE_SAFETY_MASK) {
                char *m = strndup(r.text, r.len);
                if (m) free(*t), *t = m;
                else rc = bee_api_error_set(e, 500, "server_error", NULL, "out of memory");
            }
            bee_safety_result_free(&r);
            if (rc) return rc;
        }
        char *reason = NULL;
        if (s->o.check && s->o.check(s->o.hook_user, BEE_SERVE_TEXT_PROMPT, *t, strlen(*t), &reason)) {
            bee_api_error_set(e, 400, "content_filter", param, "%s", reason ? reason : "the input was refused by the content check");
            free(reason);
            return -1;
        }
        free(reason);
    }
    return 0;
}

/* Output: a blocked or refused point is dropped, a masked one masked. */
static int digest_check_output(struct bee_server *s, const char *id, bee_digest_result *r, int *filtered) {
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        bee_digest_point *p = &r->points[i];
        int drop = 0;
        if (s->o.policy) {
            bee_safety_result sr;
            if (bee_safety_check(s->o.policy, p->text, strlen(p->text), &sr)) return -1;
            policy_note(s, id, BEE_SAFETY_STAGE_OUTPUT, sr.matches, sr.n_matches);
            if (sr.action == BEE_SAFETY_BLOCK) drop = 1;
            else if (sr.action == BEE_SAFETY_MASK) {
                char *m = strndup(sr.text, sr.len);
                if (m) free(p->text), p->text = m;
            }
            bee_safety_result_free(&sr);
        }
        char *reason = NULL;
        if (!drop && s->o.check && s->o.check(s->o.hook_user, BEE_SERVE_TEXT_OUTPUT, p->text, strlen(p->text), &reason))
            drop = 1;
        free(reason);
        if (drop) {
            free(p->text), free(p->cites);
            (*filtered)++;
        } else {
            r->points[k++] = *p;
        }
    }
    r->n = k;
    return 0;
}

/* POST /v1/digest {"question", "answers": [...], "extractive": bool, "max_points": N, "max_tokens": N} */
static enum MHD_Result handle_digest(struct bee_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    const char *ep = "/v1/digest";
    json_error_t jerr;
    json_t *body = json_loadb(cc->body.s ? cc->body.s : "", cc->body.n, 0, &jerr);
    char msg[600], param[64];
    if (!body) {
        snprintf(msg, sizeof msg, "request: invalid JSON at line %d, column %d (offset %d): %s", jerr.line, jerr.column,
                 jerr.position > 0 ? jerr.position - 1 : 0, jerr.text);
        return send_err(s, c, ep, 400, "invalid_request_error", NULL, msg);
    }
    if (!json_is_object(body)) {
        json_decref(body);
        return send_err(s, c, ep, 400, "invalid_request_error", NULL, "request: expected a JSON object");
    }
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    json_t *ex = json_object_get(body, "extractive"), *mp = json_object_get(body, "max_points"),
           *mt = json_object_get(body, "max_tokens");
    const char *bad = NULL;
    if (ex && !json_is_boolean(ex)) bad = "extractive", snprintf(msg, sizeof msg, "'extractive' must be true or false");
    else if (mp && (!json_is_integer(mp) || json_integer_value(mp) < 1 || json_integer_value(mp) > 100))
        bad = "max_points", snprintf(msg, sizeof msg, "'max_points' must be an integer from 1 to 100");
    else if (mt && (!json_is_integer(mt) || json_integer_value(mt) < 1 || json_integer_value(mt) > 4096))
        bad = "max_tokens", snprintf(msg, sizeof msg, "'max_tokens' (tokens per model summary) must be an integer from 1 to 4096");
    if (bad) {
        json_decref(body);
        return send_err(s, c, ep, 400, "invalid_request_error", bad, msg);
    }
    o.extractive = json_is_true(ex);
    if (mp) o.max_points = (int)json_integer_value(mp);
    if (mt) o.max_length = (int)json_integer_value(mt);
    bee_digest_input in;
    int rc = bee_digest_from_json(body, "request", &in);
    json_decref(body);
    if (rc) {
        digest_param(bee_error_message(), param, sizeof param);
        return send_err(s, c, ep, 400, "invalid_request_error", param[0] ? param : NULL, bee_error_message());
    }
    char id[64];
    pthread_mutex_lock(&s->mu);
    unsigned long long k = ++s->id_counter;
    pthread_mutex_unlock(&s->mu);
    snprintf(id, sizeof id, "digest-%llx%06llx", (unsigned long long)time(NULL), k);
    bee_api_error e;
    if (digest_check_input(s, id, &in, &e)) {
        bee_digest_input_free(&in);
        return send_error(s, c, ep, &e);
    }
    digest_ctx g = {s, c, {0}, 0};
    o.model = s->model;
    o.ctx = s->o.ctx;
    o.gen = digest_gen;
    o.gen_user = &g;
    bee_digest_result r;
    int filtered = 0;
    if (bee_digest_run(&in, &o, &r)) {
        enum MHD_Result res = g.failed ? send_error(s, c, ep, &g.err)
                                       : send_err(s, c, ep, strstr(bee_error_message(), "out of memory") ? 500 : 400,
                                                  "invalid_request_error", NULL, bee_error_message());
        bee_digest_input_free(&in);
        return res;
    }
    if (digest_check_output(s, id, &r, &filtered)) {
        bee_digest_result_free(&r);
        bee_digest_input_free(&in);
        return send_err(s, c, ep, 500, "server_error", NULL, bee_error_message());
    }
    json_t *out = bee_digest_result_json(&in, &r);
    if (out) {
        json_object_set_new(out, "id", json_string(id));
        json_object_set_new(out, "object", json_string("digest"));
        json_object_set_new(out, "model", json_string(s->model_name));
        json_object_set_new(out, "filtered", json_integer(filtered));
    }
    bee_digest_result_free(&r);
    bee_digest_input_free(&in);
    return send_json(s, c, ep, 200, out);
}

/* ================================================================ search and ask */

/* The policy and the check hook on a query or question (stage prompt):
 * block or refusal → 400 content_filter naming the field; mask → *text is
 * replaced by the masked text, which is what gets searched and asked. */
static int check_query(struct bee_server *s, const char *id, char **text, const char *param, bee_api_error *e) {
    if (s->o.policy) {
        bee_safety_result r;
        if (bee_safety_check(s->o.policy, *text, strlen(*text), &r))
            return bee_api_error_set(e, 500, "server_error", NULL, "content policy: %s", bee_error_message());
        policy_note(s, id, BEE_SAFETY_STAGE_PROMPT, r.matches, r.n_matches);
        int rc = 0;
        if (r.action == BEE_SAFETY_BLOCK) {
            const char *cat = "";
            for (size_t i = 0; i < r.n_matches; i++)
                if (r.matches[i].action == BEE_SAFETY_BLOCK) cat = r.matches[i].category_name;
            rc = bee_api_error_set(e, 400, "content_filter", param,
                                   "the %s was blocked by the content policy (category '%s')", param, cat);
        } else if (r.action == BEE_SAFETY_MASK) {
            char *m = strndup(r.text, r.len);
            if (m) free(*text), *text = m;
            else rc = bee_api_error_set(e, 500, "server_error", NULL, "out of memory");
        }
        bee_safety_result_free(&r);
        if (rc) return rc;
    }
    char *reason = NULL;
    if (s->o.check && s->o.check(s->o.hook_user, BEE_SERVE_TEXT_PROMPT, *text, strlen(*text), &reason)) {
        bee_api_error_set(e, 400, "content_filter", param, "%s", reason ? reason : "the text was refused by the content check");
        free(reason);
        return -1;
    }
    free(reason);
    return 0;
}

/* The policy and the check hook on retrieved passages (stage output): a
 * blocked or refused passage is withheld (neither returned nor given to the
 * model), a masked one is returned masked. Returns the number withheld. */
static size_t check_hits(struct bee_server *s, const char *id, bee_search_hit *h, size_t *n) {
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < *n; i++) {
        int drop = 0;
        if (s->o.policy) {
            bee_safety_result r;
            if (bee_safety_check(s->o.policy, h[i].text, strlen(h[i].text), &r)) drop = 1; /* fail closed */
            else {
                policy_note(s, id, BEE_SAFETY_STAGE_OUTPUT, r.matches, r.n_matches);
                if (r.action == BEE_SAFETY_BLOCK) drop = 1;
                else if (r.action == BEE_SAFETY_MASK) {
                    char *m = strndup(r.text, r.len);
                    if (m) free(h[i].text), h[i].text = m;
                    else drop = 1;
                }
                bee_safety_result_free(&r);
            }
        }
        char *reason = NULL;
        if (!drop && s->o.check && s->o.check(s->o.hook_user, BEE_SERVE_TEXT_OUTPUT, h[i].text, strlen(h[i].text), &reason))
            drop = 1;
        free(reason);
        if (drop) {
            free(h[i].doc), free(h[i].heading), free(h[i].text);
            dropped++;
        } else {
            h[kept++] = h[i];
        }
    }
    *n = kept;
    return dropped;
}

static int run_search(struct bee_server *s, const char *query, int k, bee_search_hit **h, size_t *n, bee_api_error *e) {
    pthread_mutex_lock(&s->search_mu);
    int rc = bee_search_query(s->o.index, query, k, h, n);
    if (rc) bee_api_error_set(e, 500, "server_error", NULL, "search: %s", bee_error_message());
    pthread_mutex_unlock(&s->search_mu);
    return rc;
}

static enum MHD_Result no_index(struct bee_server *s, struct MHD_Connection *c, const char *ep) {
    return send_err(s, c, ep, 404, "invalid_request_error", NULL,
                    "this server has no search index (start it with bee serve --index INDEX.sqlite)");
}

/* POST /v1/search {"query", "k"} → {"results": [...]} as `bee search --json` prints them. */
static enum MHD_Result handle_search(struct bee_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    const char *ep = "/v1/search";
    if (!s->o.index) return no_index(s, c, ep);
    bee_api_req rq;
    bee_api_error e;
    if (bee_api_parse(BEE_API_SEARCH, cc->body.s ? cc->body.s : "", cc->body.n, &rq, &e)) return send_error(s, c, ep, &e);
    char id[64];
    pthread_mutex_lock(&s->mu);
    snprintf(id, sizeof id, "search-%llx%06llx", (unsigned long long)time(NULL), (unsigned long long)++s->id_counter);
    pthread_mutex_unlock(&s->mu);
    bee_search_hit *h = NULL;
    size_t n = 0;
    int rc = check_query(s, id, &rq.content, "query", &e);
    if (rc == 0) rc = run_search(s, rq.content, rq.k, &h, &n, &e);
    bee_api_req_free(&rq);
    if (rc) return send_error(s, c, ep, &e);
    size_t withheld = check_hits(s, id, h, &n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, bee_search_hit_json(&h[i]));
    bee_search_hits_free(h, n);
    return send_json(s, c, ep, 200,
                     json_pack("{s:s,s:s,s:o,s:I}", "id", id, "object", "search.result", "results", arr, "withheld",
                               (json_int_t)withheld));
}

/* POST /v1/ask: retrieve, then the `bee ask` dict through the scheduler as a
 * /v1/cpmbee job (beam search by default); answer, citations and passages back. */
static enum MHD_Result handle_ask(struct bee_server *s, struct MHD_Connection *c, conn_ctx *cc) {
    const char *ep = "/v1/ask";
    if (!s->o.index) return no_index(s, c, ep);
    bee_api_req rq;
    bee_api_error e;
    if (bee_api_parse(BEE_API_ASK, cc->body.s ? cc->body.s : "", cc->body.n, &rq, &e)) return send_error(s, c, ep, &e);
    bee_job *j = bee_job_new(s, ep);
    if (!j) {
        bee_api_req_free(&rq);
        return send_err(s, c, ep, 500, "server_error", NULL, "out of memory");
    }
    j->rq = rq;
    j->body = strndup(cc->body.s ? cc->body.s : "", cc->body.n);
    bee_search_hit *h = NULL;
    size_t n = 0, withheld = 0;
    int rc = check_query(s, j->id, &j->rq.content, "question", &e);
    if (rc == 0) rc = run_search(s, j->rq.content, j->rq.k, &h, &n, &e);
    if (rc == 0) {
        withheld = check_hits(s, j->id, h, &n);
        j->rq.data = bee_ask_dict(j->rq.content, h, n);
        j->rq.kind = BEE_API_CPMBEE; /* from here on it is a dict job */
        if (!j->rq.data) rc = bee_api_error_set(&e, 500, "server_error", NULL, "out of memory");
    }
    if (rc == 0 && bee_job_prepare(s, j, &e)) {
        rc = -1;
        if (strcmp(e.param, "max_tokens") != 0 && e.status == 400) { /* too long for --ctx: fewer passages fit */
            char msg[sizeof e.message];
            memcpy(msg, e.message, sizeof msg);
            bee_api_error_set(&e, 400, "invalid_request_error", "k", "the question with %zu passages: %.400s; ask for fewer (k)",
                              n, msg);
        }
    }
    if (rc == 0) rc = bee_job_submit(s, j, &e);
    if (rc) {
        bee_search_hits_free(h, n);
        job_release(j);
        return send_error(s, c, ep, &e);
    }
    wait_done(s, c, j);
    enum MHD_Result r;
    const char *ans = json_string_value(json_object_get(j->result, "<ans>"));
    if (!j->failed && !ans) bee_api_error_set(&j->err, 500, "server_error", NULL, "the model output has no <ans> string"), j->failed = 1;
    if (j->failed) {
        record(s, j, j->err.message, j->err.status);
        r = send_error(s, c, ep, &j->err);
    } else {
        /* the answer goes through the policy and the check hook like a completion's text */
        char *answer = strdup(ans);
        int filtered = 0;
        if (answer && s->o.policy) {
            bee_safety_result pr;
            if (bee_safety_check(s->o.policy, answer, strlen(answer), &pr)) filtered = 1;
            else {
                policy_note(s, j->id, BEE_SAFETY_STAGE_OUTPUT, pr.matches, pr.n_matches);
                if (pr.action == BEE_SAFETY_BLOCK) filtered = 1;
                else if (pr.action == BEE_SAFETY_MASK) {
                    char *m = strndup(pr.text, pr.len);
                    if (m) free(answer), answer = m;
                }
                bee_safety_result_free(&pr);
            }
        }
        char *reason = NULL;
        if (answer && !filtered && s->o.check &&
            s->o.check(s->o.hook_user, BEE_SERVE_TEXT_OUTPUT, answer, strlen(answer), &reason))
            filtered = 1;
        free(reason);
        if (answer && filtered) answer[0] = 0;
        json_t *o = answer ? bee_ask_result_json(answer, h, n, NULL) : NULL;
        if (o) {
            json_object_set_new(j->result, "<ans>", json_string(answer)); /* what the feedback store keeps */
            json_object_set_new(o, "id", json_string(j->id));
            json_object_set_new(o, "object", json_string("ask.result"));
            json_object_set_new(o, "model", json_string(s->model_name));
            json_object_set_new(o, "finish_reason", json_string(filtered ? "content_filter" : "stop"));
            json_object_set_new(o, "withheld", json_integer((json_int_t)withheld));
            json_object_set_new(o, "usage", bee_job_usage(j));
        }
        free(answer);
        char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!txt) {
            r = send_err(s, c, ep, 500, "server_error", NULL, "out of memory");
        } else {
            record(s, j, txt, 200);
            r = send_body(s, c, ep, 200, "application/json", txt, strlen(txt));
            free(txt);
        }
    }
    bee_search_hits_free(h, n);
    job_release(j);
    return r;
}

/* ================================================================ web app */

/* The page loads only its own script and style and talks only to this
 * server: no inline code, no other origin, no framing. */
static const char k_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static enum MHD_Result handle_static(struct bee_server *s, struct MHD_Connection *c, const bee_web_asset *a) {
    struct MHD_Response *r = MHD_create_response_from_buffer(a->size, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", a->type);
    MHD_add_response_header(r, "Content-Security-Policy", k_csp);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    bee_metrics_request(&s->metrics, "/", 200);
    return rc;
}

/* ================================================================ routing */

typedef struct {
    const char *path, *method;
    int kind; /* bee_api_kind, or -1 for the GET endpoints */
} route;

static const route k_routes[] = {
    {"/health", "GET", -1},
    {"/v1/models", "GET", -1},
    {"/metrics", "GET", -1},
    {"/v1/completions", "POST", BEE_API_COMPLETION},
    {"/v1/chat/completions", "POST", BEE_API_CHAT},
    {"/v1/cpmbee", "POST", BEE_API_CPMBEE},
    {"/tokenize", "POST", BEE_API_TOKENIZE},
    {"/v1/feedback", "POST", -1},
    {"/v1/digest", "POST", -1},
    {"/v1/search", "POST", BEE_API_SEARCH},
    {"/v1/ask", "POST", BEE_API_ASK},
};

static enum MHD_Result dispatch(struct bee_server *s, struct MHD_Connection *c, const char *url, const char *method,
                                conn_ctx *cc) {
    const bee_web_asset *a = bee_web_find(url);
    if (a && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)) return handle_static(s, c, a); /* no key: the page holds no data */
    const route *r = NULL;
    for (size_t i = 0; i < sizeof k_routes / sizeof k_routes[0]; i++)
        if (strcmp(url, k_routes[i].path) == 0) r = &k_routes[i];
    if (!r) return send_err(s, c, "other", 404, "invalid_request_error", NULL, "no such endpoint");
    if (strcmp(method, r->method) != 0)
        return send_err(s, c, r->path, 405, "invalid_request_error", NULL, "method not allowed");
    if (cc->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body exceeds %zu bytes (--max-body)", s->o.max_body);
        return send_err(s, c, r->path, 413, "invalid_request_error", NULL, msg);
    }
    if (strcmp(r->path, "/health") == 0) return handle_health(s, c);
    if (!authorized(s, c))
        return send_err(s, c, r->path, 401, "authentication_error", NULL, "missing or invalid API key (Authorization: Bearer KEY)");
    pthread_mutex_lock(&s->mu);
    int loaded = s->loaded;
    pthread_mutex_unlock(&s->mu);
    if (strcmp(r->path, "/metrics") == 0) return handle_metrics(s, c);
    if (strcmp(r->path, "/v1/feedback") == 0) return handle_feedback(s, c, cc);
    if (strcmp(r->path, "/v1/search") == 0) return handle_search(s, c, cc); /* needs no model */
    if (!loaded) return send_err(s, c, r->path, 503, "server_error", NULL, "the model is not loaded");
    if (strcmp(r->path, "/v1/models") == 0) return handle_models(s, c);
    if (strcmp(r->path, "/v1/digest") == 0) return handle_digest(s, c, cc);
    if (strcmp(r->path, "/v1/ask") == 0) return handle_ask(s, c, cc);
    return handle_generate(s, c, cc, (bee_api_kind)r->kind, r->path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    struct bee_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        if (!(cc = calloc(1, sizeof *cc))) return MHD_NO;
        *con_cls = cc;
        pthread_mutex_lock(&s->mu);
        s->n_requests++;
        pthread_mutex_unlock(&s->mu);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) { /* refuse before reading the body */
            cc->too_big = 1;
            return dispatch(s, c, url, method, cc);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_big && cc->body.n + *upload_size > s->o.max_body) {
            cc->too_big = 1;
            bee_str_free(&cc->body);
        }
        if (!cc->too_big && bee_str_append(&cc->body, upload, *upload_size)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(s, c, url, method, cc);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)c, (void)t;
    struct bee_server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    pthread_mutex_lock(&s->mu);
    s->n_requests--;
    pthread_cond_broadcast(&s->ready_cv);
    pthread_mutex_unlock(&s->mu);
    bee_str_free(&cc->body);
    free(cc);
    *con_cls = NULL;
}

/* ================================================================ lifecycle */

static char *model_name_of(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".gguf") == 0) n -= 5;
    return strndup(b, n);
}

static int start_daemon(struct bee_server *s) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)s->o.port);
    } else if (inet_pton(AF_INET6, s->host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)s->o.port);
        flags |= MHD_USE_IPv6;
    } else {
        return bee_fail("--host %s: not an IPv4 or IPv6 address", s->host);
    }
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_LIMIT,
                                 (unsigned)(s->o.queue + 4 * s->o.parallel + 64), MHD_OPTION_END);
    if (!s->daemon) return bee_fail("cannot listen on %s:%d: %s", s->host, s->o.port, strerror(errno));
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    return 0;
}

static void server_free(struct bee_server *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    for (int i = 0; s->slots && i < s->o.parallel; i++) {
        if (s->slots[i].smp_ok) bee_sampler_free(&s->slots[i].smp);
        bee_prefill_cancel(s->slots[i].pf);
        bee_seq_free(&s->slots[i].seq);
        free(s->slots[i].logits);
    }
    free(s->slots);
    if (s->kv_ok) bee_kv_pool_free(&s->kv);
    bee_model_free(s->model);
    free(s->st_seqs), free(s->st_toks), free(s->st_ntok), free(s->st_slot), free(s->st_extoff);
    free(s->st_ext_ids), free(s->st_ext_subs), free(s->st_logits);
    for (size_t i = 0; i < s->n_keys; i++) free(s->keys[i]);
    free(s->keys);
    free(s->queue);
    free(s->host), free(s->model_path), free(s->model_name), free(s->lora_path);
    bee_metrics_free(&s->metrics);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->ready_cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->audit_mu);
    pthread_mutex_destroy(&s->search_mu);
    free(s);
}

static int check_opts(const bee_serve_opts *o) {
    if (!o->model_path) return bee_fail("no model (-m MODEL.gguf)");
    if (o->parallel < 1 || o->parallel > 256) return bee_fail("--parallel must be 1..256");
    if (o->ctx < 16) return bee_fail("--ctx must be at least 16");
    if (o->queue < 1) return bee_fail("--queue must be at least 1");
    if (o->port < 0 || o->port > 65535) return bee_fail("--port must be 0..65535");
    if (o->max_body < 64) return bee_fail("--max-body must be at least 64 bytes");
    return 0;
}

int bee_server_start(const bee_serve_opts *o, bee_server **out) {
    *out = NULL;
    if (check_opts(o)) return -1;
    struct bee_server *s = calloc(1, sizeof *s);
    if (!s) return bee_fail("out of memory");
    s->o = *o;
    if (s->o.prefill_budget < 1) s->o.prefill_budget = 1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->audit_mu, NULL);
    pthread_mutex_init(&s->search_mu, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    pthread_cond_init(&s->ready_cv, NULL);
    int rc = bee_metrics_init(&s->metrics);
    s->host = strdup(o->host ? o->host : "127.0.0.1");
    s->model_path = strdup(o->model_path);
    s->lora_path = o->lora ? strdup(o->lora) : NULL;
    s->model_name = o->model_name ? strdup(o->model_name) : model_name_of(o->model_path);
    s->queue = calloc((size_t)o->queue, sizeof *s->queue);
    if (rc == 0 && (!s->host || !s->model_path || !s->model_name || !s->queue || (o->lora && !s->lora_path)))
        rc = bee_fail("out of memory");
    if (rc == 0 && o->api_key_file) rc = load_keys(s, o->api_key_file);
    if (rc == 0) rc = start_daemon(s);
    if (rc == 0 && pthread_create(&s->sched, NULL, bee_sched_main, s)) rc = bee_fail("cannot start the scheduler thread");
    if (rc) {
        server_free(s);
        return -1;
    }
    s->sched_started = 1;
    *out = s;
    return 0;
}

int bee_server_port(const bee_server *s) { return s->port; }

int bee_server_wait_ready(bee_server *s, double timeout_s) {
    double end = bee_serve_now() + timeout_s;
    pthread_mutex_lock(&s->mu);
    while (!s->loaded && !s->load_failed && bee_serve_now() < end) timed_wait(&s->ready_cv, &s->mu, 50);
    int rc = s->loaded ? 0 : s->load_failed ? bee_fail("%s", s->load_error) : bee_fail("the model is still loading");
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static void cancel_all_locked(struct bee_server *s) {
    for (size_t k = 0; k < s->q_n; k++) bee_job_cancel_locked(s->queue[(s->q_head + k) % (size_t)s->o.queue]);
    for (int i = 0; s->slots && i < s->o.parallel; i++)
        if (s->slots[i].job) bee_job_cancel_locked(s->slots[i].job);
}

void bee_server_stop(bee_server *s) {
    if (!s) return;
    double end = bee_serve_now() + s->o.drain_s;
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    /* until every request has been answered (a job is released before its response is sent) */
    while ((s->n_jobs > 0 || s->n_requests > 0) && bee_serve_now() < end) timed_wait(&s->ready_cv, &s->mu, 50);
    if (s->n_jobs > 0) cancel_all_locked(s);
    pthread_mutex_unlock(&s->mu);
    if (s->daemon) MHD_stop_daemon(s->daemon); /* joins the connection threads */
    s->daemon = NULL;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->sched_started) pthread_join(s->sched, NULL);
    server_free(s);
}

#endif
