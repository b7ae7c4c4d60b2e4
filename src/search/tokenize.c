#include "search/tokenize.h"

#include <stdint.h>
#include <string.h>

/* Decodes one UTF-8 sequence; returns its length, or 0 for an invalid byte
 * (which then separates tokens and is skipped). */
static size_t utf8_next(const unsigned char *p, size_t avail, uint32_t *cp) {
    unsigned c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > avail) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static uint32_t normalize(uint32_t cp) {
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFEE0; /* full-width ASCII */
    if (cp == 0x3000) return ' ';
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    return cp;
}

static int is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0xF900 && cp <= 0xFAFF) ||
           (cp >= 0x20000 && cp <= 0x3FFFF) || (cp >= 0x3040 && cp <= 0x30FF) || (cp >= 0xAC00 && cp <= 0xD7AF);
}

/* Punctuation, symbols and spaces outside ASCII: treated like ASCII punctuation. */
static int is_sep(uint32_t cp) {
    if (cp < 0x80) return !((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9'));
    return (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x2BFF) ||
           (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE10 && cp <= 0xFE6F) ||
           (cp >= 0xFF00 && cp <= 0xFF65) || (cp >= 0xFFF0 && cp <= 0xFFFF) || (cp >= 0x1F000 && cp <= 0x1FFFF) ||
           (cp >= 0xE000 && cp <= 0xF8FF);
}

static int ends(const char *w, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n > k && memcmp(w + n - k, suf, k) == 0;
}

static int has_vowel(const char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (strchr("aeiouy", w[i])) return 1;
    return 0;
}

/* A few Porter-style rules, enough to conflate plurals, -ing/-ed/-ly forms
 * and a final silent e ("stores", "stored", "storing" → "stor"). Stems keep
 * at least three letters so short words are left alone. */
size_t bee_search_stem(char *w, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (w[i] < 'a' || w[i] > 'z') return n; /* digits or non-ASCII: left as is */
    if (n <= 3) return n;
    if (ends(w, n, "sses")) n -= 2;
    else if (ends(w, n, "ies")) { n -= 2; w[n - 1] = 'y'; }
    else if (w[n - 1] == 's' && !ends(w, n, "ss") && !ends(w, n, "us") && !ends(w, n, "is")) n -= 1;
    int cut = 0;
    if (ends(w, n, "ing") && n - 3 >= 3 && has_vowel(w, n - 3)) { n -= 3; cut = 1; }
    else if (ends(w, n, "ed") && n - 2 >= 3 && has_vowel(w, n - 2)) { n -= 2; cut = 1; }
    else if (ends(w, n, "ly") && n - 2 >= 3) n -= 2;
    if (cut && n >= 4 && w[n - 1] == w[n - 2] && !strchr("aeioulsz", w[n - 1])) n -= 1; /* running → run */
    if (n > 3 && w[n - 1] == 'e') n -= 1;
    if (n > 3 && w[n - 1] == 'y') w[n - 1] = 'i'; /* study, studies, studied → studi */
    return n;
}

typedef struct {
    const unsigned char *p;
    size_t n, i;
} cursor;

/* Next normalised code point at c->i: *len bytes, kind 0 separator, 1 CJK, 2 word. */
static uint32_t peek(const cursor *c, size_t *len, int *kind) {
    uint32_t cp = 0;
    *len = utf8_next(c->p + c->i, c->n - c->i, &cp);
    if (*len == 0) { *len = 1; *kind = 0; return 0; }
    cp = normalize(cp);
    *kind = is_cjk(cp) ? 1 : is_sep(cp) ? 0 : 2;
    return cp;
}

static int emit_word(cursor *c, bee_stok_fn fn, void *user) {
    char w[BEE_SEARCH_TOKEN_MAX + 4];
    size_t wn = 0, start = c->i, len;
    int kind;
    while (c->i < c->n) {
        uint32_t cp = peek(c, &len, &kind);
        if (kind != 2) break;
        if (wn + 4 <= BEE_SEARCH_TOKEN_MAX) wn += utf8_put(cp, w + wn);
        c->i += len;
    }
    wn = bee_search_stem(w, wn);
    return fn(user, w, wn, start, c->i, 0);
}

/* A CJK run c1..cn gives its bigrams c1c2 .. c(n-1)cn, each at its own
 * position, then cn alone. Every character thus starts exactly one token,
 * so a one-character query is the prefix query "c*" over the same postings
 * (same term frequencies as unigrams would give) at half the tokens of
 * indexing every character and every bigram. A query run of one character is
 * that character; longer runs are their bigrams. */
static int emit_cjk(cursor *c, bee_stok_mode mode, bee_stok_fn fn, void *user) {
    char buf[16];
    size_t len, s0 = c->i, l0 = 0, run = 0;
    int kind;
    uint32_t prev = 0;
    while (c->i < c->n) {
        uint32_t cp = peek(c, &len, &kind);
        if (kind != 1) break;
        if (run > 0) {
            size_t k = utf8_put(prev, buf);
            k += utf8_put(cp, buf + k);
            int rc = fn(user, buf, k, s0, c->i + len, 0);
            if (rc) return rc;
        }
        prev = cp;
        s0 = c->i;
        l0 = len;
        c->i += len;
        run++;
    }
    if (run == 1 || (run > 1 && mode == BEE_STOK_DOCUMENT)) return fn(user, buf, utf8_put(prev, buf), s0, s0 + l0, 0);
    return 0;
}

int bee_search_cjk_char(const char *tok, size_t n) {
    uint32_t cp = 0;
    size_t k = n ? utf8_next((const unsigned char *)tok, n, &cp) : 0;
    return k == n && k > 0 && is_cjk(normalize(cp));
}

int bee_search_tokenize(const char *text, size_t n, bee_stok_mode mode, bee_stok_fn fn, void *user) {
    cursor c = {(const unsigned char *)text, n, 0};
    size_t len;
    int kind, rc = 0;
    while (c.i < c.n && rc == 0) {
        peek(&c, &len, &kind);
        if (kind == 0) c.i += len;
        else if (kind == 1) rc = emit_cjk(&c, mode, fn, user);
        else rc = emit_word(&c, fn, user);
    }
    return rc;
}
