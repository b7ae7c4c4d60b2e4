/* A small raw-socket HTTP/1.1 client for the server tests (loopback only):
 * one request per connection, chunked bodies de-chunked. */
#ifndef BEE_TESTS_HTTPCLIENT_H
#define BEE_TESTS_HTTPCLIENT_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
    int status;
    char *head; /* status line and headers */
    char *body; /* de-chunked */
    size_t n;
} resp;

void resp_free(resp *r);
int connect_to(int port);
void send_all(int fd, const char *p, size_t n);
/* Sends a request on a new connection and returns its socket (-1 on failure). */
int send_request(int port, const char *method, const char *path, const char *headers, const char *body, size_t n);
/* A whole exchange; 0 on success (r filled), -1 when there was no valid response. */
int http(int port, const char *method, const char *path, const char *headers, const char *body, resp *r);
/* As http(), also timing the stream: t[k] (malloc'd, CLOCK_MONOTONIC
 * seconds) is when the k-th "data: " event of the body arrived. When stop
 * is given and becomes nonzero, the connection is closed early (a client
 * that goes away) and the function returns 1 with r filled as far as read. */
int http_timed(int port, const char *method, const char *path, const char *headers, const char *body, resp *r,
               double **t, size_t *n_t, const volatile int *stop);
/* CLOCK_MONOTONIC in seconds. */
double http_now(void);
/* The body as JSON (fails the test otherwise). */
json_t *json_of(const resp *r);
/* POST, expecting `status`; returns the JSON body. */
json_t *post(int port, const char *path, const char *body, int status);
/* The value of an unlabelled /metrics line `name` (-1 when absent or on no
 * response); headers as for http() (an API key), or NULL. */
long long http_metric(int port, const char *headers, const char *name);
/* Polls http_metric every 10 ms, up to 10 s, until it equals want; fails the
 * test naming the metric otherwise. */
void http_wait_metric(int port, const char *headers, const char *name, long long want);

#endif
