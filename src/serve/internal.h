/* Shared state of the HTTP front end (server.c) and the scheduler (sched.c). */
#ifndef BEE_SERVE_INTERNAL_H
#define BEE_SERVE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "generate/generate.h"
#include "model/model.h"
#include "safety/safety.h"
#include "serve/metrics.h"
#include "serve/request.h"
#include "serve/serve.h"

/* ================================================================ jobs */

typedef enum { BEE_JOB_NEW, BEE_JOB_QUEUED, BEE_JOB_RUNNING, BEE_JOB_DONE } bee_job_state;

typedef struct bee_job bee_job;

typedef struct {
    bee_job *job;
    int index;
    bee_sample_params sp; /* per choice: seed + index, the stream callback */
    bee_str text;         /* output text ("<<" already turned into "<") */
    bee_unescape unesc;
    int n_gen;            /* generated tokens (</s> included) */
    bee_finish finish;
    int filtered;         /* refused by the output check or blocked by the policy */
    struct bee_safety_stream *safe; /* policy filter between the sampler and text (scheduler thread) */
    bee_str raw;          /* scratch: unescaped piece before the filter */
    int started;          /* a token was generated */
    int n_deltas;         /* stream chunks sent */
    double t_prev;        /* time of the previous token */
    json_t *lp_tokens, *lp_logprobs, *lp_top, *lp_offsets; /* logprobs; lp_top: per token, [text, lp] pairs */
    size_t lp_off;
} bee_choice;

struct bee_job {
    struct bee_server *srv;
    bee_api_req rq;
    const char *endpoint;
    char *body;         /* request text (for the record hook) */
    char id[64];
    long long created;
    /* prepared on the connection thread, read-only once queued */
    bee_gen_input in;
    int in_ok;
    bee_gen_batch b;
    int b_ok;
    bee_token *ctx_toks; /* prefill tokens (the dict's context) */
    size_t n_ctx;
    int max_tokens;
    bee_choice *choices; /* (rq.n) */
    double t_arrive, deadline;
    /* under srv->mu */
    int refs;
    bee_job_state state;
    int cancelled;
    int n_running;      /* choices in slots, not yet finished */
    int failed;
    bee_api_error err;
    bee_str sse;        /* stream bytes produced */
    size_t sse_off;     /* bytes handed to the connection */
    json_t *result;     /* /v1/cpmbee: the filled dict */
    int beam_tokens;    /* /v1/cpmbee beam: tokens of the answers */
    size_t echo_prefix; /* echo: context tokens before the scored answer segment */
    pthread_cond_t cv;
};

/* ================================================================ slots */

typedef enum { BEE_SLOT_FREE, BEE_SLOT_PREFILL, BEE_SLOT_WAIT, BEE_SLOT_DECODE } bee_slot_phase;

typedef struct {
    bee_slot_phase phase;
    bee_job *job;
    int choice;
    int src;            /* WAIT: slot whose prefill this choice copies */
    bee_seq seq;
    int prefilled;      /* seq holds the job's context */
    size_t cached_n;    /* FREE: context tokens kept in seq for reuse (0 = none) */
    uint64_t last_used;
    bee_sampler smp;
    int smp_ok;
    float *logits;      /* (own width) */
    int chunked;        /* PREFILL: a long prompt, prefilled in layer slices outside the batch */
    struct bee_prefill *pf; /* chunked: the prefill in progress (NULL until its first slice) */
    uint64_t admitted;  /* admission order (chunked prefills run oldest first) */
    size_t logits_cap;
} bee_serve_slot;

/* ================================================================ server */

struct bee_server {
    bee_serve_opts o;
    char *host, *model_path, *model_name, *lora_path;
    char **keys;
    size_t n_keys;
    void *daemon;       /* struct MHD_Daemon */
    int port;
    bee_model *model;
    bee_metrics metrics;
    pthread_mutex_t audit_mu; /* the audit handle belongs to one thread at a time */
    pthread_mutex_t search_mu; /* so does the search index */

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* scheduler: new work or a cancellation */
    pthread_cond_t ready_cv; /* loading finished; a job was released (drain) */
    int loaded, load_failed;
    char load_error[512];
    int draining, stopping;
    bee_job **queue;         /* ring of o.queue entries */
    size_t q_head, q_n;
    int n_jobs;              /* live jobs */
    int n_requests;          /* HTTP requests not yet completed */
    uint64_t id_counter, tick;
    size_t chunk;            /* prefill_chunk resolved against the model (0 = never split) */

    bee_serve_slot *slots;         /* (o.parallel) */
    bee_kv_pool kv;                /* the KV blocks of every slot (scheduler thread only) */
    int kv_ok;
    uint32_t kv_max_blocks;        /* the budget in blocks (set before loaded, constant after) */
    pthread_t sched;
    int sched_started;
    /* step scratch (scheduler thread only) */
    size_t scratch_n, scratch_ext, scratch_logits;
    bee_seq **st_seqs;
    const bee_token **st_toks;
    size_t *st_ntok, *st_slot, *st_extoff;
    int32_t *st_ext_ids, *st_ext_subs;
    float *st_logits;
};

double bee_serve_now(void);

/* sched.c */
void *bee_sched_main(void *srv);
/* Tokenizes and checks a parsed request, fills the choices (connection thread). */
int bee_job_prepare(struct bee_server *s, bee_job *j, bee_api_error *e);
/* Queues a prepared job; 503 (Retry-After) when the queue is full or the server is draining. */
int bee_job_submit(struct bee_server *s, bee_job *j, bee_api_error *e);
bee_job *bee_job_new(struct bee_server *s, const char *endpoint);
/* Drops a reference (under srv->mu). */
void bee_job_unref_locked(bee_job *j);
/* Asks the scheduler to stop a job (under srv->mu). */
void bee_job_cancel_locked(bee_job *j);
/* Appends the final stream events (under srv->mu). */
void bee_job_sse_finish_locked(bee_job *j);
/* usage object of a finished job. */
json_t *bee_job_usage(const bee_job *j);

#endif
