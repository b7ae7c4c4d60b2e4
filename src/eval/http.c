/* A minimal HTTP/1.1 client over POSIX sockets (plain http only) for remote
 * OpenAI-compatible models: one POST per connection, Connection: close. */
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static int dial(const char *host, const char *port, int timeout_ms) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(host, port, &hints, &res), fd = -1;
    if (e) return bee_fail("%s:%s: %s", host, port, gai_strerror(e));
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) return bee_fail("%s:%s: cannot connect", host, port);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return bee_fail("send failed or timed out");
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

int bee_http_post(const char *base_url, const char *path, const char *key, const char *body, int timeout_ms, int *status,
                  char **resp) {
    char host[256], port[16], prefix[1024];
    *resp = NULL;
    *status = 0;
    if (parse_url(base_url, host, sizeof host, port, sizeof port, prefix, sizeof prefix)) return -1;
    int fd = dial(host, port, timeout_ms);
    if (fd < 0) return -1;
    bee_str req = {0}, in = {0};
    int rc = bee_str_printf(&req, "POST %s%s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                                  "Connection: close\r\n%s%s%s\r\n",
                            prefix, path, host, port, strlen(body), key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "");
    if (rc == 0) rc = bee_str_appendz(&req, body);
    if (rc == 0) rc = send_all(fd, req.s, req.n);
    char buf[16384];
    for (ssize_t k; rc == 0 && (k = recv(fd, buf, sizeof buf, 0)) != 0;) {
        if (k < 0) rc = bee_fail("%s%s: no response (timed out)", base_url, path);
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

int bee_remote_complete(const bee_remote *r, const char *prompt, int max_tokens, char **out) {
    *out = NULL;
    const char *key = r->key_env ? getenv(r->key_env) : NULL;
    if (r->key_env && !key) return bee_fail("remote model '%s': environment variable %s is not set", r->model, r->key_env);
    json_t *req = json_pack("{s:s,s:s,s:i,s:f}", "model", r->model, "prompt", prompt, "max_tokens", max_tokens, "temperature", 0.0);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, *resp = NULL;
    json_decref(req);
    if (!body) return bee_fail("out of memory");
    int status, rc = bee_http_post(r->base_url, "/v1/completions", key, body, r->timeout_ms, &status, &resp);
    free(body);
    json_t *j = rc == 0 ? json_loads(resp, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    if (rc == 0 && (status != 200 || !text))
        rc = bee_fail("%s/v1/completions: HTTP %d: %.200s", r->base_url, status, resp ? resp : "");
    if (rc == 0 && !(*out = strdup(text))) rc = bee_fail("out of memory");
    json_decref(j);
    free(resp);
    return rc;
}
