/* Document search: the tokenizer (CJK characters and bigrams, English folding
 * and stemming, full-width forms), HTML extraction and passage splitting,
 * index → search on an inline corpus, incremental updates, hostile queries,
 * the CLI, and retrieval on CMRC 2018 when ../shared/data is present. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef BEE_HAVE_SQLITE
#include <sqlite3.h>
#endif

#include "search/search.h"
#include "search/tokenize.h"
#include "testutil.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

/* ================================================================ tokenizer */

static int collect(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    bee_str *s = user;
    if (s->n) bee_str_append(s, " ", 1);
    if (colocated) bee_str_append(s, "+", 1);
    bee_str_append(s, tok, n);
    bee_str_printf(s, "@%zu-%zu", start, end);
    return 0;
}

static void expect_tokens(const char *text, bee_stok_mode mode, const char *want) {
    bee_str s = {0};
    bee_str_append(&s, "", 0);
    assert_int_equal(bee_search_tokenize(text, strlen(text), mode, collect, &s), 0);
    if (strcmp(s.s, want)) fail_msg("tokens of '%s': got '%s', want '%s'", text, s.s, want);
    bee_str_free(&s);
}

static void test_tokenizer_cjk(void **st) {
    (void)st;
    /* document: the bigrams, then the run's last character: every character starts one token */
    expect_tokens("北京大学", BEE_STOK_DOCUMENT, "北京@0-6 京大@3-9 大学@6-12 学@9-12");
    expect_tokens("去北京，好", BEE_STOK_DOCUMENT, "去北@0-6 北京@3-9 京@6-9 好@12-15");
    assert_true(bee_search_cjk_char("北", 3));
    assert_false(bee_search_cjk_char("北京", 6));
    assert_false(bee_search_cjk_char("a", 1));
    assert_false(bee_search_cjk_char("\xe4\xb8", 2));
    /* query: bigrams for runs of two or more, the character alone for a run of one */
    expect_tokens("北京大学", BEE_STOK_QUERY, "北京@0-6 京大@3-9 大学@6-12");
    expect_tokens("北", BEE_STOK_QUERY, "北@0-3");
    expect_tokens("去北京，好", BEE_STOK_QUERY, "去北@0-6 北京@3-9 好@12-15");
    /* kana and hangul are split the same way */
    expect_tokens("カナ", BEE_STOK_QUERY, "カナ@0-6");
}

static void test_tokenizer_english(void **st) {
    (void)st;
    expect_tokens("Running STORES, stored; the cats' studies!", BEE_STOK_DOCUMENT,
                  "run@0-7 stor@8-14 stor@16-22 the@24-27 cat@28-32 studi@34-41");
    expect_tokens("x2018 C++ e-mail", BEE_STOK_QUERY, "x2018@0-5 c@6-7 e@10-11 mail@12-16");
    /* full-width letters, digits and the ideographic space */
    expect_tokens("ＡＢＣ１２３\xE3\x80\x80Ｒｕｎ", BEE_STOK_QUERY, "abc123@0-18 run@21-30");
    /* invalid UTF-8 separates tokens and is skipped */
    expect_tokens("ab\xff\xfe" "cd\xe4\xb8", BEE_STOK_QUERY, "ab@0-2 cd@4-6");
    char w[] = "indexing";
    assert_int_equal(bee_search_stem(w, strlen(w)), 5); /* index */
    char w2[] = "bus";
    assert_int_equal(bee_search_stem(w2, 3), 3);
}

/* ================================================================ documents */

static void test_html_and_split(void **st) {
    (void)st;
    const char *h = "<html><head><title>T</title><style>p{color:red}</style><script>if (a<b) x();</script></head>"
                    "<body><h2>标题 &amp; more</h2><p>一&#x4E8C;三 &lt;x&gt;&nbsp;y &bogus; 5 < 6</p><!-- c --></body>";
    size_t n;
    char *t = bee_html_to_text(h, strlen(h), &n);
    assert_string_equal(t, "T\n\n## 标题 & more\n\n一二三 <x> y &bogus; 5 < 6"); /* <h2> → "## " */
    free(t);
    /* a passage's heading is the nearest enclosing one, at any level */
    {
        bee_doc hd = {strdup("# A\n\na.\n\n## B\n\nb.\n\n### C\n\nc.\n\n## D\n\nd.\n\n# E\n\ne."), 0, NULL, 0, 0};
        hd.len = strlen(hd.text);
        assert_int_equal(bee_doc_split(&hd, 1), 0);
        static const char *const want[] = {"A", "B", "C", "D", "E"};
        const char *first[] = {"# A", "## B", "### C", "## D", "# E"};
        size_t k = 0;
        for (size_t i = 0; i < hd.n; i++)
            for (size_t j = 0; j < 5; j++)
                if (!strncmp(hd.text + hd.p[i].offset, first[j], strlen(first[j]))) {
                    assert_string_equal(hd.p[i].heading, want[j]);
                    k++;
                }
        assert_int_equal(k, 5);
        bee_doc_free(&hd);
    }
    /* truncated markup at the end (found by the fuzzer) */
    static const char *k_cut[] = {"a<", "a</", "a<!--", "<script>x", "&#", "&#x110000;"};
    for (size_t i = 0; i < sizeof k_cut / sizeof k_cut[0]; i++) {
        char *c = malloc(strlen(k_cut[i]));
        memcpy(c, k_cut[i], strlen(k_cut[i])); /* exactly the bytes, no terminator to lean on */
        free(bee_html_to_text(c, strlen(k_cut[i]), &n));
        free(c);
    }

    /* one long paragraph: windows of at most 400 characters, overlapping */
    bee_str s = {0};
    for (int i = 0; i < 60; i++) bee_str_appendz(&s, "这是一个很长的句子，包含许多汉字。");
    bee_str_appendz(&s, "\n\n短段落。\n\n# 标题二\n\n另一段。");
    bee_doc d = {bee_str_take(&s), 0, NULL, 0, 0};
    d.len = strlen(d.text);
    assert_int_equal(bee_doc_split(&d, 1), 0);
    assert_true(d.n >= 4);
    for (size_t i = 0; i + 2 < d.n; i++) {
        size_t chars = 0;
        for (size_t j = 0; j < d.p[i].len; j++) chars += ((unsigned char)d.text[d.p[i].offset + j] & 0xC0) != 0x80;
        assert_true(chars <= BEE_PASSAGE_MAX);
        if (i + 3 < d.n) { /* every window but the paragraph's last one: full size, overlapping the next */
            assert_true(chars >= BEE_PASSAGE_TARGET);
            assert_true(d.p[i + 1].offset < d.p[i].offset + (int64_t)d.p[i].len);
        }
    }
    assert_string_equal(d.p[d.n - 1].heading, "标题二");
    assert_int_equal(strncmp(d.text + d.p[d.n - 1].offset, "# 标题二\n\n另一段。", d.p[d.n - 1].len), 0);
    bee_doc_free(&d);
}

#ifdef BEE_HAVE_SQLITE

/* ================================================================ index and search */

static void write_text(const char *path, const char *text) { tu_write(path, text, strlen(text)); }

static const char *corpus_dir(void) {
    static char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmp("corpus"));
    bee_mkdir_p(dir);
    char p[4200];
    snprintf(p, sizeof p, "%s/beijing.md", dir);
    write_text(p, "# 北京\n\n北京是中华人民共和国的首都，位于华北平原。\n\n# 交通\n\n北京有两座国际机场。\n");
    snprintf(p, sizeof p, "%s/shanghai.txt", dir);
    write_text(p, "上海是中国的经济中心，人口超过两千万。\n");
    snprintf(p, sizeof p, "%s/rivers.jsonl", dir);
    write_text(p, "{\"id\": \"yangtze\", \"text\": \"长江是亚洲第一长河。\"}\n{\"text\": \"The Yellow River runs through nine provinces.\"}\n");
    snprintf(p, sizeof p, "%s/page.html", dir);
    write_text(p, "<p>Indexing <b>stores</b> documents &amp; passages.</p><script>var 首都 = 1;</script>");
    snprintf(p, sizeof p, "%s/ignored.bin", dir);
    write_text(p, "首都");
    return dir;
}

static bee_search *open_index(const char *name) {
    bee_search *s;
    if (bee_search_open(tu_tmp(name), &s)) fail_msg("open: %s", bee_error_message());
    return s;
}

static size_t query(bee_search *s, const char *q, int k, char *top_doc, size_t cap) {
    bee_search_hit *h;
    size_t n;
    if (bee_search_query(s, q, k, &h, &n)) fail_msg("query '%s': %s", q, bee_error_message());
    if (top_doc) {
        const char *slash = n ? strrchr(h[0].doc, '/') : NULL;
        snprintf(top_doc, cap, "%s", slash ? slash + 1 : "");
    }
    for (size_t i = 1; i < n; i++) assert_true(h[i].score <= h[i - 1].score);
    bee_search_hits_free(h, n);
    return n;
}

static void expect_top(bee_search *s, const char *q, const char *want) {
    char top[256];
    query(s, q, 5, top, sizeof top);
    if (strcmp(top, want)) fail_msg("query '%s': top doc '%s', want '%s'", q, top, want);
}

static void test_index_search(void **st) {
    (void)st;
    const char *dir = corpus_dir();
    bee_search *s = open_index("basic.sqlite");
    bee_index_stats c;
    const char *paths[] = {dir};
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.added, 4);
    assert_int_equal(c.skipped, 1);
    assert_true(c.passages >= 5);
    expect_top(s, "首都", "beijing.md");      /* 2-character query */
    expect_top(s, "机场", "beijing.md");
    expect_top(s, "沪", "");                  /* absent character */
    expect_top(s, "沪上海", "shanghai.txt");  /* OR of bigrams */
    expect_top(s, "亚", "rivers.jsonl#yangtze"); /* 1-character query (inside a run: bigram prefix) */
    expect_top(s, "河", "rivers.jsonl#yangtze"); /* the last character of a run */
    expect_top(s, "长河", "rivers.jsonl#yangtze");
    expect_top(s, "RUNNING", "rivers.jsonl#2"); /* stemmed: runs */
    expect_top(s, "stored", "page.html");
    assert_int_equal(query(s, "var", 5, NULL, 0), 0); /* script text is not indexed */
    bee_search_close(s);
}

static void test_incremental(void **st) {
    (void)st;
    const char *dir = corpus_dir();
    bee_search *s = open_index("incr.sqlite");
    bee_index_stats c;
    const char *paths[] = {dir};
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.unchanged, 4);
    assert_int_equal(c.added + c.updated + c.removed + c.passages, 0);

    char p[4200];
    snprintf(p, sizeof p, "%s/shanghai.txt", dir);
    write_text(p, "上海有黄浦江和外滩，是一座港口城市。\n");
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.updated, 1);
    assert_int_equal(c.unchanged, 3);
    assert_int_equal(c.passages, 1);
    expect_top(s, "外滩", "shanghai.txt");
    assert_int_equal(query(s, "经济", 5, NULL, 0), 0); /* old text gone */

    /* same content rewritten (new mtime): unchanged, by hash */
    write_text(p, "上海有黄浦江和外滩，是一座港口城市。\n");
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.unchanged, 4);

    snprintf(p, sizeof p, "%s/beijing.md", dir);
    unlink(p);
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.removed, 1);
    assert_int_equal(c.unchanged, 3);
    assert_int_equal(query(s, "首都", 5, NULL, 0), 0);
    assert_int_equal(query(s, "北", 5, NULL, 0), 0);

    /* a single file that has gone is removed; a path never indexed is an error */
    snprintf(p, sizeof p, "%s/shanghai.txt", dir);
    unlink(p);
    const char *one[] = {p};
    assert_int_equal(bee_search_index(s, one, 1, &c), 0);
    assert_int_equal(c.removed, 1);
    assert_int_equal(bee_search_index(s, one, 1, &c), -1);
    assert_non_null(strstr(bee_error_message(), "no such file"));
    bee_search_close(s);
}

/* A file that fails half-way (bad JSONL line) leaves its previous version in the index. */
static void test_bad_file_rolls_back(void **st) {
    (void)st;
    const char *file = tu_tmp("records.jsonl");
    write_text(file, "{\"text\": \"长江是亚洲第一长河。\"}\n");
    bee_search *s = open_index("rollback.sqlite");
    bee_index_stats c;
    assert_int_equal(bee_search_index(s, &file, 1, &c), 0);
    write_text(file, "{\"text\": \"黄河是中国第二长河。\"}\n{\"text\": 5}\n");
    assert_int_equal(bee_search_index(s, &file, 1, &c), -1);
    assert_non_null(strstr(bee_error_message(), "records.jsonl:2:"));
    assert_int_equal(query(s, "黄河", 5, NULL, 0), 0);
    expect_top(s, "长江", "records.jsonl#1");
    write_text(file, "not json\n");
    assert_int_equal(bee_search_index(s, &file, 1, &c), -1);
    assert_non_null(strstr(bee_error_message(), "records.jsonl:1:"));
    bee_search_close(s);
}

static void test_hostile_queries(void **st) {
    (void)st;
    const char *dir = corpus_dir();
    bee_search *s = open_index("hostile.sqlite");
    bee_index_stats c;
    const char *paths[] = {dir};
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    static const char *qs[] = {"\"", "\"\"\"", "NEAR(首都 北京", "NEAR(a b, 3)", "*", "a*", "^首都", "(((", ")", "首都)",
                               "AND", "OR OR", "NOT 首都", "text:首都", "{text}: x", "-", "'; DROP TABLE files; --",
                               "\"首都", "首都\"", "\xff\xfe", "", "   ", "a + b", "col:*", "首都 AND (北京 OR"};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) query(s, qs[i], 5, NULL, 0);
    expect_top(s, "\"首都\" AND (", "beijing.md");
    char *e = bee_search_match_expr("x\"b 首都");
    assert_string_equal(e, "\"x\" OR \"b\" OR \"首都\"");
    free(e);
    /* English stop words are dropped when other terms remain, kept when they are all there is */
    e = bee_search_match_expr("How do I keep THE system current?");
    assert_string_equal(e, "\"keep\" OR \"system\" OR \"current\"");
    free(e);
    e = bee_search_match_expr("who is it");
    assert_string_equal(e, "\"who\" OR \"is\" OR \"it\"");
    free(e);
    e = bee_search_match_expr("the 首都 of");
    assert_string_equal(e, "\"首都\"");
    free(e);
    /* a one-character run is a prefix query over the bigrams it starts (and itself at a run's end) */
    e = bee_search_match_expr("北 上海");
    assert_string_equal(e, "\"北\"* OR \"上海\"");
    free(e);
    bee_search_close(s);
}

/* The context column: a JSONL record's "title" and a markdown heading are
 * searchable for every passage under them, weighted context_weight. */
static void test_context_column(void **st) {
    (void)st;
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s", tu_tmp("ctx"));
    bee_mkdir_p(dir);
    snprintf(p, sizeof p, "%s/faq.jsonl", dir);
    write_text(p, "{\"id\": \"q1\", \"title\": \"How do I upgrade the zebra kernel?\", \"text\": \"Run the package manager and reboot.\"}\n"
                  "{\"id\": \"q2\", \"text\": \"A zebra appears once in this longer text about animals, plains, rivers, grass and "
                  "the many other things that live on a savanna far away.\"}\n");
    /* a markdown section whose second passage does not contain its heading's words */
    bee_str md = {0};
    bee_str_appendz(&md, "# Giraffe feeding\n\n");
    for (int i = 0; i < 40; i++) bee_str_appendz(&md, "Leaves and twigs. ");
    bee_str_appendz(&md, "\n\nThe keepers refill the racks twice a day.\n");
    snprintf(p, sizeof p, "%s/zoo.md", dir);
    write_text(p, md.s);
    bee_str_free(&md);
    bee_search *s = open_index("ctx.sqlite");
    bee_index_stats c;
    const char *paths[] = {dir};
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    assert_int_equal(c.added, 2);
    bee_search_params sp;
    bee_search_get_params(s, &sp);
    assert_true(sp.context_weight == BEE_SEARCH_CONTEXT_WEIGHT);
    /* only the title has "upgrade" and "kernel" */
    expect_top(s, "kernel upgrade", "faq.jsonl#q1");
    /* "zebra" is in q1's title and q2's text: the weighted title wins... */
    expect_top(s, "zebra", "faq.jsonl#q1");
    /* ...and with the context weight at 0 the text match does */
    sp.context_weight = 0;
    assert_int_equal(bee_search_set_params(s, &sp), 0);
    expect_top(s, "zebra", "faq.jsonl#q2");
    sp.context_weight = BEE_SEARCH_CONTEXT_WEIGHT;
    assert_int_equal(bee_search_set_params(s, &sp), 0);
    /* the passage under "Giraffe feeding" that only says "keepers ... racks" is found by the heading */
    bee_search_hit *h;
    size_t n;
    assert_int_equal(bee_search_query(s, "giraffe keepers", 5, &h, &n), 0);
    assert_true(n >= 2);
    assert_string_equal(h[0].heading, "Giraffe feeding");
    assert_non_null(strstr(h[0].text, "keepers"));
    assert_null(strstr(h[0].text, "Giraffe"));
    bee_search_hits_free(h, n);
    sp.context_weight = -1;
    assert_int_equal(bee_search_set_params(s, &sp), -1);
    bee_search_close(s);
    /* a non-string title fails the file */
    snprintf(p, sizeof p, "%s/bad.jsonl", dir);
    write_text(p, "{\"text\": \"x\", \"title\": 3}\n");
    s = open_index("ctx.sqlite");
    assert_int_equal(bee_search_index(s, paths, 1, &c), -1);
    assert_non_null(strstr(bee_error_message(), "title"));
    bee_search_close(s);
}

/* Pseudo-relevance feedback (off by default): a record that shares no term
 * with the query is found through terms of the first pass's top passage. */
static void test_prf(void **st) {
    (void)st;
    char dir[4096], p[4200];
    snprintf(dir, sizeof dir, "%s", tu_tmp("prf"));
    bee_mkdir_p(dir);
    snprintf(p, sizeof p, "%s/f.jsonl", dir);
    write_text(p, "{\"id\": \"a\", \"text\": \"apple orchard harvest\"}\n"
                  "{\"id\": \"b\", \"text\": \"orchard harvest festival\"}\n"
                  "{\"id\": \"c\", \"text\": \"river boat\"}\n{\"id\": \"d\", \"text\": \"mountain snow\"}\n"
                  "{\"id\": \"e\", \"text\": \"desert sand\"}\n{\"id\": \"f\", \"text\": \"city traffic\"}\n");
    bee_search *s = open_index("prf.sqlite");
    bee_index_stats c;
    const char *paths[] = {dir};
    assert_int_equal(bee_search_index(s, paths, 1, &c), 0);
    bee_search_params sp;
    bee_search_get_params(s, &sp);
    assert_int_equal(sp.prf_docs, BEE_SEARCH_PRF_DOCS);
    assert_int_equal(query(s, "apple", 5, NULL, 0), 1);
    sp.prf_docs = 1, sp.prf_terms = 5;
    assert_int_equal(bee_search_set_params(s, &sp), 0);
    bee_search_hit *h;
    size_t n;
    assert_int_equal(bee_search_query(s, "apple", 5, &h, &n), 0);
    assert_int_equal(n, 2);
    assert_non_null(strstr(h[0].doc, "#a"));
    assert_non_null(strstr(h[1].doc, "#b"));
    bee_search_hits_free(h, n);
    assert_int_equal(query(s, "nothing-matches-this", 5, NULL, 0), 0);
    assert_true(query(s, "\"NEAR( apple", 5, NULL, 0) >= 1);
    bee_search_close(s);
}

/* An index written by another tokenizer version is refused, naming the file and both versions. */
static void test_old_schema(void **st) {
    (void)st;
#ifdef BEE_HAVE_SQLITE
    const char *p = tu_tmp("old.sqlite");
    bee_search *s = open_index("old.sqlite");
    bee_search_close(s);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE meta SET value='bee-search-1' WHERE key='schema'", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(bee_search_open(p, &s), -1);
    assert_null(s);
    const char *m = bee_error_message();
    assert_non_null(strstr(m, "old.sqlite"));
    assert_non_null(strstr(m, "bee-search-1"));
    assert_non_null(strstr(m, "bee-search-3"));
#else
    skip();
#endif
}

static void test_bad_db(void **st) {
    (void)st;
    bee_search *s;
    assert_int_equal(bee_search_open("/nonexistent-dir/x/index.sqlite", &s), -1);
    assert_null(s);
    assert_non_null(strstr(bee_error_message(), "/nonexistent-dir/x/index.sqlite"));
    const char *notdb = tu_tmp("notdb.sqlite");
    write_text(notdb, "this is not a database, just some text that is long enough to have a header");
    assert_int_equal(bee_search_open(notdb, &s), -1);
    assert_non_null(strstr(bee_error_message(), "notdb.sqlite"));
}

/* ================================================================ CLI */

static int bee(char **out, const char *args) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "%s %s", tu_bee(), args);
    return tu_run(cmd, out);
}

static void test_cli(void **st) {
    (void)st;
    const char *dir = corpus_dir(), *db = tu_tmp("cli.sqlite");
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "index --db %s %s --json", db, dir);
    assert_int_equal(bee(&out, cmd), 0);
    json_t *o = json_loads(out, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(o, "added")), 4);
    json_decref(o);
    free(out);
    snprintf(cmd, sizeof cmd, "search --db %s -k 2 --json '首都 \"NEAR(*'", db);
    assert_int_equal(bee(&out, cmd), 0);
    o = json_loads(out, 0, NULL);
    if (!json_is_array(o) || json_array_size(o) != 1) fail_msg("search output: %s", out);
    json_t *h = json_array_get(o, 0);
    assert_non_null(strstr(json_string_value(json_object_get(h, "doc")), "beijing.md"));
    assert_true(json_is_integer(json_object_get(h, "passage")));
    assert_true(json_real_value(json_object_get(h, "score")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(h, "text")), "首都"));
    json_decref(o);
    free(out);

    assert_int_equal(bee(&out, "search --db /nonexistent-dir/i.sqlite 首都"), 1);
    assert_non_null(strstr(out, "/nonexistent-dir/i.sqlite"));
    free(out);
    assert_int_equal(bee(&out, "search 首都"), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "search --db %s -k 0 x", db);
    assert_int_equal(bee(&out, cmd), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "index --db %s %s/no-such-file.txt", db, dir);
    assert_int_equal(bee(&out, cmd), 1);
    assert_non_null(strstr(out, "no-such-file.txt"));
    free(out);
    assert_int_equal(bee(&out, "index --help"), 0);
    free(out);
    assert_int_equal(bee(&out, "search --bogus"), 2);
    free(out);

    /* bee ask with a random model: only the mechanics (prompt, answer, cited passages) */
    const char *model = tu_tmp("demo.gguf");
    snprintf(cmd, sizeof cmd, "init -o %s --seed 3", model);
    assert_int_equal(bee(&out, cmd), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "ask -m %s --db %s -k 2 --max-length 8 --json '北京的首都<x>'", model, db);
    if (bee(&out, cmd) != 0) fail_msg("ask: %s", out);
    o = json_loads(out, 0, NULL);
    assert_true(json_is_string(json_object_get(o, "answer")));
    json_t *ps = json_object_get(o, "passages"), *cited = json_object_get(o, "cited");
    assert_true(json_array_size(ps) >= 1);
    size_t i;
    json_t *v;
    json_array_foreach(cited, i, v) assert_true(json_integer_value(v) >= 1 && (size_t)json_integer_value(v) <= json_array_size(ps));
    const char *prompt = json_string_value(json_object_get(o, "prompt"));
    assert_non_null(strstr(prompt, "[1] "));
    assert_non_null(strstr(prompt, "<<x>"));
    json_decref(o);
    free(out);
    snprintf(cmd, sizeof cmd, "ask -m %s --db %s -k 1 --max-length 4 首都", model, db);
    assert_int_equal(bee(&out, cmd), 0);
    assert_non_null(strstr(out, "[1] "));
    assert_non_null(strstr(out, "beijing.md"));
    free(out);
}

/* ================================================================ CMRC 2018 */

static void test_cmrc(void **st) {
    (void)st;
    const char *path = tu_shared("data/cmrc2018/cmrc2018_dev.json");
    if (!bee_file_exists(path)) {
        fprintf(stderr, "SKIP: %s not found (set BEE_SHARED_DIR)\n", path);
        skip();
    }
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    assert_non_null(root);
    json_t *data = json_object_get(root, "data");
    const size_t n_docs = 60;
    bee_str jl = {0};
    for (size_t i = 0; i < n_docs && i < json_array_size(data); i++) {
        json_t *p = json_array_get(json_object_get(json_array_get(data, i), "paragraphs"), 0);
        json_t *rec = json_pack("{s:O, s:O}", "id", json_object_get(p, "id"), "text", json_object_get(p, "context"));
        char *line = json_dumps(rec, JSON_COMPACT);
        bee_str_appendz(&jl, line);
        bee_str_appendz(&jl, "\n");
        free(line);
        json_decref(rec);
    }
    const char *file = tu_tmp("cmrc.jsonl");
    tu_write(file, jl.s, jl.n);
    bee_str_free(&jl);
    bee_search *s = open_index("cmrc.sqlite");
    bee_index_stats c;
    assert_int_equal(bee_search_index(s, &file, 1, &c), 0);
    size_t asked = 0, found = 0;
    for (size_t i = 0; i < n_docs && i < json_array_size(data); i++) {
        json_t *p = json_array_get(json_object_get(json_array_get(data, i), "paragraphs"), 0);
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *q = json_string_value(json_object_get(json_array_get(json_object_get(p, "qas"), 0), "question"));
        bee_search_hit *h;
        size_t n;
        assert_int_equal(bee_search_query(s, q, 5, &h, &n), 0);
        char want[64];
        snprintf(want, sizeof want, "#%s", id);
        for (size_t k = 0; k < n; k++) {
            const char *hash = strrchr(h[k].doc, '#');
            if (hash && strcmp(hash, want) == 0) {
                found++;
                break;
            }
        }
        asked++;
        bee_search_hits_free(h, n);
    }
    fprintf(stderr, "cmrc: %zu/%zu questions find their passage in the top 5 of %llu passages\n", found, asked,
            (unsigned long long)c.passages);
    assert_true(found * 10 >= asked * 8);
    bee_search_close(s);
    json_decref(root);
}

#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_cjk),
        cmocka_unit_test(test_tokenizer_english),
        cmocka_unit_test(test_html_and_split),
#ifdef BEE_HAVE_SQLITE
        cmocka_unit_test(test_index_search),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_bad_file_rolls_back),
        cmocka_unit_test(test_hostile_queries),
        cmocka_unit_test(test_bad_db),
        cmocka_unit_test(test_old_schema),
        cmocka_unit_test(test_context_column),
        cmocka_unit_test(test_prf),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cmrc),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
