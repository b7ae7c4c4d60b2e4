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

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
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
                  "Adds documents (.txt .md .html .htm .jsonl with a \"text\" field, optional \"title\") to a search\n"
                  "index, split into passages; each passage is also indexed with its heading or record title. Only new or changed files are read again; indexed files that are gone from a given\n"
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
                  "Prints the K passages that best match QUERY (BM25 over the bee tokenizer: Chinese bigrams, a\n"
                  "single character matched as a prefix, stemmed English words; a match in the passage's heading\n"
                  "or title counts 5 times). QUERY is plain text: quotes,\n"
                  "operators and brackets have no special meaning.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_search_hit *h = NULL;
    size_t n = 0;
    if (a.n_pos != 1) rc = cli_error(a.cmd, "expected one QUERY argument (quote it)") + 1;
    else rc = open_and_query(&a, a.pos[0], &h, &n);
    if (rc == 0 && cli_get(&a, "json")) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) json_array_append_new(arr, bee_search_hit_json(&h[i]));
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

static int ask_answer(cli_args *a, const char *question, const bee_search_hit *h, size_t n) {
    bee_model *m = NULL;
    json_t *dict = bee_ask_dict(question, h, n);
    char *prompt = dict ? json_dumps(dict, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL, *out = NULL;
    json_decref(dict);
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
    json_t *r = rc == 0 ? bee_ask_result_json(ans, h, n, prompt) : NULL;
    if (rc == 0 && !r) rc = cli_error(a->cmd, "out of memory");
    if (rc == 0 && cli_get(a, "json")) {
        print_json(json_incref(r));
    } else if (rc == 0) {
        printf("%s\n\n", ans);
        json_t *ps = json_object_get(r, "passages");
        for (size_t i = 0; i < n; i++)
            printf("[%zu] %s (passage %lld)%s\n", i + 1, h[i].doc, (long long)h[i].passage,
                   json_is_true(json_object_get(json_array_get(ps, i), "cited")) ? " *cited*" : "");
        json_int_t bad = json_integer_value(json_object_get(r, "invalid_citations"));
        if (bad) fprintf(stderr, "bee ask: the answer cites %lld passage number(s) that do not exist\n", (long long)bad);
    }
    json_decref(r);
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
