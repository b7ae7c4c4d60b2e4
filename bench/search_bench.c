/* Retrieval quality and query latency of a bee search index.
 * usage: search_bench --db INDEX.sqlite --questions Q.jsonl [-k K]
 * Q.jsonl lines: {"question": ..., "doc": "#ID" (suffix of the expected doc), "answer": ..., "lang": ...};
 * with "heading" instead of "doc", a hit is a passage whose heading contains that text.
 * Prints Recall@K and MRR@K by document and by passage (a hit from the right
 * document whose text contains the answer; only when "answer" is given), and
 * query latency p50/p99; with "lang" fields, Recall@K and MRR@K by document
 * for each language too. --context-weight W, --prf-docs D, --prf-terms T
 * --k1 K, --b B set the ranking parameters (bee_search_params); --half 0|1 keeps only the
 * even or odd question lines. --misses prints the questions not found in the top K. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "search/search.h"
#include "util/error.h"

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

typedef struct {
    char name[16];
    size_t n, hit;
    double rr;
} lang_stat;

int main(int argc, char **argv) {
    const char *db = NULL, *qpath = NULL;
    int k = 5, misses = 0, fetch = 0, half = -1; /* half 0/1: only the even/odd questions (tune on one, report on the other) */
    double ctx_w = -1, k1 = -1, b = -1;
    int prf_docs = -1, prf_terms = -1; /* fetch > k: rank by distinct documents among the top `fetch` passages */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--misses")) misses = 1;
        else if (i + 1 >= argc) break;
        else if (!strcmp(argv[i], "--db")) db = argv[++i];
        else if (!strcmp(argv[i], "--questions")) qpath = argv[++i];
        else if (!strcmp(argv[i], "-k")) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fetch")) fetch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--half")) half = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--context-weight")) ctx_w = atof(argv[++i]);
        else if (!strcmp(argv[i], "--k1")) k1 = atof(argv[++i]);
        else if (!strcmp(argv[i], "--b")) b = atof(argv[++i]);
        else if (!strcmp(argv[i], "--prf-docs")) prf_docs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prf-terms")) prf_terms = atoi(argv[++i]);
    }
    if (!db || !qpath || k < 1) {
        fprintf(stderr, "usage: search_bench --db INDEX.sqlite --questions Q.jsonl [-k K]\n");
        return 2;
    }
    FILE *f = fopen(qpath, "r");
    bee_search *s;
    if (!f || bee_search_open(db, &s)) {
        fprintf(stderr, "search_bench: %s\n", f ? bee_error_message() : qpath);
        return 1;
    }
    bee_search_params sp;
    bee_search_get_params(s, &sp);
    if (ctx_w >= 0) sp.context_weight = ctx_w;
    if (prf_docs >= 0) sp.prf_docs = prf_docs;
    if (k1 >= 0) sp.k1 = k1;
    if (b >= 0) sp.b = b;
    if (prf_terms >= 0) sp.prf_terms = prf_terms;
    if (bee_search_set_params(s, &sp)) {
        fprintf(stderr, "search_bench: %s\n", bee_error_message());
        return 2;
    }
    char line[65536];
    size_t lineno = 0;
    lang_stat langs[8];
    size_t n_langs = 0, n_ans = 0;
    size_t n = 0, cap = 1024, doc_hit = 0, pas_hit = 0;
    double *lat = malloc(cap * sizeof *lat), doc_rr = 0, pas_rr = 0;
    while (fgets(line, sizeof line, f)) {
        if (half >= 0 && (int)(lineno++ % 2) != half) continue;
        json_t *o = json_loads(line, 0, NULL);
        const char *q = json_string_value(json_object_get(o, "question"));
        const char *want = json_string_value(json_object_get(o, "doc"));
        /* "heading": a hit is a passage whose heading (context) contains it, from any document */
        const char *want_heading = json_string_value(json_object_get(o, "heading"));
        if (want_heading && !want) want = "";
        const char *ans = json_string_value(json_object_get(o, "answer"));
        if (!q || !want) {
            json_decref(o);
            continue;
        }
        bee_search_hit *h;
        size_t nh;
        double t0 = now_ms();
        if (bee_search_query(s, q, fetch > k ? fetch : k, &h, &nh)) {
            fprintf(stderr, "search_bench: %s\n", bee_error_message());
            return 1;
        }
        if (n == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = now_ms() - t0;
        int dr = 0, pr = 0, rank = 0;
        for (size_t i = 0; i < nh && rank < k; i++) {
            int dup = 0;
            for (size_t j = 0; fetch > k && j < i; j++) dup |= strcmp(h[j].doc, h[i].doc) == 0;
            if (dup) continue;
            rank++;
            int d = want_heading ? strstr(h[i].heading, want_heading) != NULL : ends_with(h[i].doc, want);
            if (d && !dr) dr = rank;
            if (d && !pr && ans && strstr(h[i].text, ans)) pr = rank;
        }
        doc_hit += dr > 0;
        pas_hit += pr > 0;
        n_ans += ans != NULL;
        const char *lang = json_string_value(json_object_get(o, "lang"));
        if (lang) {
            size_t l = 0;
            while (l < n_langs && strcmp(langs[l].name, lang)) l++;
            if (l == n_langs && n_langs < 8) {
                memset(&langs[l], 0, sizeof langs[l]);
                snprintf(langs[l].name, sizeof langs[l].name, "%s", lang);
                n_langs++;
            }
            if (l < n_langs) {
                langs[l].n++;
                langs[l].hit += dr > 0;
                langs[l].rr += dr ? 1.0 / dr : 0;
            }
        }
        if (misses && !dr)
            fprintf(stderr, "miss: %s -> %s (want %s)\n", q, nh ? h[0].doc : "(nothing)", want);
        doc_rr += dr ? 1.0 / dr : 0;
        pas_rr += pr ? 1.0 / pr : 0;
        bee_search_hits_free(h, nh);
        json_decref(o);
    }
    fclose(f);
    bee_search_close(s);
    if (!n) return 1;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += lat[i];
    qsort(lat, n, sizeof *lat, cmp_d);
    printf("{\"context_weight\": %g, \"k1\": %g, \"b\": %g, \"prf_docs\": %d, \"prf_terms\": %d, ", sp.context_weight, sp.k1, sp.b, sp.prf_docs, sp.prf_terms);
    printf("\"questions\": %zu, \"k\": %d, \"recall_doc\": %.4f, \"mrr_doc\": %.4f", n, k,
           (double)doc_hit / (double)n, doc_rr / (double)n);
    if (n_ans) printf(", \"recall_passage\": %.4f, \"mrr_passage\": %.4f", (double)pas_hit / (double)n, pas_rr / (double)n);
    for (size_t l = 0; l < n_langs; l++)
        printf(", \"%s\": {\"questions\": %zu, \"recall_doc\": %.4f, \"mrr_doc\": %.4f}", langs[l].name, langs[l].n,
               (double)langs[l].hit / (double)langs[l].n, langs[l].rr / (double)langs[l].n);
    printf(", \"latency_ms_p50\": %.3f, \"latency_ms_p99\": %.3f, \"latency_ms_mean\": %.3f}\n", lat[n / 2],
           lat[(size_t)((double)n * 0.99)], sum / (double)n);
    free(lat);
    return 0;
}
