#include "safety/normalize.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* ================================================================ UTF-8 */

/* Valid range of the second byte for each lead byte (RFC 3629 table), which
 * rules out overlong forms, surrogates and code points above U+10FFFF. */
static int second_ok(unsigned char lead, unsigned char b) {
    if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
    if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
    if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
    if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
    return b >= 0x80 && b <= 0xBF;
}

int bee_utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp) {
    if (avail == 0) return 0;
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) need = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, v = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, v = c & 0x07;
    else return -1;
    /* Check what is there before asking for more, so that a chunk boundary
     * never changes how a byte sequence is split into characters. */
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= avail) return 0;
        unsigned char b = p[i];
        if (i == 1 ? !second_ok(c, b) : (b & 0xC0) != 0x80) return -1;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need;
}

size_t bee_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ================================================================ character classes */

typedef struct {
    uint16_t trad, simp;
} t2s_pair;

static const t2s_pair k_t2s[] = {
#include "safety/t2s.inc"
};

/* One bit per BMP code point that has a mapping, so the common case (a
 * character not in the table) costs one load instead of a binary search. */
static uint8_t g_t2s_bits[0x10000 / 8];
static pthread_once_t g_t2s_once = PTHREAD_ONCE_INIT;

static void t2s_init(void) {
    for (size_t i = 0; i < sizeof k_t2s / sizeof k_t2s[0]; i++)
        g_t2s_bits[k_t2s[i].trad >> 3] |= (uint8_t)(1u << (k_t2s[i].trad & 7));
}

static uint32_t t2s(uint32_t cp) {
    if (cp < k_t2s[0].trad || cp > 0xFFFF) return cp;
    pthread_once(&g_t2s_once, t2s_init);
    if (!(g_t2s_bits[cp >> 3] & (1u << (cp & 7)))) return cp;
    size_t lo = 0, hi = sizeof k_t2s / sizeof k_t2s[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (k_t2s[mid].trad == cp) return k_t2s[mid].simp;
        if (k_t2s[mid].trad < cp) lo = mid + 1;
        else hi = mid;
    }
    return cp;
}

/* Invisible characters used to split words without changing how they look:
 * zero-width spaces and joiners, bidi controls, word joiners, BOM, soft
 * hyphen, variation selectors, tag characters. */
static int is_format(uint32_t cp) {
    return cp == 0x00AD || cp == 0x034F || cp == 0x061C || cp == 0x115F || cp == 0x1160 || cp == 0x17B4 ||
           cp == 0x17B5 || cp == 0x180E || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x206F) || cp == 0x3164 || cp == 0xFEFF || cp == 0xFFA0 ||
           (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0x180B && cp <= 0x180D) || (cp >= 0xE0000 && cp <= 0xE0FFF);
}

/* Spaces, controls, punctuation (ASCII, Latin-1, general and CJK) and
 * symbols and emoji, which are as easy to slip between characters. */
static int is_sep(uint32_t cp) {
    if (cp < 0x80) return !bee_norm_is_word(cp);
    return (cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x206F) ||
           (cp >= 0x2190 && cp <= 0x23FF) || (cp >= 0x2500 && cp <= 0x27BF) || (cp >= 0x2900 && cp <= 0x2BFF) ||
           (cp >= 0x1F000 && cp <= 0x1FAFF) ||
           (cp >= 0x3000 && cp <= 0x3003) || (cp >= 0x3008 && cp <= 0x3020) || cp == 0x30FB ||
           (cp >= 0xFE10 && cp <= 0xFE1F) || (cp >= 0xFE30 && cp <= 0xFE6F) || (cp >= 0xFF61 && cp <= 0xFF65);
}

int bee_norm_is_word(uint32_t cp) {
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
}

bee_norm_class bee_norm_cp(uint32_t cp, unsigned flags, uint32_t *out) {
    /* fast paths for the bulk of real text: ASCII and CJK ideographs */
    if (cp < 0x80) {
        *out = cp >= 'A' && cp <= 'Z' ? cp + ('a' - 'A') : cp;
        return bee_norm_is_word(cp) ? BEE_NORM_KEEP : BEE_NORM_SEP;
    }
    if (cp >= 0x4E00 && cp <= 0x9FFF) {
        *out = flags & BEE_NORM_T2S ? t2s(cp) : cp;
        return BEE_NORM_KEEP;
    }
    if (is_format(cp)) return BEE_NORM_DROP;
    if (cp >= 0xFF01 && cp <= 0xFF5E) cp -= 0xFF01 - 0x21; /* full-width ASCII */
    else if (cp == 0x3000) cp = ' ';                       /* ideographic space */
    if (cp >= 'A' && cp <= 'Z') cp += 'a' - 'A';
    if (flags & BEE_NORM_T2S) cp = t2s(cp);
    *out = cp;
    return is_sep(cp) ? BEE_NORM_SEP : BEE_NORM_KEEP;
}

/* ================================================================ whole texts */

static int grow(bee_norm_text *t, size_t need, size_t *cap) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    char *tx = realloc(t->text, c + 1);
    if (tx) t->text = tx;
    size_t *a = realloc(t->src_start, c * sizeof *a);
    if (a) t->src_start = a;
    size_t *b = realloc(t->src_end, c * sizeof *b);
    if (b) t->src_end = b;
    uint8_t *d = realloc(t->bnd, c);
    if (d) t->bnd = d;
    if (!tx || !a || !b || !d) return bee_fail("normalise: out of memory");
    *cap = c;
    return 0;
}

int bee_norm_text_init(bee_norm_text *t, const char *s, size_t n, unsigned flags) {
    memset(t, 0, sizeof *t);
    size_t cap = 0, i = 0;
    int boundary = 1, prev_word = 0;
    if (grow(t, n + 1, &cap)) goto fail;
    while (i < n) {
        uint32_t cp, m;
        int k = bee_utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (k <= 0) { /* invalid or truncated: dropped, like a format character */
            i++;
            continue;
        }
        bee_norm_class cls = bee_norm_cp(cp, flags, &m);
        if (cls == BEE_NORM_DROP || (cls == BEE_NORM_SEP && (flags & BEE_NORM_SKIP_SEP))) {
            boundary |= cls == BEE_NORM_SEP;
            i += (size_t)k;
            continue;
        }
        char enc[4];
        size_t e = bee_utf8_encode(m, enc);
        if (grow(t, t->len + e, &cap)) goto fail;
        int word = bee_norm_is_word(m);
        for (size_t j = 0; j < e; j++) {
            t->text[t->len + j] = enc[j];
            t->src_start[t->len + j] = i;
            t->src_end[t->len + j] = i + (size_t)k;
            t->bnd[t->len + j] = j == 0 && (boundary || !prev_word || !word);
        }
        t->len += e;
        boundary = 0;
        prev_word = word;
        i += (size_t)k;
    }
    t->text[t->len] = 0;
    return 0;
fail:
    bee_norm_text_free(t);
    return -1;
}

void bee_norm_text_free(bee_norm_text *t) {
    free(t->text);
    free(t->src_start);
    free(t->src_end);
    free(t->bnd);
    memset(t, 0, sizeof *t);
}

char *bee_norm_string(const char *s, size_t n, unsigned flags, size_t *len) {
    bee_norm_text t;
    if (bee_norm_text_init(&t, s, n, flags)) return NULL;
    char *out = t.text;
    *len = t.len;
    t.text = NULL;
    bee_norm_text_free(&t);
    return out;
}
