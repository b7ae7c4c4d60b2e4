/* bee digest: sentence splitting, the extractive digest on hand-made
 * fixtures (citations exist, the central / most upvoted viewpoint first),
 * map-reduce over a tiny random model (`bee init`) with more answers than fit
 * its context, citation repair, input errors, the CLI and POST /v1/digest. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/digest.h"
#include "httpclient.h"
#include "safety/safety.h"
#include "serve/serve.h"
#include "testutil.h"
#include "util/error.h"

/* ================================================================ helpers */

static char **split(const char *t, long *n) {
    size_t *sp = NULL;
    *n = bee_digest_split(t, &sp);
    assert_true(*n >= 0);
    char **v = calloc((size_t)*n + 1, sizeof *v);
    for (long i = 0; i < *n; i++) v[i] = strndup(t + sp[2 * i], sp[2 * i + 1] - sp[2 * i]);
    free(sp);
    return v;
}

static void free_strs(char **v, long n) {
    for (long i = 0; i < n; i++) free(v[i]);
    free(v);
}

static void expect_split(const char *text, const char *const *want, long n_want) {
    long n;
    char **v = split(text, &n);
    if (n != n_want) {
        for (long i = 0; i < n; i++) fprintf(stderr, "  [%ld] '%s'\n", i, v[i]);
        fail_msg("'%s': %ld sentences, want %ld", text, n, n_want);
    }
    for (long i = 0; i < n; i++) assert_string_equal(v[i], want[i]);
    free_strs(v, n);
}

static void parse_ok(const char *json, bee_digest_input *in) {
    if (bee_digest_parse(json, strlen(json), "fixture", in)) fail_msg("parse: %s", bee_error_message());
}

static void expect_parse_error(const char *text, const char *needle) {
    bee_digest_input in;
    if (bee_digest_parse(text, strlen(text), "in.json", &in) == 0) fail_msg("accepted bad input: %s", text);
    if (!strstr(bee_error_message(), needle) || !strstr(bee_error_message(), "in.json"))
        fail_msg("input %s\nerror '%s' lacks '%s'", text, bee_error_message(), needle);
}

/* Every point has at least one citation, each an index of the input. */
static void check_cites(const bee_digest_input *in, const bee_digest_result *r) {
    for (size_t i = 0; i < r->n; i++) {
        assert_true(r->points[i].n_cites >= 1);
        for (size_t k = 0; k < r->points[i].n_cites; k++) {
            assert_true(r->points[i].cites[k] < in->n);
            if (k) assert_true(r->points[i].cites[k] > r->points[i].cites[k - 1]);
        }
    }
}

static int cites_answer(const bee_digest_point *p, size_t a) {
    for (size_t k = 0; k < p->n_cites; k++)
        if (p->cites[k] == a) return 1;
    return 0;
}

static const char *tiny_model(void) {
    static char path[4096];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", tu_tmp("digest.gguf"));
        char *out;
        if (tu_bee_run(&out, "init -o %s --seed 11", path)) fail_msg("bee init: %s", out);
        free(out);
    }
    return path;
}

/* ================================================================ fixtures */

/* Three answers say memory safety is the point of Rust (near-duplicates);
 * the others say different, unrelated things with more upvotes each. */
static const char k_central[] =
    "{\"question\": \"Rust 值得学吗？\", \"answers\": ["
    "{\"id\": 3, \"author\": \"a\", \"upvotes\": 12, \"text\": \"值得。Rust 的所有权机制保证了内存安全，没有数据竞争。\"},"
    "{\"id\": 7, \"author\": \"b\", \"upvotes\": 30, \"text\": \"编译速度很慢，大项目要等很久。\"},"
    "{\"id\": 9, \"upvotes\": 8, \"text\": \"最大的好处是所有权机制保证内存安全，也没有数据竞争。\"},"
    "{\"id\": 11, \"upvotes\": 25, \"text\": \"招聘岗位还不多，找工作不容易。\"},"
    "{\"id\": 15, \"upvotes\": 5, \"text\": \"所有权机制让内存安全有了保证，并发也没有数据竞争。学习曲线陡。\"}"
    "]}";

/* No shared viewpoint: the most upvoted answer comes first. */
static const char k_upvoted[] =
    "{\"question\": \"How should I prepare for a marathon?\", \"answers\": ["
    "{\"id\": 1, \"upvotes\": 2, \"text\": \"Buy comfortable shoes early and break them in.\"},"
    "{\"id\": 2, \"upvotes\": 950, \"text\": \"Build weekly mileage slowly, never more than ten percent per week.\"},"
    "{\"id\": 3, \"upvotes\": 4, \"text\": \"Practice eating gels during long training runs.\"},"
    "{\"id\": 4, \"upvotes\": 0, \"text\": \"Sleep matters more than people think.\"}"
    "]}";

/* ================================================================ splitting */

static void test_split_zh_en(void **st) {
    (void)st;
    const char *zh[] = {"今天天气很好。", "我们去公园吧！", "你来吗？"};
    expect_split("今天天气很好。我们去公园吧！你来吗？", zh, 3);
    const char *en[] = {"Hello world.", "Pi is 3.14!", "Really?", "Yes"};
    expect_split("Hello world. Pi is 3.14! Really?  Yes", en, 4);
    const char *quote[] = {"他说：“好。”", "然后走了……"};
    expect_split("他说：“好。”然后走了……", quote, 2);
    const char *lines[] = {"first line", "second line!!", "第三行？！"};
    expect_split("  first line\n\nsecond line!! \n第三行？！\n", lines, 3);
    const char *mixed[] = {"用 C11 写的。", "It works.", "版本 1.2 稳定"};
    expect_split("用 C11 写的。It works. 版本 1.2 稳定", mixed, 3);
    expect_split("", NULL, 0);
    expect_split(" \n\t ", NULL, 0);
}

/* ================================================================ extractive */

static void test_extractive_central_first(void **st) {
    (void)st;
    bee_digest_input in;
    parse_ok(k_central, &in);
    assert_int_equal(in.n, 5);
    assert_string_equal(in.question, "Rust 值得学吗？");
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    o.extractive = 1;
    o.max_points = 4;
    bee_digest_result r;
    if (bee_digest_run(&in, &o, &r)) fail_msg("digest: %s", bee_error_message());
    assert_int_equal(r.model, 0);
    assert_int_equal(r.chunks, 0);
    assert_true(r.n >= 3 && r.n <= 4);
    check_cites(&in, &r);
    /* the viewpoint three answers share comes first and cites all three */
    assert_non_null(strstr(r.points[0].text, "内存安全"));
    assert_true(cites_answer(&r.points[0], 0) && cites_answer(&r.points[0], 2) && cites_answer(&r.points[0], 4));
    /* no other point repeats it */
    for (size_t i = 1; i < r.n; i++) assert_null(strstr(r.points[i].text, "内存安全"));
    char *line = bee_digest_point_line(&in, &r.points[0]);
    assert_non_null(strstr(line, "[3][9][15]"));
    free(line);
    /* deterministic */
    bee_digest_result r2;
    assert_int_equal(bee_digest_run(&in, &o, &r2), 0);
    assert_int_equal(r2.n, r.n);
    for (size_t i = 0; i < r.n; i++) assert_string_equal(r2.points[i].text, r.points[i].text);
    json_t *j = bee_digest_result_json(&in, &r);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "extractive");
    json_t *c0 = json_object_get(json_array_get(json_object_get(j, "points"), 0), "cites");
    assert_int_equal(json_array_size(c0), 3);
    assert_int_equal(json_integer_value(json_array_get(c0, 0)), 3);
    assert_int_equal(json_integer_value(json_array_get(c0, 2)), 15);
    json_decref(j);
    bee_digest_result_free(&r2);
    bee_digest_result_free(&r);
    bee_digest_input_free(&in);
}

static void test_extractive_upvotes_first(void **st) {
    (void)st;
    bee_digest_input in;
    parse_ok(k_upvoted, &in);
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    o.extractive = 1;
    bee_digest_result r;
    assert_int_equal(bee_digest_run(&in, &o, &r), 0);
    assert_int_equal(r.n, 4); /* four distinct viewpoints */
    check_cites(&in, &r);
    assert_non_null(strstr(r.points[0].text, "mileage"));
    assert_int_equal(r.points[0].n_cites, 1);
    assert_int_equal(r.points[0].cites[0], 1);
    /* max_points caps the list */
    o.max_points = 2;
    bee_digest_result r2;
    assert_int_equal(bee_digest_run(&in, &o, &r2), 0);
    assert_int_equal(r2.n, 2);
    assert_string_equal(r2.points[0].text, r.points[0].text);
    bee_digest_result_free(&r2);
    bee_digest_result_free(&r);
    bee_digest_input_free(&in);
}

/* A run-on sentence becomes a short point: cut at a clause comma, "…" added. */
static void test_long_point(void **st) {
    (void)st;
    char text[4096] = "";
    for (int i = 0; i < 30; i++) strcat(text, i % 3 == 2 ? "我们讨论了并发模型，" : "内存安全很重要");
    strcat(text, "。");
    char json[8192];
    snprintf(json, sizeof json, "[{\"id\": 1, \"text\": \"%s\"}]", text);
    bee_digest_input in;
    parse_ok(json, &in);
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    o.extractive = 1;
    bee_digest_result r;
    assert_int_equal(bee_digest_run(&in, &o, &r), 0);
    assert_int_equal(r.n, 1);
    const char *t = r.points[0].text;
    size_t chars = 0;
    for (const char *p = t; *p; p++) chars += ((unsigned char)*p & 0xC0) != 0x80;
    assert_true(chars <= 161 && chars > 80);
    size_t n = strlen(t);
    assert_memory_equal(t + n - 6, "，…", 6); /* cut after a comma */
    assert_memory_equal(t, text, n - 3);      /* a prefix of the sentence */
    bee_digest_result_free(&r);
    bee_digest_input_free(&in);
}

/* ================================================================ model mode */

/* n answers on a few themes; longer than a 256-token context. */
static char *many_answers(int n) {
    static const char *themes[] = {"所有权机制保证内存安全，没有数据竞争。", "编译速度慢，大项目要等很久。",
                                   "招聘岗位不多，找工作不容易。", "工具链好用，cargo 管理依赖很方便。",
                                   "学习曲线陡峭，借用检查器一开始很难懂。", "社区氛围友好，文档写得清楚。",
                                   "异步生态分裂，运行时选择让人困惑。", "嵌入式开发支持越来越好。",
                                   "错误处理用 Result 类型很优雅。", "宏系统强大但是调试困难。",
                                   "性能接近 C 语言，零成本抽象。", "生命周期标注让新手头疼。"};
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        char t[256];
        snprintf(t, sizeof t, "第%d位答主认为：%s补充说明第%d点。", i + 1, themes[i % 12], i % 7);
        json_array_append_new(arr, json_pack("{s:i, s:i, s:s}", "id", 100 + i, "upvotes", (i * 37) % 50, "text", t));
    }
    json_t *o = json_pack("{s:s, s:o}", "question", "Rust 值得学吗？", "answers", arr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void test_model_map_reduce(void **st) {
    (void)st;
    bee_model *m;
    if (bee_model_load(tiny_model(), &m)) fail_msg("load: %s", bee_error_message());
    bee_model_set_threads(m, 1);
    char *json = many_answers(24);
    bee_digest_input in;
    parse_ok(json, &in);
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    o.model = m;
    o.ctx = 256;
    o.max_length = 8;
    o.beam_size = 2;
    bee_digest_result r;
    if (bee_digest_run(&in, &o, &r)) fail_msg("digest: %s", bee_error_message());
    assert_int_equal(r.model, 1);
    assert_true(r.chunks > 1);
    assert_true(r.reduce_calls >= 1);
    assert_true(r.n >= 1 && r.n <= 5);
    check_cites(&in, &r);
    bee_digest_result_free(&r);
    /* a context too small for one sentence and the answer is an error, not a crash */
    o.ctx = 24;
    assert_int_equal(bee_digest_run(&in, &o, &r), -1);
    assert_non_null(strstr(bee_error_message(), "too small"));
    bee_digest_input_free(&in);
    free(json);
    bee_model_free(m);
}

/* A model that cites ids that do not exist (and one that does): only input
 * ids remain, and the bogus marks leave the text. */
static int g_calls;
static int liar_gen(void *user, json_t *dict, int max_length, char **answer) {
    (void)user, (void)max_length;
    const char *input = json_string_value(json_object_get(dict, "input"));
    assert_non_null(input);
    assert_non_null(json_object_get(dict, "<ans>"));
    g_calls++;
    *answer = strdup("要点甲[999][101]。要点乙[abc]！");
    return 0;
}

/* 12 answers through a stub model with a context small enough to need
 * several chunks. */
typedef struct {
    bee_model *m;
    char *json;
    bee_digest_input in;
    bee_digest_opts o;
} stub_run;

static void stub_run_start(stub_run *sr, bee_digest_gen_fn gen, bee_digest_result *r) {
    if (bee_model_load(tiny_model(), &sr->m)) fail_msg("load: %s", bee_error_message());
    sr->json = many_answers(12);
    parse_ok(sr->json, &sr->in);
    bee_digest_opts_default(&sr->o);
    sr->o.model = sr->m, sr->o.ctx = 200, sr->o.max_length = 8, sr->o.gen = gen;
    g_calls = 0;
    if (bee_digest_run(&sr->in, &sr->o, r)) fail_msg("digest: %s", bee_error_message());
    assert_true(r->chunks > 1);
}

static void stub_run_free(stub_run *sr) {
    bee_digest_input_free(&sr->in);
    free(sr->json);
    bee_model_free(sr->m);
}

static void test_citation_repair(void **st) {
    (void)st;
    stub_run sr;
    bee_digest_result r;
    stub_run_start(&sr, liar_gen, &r);
    bee_digest_input in = sr.in;
    assert_int_equal(g_calls, r.chunks + r.reduce_calls);
    check_cites(&in, &r);
    assert_true(r.n >= 1);
    for (size_t i = 0; i < r.n; i++) {
        assert_null(strchr(r.points[i].text, '['));
        char *line = bee_digest_point_line(&in, &r.points[i]);
        assert_null(strstr(line, "[999]"));
        assert_null(strstr(line, "[abc]"));
        free(line);
    }
    bee_digest_result_free(&r);
    stub_run_free(&sr);
}

/* A model that says nothing ("。", one repeated character, stray marks): every chunk
 * summary and the merge fall back to extractive text, each point an input
 * sentence citing its own answer. */
static int mute_gen(void *user, json_t *dict, int max_length, char **answer) {
    (void)user, (void)dict, (void)max_length;
    static const char *const said[] = {"。", "的的的的。", "的 (1) (1)", "(o (u ( ( ("};
    *answer = strdup(said[g_calls++ % 4]);
    return 0;
}

static int contentless_said(const char *t) {
    return !strcmp(t, "。") || !strcmp(t, "的的的的。") || !strcmp(t, "的 (1) (1)") || !strcmp(t, "(o (u ( ( (");
}

static void test_contentless_model(void **st) {
    (void)st;
    stub_run sr;
    bee_digest_result r;
    stub_run_start(&sr, mute_gen, &r);
    bee_digest_input in = sr.in;
    assert_int_equal(r.fallbacks, r.chunks + 1); /* every chunk, then the final merge */
    assert_true(r.n >= 1 && r.n <= 5);
    check_cites(&in, &r);
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.points[i].n_cites, 1);
        if (!strstr(in.answers[r.points[i].cites[0]].text, r.points[i].text))
            fail_msg("point '%s' is not a sentence of the answer it cites", r.points[i].text);
    }
    bee_digest_result_free(&r);
    /* keep_contentless (digest_bench --raw): the model's own text, no fallback */
    sr.o.keep_contentless = 1;
    g_calls = 0;
    if (bee_digest_run(&in, &sr.o, &r)) fail_msg("digest: %s", bee_error_message());
    assert_int_equal(r.fallbacks, 0);
    assert_true(r.n >= 1);
    check_cites(&in, &r);
    for (size_t i = 0; i < r.n; i++) assert_true(contentless_said(r.points[i].text));
    bee_digest_result_free(&r);
    stub_run_free(&sr);
}

/* ================================================================ bad input */

static void test_bad_inputs(void **st) {
    (void)st;
    expect_parse_error("{\"question\": \"q\", \"answers\": [{\"text\": \"a\",}]}", "line 1, column 44 (offset 43)");
    expect_parse_error("{\"answers\": [{\"id\": 1, \"text\": \"ok\"}, {\"id\": 2, \"upvotes\": 3}]}", "answers[1].text: missing");
    expect_parse_error("{\"answers\": [{\"text\": \"ok\", \"upvotes\": \"12\"}]}", "answers[0].upvotes: expected an integer, got a string");
    expect_parse_error("{\"answers\": [{\"text\": \"ok\", \"upvotes\": 1.5}]}", "answers[0].upvotes: expected an integer");
    expect_parse_error("{\"answers\": [{\"text\": \"ok\", \"upvotes\": -1}]}", "answers[0].upvotes: must be >= 0");
    expect_parse_error("{\"question\": \"q\", \"answers\": []}", "answers: empty");
    expect_parse_error("{\"question\": \"q\"}", "answers: missing");
    expect_parse_error("{\"question\": 5, \"answers\": [{\"text\": \"x\"}]}", "question: expected a string");
    expect_parse_error("{\"answers\": [{\"text\": \"  \"}]}", "answers[0].text: empty");
    expect_parse_error("{\"answers\": [{\"id\": 4, \"text\": \"a\"}, {\"id\": 4, \"text\": \"b\"}]}", "answers[1].id: duplicate id 4");
    expect_parse_error("{\"answers\": [{\"id\": \"x]\", \"text\": \"a\"}]}", "answers[0].id");
    expect_parse_error("{\"answers\": [{\"id\": [1], \"text\": \"a\"}]}", "answers[0].id: expected an integer or a string");
    expect_parse_error("{\"answers\": [\"just text\"]}", "answers[0]: expected an answer object");
    expect_parse_error("   ", "empty input");
    expect_parse_error("{\"text\": \"a\"}\n{\"text\": \"b\", \"upvotes\": true}\n", "line 2 (answers[1]).upvotes: expected an integer, got a boolean");
    expect_parse_error("{\"text\": \"a\"}\n{\"text\": \"b\"\n", "line 2: invalid JSON at column");
    /* JSONL and arrays are accepted; ids default to positions */
    bee_digest_input in;
    parse_ok("{\"question\": \"Q?\"}\n{\"text\": \"first.\"}\n\n{\"id\": \"x\", \"text\": \"second.\", \"upvotes\": 2}\n", &in);
    assert_string_equal(in.question, "Q?");
    assert_int_equal(in.n, 2);
    assert_string_equal(in.answers[0].id, "1");
    assert_string_equal(in.answers[1].id, "x");
    assert_int_equal(in.answers[1].upvotes, 2);
    bee_digest_input_free(&in);
    parse_ok("[{\"text\": \"a b c.\"}, {\"text\": \"d e f.\"}]", &in);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.question, "");
    /* an answer set without any usable sentence is an error */
    bee_digest_input_free(&in);
    parse_ok("[{\"text\": \"好\"}, {\"text\": \"?\"}]", &in);
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    o.extractive = 1;
    bee_digest_result r;
    assert_int_equal(bee_digest_run(&in, &o, &r), -1);
    assert_non_null(strstr(bee_error_message(), "no sentence"));
    o.extractive = 0; /* model mode without a model */
    assert_int_equal(bee_digest_run(&in, &o, &r), -1);
    bee_digest_input_free(&in);
}

/* ================================================================ CLI */

static void test_cli(void **st) {
    (void)st;
    const char *f = tu_tmp("central.json");
    tu_write(f, k_central, strlen(k_central));
    char *out;
    int rc = tu_bee_run(&out, "digest --extractive -k 3 --json %s", f);
    if (rc) fail_msg("bee digest: %d %s", rc, out);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "extractive");
    json_t *pts = json_object_get(j, "points");
    assert_true(json_array_size(pts) >= 2 && json_array_size(pts) <= 3);
    const json_int_t ids[] = {3, 7, 9, 11, 15};
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *c = json_object_get(json_array_get(pts, i), "cites");
        assert_true(json_array_size(c) >= 1);
        for (size_t k = 0; k < json_array_size(c); k++) {
            int found = 0;
            for (size_t t = 0; t < 5; t++) found |= json_integer_value(json_array_get(c, k)) == ids[t];
            assert_true(found);
        }
    }
    json_decref(j);
    free(out);
    /* text output, written atomically to a file */
    const char *o = tu_tmp("digest.txt");
    assert_int_equal(tu_bee_run(&out, "digest --extractive -o %s %s", o, f), 0);
    free(out);
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "cat %s", o);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "1. "));
    assert_non_null(strstr(out, "[3][9][15]"));
    free(out);
    /* model mode through the CLI: map-reduce over the tiny model */
    const char *many = tu_tmp("many.json");
    char *mj = many_answers(20);
    tu_write(many, mj, strlen(mj));
    free(mj);
    rc = tu_bee_run(&out, "digest -m %s -t 1 --ctx 256 --max-length 6 --beam 2 --json %s", tiny_model(), many);
    if (rc) fail_msg("bee digest -m: %d %s", rc, out);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "model");
    assert_true(json_integer_value(json_object_get(j, "chunks")) > 1);
    pts = json_object_get(j, "points");
    assert_true(json_array_size(pts) >= 1);
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *c = json_object_get(json_array_get(pts, i), "cites");
        assert_true(json_array_size(c) >= 1);
        for (size_t k = 0; k < json_array_size(c); k++) {
            json_int_t v = json_integer_value(json_array_get(c, k));
            assert_true(v >= 100 && v < 120);
        }
    }
    json_decref(j);
    free(out);
    /* errors: named file and field, exit 1; usage errors exit 2 */
    const char *bad = tu_tmp("bad.json");
    tu_write(bad, "{\"answers\": [{\"text\": \"x\", \"upvotes\": \"many\"}]}", 47);
    assert_int_equal(tu_bee_run(&out, "digest --extractive %s", bad), 1);
    assert_non_null(strstr(out, "bad.json: answers[0].upvotes: expected an integer"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "digest %s", f), 2);
    assert_non_null(strstr(out, "needs -m MODEL.gguf or --extractive"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "digest --extractive %s", tu_tmp("missing.json")), 1);
    assert_non_null(strstr(out, "missing.json"));
    free(out);
}

/* ================================================================ HTTP */

static json_t *post_digest(int port, const char *body, int status) { return post(port, "/v1/digest", body, status); }

static void expect_400(int port, const char *body, const char *type, const char *param) {
    json_t *j = post_digest(port, body, 400);
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    const char *p = json_string_value(json_object_get(e, "param"));
    if (param && (!p || strcmp(p, param))) fail_msg("%s: param %s, want %s", body, p ? p : "(null)", param);
    json_decref(j);
}

static void test_serve_digest(void **st) {
    (void)st;
    if (!bee_serve_available()) skip();
    bee_safety_policy *pol;
    const char *pj = "{\"categories\":{\"bad\":{\"action\":\"block\",\"terms\":[\"出售炸药\"]}}}";
    if (bee_safety_policy_parse(pj, strlen(pj), "test policy", NULL, &pol)) fail_msg("policy: %s", bee_error_message());
    bee_serve_opts o;
    bee_serve_opts_default(&o);
    o.model_path = tiny_model(), o.port = 0, o.threads = 1, o.parallel = 2, o.ctx = 256, o.max_body = 1 << 20;
    o.policy = pol;
    bee_server *s;
    if (bee_server_start(&o, &s) || bee_server_wait_ready(s, 60)) fail_msg("server: %s", bee_error_message());
    int port = bee_server_port(s);

    /* extractive */
    char body[8192];
    snprintf(body, sizeof body, "{\"extractive\": true, \"max_points\": 2, %s", k_central + 1);
    json_t *j = post_digest(port, body, 200);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "extractive");
    assert_string_equal(json_string_value(json_object_get(j, "object")), "digest");
    json_t *pts = json_object_get(j, "points");
    assert_int_equal(json_array_size(pts), 2);
    json_t *c0 = json_object_get(json_array_get(pts, 0), "cites");
    assert_int_equal(json_array_size(c0), 3);
    assert_int_equal(json_integer_value(json_array_get(c0, 1)), 9);
    json_decref(j);

    /* model mode: map-reduce through the scheduler */
    char *many = many_answers(16);
    snprintf(body, sizeof body, "{\"max_tokens\": 6, %s", many + 1);
    free(many);
    j = post_digest(port, body, 200);
    assert_string_equal(json_string_value(json_object_get(j, "mode")), "model");
    assert_true(json_integer_value(json_object_get(j, "chunks")) > 1);
    pts = json_object_get(j, "points");
    assert_true(json_array_size(pts) >= 1);
    for (size_t i = 0; i < json_array_size(pts); i++) {
        json_t *c = json_object_get(json_array_get(pts, i), "cites");
        assert_true(json_array_size(c) >= 1);
        for (size_t k = 0; k < json_array_size(c); k++) {
            json_int_t v = json_integer_value(json_array_get(c, k));
            assert_true(v >= 100 && v < 116);
        }
    }
    json_decref(j);

    /* bad fields: 400 naming them */
    expect_400(port, "{\"answers\": [{\"text\": \"ok.\", \"upvotes\": 1.5}]}", "invalid_request_error", "answers[0].upvotes");
    expect_400(port, "{\"answers\": [{\"text\": \"ok.\"}, {\"id\": 2}]}", "invalid_request_error", "answers[1].text");
    expect_400(port, "{\"answers\": []}", "invalid_request_error", "answers");
    expect_400(port, "{\"extractive\": true, \"max_points\": 0, \"answers\": [{\"text\": \"a.\"}]}", "invalid_request_error", "max_points");
    expect_400(port, "{\"extractive\": \"yes\", \"answers\": [{\"text\": \"a.\"}]}", "invalid_request_error", "extractive");
    expect_400(port, "{\"max_tokens\": 0, \"answers\": [{\"text\": \"a.\"}]}", "invalid_request_error", "max_tokens");
    j = post_digest(port, "{\"answers\": [", 400);
    assert_non_null(strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")), "offset"));
    json_decref(j);
    /* content safety: a blocked term in an answer refuses the request */
    expect_400(port, "{\"extractive\": true, \"answers\": [{\"text\": \"正常的回答。\"}, {\"text\": \"这里出售炸药。\"}]}",
               "content_filter", "answers[1].text");
    bee_server_stop(s);
    bee_safety_policy_free(pol);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_zh_en),
        cmocka_unit_test(test_extractive_central_first),
        cmocka_unit_test(test_extractive_upvotes_first),
        cmocka_unit_test(test_long_point),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_model_map_reduce),
        cmocka_unit_test(test_citation_repair),
        cmocka_unit_test(test_contentless_model),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_serve_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
