/* `bee serve`: an OpenAI-compatible HTTP server with continuous batching.
 *
 * One scheduler thread owns the model. Requests are parsed and tokenized on
 * their connection threads, wait in a bounded queue, and run in up to
 * `parallel` slots; every scheduler step is ONE bee_forward over all active
 * slots (the decode token of each running stream plus the prefill of newly
 * admitted short prompts), so weights are read once per step whatever the
 * number of streams, followed by a slice of a few layers of a long prompt's
 * prefill (exact: prompts are split by layers, never by tokens). See
 * docs/SERVING.md. */
#ifndef BEE_SERVE_H
#define BEE_SERVE_H

#include <stddef.h>

typedef struct bee_server bee_server;

/* ---------------------------------------------------------------- hooks
 * Points where a content-safety module and a response store plug in. Both
 * are optional and are called on connection threads (so they may block on
 * I/O without stalling generation), concurrently: they must be thread-safe. */
typedef enum {
    BEE_SERVE_TEXT_PROMPT, /* the model input text of a request, before it is queued */
    BEE_SERVE_TEXT_OUTPUT, /* a choice's generated text, when the choice has finished */
} bee_serve_text_kind;

/* Returns 0 to allow the text, nonzero to refuse it; *reason (optional,
 * malloc'd, freed by the server) explains. A refused prompt gets a 400 with
 * type "content_filter"; a refused output is replaced by "" with
 * finish_reason "content_filter" (streams have already sent their text and
 * only get the finish reason). */
typedef int (*bee_serve_check_fn)(void *user, bee_serve_text_kind kind, const char *text, size_t len, char **reason);

typedef struct {
    const char *id;       /* response id ("cmpl-…", "chatcmpl-…", "cpmbee-…") */
    const char *endpoint; /* "/v1/completions", ... */
    const char *request;  /* request body as received */
    const char *response; /* response body (streams: the generated text of each choice, joined) */
    int status;           /* HTTP status */
} bee_serve_record;

/* Called once per finished generation request. */
typedef void (*bee_serve_record_fn)(void *user, const bee_serve_record *r);

/* ---------------------------------------------------------------- options */
typedef struct {
    const char *model_path;
    const char *host;          /* bind address; default 127.0.0.1 */
    int port;                  /* 0 = an ephemeral port (see bee_server_port) */
    int threads;               /* forward-pass threads; 0 = all cores */
    int parallel;              /* slots: sequences decoded together (default 4) */
    int ctx;                   /* prompt + max_tokens limit per request (default 2048) */
    int queue;                 /* requests waiting for a slot before 503 (default 64) */
    double timeout_s;          /* per request, queueing included; 0 = none (default 600) */
    size_t max_body;           /* request body limit in bytes (default 1 MiB) */
    int prefill_budget;        /* new prompt tokens admitted per step (default 512; one prompt always fits) */
    long prefill_chunk;        /* prompt tokens x layers of a long prompt's prefill run per step, between the
                                  decode steps of running streams; a prompt whose whole prefill is more is
                                  prefilled a few layers per step (0 = prefill_budget x the model's layers,
                                  the default; < 0 = never split) */
    size_t kv_budget;          /* bytes of KV cache blocks shared by all slots (cached prompt prefixes
                                  included); a request waits in the queue until its blocks are free.
                                  0 = enough for parallel x ctx tokens (the default) */
    const char *lora;          /* LoRA adapter (bee train --lora) applied to every request; NULL = none */
    uint32_t kv_type;          /* element type of the KV cache: BEE_TYPE_F32 (default), F16 or BF16 */
    const char *api_key_file;  /* one key per line; NULL = no auth */
    const char *model_name;    /* id shown by /v1/models; default the file's base name */
    double drain_s;            /* shutdown: how long to let in-flight requests finish (default 30) */
    int verbose;               /* log one line per request to stderr */
    bee_serve_check_fn check;
    bee_serve_record_fn record;
    void *hook_user;
    /* Built-in content safety and feedback (all optional, owned by the caller,
     * alive until bee_server_stop returns). The policy checks prompts (block:
     * 400 content_filter; mask: the masked prompt is generated from) and
     * filters generated text while it is produced, holding back only the
     * undecided tail, so a blocked term is never sent, even across stream
     * chunks. Matches go to the audit table. The feedback store records
     * every finished response under the id the client got and serves
     * POST /v1/feedback. */
    const struct bee_safety_policy *policy;
    struct bee_safety_audit *audit; /* calls are serialised by the server */
    struct bee_feedback *feedback;
    /* Search index for POST /v1/search and /v1/ask (owned by the caller;
     * the server serialises its queries). NULL: those endpoints answer 404. */
    struct bee_search *index;
} bee_serve_opts;

void bee_serve_opts_default(bee_serve_opts *o);
/* Binds the socket and starts serving (/health answers 503 while the model
 * loads in the background). Fails with a message when the build has no
 * libmicrohttpd. */
int bee_server_start(const bee_serve_opts *o, bee_server **out);
/* The bound TCP port. */
int bee_server_port(const bee_server *s);
/* Waits until the model is loaded: 0, or -1 when loading failed (message in
 * bee_error_message()) or timeout_s passed. */
int bee_server_wait_ready(bee_server *s, double timeout_s);
/* Stops accepting generation requests (503), lets in-flight ones finish (up
 * to drain_s, then cancels them), stops the threads and frees everything. */
void bee_server_stop(bee_server *s);
/* 1 when the library was built with libmicrohttpd. */
int bee_serve_available(void);

#endif
