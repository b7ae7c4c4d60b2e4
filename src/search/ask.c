/* Retrieval-augmented answering, the part shared by `bee ask` and
 * `POST /v1/ask`: the hit as JSON, the CPM-Bee dict given to the model, and
 * the citations found in its answer. Running the model differs (the CLI calls
 * beam search directly, the server queues a job), so it is not here. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"
#include "util/buf.h"
#include "util/json.h"

json_t *bee_json_utf8(const char *s) { return bee_json_string_lossy(s, strlen(s)); }

json_t *bee_search_hit_json(const bee_search_hit *h) {
    return json_pack("{s:o, s:I, s:f, s:o, s:I, s:o}", "doc", bee_json_utf8(h->doc), "passage", (json_int_t)h->passage,
                     "score", h->score, "text", bee_json_utf8(h->text), "offset", (json_int_t)h->offset, "heading",
                     bee_json_utf8(h->heading));
}

/* CPM-Bee text: a literal '<' is written "<<". */
static void append_escaped(bee_str *o, const char *t) {
    for (; *t; t++) bee_str_append(o, *t == '<' ? "<<" : t, 1 + (*t == '<'));
}

json_t *bee_ask_dict(const char *question, const bee_search_hit *h, size_t n) {
    bee_str in = {0}, q = {0};
    bee_str_append(&in, "", 0);
    bee_str_append(&q, "", 0);
    for (size_t i = 0; i < n; i++) {
        bee_str_printf(&in, "%s[%zu] ", i ? "\n" : "", i + 1);
        append_escaped(&in, h[i].text);
    }
    append_escaped(&q, question);
    json_t *d = in.s && q.s ? json_pack("{s:o, s:o, s:s}", "input", bee_json_utf8(in.s), "question", bee_json_utf8(q.s),
                                        "<ans>", "")
                            : NULL;
    bee_str_free(&in);
    bee_str_free(&q);
    return d;
}

size_t bee_ask_citations(const char *answer, size_t n_hits, int *cited) {
    size_t bad = 0;
    for (const char *p = strchr(answer, '['); p; p = strchr(p + 1, '[')) {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != ']') continue;
        if (v >= 1 && (size_t)v <= n_hits) cited[v - 1] = 1;
        else bad++;
    }
    return bad;
}

json_t *bee_ask_result_json(const char *answer, const bee_search_hit *h, size_t n, const char *prompt) {
    int *cited = calloc(n + 1, sizeof *cited);
    if (!cited) return NULL;
    size_t bad = bee_ask_citations(answer, n, cited);
    json_t *arr = json_array(), *cit = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = bee_search_hit_json(&h[i]);
        json_object_set_new(j, "n", json_integer((json_int_t)i + 1));
        json_object_set_new(j, "cited", json_boolean(cited[i]));
        json_array_append_new(arr, j);
        if (cited[i]) json_array_append_new(cit, json_integer((json_int_t)i + 1));
    }
    free(cited);
    json_t *o = json_pack("{s:o, s:o, s:I, s:o}", "answer", bee_json_utf8(answer), "cited", cit, "invalid_citations",
                          (json_int_t)bad, "passages", arr);
    if (o && prompt) json_object_set_new(o, "prompt", json_string(prompt));
    return o;
}
