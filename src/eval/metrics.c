#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/buf.h"

static uint32_t utf8_decode(const unsigned char *p, int len) {
    if (len == 1) return p[0];
    uint32_t c = p[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) c = (c << 6) | (p[i] & 0x3F);
    return c;
}

/* CJK, full-width and general punctuation blocks: separators, not tokens. */
static int is_punct(uint32_t c) {
    return (c >= 0x2000 && c <= 0x206F) || (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF00 && c <= 0xFF0F) ||
           (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) ||
           c == 0xA0 || c == 0xB7 || c == 0xFEFF || (c >= 0xFE30 && c <= 0xFE4F);
}

/* Full-width digits and Latin letters score like their ASCII forms. */
static int ascii_fold(uint32_t c) {
    if (c >= 0xFF10 && c <= 0xFF19) return (int)(c - 0xFF10 + '0');
    if (c >= 0xFF21 && c <= 0xFF3A) return (int)(c - 0xFF21 + 'a');
    if (c >= 0xFF41 && c <= 0xFF5A) return (int)(c - 0xFF41 + 'a');
    if (c < 0x80 && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'))) return (int)c;
    if (c >= 'A' && c <= 'Z') return (int)(c - 'A' + 'a');
    return 0;
}

static int toks_push(bee_eval_toks *t, const char *s, size_t n, size_t *cap) {
    if (t->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        char **v = realloc(t->v, nc * sizeof *v);
        if (!v) return -1;
        t->v = v;
        *cap = nc;
    }
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    t->v[t->n++] = c;
    return 0;
}

/* English articles carry no answer content (SQuAD normalisation). */
static int is_article(const char *w, size_t n) {
    return (n == 1 && w[0] == 'a') || (n == 2 && !memcmp(w, "an", 2)) || (n == 3 && !memcmp(w, "the", 3));
}

int bee_eval_tokenize(const char *s, bee_eval_toks *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0, n = strlen(s), i = 0;
    bee_str word = {0};
    int rc = 0;
    while (rc == 0 && i <= n) {
        int len = i < n ? bee_utf8_len((const unsigned char *)s + i, n - i) : 1;
        if (len == 0) len = 1; /* a stray byte counts as a separator */
        uint32_t c = i < n ? utf8_decode((const unsigned char *)s + i, len) : 0;
        int a = i < n ? ascii_fold(c) : 0;
        if (a) {
            char ch = (char)a;
            rc = bee_str_append(&word, &ch, 1);
        } else {
            if (word.n && !is_article(word.s, word.n)) rc = toks_push(out, word.s, word.n, &cap);
            word.n = 0;
            if (rc == 0 && c >= 0x80 && !is_punct(c)) rc = toks_push(out, s + i, (size_t)len, &cap);
        }
        i += (size_t)len;
    }
    bee_str_free(&word);
    if (rc) bee_eval_toks_free(out);
    return rc;
}

void bee_eval_toks_free(bee_eval_toks *t) {
    for (size_t i = 0; i < t->n; i++) free(t->v[i]);
    free(t->v);
    memset(t, 0, sizeof *t);
}

static int tokenize_pair(const char *pred, const char *gold, bee_eval_toks *p, bee_eval_toks *g) {
    if (bee_eval_tokenize(pred, p)) return -1;
    if (bee_eval_tokenize(gold, g)) {
        bee_eval_toks_free(p);
        return -1;
    }
    return 0;
}

static double f_measure(size_t common, size_t n_pred, size_t n_gold) {
    if (n_pred == 0 || n_gold == 0) return n_pred == n_gold ? 1.0 : 0.0;
    if (common == 0) return 0;
    double p = (double)common / (double)n_pred, r = (double)common / (double)n_gold;
    return 2 * p * r / (p + r);
}

double bee_metric_em(const char *pred, const char *gold) {
    bee_eval_toks p, g;
    if (tokenize_pair(pred, gold, &p, &g)) return -1;
    int eq = p.n == g.n;
    for (size_t i = 0; eq && i < p.n; i++) eq = strcmp(p.v[i], g.v[i]) == 0;
    bee_eval_toks_free(&p);
    bee_eval_toks_free(&g);
    return eq ? 1.0 : 0.0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

double bee_metric_f1(const char *pred, const char *gold) {
    bee_eval_toks p, g;
    if (tokenize_pair(pred, gold, &p, &g)) return -1;
    /* multiset intersection by merging the sorted token lists */
    if (p.n) qsort(p.v, p.n, sizeof *p.v, cmp_str);
    if (g.n) qsort(g.v, g.n, sizeof *g.v, cmp_str);
    size_t i = 0, j = 0, common = 0;
    while (i < p.n && j < g.n) {
        int c = strcmp(p.v[i], g.v[j]);
        if (c == 0) common++, i++, j++;
        else if (c < 0) i++;
        else j++;
    }
    double f = f_measure(common, p.n, g.n);
    bee_eval_toks_free(&p);
    bee_eval_toks_free(&g);
    return f;
}

double bee_metric_rouge_l(const char *pred, const char *gold) {
    bee_eval_toks p, g;
    if (tokenize_pair(pred, gold, &p, &g)) return -1;
    /* LCS length with one rolling row */
    size_t *row = calloc(g.n + 1, sizeof *row);
    double f = -1;
    if (row) {
        for (size_t i = 0; i < p.n; i++) {
            size_t diag = 0;
            for (size_t j = 1; j <= g.n; j++) {
                size_t up = row[j];
                row[j] = strcmp(p.v[i], g.v[j - 1]) == 0 ? diag + 1 : (row[j - 1] > up ? row[j - 1] : up);
                diag = up;
            }
        }
        f = f_measure(row[g.n], p.n, g.n);
        free(row);
    }
    bee_eval_toks_free(&p);
    bee_eval_toks_free(&g);
    return f;
}

void bee_stat_add(bee_stat *s, double x) {
    s->n++;
    double d = x - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (x - s->mean);
}

double bee_stat_se(const bee_stat *s) {
    if (s->n < 2) return 0;
    return sqrt(s->m2 / (double)(s->n - 1) / (double)s->n);
}
