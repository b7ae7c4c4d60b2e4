/* libFuzzer: the search tokenizer in both modes, the query builder, HTML
 * extraction and passage splitting must not crash on any bytes; tokens must
 * lie inside the input, in order, and be bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "search/search.h"
#include "search/tokenize.h"

typedef struct {
    size_t n_in, last_start, count;
} check;

static int on_token(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    check *c = user;
    if (n == 0 || n > BEE_SEARCH_TOKEN_MAX + 4 || start >= end || end > c->n_in) abort();
    if (c->count == 0 && colocated) abort();
    if (c->count && start < c->last_start) abort();
    c->last_start = start;
    c->count++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    for (int mode = 0; mode < 2; mode++) {
        check c = {size, 0, 0};
        if (bee_search_tokenize(text, size, (bee_stok_mode)mode, on_token, &c)) abort();
    }
    char *z = malloc(size + 1);
    if (!z) return 0;
    memcpy(z, data, size);
    z[size] = 0;
    char *e = bee_search_match_expr(z);
    if (e) {
        /* every term is one quoted string: an even number of quote characters */
        size_t q = 0;
        for (const char *p = e; *p; p++) q += *p == '"';
        if (q % 2) abort();
    }
    free(e);
    free(z);
    size_t len;
    char *t = bee_html_to_text(text, size, &len);
    if (t) {
        bee_doc d = {t, len, NULL, 0, 0};
        if (bee_doc_split(&d, 1) == 0)
            for (size_t i = 0; i < d.n; i++)
                if (d.p[i].offset < 0 || (size_t)d.p[i].offset + d.p[i].len > len) abort();
        bee_doc_free(&d);
    }
    return 0;
}
