/* bee eval: metrics against hand-computed values, every dataset reader on
 * small inline files, task rendering and few-shot draws, answer
 * log-likelihoods against an incremental (KV-cached) forward pass, the
 * resumable cache, and `bee eval` end to end over three quantizations. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "eval/eval.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "serve/serve.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"

/* ================================================================ metrics */

static void test_tokenize(void **s) {
    (void)s;
    bee_eval_toks t;
    assert_int_equal(bee_eval_tokenize("Hello, World! 北京。ＡＢ1", &t), 0);
    assert_int_equal(t.n, 5);
    assert_string_equal(t.v[0], "hello");
    assert_string_equal(t.v[1], "world");
    assert_string_equal(t.v[2], "北");
    assert_string_equal(t.v[3], "京");
    assert_string_equal(t.v[4], "ab1");
    bee_eval_toks_free(&t);
}

static void test_metrics(void **s) {
    (void)s;
    assert_true(bee_metric_em("The Cat.", "cat") == 1.0);
    assert_true(bee_metric_em("北京", "北京市") == 0.0);
    assert_true(bee_metric_em("“北京”", "北京") == 1.0);
    assert_true(bee_metric_em("", "") == 1.0);
    /* 北京市 vs 北京: 2 common, P = 2/3, R = 1 */
    assert_true(fabs(bee_metric_f1("北京市", "北京") - 0.8) < 1e-12);
    /* [cat sat on mat] vs [cat on mat]: P = 3/4, R = 1 */
    assert_true(fabs(bee_metric_f1("the cat sat on mat", "a cat on the mat") - 6.0 / 7.0) < 1e-12);
    assert_true(bee_metric_f1("abc", "") == 0.0);
    assert_true(bee_metric_f1("x y", "z") == 0.0);
    /* multiset: the duplicate counts once per occurrence in both */
    assert_true(fabs(bee_metric_f1("好好好", "好") - 0.5) < 1e-12);
    /* LCS(我爱北京天安门, 北京的天安门) = 北京天安门 = 5: P = 5/7, R = 5/6 */
    assert_true(fabs(bee_metric_rouge_l("我爱北京天安门", "北京的天安门") - 50.0 / 65.0) < 1e-12);
    assert_true(fabs(bee_metric_rouge_l("x y z w", "x z y w") - 0.75) < 1e-12);
    assert_true(bee_metric_rouge_l("北京", "上海") == 0.0);
    /* F1 ignores order, ROUGE-L does not */
    assert_true(bee_metric_f1("京北", "北京") == 1.0);
    assert_true(fabs(bee_metric_rouge_l("京北", "北京") - 0.5) < 1e-12);
}

static void test_stat(void **s) {
    (void)s;
    bee_stat st = {0};
    double xs[] = {1, 0, 1, 1};
    for (int i = 0; i < 4; i++) bee_stat_add(&st, xs[i]);
    assert_true(fabs(st.mean - 0.75) < 1e-12);
    /* sample variance 0.25, se = sqrt(0.25 / 4) */
    assert_true(fabs(bee_stat_se(&st) - 0.25) < 1e-12);
    bee_stat one = {0};
    bee_stat_add(&one, 3);
    assert_true(bee_stat_se(&one) == 0);
}

/* ================================================================ readers */

static const char *fixture(const char *name, const char *text) {
    const char *p = tu_tmp(name);
    tu_write(p, text, strlen(text));
    return p;
}

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static void test_read_csv(void **s) {
    (void)s;
    json_t *a = bee_read_csv(fixture("a.csv", ",Question,A,B,C,D,Answer\n0,\"He said \"\"hi\"\", then\",a,\"b\nline\",c,d,A\r\n\n1,q,1,2,3,4,B\n"));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 2);
    json_t *r0 = json_array_get(a, 0);
    assert_string_equal(str(r0, "Question"), "He said \"hi\", then");
    assert_string_equal(str(r0, "B"), "b\nline");
    assert_string_equal(str(r0, "id"), "0");
    assert_string_equal(str(json_array_get(a, 1), "Answer"), "B");
    json_decref(a);
    assert_null(bee_read_csv(fixture("b.csv", ",Q,A\n0,\"open,x\n")));
    assert_non_null(strstr(bee_error_message(), "b.csv:2: unterminated"));
    assert_null(bee_read_csv(fixture("c.csv", ",Q,A\n0,x,y\n1,x\n")));
    assert_non_null(strstr(bee_error_message(), "c.csv:3: 2 fields"));
}

static void test_read_gaokao(void **s) {
    (void)s;
    const char *j = "{\"keywords\":\"x\",\"example\":["
                    "{\"year\":\"2010\",\"question\":\"1．题干 A.B 型（　）\\nA．甲  B．乙\\nC．丙　D．丁\\n\",\"answer\":[\"B\"],\"analysis\":\"secret\",\"index\":0},"
                    "{\"question\":\"2．多选\\nA．1 B．2 C．3 D．4\",\"answer\":[\"A\",\"B\"],\"analysis\":\"y\",\"index\":1}]}";
    json_t *a = bee_read_gaokao(fixture("g.json", j));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 1); /* the multi-answer item is skipped */
    json_t *r = json_array_get(a, 0);
    assert_string_equal(str(r, "question"), "1．题干 A.B 型（　）");
    assert_string_equal(str(r, "A"), "甲");
    assert_string_equal(str(r, "B"), "乙");
    assert_string_equal(str(r, "C"), "丙");
    assert_string_equal(str(r, "D"), "丁");
    assert_string_equal(str(r, "answer"), "B");
    assert_null(json_object_get(r, "analysis"));
    json_decref(a);
    assert_null(bee_read_gaokao(fixture("g2.json", "{\"example\": 3}")));
    assert_non_null(strstr(bee_error_message(), "g2.json"));
}

static void test_read_squad_jsonl_tsv(void **s) {
    (void)s;
    const char *sq = "{\"data\":[{\"paragraphs\":[{\"context\":\"北京是首都。\",\"qas\":[{\"id\":\"q1\",\"question\":\"首都是？\","
                     "\"answers\":[{\"text\":\"北京\",\"answer_start\":0},{\"text\":\"北京市\"}]}]}]}]}";
    json_t *a = bee_read_squad(fixture("s.json", sq));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 1);
    json_t *r = json_array_get(a, 0);
    assert_string_equal(str(r, "context"), "北京是首都。");
    assert_string_equal(str(r, "answer"), "北京");
    assert_int_equal(json_array_size(json_object_get(r, "answers")), 2);
    json_decref(a);
    assert_null(bee_read_squad(fixture("s2.json", "{\"data\":[{\"paragraphs\":[{\"qas\":[]}]}]}")));
    assert_non_null(strstr(bee_error_message(), "s2.json"));

    a = bee_read_jsonl(fixture("j.jsonl", "{\"q\":\"x\",\"a\":\"1\"}\n\n{\"q\":\"y\",\"a\":2}\n"));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 2);
    json_decref(a);
    assert_null(bee_read_jsonl(fixture("j2.jsonl", "{\"q\":1}\n[1]\n")));
    assert_non_null(strstr(bee_error_message(), "j2.jsonl:2:"));

    json_t *cols = json_pack("[sss]", "task", "abstract", "title");
    a = bee_read_tsv(fixture("t.tsv", "to title\t摘要一\t标题一\r\nto title\t摘要二\t标题二\n"), cols);
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(str(json_array_get(a, 0), "title"), "标题一");
    assert_string_equal(str(json_array_get(a, 1), "abstract"), "摘要二");
    json_decref(a);
    assert_null(bee_read_tsv(fixture("t2.tsv", "a\tb\tc\nonly\n"), cols));
    assert_non_null(strstr(bee_error_message(), "t2.tsv:2:"));
    json_decref(cols);
}

/* The real files in ../shared/data, when present. */
static void test_read_shared_data(void **s) {
    (void)s;
    const char *d = tu_shared("data/gaokao-bench/2010-2022_History_MCQs.json");
    if (!bee_file_exists(d)) {
        fprintf(stderr, "SKIP: %s not found\n", d);
        skip();
    }
    json_t *a = bee_read_gaokao(d);
    assert_non_null(a);
    /* 287 single-answer items; a few have options the splitter cannot find */
    assert_true(json_array_size(a) >= 280);
    json_decref(a);
    a = bee_read_csv(tu_shared("data/cmmlu/data/dev/agronomy.csv"));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 5);
    assert_string_equal(str(json_array_get(a, 0), "Answer"), "C");
    json_decref(a);
    a = bee_read_squad(tu_shared("data/cmrc2018/cmrc2018_dev.json"));
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 3219);
    json_decref(a);
    json_t *cols = json_pack("[sss]", "task", "abstract", "title");
    a = bee_read_tsv(tu_shared("data/csl/ts_dev.tsv"), cols);
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 1000);
    json_decref(a);
    json_decref(cols);
}

/* ================================================================ tasks */

static const char *task_file(void) {
    fixture("qa.jsonl", "{\"q\":\"一\",\"a\":\"1\"}\n{\"q\":\"二\",\"a\":\"2\"}\n{\"q\":\"三\",\"a\":\"3\"}\n{\"q\":\"四\",\"a\":\"4\"}\n");
    return fixture("qa.json", "{\"name\":\"qa\",\"type\":\"mc\",\"reader\":\"jsonl\",\"path\":\"qa.jsonl\",\"shots\":2,"
                              "\"template\":\"{q}={{\",\"target\":\"{a}}}\",\"choices\":[\"1\",\"2\",\"3\",\"4\"],\"gold\":\"{a}\"}");
}

static void test_task(void **s) {
    (void)s;
    bee_task t;
    assert_int_equal(bee_task_load(&t, task_file(), ".", tu_tmpdir(), -1), 0);
    assert_string_equal(t.name, "qa");
    assert_int_equal(json_array_size(t.samples), 4);
    assert_int_equal(t.metrics, BEE_METRIC_ACC | BEE_METRIC_ACC_NORM);
    char *p = bee_task_prompt(&t, 1, 7), *p2 = bee_task_prompt(&t, 1, 7);
    assert_string_equal(p, p2); /* fixed seed, fixed draw */
    assert_non_null(strstr(p, "二={"));
    assert_null(strstr(p, "二={2}")); /* the item never shows its own answer */
    int shots = 0;
    for (const char *q = p; (q = strstr(q, "}\n\n")); q++) shots++;
    assert_int_equal(shots, 2);
    int differs = 0;
    for (uint64_t seed = 1; seed < 20; seed++) {
        char *o = bee_task_prompt(&t, 1, seed);
        differs |= strcmp(o, p) != 0;
        free(o);
    }
    assert_true(differs);
    free(p);
    free(p2);
    bee_task_free(&t);
    /* bad definitions name the file and field */
    const char *bad = fixture("bad.json", "{\"type\":\"mc\",\"reader\":\"jsonl\",\"path\":\"qa.jsonl\",\"template\":\"{q}\","
                                          "\"choices\":[\"1\",\"2\"],\"gold\":\"{a}\",\"metrics\":[\"bleu\"]}");
    assert_int_equal(bee_task_load(&t, bad, ".", tu_tmpdir(), -1), -1);
    assert_non_null(strstr(bee_error_message(), "bad.json: metrics[0]"));
    bee_task_free(&t);
    assert_int_equal(bee_task_load(&t, "no-such-task", tu_tmpdir(), tu_tmpdir(), -1), -1);
    bee_task_free(&t);
    json_t *smp = json_pack("{s:s}", "x", "1");
    char *r = bee_task_render("{y}", smp, "here");
    assert_null(r);
    assert_non_null(strstr(bee_error_message(), "{y}"));
    json_decref(smp);
}

/* ================================================================ scoring */

static const char *model_path(const char *type) {
    static char paths[3][4096];
    int k = !strcmp(type, "f32") ? 0 : !strcmp(type, "q8_0") ? 1 : 2;
    if (!paths[k][0]) {
        char cmd[16384], *out = NULL;
        snprintf(paths[k], sizeof paths[k], "%s", tu_tmp(k == 0 ? "m_f32.gguf" : k == 1 ? "m_q8_0.gguf" : "m_q4_0.gguf"));
        if (k == 0) snprintf(cmd, sizeof cmd, "%s init -o %s --seed 5", tu_bee(), paths[k]);
        else snprintf(cmd, sizeof cmd, "%s quantize %s %s --type %s", tu_bee(), model_path("f32"), paths[k], type);
        if (tu_run(cmd, &out)) fail_msg("%s: %s", cmd, out);
        free(out);
    }
    return paths[k];
}

static double log_softmax_ref(const float *x, size_t w, int32_t t) {
    double mx = x[0], sum = 0;
    for (size_t v = 1; v < w; v++) mx = x[v] > mx ? x[v] : mx;
    for (size_t v = 0; v < w; v++) sum += exp(x[v] - mx);
    return x[t] - mx - log(sum);
}

/* The same sum computed token by token through the KV cache. */
static double loglik_incremental(const bee_model *m, const char *prompt, const char *answer) {
    bee_eval_enc e;
    assert_int_equal(bee_eval_enc_init(m, prompt, answer, &e), 0);
    size_t w = m->hp.n_vocab + e.ext_ids.n, n0 = e.n_prefix + 1;
    float *logits = malloc(w * sizeof *logits);
    bee_seq sq;
    assert_int_equal(bee_seq_init(&sq, m, 4, e.seg_rel, e.n_seg_rel), 0);
    bee_seq *sp[1] = {&sq};
    bee_ext ext = {e.ext_ids.v, e.ext_subs.v, e.ext_ids.n};
    const bee_token *tp[1] = {e.tokens};
    assert_int_equal(bee_forward(m, sp, tp, &n0, 1, &ext, BEE_LOGITS_LAST, logits, NULL), 0);
    double ll = 0;
    for (size_t i = 1; i < e.n - e.n_prefix; i++) {
        ll += log_softmax_ref(logits, w, e.target[i]);
        size_t one = 1;
        tp[0] = &e.tokens[e.n_prefix + i];
        assert_int_equal(bee_forward(m, sp, tp, &one, 1, &ext, BEE_LOGITS_LAST, logits, NULL), 0);
    }
    bee_seq_free(&sq);
    free(logits);
    bee_eval_enc_free(&e);
    return ll;
}

static void test_loglik(void **s) {
    (void)s;
    bee_model *m;
    assert_int_equal(bee_model_load(model_path("f32"), &m), 0);
    const char *opts[] = {"北京", "上海市", "hello <b>", "天"};
    for (int k = 0; k < 4; k++) {
        double ll;
        size_t n;
        assert_int_equal(bee_eval_loglik(m, "中国的首都是哪里？<<答案>>", opts[k], &ll, &n), 0);
        assert_true(n >= 1);
        assert_true(ll < 0);
        double ref = loglik_incremental(m, "中国的首都是哪里？<<答案>>", opts[k]);
        if (fabs(ll - ref) > 1e-3) fail_msg("option %d: one pass %.6f, incremental %.6f", k, ll, ref);
    }
    char *g = NULL;
    assert_int_equal(bee_eval_generate(m, "你好", 3, &g), 0);
    assert_non_null(g);
    free(g);
    bee_model_free(m);
}

/* ================================================================ runs */

static const char *models_file(int n) {
    char j[16384];
    snprintf(j, sizeof j, "[{\"name\":\"f32\",\"path\":\"%s\"}%s%s%s%s%s]", model_path("f32"), n > 1 ? ",{\"name\":\"q8_0\",\"path\":\"" : "",
             n > 1 ? model_path("q8_0") : "", n > 1 ? "\"},{\"name\":\"q4_0\",\"path\":\"" : "", n > 1 ? model_path("q4_0") : "",
             n > 1 ? "\"}" : "");
    return fixture(n > 1 ? "models3.json" : "models1.json", j);
}

__attribute__((noinline)) static char *slurp(const char *dir, const char *name) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    char *text = NULL;
    size_t n = 0;
    int rc = bee_read_file(p, &text, &n);
    assert_int_equal(rc, 0);
    return text;
}

/* MC picks the option with the highest summed log-likelihood. */
static void test_mc_pick(void **s) {
    (void)s;
    const char *out = tu_tmp("run_mc");
    task_file();
    bee_eval_opts o = {models_file(1), tu_tmp("qa.json"), out, ".", tu_tmpdir(), 0, 0, 1, 1, 1};
    bee_eval_stats st;
    if (bee_eval_run(&o, &st)) fail_msg("%s", bee_error_message());
    assert_int_equal(st.computed, 4);
    char *jl = slurp(out, "samples/f32__qa.jsonl");
    bee_model *m;
    assert_int_equal(bee_model_load(model_path("f32"), &m), 0);
    int lines = 0;
    for (char *p = jl, *nl; (nl = strchr(p, '\n')); p = nl + 1, lines++) {
        json_t *rec = json_loadb(p, (size_t)(nl - p), 0, NULL);
        assert_non_null(rec);
        const char *prompt = str(rec, "prompt");
        int best = -1;
        double bv = -INFINITY;
        for (int k = 0; k < 4; k++) {
            char opt[2] = {(char)('1' + k), 0};
            double ll;
            size_t n;
            assert_int_equal(bee_eval_loglik(m, prompt, opt, &ll, &n), 0);
            assert_true(fabs(ll - json_real_value(json_array_get(json_object_get(rec, "scores"), (size_t)k))) < 1e-9);
            if (ll > bv) bv = ll, best = k;
        }
        char want[2] = {(char)('1' + best), 0};
        assert_string_equal(str(rec, "prediction"), want);
        double acc = json_real_value(json_object_get(json_object_get(rec, "metrics"), "acc"));
        assert_true(acc == (strcmp(want, str(rec, "gold")) == 0 ? 1.0 : 0.0));
        json_decref(rec);
    }
    assert_int_equal(lines, 4);
    bee_model_free(m);
    free(jl);
}

/* A second run computes nothing and writes the same results; a run cut
 * short (cache with a torn last line) recomputes only what is missing. */
static void test_cache_resume(void **s) {
    (void)s;
    const char *out = tu_tmp("run_cache");
    bee_eval_opts o = {models_file(1), "sanity,sanity-gen", out, ".", ".", 4, -1, 3, 1, 1};
    bee_eval_stats st;
    assert_int_equal(bee_eval_run(&o, &st), 0);
    assert_int_equal(st.computed, 8);
    assert_int_equal(st.cached, 0);
    char *r1 = slurp(out, "results.json"), *s1 = slurp(out, "samples/f32__sanity.jsonl");
    char *g1 = slurp(out, "samples/f32__sanity-gen.jsonl");
    /* every generation record carries a non-empty prediction */
    int preds = 0;
    for (const char *p = g1; (p = strstr(p, "\"prediction\":\"")); p++) preds += p[14] != '"';
    assert_int_equal(preds, 4);
    free(g1);
    assert_int_equal(bee_eval_run(&o, &st), 0);
    assert_int_equal(st.computed, 0);
    assert_int_equal(st.cached, 8);
    char *r2 = slurp(out, "results.json"), *s2 = slurp(out, "samples/f32__sanity.jsonl");
    assert_string_equal(r1, r2);
    assert_string_equal(s1, s2);
    /* keep 3 records and half of the 4th */
    char *c = slurp(out, "cache.jsonl"), *p = c;
    for (int k = 0; k < 3; k++) p = strchr(p, '\n') + 1;
    char cp[4200];
    snprintf(cp, sizeof cp, "%s/cache.jsonl", out);
    tu_write(cp, c, (size_t)(p - c) + (strchr(p, '\n') - p) / 2);
    assert_int_equal(bee_eval_run(&o, &st), 0);
    assert_int_equal(st.cached, 3);
    assert_int_equal(st.computed, 5);
    char *r3 = slurp(out, "results.json");
    assert_string_equal(r1, r3);
    /* another seed draws other few-shot examples: new prompts, new keys */
    o.seed = 4;
    assert_int_equal(bee_eval_run(&o, &st), 0);
    assert_true(st.computed > 0);
    free(c);
    free(r1), free(r2), free(r3), free(s1), free(s2);
}

/* Reads one HTTP request (head and Content-Length body) into req, NUL-terminated. */
static void recv_request(int c, char *req, size_t cap) {
    size_t got = 0;
    req[0] = 0;
    for (ssize_t r; got < cap - 1 && (r = recv(c, req + got, cap - 1 - got, 0)) > 0;) {
        got += (size_t)r;
        req[got] = 0;
        char *h = strstr(req, "\r\n\r\n"), *cl = strstr(req, "Content-Length: ");
        if (h && cl && got >= (size_t)(h + 4 - req) + strtoul(cl + 16, NULL, 10)) break;
    }
}

/* A fake OpenAI-compatible server: answers n requests, the first chunked;
 * a request without the expected key gets 401. */
static void fake_server(int lfd, int n) {
    for (int k = 0; k < n; k++) {
        int c = accept(lfd, NULL, NULL);
        char req[65536];
        recv_request(c, req, sizeof req);
        const char *body = strstr(req, "北京”重复") ? "{\"choices\":[{\"text\":\" 北京。\"}]}" : "{\"choices\":[{\"text\":\"x\"}]}";
        char resp[1024];
        if (!strstr(req, "POST /api/v1/completions") || !strstr(req, "Authorization: Bearer sekrit"))
            snprintf(resp, sizeof resp, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}");
        else if (strstr(req, "\"echo\":true")) /* no prompt scoring here: the client falls back to generation */
            snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\nContent-Length: 26\r\n\r\n{\"error\":{\"message\":\"no\"}}");
        else if (k == 0)
            snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n", strlen(body), body);
        else
            snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
        if (write(c, resp, strlen(resp)) < 0) _exit(1);
        close(c);
    }
    _exit(0);
}

/* A listening socket on a free loopback port; *port gets the port. */
static int listen_loopback(int backlog, int *port) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, backlog), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return lfd;
}

static void test_remote_model(void **s) {
    (void)s;
    int port;
    int lfd = listen_loopback(8, &port);
    pid_t pid = fork();
    if (pid == 0) fake_server(lfd, 4); /* echo probe (refused), mc by generation, gen, the unauthorised one */
    close(lfd);
    char j[512];
    snprintf(j, sizeof j, "[{\"name\":\"far\",\"type\":\"openai\",\"base_url\":\"http://127.0.0.1:%d/api/\",\"model\":\"m\","
             "\"api_key_env\":\"BEE_TEST_KEY\",\"timeout_s\":20}]", port);
    setenv("BEE_TEST_KEY", "sekrit", 1);
    const char *out = tu_tmp("run_remote");
    bee_eval_opts o = {fixture("remote.json", j), "sanity,sanity-gen", out, ".", ".", 1, 0, 1, 1, 1};
    bee_eval_stats st;
    int rc = bee_eval_run(&o, &st);
    if (rc) fail_msg("%s", bee_error_message());
    /* the mc item starts its answer with option A (北京), the gen answer matches the gold */
    char *mc = slurp(out, "samples/far__sanity.jsonl"), *gen = slurp(out, "samples/far__sanity-gen.jsonl");
    assert_non_null(strstr(mc, "\"prediction\":\"A\""));
    assert_non_null(strstr(mc, "\"acc\":1.0"));
    assert_non_null(strstr(mc, "scored by generated text"));
    assert_non_null(strstr(gen, "\"prediction\":\" 北京。\""));
    assert_non_null(strstr(gen, "\"em\":1.0"));
    free(mc), free(gen);
    /* the third request lacks the key: the error names the endpoint and status */
    unsetenv("BEE_TEST_KEY");
    o.out_dir = tu_tmp("run_remote2");
    assert_int_equal(bee_eval_run(&o, &st), -1);
    assert_non_null(strstr(bee_error_message(), "BEE_TEST_KEY"));
    setenv("BEE_TEST_KEY", "wrong", 1);
    assert_int_equal(bee_eval_run(&o, &st), -1);
    assert_non_null(strstr(bee_error_message(), "HTTP 401"));
    int ws;
    waitpid(pid, &ws, 0);
    assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
}


/* ================================================================ corpus readers, unigram, YAML */

static size_t nchars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static const char *k_poems =
    "{\"title\":\"甲\",\"author\":\"某\",\"lines\":[\"一二三四五。\",\"六七八九十。\",\"子丑寅卯辰。\"]}\n"
    "{\"title\":\"乙\",\"author\":\"某\",\"lines\":[\"春眠不觉晓。\",\"处处闻啼鸟。\"]}\n"
    "{\"title\":\"丙\",\"author\":\"某\",\"lines\":[\"夜来风雨声。\",\"花落知多少。\"]}\n"
    "{\"title\":\"丁\",\"author\":\"某\",\"lines\":[\"床前明月光。\",\"疑是地上霜。\"]}\n"
    "{\"title\":\"戊\",\"author\":\"某\",\"lines\":[\"长长长长长长长。\",\"短。\"]}\n";

/* Which poem (index in k_poems' order) a line comes from, or -1. */
static int poem_of(json_t *poems, const char *line) {
    json_t *p, *l;
    size_t i, k;
    json_array_foreach(poems, i, p) json_array_foreach(json_object_get(p, "lines"), k, l) if (!strcmp(json_string_value(l), line)) return (int)i;
    return -1;
}

static void test_read_nextline(void **s) {
    (void)s;
    const char *path = fixture("poems.jsonl", k_poems);
    json_t *poems = bee_read_jsonl(path);
    bee_nextline_opts o = {1, 2, 3, 1, 7};
    json_t *a = bee_read_nextline(path, &o), *b = bee_read_nextline(path, &o), *it;
    assert_non_null(a);
    /* the last poem's "短。" has no other 2-character line: 4 items, one per other poem */
    assert_int_equal(json_array_size(a), 4);
    assert_true(json_equal(a, b)); /* fixed seed, fixed draw */
    size_t i;
    json_array_foreach(a, i, it) {
        const char *next = str(it, "next"), *ans = str(it, "answer");
        int src = poem_of(poems, next);
        assert_int_equal(src, (int)i);
        json_t *lines = json_object_get(json_array_get(poems, i), "lines");
        size_t k = (size_t)json_integer_value(json_object_get(it, "line"));
        assert_true(k >= 1 && k < json_array_size(lines));
        assert_string_equal(json_string_value(json_array_get(lines, k)), next);
        /* context: the (up to) 2 lines before */
        char want[256];
        snprintf(want, sizeof want, "%s%s%s", k >= 2 ? json_string_value(json_array_get(lines, k - 2)) : "", k >= 2 ? "\n" : "",
                 json_string_value(json_array_get(lines, k - 1)));
        assert_string_equal(str(it, "context"), want);
        assert_string_equal(str(it, ans), next); /* the answer letter names the true line */
        const char *letters[] = {"A", "B", "C", "D"};
        for (int q = 0; q < 4; q++) {
            const char *opt = str(it, letters[q]);
            assert_int_equal(nchars(opt), nchars(next)); /* same length */
            for (int r = 0; r < q; r++) assert_string_not_equal(opt, str(it, letters[r]));
            if (strcmp(letters[q], ans)) assert_int_not_equal(poem_of(poems, opt), (int)i); /* from another poem */
        }
    }
    /* other seeds draw other distractors or places */
    int differs = 0;
    for (uint64_t seed = 8; seed < 20; seed++) {
        o.seed = seed;
        json_t *c = bee_read_nextline(path, &o);
        differs |= !json_equal(a, c);
        json_decref(c);
    }
    assert_true(differs);
    json_decref(a), json_decref(b), json_decref(poems);
    /* a text file: every line after the first is an item, distractors are other lines */
    path = fixture("verses.txt", "In the beginning.\nAnd the earth.\n\nAnd God said.\nAnd there was light.\nAnd God saw.\n");
    bee_nextline_opts ol = {0, 1, 3, 0, 3};
    a = bee_read_nextline(path, &ol);
    assert_non_null(a);
    assert_int_equal(json_array_size(a), 4);
    assert_string_equal(str(json_array_get(a, 0), "context"), "In the beginning.");
    assert_string_equal(str(json_array_get(a, 0), "next"), "And the earth.");
    assert_string_equal(str(json_array_get(a, 3), "context"), "And there was light.");
    json_array_foreach(a, i, it) assert_string_equal(str(it, str(it, "answer")), str(it, "next"));
    json_decref(a);
    /* bad input names the file and line */
    path = fixture("badpoems.jsonl", "{\"title\":\"x\",\"lines\":[\"a\",\"b\"]}\n{\"title\":\"y\",\"lines\":\"ab\"}\n");
    assert_null(bee_read_nextline(path, &o));
    assert_non_null(strstr(bee_error_message(), "badpoems.jsonl:2: \"lines\""));
    /* chunks of at least 5 characters (a line counts its newline) */
    a = bee_read_chunks(fixture("chunks.txt", "一二三\n四五\n\n六七八九\n十"), 5);
    assert_int_equal(json_array_size(a), 3);
    assert_string_equal(str(json_array_get(a, 0), "text"), "一二三\n四五");
    assert_string_equal(str(json_array_get(a, 1), "text"), "六七八九");
    assert_string_equal(str(json_array_get(a, 2), "text"), "十");
    json_decref(a);
}

static void test_unigram(void **s) {
    (void)s;
    bee_unigram *u;
    assert_int_equal(bee_unigram_load(fixture("uni.txt", "x y, X z\n"), &u), 0);
    /* N = 4 tokens, V = 3 types: p(x) = 3/8, p(y) = 2/8, unseen 1/8 */
    double ll;
    size_t n;
    assert_int_equal(bee_unigram_logprob(u, "x w", &ll, &n), 0);
    assert_int_equal(n, 2);
    assert_true(fabs(ll - (log(3.0 / 8) + log(1.0 / 8))) < 1e-12);
    assert_true(fabs(bee_unigram_token_logprob(u, "y") - log(2.0 / 8)) < 1e-12);
    assert_int_equal(bee_unigram_logprob(u, "。", &ll, &n), 0);
    assert_int_equal(n, 0);
    assert_true(ll == 0);
    bee_unigram_free(u);
    assert_int_equal(bee_unigram_load(fixture("uni0.txt", "，。\n"), &u), -1);
    assert_non_null(strstr(bee_error_message(), "uni0.txt: no tokens"));
    assert_int_equal(bee_unigram_load(tu_tmp("no-such.txt"), &u), -1);
}

static void test_yaml(void **s) {
    (void)s;
    if (!bee_yaml_available()) {
        json_t *j = bee_yaml_load_file(fixture("m.yaml", "a: 1\n"));
        assert_null(j);
        assert_non_null(strstr(bee_error_message(), "without libyaml"));
        fprintf(stderr, "SKIP: built without libyaml (the error says so; checked)\n");
        skip();
    }
    const char *y = fixture("m.yaml", "# two models\nmodels:\n  - name: m1\n    path: \"x.gguf\"\n    timeout_s: 30\n"
                                      "  - {name: m2, type: openai, base_url: 'http://h:1', api_key_env: K, on: true, x: ~, r: 0.5}\n"
                                      "  - name: \"007\"\n    path: 12\n");
    json_t *got = bee_yaml_load_file(y), *want = json_loads(
        "{\"models\":[{\"name\":\"m1\",\"path\":\"x.gguf\",\"timeout_s\":30},{\"name\":\"m2\",\"type\":\"openai\",\"base_url\":"
        "\"http://h:1\",\"api_key_env\":\"K\",\"on\":true,\"x\":null,\"r\":0.5},{\"name\":\"007\",\"path\":12}]}", 0, NULL);
    assert_non_null(got);
    if (!json_equal(got, want)) fail_msg("%s", json_dumps(got, 0));
    json_decref(got), json_decref(want);
    assert_null(bee_yaml_load_file(fixture("bad.yaml", "models:\n  - name: [unclosed\n  - x\n")));
    assert_non_null(strstr(bee_error_message(), "bad.yaml:"));
    assert_null(bee_yaml_load_file(fixture("dup.yaml", "a: 1\nb: 2\na: 3\n")));
    assert_non_null(strstr(bee_error_message(), "dup.yaml:3: key 'a' given twice"));
    assert_null(bee_yaml_load_file(fixture("alias.yaml", "a: &x 1\nb: *x\n")));
    assert_non_null(strstr(bee_error_message(), "alias.yaml:2: aliases"));
    /* model-list fields that do not fit are named */
    bee_eval_stats st0;
    bee_eval_opts ob = {fixture("lu.json", "[{\"name\":\"u\",\"type\":\"unigram\",\"path\":\"x\",\"lora\":\"y\"}]"), "sanity",
                        tu_tmp("run_lu"), ".", ".", 1, 0, 1, 1, 1, NULL};
    assert_int_equal(bee_eval_run(&ob, &st0), -1);
    assert_non_null(strstr(bee_error_message(), "lu.json: models[0]: \"lora\" applies to local models only"));
    ob.models_path = fixture("ty.json", "[{\"name\":\"u\",\"type\":\"llama\",\"path\":\"x\"}]");
    assert_int_equal(bee_eval_run(&ob, &st0), -1);
    assert_non_null(strstr(bee_error_message(), "\"local\", \"openai\" or \"unigram\""));
    ob.models_path = fixture("nofile.json", "[{\"name\":\"u\",\"type\":\"unigram\",\"path\":\"/no/such/uni.txt\"}]");
    assert_int_equal(bee_eval_run(&ob, &st0), -1);
    assert_non_null(strstr(bee_error_message(), "/no/such/uni.txt"));
    /* through bee eval: a number where a string belongs is named */
    bee_eval_opts o = {fixture("m.yaml", "models:\n  - name: m1\n    path: x.gguf\n  - name: m2\n    path: y.gguf\n  - name: m3\n    path: 12\n"),
                       "sanity", tu_tmp("run_yaml_bad"), ".", ".", 1, 0, 1, 1, 1, NULL};
    bee_eval_stats st;
    assert_int_equal(bee_eval_run(&o, &st), -1);
    assert_non_null(strstr(bee_error_message(), "m.yaml: models[2]: \"path\" must be a string"));
}

/* Per-token log-probs: rolling windows agree with bee perplexity, the token
 * texts rebuild the answer, the top alternative is the row's maximum. */
static void test_token_logprobs(void **s) {
    (void)s;
    bee_model *m;
    assert_int_equal(bee_model_load(model_path("f32"), &m), 0);
    const char *text = "床前明月光，疑是地上霜。举头望明月，低头思故乡。The <b>quick</b> brown fox & 北京。";
    bee_eval_lps o;
    assert_int_equal(bee_eval_token_logprobs(m, NULL, text, 16, 3, &o), 0);
    bee_ppl_result pr;
    assert_int_equal(bee_perplexity(m, text, strlen(text), 16, &pr, NULL, NULL), 0);
    assert_int_equal(o.n - 1, pr.n_tokens);
    assert_true(o.n > 40); /* several windows of 16 */
    double sum = 0;
    char rebuilt[1024] = "";
    assert_true(isnan(o.lp[0]));
    for (size_t i = 0; i < o.n; i++) {
        assert_int_equal(o.offset[i], strlen(rebuilt));
        strcat(rebuilt, o.text[i]);
        if (i == 0) continue;
        sum += o.lp[i];
        assert_true(o.lp[i] <= o.top_lp[i * 3] + 1e-9);
        assert_true(o.top_lp[i * 3] >= o.top_lp[i * 3 + 1] && o.top_lp[i * 3 + 1] >= o.top_lp[i * 3 + 2]);
    }
    assert_string_equal(rebuilt, text);
    if (fabs(-sum - pr.nll) > 1e-6) fail_msg("token sum %.9f vs perplexity nll %.9f", -sum, pr.nll);
    bee_eval_lps_free(&o);
    /* with a context: the sum is bee_eval_loglik */
    double ll;
    size_t n;
    assert_int_equal(bee_eval_token_logprobs(m, "中国的首都是", "北京", 0, 0, &o), 0);
    assert_int_equal(bee_eval_loglik(m, "中国的首都是", "北京", &ll, &n), 0);
    assert_int_equal(n, o.n - 1);
    sum = 0;
    for (size_t i = 1; i < o.n; i++) sum += o.lp[i];
    assert_true(fabs(sum - ll) < 1e-12);
    bee_eval_lps_free(&o);
    bee_model_free(m);
}

/* "joiner" in a task file: "" joins the context lines directly (as the
 * training text writes a poem), any other string goes between them, the
 * draw stays the same; a non-string is refused, naming the field. */
static void load_joined(const char *joiner_json, bee_task *t, int want_rc) {
    char task[1024], path[4200];
    snprintf(path, sizeof path, "%s", tu_tmp("joiner.json"));
    snprintf(task, sizeof task,
             "{\"name\": \"j\", \"type\": \"mc\", \"reader\": \"nextline\", \"path\": \"verses.txt\", \"format\": "
             "\"lines\", \"context_lines\": 2, \"seed\": 3, \"template\": \"{context}\", \"choices\": [\"{A}\", "
             "\"{B}\", \"{C}\", \"{D}\"], \"gold\": \"{answer}\"%s%s}",
             joiner_json ? ", \"joiner\": " : "", joiner_json ? joiner_json : "");
    tu_write(path, task, strlen(task));
    int rc = bee_task_load_ex(t, path, NULL, tu_tmpdir(), NULL, -1);
    if (want_rc == 0 && rc) fail_msg("%s", bee_error_message());
    if (want_rc != 0) assert_int_not_equal(rc, 0);
}

static void test_task_joiner(void **s) {
    (void)s;
    fixture("verses.txt", "In the beginning.\nAnd the earth.\n\nAnd God said.\nAnd there was light.\nAnd God saw.\n");
    bee_task t0, t1, t2;
    load_joined(NULL, &t0, 0);
    load_joined("\"\"", &t1, 0);
    load_joined("\" / \"", &t2, 0);
    assert_int_equal(json_array_size(t0.samples), 4);
    assert_int_equal(json_array_size(t1.samples), 4);
    assert_string_equal(str(json_array_get(t0.samples, 1), "context"), "In the beginning.\nAnd the earth.");
    assert_string_equal(str(json_array_get(t1.samples, 1), "context"), "In the beginning.And the earth.");
    assert_string_equal(str(json_array_get(t2.samples, 1), "context"), "In the beginning. / And the earth.");
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(str(json_array_get(t1.samples, i), "next"), str(json_array_get(t0.samples, i), "next"));
        assert_string_equal(str(json_array_get(t1.samples, i), "answer"), str(json_array_get(t0.samples, i), "answer"));
    }
    bee_task_free(&t0), bee_task_free(&t1), bee_task_free(&t2);
    load_joined("5", &t0, -1);
    assert_non_null(strstr(bee_error_message(), "\"joiner\" must be a string"));
    bee_task_free(&t0); /* what the failed load had read */
}

/* Corpus tasks, when scripts/build-corpus.sh's output is there. */
static void test_corpus_tasks(void **s) {
    (void)s;
    const char *corpus = getenv("BEE_CORPUS") ? getenv("BEE_CORPUS") : BEE_SOURCE_DIR "/.cache/corpus";
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/poems-heldout.jsonl", corpus);
    if (!bee_file_exists(probe)) {
        fprintf(stderr, "SKIP: corpus not found at %s (scripts/build-corpus.sh)\n", corpus);
        skip();
    }
    const char *names[] = {"poem-nextline", "kjv-nextverse", "kjv-continue", "heldout-ppl"};
    size_t min_items[] = {1000, 84, 84, 40};
    for (int k = 0; k < 4; k++) {
        bee_task t;
        if (bee_task_load_ex(&t, names[k], BEE_SOURCE_DIR "/tasks", ".", corpus, -1)) fail_msg("%s: %s", names[k], bee_error_message());
        if (json_array_size(t.samples) < min_items[k]) fail_msg("%s: %zu items", names[k], json_array_size(t.samples));
        char *p = bee_task_prompt(&t, 0, 1);
        assert_non_null(p);
        free(p);
        bee_task_free(&t);
    }
    /* a missing corpus: the task is skipped with a message, code 2 */
    bee_task t;
    assert_int_equal(bee_task_load_ex(&t, "poem-nextline", BEE_SOURCE_DIR "/tasks", ".", tu_tmp("no-corpus"), -1), 2);
    assert_non_null(strstr(bee_error_message(), "scripts/build-corpus.sh"));
    bee_task_free(&t);
}

/* The same model evaluated locally and through an in-process bee serve
 * (echo + logprobs with bee_context): per-item scores within 1e-3, the same
 * predictions; perplexity the same too. */
static void test_local_vs_served(void **s) {
    (void)s;
    if (!bee_serve_available()) {
        fprintf(stderr, "SKIP: built without libmicrohttpd (no bee serve)\n");
        skip();
    }
    bee_serve_opts so;
    bee_serve_opts_default(&so);
    so.model_path = model_path("f32"), so.port = 0, so.threads = 1, so.parallel = 2, so.ctx = 1024;
    bee_server *srv;
    if (bee_server_start(&so, &srv) || bee_server_wait_ready(srv, 60)) fail_msg("server: %s", bee_error_message());
    char j[8192];
    snprintf(j, sizeof j, "[{\"name\":\"local\",\"path\":\"%s\"},{\"name\":\"served\",\"type\":\"openai\",\"base_url\":"
             "\"http://127.0.0.1:%d\",\"timeout_s\":120}]", model_path("f32"), bee_server_port(srv));
    task_file();
    /* about 650 characters: two windows of 512 tokens */
    char text[4096] = "";
    for (int k = 0; k < 26; k++) strcat(text, "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\\n");
    char tj[8192];
    snprintf(tj, sizeof tj, "{\"text\":\"%s\"}\n{\"text\":\"短文本。\"}\n", text);
    fixture("ppl.jsonl", tj);
    fixture("ppl.json", "{\"name\":\"ppl\",\"type\":\"ppl\",\"reader\":\"jsonl\",\"path\":\"ppl.jsonl\",\"template\":\"{text}\"}");
    char tasks[8192];
    snprintf(tasks, sizeof tasks, "sanity,%s,%s", tu_tmp("qa.json"), tu_tmp("ppl.json"));
    const char *out = tu_tmp("run_served");
    bee_eval_opts o = {fixture("served.json", j), tasks, out, ".", tu_tmpdir(), 6, 0, 1, 1, 1, NULL};
    bee_eval_stats st;
    int rc = bee_eval_run(&o, &st);
    /* the same through 4 requests in flight: byte-identical served records */
    const char *out4 = tu_tmp("run_served4");
    char j4[8192];
    snprintf(j4, sizeof j4, "[%s", strstr(j, "{\"name\":\"served\"")); /* the served model alone */
    bee_eval_opts o4 = {fixture("served4.json", j4), tasks, out4, ".", tu_tmpdir(), 6, 0, 1, 1, 1, NULL, 4};
    if (rc == 0) rc = bee_eval_run(&o4, &st);
    bee_server_stop(srv);
    if (rc) fail_msg("%s", bee_error_message());
    const char *tn[] = {"sanity", "qa", "ppl"};
    for (int k = 0; k < 3; k++) {
        char b[256];
        snprintf(b, sizeof b, "samples/served__%s.jsonl", tn[k]);
        char *l1 = slurp(out, b), *l4 = slurp(out4, b);
        if (strcmp(l1, l4)) fail_msg("%s: --concurrency 4 differs from 1", b);
        free(l1), free(l4);
    }
    size_t want_n[] = {6, 4, 2};
    for (int k = 0; k < 3; k++) {
        char a[256], b[256];
        snprintf(a, sizeof a, "samples/local__%s.jsonl", tn[k]);
        snprintf(b, sizeof b, "samples/served__%s.jsonl", tn[k]);
        char *la = slurp(out, a), *lb = slurp(out, b), *pa = la, *pb = lb;
        size_t items = 0;
        for (char *na, *nb; (na = strchr(pa, '\n')) && (nb = strchr(pb, '\n')); pa = na + 1, pb = nb + 1, items++) {
            json_t *ra = json_loadb(pa, (size_t)(na - pa), 0, NULL), *rb = json_loadb(pb, (size_t)(nb - pb), 0, NULL);
            assert_non_null(ra), assert_non_null(rb);
            if (k < 2) {
                json_t *sa = json_object_get(ra, "scores"), *sb = json_object_get(rb, "scores");
                assert_int_equal(json_array_size(sa), json_array_size(sb));
                assert_true(json_array_size(sa) >= 4);
                for (size_t q = 0; q < json_array_size(sa); q++) {
                    double x = json_real_value(json_array_get(sa, q)), y = json_real_value(json_array_get(sb, q));
                    if (!(fabs(x - y) < 1e-3)) fail_msg("%s item %zu option %zu: local %.6f, served %.6f", tn[k], items, q, x, y);
                }
                assert_string_equal(str(ra, "prediction"), str(rb, "prediction"));
                assert_string_equal(str(ra, "prediction_norm"), str(rb, "prediction_norm"));
                assert_non_null(strstr(str(rb, "scoring"), "bee serve echo"));
            } else {
                double x = json_real_value(json_object_get(ra, "nll")), y = json_real_value(json_object_get(rb, "nll"));
                assert_int_equal(json_integer_value(json_object_get(ra, "tokens")), json_integer_value(json_object_get(rb, "tokens")));
                if (!(fabs(x - y) < 1e-3)) fail_msg("ppl item %zu: local nll %.6f, served %.6f", items, x, y);
                if (items == 0) assert_true(json_integer_value(json_object_get(ra, "tokens")) > 512);
            }
            json_decref(ra), json_decref(rb);
        }
        assert_int_equal(items, want_n[k]);
        free(la), free(lb);
    }
}

/* A plain OpenAI-style server that echoes (ignoring the bee fields): one
 * token per character, its log-prob minus the sum of its bytes / 100 (the
 * first null), text_offset in characters; "tokens" only for prompts of an
 * even byte length, so both ways of finding the option's tokens are used.
 * Serves until killed. */
static void echo_server(int lfd) {
    for (;;) {
        int c = accept(lfd, NULL, NULL);
        if (c < 0) _exit(1);
        char req[65536];
        recv_request(c, req, sizeof req);
        json_t *body = json_loads(strstr(req, "\r\n\r\n") + 4, 0, NULL), *toks = json_array(), *lps = json_array(), *offs = json_array();
        const char *p = json_string_value(json_object_get(body, "prompt"));
        size_t chars = 0;
        for (size_t i = 0; p && p[i]; chars++) {
            size_t l = 1, sum = (unsigned char)p[i];
            while (((unsigned char)p[i + l] & 0xC0) == 0x80) sum += (unsigned char)p[i + l++];
            json_array_append_new(toks, json_stringn(p + i, l));
            json_array_append_new(lps, i ? json_real(-(double)sum / 100) : json_null());
            json_array_append_new(offs, json_integer((json_int_t)chars));
            i += l;
        }
        json_t *lp = json_pack("{s:o,s:o}", "token_logprobs", lps, "text_offset", offs);
        if (p && strlen(p) % 2 == 0) json_object_set_new(lp, "tokens", toks);
        else json_decref(toks);
        json_t *reply = json_pack("{s:[{s:s,s:o}]}", "choices", "text", p ? p : "", "logprobs", lp);
        char *txt = json_dumps(reply, JSON_COMPACT), hdr[256];
        snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", strlen(txt));
        if (write(c, hdr, strlen(hdr)) < 0 || write(c, txt, strlen(txt)) < 0) _exit(1);
        free(txt);
        json_decref(reply), json_decref(body);
        close(c);
    }
}

/* Against a server that echoes but knows no bee_context: each option is the
 * echo of prompt + option, its score the sum over the option's bytes. */
static void test_remote_openai_echo(void **s) {
    (void)s;
    int port;
    int lfd = listen_loopback(8, &port);
    pid_t pid = fork();
    if (pid == 0) echo_server(lfd);
    close(lfd);
    char j[512];
    snprintf(j, sizeof j, "[{\"name\":\"oa\",\"type\":\"openai\",\"base_url\":\"http://127.0.0.1:%d\",\"timeout_s\":20}]", port);
    const char *out = tu_tmp("run_oa");
    bee_eval_opts o = {fixture("oa.json", j), "sanity", out, ".", ".", 3, 0, 1, 1, 1, NULL};
    bee_eval_stats st;
    int rc = bee_eval_run(&o, &st);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    if (rc) fail_msg("%s", bee_error_message());
    char *jl = slurp(out, "samples/oa__sanity.jsonl");
    int lines = 0;
    for (char *p = jl, *nl; (nl = strchr(p, '\n')); p = nl + 1, lines++) {
        json_t *rec = json_loadb(p, (size_t)(nl - p), 0, NULL), *opts = json_object_get(rec, "options");
        assert_non_null(strstr(str(rec, "scoring"), "OpenAI echo"));
        for (size_t k = 0; k < json_array_size(opts); k++) {
            double want = 0;
            for (const unsigned char *b = (const unsigned char *)json_string_value(json_array_get(opts, k)); *b; b++) want -= *b / 100.0;
            double got = json_real_value(json_array_get(json_object_get(rec, "scores"), k));
            if (fabs(got - want) > 1e-9) fail_msg("item %d option %zu: %.6f, want %.6f", lines, k, got, want);
        }
        json_decref(rec);
    }
    assert_int_equal(lines, 3);
    free(jl);
}

/* ================================================================ retries and concurrency */

/* A threaded fake OpenAI server: FLAKY answers 503 twice (the first with
 * Retry-After: 0) then 200; BAD always 400; SLOW 200 after 20 ms; HANG reads
 * the request and says nothing for 2.5 s. Echo requests get 400 (no prompt
 * scoring: mc by generation); a completion's text is the prompt's length. It
 * counts requests and the most connections open at once. */
enum { SRV_FLAKY, SRV_BAD, SRV_SLOW, SRV_HANG };
#define SRV_THREADS 6

typedef struct {
    int lfd, port, mode;
    atomic_int requests, inflight, max_inflight;
    pthread_t th[SRV_THREADS];
} fake_srv;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts)) {}
}

static void *fake_srv_thread(void *arg) {
    fake_srv *f = arg;
    for (;;) {
        int c = accept(f->lfd, NULL, NULL);
        if (c < 0) return NULL; /* listening socket shut down */
        int now = atomic_fetch_add(&f->inflight, 1) + 1, m = atomic_load(&f->max_inflight);
        while (now > m && !atomic_compare_exchange_weak(&f->max_inflight, &m, now)) {}
        char req[65536];
        recv_request(c, req, sizeof req);
        int k = atomic_fetch_add(&f->requests, 1);
        char resp[1024], *h = strstr(req, "\r\n\r\n");
        json_t *body = h ? json_loads(h + 4, 0, NULL) : NULL;
        const char *prompt = json_string_value(json_object_get(body, "prompt"));
        if (f->mode == SRV_HANG) {
            sleep_ms(2500);
            resp[0] = 0;
        } else if (f->mode == SRV_BAD) {
            snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\nContent-Length: 25\r\n\r\n{\"error\":\"bad request!!\"}");
        } else if (f->mode == SRV_FLAKY && k < 2) {
            snprintf(resp, sizeof resp, "HTTP/1.1 503 Service Unavailable\r\n%sContent-Length: 2\r\n\r\n{}", k == 0 ? "Retry-After: 0\r\n" : "");
        } else if (strstr(req, "\"echo\":true")) {
            snprintf(resp, sizeof resp, "HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}");
        } else {
            char text[256];
            snprintf(text, sizeof text, "{\"choices\":[{\"text\":\"%zu\"}]}", prompt ? strlen(prompt) : 0);
            snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s", strlen(text), text);
        }
        json_decref(body);
        if (f->mode == SRV_SLOW) sleep_ms(20);
        if (resp[0] && write(c, resp, strlen(resp)) < 0) perror("fake server write");
        atomic_fetch_sub(&f->inflight, 1);
        close(c);
    }
}

static void fake_srv_start(fake_srv *f, int mode) {
    memset(f, 0, sizeof *f);
    f->mode = mode;
    int port;
    f->lfd = listen_loopback(64, &port);
    f->port = port;
    for (int i = 0; i < SRV_THREADS; i++) assert_int_equal(pthread_create(&f->th[i], NULL, fake_srv_thread, f), 0);
}

static void fake_srv_stop(fake_srv *f) {
    shutdown(f->lfd, SHUT_RDWR); /* wakes the accepts */
    for (int i = 0; i < SRV_THREADS; i++) pthread_join(f->th[i], NULL);
    close(f->lfd);
}

/* A model list with one remote model on the fake server; extra: more fields. */
static const char *srv_models(const fake_srv *f, const char *file, const char *extra) {
    char j[512];
    snprintf(j, sizeof j, "[{\"name\":\"flaky\",\"type\":\"openai\",\"base_url\":\"http://127.0.0.1:%d\",\"model\":\"srvm\"%s}]",
             f->port, extra);
    return fixture(file, j);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_remote_backoff(void **s) {
    (void)s;
    assert_true(fabs(bee_http_backoff_s(0, -1) - 0.25) < 1e-12);
    assert_true(fabs(bee_http_backoff_s(1, -1) - 0.5) < 1e-12);
    assert_true(fabs(bee_http_backoff_s(3, -1) - 2.0) < 1e-12);
    assert_true(fabs(bee_http_backoff_s(9, -1) - BEE_HTTP_BACKOFF_MAX_S) < 1e-12);
    assert_true(bee_http_backoff_s(2, 0) == 0);
    assert_true(fabs(bee_http_backoff_s(0, 3) - 3) < 1e-12);
    assert_true(fabs(bee_http_backoff_s(0, 60) - BEE_HTTP_BACKOFF_MAX_S) < 1e-12);
    int yes[] = {429, 500, 502, 503, 504}, no[] = {200, 400, 401, 403, 404, 422, 501};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) assert_true(bee_http_retryable(yes[i]));
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) assert_false(bee_http_retryable(no[i]));
}

/* 503, 503 (with and without Retry-After), then 200: the eval succeeds after
 * two retries; with "retries": 1 it fails naming the model and the status. */
static void test_remote_retry(void **s) {
    (void)s;
    fake_srv f;
    bee_eval_stats st;
    fake_srv_start(&f, SRV_FLAKY);
    const char *out = tu_tmp("run_retry");
    bee_eval_opts o = {srv_models(&f, "retry.json", ",\"timeout_s\":20"), "sanity-gen", out, ".", ".", 1, 0, 1, 1, 1, NULL, 1};
    double t0 = mono_s();
    int rc = bee_eval_run(&o, &st);
    double el = mono_s() - t0;
    fake_srv_stop(&f);
    if (rc) fail_msg("%s", bee_error_message());
    assert_int_equal(atomic_load(&f.requests), 3);
    assert_true(el >= 0.45 && el < 5); /* Retry-After: 0, then 0.25 s x 2^1 */
    char *jl = slurp(out, "samples/flaky__sanity-gen.jsonl");
    assert_non_null(strstr(jl, "\"prediction\":\""));
    free(jl);

    fake_srv_start(&f, SRV_FLAKY);
    o.models_path = srv_models(&f, "retry1.json", ",\"retries\":1");
    o.out_dir = tu_tmp("run_retry1");
    rc = bee_eval_run(&o, &st);
    fake_srv_stop(&f);
    assert_int_equal(rc, -1);
    const char *msg = bee_error_message();
    if (!strstr(msg, "HTTP 503") || !strstr(msg, "'srvm'") || !strstr(msg, "flaky / sanity-gen") || !strstr(msg, "/v1/completions"))
        fail_msg("unexpected error: %s", msg);
    assert_int_equal(atomic_load(&f.requests), 2);

    /* a bad "retries" is named */
    o.models_path = srv_models(&f, "retry2.json", ",\"retries\":\"x\"");
    assert_int_equal(bee_eval_run(&o, &st), -1);
    assert_non_null(strstr(bee_error_message(), "\"retries\" must be an integer"));
}

/* HTTP 400 is final: one request, an error naming the model and status. */
static void test_remote_no_retry_400(void **s) {
    (void)s;
    fake_srv f;
    bee_eval_stats st;
    fake_srv_start(&f, SRV_BAD);
    bee_eval_opts o = {srv_models(&f, "bad.json", ""), "sanity-gen", tu_tmp("run_bad"), ".", ".", 2, 0, 1, 1, 1, NULL, 1};
    int rc = bee_eval_run(&o, &st);
    fake_srv_stop(&f);
    assert_int_equal(rc, -1);
    const char *msg = bee_error_message();
    if (!strstr(msg, "HTTP 400") || !strstr(msg, "'srvm'") || !strstr(msg, "bad request!!")) fail_msg("unexpected error: %s", msg);
    assert_int_equal(atomic_load(&f.requests), 1);
}

/* timeout_s bounds the whole request: a server that never answers fails it
 * after about timeout_s (no retries here), with "timed out" in the error. */
static void test_remote_timeout(void **s) {
    (void)s;
    fake_srv f;
    bee_eval_stats st;
    fake_srv_start(&f, SRV_HANG);
    bee_eval_opts o = {srv_models(&f, "hang.json", ",\"timeout_s\":1,\"retries\":0"), "sanity-gen", tu_tmp("run_hang"), ".", ".", 1, 0,
                       1, 1, 1, NULL, 1};
    double t0 = mono_s();
    int rc = bee_eval_run(&o, &st);
    double el = mono_s() - t0;
    fake_srv_stop(&f);
    assert_int_equal(rc, -1);
    if (!strstr(bee_error_message(), "timed out")) fail_msg("unexpected error: %s", bee_error_message());
    assert_true(el > 0.9 && el < 2.0);
    assert_int_equal(atomic_load(&f.requests), 1);
}

/* --concurrency 4 gives the same bytes as 1 (samples, cache, results), with
 * more than one request in flight at the server. */
static void test_remote_concurrency(void **s) {
    (void)s;
    const char *files[] = {"samples/flaky__sanity.jsonl", "samples/flaky__sanity-gen.jsonl", "cache.jsonl", "results.json"};
    char *got[2][4];
    int max_in[2];
    size_t computed1 = 0;
    fake_srv f; /* one server for both runs: the cache keys contain its URL */
    fake_srv_start(&f, SRV_SLOW);
    for (int run = 0; run < 2; run++) {
        bee_eval_stats st;
        atomic_store(&f.requests, 0);
        atomic_store(&f.max_inflight, 0);
        char out[4096];
        snprintf(out, sizeof out, "%s", tu_tmp(run ? "run_conc4" : "run_conc1"));
        bee_eval_opts o = {srv_models(&f, "conc.json", ""), "sanity,sanity-gen", out, ".", ".", 12, 0, 1, 1, 1, NULL, run ? 4 : 1};
        int rc = bee_eval_run(&o, &st);
        if (rc) {
            fake_srv_stop(&f);
            fail_msg("%s", bee_error_message());
        }
        assert_int_equal(st.computed + st.cached, 24); /* repeated prompts come from the cache */
        assert_true(st.computed >= 12);
        assert_int_equal(atomic_load(&f.requests), (int)st.computed + 1); /* the refused echo probe, then one completion per item */
        if (run) assert_int_equal(st.computed, computed1);
        else computed1 = st.computed;
        max_in[run] = atomic_load(&f.max_inflight);
        for (int k = 0; k < 4; k++) got[run][k] = slurp(out, files[k]);
    }
    fake_srv_stop(&f);
    assert_int_equal(max_in[0], 1);
    if (max_in[1] < 2) fail_msg("at most %d request in flight with --concurrency 4", max_in[1]);
    for (int k = 0; k < 4; k++) {
        if (strcmp(got[0][k], got[1][k])) fail_msg("%s differs between concurrency 1 and 4", files[k]);
        free(got[0][k]), free(got[1][k]);
    }
    /* out of range */
    bee_eval_stats st;
    bee_eval_opts o = {models_file(1), "sanity", tu_tmp("run_conc_bad"), ".", ".", 1, 0, 1, 1, 1, NULL, 65};
    assert_int_equal(bee_eval_run(&o, &st), -1);
    assert_non_null(strstr(bee_error_message(), "concurrency 65"));
    char cmd[8192], *log = NULL;
    snprintf(cmd, sizeof cmd, "%s eval --models x.json --tasks sanity --out %s --concurrency 0", tu_bee(), tu_tmp("run_conc_cli"));
    assert_int_equal(tu_run(cmd, &log), 2);
    assert_non_null(strstr(log, "--concurrency: expected an integer in [1, 64]"));
    free(log);
    snprintf(cmd, sizeof cmd, "BEE_EVAL_CONCURRENCY=many %s eval --models x.json --tasks sanity --out %s", tu_bee(), tu_tmp("run_conc_cli"));
    assert_int_equal(tu_run(cmd, &log), 2);
    assert_non_null(strstr(log, "got 'many'"));
    free(log);
    snprintf(cmd, sizeof cmd, "%s eval --help", tu_bee());
    assert_int_equal(tu_run(cmd, &log), 0);
    assert_non_null(strstr(log, "BEE_EVAL_CONCURRENCY"));
    free(log);
}

static json_t *results_model(json_t *res, const char *name) {
    json_t *m;
    size_t i;
    json_array_foreach(json_object_get(res, "models"), i, m) if (!strcmp(str(m, "name"), name)) return m;
    fail_msg("model %s missing from results.json", name);
    return NULL;
}

static void test_cli_end_to_end(void **s) {
    (void)s;
    const char *out = tu_tmp("run_cli");
    task_file();
    char cmd[16384], *log = NULL;
    snprintf(cmd, sizeof cmd, "%s eval --models %s --tasks sanity,sanity-gen,%s --out %s --limit 5 --data-dir %s -t 1",
             tu_bee(), models_file(3), tu_tmp("qa.json"), out, tu_tmpdir());
    if (tu_run(cmd, &log)) fail_msg("%s\n%s", cmd, log);
    assert_non_null(strstr(log, "q4_0: 14/14 items"));
    assert_non_null(strstr(log, "42 items computed"));
    free(log);
    char *rj = slurp(out, "results.json"), *md = slurp(out, "leaderboard.md"), *csv = slurp(out, "leaderboard.csv"),
         *svg = slurp(out, "leaderboard.svg");
    json_t *res = json_loads(rj, 0, NULL);
    assert_non_null(res);
    assert_int_equal(json_array_size(json_object_get(res, "models")), 3);
    /* the CSV lists the models by descending average, with results.json's numbers */
    char *line = strchr(csv, '\n') + 1;
    double prev = INFINITY;
    int rows = 0, bars = 0;
    for (char *nl; (nl = strchr(line, '\n')); line = nl + 1, rows++) {
        int rank;
        char name[64];
        double avg;
        assert_int_equal(sscanf(line, "%d,\"%63[^\"]\",%lf", &rank, name, &avg), 3);
        assert_int_equal(rank, rows + 1);
        assert_true(avg <= prev);
        prev = avg;
        json_t *m = results_model(res, name);
        assert_true(fabs(100 * json_real_value(json_object_get(m, "average")) - avg) < 1e-3);
        json_t *t = json_object_get(json_object_get(m, "tasks"), "sanity");
        assert_int_equal(json_integer_value(json_object_get(t, "n")), 5);
        char cell[256];
        snprintf(cell, sizeof cell, "| %d | %s | %.2f |", rank, name, avg);
        assert_non_null(strstr(md, cell));
    }
    assert_int_equal(rows, 3);
    for (const char *p = svg; (p = strstr(p, "class=\"bar\"")); p++) bars++;
    assert_int_equal(bars, 3);
    assert_non_null(strstr(svg, "</svg>"));
    json_decref(res);
    free(rj), free(md), free(csv), free(svg);
    /* usage and input errors */
    snprintf(cmd, sizeof cmd, "%s eval --tasks sanity --out %s", tu_bee(), out);
    assert_int_equal(tu_run(cmd, &log), 2);
    free(log);
    snprintf(cmd, sizeof cmd, "%s eval --models %s --tasks sanity --out %s", tu_bee(), fixture("badm.json", "[{\"name\":\"x\"}]"), out);
    assert_int_equal(tu_run(cmd, &log), 1);
    assert_non_null(strstr(log, "badm.json: models[0]"));
    free(log);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize),       cmocka_unit_test(test_metrics),     cmocka_unit_test(test_stat),
        cmocka_unit_test(test_read_csv),       cmocka_unit_test(test_read_gaokao), cmocka_unit_test(test_read_squad_jsonl_tsv),
        cmocka_unit_test(test_read_shared_data), cmocka_unit_test(test_task),      cmocka_unit_test(test_loglik),
        cmocka_unit_test(test_mc_pick),        cmocka_unit_test(test_cache_resume), cmocka_unit_test(test_cli_end_to_end), cmocka_unit_test(test_remote_model),
        cmocka_unit_test(test_read_nextline),  cmocka_unit_test(test_task_joiner),  cmocka_unit_test(test_unigram),     cmocka_unit_test(test_yaml),
        cmocka_unit_test(test_token_logprobs), cmocka_unit_test(test_corpus_tasks), cmocka_unit_test(test_local_vs_served),
        cmocka_unit_test(test_remote_openai_echo), cmocka_unit_test(test_remote_backoff), cmocka_unit_test(test_remote_retry),
        cmocka_unit_test(test_remote_no_retry_400), cmocka_unit_test(test_remote_timeout), cmocka_unit_test(test_remote_concurrency),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
