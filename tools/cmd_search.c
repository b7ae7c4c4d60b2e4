/* bee index, bee search, bee ask: passage retrieval over a document store. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bee.h"
#include "cli.h"
#include "search/search.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* JSON strings must be UTF-8: invalid bytes (possible in indexed files) become U+FFFD. */
static json_t *json_utf8(const char *s) {
    size_t n = strlen(s);
    if (!bee_utf8_check(s, n)) return json_stringn(s, n);
    bee_str t = {0};
    for (size_t i = 0; i < n;) {
        int k = bee_utf8_len((const unsigned char *)s + i, n - i);
        if (k > 0) bee_str_append(&t, s + i, (size_t)k);
        else bee_str_appendz(&t, "\xEF\xBF\xBD");
        i += k > 0 ? (size_t)k : 1;
    }
    json_t *j = json_stringn(t.s ? t.s : "", t.n);
    bee_str_free(&t);
    return j;
}

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

static json_t *hit_json(const bee_search_hit *h) {
    return json_pack("{s:o, s:I, s:f, s:o, s:I, s:o}", "doc", json_utf8(h->doc), "passage", (json_int_t)h->passage,
                     "score", h->score, "text", json_utf8(h->text), "offset", (json_int_t)h->offset, "heading",
                     json_utf8(h->heading));
}

#define OPT_DB {"db", 0, "INDEX.sqlite", "index database (required)", "BEE_SEARCH_DB", 0}
#define OPT_K(what) {"k", 'k', "K", what, "BEE_SEARCH_K", 0}

/* ================================================================ bee index */

int cmd_index(int argc, char **argv) {
    static const cli_opt opts[] = {
        OPT_DB,
        {"json", 0, NULL, "print the counts as one JSON object", "BEE_SEARCH_JSON", 0},
        {0},
    };
    cli_args a = {"index", "--db INDEX.sqlite [--json] DIR|FILE...",
                  "Adds documents (.txt .md .html .htm .jsonl with a \"text\" field) to a search index, split into\n"
                  "passages. Only new or changed files are read again; indexed files that are gone from a given\n"
                  "folder are removed. Prints the counts of added/updated/removed/unchanged files and passages.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *db = cli_get(&a, "db");
    if (!db) rc = cli_error(a.cmd, "missing --db INDEX.sqlite") + 1;
    else if (a.n_pos < 1) rc = cli_error(a.cmd, "expected at least one DIR or FILE") + 1;
    bee_search *s = NULL;
    bee_index_stats st;
    /* CPU time too: on a shared machine it varies much less than wall time */
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (rc == 0 && (bee_search_open(db, &s) || bee_search_index(s, a.pos, (size_t)a.n_pos, &st))) rc = cli_fail(a.cmd);
    double dt = clock_s(CLOCK_MONOTONIC) - t0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    double mbs = dt > 0 ? (double)(rc ? 0 : st.bytes) / 1e6 / dt : 0;
    if (rc == 0 && cli_get(&a, "json"))
        print_json(json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "added", (json_int_t)st.added, "updated",
                             (json_int_t)st.updated, "removed", (json_int_t)st.removed, "unchanged",
                             (json_int_t)st.unchanged, "skipped", (json_int_t)st.skipped, "passages",
                             (json_int_t)st.passages, "bytes", (json_int_t)st.bytes, "seconds", dt, "cpu_seconds", cpu, "mb_per_s", mbs));
    else if (rc == 0)
        printf("files: %llu added, %llu updated, %llu removed, %llu unchanged, %llu skipped (not a document type)\n"
               "passages: %llu written\nread: %.2f MB in %.2f s (%.2f MB/s, %.2f s CPU)\n",
               (unsigned long long)st.added, (unsigned long long)st.updated, (unsigned long long)st.removed,
               (unsigned long long)st.unchanged, (unsigned long long)st.skipped, (unsigned long long)st.passages,
               (double)st.bytes / 1e6, dt, mbs, cpu);
    bee_search_close(s);
    cli_free(&a);
    return rc;
}

/* ================================================================ bee search */

static int open_and_query(cli_args *a, const char *query, bee_search_hit **h, size_t *n) {
    const char *db = cli_get(a, "db");
    long k = 5;
    if (!db) return cli_error(a->cmd, "missing --db INDEX.sqlite") + 1;
    if (cli_int(a, "k", 1, 1000, &k)) return 2;
    if (!bee_file_exists(db)) return cli_error(a->cmd, "%s: no such index (create it with bee index)", db);
    bee_search *s = NULL;
    int rc = bee_search_open(db, &s) || bee_search_query(s, query, (int)k, h, n) ? cli_fail(a->cmd) : 0;
    bee_search_close(s);
    return rc;
}

int cmd_search(int argc, char **argv) {
    static const cli_opt opts[] = {
        OPT_DB,
        OPT_K("number of passages (default 5)"),
        {"json", 0, NULL, "print one JSON array of {\"doc\", \"passage\", \"score\", \"text\", ...}", "BEE_SEARCH_JSON", 0},
        {0},
    };
    cli_args a = {"search", "--db INDEX.sqlite [-k K] [--json] QUERY",
                  "Prints the K passages that best match QUERY (BM25 over the bee tokenizer: Chinese characters\n"
                  "and bigrams, stemmed English words). QUERY is plain text: quotes, operators and brackets have\n"
                  "no special meaning.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_search_hit *h = NULL;
    size_t n = 0;
    if (a.n_pos != 1) rc = cli_error(a.cmd, "expected one QUERY argument (quote it)") + 1;
    else rc = open_and_query(&a, a.pos[0], &h, &n);
    if (rc == 0 && cli_get(&a, "json")) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, hit_json(&h[i]));
        print_json(arr);
    } else if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s[%zu] %.3f %s (passage %lld%s%s)\n%s\n", i ? "\n" : "", i + 1, h[i].score, h[i].doc,
                   (long long)h[i].passage, h[i].heading[0] ? ", " : "", h[i].heading, h[i].text);
        if (n == 0) printf("no match\n");
    }
    bee_search_hits_free(h, n);
    cli_free(&a);
    return rc;
}

/* ================================================================ bee ask */

/* CPM-Bee text: a literal '<' is written "<<". */
static void append_escaped(bee_str *o, const char *t) {
    for (; *t; t++) bee_str_append(o, *t == '<' ? "<<" : t, 1 + (*t == '<'));
}

static char *ask_prompt(const char *question, const bee_search_hit *h, size_t n) {
    bee_str in = {0}, q = {0};
    bee_str_append(&in, "", 0);
    bee_str_append(&q, "", 0);
    for (size_t i = 0; i < n; i++) {
        bee_str_printf(&in, "%s[%zu] ", i ? "\n" : "", i + 1);
        append_escaped(&in, h[i].text);
    }
    append_escaped(&q, question);
    json_t *d = json_pack("{s:o, s:o, s:s}", "input", json_utf8(in.s), "question", json_utf8(q.s), "<ans>", "");
    bee_str_free(&in);
    bee_str_free(&q);
    char *s = d ? json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(d);
    return s;
}

/* The [n] citations in the answer: valid ones (1..n_hits) into `cited`, the rest counted. */
static size_t parse_citations(const char *ans, size_t n_hits, int *cited) {
    size_t bad = 0;
    for (const char *p = strchr(ans, '['); p; p = strchr(p + 1, '[')) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != ']') continue;
        if (v >= 1 && (size_t)v <= n_hits) cited[v - 1] = 1;
        else bad++;
    }
    return bad;
}

static int ask_answer(cli_args *a, const char *question, const bee_search_hit *h, size_t n) {
    bee_model *m = NULL;
    char *prompt = ask_prompt(question, h, n), *out = NULL;
    if (!prompt) return cli_error(a->cmd, "out of memory");
    if (cli_model_load(a->cmd, a, &m)) {
        free(prompt);
        return 1;
    }
    bee_generate_params p;
    bee_generate_params_default(&p);
    long max_len = 100;
    int rc = cli_int(a, "max-length", 1, 4096, &max_len) ? 2 : 0;
    p.max_length = (int)max_len;
    if (rc == 0 && bee_generate_json(m, prompt, &p, &out)) rc = cli_fail(a->cmd);
    json_t *o = rc == 0 ? json_loads(out, 0, NULL) : NULL;
    const char *ans = json_string_value(json_object_get(o, "<ans>"));
    if (rc == 0 && !ans) rc = cli_error(a->cmd, "model output has no <ans> string");
    if (rc == 0) {
        int *cited = calloc(n + 1, sizeof *cited);
        size_t bad = parse_citations(ans, n, cited);
        if (cli_get(a, "json")) {
            json_t *arr = json_array(), *cit = json_array();
            for (size_t i = 0; i < n; i++) {
                json_t *j = hit_json(&h[i]);
                json_object_set_new(j, "n", json_integer((json_int_t)i + 1));
                json_array_append_new(arr, j);
                if (cited[i]) json_array_append_new(cit, json_integer((json_int_t)i + 1));
            }
            print_json(json_pack("{s:o, s:o, s:I, s:o, s:s}", "answer", json_utf8(ans), "cited", cit,
                                 "invalid_citations", (json_int_t)bad, "passages", arr, "prompt", prompt));
        } else {
            printf("%s\n\n", ans);
            for (size_t i = 0; i < n; i++)
                printf("[%zu] %s (passage %lld)%s\n", i + 1, h[i].doc, (long long)h[i].passage, cited[i] ? " *cited*" : "");
            if (bad) fprintf(stderr, "bee ask: the answer cites %zu passage number(s) that do not exist\n", bad);
        }
        free(cited);
    }
    json_decref(o);
    free(out);
    free(prompt);
    bee_model_free(m);
    return rc;
}

int cmd_ask(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model that writes the answer (required)", "BEE_MODEL", 0},
        OPT_DB,
        OPT_K("passages given to the model (default 5)"),
        {"max-length", 0, "N", "beam search max length (default 100)", "BEE_MAX_LENGTH", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        {"json", 0, NULL, "print {\"answer\", \"cited\", \"invalid_citations\", \"passages\", \"prompt\"}", "BEE_SEARCH_JSON", 0},
        {0},
    };
    cli_args a = {"ask", "-m MODEL.gguf --db INDEX.sqlite [-k K] [--json] QUESTION",
                  "Retrieves the K best passages for QUESTION and asks the model with the CPM-Bee dict\n"
                  "{\"input\": \"[1] ... [2] ...\", \"question\": Q, \"<ans>\": \"\"}; prints the answer, then the\n"
                  "passages as [n] doc (marking those the answer cites; citations of missing numbers are reported).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_search_hit *h = NULL;
    size_t n = 0;
    if (a.n_pos != 1) rc = cli_error(a.cmd, "expected one QUESTION argument (quote it)") + 1;
    else if (!cli_get(&a, "model")) rc = cli_error(a.cmd, "missing -m MODEL.gguf") + 1;
    else rc = open_and_query(&a, a.pos[0], &h, &n);
    if (rc == 0) rc = ask_answer(&a, a.pos[0], h, n);
    bee_search_hits_free(h, n);
    cli_free(&a);
    return rc;
}
