/* The unigram baseline: a "model" that scores text by the unigram
 * log-probabilities of its eval tokens (bee_eval_tokenize: one token per CJK
 * character, lower-cased ASCII words) estimated from a text file with add-one
 * smoothing: p(w) = (c(w) + 1) / (N + V + 1), where N is the number of tokens
 * in the file, V the number of distinct ones, and the extra 1 is the share of
 * every unseen token. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/error.h"
#include "util/file.h"

struct bee_unigram {
    json_t *counts; /* token -> count */
    double n, v;
};

int bee_unigram_load(const char *path, bee_unigram **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    if (bee_read_file(path, &text, &len)) return -1;
    size_t bad = bee_utf8_check(text, len);
    if (bad) {
        free(text);
        return bee_fail("%s: not valid UTF-8 (byte %zu)", path, bad - 1);
    }
    bee_unigram *u = calloc(1, sizeof *u);
    bee_eval_toks t = {0};
    int rc = u && (u->counts = json_object()) ? bee_eval_tokenize(text, &t) : bee_fail("out of memory");
    free(text);
    for (size_t i = 0; rc == 0 && i < t.n; i++) {
        json_t *c = json_object_get(u->counts, t.v[i]);
        if (c) json_integer_set(c, json_integer_value(c) + 1);
        else if (json_object_set_new(u->counts, t.v[i], json_integer(1))) rc = bee_fail("out of memory");
    }
    if (rc == 0 && t.n == 0) rc = bee_fail("%s: no tokens to count (the unigram model needs some text)", path);
    if (u) u->n = (double)t.n, u->v = (double)json_object_size(u->counts);
    bee_eval_toks_free(&t);
    if (rc) {
        bee_unigram_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

double bee_unigram_token_logprob(const bee_unigram *u, const char *tok) {
    json_t *c = json_object_get(u->counts, tok);
    return log(((double)(c ? json_integer_value(c) : 0) + 1.0) / (u->n + u->v + 1.0));
}

int bee_unigram_logprob(const bee_unigram *u, const char *text, double *ll, size_t *n_tok) {
    bee_eval_toks t = {0};
    *ll = 0, *n_tok = 0;
    if (bee_eval_tokenize(text, &t)) return -1;
    for (size_t i = 0; i < t.n; i++) *ll += bee_unigram_token_logprob(u, t.v[i]);
    *n_tok = t.n;
    bee_eval_toks_free(&t);
    return 0;
}

void bee_unigram_free(bee_unigram *u) {
    if (!u) return;
    json_decref(u->counts);
    free(u);
}
