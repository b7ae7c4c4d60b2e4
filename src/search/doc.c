/* Plain text from documents, and passages from plain text. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "search/search.h"
#include "util/buf.h"
#include "util/error.h"

/* ================================================================ HTML → text */

static void put_space(bee_str *o) {
    if (o->n && o->s[o->n - 1] != ' ' && o->s[o->n - 1] != '\n') bee_str_append(o, " ", 1);
}

static void put_break(bee_str *o, const char *marker) {
    while (o->n && o->s[o->n - 1] == ' ') o->s[--o->n] = 0;
    if (o->n && o->s[o->n - 1] != '\n') bee_str_appendz(o, "\n\n");
    if (marker) bee_str_appendz(o, marker);
}

static void put_cp(bee_str *o, unsigned long cp) {
    char b[4];
    size_t k;
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) { b[0] = (char)cp; k = 1; }
    else if (cp < 0x800) { b[0] = (char)(0xC0 | (cp >> 6)); b[1] = (char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12)); b[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[2] = (char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18)); b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); b[3] = (char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    bee_str_append(o, b, k);
}

/* Decodes the entity at h[i] == '&'; returns the bytes consumed (1: not an entity, '&' kept). */
static size_t put_entity(bee_str *o, const char *h, size_t i, size_t n) {
    static const struct { const char *name; unsigned long cp; } k_ent[] = {
        {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}, {"nbsp", ' '},
        {"mdash", 0x2014}, {"ndash", 0x2013}, {"hellip", 0x2026}, {"copy", 0xA9}, {"middot", 0xB7},
    };
    size_t j = i + 1;
    while (j < n && j - i < 12 && h[j] != ';' && (isalnum((unsigned char)h[j]) || h[j] == '#')) j++;
    if (j >= n || h[j] != ';' || j == i + 1) { bee_str_append(o, "&", 1); return 1; }
    if (h[i + 1] == '#') {
        int hex = j > i + 2 && (h[i + 2] == 'x' || h[i + 2] == 'X');
        char *end;
        unsigned long cp = strtoul(h + i + 2 + hex, &end, hex ? 16 : 10);
        if (end != h + j) { bee_str_append(o, "&", 1); return 1; }
        put_cp(o, cp);
        return j + 1 - i;
    }
    for (size_t k = 0; k < sizeof k_ent / sizeof k_ent[0]; k++)
        if (strlen(k_ent[k].name) == j - i - 1 && memcmp(h + i + 1, k_ent[k].name, j - i - 1) == 0) {
            if (k_ent[k].cp == ' ') put_space(o);
            else put_cp(o, k_ent[k].cp);
            return j + 1 - i;
        }
    bee_str_append(o, "&", 1);
    return 1;
}

static int is_block(const char *t, size_t n) {
    static const char *k_block[] = {"p", "div", "br", "li", "tr", "td", "th", "ul", "ol", "table", "section",
                                    "article", "header", "footer", "blockquote", "pre", "title", "dd", "dt", "hr",
                                    "main", "nav", "aside", "figure", "figcaption", "body", "html", "head"};
    for (size_t k = 0; k < sizeof k_block / sizeof k_block[0]; k++)
        if (strlen(k_block[k]) == n && strncasecmp(t, k_block[k], n) == 0) return 1;
    return 0;
}

static const char *find_ci(const char *h, size_t i, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (; i + k <= n; i++)
        if (strncasecmp(h + i, needle, k) == 0) return h + i;
    return NULL;
}

/* Handles the tag at h[i] == '<'; returns the index after it. */
static size_t skip_tag(bee_str *o, const char *h, size_t i, size_t n) {
    if (n - i >= 4 && memcmp(h + i, "<!--", 4) == 0) {
        const char *e = find_ci(h, i + 4, n, "-->");
        return e ? (size_t)(e - h) + 3 : n;
    }
    size_t j = i + 1;
    int closing = j < n && h[j] == '/';
    if (closing) j++;
    size_t t0 = j;
    while (j < n && isalnum((unsigned char)h[j])) j++;
    size_t tn = j - t0;
    const char *gt = memchr(h + j, '>', n - j);
    size_t after = gt ? (size_t)(gt - h) + 1 : n;
    if (tn == 0 && !closing && (t0 >= n || (h[t0] != '!' && h[t0] != '?'))) { bee_str_append(o, "<", 1); return i + 1; }
    if (!closing && tn == 6 && strncasecmp(h + t0, "script", 6) == 0) {
        const char *e = find_ci(h, after, n, "</script");
        const char *gt2 = e ? memchr(e, '>', (size_t)(h + n - e)) : NULL;
        return gt2 ? (size_t)(gt2 - h) + 1 : n;
    }
    if (!closing && tn == 5 && strncasecmp(h + t0, "style", 5) == 0) {
        const char *e = find_ci(h, after, n, "</style");
        const char *gt2 = e ? memchr(e, '>', (size_t)(h + n - e)) : NULL;
        return gt2 ? (size_t)(gt2 - h) + 1 : n;
    }
    if (tn == 2 && (h[t0] == 'h' || h[t0] == 'H') && h[t0 + 1] >= '1' && h[t0 + 1] <= '6')
        /* headings become markdown headings of the same level for the splitter */
        put_break(o, closing ? NULL : &"###### "[6 - (h[t0 + 1] - '0')]);
    else if (is_block(h + t0, tn)) put_break(o, NULL);
    else put_space(o);
    return after;
}

char *bee_html_to_text(const char *h, size_t n, size_t *out_len) {
    bee_str o = {0};
    bee_str_append(&o, "", 0);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)h[i];
        if (c == '<') i = skip_tag(&o, h, i, n);
        else if (c == '&') i += put_entity(&o, h, i, n);
        else if (isspace(c)) { put_space(&o); i++; }
        else { bee_str_append(&o, h + i, 1); i++; }
    }
    while (o.n && (o.s[o.n - 1] == ' ' || o.s[o.n - 1] == '\n')) o.s[--o.n] = 0;
    *out_len = o.n;
    return bee_str_take(&o);
}

/* ================================================================ passages */

static size_t n_chars(const char *s, size_t a, size_t b) {
    size_t k = 0;
    for (size_t i = a; i < b; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

static size_t next_char(const char *s, size_t i, size_t n) {
    for (i++; i < n && ((unsigned char)s[i] & 0xC0) == 0x80; i++) {}
    return i;
}

static size_t prev_char(const char *s, size_t i) {
    while (i > 0 && ((unsigned char)s[--i] & 0xC0) == 0x80) {}
    return i;
}

/* A sentence ends after 。！？；!?; or after '.' followed by a space. */
static int sentence_end(const char *s, size_t i, size_t n) {
    static const char *k_ends[] = {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F", "\xEF\xBC\x9B"};
    if (s[i] == '!' || s[i] == '?' || s[i] == ';' || s[i] == '\n') return 1;
    if (s[i] == '.') return i + 1 >= n || s[i + 1] == ' ';
    for (size_t k = 0; k < 4; k++)
        if (n - i >= 3 && memcmp(s + i, k_ends[k], 3) == 0) return 1;
    return 0;
}

typedef struct {
    bee_doc *d;
    size_t s, e, chars; /* the passage being built; s == e when empty */
    const char *ht[7];  /* the current heading of each level 1..6 (into d->text), NULL when none */
    size_t hl[7];
} splitter;


static int push(splitter *sp, size_t s, size_t e) {
    bee_doc *d = sp->d;
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 16;
        bee_passage *p = realloc(d->p, cap * sizeof *p);
        if (!p) return bee_fail("out of memory");
        d->p = p;
        d->cap = cap;
    }
    /* the nearest enclosing heading (the deepest level set). The whole path
     * ("Chapter 7 › 7.1 …") was measured and found worse on the Debian FAQ
     * pages (docs/SEARCH.md), so the outer levels are not used. */
    int l = 6;
    while (l > 0 && !sp->ht[l]) l--;
    size_t len = l ? sp->hl[l] : 0;
    char *h = malloc(len + 1);
    if (!h) return bee_fail("out of memory");
    if (len) memcpy(h, sp->ht[l], len);
    h[len] = 0;
    d->p[d->n++] = (bee_passage){(int64_t)s, e - s, h};
    return 0;
}

static int flush(splitter *sp) {
    int rc = sp->e > sp->s ? push(sp, sp->s, sp->e) : 0;
    sp->s = sp->e = sp->chars = 0;
    return rc;
}

/* Windows of ~TARGET..MAX characters ending at a sentence end where there is
 * one; consecutive windows overlap by OVERLAP characters so a fact cut at a
 * boundary is still whole in one of them. */
static int split_long(splitter *sp, size_t s, size_t e) {
    const char *t = sp->d->text;
    while (s < e) {
        size_t i = s, k = 0, cut = 0;
        while (i < e && k < BEE_PASSAGE_MAX) {
            int end = sentence_end(t, i, e);
            i = next_char(t, i, e);
            k++;
            if (end && k >= BEE_PASSAGE_TARGET) { cut = i; break; }
        }
        if (!cut) cut = i;
        if (push(sp, s, cut)) return -1;
        if (cut >= e) break;
        size_t back = cut;
        for (int j = 0; j < BEE_PASSAGE_OVERLAP; j++) back = prev_char(t, back);
        s = back > s ? back : cut;
    }
    return 0;
}

static int add_para(splitter *sp, size_t s, size_t e) {
    const char *t = sp->d->text;
    while (s < e && isspace((unsigned char)t[s])) s++;
    while (e > s && isspace((unsigned char)t[e - 1])) e--;
    if (s == e) return 0;
    size_t k = n_chars(t, s, e);
    if (k > BEE_PASSAGE_MAX) return flush(sp) || split_long(sp, s, e);
    if (sp->e > sp->s && sp->chars + k > BEE_PASSAGE_MAX && flush(sp)) return -1;
    if (sp->e == sp->s) sp->s = s;
    sp->e = e;
    sp->chars += k;
    return 0;
}

static int is_heading(const char *t, size_t s, size_t e) {
    size_t i = s;
    while (i < e && i - s < 6 && t[i] == '#') i++;
    return i > s && i < e && t[i] == ' ';
}

int bee_doc_split(bee_doc *d, int markdown) {
    splitter sp = {d, 0, 0, 0, {0}, {0}};
    const char *t = d->text;
    size_t ps = 0, i = 0;
    int in_para = 0;
    while (i <= d->len) {
        const char *nl = i < d->len ? memchr(t + i, '\n', d->len - i) : NULL;
        size_t le = nl ? (size_t)(nl - t) : d->len;
        size_t j = i;
        while (j < le && isspace((unsigned char)t[j])) j++;
        int blank = j == le;
        if (markdown && !blank && is_heading(t, j, le)) {
            if ((in_para && add_para(&sp, ps, i)) || flush(&sp)) return -1;
            size_t h = j;
            while (t[h] == '#') h++;
            int level = (int)(h - j); /* 1..6 (is_heading) */
            while (t[h] == '#' || t[h] == ' ') h++;
            sp.ht[level] = t + h;
            sp.hl[level] = le - h;
            while (sp.hl[level] && isspace((unsigned char)sp.ht[level][sp.hl[level] - 1])) sp.hl[level]--;
            for (int l = level + 1; l <= 6; l++) sp.ht[l] = NULL, sp.hl[l] = 0;
            ps = j;
            in_para = 1;
        } else if (blank) {
            if (in_para && add_para(&sp, ps, i)) return -1;
            in_para = 0;
        } else if (!in_para) {
            ps = j;
            in_para = 1;
        }
        if (!nl) {
            if (in_para && add_para(&sp, ps, le)) return -1;
            break;
        }
        i = le + 1;
    }
    return flush(&sp);
}

void bee_doc_free(bee_doc *d) {
    for (size_t i = 0; i < d->n; i++) free(d->p[i].heading);
    free(d->p);
    free(d->text);
    memset(d, 0, sizeof *d);
}
