/* bee serve end to end: servers started in-process through the library API
 * on ephemeral ports, over random models made with `bee init`, driven by a
 * small raw-socket HTTP/1.1 client. Skips (77) without libmicrohttpd. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <math.h>
#include <stdatomic.h>

#include "eval/eval.h"
#include "model/model.h"
#include "serve/serve.h"
#include "testutil.h"
#include "util/error.h"

/* ================================================================ HTTP client */

#include "httpclient.h"

static void expect_error(int port, const char *path, const char *body, int status, const char *param) {
    json_t *j = post(port, path, body, status);
    json_t *e = json_object_get(j, "error");
    if (!json_is_string(json_object_get(e, "message")) || !json_is_string(json_object_get(e, "type")))
        fail_msg("error body lacks message/type: %s", body);
    if (param && strcmp(json_string_value(json_object_get(e, "param")) ? json_string_value(json_object_get(e, "param")) : "", param))
        fail_msg("%s: param %s, want %s", body, json_string_value(json_object_get(e, "param")), param);
    json_decref(j);
}

/* Joined "text" / "delta.content" of an SSE stream; checks the framing and [DONE]. */
static char *sse_text(const char *body, int chat, json_t **usage) {
    size_t cap = strlen(body) + 1, n = 0;
    char *out = calloc(1, cap);
    const char *p = body;
    int done = 0;
    while ((p = strstr(p, "data: "))) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        if (strncmp(p, "[DONE]", 6) == 0) {
            done = 1;
            assert_string_equal(e + 2, "");
            break;
        }
        json_error_t err;
        json_t *j = json_loadb(p, (size_t)(e - p), 0, &err);
        if (!j) fail_msg("bad SSE event: %.*s", (int)(e - p), p);
        assert_null(json_object_get(j, "error"));
        if (usage && json_object_get(j, "usage")) *usage = json_incref(json_object_get(j, "usage"));
        json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        const char *t = chat ? json_string_value(json_object_get(json_object_get(ch, "delta"), "content"))
                             : json_string_value(json_object_get(ch, "text"));
        if (t) {
            memcpy(out + n, t, strlen(t));
            n += strlen(t);
        }
        json_decref(j);
        p = e;
    }
    assert_true(done);
    return out;
}

/* ================================================================ servers */

static char g_fast[4096], g_slow[4096];
static bee_server *g_s1;
static int g_p1;
static int g_checked, g_recorded;
static pthread_mutex_t g_hook_mu = PTHREAD_MUTEX_INITIALIZER;

static int check_hook(void *user, bee_serve_text_kind kind, const char *text, size_t len, char **reason) {
    (void)user, (void)len;
    pthread_mutex_lock(&g_hook_mu);
    g_checked++;
    pthread_mutex_unlock(&g_hook_mu);
    if (kind == BEE_SERVE_TEXT_PROMPT && strstr(text, "forbidden")) {
        *reason = strdup("prompt refused by the test hook");
        return 1;
    }
    return 0;
}

static void record_hook(void *user, const bee_serve_record *r) {
    (void)user;
    assert_non_null(r->id);
    pthread_mutex_lock(&g_hook_mu);
    g_recorded++;
    pthread_mutex_unlock(&g_hook_mu);
}

static bee_server *start(const char *model, int parallel, int queue, double timeout, const char *keys, int ctx) {
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = model;
    o.port = 0;
    o.threads = 1;
    o.parallel = parallel;
    o.queue = queue;
    o.timeout_s = timeout;
    o.api_key_file = keys;
    o.ctx = ctx;
    o.max_body = 8192;
    o.drain_s = 20;
    bee_server *s;
    if (bee_server_start(&o, &s)) fail_msg("server start: %s", bee_error_message());
    if (bee_server_wait_ready(s, 60)) fail_msg("model load: %s", bee_error_message());
    return s;
}

static int setup(void **st) {
    (void)st;
    tu_make_model(g_fast, "fast.gguf", "");
    tu_make_model(g_slow, "slow.gguf", "--dim 256 --ff 1024 --layers 4 --heads 4 --dim-head 64");
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = g_fast, o.port = 0, o.threads = 1, o.parallel = 4, o.queue = 64, o.ctx = 512;
    o.max_body = 8192, o.timeout_s = 120;
    o.check = check_hook, o.record = record_hook;
    if (bee_server_start(&o, &g_s1) || bee_server_wait_ready(g_s1, 60)) {
        fprintf(stderr, "server: %s\n", bee_error_message());
        return -1;
    }
    g_p1 = bee_server_port(g_s1);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    bee_server_stop(g_s1);
    return 0;
}

/* ================================================================ basics */

static void test_health_models(void **st) {
    (void)st;
    resp r;
    assert_int_equal(http(g_p1, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *j = json_of(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    resp_free(&r);
    assert_int_equal(http(g_p1, "GET", "/v1/models", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 0), "id")), "fast");
    json_decref(j);
    resp_free(&r);
}

static char *completion_text(int port, const char *prompt, int max_tokens, json_t **usage) {
    char body[1024];
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}", prompt, max_tokens);
    json_t *j = post(port, "/v1/completions", body, 200);
    char *t = strdup(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text")));
    if (usage) *usage = json_incref(json_object_get(j, "usage"));
    json_decref(j);
    return t;
}

static void test_completion(void **st) {
    (void)st;
    json_t *j = post(g_p1, "/v1/completions", "{\"model\":\"fast\",\"prompt\":\"hello world\",\"max_tokens\":8,\"temperature\":0,\"logprobs\":2}", 200);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "text_completion");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *u = json_object_get(j, "usage");
    const char *text = json_string_value(json_object_get(ch, "text"));
    assert_non_null(text);
    long long pt = json_integer_value(json_object_get(u, "prompt_tokens")), ct = json_integer_value(json_object_get(u, "completion_tokens"));
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), pt + ct);
    assert_true(ct >= 1 && ct <= 8);
    json_t *lp = json_object_get(ch, "logprobs");
    assert_true(json_array_size(json_object_get(lp, "tokens")) >= (size_t)ct - 1);
    assert_int_equal(json_array_size(json_object_get(lp, "tokens")), json_array_size(json_object_get(lp, "token_logprobs")));
    assert_true(json_object_size(json_array_get(json_object_get(lp, "top_logprobs"), 0)) >= 1);
    /* prompt_tokens is what /tokenize reports for the same prompt */
    json_t *t = post(g_p1, "/tokenize", "{\"prompt\":\"hello world\"}", 200);
    assert_int_equal(json_integer_value(json_object_get(t, "count")), pt);
    assert_int_equal(json_array_size(json_object_get(t, "tokens")), (size_t)pt);
    json_decref(t);
    /* greedy text equals the CLI's */
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s generate -m %s -p 'hello world' --greedy -n 8 -t 1", tu_bee(), g_fast);
    assert_int_equal(tu_run(cmd, &out), 0);
    char *nl = strrchr(out, '\n');
    if (nl) *nl = 0;
    assert_string_equal(out, text);
    free(out);
    json_decref(j);
}

static void test_stream(void **st) {
    (void)st;
    char *want = completion_text(g_p1, "streaming test", 12, NULL);
    resp r;
    assert_int_equal(http(g_p1, "POST", "/v1/completions", NULL,
                          "{\"prompt\":\"streaming test\",\"max_tokens\":12,\"temperature\":0,\"stream\":true,"
                          "\"stream_options\":{\"include_usage\":true}}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "text/event-stream"));
    json_t *usage = NULL;
    char *got = sse_text(r.body, 0, &usage);
    assert_string_equal(got, want);
    assert_non_null(usage);
    assert_true(json_integer_value(json_object_get(usage, "completion_tokens")) >= 1);
    json_decref(usage);
    free(got);
    resp_free(&r);
    /* without stream_options, as OpenAI: no usage chunk (clients read choices[0] of every chunk) */
    assert_int_equal(http(g_p1, "POST", "/v1/completions", NULL,
                          "{\"prompt\":\"streaming test\",\"max_tokens\":12,\"temperature\":0,\"stream\":true}", &r), 0);
    usage = NULL;
    got = sse_text(r.body, 0, &usage);
    assert_string_equal(got, want);
    assert_null(usage);
    assert_null(strstr(r.body, "\"choices\":[]"));
    free(got);
    free(want);
    resp_free(&r);
}

static void test_chat(void **st) {
    (void)st;
    const char *msgs = "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"你好\"},"
                       "{\"role\":\"assistant\",\"content\":\"hi\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"again <x>\"}]}]";
    char body[1024];
    snprintf(body, sizeof body, "{%s,\"max_tokens\":6,\"temperature\":0}", msgs);
    json_t *j = post(g_p1, "/v1/chat/completions", body, 200);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    assert_string_equal(json_string_value(json_object_get(m, "role")), "assistant");
    const char *want = json_string_value(json_object_get(m, "content"));
    snprintf(body, sizeof body, "{%s,\"max_tokens\":6,\"temperature\":0,\"stream\":true}", msgs);
    resp r;
    assert_int_equal(http(g_p1, "POST", "/v1/chat/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    char *got = sse_text(r.body, 1, NULL);
    assert_string_equal(got, want);
    assert_non_null(strstr(r.body, "\"role\":\"assistant\""));
    free(got);
    resp_free(&r);
    /* chat logprobs in the chat shape */
    snprintf(body, sizeof body, "{%s,\"max_tokens\":3,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}", msgs);
    json_t *l = post(g_p1, "/v1/chat/completions", body, 200);
    json_t *content = json_object_get(json_object_get(json_array_get(json_object_get(l, "choices"), 0), "logprobs"), "content");
    assert_true(json_array_size(content) >= 1);
    json_t *first = json_array_get(content, 0);
    assert_true(json_is_string(json_object_get(first, "token")) && json_is_number(json_object_get(first, "logprob")));
    assert_int_equal(json_array_size(json_object_get(first, "top_logprobs")), 2);
    json_decref(l);
    snprintf(body, sizeof body, "{%s,\"top_logprobs\":2}", msgs);
    expect_error(g_p1, "/v1/chat/completions", body, 400, "top_logprobs");
    /* usage matches /tokenize of the same messages */
    snprintf(body, sizeof body, "{%s}", msgs);
    json_t *t = post(g_p1, "/tokenize", body, 200);
    assert_int_equal(json_integer_value(json_object_get(t, "count")),
                     json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")));
    json_decref(t);
    json_decref(j);
}

static void test_n_choices_and_stop(void **st) {
    (void)st;
    json_t *j = post(g_p1, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":5,\"temperature\":0,\"n\":3}", 200);
    json_t *c = json_object_get(j, "choices");
    assert_int_equal(json_array_size(c), 3);
    const char *t0 = json_string_value(json_object_get(json_array_get(c, 0), "text"));
    for (size_t i = 1; i < 3; i++) assert_string_equal(json_string_value(json_object_get(json_array_get(c, i), "text")), t0);
    long long ct = json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens"));
    assert_true(ct >= 3 && ct <= 15); /* each choice runs to 5 tokens or stops early */
    /* a stop string cuts the text before it */
    if (strlen(t0) > 3) {
        char stop[16] = {0}, body[256];
        memcpy(stop, t0 + 3, 3); /* the second character (3-byte UTF-8 in this vocabulary) */
        snprintf(body, sizeof body, "{\"prompt\":\"abc\",\"max_tokens\":5,\"temperature\":0,\"stop\":[\"%s\"]}", stop);
        json_t *k = post(g_p1, "/v1/completions", body, 200);
        json_t *ch = json_array_get(json_object_get(k, "choices"), 0);
        const char *t = json_string_value(json_object_get(ch, "text"));
        assert_null(strstr(t, stop));
        assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
        json_decref(k);
    }
    /* max_tokens 0: no tokens, finish "length" */
    json_t *z = post(g_p1, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":0}", 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(z, "usage"), "completion_tokens")), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(z, "choices"), 0), "finish_reason")), "length");
    json_decref(z);
    /* streamed choices carry their index */
    resp r;
    assert_int_equal(http(g_p1, "POST", "/v1/completions", NULL, "{\"prompt\":\"abc\",\"max_tokens\":3,\"n\":2,\"stream\":true,\"ignore_eos\":true}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"index\":1"));
    assert_non_null(strstr(r.body, "data: [DONE]"));
    resp_free(&r);
    /* sampling with a seed is reproducible */
    json_t *a = post(g_p1, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":6,\"temperature\":0.9,\"top_p\":0.9,\"seed\":5}", 200);
    json_t *b = post(g_p1, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":6,\"temperature\":0.9,\"top_p\":0.9,\"seed\":5}", 200);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(a, "choices"), 0), "text")),
                        json_string_value(json_object_get(json_array_get(json_object_get(b, "choices"), 0), "text")));
    json_decref(a), json_decref(b), json_decref(j);
}

static void test_cpmbee_tokenize(void **st) {
    (void)st;
    json_t *j = post(g_p1, "/v1/cpmbee", "{\"data\":{\"q\":\"x\",\"<ans>\":{\"a\":\"\",\"b\":\"\"}},\"beam_size\":2,\"max_tokens\":3}", 200);
    json_t *ans = json_object_get(json_object_get(j, "data"), "<ans>");
    assert_true(json_is_string(json_object_get(ans, "a"))); /* "b" may stay null: upstream's max_length covers all slots */
    assert_true(json_is_string(json_object_get(ans, "b")) || json_is_null(json_object_get(ans, "b")));
    json_decref(j);
    j = post(g_p1, "/v1/cpmbee", "{\"data\":{\"input\":\"天气\",\"<ans>\":\"\"},\"mode\":\"sample\",\"temperature\":0,\"max_tokens\":4}", 200);
    assert_true(json_is_string(json_object_get(json_object_get(j, "data"), "<ans>")));
    assert_true(json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")) >= 1);
    json_decref(j);
    j = post(g_p1, "/tokenize", "{\"content\":\"hello\"}", 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 5);
    json_decref(j);
}

static void test_metrics(void **st) {
    (void)st;
    json_decref(post(g_p1, "/v1/completions", "{\"prompt\":\"m\",\"max_tokens\":3,\"temperature\":0}", 200));
    resp r;
    assert_int_equal(http(g_p1, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    const char *want[] = {"bee_requests_total{endpoint=\"/v1/completions\",status=\"200\"}",
                          "bee_prompt_tokens_total", "bee_generated_tokens_total",
                          "bee_time_to_first_token_seconds_bucket{le=\"+Inf\"}", "bee_inter_token_seconds_count",
                          "bee_request_duration_seconds_sum", "bee_queue_depth", "bee_active_slots",
                          "bee_kv_cache_bytes", "# TYPE bee_requests_total counter"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(r.body, want[i])) fail_msg("metrics lack %s:\n%s", want[i], r.body);
    const char *g = strstr(r.body, "\nbee_generated_tokens_total ");
    assert_non_null(g);
    assert_true(atoll(g + 28) >= 3);
    resp_free(&r);
}

/* ================================================================ errors */

static void test_errors(void **st) {
    (void)st;
    expect_error(g_p1, "/v1/completions", "{\"prompt\": \"x\"", 400, "");
    expect_error(g_p1, "/v1/completions", "[1,2]", 400, "");
    expect_error(g_p1, "/v1/completions", "{}", 400, "prompt");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":-1}", 400, "max_tokens");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"stop\":[1]}", 400, "stop");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"n\":99}", 400, "n");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"n\":5}", 400, "n"); /* more than the 4 slots */
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":600}", 400, "max_tokens"); /* ctx 512 */
    expect_error(g_p1, "/v1/chat/completions", "{\"messages\":[]}", 400, "messages");
    expect_error(g_p1, "/v1/chat/completions", "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400, "messages[0].role");
    expect_error(g_p1, "/v1/cpmbee", "{\"data\":{\"x\":\"y\"}}", 400, "data");
    expect_error(g_p1, "/v1/cpmbee", "{\"data\":{\"<ans>\":\"\",\"x\":5}}", 400, "data");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"a forbidden word\"}", 400, "prompt"); /* check hook */
    /* a prompt longer than the context */
    size_t n = 3000;
    char *big = malloc(n + 64);
    int k = snprintf(big, n + 64, "{\"prompt\":\"");
    for (size_t i = 0; i < 1500; i++) big[k++] = 'a';
    snprintf(big + k, 64, "\",\"max_tokens\":1}");
    expect_error(g_p1, "/v1/completions", big, 400, "prompt");
    free(big);
    /* over --max-body (8192): 413 */
    char *huge = malloc(20000);
    memset(huge, ' ', 19999);
    huge[19999] = 0;
    huge[0] = '{', huge[19998] = '}';
    expect_error(g_p1, "/v1/completions", huge, 413, NULL);
    free(huge);
    resp r;
    assert_int_equal(http(g_p1, "GET", "/nope", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    assert_int_equal(http(g_p1, "GET", "/v1/completions", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    /* bytes that are not HTTP get an error from the HTTP layer, not a crash */
    int fd = send_request(g_p1, "GET", "/health", NULL, NULL, 0);
    close(fd);
    fd = connect_to(g_p1);
    send_all(fd, "\x01\x02garbage\r\n\r\n", 13);
    char junk[512];
    while (recv(fd, junk, sizeof junk, 0) > 0) {}
    close(fd);
    /* the server still answers */
    json_decref(post(g_p1, "/v1/completions", "{\"prompt\":\"ok\",\"max_tokens\":2}", 200));
}

/* ================================================================ echo scoring */

/* "echo": true + "max_tokens": 0 returns the prompt's token log-probs in the
 * OpenAI shape; with "bee_context" they are the local answer log-likelihood. */
static void test_echo(void **st) {
    (void)st;
    json_t *j = post(g_p1, "/v1/completions",
                     "{\"prompt\":\"北京 <b>\",\"bee_context\":\"中国的首都是\",\"echo\":true,\"logprobs\":2,\"max_tokens\":0}", 200);
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0), *lp = json_object_get(ch, "logprobs");
    json_t *toks = json_object_get(lp, "tokens"), *lps = json_object_get(lp, "token_logprobs"), *off = json_object_get(lp, "text_offset");
    json_t *top = json_object_get(lp, "top_logprobs"), *be = json_object_get(j, "bee_echo");
    assert_string_equal(json_string_value(json_object_get(ch, "text")), "北京 <b>");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
    size_t n = json_array_size(toks);
    assert_true(n >= 3);
    assert_int_equal(json_array_size(lps), n);
    assert_int_equal(json_array_size(off), n);
    assert_int_equal(json_array_size(top), n);
    assert_true(json_is_null(json_array_get(lps, 0))); /* the <s> that opens the answer */
    assert_string_equal(json_string_value(json_array_get(toks, 0)), "");
    char joined[256] = "";
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(json_integer_value(json_array_get(off, i)), (json_int_t)strlen(joined));
        strcat(joined, json_string_value(json_array_get(toks, i)));
        if (i == 0) continue;
        double x = json_real_value(json_array_get(lps, i));
        sum += x;
        assert_true(x < 0);
        assert_int_equal(json_object_size(json_array_get(top, i)), 2);
        double best = -INFINITY; /* the best alternative is at least as likely as the actual token */
        const char *k;
        json_t *v;
        json_object_foreach(json_array_get(top, i), k, v) best = fmax(best, json_real_value(v));
        assert_true(best >= x - 1e-9);
    }
    assert_string_equal(joined, "北京 <b>");
    assert_true(json_is_true(json_object_get(be, "context")));
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")),
                     json_integer_value(json_object_get(be, "context_tokens")) + (json_int_t)n);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 0);
    /* the same number as the local scorer */
    bee_model *m;
    assert_int_equal(bee_model_load(g_fast, &m), 0);
    double ll;
    size_t nt;
    assert_int_equal(bee_eval_loglik(m, "中国的首都是", "北京 <b>", &ll, &nt), 0);
    assert_int_equal(nt, n - 1);
    if (fabs(ll - sum) > 1e-6) fail_msg("served %.9f, local %.9f", sum, ll);
    bee_model_free(m);
    json_decref(j);
    /* without a context, logprobs off: the text alone, no logprobs object */
    j = post(g_p1, "/v1/completions", "{\"prompt\":\"hello\",\"echo\":true,\"max_tokens\":0}", 200);
    ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_true(json_is_null(json_object_get(ch, "logprobs")));
    assert_true(json_is_false(json_object_get(json_object_get(j, "bee_echo"), "context")));
    json_decref(j);
    /* what echo does not do is refused, naming the field */
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true}", 400, "max_tokens");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":4}", 400, "max_tokens");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"stream\":true}", 400, "stream");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400,
                 "stream_options");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":1}}",
                 400, "stream_options");
    expect_error(g_p1, "/v1/chat/completions",
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"stream_options\":[]}", 400,
                 "stream_options");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"n\":2}", 400, "n");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"\",\"echo\":true,\"max_tokens\":0}", 400, "prompt");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":\"yes\",\"max_tokens\":0}", 400, "echo");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"bee_context\":\"y\"}", 400, "bee_context");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"bee_context\":5}", 400, "bee_context");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"bee_window\":4}", 400, "bee_window");
    expect_error(g_p1, "/v1/completions", "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"bee_window\":600}", 400, "bee_window");
    char big[2048];
    int k = snprintf(big, sizeof big, "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":0,\"bee_context\":\"");
    for (int i = 0; i < 1500; i++) big[k++] = 'a';
    snprintf(big + k, sizeof big - (size_t)k, "\"}");
    expect_error(g_p1, "/v1/completions", big, 400, "bee_context");
}

/* ================================================================ concurrency */

#define N_CLIENTS 12

typedef struct {
    int port, idx, stream;
    char *text;
    int status;
} client_job;

static void *client(void *arg) {
    client_job *c = arg;
    char body[512];
    snprintf(body, sizeof body, "{\"prompt\":\"client %d says hello\",\"max_tokens\":%d,\"temperature\":0%s}", c->idx % 6,
             10 + c->idx % 6, c->stream ? ",\"stream\":true" : "");
    resp r;
    if (http(c->port, "POST", "/v1/completions", NULL, body, &r)) return NULL;
    c->status = r.status;
    if (r.status == 200 && c->stream) {
        c->text = sse_text(r.body, 0, NULL);
    } else if (r.status == 200) {
        json_error_t e;
        json_t *j = json_loads(r.body, 0, &e);
        c->text = strdup(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text")));
        json_decref(j);
    }
    resp_free(&r);
    return NULL;
}

static void test_concurrent_matches_single(void **st) {
    (void)st;
    /* reference: one request at a time */
    char *want[6];
    for (int i = 0; i < 6; i++) {
        client_job c = {g_p1, i, 0, NULL, 0};
        client(&c);
        assert_int_equal(c.status, 200);
        want[i] = c.text;
    }
    pthread_t th[N_CLIENTS];
    client_job cj[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        cj[i] = (client_job){g_p1, i, i % 2, NULL, 0};
        pthread_create(&th[i], NULL, client, &cj[i]);
    }
    for (int i = 0; i < N_CLIENTS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++) {
        if (cj[i].status != 200) fail_msg("client %d: status %d", i, cj[i].status);
        assert_string_equal(cj[i].text, want[i % 6]);
        free(cj[i].text);
    }
    for (int i = 0; i < 6; i++) free(want[i]);
    resp r;
    assert_int_equal(http(g_p1, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_null(strstr(r.body, "status=\"500\""));
    /* repeated prompts reused a kept context (and still matched the reference) */
    const char *hits = strstr(r.body, "\nbee_prefix_cache_hits_total ");
    assert_non_null(hits);
    assert_true(atoll(hits + strlen("\nbee_prefix_cache_hits_total ")) > 0);
    resp_free(&r);
}

/* ================================================================ limits on a slow model */

typedef struct {
    int port;
    const char *body, *headers;
    int status;
    char *reply;
} bg_req;

static void *bg(void *arg) {
    bg_req *b = arg;
    resp r;
    b->status = http(b->port, "POST", "/v1/completions", b->headers, b->body, &r) ? -1 : r.status;
    b->reply = r.body ? strdup(r.body) : NULL;
    resp_free(&r);
    return NULL;
}

static long long metric(int port, const char *name) { return http_metric(port, "Authorization: Bearer k2\r\n", name); }

static void wait_metric(int port, const char *name, long long want) {
    http_wait_metric(port, "Authorization: Bearer k2\r\n", name, want);
}

static void test_auth_queue_timeout(void **st) {
    (void)st;
    const char *kf = tu_tmp("keys.txt");
    tu_write(kf, "# keys\nk1\n  k2  \n", strlen("# keys\nk1\n  k2  \n"));
    /* the timeout leaves room for a loaded machine between the steps below */
    bee_server *s = start(g_slow, 1, 1, 2.0, kf, 8192);
    int p = bee_server_port(s);
    resp r;
    assert_int_equal(http(p, "GET", "/health", NULL, NULL, &r), 0); /* health needs no key */
    assert_int_equal(r.status, 200);
    resp_free(&r);
    const char *small = "{\"prompt\":\"x\",\"max_tokens\":2}";
    assert_int_equal(http(p, "POST", "/v1/completions", NULL, small, &r), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.body, "authentication_error"));
    resp_free(&r);
    assert_int_equal(http(p, "POST", "/v1/completions", "Authorization: Bearer k3\r\n", small, &r), 0);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    assert_int_equal(http(p, "POST", "/v1/completions", "Authorization: Bearer k1x\r\n", small, &r), 0);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    assert_int_equal(http(p, "POST", "/v1/completions", "Authorization: Bearer k2\r\n", small, &r), 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* one long request holds the only slot; a second waits; a third finds the queue full */
    bg_req long_req = {p, "{\"prompt\":\"hello world\",\"max_tokens\":8000,\"temperature\":0,\"ignore_eos\":true}", "Authorization: Bearer k1\r\n", 0, NULL};
    bg_req queued = {p, small, "Authorization: Bearer k1\r\n", 0, NULL};
    /* a stream that times out ends with an error event, then [DONE] */
    bg_req long_stream = {p, "{\"prompt\":\"hi\",\"max_tokens\":8000,\"stream\":true,\"ignore_eos\":true}", "Authorization: Bearer k1\r\n", 0, NULL};
    pthread_t t1, t2, t3;
    pthread_create(&t1, NULL, bg, &long_req);
    wait_metric(p, "bee_active_slots", 1);
    pthread_create(&t2, NULL, bg, &queued);
    wait_metric(p, "bee_queue_depth", 1);
    assert_int_equal(http(p, "POST", "/v1/completions", "Authorization: Bearer k1\r\n", small, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strcasestr(r.head, "Retry-After:"));
    resp_free(&r);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(long_req.status, 504); /* --timeout 2 */
    assert_non_null(strstr(long_req.reply, "\"type\":\"timeout\""));
    pthread_create(&t3, NULL, bg, &long_stream);
    pthread_join(t3, NULL);
    assert_int_equal(long_stream.status, 200);
    const char *ev = strstr(long_stream.reply, "data: {\"error\"");
    if (!ev || !strstr(ev, "\"timeout\"") || !strstr(ev, "data: [DONE]")) fail_msg("stream timeout: %s", long_stream.reply + (strlen(long_stream.reply) > 400 ? strlen(long_stream.reply) - 400 : 0));
    free(long_req.reply), free(queued.reply), free(long_stream.reply);
    if (queued.status != 200 && queued.status != 504) fail_msg("queued request: status %d", queued.status);
    bee_server_stop(s);
}

static void test_disconnect_and_drain(void **st) {
    (void)st;
    bee_server *s = start(g_slow, 2, 4, 0, NULL, 8192);
    int p = bee_server_port(s);
    const char *body = "{\"prompt\":\"hello world\",\"max_tokens\":8000,\"temperature\":0,\"stream\":true,\"ignore_eos\":true}";
    int fd = send_request(p, "POST", "/v1/completions", NULL, body, strlen(body));
    char buf[4096];
    ssize_t k = 0, got = 0;
    while (got < 300 && (k = recv(fd, buf + got, sizeof buf - 1 - (size_t)got, 0)) > 0) got += k;
    buf[got] = 0;
    assert_non_null(strstr(buf, "data: "));
    close(fd); /* the client goes away: the slot must be freed long before 8000 tokens */
    wait_metric(p, "bee_active_slots", 0);
    assert_true(metric(p, "bee_generated_tokens_total") < 4000);
    /* drain: a request in flight when stop begins still completes */
    bg_req inflight = {p, "{\"prompt\":\"drain\",\"max_tokens\":20,\"temperature\":0,\"ignore_eos\":true}", NULL, 0, NULL};
    pthread_t t;
    pthread_create(&t, NULL, bg, &inflight);
    wait_metric(p, "bee_active_slots", 1);
    bee_server_stop(s);
    pthread_join(t, NULL);
    assert_int_equal(inflight.status, 200);
    free(inflight.reply);
}

/* ================================================================ layer-chunked prefill */

typedef struct {
    int port;
    char *body;
    volatile int stop;
    int rc;
    resp r;
    double *t; /* arrival time of each SSE event */
    size_t n_t;
    atomic_int done;
} timed_req;

static void *timed_bg(void *arg) {
    timed_req *q = arg;
    q->rc = http_timed(q->port, "POST", "/v1/completions", NULL, q->body, &q->r, &q->t, &q->n_t, &q->stop);
    atomic_store(&q->done, 1);
    return NULL;
}

static bee_server *start_chunk(const char *model, long chunk) {
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = model, o.port = 0, o.threads = 1, o.parallel = 2, o.queue = 8, o.ctx = 8192;
    o.max_body = 1 << 16, o.timeout_s = 300, o.drain_s = 0, o.prefill_chunk = chunk;
    bee_server *s;
    if (bee_server_start(&o, &s)) fail_msg("server start: %s", bee_error_message());
    if (bee_server_wait_ready(s, 60)) fail_msg("model load: %s", bee_error_message());
    return s;
}

static char *long_prompt_body(const char *word, int reps, int stream) {
    size_t cap = strlen(word) * (size_t)reps + 256, n = 0;
    char *b = malloc(cap);
    n += (size_t)snprintf(b, cap, "{\"prompt\":\"");
    for (int i = 0; i < reps; i++) n += (size_t)snprintf(b + n, cap - n, "%s", word);
    snprintf(b + n, cap - n, "\",\"max_tokens\":8,\"temperature\":0,\"seed\":5,\"ignore_eos\":true%s}",
             stream ? ",\"stream\":true" : "");
    return b;
}

/* While stream A runs, the long prompt B arrives. The window is from B's
 * request to B's first event (its prefill, after a few tokens of A that were
 * already on their way). Returns how many of A's events arrived after the
 * first slice of B's prefill had run (as /metrics showed it) and before B's
 * first event (0 when nothing was sliced), and the window's length and its
 * longest gap between A's events (timings are only printed: on a shared
 * machine a stall of the whole process can make any gap long). */
static int run_long_during_stream(int port, const char *b_body, char **b_text, double *window, double *max_gap) {
    timed_req a = {port, "{\"prompt\":\"a running stream\",\"max_tokens\":8000,\"temperature\":0,\"stream\":true,\"ignore_eos\":true}", 0, 0, {0}, NULL, 0, 0};
    timed_req b = {port, (char *)b_body, 0, 0, {0}, NULL, 0, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, timed_bg, &a);
    long long g0 = metric(port, "bee_generated_tokens_total");
    for (int i = 0; i < 3000 && metric(port, "bee_generated_tokens_total") < g0 + 5; i++) usleep(2000);
    long long s0 = metric(port, "bee_prefill_slices_total");
    double t_send = http_now(), t_slice = 0;
    pthread_create(&tb, NULL, timed_bg, &b);
    while (!atomic_load(&b.done) && !t_slice) { /* until B's first slice has run */
        if (metric(port, "bee_prefill_slices_total") > s0) t_slice = http_now();
        usleep(500);
    }
    pthread_join(tb, NULL);
    a.stop = 1; /* A's client goes away */
    pthread_join(ta, NULL);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.r.status, 200);
    assert_true(b.n_t > 1);
    assert_true(a.rc == 1 || a.rc == 0); /* 0: A ended (8000 tokens) first */
    assert_int_equal(a.r.status, 200);
    double t_first = b.t[0];
    int n_in = 0;
    double prev = t_send, gap = 0;
    for (size_t k = 0; k < a.n_t; k++) {
        if (a.t[k] <= t_send || a.t[k] >= t_first) continue;
        n_in += t_slice && a.t[k] > t_slice;
        gap = fmax(gap, a.t[k] - prev);
        prev = a.t[k];
    }
    *max_gap = fmax(gap, t_first - prev);
    *window = t_first - t_send;
    *b_text = sse_text(b.r.body, 0, NULL);
    free(a.t), free(b.t);
    resp_free(&a.r), resp_free(&b.r);
    wait_metric(port, "bee_active_slots", 0);
    return n_in;
}

/* A long prompt's prefill runs a layer per step between the decode steps of
 * a running stream, which keeps getting tokens during it (without chunking it
 * gets none while the whole prefill runs); the long prompt's greedy output is
 * the same as when it is prefilled in one step, alone. A client that goes away
 * mid-prefill frees its slot. */
static void test_prefill_chunked(void **st) {
    (void)st;
    char deep[4096];
    tu_make_model(deep, "deep.gguf", "--dim 64 --ff 256 --layers 12 --heads 1 --dim-head 64");
    char *body = long_prompt_body("the quick brown fox jumps over the lazy dog ", 60, 1);
    /* x and z prefill in one step, y a layer per step for prompts over 400 / 12 tokens */
    bee_server *x = start_chunk(deep, -1), *y = start_chunk(deep, 400), *z = start_chunk(deep, -1);
    int px = bee_server_port(x), py = bee_server_port(y), pz = bee_server_port(z);
    /* reference: alone, one-shot prefill (on z: x and y must not have the context cached) */
    resp r;
    assert_int_equal(http(pz, "POST", "/v1/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    char *want = sse_text(r.body, 0, NULL);
    resp_free(&r);
    char *got_x, *got_y;
    double wx, wy, gx, gy;
    int nx = run_long_during_stream(px, body, &got_x, &wx, &gx);
    assert_int_equal(metric(px, "bee_prefill_slices_total"), 0);
    int ny = run_long_during_stream(py, body, &got_y, &wy, &gy);
    long long slices = metric(py, "bee_prefill_slices_total");
    fprintf(stderr, "  one-shot: running stream's longest gap %.0f ms in the %.0f ms prefill window\n"
                    "  chunked:  longest gap %.0f ms in the %.0f ms window, %d events after the first of %lld slices\n",
            gx * 1e3, wx * 1e3, gy * 1e3, wy * 1e3, ny, slices);
    assert_int_equal(nx, 0);
    assert_int_equal(slices, 12); /* chunk 400 < prompt tokens: one layer per slice */
    /* a decode step after every slice: 11 tokens of A while B's prefill goes on
     * (some slack for events still on their way when B's first one arrives) */
    assert_true(ny >= 6);
    assert_string_equal(got_x, want);
    assert_string_equal(got_y, want);
    free(got_x), free(got_y);
    /* the same prompt again on y: its context is kept, so no prefill at all */
    assert_int_equal(http(py, "POST", "/v1/completions", NULL, body, &r), 0);
    assert_int_equal(r.status, 200);
    char *again = sse_text(r.body, 0, NULL);
    assert_string_equal(again, want);
    free(again);
    resp_free(&r);
    assert_int_equal(metric(py, "bee_prefill_slices_total"), 12);
    free(body);
    /* a client that goes away during the prefill (another prompt: no reuse) */
    char *other = long_prompt_body("jumps over the lazy dog, the quick brown fox ", 60, 1);
    timed_req c = {py, other, 0, 0, {0}, NULL, 0, 0};
    pthread_t tc;
    pthread_create(&tc, NULL, timed_bg, &c);
    for (int i = 0; i < 5000 && metric(py, "bee_prefill_slices_total") < 13; i++) usleep(1000);
    c.stop = 1;
    pthread_join(tc, NULL);
    wait_metric(py, "bee_active_slots", 0);
    long long after = metric(py, "bee_prefill_slices_total");
    fprintf(stderr, "  cancelled after %lld of 12 slices\n", after - 12);
    free(c.t);
    resp_free(&c.r);
    /* the slot's partial cache was not kept as a prefix: the prompt prefills
     * anew, with the right output (if the cancel came only after the whole
     * prefill, on a very slow machine, the full context is reused instead) */
    int finished = after - 12 == 12;
    assert_int_equal(http(py, "POST", "/v1/completions", NULL, other, &r), 0);
    assert_int_equal(r.status, 200);
    char *o1 = sse_text(r.body, 0, NULL);
    resp_free(&r);
    assert_int_equal(http(pz, "POST", "/v1/completions", NULL, other, &r), 0);
    char *o2 = sse_text(r.body, 0, NULL);
    resp_free(&r);
    assert_string_equal(o1, o2);
    free(o1), free(o2), free(other);
    assert_int_equal(metric(py, "bee_prefill_slices_total") - after, finished ? 0 : 12);
    bee_server_stop(x);
    bee_server_stop(y);
    bee_server_stop(z);
    free(want);
}

static void test_hooks_called(void **st) {
    (void)st;
    pthread_mutex_lock(&g_hook_mu);
    int c = g_checked, r = g_recorded;
    pthread_mutex_unlock(&g_hook_mu);
    assert_true(c > 0);
    assert_true(r > 0);
}

int main(void) {
    if (!bee_serve_available()) {
        fprintf(stderr, "SKIP: bee was built without libmicrohttpd\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_models),
        cmocka_unit_test(test_completion),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_n_choices_and_stop),
        cmocka_unit_test(test_cpmbee_tokenize),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_echo),
        cmocka_unit_test(test_concurrent_matches_single),
        cmocka_unit_test(test_auth_queue_timeout),
        cmocka_unit_test(test_disconnect_and_drain),
        cmocka_unit_test(test_prefill_chunked),
        cmocka_unit_test(test_hooks_called),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
