/* serve_bench: load generator for `bee serve`. C client threads each send
 * R streamed /v1/completions requests back to back and timestamp every SSE
 * event; reports aggregate decode tokens/s and p50/p99 time to first token
 * and inter-token latency.
 *
 * usage: serve_bench PORT CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [PROMPT] */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    double *v;
    size_t n, cap;
} series;

static void series_push(series *s, double x) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = x;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    int port, requests, max_tokens, id;
    const char *prompt;
    series ttft, itl;
    long tokens, failures;
} client;

/* Completion tokens from the usage event, or -1. */
static long usage_tokens(const char *buf) {
    const char *u = strstr(buf, "\"completion_tokens\":");
    return u ? atol(u + 20) : -1;
}

static int one_request(client *c) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)c->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char body[1024], req[2048];
    int bn = snprintf(body, sizeof body,
                      "{\"prompt\":\"%s %d\",\"max_tokens\":%d,\"temperature\":0,\"stream\":true,\"ignore_eos\":true}", c->prompt, c->id,
                      c->max_tokens);
    int rn = snprintf(req, sizeof req,
                      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      bn, body);
    double t0 = now(), prev = 0;
    if (send(fd, req, (size_t)rn, MSG_NOSIGNAL) != rn) {
        close(fd);
        return -1;
    }
    size_t cap = 1 << 16, n = 0, scanned = 0;
    char *buf = malloc(cap);
    ssize_t k;
    int events = 0;
    while ((k = recv(fd, buf + n, cap - n - 1, 0)) > 0) {
        double t = now();
        n += (size_t)k;
        buf[n] = 0;
        /* each new text event is one token (stop strings are not used here) */
        char *p = buf + scanned;
        size_t end = 0;
        while ((p = strstr(p, "\"finish_reason\":null"))) {
            if (events++ == 0) series_push(&c->ttft, t - t0);
            else series_push(&c->itl, t - prev);
            prev = t;
            p += 20;
            end = (size_t)(p - buf);
        }
        scanned = n > 19 ? n - 19 : 0; /* a match may straddle two reads */
        if (end > scanned) scanned = end;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    long toks = usage_tokens(buf);
    int ok = strstr(buf, "data: [DONE]") != NULL && toks >= 0;
    free(buf);
    if (!ok) return -1;
    c->tokens += toks;
    return 0;
}

static void *run_client(void *arg) {
    client *c = arg;
    for (int r = 0; r < c->requests; r++)
        if (one_request(c)) c->failures++;
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(series *s, double p) {
    if (!s->n) return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp);
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: serve_bench PORT CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [PROMPT]\n");
        return 2;
    }
    int port = atoi(argv[1]), nc = atoi(argv[2]), nr = atoi(argv[3]), mt = atoi(argv[4]);
    const char *prompt = argc > 5 ? argv[5] : "benchmark prompt";
    if (nc < 1 || nr < 1 || mt < 1) return 2;
    client *cs = calloc((size_t)nc, sizeof *cs);
    pthread_t *th = calloc((size_t)nc, sizeof *th);
    double t0 = now();
    for (int i = 0; i < nc; i++) {
        cs[i] = (client){port, nr, mt, i, prompt, {0}, {0}, 0, 0};
        pthread_create(&th[i], NULL, run_client, &cs[i]);
    }
    for (int i = 0; i < nc; i++) pthread_join(th[i], NULL);
    double wall = now() - t0;
    series ttft = {0}, itl = {0};
    long tokens = 0, fails = 0;
    for (int i = 0; i < nc; i++) {
        for (size_t k = 0; k < cs[i].ttft.n; k++) series_push(&ttft, cs[i].ttft.v[k]);
        for (size_t k = 0; k < cs[i].itl.n; k++) series_push(&itl, cs[i].itl.v[k]);
        tokens += cs[i].tokens, fails += cs[i].failures;
        free(cs[i].ttft.v), free(cs[i].itl.v);
    }
    printf("clients=%d requests=%d tokens=%ld failures=%ld wall_s=%.2f tok_per_s=%.1f "
           "ttft_p50_ms=%.1f ttft_p99_ms=%.1f itl_p50_ms=%.1f itl_p99_ms=%.1f\n",
           nc, nc * nr, tokens, fails, wall, (double)tokens / wall, 1e3 * pct(&ttft, 0.5), 1e3 * pct(&ttft, 0.99),
           1e3 * pct(&itl, 0.5), 1e3 * pct(&itl, 0.99));
    free(ttft.v), free(itl.v), free(cs), free(th);
    return fails ? 1 : 0;
}
