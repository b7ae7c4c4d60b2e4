/* bee serve: the CLI over src/serve (options, signals). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "feedback/feedback.h"
#include "safety/safety.h"
#include "search/search.h"
#include "serve/serve.h"
#include "util/error.h"
#include "util/file.h"

static const cli_opt k_serve_opts[] = {
    {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
    {"host", 0, "ADDR", "address to bind (default 127.0.0.1; 0.0.0.0 for all)", "BEE_HOST", 0},
    {"port", 0, "N", "TCP port (default 8080; 0 = any free port)", "BEE_PORT", 0},
    {"threads", 't', "N", "forward-pass threads (default: all cores)", "BEE_THREADS", 0},
    {"parallel", 0, "N", "slots decoded together in one batch (default 4)", "BEE_PARALLEL", 0},
    {"ctx", 0, "N", "per-request limit on prompt + max_tokens (default 2048)", "BEE_CTX", 0},
    {"kv-budget", 0, "SIZE",
     "memory for the KV caches of all slots, e.g. 512M or 2G; requests wait for free blocks "
     "(default: enough for parallel x ctx tokens)",
     "BEE_KV_BUDGET", 0},
    {"kv-type", 0, "TYPE", "element type of the KV cache: f32 (default), f16 or bf16 (half the memory)", "BEE_KV_TYPE", 0},
    {"lora", 0, "A.gguf", "LoRA adapter (bee train --lora) applied to every request", "BEE_LORA", 0},
    {"queue", 0, "N", "requests that may wait for a slot before 503 (default 64)", "BEE_QUEUE", 0},
    {"timeout", 0, "S", "per-request timeout in seconds, queueing included (default 600; 0 = none)", "BEE_TIMEOUT", 0},
    {"max-body", 0, "BYTES", "request body limit (default 1048576)", "BEE_MAX_BODY", 0},
    {"prefill-budget", 0, "N", "prompt tokens admitted per step (default 512)", "BEE_PREFILL_BUDGET", 0},
    {"prefill-chunk", 0, "N",
     "prompt tokens x layers of a long prefill run per step between decode steps (default 0 = prefill-budget x layers; -1 = never split)",
     "BEE_PREFILL_CHUNK", 0},
    {"api-key-file", 0, "FILE", "require 'Authorization: Bearer KEY' with a key from FILE (one per line)",
     "BEE_API_KEY_FILE", 0},
    {"name", 0, "NAME", "model id reported by /v1/models (default: file name)", "BEE_MODEL_NAME", 0},
    {"drain", 0, "S", "on SIGTERM/SIGINT, seconds to let requests finish (default 30)", "BEE_DRAIN", 0},
    {"policy", 0, "P.json", "content-safety policy for prompts and generated text (docs/SAFETY.md)", "BEE_POLICY", 0},
    {"audit-db", 0, "F.sqlite", "safety audit table (default: the --feedback-db file)", "BEE_AUDIT_DB", 0},
    {"feedback-db", 0, "F.sqlite", "store every response; enables POST /v1/feedback", "BEE_FEEDBACK_DB", 0},
    {"index", 0, "INDEX.sqlite", "search index (bee index) for POST /v1/search and /v1/ask", "BEE_INDEX", 0},
    {"verbose", 'v', NULL, "log each request", "BEE_VERBOSE", 0},
    {0},
};

static int read_opts(const cli_args *a, bee_serve_opts *o) {
    long port = 8080, threads = 0, par = 4, ctx = 2048, queue = 64, body = 1 << 20, budget = 512, chunk = 0;
    double timeout = 600, drain = 30;
    size_t kv_budget = 0;
    if (cli_int(a, "port", 0, 65535, &port) || cli_int(a, "threads", 0, 1024, &threads) ||
        cli_int(a, "parallel", 1, 256, &par) || cli_int(a, "ctx", 16, 1 << 24, &ctx) ||
        cli_int(a, "queue", 1, 1 << 20, &queue) || cli_int(a, "max-body", 64, 1L << 34, &body) ||
        cli_int(a, "prefill-budget", 1, 1 << 24, &budget) ||
        cli_int(a, "prefill-chunk", -1, 1L << 40, &chunk) || cli_float(a, "timeout", 0, 1e9, &timeout) ||
        cli_float(a, "drain", 0, 1e6, &drain) || cli_size(a, "kv-budget", &kv_budget))
        return -1;
    bee_serve_opts_default(o);
    if (cli_kv_type("serve", a, &o->kv_type)) return -1;
    o->lora = cli_get(a, "lora");
    o->model_path = cli_get(a, "model");
    if (cli_get(a, "host")) o->host = cli_get(a, "host");
    o->port = (int)port, o->threads = (int)threads, o->parallel = (int)par, o->ctx = (int)ctx;
    o->queue = (int)queue, o->max_body = (size_t)body, o->prefill_budget = (int)budget;
    o->prefill_chunk = chunk;
    o->kv_budget = kv_budget;
    o->timeout_s = timeout, o->drain_s = drain;
    o->api_key_file = cli_get(a, "api-key-file");
    o->model_name = cli_get(a, "name");
    o->verbose = cli_get(a, "verbose") != NULL;
    return 0;
}

/* The policy, audit table and feedback store the server borrows. */
typedef struct {
    bee_safety_policy *policy;
    bee_safety_audit *audit;
    bee_feedback *feedback;
    bee_search *index;
} serve_stores;

static void stores_close(serve_stores *st) {
    bee_safety_policy_free(st->policy);
    bee_safety_audit_close(st->audit);
    bee_feedback_close(st->feedback);
    bee_search_close(st->index);
}

static int stores_open(const cli_args *a, serve_stores *st, bee_serve_opts *o) {
    const char *pol = cli_get(a, "policy"), *fdb = cli_get(a, "feedback-db"), *adb = cli_get(a, "audit-db");
    const char *idx = cli_get(a, "index");
    if (!adb && pol) adb = fdb; /* decisions next to the responses they concern */
    memset(st, 0, sizeof *st);
    if (idx && !bee_file_exists(idx)) return cli_error("serve", "--index %s: no such index (create it with bee index)", idx);
    if ((idx && bee_search_open(idx, &st->index)) || (pol && bee_safety_policy_load(pol, &st->policy)) ||
        (fdb && bee_feedback_open(fdb, &st->feedback)) ||
        (adb && bee_safety_audit_open(adb, &st->audit))) {
        cli_fail("serve");
        stores_close(st);
        memset(st, 0, sizeof *st);
        return 1;
    }
    o->policy = st->policy, o->audit = st->audit, o->feedback = st->feedback, o->index = st->index;
    if (pol)
        fprintf(stderr, "bee serve: policy %s (%zu categories, %zu terms)%s%s\n", pol,
                bee_safety_policy_n_categories(st->policy), bee_safety_policy_n_terms(st->policy),
                adb ? ", audit in " : "", adb ? adb : "");
    return 0;
}

/* Signals are blocked in every thread and taken here with sigwait, so the
 * drain runs in ordinary code rather than in a handler. */
static int serve(const bee_serve_opts *o) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    bee_server *s;
    if (bee_server_start(o, &s)) return cli_fail("serve");
    fprintf(stderr, "bee serve: listening on http://%s:%d (loading %s)\n", o->host, bee_server_port(s), o->model_path);
    int rc = 0;
    if (bee_server_wait_ready(s, 1e9)) rc = cli_fail("serve");
    else fprintf(stderr, "bee serve: ready\n");
    if (rc == 0) {
        int sig = 0;
        sigwait(&set, &sig);
        fprintf(stderr, "bee serve: %s: finishing in-flight requests\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    }
    bee_server_stop(s);
    if (rc == 0) fprintf(stderr, "bee serve: stopped\n");
    return rc;
}

int cmd_serve(int argc, char **argv) {
    cli_args a = {"serve", "-m MODEL.gguf [--host ADDR] [--port N] [--parallel N] [--ctx N] [options]",
                  "Serves the model over HTTP: OpenAI-style /v1/completions and /v1/chat/completions (with SSE\n"
                  "streaming), /v1/cpmbee (CPM-Bee dicts), /v1/models, /tokenize, /health and /metrics; with\n"
                  "--index, /v1/search (passages) and /v1/ask (answers citing them).\n"
                  "Requests share one batched forward pass per step (continuous batching). See docs/SERVING.md.",
                  k_serve_opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_serve_opts o;
    if (a.n_pos) rc = cli_error("serve", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (read_opts(&a, &o)) rc = 2;
    else if (!bee_serve_available()) rc = cli_error("serve", "bee was built without libmicrohttpd: install libmicrohttpd-dev and rebuild");
    else if (!o.model_path) rc = cli_error("serve", "missing -m MODEL.gguf") + 1;
    else {
        serve_stores st;
        rc = stores_open(&a, &st, &o);
        if (rc == 0) rc = serve(&o);
        stores_close(&st);
    }
    cli_free(&a);
    return rc;
}
