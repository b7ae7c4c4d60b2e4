/* bee serve's KV block pool end to end: n > 1 choices and prompt-prefix hits
 * share blocks (metrics) and still give the texts of lone requests; a small
 * --kv-budget makes a request wait for free blocks instead of failing; a
 * request that can never fit gets a 400; a bad budget is refused. Servers
 * run in-process on ephemeral ports over models made with `bee init`.
 * Skips (77) without libmicrohttpd. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpclient.h"
#include "model/model.h"
#include "serve/serve.h"
#include "testutil.h"
#include "util/error.h"

static char g_fast[4096], g_slow[4096];

static int setup(void **st) {
    (void)st;
    tu_make_model(g_fast, "fast.gguf", "");
    tu_make_model(g_slow, "slow.gguf", "--dim 256 --ff 1024 --layers 4 --heads 4 --dim-head 64");
    return 0;
}

static bee_server *start(const char *model, int parallel, int ctx, size_t kv_budget) {
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = model, o.port = 0, o.threads = 1, o.parallel = parallel, o.queue = 8, o.ctx = ctx;
    o.timeout_s = 120, o.max_body = 8192, o.drain_s = 20, o.kv_budget = kv_budget;
    bee_server *s;
    if (bee_server_start(&o, &s)) fail_msg("server start: %s", bee_error_message());
    if (bee_server_wait_ready(s, 60)) fail_msg("model load: %s", bee_error_message());
    return s;
}

static long long metric(int port, const char *name) { return http_metric(port, NULL, name); }

static void wait_metric(int port, const char *name, long long want) { http_wait_metric(port, NULL, name, want); }

static char *choice_text(json_t *j, size_t i) {
    return strdup(json_string_value(json_object_get(json_array_get(json_object_get(j, "choices"), i), "text")));
}

/* Bytes of one block of the model's KV cache (f32). */
static size_t block_bytes(const char *model) {
    bee_model *m;
    if (bee_model_load(model, &m)) fail_msg("%s", bee_error_message());
    size_t b = bee_kv_block_bytes(m);
    bee_model_free(m);
    return b;
}

/* n = 4 greedy choices: the three siblings share choice 0's prompt block
 * (one block: a short prompt) and each copies it on its first write; every
 * choice gets the text a lone request gets. */
static void test_n_choices_share(void **st) {
    (void)st;
    bee_server *s = start(g_fast, 4, 512, 0);
    int p = bee_server_port(s);
    json_t *one = post(p, "/v1/completions", "{\"prompt\":\"abc\",\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true}", 200);
    char *want = choice_text(one, 0);
    assert_int_equal(metric(p, "bee_kv_blocks_shared_total"), 0);
    assert_int_equal(metric(p, "bee_kv_blocks_total"), 4 * ((512 + 1 + 63) / 64)); /* the default budget */
    json_t *four = post(p, "/v1/completions",
                        "{\"prompt\":\"abc def\",\"max_tokens\":6,\"temperature\":0,\"n\":4,\"ignore_eos\":true}", 200);
    json_t *ref = post(p, "/v1/completions", "{\"prompt\":\"abc def\",\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true}", 200);
    char *want4 = choice_text(ref, 0);
    for (size_t i = 0; i < 4; i++) {
        char *t = choice_text(four, i);
        assert_string_equal(t, want4);
        free(t);
    }
    long long shared = metric(p, "bee_kv_blocks_shared_total"), cow = metric(p, "bee_kv_cow_copies_total");
    fprintf(stderr, "  n=4: %lld blocks shared, %lld copied on write\n", shared, cow);
    assert_true(shared >= 3); /* 3 siblings x the prompt's block (the lone request may add a prefix hit) */
    assert_true(cow >= 3);
    assert_true(metric(p, "bee_kv_blocks_used") >= 1); /* kept prefixes hold blocks */
    free(want), free(want4);
    json_decref(one), json_decref(four), json_decref(ref);
    bee_server_stop(s);
}

/* The same prompt twice: the second request shares the kept prefix's block
 * (the kept copy stays for later hits) and produces the same text. */
static void test_prefix_hit_shares(void **st) {
    (void)st;
    bee_server *s = start(g_fast, 2, 512, 0);
    int p = bee_server_port(s);
    const char *body = "{\"prompt\":\"hello prefix\",\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}";
    json_t *a = post(p, "/v1/completions", body, 200);
    assert_int_equal(metric(p, "bee_kv_blocks_shared_total"), 0);
    json_t *b = post(p, "/v1/completions", body, 200);
    assert_int_equal(metric(p, "bee_prefix_cache_hits_total"), 1);
    assert_int_equal(metric(p, "bee_kv_blocks_shared_total"), 1);
    assert_int_equal(metric(p, "bee_kv_cow_copies_total"), 1); /* its first answer token went into a copy */
    json_t *c = post(p, "/v1/completions", body, 200); /* the kept prefix is still there */
    assert_int_equal(metric(p, "bee_prefix_cache_hits_total"), 2);
    char *ta = choice_text(a, 0), *tb = choice_text(b, 0), *tc = choice_text(c, 0);
    assert_string_equal(ta, tb);
    assert_string_equal(ta, tc);
    free(ta), free(tb), free(tc);
    json_decref(a), json_decref(b), json_decref(c);
    bee_server_stop(s);
}

typedef struct {
    int port;
    const char *body;
    int status;
} bg_req;

static void *bg(void *arg) {
    bg_req *b = arg;
    resp r;
    b->status = http(b->port, "POST", "/v1/completions", NULL, b->body, &r) ? -1 : r.status;
    resp_free(&r);
    return NULL;
}

/* A budget of 7 blocks, 2 slots: a request of up to 7 blocks runs, a second
 * one waits in the queue (a slot is free, its blocks are not) and runs when
 * the first is done; one that could never fit gets a 400 naming the budget. */
static void test_budget_waits(void **st) {
    (void)st;
    bee_server *s = start(g_slow, 2, 1024, 7 * block_bytes(g_slow)); /* prompts are 17 tokens with the template */
    int p = bee_server_port(s);
    assert_int_equal(metric(p, "bee_kv_blocks_total"), 7);
    bg_req a = {p, "{\"prompt\":\"hi\",\"max_tokens\":380,\"ignore_eos\":true}", 0};
    bg_req b = {p, "{\"prompt\":\"ho\",\"max_tokens\":300,\"ignore_eos\":true}", 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, bg, &a);
    wait_metric(p, "bee_active_slots", 1);
    pthread_create(&tb, NULL, bg, &b);
    wait_metric(p, "bee_queue_depth", 1); /* waiting for blocks, not for a slot */
    assert_int_equal(metric(p, "bee_active_slots"), 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    /* 500 tokens need 9 blocks; two choices of 300 need 5 + 5 */
    json_t *e = post(p, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":500}", 400);
    const char *msg = json_string_value(json_object_get(json_object_get(e, "error"), "message"));
    if (!msg || !strstr(msg, "--kv-budget")) fail_msg("400 without the budget: %s", msg ? msg : "(none)");
    json_decref(e);
    json_decref(post(p, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":300,\"n\":2}", 400));
    assert_int_equal(metric(p, "bee_queue_depth"), 0);
    /* the two kept prompts hold a block each; a request needing all 7
     * evicts them (nothing else would ever free them) */
    assert_int_equal(metric(p, "bee_kv_blocks_used"), 2);
    long long hits = metric(p, "bee_prefix_cache_hits_total");
    json_decref(post(p, "/v1/completions", "{\"prompt\":\"hx\",\"max_tokens\":380,\"ignore_eos\":true}", 200));
    assert_int_equal(metric(p, "bee_kv_blocks_used"), 1); /* only the last prompt is kept */
    json_decref(post(p, "/v1/completions", "{\"prompt\":\"hi\",\"max_tokens\":2}", 200));
    assert_int_equal(metric(p, "bee_prefix_cache_hits_total"), hits); /* "hi" was evicted: a miss */
    bee_server_stop(s);
}

/* A budget below one block fails the load with a message naming it; the
 * CLI refuses sizes it cannot read, from the flag and from BEE_KV_BUDGET. */
static void test_bad_budget(void **st) {
    (void)st;
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = g_fast, o.port = 0, o.threads = 1, o.kv_budget = 100;
    bee_server *s;
    assert_int_equal(bee_server_start(&o, &s), 0);
    assert_int_not_equal(bee_server_wait_ready(s, 60), 0);
    if (!strstr(bee_error_message(), "budget")) fail_msg("load error: %s", bee_error_message());
    bee_server_stop(s);
    static const char *bad[] = {"12Q", "-5M", "0", "M", "1.5G", "99999999999999999999G"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *out;
        int rc = tu_bee_run(&out, "serve -m %s --port 0 --kv-budget %s", g_fast, bad[i]);
        if (rc == 0 || !strstr(out, "--kv-budget")) fail_msg("--kv-budget %s: rc %d, %s", bad[i], rc, out);
        free(out);
    }
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "BEE_KV_BUDGET=lots %s serve -m %s --port 0", tu_bee(), g_fast);
    int rc = tu_run(cmd, &out);
    if (rc == 0 || !strstr(out, "--kv-budget")) fail_msg("BEE_KV_BUDGET=lots: rc %d, %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve -m %s --port 0 --kv-budget 1K", tu_bee(), g_fast);
    rc = tu_run(cmd, &out); /* readable, but not one block: the load fails */
    if (rc == 0 || !strstr(out, "budget")) fail_msg("--kv-budget 1K: rc %d, %s", rc, out);
    free(out);
}

int main(void) {
    if (!bee_serve_available()) {
        fprintf(stderr, "SKIP: bee was built without libmicrohttpd\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_n_choices_share),
        cmocka_unit_test(test_prefix_hit_shares),
        cmocka_unit_test(test_budget_waits),
        cmocka_unit_test(test_bad_budget),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
