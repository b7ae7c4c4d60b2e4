/* bee serve --index: POST /v1/search and /v1/ask over a small Chinese and
 * English index, in-process servers on ephemeral ports (random model from
 * `bee init`). Checks the results against `bee search --json` / `bee ask
 * --json`, every bad field, a server without an index, and the content
 * policy on queries, passages and answers. Skips (77) without libmicrohttpd
 * or SQLite. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/feedback.h"
#include "httpclient.h"
#include "safety/safety.h"
#include "search/search.h"
#include "serve/serve.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"

static char g_model[4096], g_db[4096], g_docs[4096];

typedef struct {
    bee_server *s;
    int port;
    bee_search *index;
    bee_safety_policy *pol;
} srv;

/* A server over g_model; with_index: serving g_db; policy: JSON text or NULL. */
static void srv_start(srv *v, int with_index, const char *policy, int ctx) {
    memset(v, 0, sizeof *v);
    if (with_index && bee_search_open(g_db, &v->index)) fail_msg("index: %s", bee_error_message());
    if (policy && bee_safety_policy_parse(policy, strlen(policy), "test policy", NULL, &v->pol))
        fail_msg("policy: %s", bee_error_message());
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = g_model, o.port = 0, o.threads = 1, o.parallel = 2, o.ctx = ctx, o.timeout_s = 120;
    o.max_body = 16384;
    o.index = v->index, o.policy = v->pol;
    if (bee_server_start(&o, &v->s) || bee_server_wait_ready(v->s, 60)) fail_msg("server: %s", bee_error_message());
    v->port = bee_server_port(v->s);
}

static void srv_stop(srv *v) {
    bee_server_stop(v->s);
    bee_search_close(v->index);
    bee_safety_policy_free(v->pol);
}

static void write_doc(const char *name, const char *text) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", g_docs, name);
    tu_write(p, text, strlen(text));
}

static int setup(void **st) {
    (void)st;
    snprintf(g_model, sizeof g_model, "%s", tu_tmp("m.gguf"));
    snprintf(g_db, sizeof g_db, "%s", tu_tmp("index.sqlite"));
    snprintf(g_docs, sizeof g_docs, "%s", tu_tmp("docs"));
    char *out;
    if (tu_bee_run(&out, "init -o %s --seed 3", g_model)) {
        fprintf(stderr, "bee init: %s\n", out);
        return -1;
    }
    free(out);
    bee_mkdir_p(g_docs);
    write_doc("beijing.txt", "北京是中国的首都，有故宫和天坛。\n\n上海是中国最大的城市，位于长江口。\n");
    write_doc("rivers.txt", "黄河是中国第二长的河流。\n\n长江流经十一个省级行政区。\n");
    write_doc("storage.md", "# Storage\n\nThe index stores passages in SQLite; storing is incremental.\n\n"
                            "# Queries\n\nA query is ranked with BM25 over stemmed words.\n");
    write_doc("report.txt", "这份报告是机密文件，请勿外传。\n");
    write_doc("blocked.txt", "这份报告提到了龘龘，不应出现在结果里。\n");
    /* long passages about 长城, so that many of them overflow a small context */
    for (int i = 0; i < 12; i++) {
        char name[32], text[2048] = "";
        snprintf(name, sizeof name, "wall%02d.txt", i);
        for (int k = 0; k < 12; k++) strcat(text, "长城是古代中国修建的防御工程，绵延万里。");
        write_doc(name, text);
    }
    bee_search *s;
    bee_index_stats ist;
    const char *paths[] = {g_docs};
    if (bee_search_open(g_db, &s) || bee_search_index(s, paths, 1, &ist)) {
        fprintf(stderr, "index: %s\n", bee_error_message());
        return -1;
    }
    bee_search_close(s);
    return 0;
}

static void expect_error(int port, const char *path, const char *body, int status, const char *type, const char *param) {
    json_t *j = post(port, path, body, status);
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (!msg || !msg[0]) fail_msg("%s %s: no error message", path, body);
    if (type && strcmp(json_string_value(json_object_get(e, "type")), type))
        fail_msg("%s %s: type %s, want %s", path, body, json_string_value(json_object_get(e, "type")), type);
    const char *p = json_string_value(json_object_get(e, "param"));
    if (param && (!p || strcmp(p, param))) fail_msg("%s %s: param %s, want %s (%s)", path, body, p ? p : "null", param, msg);
    json_decref(j);
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* ================================================================ /v1/search */

static void test_search_matches_cli(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 1, NULL, 512);
    /* a 2-character Chinese query (one bigram lookup) */
    json_t *j = post(v.port, "/v1/search", "{\"query\":\"首都\",\"k\":3}", 200);
    json_t *res = json_object_get(j, "results");
    assert_true(json_array_size(res) >= 1);
    json_t *h = json_array_get(res, 0);
    assert_true(ends_with(json_string_value(json_object_get(h, "doc")), "/beijing.txt"));
    assert_non_null(strstr(json_string_value(json_object_get(h, "text")), "首都"));
    assert_true(json_real_value(json_object_get(h, "score")) > 0);
    assert_true(json_is_integer(json_object_get(h, "passage")));
    /* the same array as the CLI prints */
    char *out;
    assert_int_equal(tu_bee_run(&out, "search --db %s -k 3 --json 首都", g_db), 0);
    json_t *cli = json_loads(out, 0, NULL);
    free(out);
    assert_int_equal(json_array_size(cli), json_array_size(res));
    for (size_t i = 0; i < json_array_size(cli); i++) {
        json_t *a = json_array_get(cli, i), *b = json_array_get(res, i);
        assert_string_equal(json_string_value(json_object_get(a, "doc")), json_string_value(json_object_get(b, "doc")));
        assert_string_equal(json_string_value(json_object_get(a, "text")), json_string_value(json_object_get(b, "text")));
        assert_int_equal(json_integer_value(json_object_get(a, "passage")), json_integer_value(json_object_get(b, "passage")));
    }
    json_decref(cli);
    json_decref(j);
    /* English, stemmed: "stored" finds "stores"/"storing"; k limits the count; default k is 5 */
    j = post(v.port, "/v1/search", "{\"query\":\"stored\",\"k\":1}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 1);
    assert_true(ends_with(json_string_value(json_object_get(json_array_get(json_object_get(j, "results"), 0), "doc")), "/storage.md"));
    json_decref(j);
    j = post(v.port, "/v1/search", "{\"query\":\"长城\"}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 5);
    json_decref(j);
    /* no match, and hostile FTS5 syntax, are just queries */
    j = post(v.port, "/v1/search", "{\"query\":\"zzqqxx\"}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 0);
    json_decref(j);
    j = post(v.port, "/v1/search", "{\"query\":\"\\\"NEAR( AND * ^ : OR) 首\"}", 200);
    json_decref(j);
    srv_stop(&v);
}

static void test_search_bad_input(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 1, NULL, 512);
    expect_error(v.port, "/v1/search", "{}", 400, "invalid_request_error", "query");
    expect_error(v.port, "/v1/search", "{\"query\":3}", 400, "invalid_request_error", "query");
    expect_error(v.port, "/v1/search", "{\"query\":\"  \\n\"}", 400, "invalid_request_error", "query");
    expect_error(v.port, "/v1/search", "{\"query\":\"a\\u0000b\"}", 400, "invalid_request_error", NULL); /* the JSON parser refuses NUL */
    expect_error(v.port, "/v1/search", "{\"query\":\"首都\",\"k\":0}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/search", "{\"query\":\"首都\",\"k\":101}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/search", "{\"query\":\"首都\",\"k\":\"3\"}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/search", "{\"query\":\"首都\",\"k\":2.5}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/search", "{\"query\":", 400, "invalid_request_error", NULL);
    expect_error(v.port, "/v1/search", "[\"首都\"]", 400, "invalid_request_error", NULL);
    char big[6000] = "{\"query\":\"";
    memset(big + strlen(big), 'a', 5000);
    strcpy(big + strlen(big), "\"}");
    expect_error(v.port, "/v1/search", big, 400, "invalid_request_error", "query");
    resp r;
    assert_int_equal(http(v.port, "GET", "/v1/search", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    resp_free(&r);
    srv_stop(&v);
}

static void test_no_index(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 0, NULL, 512);
    json_t *j = post(v.port, "/v1/search", "{\"query\":\"首都\"}", 404);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "--index"));
    json_decref(j);
    j = post(v.port, "/v1/ask", "{\"question\":\"首都\"}", 404);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "--index"));
    json_decref(j);
    srv_stop(&v);
}

/* ================================================================ /v1/ask */

static void test_ask_matches_cli(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 1, NULL, 512);
    json_t *j = post(v.port, "/v1/ask", "{\"question\":\"中国的首都是哪里？\",\"k\":2,\"max_tokens\":8}", 200);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "ask.result");
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "id")), "ask-", 4), 0);
    const char *ans = json_string_value(json_object_get(j, "answer"));
    assert_non_null(ans);
    json_t *ps = json_object_get(j, "passages");
    assert_int_equal(json_array_size(ps), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ps, 0), "n")), 1);
    assert_true(ends_with(json_string_value(json_object_get(json_array_get(ps, 0), "doc")), "/beijing.txt"));
    assert_true(json_is_array(json_object_get(j, "cited")));
    assert_true(json_is_integer(json_object_get(j, "invalid_citations")));
    json_t *u = json_object_get(j, "usage");
    assert_true(json_integer_value(json_object_get(u, "prompt_tokens")) > 10);
    /* the same passages and the same beam-search answer as bee ask */
    char *out;
    assert_int_equal(tu_bee_run(&out, "ask -m %s --db %s -k 2 --max-length 8 -t 1 --json '中国的首都是哪里？'", g_model, g_db), 0);
    json_t *cli = json_loads(out, 0, NULL);
    if (!cli) fail_msg("bee ask --json: %s", out);
    free(out);
    assert_string_equal(json_string_value(json_object_get(cli, "answer")), ans);
    json_t *cps = json_object_get(cli, "passages");
    assert_int_equal(json_array_size(cps), 2);
    for (size_t i = 0; i < 2; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(cps, i), "text")),
                            json_string_value(json_object_get(json_array_get(ps, i), "text")));
    assert_true(json_equal(json_object_get(cli, "cited"), json_object_get(j, "cited")));
    json_decref(cli);
    json_decref(j);
    /* a question nothing matches still gets an answer, from no passages */
    j = post(v.port, "/v1/ask", "{\"question\":\"zzqqxx\",\"max_tokens\":4}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "passages")), 0);
    json_decref(j);
    srv_stop(&v);
}

static void test_ask_bad_input(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 1, NULL, 256);
    expect_error(v.port, "/v1/ask", "{}", 400, "invalid_request_error", "question");
    expect_error(v.port, "/v1/ask", "{\"question\":[\"首都\"]}", 400, "invalid_request_error", "question");
    expect_error(v.port, "/v1/ask", "{\"question\":\"\"}", 400, "invalid_request_error", "question");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"k\":-1}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"max_tokens\":-1}", 400, "invalid_request_error", "max_tokens");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"beam_size\":0}", 400, "invalid_request_error", "beam_size");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"stream\":true}", 400, "invalid_request_error", "stream");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"mode\":\"greedy\"}", 400, "invalid_request_error", "mode");
    /* twelve 240-character passages do not fit a 256-token context: the error says to lower k */
    expect_error(v.port, "/v1/ask", "{\"question\":\"长城\",\"k\":12}", 400, "invalid_request_error", "k");
    expect_error(v.port, "/v1/ask", "{\"question\":\"首都\",\"max_tokens\":1000}", 400, "invalid_request_error", "max_tokens");
    /* the server still works after all that */
    json_t *j = post(v.port, "/v1/ask", "{\"question\":\"首都\",\"k\":1,\"max_tokens\":2}", 200);
    json_decref(j);
    srv_stop(&v);
}

/* ================================================================ content policy */

static const char k_policy[] = "{\"categories\":{"
                               "\"b\":{\"action\":\"block\",\"terms\":[\"龘龘\"]},"
                               "\"m\":{\"action\":\"mask\",\"terms\":[\"机密\"]}}}";

static void test_policy(void **st) {
    (void)st;
    srv v;
    srv_start(&v, 1, k_policy, 512);
    expect_error(v.port, "/v1/search", "{\"query\":\"龘龘是什么\"}", 400, "content_filter", "query");
    expect_error(v.port, "/v1/ask", "{\"question\":\"龘龘是什么\"}", 400, "content_filter", "question");
    /* "报告" matches both report.txt (masked) and blocked.txt (withheld) */
    json_t *j = post(v.port, "/v1/search", "{\"query\":\"报告\"}", 200);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "withheld")), 1);
    const char *t = json_string_value(json_object_get(json_array_get(res, 0), "text"));
    assert_null(strstr(t, "机密"));
    assert_non_null(strstr(t, "＊＊"));
    json_decref(j);
    j = post(v.port, "/v1/ask", "{\"question\":\"报告\",\"max_tokens\":4}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "passages")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "withheld")), 1);
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "龘"));
    assert_null(strstr(dump, "机密"));
    free(dump);
    json_decref(j);
    /* a masked query is searched masked: "机密" becomes "＊＊", which matches nothing */
    j = post(v.port, "/v1/search", "{\"query\":\"机密\"}", 200);
    assert_int_equal(json_array_size(json_object_get(j, "results")), 0);
    json_decref(j);
    srv_stop(&v);
}

/* /v1/ask responses go to the feedback store under their id, so they can be rated */
static void test_ask_feedback(void **st) {
    (void)st;
    bee_search *ix;
    bee_feedback *fb;
    if (bee_search_open(g_db, &ix) || bee_feedback_open(tu_tmp("fb.sqlite"), &fb)) fail_msg("%s", bee_error_message());
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = g_model, o.port = 0, o.threads = 1, o.parallel = 1, o.ctx = 512, o.index = ix, o.feedback = fb;
    bee_server *s;
    if (bee_server_start(&o, &s) || bee_server_wait_ready(s, 60)) fail_msg("server: %s", bee_error_message());
    int port = bee_server_port(s);
    json_t *j = post(port, "/v1/ask", "{\"question\":\"黄河\",\"k\":1,\"max_tokens\":4}", 200);
    char body[256];
    snprintf(body, sizeof body, "{\"response_id\":\"%s\",\"rating\":1}", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    json_decref(post(port, "/v1/feedback", body, 200));
    json_decref(post(port, "/v1/feedback", "{\"response_id\":\"ask-nope\",\"rating\":1}", 404));
    bee_server_stop(s);
    bee_feedback_close(fb);
    bee_search_close(ix);
}

/* ================================================================ CLI flag */

static void test_cli_index_flag(void **st) {
    (void)st;
    char *out;
    /* a missing index is refused before the model loads, naming the flag and the path */
    assert_int_equal(tu_bee_run(&out, "serve -m %s --port 0 --index %s/nope.sqlite", g_model, tu_tmpdir()), 1);
    assert_non_null(strstr(out, "--index"));
    assert_non_null(strstr(out, "nope.sqlite"));
    free(out);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "BEE_INDEX=%s/nope2.sqlite %s serve -m %s --port 0", tu_tmpdir(), tu_bee(), g_model);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "nope2.sqlite"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "serve --help"), 0);
    assert_non_null(strstr(out, "--index"));
    assert_non_null(strstr(out, "BEE_INDEX"));
    free(out);
}

int main(void) {
    if (!bee_serve_available()) {
        fprintf(stderr, "SKIP: bee was built without libmicrohttpd\n");
        return 77;
    }
#ifndef BEE_HAVE_SQLITE
    fprintf(stderr, "SKIP: bee was built without SQLite\n");
    return 77;
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_search_matches_cli), cmocka_unit_test(test_search_bad_input),
        cmocka_unit_test(test_no_index),           cmocka_unit_test(test_ask_matches_cli),
        cmocka_unit_test(test_ask_bad_input),      cmocka_unit_test(test_policy),
        cmocka_unit_test(test_cli_index_flag),     cmocka_unit_test(test_ask_feedback),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
