/* A bounded loopback load test of `bee serve` as a process: 64 concurrent
 * clients, 4 requests each, against --parallel 2 --queue 4 on a `bee init`
 * model. The mix: completions (plain and streamed), chat, tokenize, health,
 * malformed JSON, bodies over --max-body, bad fields, and streams the client
 * drops after the first event. A client that gets a 503 retries after a
 * short random pause (for up to 10 s per request). Checks: no 5xx but the
 * deliberate 503 of a full queue (with Retry-After); every valid request
 * answered 200 or 503, with a well-formed body, and of each kind some 200;
 * every invalid one its 4xx; /metrics counts
 * exactly what the clients saw; the server is healthy and idle afterwards;
 * SIGTERM makes it exit 0. Prints requests/s, latency p50/p99 and the
 * status counts. Skips (77) without libmicrohttpd. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "httpclient.h"
#include "serve/serve.h"
#include "testutil.h"

enum { N_CLIENTS = 64, N_PER_CLIENT = 4, MAX_BODY = 4096 };

enum {
    K_COMPLETION,  /* valid, not streamed */
    K_STREAM,      /* valid, streamed */
    K_CHAT,        /* valid chat */
    K_TOKENIZE,    /* valid, never queued */
    K_HEALTH,      /* GET /health */
    K_MALFORMED,   /* not JSON: 400 */
    K_OVERSIZED,   /* over --max-body: 413 */
    K_BAD_FIELD,   /* valid JSON, invalid field: 400 */
    K_DISCONNECT,  /* streamed, dropped after the first event */
    N_KINDS
};

static const char *k_kind_name[N_KINDS] = {"completion", "stream", "chat", "tokenize", "health",
                                           "malformed", "oversized", "bad-field", "disconnect"};

/* ================================================================ tallies */

#define MAX_KEYS 32

typedef struct {
    char endpoint[32];
    int status;
    long n;
} tally;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static tally g_tally[MAX_KEYS];
static int g_n_tally;
static double g_lat[N_CLIENTS * N_PER_CLIENT]; /* answered (200) generation requests: their last attempt */
static int g_n_lat;
static long g_by_kind[N_KINDS][3]; /* 200 (or the expected 4xx), 503, other; 503s per attempt */
static long g_gave_up;             /* valid requests still refused after 10 s of retries */
static char g_problem[1024];

static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...) {
    pthread_mutex_lock(&g_mu);
    if (!g_problem[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_problem, sizeof g_problem, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_mu);
}

static void count(const char *endpoint, int status, int kind, int outcome, double latency) {
    pthread_mutex_lock(&g_mu);
    int i = 0;
    while (i < g_n_tally && !(g_tally[i].status == status && strcmp(g_tally[i].endpoint, endpoint) == 0)) i++;
    if (i == g_n_tally && g_n_tally < MAX_KEYS) {
        snprintf(g_tally[i].endpoint, sizeof g_tally[i].endpoint, "%s", endpoint);
        g_tally[i].status = status;
        g_n_tally++;
    }
    if (i < MAX_KEYS) g_tally[i].n++;
    g_by_kind[kind][outcome]++;
    int gen = kind == K_COMPLETION || kind == K_STREAM || kind == K_CHAT;
    if (gen && outcome == 0 && latency >= 0 && g_n_lat < N_CLIENTS * N_PER_CLIENT) g_lat[g_n_lat++] = latency;
    pthread_mutex_unlock(&g_mu);
}

/* ================================================================ one request */

static int g_port;

static char *oversized_body(void) {
    size_t n = 4 * MAX_BODY;
    char *b = malloc(n + 64);
    int k = snprintf(b, n + 64, "{\"prompt\":\"");
    memset(b + k, 'a', n);
    snprintf(b + k + n, 64, "\",\"max_tokens\":1}");
    return b;
}

/* A 503 must say when to come back, and carry a JSON error. */
static void check_503(const resp *r, const char *what) {
    if (!strcasestr(r->head, "Retry-After:")) problem("%s: 503 without Retry-After", what);
    if (!strstr(r->body, "\"error\"")) problem("%s: 503 without an error body: %s", what, r->body);
}

/* A streamed 200: events, then [DONE], no error event. */
static void check_sse(const resp *r, const char *what) {
    if (!strstr(r->body, "data: ") || !strstr(r->body, "data: [DONE]")) problem("%s: stream without [DONE]: %.200s", what, r->body);
    if (strstr(r->body, "data: {\"error\"")) problem("%s: error event: %.300s", what, r->body);
}

static void check_json_200(const resp *r, int kind, const char *what) {
    json_error_t e;
    json_t *j = json_loads(r->body, 0, &e);
    if (!j) {
        problem("%s: 200 with a body that is not JSON: %.200s", what, r->body);
        return;
    }
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    int ok = kind == K_COMPLETION   ? json_is_string(json_object_get(ch, "text"))
             : kind == K_CHAT       ? json_is_string(json_object_get(json_object_get(ch, "message"), "content"))
             : kind == K_TOKENIZE   ? json_integer_value(json_object_get(j, "count")) > 0
             : kind == K_HEALTH     ? json_is_string(json_object_get(j, "status"))
                                    : 1;
    if (!ok) problem("%s: unexpected 200 body: %.200s", what, r->body);
    json_decref(j);
}

/* Before retrying a 503: 100-300 ms (Retry-After says 1 s; shorter keeps the test short and the queue full). */
static void backoff(unsigned *seed) { usleep(100000 + (useconds_t)(rand_r(seed) % 200000)); }

/* A stream the client drops after its first event (retried on 503). Returns its status. */
static int run_disconnect(int id) {
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\"dropped %d\",\"max_tokens\":200,\"stream\":true,\"ignore_eos\":true}", id);
    int fd = send_request(g_port, "POST", "/v1/completions", NULL, body, strlen(body));
    if (fd < 0) {
        problem("disconnect %d: cannot connect", id);
        return -1;
    }
    char buf[8192];
    size_t n = 0;
    ssize_t k;
    int status = 0;
    while (n < sizeof buf - 1 && (k = recv(fd, buf + n, sizeof buf - 1 - n, 0)) > 0) {
        n += (size_t)k;
        buf[n] = 0;
        if (!status) sscanf(buf, "HTTP/1.%*d %d", &status);
        if (status && (status != 200 || strstr(buf, "data: "))) break;
    }
    close(fd); /* mid-stream: the server must cancel the job and free the slot */
    if (status == 200) count("/v1/completions", 200, K_DISCONNECT, 0, -1);
    else if (status == 503) count("/v1/completions", 503, K_DISCONNECT, 1, -1);
    else {
        count("/v1/completions", status, K_DISCONNECT, 2, -1);
        problem("disconnect %d: status %d", id, status);
    }
    return status;
}

/* One attempt; returns the status (0: no response). */
static int attempt(int kind, int id) {
    if (kind == K_DISCONNECT) return run_disconnect(id);
    char body[512], what[64];
    char *big = NULL;
    const char *path = "/v1/completions", *method = "POST", *b = body;
    int want = 200; /* expected status besides 503 */
    switch (kind) {
    case K_COMPLETION:
        snprintf(body, sizeof body, "{\"prompt\":\"load test %d\",\"max_tokens\":16,\"temperature\":0}", id);
        break;
    case K_STREAM:
        snprintf(body, sizeof body, "{\"prompt\":\"load stream %d\",\"max_tokens\":16,\"stream\":true}", id);
        break;
    case K_CHAT:
        path = "/v1/chat/completions";
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"hello %d\"}],\"max_tokens\":16%s}", id,
                 id % 2 ? ",\"stream\":true" : "");
        break;
    case K_TOKENIZE:
        path = "/tokenize";
        snprintf(body, sizeof body, "{\"prompt\":\"tokenize %d\"}", id);
        break;
    case K_HEALTH:
        path = "/health", method = "GET", b = NULL;
        break;
    case K_MALFORMED:
        snprintf(body, sizeof body, id % 2 ? "{\"prompt\": \"x\"," : "not json at all %d", id);
        want = 400;
        break;
    case K_OVERSIZED:
        b = big = oversized_body();
        want = 413;
        break;
    default: { /* K_BAD_FIELD */
        static const char *bad[] = {
            "{\"prompt\":\"x\",\"max_tokens\":\"many\"}", "{\"prompt\":\"x\",\"temperature\":-1}",
            "{\"prompt\":42}", "{\"prompt\":\"x\",\"n\":99}", "{\"prompt\":\"x\",\"max_tokens\":100000000}",
        };
        snprintf(body, sizeof body, "%s", bad[id % 5]);
        want = 400;
        break;
    }
    }
    snprintf(what, sizeof what, "%s #%d", k_kind_name[kind], id);
    resp rs;
    double t0 = http_now();
    int rc = http(g_port, method, path, NULL, b, &rs);
    double lat = http_now() - t0;
    free(big);
    if (rc) {
        problem("%s: no valid response", what);
        count(path, 0, kind, 2, lat);
        return 0;
    }
    if (rs.status == want) {
        count(path, rs.status, kind, 0, lat);
        if (want == 200 && strcasestr(rs.head, "text/event-stream")) check_sse(&rs, what);
        else if (want == 200) check_json_200(&rs, kind, what);
        else if (!strstr(rs.body, "\"error\"")) problem("%s: %d without an error body", what, rs.status);
    } else if (rs.status == 503 && want == 200 && kind != K_TOKENIZE && kind != K_HEALTH) {
        count(path, 503, kind, 1, lat);
        check_503(&rs, what);
    } else {
        count(path, rs.status, kind, 2, lat);
        problem("%s: status %d (want %d%s): %.200s", what, rs.status, want, want == 200 ? " or 503" : "", rs.body);
    }
    int st = rs.status;
    resp_free(&rs);
    return st;
}

static void *client_main(void *arg) {
    int c = (int)(intptr_t)arg;
    unsigned seed = (unsigned)c * 2654435761u;
    for (int r = 0; r < N_PER_CLIENT; r++) {
        int kind = (c + r * 5) % N_KINDS, id = c * N_PER_CLIENT + r;
        double end = http_now() + 10;
        int st;
        while ((st = attempt(kind, id)) == 503 && http_now() < end) backoff(&seed);
        if (st == 503) {
            pthread_mutex_lock(&g_mu);
            g_gave_up++;
            pthread_mutex_unlock(&g_mu);
        }
    }
    return NULL;
}

/* ================================================================ the server process */

static pid_t g_pid; /* the server, while it runs */
static char g_log[4096];

static int start_server(const char *model) {
    snprintf(g_log, sizeof g_log, "%s", tu_tmp("serve_load.log"));
    g_pid = fork();
    if (g_pid == 0) {
        FILE *f = freopen(g_log, "w", stderr), *o = freopen("/dev/null", "w", stdout);
        (void)f, (void)o;
        char mb[32];
        snprintf(mb, sizeof mb, "%d", MAX_BODY);
        execl(tu_bee(), tu_bee(), "serve", "-m", model, "--port", "0", "--parallel", "2", "--queue", "4", "--threads", "2",
              "--ctx", "512", "--max-body", mb, "--timeout", "120", "--drain", "30", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1200; i++) { /* up to 60 s (the sanitizer build loads slowly) */
        char log[4096] = "";
        FILE *f = fopen(g_log, "r");
        if (f) {
            size_t n = fread(log, 1, sizeof log - 1, f);
            log[n] = 0;
            fclose(f);
        }
        const char *p = strstr(log, "listening on http://127.0.0.1:");
        int port = p ? atoi(p + strlen("listening on http://127.0.0.1:")) : 0;
        int ready = strstr(log, "bee serve: ready") != NULL;
        if (port && ready) return port;
        int st;
        if (waitpid(g_pid, &st, WNOHANG) == g_pid) fail_msg("bee serve exited early (log %s)", g_log);
        usleep(50000);
    }
    fail_msg("bee serve did not get ready (log %s)", g_log);
    return 0;
}

/* bee_requests_total{endpoint="E",status="S"} of a /metrics text. */
static long metric_requests(const char *text, const char *endpoint, int status) {
    char key[256];
    snprintf(key, sizeof key, "bee_requests_total{endpoint=\"%.64s\",status=\"%d\"} ", endpoint, status);
    const char *p = strstr(text, key);
    return p ? atol(p + strlen(key)) : 0;
}

static long metric_value(const char *text, const char *name) {
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? atol(p + strlen(key)) : -1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_load(void **st) {
    (void)st;
    const char *model = tu_tmp("serve_load.gguf");
    char *out;
    if (tu_bee_run(&out, "init -o %s --seed 11", model)) fail_msg("bee init: %s", out);
    free(out);
    g_port = start_server(model);
    pthread_t th[N_CLIENTS];
    double t0 = http_now();
    for (int i = 0; i < N_CLIENTS; i++) pthread_create(&th[i], NULL, client_main, (void *)(intptr_t)i);
    for (int i = 0; i < N_CLIENTS; i++) pthread_join(th[i], NULL);
    double wall = http_now() - t0;
    if (g_problem[0]) fail_msg("%s", g_problem);

    /* report */
    qsort(g_lat, (size_t)g_n_lat, sizeof *g_lat, cmp_double);
    long ok = 0, busy = 0, other = 0;
    for (int k = 0; k < N_KINDS; k++) ok += g_by_kind[k][0], busy += g_by_kind[k][1], other += g_by_kind[k][2];
    fprintf(stderr, "  %d requests from %d clients (%ld HTTP attempts) in %.2f s: %.1f requests/s, %.1f attempts/s; "
                    "answered generations (last attempt): latency p50 %.1f ms, p99 %.1f ms\n",
            N_CLIENTS * N_PER_CLIENT, N_CLIENTS, ok + busy + other, wall, N_CLIENTS * N_PER_CLIENT / wall,
            (double)(ok + busy + other) / wall, 1e3 * g_lat[g_n_lat / 2], 1e3 * g_lat[(size_t)(0.99 * (g_n_lat - 1) + 0.5)]);
    fprintf(stderr, "  expected status %ld, 503 queue full %ld (retried), anything else %ld, given up %ld\n", ok, busy, other,
            g_gave_up);
    for (int k = 0; k < N_KINDS; k++)
        fprintf(stderr, "    %-10s expected %ld, 503 %ld, other %ld\n", k_kind_name[k], g_by_kind[k][0], g_by_kind[k][1],
                g_by_kind[k][2]);
    assert_int_equal(other, 0);
    assert_true(busy > 0); /* the queue did overflow */
    for (int k = 0; k < N_KINDS; k++) assert_true(g_by_kind[k][0] > 0);
    assert_true(g_gave_up < N_CLIENTS * N_PER_CLIENT / 8); /* most valid requests were answered in the end */

    /* healthy and idle afterwards */
    resp r;
    long active = -1, queued = -1;
    for (int i = 0; i < 600 && (active != 0 || queued != 0); i++) {
        if (i) usleep(50000);
        assert_int_equal(http(g_port, "GET", "/metrics", NULL, NULL, &r), 0);
        active = metric_value(r.body, "bee_active_slots"), queued = metric_value(r.body, "bee_queue_depth");
        resp_free(&r);
    }
    assert_int_equal(active, 0);
    assert_int_equal(queued, 0);
    assert_int_equal(http(g_port, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\""));
    resp_free(&r);
    json_t *j = post(g_port, "/v1/completions", "{\"prompt\":\"after the storm\",\"max_tokens\":4,\"temperature\":0}", 200);
    json_decref(j);
    count("/v1/completions", 200, K_COMPLETION, 0, -1);

    /* /metrics counts what the clients saw, request for request */
    assert_int_equal(http(g_port, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    for (int i = 0; i < g_n_tally; i++) {
        if (strcmp(g_tally[i].endpoint, "/health") == 0) continue; /* not every path records /health */
        long m = metric_requests(r.body, g_tally[i].endpoint, g_tally[i].status);
        if (m != g_tally[i].n)
            fail_msg("bee_requests_total{%s,%d} = %ld, the clients saw %ld", g_tally[i].endpoint, g_tally[i].status, m,
                     g_tally[i].n);
    }
    for (const char *p = r.body; (p = strstr(p, "status=\"5")); p++)
        if (strncmp(p, "status=\"503\"", 12) != 0) fail_msg("a 5xx other than 503 in /metrics: %.80s", p);
    long gen = metric_value(r.body, "bee_generated_tokens_total");
    assert_true(gen > 0);
    resp_free(&r);

    /* SIGTERM: a clean exit 0 */
    kill(g_pid, SIGTERM);
    int status = 0;
    pid_t w = -1;
    for (int i = 0; i < 600 && (w = waitpid(g_pid, &status, WNOHANG)) == 0; i++) usleep(50000);
    if (w != g_pid) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, &status, 0);
        fail_msg("bee serve did not exit within 30 s of SIGTERM");
    }
    g_pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A failed test leaves no server behind (it would hold ctest's output pipe). */
static int teardown(void **st) {
    (void)st;
    if (g_pid > 0) {
        kill(g_pid, SIGKILL);
        waitpid(g_pid, NULL, 0);
    }
    return 0;
}

int main(void) {
    if (!bee_serve_available()) {
        fprintf(stderr, "SKIP: bee was built without libmicrohttpd\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_load)};
    return cmocka_run_group_tests(tests, NULL, teardown);
}
