/* Request bodies of the HTTP API: JSON in the OpenAI wire format (and the
 * CPM-Bee dict endpoint) parsed into generation parameters. Pure functions of
 * the body text, so the fuzzer can drive them without a model or a socket. */
#ifndef BEE_SERVE_REQUEST_H
#define BEE_SERVE_REQUEST_H

#include <jansson.h>
#include <stddef.h>

#include "generate/generate.h"

typedef enum {
    BEE_API_COMPLETION, /* POST /v1/completions */
    BEE_API_CHAT,       /* POST /v1/chat/completions */
    BEE_API_CPMBEE,     /* POST /v1/cpmbee */
    BEE_API_TOKENIZE,   /* POST /tokenize */
    BEE_API_SEARCH,     /* POST /v1/search: {"query", "k"} */
    BEE_API_ASK,        /* POST /v1/ask: {"question", "k"} + the /v1/cpmbee decoding fields */
} bee_api_kind;

#define BEE_API_MAX_N 16     /* choices per request */
#define BEE_API_MAX_STOP 8   /* stop strings per request */
#define BEE_API_MAX_LOGPROBS 5
#define BEE_API_MAX_K 100        /* passages per /v1/search or /v1/ask */
#define BEE_API_MAX_QUERY 4096   /* bytes of a query or question */

/* An error reply in the OpenAI shape {"error":{"message","type","param","code"}}. */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", ... */
    char param[64];   /* offending field, "" when none */
    char message[512];
} bee_api_error;

typedef struct {
    bee_api_kind kind;
    json_t *data;      /* model input as a CPM-Bee dict (owned); NULL for raw tokenize */
    char *content;     /* tokenize: raw text to tokenize like `bee tokenize`; search: the query; ask: the question (owned), else NULL */
    int k;             /* search, ask: passages (default 5) */
    int stream;
    int stream_usage;  /* "stream_options": {"include_usage": true}: a last chunk with usage and no choices */
    int n;             /* choices */
    int max_tokens;    /* generated-token limit per choice */
    int max_tokens_set;/* given explicitly (else clamped to the context) */
    int logprobs;      /* top alternatives per token (completions "logprobs", chat "top_logprobs"); -1 = off */
    int beam;          /* cpmbee: beam size; 0 = sampling */
    int seed_set;
    bee_sample_params sp; /* stop points into stops */
    char **stops;      /* stop strings in the tokenizer's escaped form (NULL-terminated, owned) */
    /* completions "echo": true with "max_tokens": 0 scores the prompt instead
     * of generating (docs/SERVING.md): */
    int echo;
    char *echo_text;   /* the prompt as sent (owned) */
    char *context;     /* bee extension "bee_context": the input the prompt is scored after (owned, or NULL) */
    int window;        /* bee extension "bee_window": rolling window in answer tokens (0 = the server's context) */
} bee_api_req;

/* Parses a request body. On failure fills *err (status 400) and returns -1. */
int bee_api_parse(bee_api_kind kind, const char *body, size_t len, bee_api_req *r, bee_api_error *err);
void bee_api_req_free(bee_api_req *r);

/* Fills an error; returns -1. */
int bee_api_error_set(bee_api_error *e, int status, const char *type, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
/* {"error":{...}} as compact JSON (malloc'd; NULL when out of memory). */
char *bee_api_error_json(const bee_api_error *e);

/* "<<" → "<" for output text, across pieces: a trailing lone '<' is held in
 * *held until the next piece shows whether it was doubled. */
typedef struct {
    int held;
} bee_unescape;
int bee_unescape_feed(bee_unescape *u, const char *s, size_t n, int final, bee_str *out);

#endif
