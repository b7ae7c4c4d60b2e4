/* See httpclient.h. */
#include "httpclient.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

void resp_free(resp *r) {
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {60, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        p += k, n -= (size_t)k;
    }
}

int send_request(int port, const char *method, const char *path, const char *headers, const char *body,
                        size_t n) {
    int fd = connect_to(port);
    if (fd < 0) return -1;
    char head[2048];
    int h = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n%s", method, path,
                     headers ? headers : "");
    if (body) h += snprintf(head + h, sizeof head - (size_t)h, "Content-Type: application/json\r\nContent-Length: %zu\r\n", n);
    h += snprintf(head + h, sizeof head - (size_t)h, "\r\n");
    send_all(fd, head, (size_t)h);
    if (body) send_all(fd, body, n);
    return fd;
}

static void dechunk(resp *r, const char *p, size_t n) {
    r->body = malloc(n + 1);
    r->n = 0;
    const char *end = p + n;
    while (p < end) {
        char *q;
        unsigned long len = strtoul(p, &q, 16);
        const char *data = strstr(q, "\r\n");
        if (!data || len == 0) break;
        data += 2;
        if (data + len > end) len = (unsigned long)(end - data);
        memcpy(r->body + r->n, data, len);
        r->n += len;
        p = data + len + 2;
    }
    r->body[r->n] = 0;
}

/* Splits a whole response (buf, n bytes; consumed) into status, head and body. */
static int parse_response(char *buf, size_t n, resp *r) {
    buf[n] = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    r->head = strndup(buf, (size_t)(sep - buf));
    const char *b = sep + 4;
    size_t bn = n - (size_t)(b - buf);
    if (strcasestr(r->head, "transfer-encoding: chunked")) {
        dechunk(r, b, bn);
    } else {
        r->body = strndup(b, bn);
        r->n = bn;
    }
    free(buf);
    return 0;
}

int http(int port, const char *method, const char *path, const char *headers, const char *body, resp *r) {
    memset(r, 0, sizeof *r);
    int fd = send_request(port, method, path, headers, body, body ? strlen(body) : 0);
    if (fd < 0) return -1;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = recv(fd, buf + n, cap - n - 1, 0)) > 0) {
        n += (size_t)k;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    return parse_response(buf, n, r);
}

double http_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int http_timed(int port, const char *method, const char *path, const char *headers, const char *body, resp *r,
               double **t, size_t *n_t, const volatile int *stop) {
    memset(r, 0, sizeof *r);
    *t = NULL, *n_t = 0;
    int fd = send_request(port, method, path, headers, body, body ? strlen(body) : 0);
    if (fd < 0) return -1;
    struct timeval tv = {0, 50000}; /* wake up to look at stop */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t cap = 1 << 16, n = 0, seen = 0, tcap = 0;
    char *buf = malloc(cap);
    int stopped = 0;
    double t_last = http_now();
    for (;;) {
        if (stop && *stop) {
            stopped = 1;
            break;
        }
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k == 0) break;
        if (k < 0) {
            if (http_now() - t_last > 60) break; /* as connect_to's 60 s receive timeout */
            continue;
        }
        double now = t_last = http_now();
        n += (size_t)k;
        buf[n] = 0;
        for (char *p; (p = strstr(buf + seen, "data: "));) { /* events completed by this read */
            if (*n_t == tcap) *t = realloc(*t, (tcap = tcap ? 2 * tcap : 64) * sizeof **t);
            (*t)[(*n_t)++] = now;
            seen = (size_t)(p - buf) + 6;
        }
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    int rc = parse_response(buf, n, r);
    return rc ? (stopped ? 1 : -1) : stopped;
}

json_t *json_of(const resp *r) {
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j) fail_msg("status %d, not JSON: %s", r->status, r->body);
    return j;
}

/* POST, expecting `status`; returns the JSON body. */
json_t *post(int port, const char *path, const char *body, int status) {
    resp r;
    if (http(port, "POST", path, NULL, body, &r)) fail_msg("POST %s: no response", path);
    if (r.status != status) fail_msg("POST %s %s: status %d (want %d): %s", path, body, r.status, status, r.body);
    json_t *j = json_of(&r);
    resp_free(&r);
    return j;
}

long long http_metric(int port, const char *headers, const char *name) {
    resp r;
    if (http(port, "GET", "/metrics", headers, NULL, &r)) return -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = r.body ? strstr(r.body, key) : NULL;
    long long v = p ? atoll(p + strlen(key)) : -1;
    resp_free(&r);
    return v;
}

void http_wait_metric(int port, const char *headers, const char *name, long long want) {
    long long v = -1;
    int i = 0;
    for (; i < 1000 && (v = http_metric(port, headers, name)) != want; i++) usleep(10000);
    if (v != want) fail_msg("%s stayed %lld (want %lld) after %d polls", name, v, want, i);
}
