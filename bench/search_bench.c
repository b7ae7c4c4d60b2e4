/* Retrieval quality and query latency of a bee search index.
 * usage: search_bench --db INDEX.sqlite --questions Q.jsonl [-k K]
 * Q.jsonl lines: {"question": ..., "doc": "#ID" (suffix of the expected doc), "answer": ...}.
 * Prints Recall@K and MRR@K by document and by passage (a hit from the right
 * document whose text contains the answer), and query latency p50/p99. */
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

int main(int argc, char **argv) {
    const char *db = NULL, *qpath = NULL;
    int k = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--db")) db = argv[i + 1];
        else if (!strcmp(argv[i], "--questions")) qpath = argv[i + 1];
        else if (!strcmp(argv[i], "-k")) k = atoi(argv[i + 1]);
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
    char line[65536];
    size_t n = 0, cap = 1024, doc_hit = 0, pas_hit = 0;
    double *lat = malloc(cap * sizeof *lat), doc_rr = 0, pas_rr = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        const char *q = json_string_value(json_object_get(o, "question"));
        const char *want = json_string_value(json_object_get(o, "doc"));
        const char *ans = json_string_value(json_object_get(o, "answer"));
        if (!q || !want) {
            json_decref(o);
            continue;
        }
        bee_search_hit *h;
        size_t nh;
        double t0 = now_ms();
        if (bee_search_query(s, q, k, &h, &nh)) {
            fprintf(stderr, "search_bench: %s\n", bee_error_message());
            return 1;
        }
        if (n == cap) lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = now_ms() - t0;
        int dr = 0, pr = 0;
        for (size_t i = 0; i < nh; i++) {
            int d = ends_with(h[i].doc, want);
            if (d && !dr) dr = (int)i + 1;
            if (d && !pr && ans && strstr(h[i].text, ans)) pr = (int)i + 1;
        }
        doc_hit += dr > 0;
        pas_hit += pr > 0;
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
    printf("{\"questions\": %zu, \"k\": %d, \"recall_doc\": %.4f, \"mrr_doc\": %.4f, \"recall_passage\": %.4f, "
           "\"mrr_passage\": %.4f, \"latency_ms_p50\": %.3f, \"latency_ms_p99\": %.3f, \"latency_ms_mean\": %.3f}\n",
           n, k, (double)doc_hit / (double)n, doc_rr / (double)n, (double)pas_hit / (double)n, pas_rr / (double)n,
           lat[n / 2], lat[(size_t)((double)n * 0.99)], sum / (double)n);
    free(lat);
    return 0;
}
