/* Vocabulary builder: counts characters, CJK n-grams (apriori: an n-gram is
 * only counted when both of its (n-1)-grams are frequent, which keeps the
 * table small on a large corpus) and English words / word endings, then fills
 * the vocabulary best first. Everything is sorted with a total order, so the
 * output depends only on the input. */
#include "tokenizer/vocab_build.h"

#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

/* The fixed ids of SPEC §4.1; <eod> (65756 upstream) cannot keep its id in a
 * small vocabulary, so it follows the others, as in bee_vocab_builtin. */
static const char *const k_specials[] = {"<pad>", "<unk>", "<mask>", "<sep>", "\n", " ", "<s>", "</s>",
                                         "<root>", "<ans>", "<option>", "<eod>"};
enum { N_SPECIAL = sizeof k_specials / sizeof k_specials[0] };

enum { KIND_CHAR, KIND_CJK, KIND_EN };

void bee_vocab_opts_default(bee_vocab_opts *o) {
    o->size = 8000, o->min_char_count = 2, o->min_piece_count = 5, o->max_cjk_chars = 4;
}

/* ================================================================ string → count table */

typedef struct {
    size_t off;
    uint32_t len, kind;
    uint64_t count;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
    uint32_t *slot; /* entry index + 1; 0 = empty */
    size_t n_slot;  /* power of two */
    char *arena;
    size_t an, acap;
} smap;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static int smap_grow_slots(smap *m) {
    size_t ns = m->n_slot ? m->n_slot * 2 : 1024;
    uint32_t *s = calloc(ns, sizeof *s);
    if (!s) return bee_fail("out of memory (vocabulary counts)");
    for (size_t i = 0; i < m->n; i++) {
        size_t h = (size_t)hash_bytes(m->arena + m->e[i].off, m->e[i].len) & (ns - 1);
        while (s[h]) h = (h + 1) & (ns - 1);
        s[h] = (uint32_t)(i + 1);
    }
    free(m->slot);
    m->slot = s, m->n_slot = ns;
    return 0;
}

static entry *smap_find(const smap *m, const char *s, size_t len) {
    if (!m->n_slot) return NULL;
    size_t h = (size_t)hash_bytes(s, len) & (m->n_slot - 1);
    for (; m->slot[h]; h = (h + 1) & (m->n_slot - 1)) {
        entry *e = &m->e[m->slot[h] - 1];
        if (e->len == len && memcmp(m->arena + e->off, s, len) == 0) return e;
    }
    return NULL;
}

static uint64_t smap_count(const smap *m, const char *s, size_t len) {
    const entry *e = smap_find(m, s, len);
    return e ? e->count : 0;
}

static int smap_reserve(smap *m, size_t len) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 1024;
        if (nc >= UINT32_MAX) return bee_fail("too many distinct pieces in the corpus");
        entry *e = realloc(m->e, nc * sizeof *e);
        if (!e) return bee_fail("out of memory (vocabulary counts)");
        m->e = e, m->cap = nc;
    }
    if (m->an + len > m->acap) {
        size_t nc = m->acap ? m->acap * 2 : 65536;
        while (nc < m->an + len) nc *= 2;
        char *a = realloc(m->arena, nc);
        if (!a) return bee_fail("out of memory (vocabulary counts)");
        m->arena = a, m->acap = nc;
    }
    if ((m->n + 1) * 2 > m->n_slot) return smap_grow_slots(m);
    return 0;
}

static int smap_add(smap *m, const char *s, size_t len, uint32_t kind) {
    entry *e = smap_find(m, s, len);
    if (e) {
        e->count++;
        return 0;
    }
    if (smap_reserve(m, len)) return -1;
    memcpy(m->arena + m->an, s, len);
    m->e[m->n] = (entry){m->an, (uint32_t)len, kind, 1};
    m->an += len;
    size_t h = (size_t)hash_bytes(s, len) & (m->n_slot - 1);
    while (m->slot[h]) h = (h + 1) & (m->n_slot - 1);
    m->slot[h] = (uint32_t)++m->n;
    return 0;
}

static void smap_free(smap *m) {
    free(m->e), free(m->slot), free(m->arena);
    memset(m, 0, sizeof *m);
}

/* ================================================================ counting */

static uint32_t decode_cp(const unsigned char *p, int n) {
    if (n == 1) return p[0];
    uint32_t cp = p[0] & (0x7f >> n);
    for (int i = 1; i < n; i++) cp = (cp << 6) | (p[i] & 0x3f);
    return cp;
}

static int is_cjk(uint32_t cp) {
    return (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0xf900 && cp <= 0xfaff) ||
           (cp >= 0x20000 && cp <= 0x3134f);
}

static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* Characters worth a token: not the fixed newline/space, not control characters
 * (tabs and carriage returns stay unknown, as in the upstream vocabulary). */
static int countable_char(uint32_t cp) { return cp > 0x20 && cp != 0x7f && !(cp >= 0x80 && cp < 0xa0); }

static int count_chars(const char *text, size_t len, smap *chars) {
    for (size_t i = 0; i < len;) {
        int k = bee_utf8_len((const unsigned char *)text + i, len - i);
        if (k == 0) return bee_fail("invalid UTF-8 at byte offset %zu", i);
        if (countable_char(decode_cp((const unsigned char *)text + i, k)) && smap_add(chars, text + i, (size_t)k, KIND_CHAR))
            return -1;
        i += (size_t)k;
    }
    return 0;
}

/* Counts the n-grams of one run of CJK characters (byte offsets of its
 * characters in pos[0..n_chars], pos[n_chars] = end of run). */
static int count_run(const char *text, const size_t *pos, size_t n_chars, uint32_t n, uint64_t min, smap *m) {
    for (size_t i = 0; i + n <= n_chars; i++) {
        const char *s = text + pos[i];
        size_t len = pos[i + n] - pos[i];
        size_t first = pos[i + 1] - pos[i], last = pos[i + n] - pos[i + n - 1];
        /* apriori: both (n-1)-grams (for n = 2, both characters) must be frequent */
        if (smap_count(m, s, len - last) < min || smap_count(m, s + first, len - first) < min) continue;
        if (smap_add(m, s, len, KIND_CJK)) return -1;
    }
    return 0;
}

static int count_cjk_level(const char *text, size_t len, uint32_t n, uint64_t min, smap *m) {
    size_t cap = 256, k = 0;
    size_t *pos = malloc(cap * sizeof *pos);
    if (!pos) return bee_fail("out of memory");
    int rc = 0;
    for (size_t i = 0; i <= len && rc == 0;) {
        int b = i < len ? bee_utf8_len((const unsigned char *)text + i, len - i) : 0;
        int cjk = b > 0 && is_cjk(decode_cp((const unsigned char *)text + i, b));
        if (!cjk) {
            if (k >= n) {
                pos[k] = i;
                rc = count_run(text, pos, k, n, min, m);
            }
            k = 0;
            i += b > 0 ? (size_t)b : 1;
            continue;
        }
        if (k + 2 > cap) {
            size_t *np = realloc(pos, (cap *= 2) * sizeof *pos);
            if (!np) rc = bee_fail("out of memory");
            else pos = np;
        }
        if (rc == 0) pos[k++] = i;
        i += (size_t)b;
    }
    free(pos);
    return rc;
}

/* English words (with the leading space when one precedes them, like the
 * upstream " world" tokens) and the endings of longer words ("ing", "tion"),
 * which the greedy longest match uses after a known stem. */
static int count_english(const char *text, size_t len, smap *m) {
    char buf[40];
    for (size_t i = 0; i < len;) {
        if (!is_alpha(text[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_alpha(text[j])) j++;
        size_t w = j - i;
        if (w <= 24) {
            int space = i > 0 && text[i - 1] == ' ';
            if (space) buf[0] = ' ';
            memcpy(buf + space, text + i, w);
            if (w + (size_t)space >= 2 && smap_add(m, buf, w + (size_t)space, KIND_EN)) return -1;
            for (size_t s = 2; s <= 5 && s + 2 <= w; s++)
                if (smap_add(m, text + j - s, s, KIND_EN)) return -1;
        }
        i = j;
    }
    return 0;
}

/* ================================================================ selection */

typedef struct {
    uint64_t score, count;
    const char *s;
    uint32_t len, kind;
} cand;

static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static size_t n_chars_utf8(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((uint8_t)s[i] & 0xc0) != 0x80;
    return k;
}

/* Candidates of one kind with at least `min` occurrences, best first. */
static cand *collect(const smap *m, uint32_t kind, uint64_t min, int by_count, size_t *n_out) {
    cand *c = malloc((m->n ? m->n : 1) * sizeof *c);
    if (!c) {
        bee_fail("out of memory");
        return NULL;
    }
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++) {
        const entry *e = &m->e[i];
        if (e->kind != kind || e->count < min) continue;
        const char *s = m->arena + e->off;
        uint64_t gain = by_count ? 1 : n_chars_utf8(s, e->len) - 1;
        c[k++] = (cand){e->count * gain, e->count, s, e->len, kind};
    }
    qsort(c, k, sizeof *c, cand_cmp);
    *n_out = k;
    return c;
}

static int push_tok(bee_vocab *v, const char *s, size_t len) {
    char *t = malloc(len + 1);
    if (!t) return bee_fail("out of memory");
    memcpy(t, s, len);
    t[len] = 0;
    v->tok[v->n++] = t;
    return 0;
}

/* Merges the two piece lists best first, so Chinese words and English pieces
 * compete on the same tokens-saved score. */
static int add_pieces(bee_vocab *v, const cand *a, size_t na, const cand *b, size_t nb, uint32_t size) {
    size_t i = 0, j = 0;
    while (v->n < size && (i < na || j < nb)) {
        const cand *c = (j >= nb || (i < na && cand_cmp(&a[i], &b[j]) <= 0)) ? &a[i++] : &b[j++];
        if (push_tok(v, c->s, c->len)) return -1;
        if (c->kind == KIND_CJK) v->n_cjk++;
        else v->n_en++;
    }
    return 0;
}

static int select_tokens(const smap *chars, const smap *pieces, const bee_vocab_opts *o, bee_vocab *v) {
    size_t nc, ncjk, nen;
    cand *c = collect(chars, KIND_CHAR, o->min_char_count, 1, &nc);
    cand *cj = collect(pieces, KIND_CJK, o->min_piece_count, 0, &ncjk);
    cand *en = collect(pieces, KIND_EN, o->min_piece_count, 0, &nen);
    int rc = -1;
    v->tok = calloc(o->size, sizeof *v->tok);
    if (!c || !cj || !en || !v->tok) goto done;
    for (size_t i = 0; i < N_SPECIAL; i++)
        if (push_tok(v, k_specials[i], strlen(k_specials[i]))) goto done;
    v->n_special = N_SPECIAL;
    /* Characters come first (coverage), but at most 3/4 of the free slots
     * when there are pieces to add: rare characters save fewer tokens than
     * frequent words. */
    size_t free_slots = o->size - N_SPECIAL, n_pieces = ncjk + nen;
    size_t reserve = n_pieces < free_slots / 4 ? n_pieces : free_slots / 4;
    size_t take = nc < free_slots - reserve ? nc : free_slots - reserve;
    for (size_t i = 0; i < take; i++)
        if (push_tok(v, c[i].s, c[i].len)) goto done;
    v->n_chars = (uint32_t)take;
    v->n_chars_dropped = (uint32_t)(nc - take);
    rc = add_pieces(v, cj, ncjk, en, nen, o->size);
done:
    free(c), free(cj), free(en);
    return rc;
}

int bee_vocab_build(const char *text, size_t len, const bee_vocab_opts *o, bee_vocab *out) {
    memset(out, 0, sizeof *out);
    if (o->size < N_SPECIAL + 1 || o->size > 10000000)
        return bee_fail("vocabulary size %u out of range (%d..10000000)", o->size, N_SPECIAL + 1);
    if (o->max_cjk_chars < 2 || o->max_cjk_chars > 8)
        return bee_fail("longest Chinese piece %u out of range (2..8)", o->max_cjk_chars);
    if (o->min_char_count < 1 || o->min_piece_count < 1) return bee_fail("minimum counts must be at least 1");
    size_t off = bee_utf8_check(text, len);
    if (off) return bee_fail("invalid UTF-8 at byte offset %zu", off - 1);
    smap chars = {0}, pieces = {0};
    int rc = count_chars(text, len, &chars);
    if (rc == 0 && chars.n == 0) rc = bee_fail("empty corpus (no characters besides spaces and newlines)");
    /* single CJK characters seed the apriori levels in the piece table */
    for (size_t i = 0; rc == 0 && i < chars.n; i++) {
        const entry *e = &chars.e[i];
        const char *s = chars.arena + e->off;
        if (is_cjk(decode_cp((const unsigned char *)s, (int)e->len)) && (rc = smap_add(&pieces, s, e->len, KIND_CHAR)) == 0)
            smap_find(&pieces, s, e->len)->count = e->count;
    }
    for (uint32_t n = 2; rc == 0 && n <= o->max_cjk_chars; n++)
        rc = count_cjk_level(text, len, n, o->min_piece_count, &pieces);
    if (rc == 0) rc = count_english(text, len, &pieces);
    if (rc == 0) rc = select_tokens(&chars, &pieces, o, out);
    smap_free(&chars);
    smap_free(&pieces);
    if (rc) bee_vocab_free(out);
    return rc;
}

void bee_vocab_free(bee_vocab *v) {
    if (v->tok)
        for (uint32_t i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    memset(v, 0, sizeof *v);
}

/* ================================================================ output */

int bee_vocab_write(const bee_vocab *v, const char *path) {
    bee_str s = {0};
    int rc = 0;
    for (uint32_t i = 0; i < v->n && rc == 0; i++) {
        const char *t = strcmp(v->tok[i], "\n") == 0 ? "</n>" : strcmp(v->tok[i], " ") == 0 ? "</_>" : v->tok[i];
        rc = bee_str_appendz(&s, t) || bee_str_append(&s, "\n", 1) ? -1 : 0;
    }
    if (rc == 0) rc = bee_write_file_atomic(path, s.s, s.n);
    bee_str_free(&s);
    return rc;
}

int bee_vocab_tokenizer(const bee_vocab *v, bee_tokenizer **out) {
    uint64_t *lens = malloc((v->n ? v->n : 1) * sizeof *lens);
    if (!lens) return bee_fail("out of memory");
    for (uint32_t i = 0; i < v->n; i++) lens[i] = strlen(v->tok[i]);
    int rc = bee_tokenizer_init(out, (const char *const *)v->tok, lens, v->n);
    free(lens);
    return rc;
}

/* ================================================================ measuring */

int bee_vocab_measure(const bee_tokenizer *t, const char *text, size_t len, bee_vocab_stats *s) {
    memset(s, 0, sizeof *s);
    bee_str esc = {0};
    bee_pieces p = {0};
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        size_t j = i;
        while (j < len && text[j] != '\n') j++;
        if (j > i) {
            esc.n = 0;
            if (bee_text_escape(text + i, j - i, &esc) || bee_tokenizer_pieces(t, esc.s, esc.n, &p)) {
                rc = bee_fail_prefix("line %llu: ", (unsigned long long)s->lines + 1);
                break;
            }
            s->lines++;
            s->chars += n_chars_utf8(text + i, j - i);
            s->tokens += p.n;
            for (size_t k = 0; k < p.n; k++)
                if (p.v[k].kind == BEE_PIECE_UNKNOWN) s->unknown_chars += n_chars_utf8(p.v[k].s, p.v[k].slen);
            bee_pieces_free(&p); /* bee_tokenizer_pieces starts from an empty list */
        }
        i = j + 1;
    }
    bee_str_free(&esc);
    return rc;
}
