/* A minimal HTTP/1.1 client over POSIX sockets (plain http only) for remote
 * OpenAI-compatible models: one POST per connection, Connection: close;
 * remote requests are retried with exponential backoff. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eval/eval.h"
#include "util/buf.h"
#include "util/error.h"

#define HTTP_MAX_RESPONSE (64u << 20)

/* Splits "http://host[:port][/prefix]". */
static int parse_url(const char *url, char *host, size_t hn, char *port, size_t pn, char *prefix, size_t xn) {
    if (strncmp(url, "http://", 7)) return bee_fail("base_url '%s': only http:// is supported", url);
    const char *h = url + 7, *slash = strchr(h, '/'), *end = slash ? slash : h + strlen(h), *colon = memchr(h, ':', (size_t)(end - h));
    if (end == h || (colon && colon + 1 == end)) return bee_fail("base_url '%s': no host", url);
    snprintf(host, hn, "%.*s", (int)((colon ? colon : end) - h), h);
    snprintf(port, pn, "%.*s", colon ? (int)(end - colon - 1) : 2, colon ? colon + 1 : "80");
    snprintf(prefix, xn, "%s", slash ? slash : "");
    size_t n = strlen(prefix);
    if (n && prefix[n - 1] == '/') prefix[n - 1] = 0;
    return 0;
}

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Milliseconds left before the deadline (at least 0). */
static int left_ms(double deadline) {
    double l = deadline - mono_ms();
    return l <= 0 ? 0 : l > 2e9 ? 2000000000 : (int)l;
}

/* Non-blocking connect bounded by the deadline, then back to blocking. */
static int connect_by(int fd, const struct sockaddr *sa, socklen_t sl, double deadline) {
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK)) return -1;
    int e = connect(fd, sa, sl) ? errno : 0;
    if (e == EINPROGRESS) {
        struct pollfd p = {fd, POLLOUT, 0};
        int k;
        while ((k = poll(&p, 1, left_ms(deadline))) < 0 && errno == EINTR) {}
        socklen_t el = sizeof e;
        if (k <= 0) e = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el)) e = errno;
    }
    if (!e && fcntl(fd, F_SETFL, fl)) e = errno;
    errno = e;
    return e ? -1 : 0;
}

static int dial(const char *host, const char *port, double deadline) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(host, port, &hints, &res), fd = -1, why = 0;
    if (e) return bee_fail("%s:%s: %s", host, port, gai_strerror(e));
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect_by(fd, a->ai_addr, a->ai_addrlen, deadline)) {
            why = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return bee_fail("%s:%s: cannot connect (%s)", host, port, why == ETIMEDOUT ? "timed out" : strerror(why));
    return fd;
}

static int send_all(int fd, const char *p, size_t n, double deadline) {
    while (n) {
        struct pollfd pf = {fd, POLLOUT, 0};
        int w = poll(&pf, 1, left_ms(deadline));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return bee_fail("send timed out");
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return bee_fail("send failed");
        p += k, n -= (size_t)k;
    }
    return 0;
}

/* Decodes a chunked body in place; returns its length or -1. */
static long dechunk(char *b, size_t n) {
    size_t r = 0, w = 0;
    for (;;) {
        char *end;
        unsigned long sz = strtoul(b + r, &end, 16);
        char *crlf = strstr(end, "\r\n");
        if (end == b + r || !crlf || (size_t)(crlf + 2 - b) > n) return -1;
        r = (size_t)(crlf + 2 - b);
        if (sz == 0) return (long)w;
        if (sz > n - r) return -1;
        memmove(b + w, b + r, sz);
        w += sz, r += sz + 2;
        if (r > n) return -1;
    }
}

/* One POST within timeout_ms for connect + send + the whole response.
 * *retry_after: the Retry-After header in seconds, or -1. */
static int http_post(const char *base_url, const char *path, const char *key, const char *body, int timeout_ms, int *status,
                     char **resp, double *retry_after) {
    char host[256], port[16], prefix[1024];
    *resp = NULL;
    *status = 0;
    *retry_after = -1;
    if (parse_url(base_url, host, sizeof host, port, sizeof port, prefix, sizeof prefix)) return -1;
    double deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : 600000);
    int fd = dial(host, port, deadline);
    if (fd < 0) return -1;
    bee_str req = {0}, in = {0};
    int rc = bee_str_printf(&req, "POST %s%s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                                  "Connection: close\r\n%s%s%s\r\n",
                            prefix, path, host, port, strlen(body), key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
    if (rc == 0) rc = bee_str_appendz(&req, body);
    if (rc == 0) rc = send_all(fd, req.s, req.n, deadline);
    char buf[16384];
    while (rc == 0) {
        struct pollfd pf = {fd, POLLIN, 0};
        int w = poll(&pf, 1, left_ms(deadline));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = bee_fail("%s%s: no response within %d s (timed out)", base_url, path, timeout_ms / 1000);
            break;
        }
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k == 0) break;
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) rc = bee_fail("%s%s: connection error (%s)", base_url, path, strerror(errno));
        else if (in.n + (size_t)k > HTTP_MAX_RESPONSE) rc = bee_fail("%s%s: response too large", base_url, path);
        else rc = bee_str_append(&in, buf, (size_t)k);
    }
    close(fd);
    bee_str_free(&req);
    char *hdr_end = rc == 0 && in.s ? strstr(in.s, "\r\n\r\n") : NULL;
    if (rc == 0 && (!hdr_end || sscanf(in.s, "HTTP/1.%*d %d", status) != 1)) rc = bee_fail("%s%s: not an HTTP response", base_url, path);
    if (rc == 0) {
        size_t hl = (size_t)(hdr_end + 4 - in.s), bl = in.n - hl;
        *hdr_end = 0;
        int chunked = strcasestr(in.s, "transfer-encoding: chunked") != NULL;
        const char *ra = strcasestr(in.s, "\r\nretry-after:");
        if (ra) { /* seconds; an HTTP date is not understood and leaves the backoff as is */
            char *end;
            double v = strtod(ra + 14, &end);
            if (end != ra + 14 && v >= 0 && (*end == '\r' || *end == 0 || *end == ' ')) *retry_after = v;
        }
        memmove(in.s, in.s + hl, bl);
        in.s[bl] = 0;
        long dl = chunked ? dechunk(in.s, bl) : (long)bl;
        if (dl < 0) rc = bee_fail("%s%s: bad chunked body", base_url, path);
        else in.s[dl] = 0;
    }
    if (rc == 0) *resp = bee_str_take(&in);
    bee_str_free(&in);
    return rc;
}

int bee_http_post(const char *base_url, const char *path, const char *key, const char *body, int timeout_ms, int *status,
                  char **resp) {
    double ra;
    return http_post(base_url, path, key, body, timeout_ms, status, resp, &ra);
}

int bee_http_retryable(int status) {
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

double bee_http_backoff_s(int attempt, double retry_after) {
    double d = retry_after >= 0 ? retry_after : 0.25 * ldexp(1.0, attempt < 30 ? attempt : 30);
    return d > BEE_HTTP_BACKOFF_MAX_S ? BEE_HTTP_BACKOFF_MAX_S : d;
}

/* POST to the model's /v1/completions with retries: a failed connect or
 * send, a timeout, a connection that breaks before a whole HTTP reply, or
 * HTTP 429/500/502/503/504 is tried again up to
 * r->retries times after bee_http_backoff_s. Returns 0 with the last
 * *status and body (any status), or -1 when the last try got no response
 * (the error names the model, the URL and the attempts). */
static int remote_post(const bee_remote *r, const char *key, const char *body, int *status, char **resp) {
    int retries = r->retries < 0 ? 0 : r->retries;
    char host[256], port[16], prefix[1024];
    if (parse_url(r->base_url, host, sizeof host, port, sizeof port, prefix, sizeof prefix)) /* not worth retrying */
        return bee_fail_prefix("remote model '%s': ", r->model);
    for (int attempt = 0;; attempt++) {
        double ra = -1;
        int rc = http_post(r->base_url, "/v1/completions", key, body, r->timeout_ms, status, resp, &ra);
        if (rc == 0 && !bee_http_retryable(*status)) return 0;
        if (attempt >= retries) {
            if (rc) return bee_fail_prefix("remote model '%s' (%s/v1/completions, %d tr%s): ", r->model, r->base_url, attempt + 1,
                                           attempt ? "ies" : "y");
            return 0;
        }
        if (rc == 0) free(*resp), *resp = NULL;
        double d = bee_http_backoff_s(attempt, ra);
        struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR) {}
    }
}

/* The error of a request that got an unusable answer: the model, the URL, the status. */
static int remote_error(const bee_remote *r, const char *what, int status, const char *raw) {
    return bee_fail("remote model '%s': %s/v1/completions%s: HTTP %d%s: %.200s", r->model, r->base_url, what, status,
                    bee_http_retryable(status) && r->retries > 0 ? " (retries exhausted)" : "", raw ? raw : "");
}

int bee_remote_complete(const bee_remote *r, const char *prompt, int max_tokens, char **out) {
    *out = NULL;
    const char *key = r->key_env ? getenv(r->key_env) : NULL;
    if (r->key_env && !key) return bee_fail("remote model '%s': environment variable %s is not set", r->model, r->key_env);
    json_t *req = json_pack("{s:s,s:s,s:i,s:f}", "model", r->model, "prompt", prompt, "max_tokens", max_tokens, "temperature", 0.0);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, *resp = NULL;
    json_decref(req);
    if (!body) return bee_fail("out of memory");
    int status, rc = remote_post(r, key, body, &status, &resp);
    free(body);
    json_t *j = rc == 0 ? json_loads(resp, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    if (rc == 0 && (status != 200 || !text))
        rc = remote_error(r, "", status, resp);
    if (rc == 0 && !(*out = strdup(text))) rc = bee_fail("out of memory");
    json_decref(j);
    free(resp);
    return rc;
}

/* One echo request: *status and the parsed reply (NULL unless HTTP 200 JSON). */
static int echo_post(const bee_remote *r, const char *key, const char *prompt, const char *context, int window, int *status,
                     json_t **reply, char **raw) {
    json_t *req = json_pack("{s:s,s:s,s:b,s:i,s:i,s:f}", "model", r->model, "prompt", prompt, "echo", 1, "logprobs", 1,
                            "max_tokens", 0, "temperature", 0.0);
    if (req && context) json_object_set_new(req, "bee_context", json_string(context));
    if (req && window > 0) json_object_set_new(req, "bee_window", json_integer(window));
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    *reply = NULL;
    *raw = NULL;
    if (!body) return bee_fail("out of memory");
    int rc = remote_post(r, key, body, status, raw);
    free(body);
    if (rc == 0 && *status == 200) *reply = json_loads(*raw, 0, NULL);
    return rc;
}

static size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Sums the token log-probs of choices[0] (nulls skipped) from the first token
 * that starts at or after byte `from` of the echoed prompt. Token starts come
 * from the token texts when they concatenate to the prompt, else from
 * text_offset read as characters (the OpenAI convention). */
static int sum_logprobs(json_t *reply, const char *prompt, size_t from, double *ll, size_t *n) {
    json_t *lp = json_object_get(json_array_get(json_object_get(reply, "choices"), 0), "logprobs");
    json_t *v = json_object_get(lp, "token_logprobs"), *off = json_object_get(lp, "text_offset"), *toks = json_object_get(lp, "tokens");
    size_t nt = json_array_size(v), pos = 0, plen = strlen(prompt);
    if (!json_is_array(v)) return -1;
    int by_text = json_array_size(toks) == nt;
    for (size_t i = 0; by_text && i < nt; i++) {
        const char *t = json_string_value(json_array_get(toks, i));
        size_t tl = t ? strlen(t) : 0;
        by_text = t && pos + tl <= plen && !memcmp(prompt + pos, t, tl);
        pos += tl;
    }
    by_text = by_text && pos == plen;
    if (from && !by_text && json_array_size(off) != nt) return -1;
    size_t from_chars = utf8_count(prompt, from);
    *ll = 0, *n = 0, pos = 0;
    for (size_t i = 0; i < nt; i++) {
        json_t *x = json_array_get(v, i);
        size_t start = pos;
        if (by_text) pos += strlen(json_string_value(json_array_get(toks, i)));
        if (from && (by_text ? start < from : json_integer_value(json_array_get(off, i)) < (json_int_t)from_chars)) continue;
        if (json_is_null(x)) continue;
        if (!json_is_number(x)) return -1;
        *ll += json_number_value(x), (*n)++;
    }
    return 0;
}

int bee_remote_loglik(const bee_remote *r, bee_remote_scoring *mode, const char *context, const char *text, int window,
                      double *ll, size_t *n_tok, char **why) {
    *ll = 0, *n_tok = 0;
    if (*mode == BEE_SCORE_NONE) return 1;
    const char *key = r->key_env ? getenv(r->key_env) : NULL;
    if (r->key_env && !key) return bee_fail("remote model '%s': environment variable %s is not set", r->model, r->key_env);
    int status = 0, rc = 0;
    json_t *reply = NULL;
    char *raw = NULL;
    if (*mode == BEE_SCORE_UNKNOWN || *mode == BEE_SCORE_BEE) {
        rc = echo_post(r, key, text, context, window, &status, &reply, &raw);
        json_t *be = json_object_get(reply, "bee_echo");
        if (rc == 0 && status == 200 && json_is_object(be) && json_is_true(json_object_get(be, "context")) == (context != NULL) &&
            sum_logprobs(reply, text, 0, ll, n_tok) == 0) {
            if (*mode != BEE_SCORE_BEE) *mode = BEE_SCORE_BEE; /* found once; later (concurrent) calls only read it */
        } else if (rc == 0 && *mode == BEE_SCORE_BEE) {
            rc = remote_error(r, " (echo)", status, raw);
        } else if (rc == 0 && status == 200 && sum_logprobs(reply, text, 0, ll, n_tok) == 0) {
            *mode = BEE_SCORE_OPENAI; /* echo works, the bee fields were ignored: score context + text as one prompt */
        } else if (rc == 0 && (status == 200 || (status >= 400 && status < 500 && status != 401 && status != 403 && status != 429) ||
                               status == 501)) {
            *mode = BEE_SCORE_NONE; /* the server does not score prompts */
            if (why) {
                char b[400];
                snprintf(b, sizeof b, "HTTP %d: %.300s", status, raw ? raw : "");
                *why = strdup(b);
            }
            rc = 1;
        } else if (rc == 0) {
            rc = remote_error(r, " (echo)", status, raw);
        }
        json_decref(reply), free(raw);
        reply = NULL, raw = NULL;
        if (rc || *mode == BEE_SCORE_BEE) return rc;
    }
    /* generic OpenAI echo: the option's tokens are those at or after the context's length */
    size_t from = context ? strlen(context) : 0;
    char *joined = malloc(from + strlen(text) + 1);
    if (!joined) return bee_fail("out of memory");
    snprintf(joined, from + strlen(text) + 1, "%s%s", context ? context : "", text);
    rc = echo_post(r, key, joined, NULL, 0, &status, &reply, &raw);
    if (rc == 0 && (status != 200 || sum_logprobs(reply, joined, from, ll, n_tok)))
        rc = remote_error(r, " (echo)", status, raw);
    free(joined);
    json_decref(reply), free(raw);
    return rc;
}
