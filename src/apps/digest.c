/* Hot-list digest (see digest.h and docs/DIGEST.md). */
#include "apps/digest.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "generate/generate.h"
#include "tokenizer/dict.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/json.h"

#define DIGEST_MAX_ANSWERS 100000
#define DIGEST_MAX_ID 64
#define DIGEST_MAX_SENTENCES 2000 /* similarity matrix bound (16 MB) */
#define REDUNDANT 0.3             /* cosine above which a sentence repeats a chosen one (= supports it) */
#define SUPPORT 0.3               /* cosine above which another answer supports a point */
#define POINT_MAX_CHARS 160       /* longer extractive points are cut */
#define POS_BOOST 0.5             /* prior x (1 + POS_BOOST / (1 + sentence index in its answer)) */
#define QUESTION_BOOST 1.0        /* prior x (1 + QUESTION_BOOST * cosine to the question) */

/* ================================================================ input */

static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n", *s)) return 0;
    return 1;
}

void bee_digest_input_free(bee_digest_input *in) {
    for (size_t i = 0; i < in->n; i++) {
        free(in->answers[i].id);
        free(in->answers[i].author);
        free(in->answers[i].text);
    }
    free(in->answers);
    free(in->question);
    memset(in, 0, sizeof *in);
}

/* One answer object; `path` is "answers[2]" or "line 3". */
static int parse_answer(json_t *a, const char *where, const char *path, size_t pos, bee_digest_answer *out) {
    memset(out, 0, sizeof *out);
    if (!json_is_object(a)) return bee_fail("%s: %s: expected an answer object, got %s", where, path, type_name(a));
    json_t *t = json_object_get(a, "text"), *id = json_object_get(a, "id"), *up = json_object_get(a, "upvotes"),
           *au = json_object_get(a, "author");
    if (!t) return bee_fail("%s: %s.text: missing (every answer needs its text)", where, path);
    if (!json_is_string(t)) return bee_fail("%s: %s.text: expected a string, got %s", where, path, type_name(t));
    if (blank(json_string_value(t))) return bee_fail("%s: %s.text: empty", where, path);
    if (memchr(json_string_value(t), 0, json_string_length(t)))
        return bee_fail("%s: %s.text: contains a NUL character", where, path);
    if (up && !json_is_null(up)) {
        if (!json_is_integer(up))
            return bee_fail("%s: %s.upvotes: expected an integer, got %s", where, path, type_name(up));
        if (json_integer_value(up) < 0)
            return bee_fail("%s: %s.upvotes: must be >= 0 (got %lld)", where, path, (long long)json_integer_value(up));
        out->upvotes = json_integer_value(up);
    }
    if (au && !json_is_null(au) && !json_is_string(au))
        return bee_fail("%s: %s.author: expected a string, got %s", where, path, type_name(au));
    char buf[32];
    const char *ids = buf;
    if (!id || json_is_null(id)) {
        snprintf(buf, sizeof buf, "%zu", pos + 1);
        out->id_is_int = 1;
    } else if (json_is_integer(id)) {
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(id));
        out->id_is_int = 1;
    } else if (json_is_string(id)) {
        ids = json_string_value(id);
        if (!ids[0] || json_string_length(id) > DIGEST_MAX_ID || strpbrk(ids, "[]\n") || strlen(ids) != json_string_length(id))
            return bee_fail("%s: %s.id: must be 1..%d characters without '[', ']' or line breaks", where, path, DIGEST_MAX_ID);
    } else {
        return bee_fail("%s: %s.id: expected an integer or a string, got %s", where, path, type_name(id));
    }
    out->id = strdup(ids);
    out->text = strdup(json_string_value(t));
    out->author = au && json_is_string(au) ? strdup(json_string_value(au)) : NULL;
    if (!out->id || !out->text || (au && json_is_string(au) && !out->author)) return bee_fail("out of memory");
    return 0;
}

static int push_answer(bee_digest_input *in, size_t *cap) {
    if (in->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        bee_digest_answer *v = realloc(in->answers, nc * sizeof *v);
        if (!v) return bee_fail("out of memory");
        in->answers = v;
        *cap = nc;
    }
    return 0;
}

static int check_ids(const bee_digest_input *in, const char *where) {
    if (in->n == 0) return bee_fail("%s: answers: empty (a digest needs at least one answer)", where);
    for (size_t i = 1; i < in->n; i++)
        for (size_t k = 0; k < i; k++)
            if (strcmp(in->answers[i].id, in->answers[k].id) == 0)
                return bee_fail("%s: answers[%zu].id: duplicate id %s (also answers[%zu])", where, i, in->answers[i].id, k);
    return 0;
}

static int set_question(bee_digest_input *in, json_t *q, const char *where, const char *path) {
    if (q && !json_is_null(q) && !json_is_string(q))
        return bee_fail("%s: %s: expected a string, got %s", where, path, type_name(q));
    free(in->question);
    in->question = strdup(q && json_is_string(q) ? json_string_value(q) : "");
    return in->question ? 0 : bee_fail("out of memory");
}

int bee_digest_from_json(json_t *j, const char *where, bee_digest_input *out) {
    memset(out, 0, sizeof *out);
    json_t *arr = j;
    int rc = 0;
    if (json_is_object(j)) {
        arr = json_object_get(j, "answers");
        rc = set_question(out, json_object_get(j, "question"), where, "question");
        if (rc == 0 && !arr) rc = bee_fail("%s: answers: missing (expected {\"question\", \"answers\": [...]})", where);
        else if (rc == 0 && !json_is_array(arr)) rc = bee_fail("%s: answers: expected an array, got %s", where, type_name(arr));
    } else if (json_is_array(j)) {
        rc = set_question(out, NULL, where, "question");
    } else {
        rc = bee_fail("%s: expected an object {\"question\", \"answers\"} or an array of answers, got %s", where,
                      type_name(j));
    }
    if (rc == 0 && json_array_size(arr) > DIGEST_MAX_ANSWERS)
        rc = bee_fail("%s: answers: %zu answers (at most %d)", where, json_array_size(arr), DIGEST_MAX_ANSWERS);
    size_t cap = 0;
    for (size_t i = 0; rc == 0 && i < json_array_size(arr); i++) {
        char path[48];
        snprintf(path, sizeof path, "answers[%zu]", i);
        rc = push_answer(out, &cap);
        if (rc == 0) {
            rc = parse_answer(json_array_get(arr, i), where, path, i, &out->answers[out->n]);
            out->n++; /* freed with the rest even when it failed half-way */
        }
    }
    if (rc == 0) rc = check_ids(out, where);
    if (rc) bee_digest_input_free(out);
    return rc;
}

static int parse_jsonl(const char *text, size_t len, const char *where, bee_digest_input *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0, off = 0;
    int line = 0, rc = set_question(out, NULL, where, "question");
    while (rc == 0 && off < len) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t end = nl ? (size_t)(nl - text) : len;
        line++;
        size_t k = off;
        while (k < end && strchr(" \t\r", text[k])) k++;
        if (k < end) {
            json_error_t err;
            json_t *o = json_loadb(text + off, end - off, 0, &err);
            char path[64];
            snprintf(path, sizeof path, "line %d (answers[%zu])", line, out->n);
            if (!o) {
                rc = bee_fail("%s: line %d: invalid JSON at column %d (offset %zu): %s", where, line, err.column,
                              off + (size_t)(err.position > 0 ? err.position - 1 : 0), err.text);
            } else if (json_is_object(o) && json_object_get(o, "question") && !json_object_get(o, "text")) {
                char qp[32];
                snprintf(qp, sizeof qp, "line %d: question", line);
                rc = set_question(out, json_object_get(o, "question"), where, qp);
            } else if (out->n >= DIGEST_MAX_ANSWERS) {
                rc = bee_fail("%s: line %d: more than %d answers", where, line, DIGEST_MAX_ANSWERS);
            } else if ((rc = push_answer(out, &cap)) == 0) {
                rc = parse_answer(o, where, path, out->n, &out->answers[out->n]);
                out->n++;
            }
            json_decref(o);
        }
        off = end + 1;
    }
    if (rc == 0) rc = check_ids(out, where);
    if (rc) bee_digest_input_free(out);
    return rc;
}

int bee_digest_parse(const char *text, size_t len, const char *where, bee_digest_input *out) {
    memset(out, 0, sizeof *out);
    size_t s = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) s = 3;
    while (s < len && strchr(" \t\r\n", text[s])) s++;
    if (s == len) return bee_fail("%s: empty input (expected JSON or JSONL answers)", where);
    if (memchr(text, 0, len)) return bee_fail("%s: offset %zu: NUL byte in the input", where, (size_t)((const char *)memchr(text, 0, len) - text));
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    if (j) {
        int rc = bee_digest_from_json(j, where, out);
        json_decref(j);
        return rc;
    }
    /* JSONL when the first non-blank line is an object on its own */
    const char *nl = memchr(text + s, '\n', len - s);
    if (nl) {
        json_error_t e1;
        json_t *first = json_loadb(text + s, (size_t)(nl - text) - s, 0, &e1);
        int is_obj = json_is_object(first);
        json_decref(first);
        if (is_obj) return parse_jsonl(text, len, where, out);
    }
    /* jansson's position counts the bytes read, the offending one included */
    return bee_fail("%s: invalid JSON at line %d, column %d (offset %d): %s", where, err.line, err.column,
                    err.position > 0 ? err.position - 1 : 0, err.text);
}

/* ================================================================ sentences */

static uint32_t decode(const unsigned char *p, size_t avail, int *len) {
    int n = bee_utf8_len(p, avail);
    if (n <= 0) {
        *len = 1;
        return 0xFFFD;
    }
    *len = n;
    if (n == 1) return p[0];
    uint32_t c = p[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) c = (c << 6) | (p[i] & 0x3F);
    return c;
}

static int is_space(uint32_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0x3000 || c == 0xA0; }
static int is_cjk_stop(uint32_t c) { return c == 0x3002 || c == 0xFF01 || c == 0xFF1F || c == 0xFF0E; } /* 。！？． */
static int is_closer(uint32_t c) {
    return c == '"' || c == '\'' || c == ')' || c == 0x201D || c == 0x2019 || c == 0xFF09 || c == 0x300D || c == 0x300F ||
           c == 0x3011;
}

long bee_digest_split(const char *text, size_t **spans) {
    size_t n = strlen(text), cap = 16, cnt = 0, start = 0, i = 0;
    const unsigned char *u = (const unsigned char *)text;
    size_t *v = malloc(cap * 2 * sizeof *v);
    if (!v) return -1;
    while (start < n) {
        /* find the end of the sentence starting at `start` */
        size_t end = n, next = n;
        for (i = start; i < n;) {
            int l;
            uint32_t c = decode(u + i, n - i, &l);
            if (c == '\n') {
                end = i, next = i + 1;
                break;
            }
            int stop = is_cjk_stop(c) || c == '!' || c == '?';
            if (c == '.') { /* not inside numbers like 3.14, only before space, end, CJK or a closer */
                int nl2;
                uint32_t d = i + 1 < n ? decode(u + i + 1, n - i - 1, &nl2) : 0;
                stop = i + 1 >= n || is_space(d) || d >= 0x2E80 || is_closer(d) || d == '.';
            }
            if (!stop) {
                i += (size_t)l;
                continue;
            }
            i += (size_t)l; /* keep repeated stops and closing quotes with the sentence */
            while (i < n) {
                uint32_t d = decode(u + i, n - i, &l);
                if (!(is_cjk_stop(d) || d == '!' || d == '?' || d == '.' || is_closer(d))) break;
                i += (size_t)l;
            }
            end = next = i;
            break;
        }
        size_t a = start, b = end;
        while (a < b) {
            int l;
            if (!is_space(decode(u + a, b - a, &l))) break;
            a += (size_t)l;
        }
        while (b > a && (u[b - 1] == ' ' || u[b - 1] == '\t' || u[b - 1] == '\r')) b--;
        while (b >= a + 3 && !memcmp(u + b - 3, "\xE3\x80\x80", 3)) b -= 3;
        if (b > a) {
            if (cnt == cap) {
                size_t *nv = realloc(v, cap * 4 * sizeof *v);
                if (!nv) {
                    free(v);
                    return -1;
                }
                v = nv, cap *= 2;
            }
            v[2 * cnt] = a, v[2 * cnt + 1] = b;
            cnt++;
        }
        start = next;
    }
    *spans = v;
    return (long)cnt;
}

/* ================================================================ features */

typedef struct {
    uint64_t *key;
    float *w;
    size_t n;
} svec;

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static int is_stopword(const char *w) {
    static const char *const k[] = {"and", "or", "of", "to", "in", "is", "it", "that", "this", "for", "on", "be", "are",
                                    "as", "with", "by", "at", "you", "your", "i", "we", "can", "if", "not", "do", "was",
                                    "but", "from", "have", "has", "will", "so", "they", "there", "which", NULL};
    for (size_t i = 0; k[i]; i++)
        if (strcmp(w, k[i]) == 0) return 1;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Raw term features (hashes, sorted, with counts in w): CJK character
 * bigrams (a lone character as a unigram), Latin words minus stop words. */
static int features(const char *s, size_t n, svec *out) {
    memset(out, 0, sizeof *out);
    char *tmp = strndup(s, n);
    bee_eval_toks t;
    if (!tmp || bee_eval_tokenize(tmp, &t)) {
        free(tmp);
        return bee_fail("out of memory");
    }
    free(tmp);
    uint64_t *h = malloc((t.n + 1) * sizeof *h);
    size_t m = 0;
    if (!h) {
        bee_eval_toks_free(&t);
        return bee_fail("out of memory");
    }
    for (size_t i = 0; i < t.n; i++) {
        int cjk = (unsigned char)t.v[i][0] >= 0x80;
        if (!cjk) {
            if (!is_stopword(t.v[i])) h[m++] = fnv(0xcbf29ce484222325ull, t.v[i], strlen(t.v[i]));
            continue;
        }
        int next = i + 1 < t.n && (unsigned char)t.v[i + 1][0] >= 0x80;
        int prev = i > 0 && (unsigned char)t.v[i - 1][0] >= 0x80;
        if (next) h[m++] = fnv(fnv(0x84222325cbf29ce4ull, t.v[i], strlen(t.v[i])), t.v[i + 1], strlen(t.v[i + 1]));
        else if (!prev) h[m++] = fnv(0x1234567ull, t.v[i], strlen(t.v[i]));
    }
    bee_eval_toks_free(&t);
    qsort(h, m, sizeof *h, cmp_u64);
    out->key = malloc((m + 1) * sizeof *out->key);
    out->w = malloc((m + 1) * sizeof *out->w);
    if (!out->key || !out->w) {
        free(h), free(out->key), free(out->w);
        return bee_fail("out of memory");
    }
    for (size_t i = 0; i < m; i++) {
        if (out->n && out->key[out->n - 1] == h[i]) out->w[out->n - 1] += 1;
        else out->key[out->n] = h[i], out->w[out->n++] = 1;
    }
    free(h);
    return 0;
}

static void svec_free(svec *v) {
    free(v->key), free(v->w);
    memset(v, 0, sizeof *v);
}

/* 1 when model text carries no viewpoint: fewer than two distinct content
 * tokens (CJK characters; Latin words of two or more letters that are not
 * stop words), as in "。", "的。", "的的的…", "的 (1) (1)" or "(o (u ( (" from
 * a weak model; -1 when out of memory. */
static int contentless(const char *t) {
    char *tmp = strdup(t);
    bee_eval_toks k;
    if (!tmp || bee_eval_tokenize(tmp, &k)) {
        free(tmp);
        return bee_fail("out of memory");
    }
    free(tmp);
    size_t distinct = 0;
    for (size_t i = 0; i < k.n && distinct < 2; i++) {
        const char *w = k.v[i];
        int cjk = (unsigned char)w[0] >= 0x80;
        if (!cjk && (strlen(w) < 2 || is_stopword(w))) continue;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(k.v[j], w) == 0;
        distinct += !seen;
    }
    bee_eval_toks_free(&k);
    return distinct < 2;
}

static double dot(const svec *a, const svec *b) {
    double d = 0;
    size_t i = 0, j = 0;
    while (i < a->n && j < b->n) {
        if (a->key[i] == b->key[j]) d += (double)a->w[i++] * b->w[j++];
        else if (a->key[i] < b->key[j]) i++;
        else j++;
    }
    return d;
}

/* ================================================================ sentence graph */

typedef struct {
    size_t answer;
    size_t a, b; /* span in the answer's text */
    svec v;      /* TF-IDF, unit length */
    size_t n_feat;
    double prior, sal;
} sent;

typedef struct {
    const bee_digest_input *in;
    sent *s;
    size_t n;
    float *sim; /* n x n */
} graph;

static void graph_free(graph *g) {
    for (size_t i = 0; i < g->n; i++) svec_free(&g->s[i].v);
    free(g->s), free(g->sim);
    memset(g, 0, sizeof *g);
}

static double weight_of(long long up) { return 1.0 + log1p((double)up); }

static int cmp_prior(const void *a, const void *b) {
    const sent *x = a, *y = b;
    if (x->prior != y->prior) return x->prior > y->prior ? -1 : 1;
    if (x->answer != y->answer) return x->answer < y->answer ? -1 : 1;
    return x->a < y->a ? -1 : x->a > y->a;
}

static int cmp_pos(const void *a, const void *b) {
    const sent *x = a, *y = b;
    if (x->answer != y->answer) return x->answer < y->answer ? -1 : 1;
    return x->a < y->a ? -1 : x->a > y->a;
}

typedef struct {
    uint64_t key;
    size_t df;
} dfent;

static int cmp_key(const void *a, const void *b) { return cmp_u64(a, b); }

static int graph_build(graph *g, const bee_digest_input *in) {
    memset(g, 0, sizeof *g);
    g->in = in;
    size_t cap = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t *sp = NULL;
        long ns = bee_digest_split(in->answers[k].text, &sp);
        if (ns < 0) return bee_fail("out of memory");
        for (long i = 0; i < ns; i++) {
            svec v;
            if (features(in->answers[k].text + sp[2 * i], sp[2 * i + 1] - sp[2 * i], &v)) {
                free(sp);
                return -1;
            }
            if (v.n < 2) { /* too short to carry a viewpoint */
                svec_free(&v);
                continue;
            }
            if (g->n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                sent *ns2 = realloc(g->s, nc * sizeof *ns2);
                if (!ns2) {
                    svec_free(&v);
                    free(sp);
                    return bee_fail("out of memory");
                }
                g->s = ns2, cap = nc;
            }
            /* answers tend to open with their conclusion: a mild boost for early sentences */
            double pos = 1.0 + POS_BOOST / (1.0 + (double)i);
            g->s[g->n++] = (sent){k, sp[2 * i], sp[2 * i + 1], v, v.n, weight_of(in->answers[k].upvotes) * pos, 0};
        }
        free(sp);
    }
    if (g->n > DIGEST_MAX_SENTENCES) { /* keep the sentences of the most upvoted answers */
        qsort(g->s, g->n, sizeof *g->s, cmp_prior);
        for (size_t i = DIGEST_MAX_SENTENCES; i < g->n; i++) svec_free(&g->s[i].v);
        g->n = DIGEST_MAX_SENTENCES;
        qsort(g->s, g->n, sizeof *g->s, cmp_pos);
    }
    if (g->n == 0) return 0;
    /* document frequencies over sentences */
    size_t tot = 0;
    for (size_t i = 0; i < g->n; i++) tot += g->s[i].v.n;
    uint64_t *all = malloc((tot + 1) * sizeof *all);
    if (!all) return bee_fail("out of memory");
    size_t m = 0;
    for (size_t i = 0; i < g->n; i++)
        for (size_t j = 0; j < g->s[i].v.n; j++) all[m++] = g->s[i].v.key[j];
    qsort(all, m, sizeof *all, cmp_u64);
    dfent *df = malloc((m + 1) * sizeof *df);
    size_t nd = 0;
    if (!df) {
        free(all);
        return bee_fail("out of memory");
    }
    for (size_t i = 0; i < m; i++) {
        if (nd && df[nd - 1].key == all[i]) df[nd - 1].df++;
        else df[nd++] = (dfent){all[i], 1};
    }
    free(all);
    for (size_t i = 0; i < g->n; i++) {
        svec *v = &g->s[i].v;
        double norm = 0;
        for (size_t j = 0; j < v->n; j++) {
            dfent *e = bsearch(&v->key[j], df, nd, sizeof *df, cmp_key);
            double idf = log((double)(g->n + 1) / (double)(e ? e->df : 1)) + 1.0;
            v->w[j] = (float)((1.0 + log(v->w[j])) * idf);
            norm += (double)v->w[j] * v->w[j];
        }
        norm = norm > 0 ? sqrt(norm) : 1;
        for (size_t j = 0; j < v->n; j++) v->w[j] = (float)(v->w[j] / norm);
    }
    /* relevance to the question (same IDF), folded into the prior */
    svec q;
    if (in->question && in->question[0] && features(in->question, strlen(in->question), &q) == 0) {
        double norm = 0;
        for (size_t j = 0; j < q.n; j++) {
            dfent *e = bsearch(&q.key[j], df, nd, sizeof *df, cmp_key);
            double idf = log((double)(g->n + 1) / (double)(e ? e->df : 1)) + 1.0;
            q.w[j] = (float)((1.0 + log(q.w[j])) * idf);
            norm += (double)q.w[j] * q.w[j];
        }
        norm = norm > 0 ? sqrt(norm) : 1;
        for (size_t j = 0; j < q.n; j++) q.w[j] = (float)(q.w[j] / norm);
        for (size_t i = 0; i < g->n; i++) g->s[i].prior *= 1.0 + QUESTION_BOOST * dot(&q, &g->s[i].v);
        svec_free(&q);
    }
    free(df);
    g->sim = calloc(g->n * g->n, sizeof *g->sim);
    if (!g->sim) return bee_fail("out of memory (%zu sentences)", g->n);
    for (size_t i = 0; i < g->n; i++)
        for (size_t j = i + 1; j < g->n; j++) g->sim[i * g->n + j] = g->sim[j * g->n + i] = (float)dot(&g->s[i].v, &g->s[j].v);
    return 0;
}

/* TextRank with the teleport vector proportional to 1 + log(1 + upvotes):
 * central sentences (said by many answers) and upvoted ones rank high. */
static int graph_rank(graph *g) {
    size_t n = g->n;
    if (!n) return 0;
    double *pr = malloc(n * sizeof *pr), *nx = malloc(n * sizeof *nx), *out = calloc(n, sizeof *out), *tp = malloc(n * sizeof *tp);
    if (!pr || !nx || !out || !tp) {
        free(pr), free(nx), free(out), free(tp);
        return bee_fail("out of memory");
    }
    double tw = 0;
    for (size_t i = 0; i < n; i++) tw += g->s[i].prior;
    for (size_t i = 0; i < n; i++) {
        tp[i] = g->s[i].prior / tw, pr[i] = tp[i];
        for (size_t j = 0; j < n; j++) out[i] += g->sim[i * n + j];
    }
    const double d = 0.85;
    for (int it = 0; it < 100; it++) {
        double dangling = 0, delta = 0;
        for (size_t i = 0; i < n; i++)
            if (out[i] <= 0) dangling += pr[i];
        for (size_t i = 0; i < n; i++) nx[i] = (1 - d + d * dangling) * tp[i];
        for (size_t j = 0; j < n; j++) {
            if (out[j] <= 0) continue;
            double f = d * pr[j] / out[j];
            const float *row = g->sim + j * n;
            for (size_t i = 0; i < n; i++) nx[i] += f * row[i];
        }
        for (size_t i = 0; i < n; i++) delta += fabs(nx[i] - pr[i]), pr[i] = nx[i];
        if (delta < 1e-10) break;
    }
    for (size_t i = 0; i < n; i++) g->s[i].sal = pr[i] * (double)n;
    free(pr), free(nx), free(out), free(tp);
    return 0;
}

/* MMR: up to k salient sentences, none within REDUNDANT of an earlier pick.
 * Returns the count; order[] receives sentence indices. */
static size_t graph_select(const graph *g, size_t k, size_t *order) {
    size_t n = g->n, m = 0;
    double maxs = 0;
    for (size_t i = 0; i < n; i++) maxs = g->s[i].sal > maxs ? g->s[i].sal : maxs;
    if (maxs <= 0) maxs = 1;
    char *used = calloc(n ? n : 1, 1);
    if (!used) return 0;
    const double lambda = 0.7;
    while (m < k) {
        size_t best = n;
        double bs = -1e30;
        for (size_t i = 0; i < n; i++) {
            if (used[i]) continue;
            double red = 0;
            for (size_t t = 0; t < m; t++) red = fmax(red, g->sim[i * n + order[t]]);
            if (red >= REDUNDANT) {
                used[i] = 1;
                continue;
            }
            double sc = lambda * g->s[i].sal / maxs - (1 - lambda) * red;
            if (sc > bs) bs = sc, best = i;
        }
        if (best == n) break;
        used[best] = 1;
        order[m++] = best;
    }
    free(used);
    return m;
}

/* ================================================================ results */

void bee_digest_opts_default(bee_digest_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_points = 5;
    o->ctx = 2048;
    o->max_length = 64;
    o->beam_size = 3;
    o->max_sentences = 48;
}

void bee_digest_result_free(bee_digest_result *r) {
    for (size_t i = 0; i < r->n; i++) free(r->points[i].text), free(r->points[i].cites);
    free(r->points);
    memset(r, 0, sizeof *r);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Adds a point (takes text; cites copied, sorted, deduplicated). */
static int add_point(bee_digest_result *r, char *text, const size_t *cites, size_t nc, double score) {
    bee_digest_point *p = realloc(r->points, (r->n + 1) * sizeof *p);
    size_t *c = malloc((nc ? nc : 1) * sizeof *c);
    if (!p || !c) {
        if (p) r->points = p;
        free(c), free(text);
        return bee_fail("out of memory");
    }
    r->points = p;
    memcpy(c, cites, nc * sizeof *c);
    qsort(c, nc, sizeof *c, cmp_size);
    size_t m = 0;
    for (size_t i = 0; i < nc; i++)
        if (!m || c[m - 1] != c[i]) c[m++] = c[i];
    r->points[r->n++] = (bee_digest_point){text, c, m, score};
    return 0;
}

/* The answers supporting sentence p: its own and any with a near-duplicate. */
static size_t supporters(const graph *g, size_t p, size_t *cites) {
    size_t m = 0;
    cites[m++] = g->s[p].answer;
    for (size_t j = 0; j < g->n; j++)
        if (j != p && g->s[j].answer != g->s[p].answer && g->sim[p * g->n + j] >= SUPPORT) cites[m++] = g->s[j].answer;
    return m;
}

static char *sent_text(const graph *g, size_t i) {
    return strndup(g->in->answers[g->s[i].answer].text + g->s[i].a, g->s[i].b - g->s[i].a);
}

/* A point stays short: a run-on sentence longer than POINT_MAX_CHARS
 * characters is cut at its last clause comma before the limit (or at the
 * limit) and ends with "…". */
static char *point_text(const graph *g, size_t i) {
    char *t = sent_text(g, i);
    if (!t) return NULL;
    size_t n = strlen(t), chars = 0, cut = 0, comma = 0;
    for (size_t p = 0; p < n && chars <= POINT_MAX_CHARS;) {
        int l = bee_utf8_len((const unsigned char *)t + p, n - p);
        if (l <= 0) l = 1;
        if (chars == POINT_MAX_CHARS) cut = p;
        int is_comma = t[p] == ',' || (l == 3 && !memcmp(t + p, "\xEF\xBC\x8C", 3)); /* , or ， */
        if (chars < POINT_MAX_CHARS && is_comma) comma = p + (size_t)l;
        p += (size_t)l, chars++;
    }
    if (!cut) return t;
    size_t end = comma > cut / 2 ? comma : cut;
    char *o = malloc(end + 4);
    if (!o) {
        free(t);
        return NULL;
    }
    memcpy(o, t, end);
    memcpy(o + end, "\xE2\x80\xA6", 4); /* … */
    free(t);
    return o;
}

static int run_extractive(const graph *g, const bee_digest_opts *o, bee_digest_result *r) {
    size_t k = (size_t)(o->max_points > 0 ? o->max_points : 5);
    size_t *order = malloc((k + 1) * sizeof *order), *cites = malloc((g->n + 1) * sizeof *cites);
    int rc = order && cites ? 0 : bee_fail("out of memory");
    size_t m = rc ? 0 : graph_select(g, k, order);
    for (size_t t = 0; rc == 0 && t < m; t++) {
        size_t nc = supporters(g, order[t], cites);
        char *txt = point_text(g, order[t]);
        rc = txt ? add_point(r, txt, cites, nc, g->s[order[t]].sal) : bee_fail("out of memory");
    }
    free(order), free(cites);
    return rc;
}

/* ================================================================ model mode */

static void append_escaped(bee_str *o, const char *t, size_t n) {
    for (size_t i = 0; i < n; i++) bee_str_append(o, t[i] == '<' ? "<<" : t + i, 1 + (t[i] == '<'));
}

static size_t find_id(const bee_digest_input *in, const char *s, size_t n) {
    for (size_t i = 0; i < in->n; i++)
        if (strlen(in->answers[i].id) == n && memcmp(in->answers[i].id, s, n) == 0) return i;
    return (size_t)-1;
}

static void cite_marks(bee_str *o, const bee_digest_input *in, const size_t *c, size_t nc) {
    for (size_t i = 0; i < nc; i++) bee_str_printf(o, "[%s]", in->answers[c[i]].id);
}

typedef struct {
    const bee_digest_input *in;
    const bee_digest_opts *o;
    const char *prompt; /* the task line */
} mctx;

/* CPM-Bee dict {"input": lines, "question": Q, "prompt": task, "<ans>": ""}. */
static json_t *make_dict(const mctx *c, const char *input) {
    bee_str q = {0};
    bee_str_append(&q, "", 0);
    append_escaped(&q, c->in->question, strlen(c->in->question));
    json_t *d = json_object();
    json_object_set_new(d, "input", bee_json_string_lossy(input, strlen(input)));
    if (q.n) json_object_set_new(d, "question", bee_json_string_lossy(q.s, q.n));
    json_object_set_new(d, "prompt", json_string(c->prompt));
    json_object_set_new(d, "<ans>", json_string(""));
    bee_str_free(&q);
    return d;
}

/* 1 when the dict plus the generated answer fit the context. */
static int fits(const mctx *c, json_t *d, int *fit) {
    bee_gen_input gi;
    if (bee_gen_input_init(c->o->model->tok, d, &gi)) return -1;
    /* one <s> per slot; beam search may return max_length + 2 tokens */
    *fit = (long)gi.ids.n + (long)gi.n_slots + c->o->max_length + 2 <= c->o->ctx;
    bee_gen_input_free(&gi);
    return 0;
}

static int default_gen(void *user, json_t *dict, int max_length, char **answer) {
    const bee_digest_opts *o = user;
    bee_gen_input gi;
    if (bee_gen_input_init(o->model->tok, dict, &gi)) return -1;
    bee_beam_params bp;
    bee_beam_params_default(&bp);
    bp.beam_size = o->beam_size > 0 ? o->beam_size : 3;
    bp.max_length = max_length;
    json_t *out = NULL;
    int rc = bee_beam_search(o->model, &gi, 1, &bp, &out);
    bee_gen_input_free(&gi);
    const char *s = rc == 0 ? json_string_value(json_object_get(out, "<ans>")) : NULL;
    if (rc == 0 && !s) rc = bee_fail("model output has no <ans> string");
    if (rc == 0 && !(*answer = strdup(s))) rc = bee_fail("out of memory");
    json_decref(out);
    return rc;
}

static int call_model(const mctx *c, json_t *d, char **ans) {
    *ans = NULL;
    int rc = c->o->gen ? c->o->gen(c->o->gen_user, d, c->o->max_length, ans)
                       : default_gen((void *)c->o, d, c->o->max_length, ans);
    if (rc == 0 && !*ans) rc = bee_fail("the model returned no answer");
    if (rc) bee_fail_prefix("digest: model call: ");
    return rc;
}

/* Removes [x] citation marks from model text: ids in `allowed` (answer
 * indices) are added to *cites, others dropped. Also turns "<<" into "<". */
static char *clean_model_text(const bee_digest_input *in, const char *t, const size_t *allowed, size_t na, size_t *cites,
                              size_t *nc) {
    bee_str o = {0};
    bee_str_append(&o, "", 0);
    for (size_t i = 0; t[i];) {
        if (t[i] == '[') {
            const char *e = strchr(t + i + 1, ']');
            if (e && (size_t)(e - t - i - 1) <= DIGEST_MAX_ID && !memchr(t + i + 1, '[', (size_t)(e - t - i - 1))) {
                size_t k = find_id(in, t + i + 1, (size_t)(e - t - i - 1));
                for (size_t a = 0; k != (size_t)-1 && a < na; a++)
                    if (allowed[a] == k) cites[(*nc)++] = k;
                i = (size_t)(e - t) + 1;
                continue;
            }
        }
        if (t[i] == '<' && t[i + 1] == '<') i++;
        bee_str_append(&o, t + i, 1);
        i++;
    }
    /* trim */
    char *s = bee_str_take(&o);
    size_t a = 0, b = strlen(s);
    while (a < b && strchr(" \t\r\n", s[a])) a++;
    while (b > a && strchr(" \t\r\n", s[b - 1])) b--;
    memmove(s, s + a, b - a);
    s[b - a] = 0;
    return s;
}

typedef struct {
    char *text;
    size_t *cites;
    size_t nc;
} item;

static void items_free(item *v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i].text), free(v[i].cites);
    free(v);
}

/* Truncates s to at most n bytes on a UTF-8 boundary. */
static void utf8_cut(char *s, size_t n) {
    size_t l = strlen(s);
    if (l <= n) return;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    s[n] = 0;
}

/* Map: pre-selected sentences packed into chunks that fit; one summary each. */
static int map_chunks(const graph *g, const bee_digest_opts *o, const bee_digest_input *in, item **out, size_t *n_out,
                      int *chunks, int *fallbacks) {
    size_t k = (size_t)(o->max_sentences > 0 ? o->max_sentences : 48);
    size_t *order = malloc((k + 1) * sizeof *order);
    if (!order) return bee_fail("out of memory");
    size_t m = graph_select(g, k, order);
    mctx c = {in, o, "概括这些回答的主要观点"};
    item *items = NULL;
    size_t ni = 0;
    int rc = 0;
    size_t t = 0;
    while (rc == 0 && t < m) {
        bee_str body = {0};
        size_t first = t;
        while (rc == 0 && t < m) {
            size_t keep = body.n;
            char *st = sent_text(g, order[t]);
            if (!st) {
                rc = bee_fail("out of memory");
                break;
            }
            int fit = 0;
            for (;;) { /* a lone sentence too long for the context is shortened */
                body.n = keep;
                bee_str_printf(&body, "%s[%s] ", keep ? "\n" : "", in->answers[g->s[order[t]].answer].id);
                append_escaped(&body, st, strlen(st));
                json_t *d = make_dict(&c, body.s);
                rc = d ? fits(&c, d, &fit) : bee_fail("out of memory");
                json_decref(d);
                if (rc || fit || t > first || strlen(st) < 8) break;
                utf8_cut(st, strlen(st) / 2);
            }
            free(st);
            if (rc) break;
            if (!fit) {
                body.n = keep;
                if (body.s) body.s[keep] = 0;
                if (t == first)
                    rc = bee_fail("digest: --ctx %d is too small for even one sentence plus %d generated tokens", o->ctx,
                                  o->max_length);
                break;
            }
            t++;
        }
        if (rc == 0) {
            size_t *cs = malloc((t - first + 1) * sizeof *cs), nc = 0, ncl = 0;
            item *ni2 = realloc(items, (ni + 1) * sizeof *ni2);
            if (!cs || !ni2) {
                free(cs);
                if (ni2) items = ni2;
                rc = bee_fail("out of memory");
            } else {
                items = ni2;
                for (size_t x = first; x < t; x++) cs[nc++] = g->s[order[x]].answer;
                qsort(cs, nc, sizeof *cs, cmp_size);
                for (size_t x = 0; x < nc; x++)
                    if (!ncl || cs[ncl - 1] != cs[x]) cs[ncl++] = cs[x];
                json_t *d = make_dict(&c, body.s);
                char *ans = NULL;
                rc = d ? call_model(&c, d, &ans) : bee_fail("out of memory");
                json_decref(d);
                size_t *dummy = malloc((ncl + strlen(ans ? ans : "") + 1) * sizeof *dummy), nd = 0;
                char *txt = rc == 0 && dummy ? clean_model_text(in, ans, cs, ncl, dummy, &nd) : NULL;
                free(dummy), free(ans);
                int nothing = rc == 0 && txt ? (o->keep_contentless ? !txt[0] : contentless(txt)) : 0;
                if (nothing < 0) rc = -1;
                if (rc == 0 && txt && nothing) {
                    /* empty or contentless summary: the chunk's most salient sentence, citing its own answer */
                    free(txt);
                    txt = sent_text(g, order[first]);
                    cs[0] = g->s[order[first]].answer;
                    ncl = 1;
                    (*fallbacks)++;
                }
                if (rc == 0 && !txt) rc = bee_fail("out of memory");
                if (rc == 0) items[ni++] = (item){txt, cs, ncl};
                else free(txt), free(cs);
                (*chunks)++;
            }
        }
        bee_str_free(&body);
    }
    free(order);
    if (rc) items_free(items, ni);
    else *out = items, *n_out = ni;
    return rc;
}

static json_t *merge_dict(const mctx *c, const item *v, size_t n) {
    bee_str b = {0};
    bee_str_append(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (i) bee_str_append(&b, "\n", 1);
        append_escaped(&b, v[i].text, strlen(v[i].text));
        bee_str_append(&b, " ", 1);
        cite_marks(&b, c->in, v[i].cites, v[i].nc);
    }
    json_t *d = make_dict(c, b.s);
    bee_str_free(&b);
    return d;
}

static int union_cites(const item *v, size_t n, size_t **out, size_t *nout) {
    size_t tot = 0, m = 0;
    for (size_t i = 0; i < n; i++) tot += v[i].nc;
    size_t *c = malloc((tot + 1) * sizeof *c);
    if (!c) return bee_fail("out of memory");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < v[i].nc; j++) c[m++] = v[i].cites[j];
    qsort(c, m, sizeof *c, cmp_size);
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        if (!k || c[k - 1] != c[i]) c[k++] = c[i];
    *out = c, *nout = k;
    return 0;
}

/* Splits the final merged text into points: a sentence cites the ids it
 * names (when they are among the merged items' ids), else those of the
 * item it is most similar to (the first, most salient one on no overlap). */
static int final_points(const mctx *c, const char *text, const item *v, size_t n, bee_digest_result *r) {
    size_t *all = NULL, na = 0;
    if (union_cites(v, n, &all, &na)) return -1;
    size_t *sp = NULL;
    long ns = bee_digest_split(text, &sp);
    int rc = ns < 0 ? bee_fail("out of memory") : 0;
    for (long i = 0; rc == 0 && i < ns && r->n < (size_t)c->o->max_points; i++) {
        char *raw = strndup(text + sp[2 * i], sp[2 * i + 1] - sp[2 * i]);
        size_t *cs = malloc((na + strlen(raw ? raw : "") + 1) * sizeof *cs), nc = 0;
        char *t = raw && cs ? clean_model_text(c->in, raw, all, na, cs, &nc) : NULL;
        free(raw);
        if (!t) {
            free(cs);
            rc = bee_fail("out of memory");
            break;
        }
        int nothing = c->o->keep_contentless ? !t[0] : contentless(t);
        if (nothing) { /* empty, or no viewpoint (punctuation, one repeated character) */
            free(t), free(cs);
            if (nothing < 0) rc = -1;
            continue;
        }
        if (nc == 0) {
            svec a;
            size_t best = 0;
            double bs = 0;
            if (features(t, strlen(t), &a) == 0) {
                for (size_t k = 0; k < n; k++) {
                    svec b;
                    if (features(v[k].text, strlen(v[k].text), &b)) break;
                    double s = dot(&a, &b) / (sqrt(dot(&a, &a) * dot(&b, &b)) + 1e-12);
                    if (s > bs) bs = s, best = k;
                    svec_free(&b);
                }
                svec_free(&a);
            }
            memcpy(cs, v[best].cites, v[best].nc * sizeof *cs);
            nc = v[best].nc;
        }
        rc = add_point(r, t, cs, nc, 0);
        free(cs);
    }
    /* the merge said nothing usable: the merged summaries themselves are the points */
    int nothing = rc == 0 && r->n == 0 && n > 0;
    if (nothing) r->fallbacks++;
    for (size_t k = 0; nothing && rc == 0 && k < n && k < (size_t)c->o->max_points; k++) {
        char *t = strdup(v[k].text);
        size_t *cs = malloc((v[k].nc + 1) * sizeof *cs);
        if (!t || !cs) {
            free(t), free(cs);
            rc = bee_fail("out of memory");
            break;
        }
        memcpy(cs, v[k].cites, v[k].nc * sizeof *cs);
        rc = add_point(r, t, cs, v[k].nc, 0);
        free(cs);
    }
    free(sp), free(all);
    return rc;
}

/* Reduce: items merged in groups that fit until one call merges all. */
static int reduce(const mctx *c, item *v, size_t n, bee_digest_result *r) {
    int rc = 0;
    for (int level = 0; rc == 0; level++) {
        if (level > 32) {
            rc = bee_fail("digest: the merge step does not converge (--ctx %d too small?)", c->o->ctx);
            break;
        }
        /* pack groups */
        if (n == 1) { /* one chunk: its summary is the digest */
            rc = final_points(c, v[0].text, v, n, r);
            break;
        }
        size_t *gstart = malloc((n + 1) * sizeof *gstart), ng = 0, i = 0;
        int lone = 0; /* an item does not fit a merge prompt on its own */
        if (!gstart) {
            rc = bee_fail("out of memory");
            break;
        }
        while (rc == 0 && i < n) {
            size_t j = i + 1;
            for (; j <= n; j++) {
                json_t *d = merge_dict(c, v + i, j - i);
                int fit = 0;
                rc = d ? fits(c, d, &fit) : bee_fail("out of memory");
                json_decref(d);
                if (rc || !fit) break;
            }
            if (rc) break;
            if (j == i + 1) lone = 1;
            gstart[ng++] = i;
            i = j - 1 > i ? j - 1 : i + 1; /* j - 1 items fit (at least one is taken) */
        }
        gstart[ng] = n;
        if (rc) {
            free(gstart);
            break;
        }
        if (lone || ng == n) { /* no group holds two items: shorten them all */
            int shrunk = 0;
            for (size_t k = 0; k < n; k++)
                if (strlen(v[k].text) >= 8) utf8_cut(v[k].text, strlen(v[k].text) / 2), shrunk = 1;
            free(gstart);
            if (!shrunk) rc = bee_fail("digest: --ctx %d is too small to merge two summaries", c->o->ctx);
            continue;
        }
        if (ng == 1) {
            json_t *d = merge_dict(c, v, n);
            char *ans = NULL;
            rc = d ? call_model(c, d, &ans) : bee_fail("out of memory");
            json_decref(d);
            r->reduce_calls++;
            if (rc == 0) rc = final_points(c, ans, v, n, r);
            free(ans), free(gstart);
            if (rc == 0 && r->n == 0) /* nothing usable: the chunk summaries themselves */
                for (size_t k = 0; rc == 0 && k < n && r->n < (size_t)c->o->max_points; k++) {
                    char *t = strdup(v[k].text);
                    rc = t ? add_point(r, t, v[k].cites, v[k].nc, 0) : bee_fail("out of memory");
                }
            break;
        }
        item *nv = calloc(ng, sizeof *nv);
        for (size_t gi = 0; rc == 0 && nv && gi < ng; gi++) {
            size_t a = gstart[gi], b = gstart[gi + 1];
            if (b - a == 1) {
                nv[gi].text = strdup(v[a].text);
                rc = nv[gi].text ? union_cites(v + a, 1, &nv[gi].cites, &nv[gi].nc) : bee_fail("out of memory");
                continue;
            }
            json_t *d = merge_dict(c, v + a, b - a);
            char *ans = NULL;
            rc = d ? call_model(c, d, &ans) : bee_fail("out of memory");
            json_decref(d);
            r->reduce_calls++;
            if (rc == 0) rc = union_cites(v + a, b - a, &nv[gi].cites, &nv[gi].nc);
            size_t *tmp = rc == 0 ? malloc((nv[gi].nc + strlen(ans) + 1) * sizeof *tmp) : NULL, nt = 0;
            if (rc == 0) nv[gi].text = tmp ? clean_model_text(c->in, ans, nv[gi].cites, nv[gi].nc, tmp, &nt) : NULL;
            if (rc == 0 && nv[gi].text && !nv[gi].text[0]) free(nv[gi].text), nv[gi].text = strdup(v[a].text);
            if (rc == 0 && !nv[gi].text) rc = bee_fail("out of memory");
            free(tmp), free(ans);
        }
        if (!nv) rc = bee_fail("out of memory");
        free(gstart);
        if (rc) {
            items_free(nv, nv ? ng : 0);
            break;
        }
        items_free(v, n);
        v = nv, n = ng;
    }
    items_free(v, n);
    return rc;
}

int bee_digest_run(const bee_digest_input *in, const bee_digest_opts *o, bee_digest_result *r) {
    memset(r, 0, sizeof *r);
    if (!o->extractive && !o->model) return bee_fail("digest: model mode needs a model (or use extractive mode)");
    if (o->max_points < 1) return bee_fail("digest: max_points must be >= 1");
    graph g;
    int rc = graph_build(&g, in);
    if (rc == 0) rc = graph_rank(&g);
    if (rc == 0 && g.n == 0) rc = bee_fail("digest: the answers have no sentence long enough to summarise");
    if (rc == 0 && o->extractive) {
        rc = run_extractive(&g, o, r);
    } else if (rc == 0) {
        item *v = NULL;
        size_t n = 0;
        r->model = 1;
        rc = map_chunks(&g, o, in, &v, &n, &r->chunks, &r->fallbacks);
        mctx c = {in, o, "合并这些要点，保留引用"};
        if (rc == 0) rc = reduce(&c, v, n, r);
    }
    graph_free(&g);
    if (rc) bee_digest_result_free(r);
    return rc;
}

/* ================================================================ output */

char *bee_digest_point_line(const bee_digest_input *in, const bee_digest_point *p) {
    bee_str o = {0};
    bee_str_appendz(&o, p->text);
    if (p->n_cites) bee_str_append(&o, " ", 1);
    cite_marks(&o, in, p->cites, p->n_cites);
    return bee_str_take(&o);
}

json_t *bee_digest_result_json(const bee_digest_input *in, const bee_digest_result *r) {
    json_t *pts = json_array();
    for (size_t i = 0; i < r->n; i++) {
        json_t *c = json_array();
        for (size_t k = 0; k < r->points[i].n_cites; k++) {
            const bee_digest_answer *a = &in->answers[r->points[i].cites[k]];
            json_array_append_new(c, a->id_is_int ? json_integer(strtoll(a->id, NULL, 10)) : json_string(a->id));
        }
        json_array_append_new(pts, json_pack("{s:o, s:o}", "text", bee_json_string_lossy(r->points[i].text, strlen(r->points[i].text)), "cites", c));
    }
    return json_pack("{s:o, s:o, s:s, s:i}", "question", bee_json_string_lossy(in->question ? in->question : "", in->question ? strlen(in->question) : 0), "points", pts, "mode",
                     r->model ? "model" : "extractive", "chunks", r->chunks);
}
