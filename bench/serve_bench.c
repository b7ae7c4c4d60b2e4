/* serve_bench: load generator for `bee serve`. C client threads each send
 * R streamed /v1/completions requests back to back and timestamp every SSE
 * event; reports aggregate decode tokens/s and p50/p99 time to first token
 * and inter-token latency.
 *
 * With `long`, one stream runs while a long prompt (WORDS repetitions of a
 * 10-word sentence, max_tokens 1, not streamed) arrives: reports the
 * stream's inter-token gaps while the long request was in flight (p50, p99,
 * max) and the long request's latency. That is what layer-chunked prefill
 * (--prefill-chunk) bounds.
 *
 * usage: serve_bench PORT CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [PROMPT]
 *        serve_bench PORT long WORDS MAX_TOKENS */
#include <stdatomic.h>
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
    series ttft, itl, ev; /* ev: arrival time of every token event */
    long tokens, failures;
    atomic_long n_events;
    atomic_int stop; /* long mode: the stream's client goes away */
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
                      "{\"prompt\":\"%s %d\",\"max_tokens\":%d,\"temperature\":0,\"stream\":true,\"ignore_eos\":true,"
                      "\"stream_options\":{\"include_usage\":true}}", /* the usage event counts the tokens */
                      c->prompt, c->id, c->max_tokens);
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
    while (!atomic_load(&c->stop) && (k = recv(fd, buf + n, cap - n - 1, 0)) > 0) {
        double t = now();
        n += (size_t)k;
        buf[n] = 0;
        /* each new text event is one token (stop strings are not used here) */
        char *p = buf + scanned;
        size_t end = 0;
        while ((p = strstr(p, "\"finish_reason\":null"))) {
            if (events++ == 0) series_push(&c->ttft, t - t0);
            else series_push(&c->itl, t - prev);
            series_push(&c->ev, t);
            atomic_fetch_add(&c->n_events, 1);
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

/* Sends body and reads the whole response; 0 on a 200. */
static int blocking_post(int port, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    char head[512];
    size_t bn = strlen(body);
    int hn = snprintf(head, sizeof head,
                      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      bn);
    if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn || send(fd, body, bn, MSG_NOSIGNAL) != (ssize_t)bn) {
        close(fd);
        return -1;
    }
    char buf[4096];
    ssize_t k, n = 0;
    int ok = 0;
    while ((k = recv(fd, buf, sizeof buf - 1, 0)) > 0) {
        if (n == 0) {
            buf[k] = 0;
            ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
        }
        n += k;
    }
    close(fd);
    return ok ? 0 : -1;
}

static int long_prompt_run(int port, int words, int max_tokens) {
    client a = {port, 1, max_tokens, 0, "a running stream", {0}, {0}, {0}, 0, 0, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, run_client, &a);
    while (atomic_load(&a.n_events) < 20) usleep(1000);
    const char *sentence = "the quick brown fox jumps over the lazy dog . ";
    size_t cap = strlen(sentence) * (size_t)words + 256, n = 0;
    char *body = malloc(cap);
    /* a new first word each run: a kept context of an earlier run is never reused */
    n += (size_t)snprintf(body, cap, "{\"prompt\":\"%lx ", (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16));
    for (int i = 0; i < words; i++) n += (size_t)snprintf(body + n, cap - n, "%s", sentence);
    snprintf(body + n, cap - n, "\",\"max_tokens\":1,\"temperature\":0}");
    double t0 = now();
    int rc = blocking_post(port, body);
    double t1 = now();
    long n_end = atomic_load(&a.n_events);
    while (atomic_load(&a.n_events) < n_end + 5) usleep(1000); /* the gap spanning the end */
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    free(body);
    /* gaps ending while the long request was in flight (and the one spanning its end) */
    series gaps = {0};
    for (size_t k = 1; k < a.ev.n; k++)
        if (a.ev.v[k] > t0 && a.ev.v[k - 1] < t1) series_push(&gaps, a.ev.v[k] - a.ev.v[k - 1]);
    double mx = 0;
    for (size_t k = 0; k < gaps.n; k++) mx = gaps.v[k] > mx ? gaps.v[k] : mx;
    printf("long_prompt_words=%d long_latency_ms=%.0f long_ok=%d stream_tokens_during=%zu "
           "stream_gap_p50_ms=%.1f stream_gap_p99_ms=%.1f stream_gap_max_ms=%.1f stream_itl_p99_ms_all=%.1f failures=%ld\n",
           words, 1e3 * (t1 - t0), rc == 0, gaps.n, 1e3 * pct(&gaps, 0.5), 1e3 * pct(&gaps, 0.99), 1e3 * mx,
           1e3 * pct(&a.itl, 0.99), a.failures - 1 /* the stream stopped early */);
    free(gaps.v), free(a.ttft.v), free(a.itl.v), free(a.ev.v);
    return rc || a.failures != 1 ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[2], "long") == 0) return long_prompt_run(atoi(argv[1]), atoi(argv[3]), atoi(argv[4]));
    if (argc < 5) {
        fprintf(stderr, "usage: serve_bench PORT CLIENTS REQUESTS_PER_CLIENT MAX_TOKENS [PROMPT]\n"
                        "       serve_bench PORT long WORDS MAX_TOKENS\n");
        return 2;
    }
    int port = atoi(argv[1]), nc = atoi(argv[2]), nr = atoi(argv[3]), mt = atoi(argv[4]);
    const char *prompt = argc > 5 ? argv[5] : "benchmark prompt";
    if (nc < 1 || nr < 1 || mt < 1) return 2;
    client *cs = calloc((size_t)nc, sizeof *cs);
    pthread_t *th = calloc((size_t)nc, sizeof *th);
    double t0 = now();
    for (int i = 0; i < nc; i++) {
        cs[i] = (client){port, nr, mt, i, prompt, {0}, {0}, {0}, 0, 0, 0, 0};
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
        free(cs[i].ttft.v), free(cs[i].itl.v), free(cs[i].ev.v);
    }
    printf("clients=%d requests=%d tokens=%ld failures=%ld wall_s=%.2f tok_per_s=%.1f "
           "ttft_p50_ms=%.1f ttft_p99_ms=%.1f itl_p50_ms=%.1f itl_p99_ms=%.1f\n",
           nc, nc * nr, tokens, fails, wall, (double)tokens / wall, 1e3 * pct(&ttft, 0.5), 1e3 * pct(&ttft, 0.99),
           1e3 * pct(&itl, 0.5), 1e3 * pct(&itl, 0.99));
    free(ttft.v), free(itl.v), free(cs), free(th);
    return fails ? 1 : 0;
}
