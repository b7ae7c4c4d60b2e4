#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"

/* Longest vocabulary entry is 32 code points in bee.txt; measured at load. */
struct bee_tokenizer {
    uint32_t n;
    char **text;      /* (n) token bytes, NUL-terminated copies */
    uint32_t *len;    /* (n) */
    uint8_t *special; /* (n) starts with '<' and ends with '>' */
    uint32_t *slots;  /* (n_slots) open-addressing hash: id + 1, 0 = empty */
    uint32_t n_slots; /* power of two */
    int max_chars;
    bee_special_ids sp;
};

/* ================================================================ hashing */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

int32_t bee_tokenizer_find(const bee_tokenizer *t, const char *s, size_t len) {
    uint32_t mask = t->n_slots - 1;
    for (uint32_t i = (uint32_t)hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->slots[i];
        if (!v) return -1;
        if (t->len[v - 1] == len && memcmp(t->text[v - 1], s, len) == 0) return (int32_t)(v - 1);
    }
}

static int index_insert(bee_tokenizer *t, uint32_t id) {
    if (bee_tokenizer_find(t, t->text[id], t->len[id]) >= 0)
        return bee_fail("vocabulary: token %u ('%s') duplicates an earlier token", id, t->text[id]);
    uint32_t mask = t->n_slots - 1;
    uint32_t i = (uint32_t)hash_bytes(t->text[id], t->len[id]) & mask;
    while (t->slots[i]) i = (i + 1) & mask;
    t->slots[i] = id + 1;
    return 0;
}

/* ================================================================ loading */

static int count_chars(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static int lookup_special(bee_tokenizer *t) {
    static const struct { const char *name; size_t off; int required; } want[] = {
        {"<pad>", offsetof(bee_special_ids, pad), 1},     {"<unk>", offsetof(bee_special_ids, unk), 1},
        {"<mask>", offsetof(bee_special_ids, mask), 1},   {"<sep>", offsetof(bee_special_ids, sep), 1},
        {"\n", offsetof(bee_special_ids, nl), 1},         {" ", offsetof(bee_special_ids, space), 1},
        {"<s>", offsetof(bee_special_ids, bos), 1},       {"</s>", offsetof(bee_special_ids, eos), 1},
        {"<root>", offsetof(bee_special_ids, root), 1},   {"<ans>", offsetof(bee_special_ids, ans), 1},
        {"<option>", offsetof(bee_special_ids, option), 1}, {"<eod>", offsetof(bee_special_ids, eod), 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int32_t id = bee_tokenizer_find(t, want[i].name, strlen(want[i].name));
        if (id < 0 && want[i].required)
            return bee_fail("vocabulary lacks the required token '%s'", want[i].name[0] == '\n' ? "\\n" : want[i].name);
        *(int32_t *)((char *)&t->sp + want[i].off) = id;
    }
    return 0;
}

static int add_token(bee_tokenizer *t, uint32_t id, const char *s, uint64_t len) {
    if (len == 0) return bee_fail("vocabulary: token %u is empty", id);
    if (len > 1024) return bee_fail("vocabulary: token %u is longer than 1024 bytes", id);
    size_t bad = bee_utf8_check(s, (size_t)len);
    if (bad) return bee_fail("vocabulary: token %u is not valid UTF-8 (byte %zu)", id, bad - 1);
    if (!(t->text[id] = malloc(len + 1))) return bee_fail("out of memory");
    memcpy(t->text[id], s, len);
    t->text[id][len] = 0;
    t->len[id] = (uint32_t)len;
    t->special[id] = len >= 2 && s[0] == '<' && s[len - 1] == '>';
    int c = count_chars(s, (size_t)len);
    if (c > t->max_chars) t->max_chars = c;
    return index_insert(t, id);
}

int bee_tokenizer_init(bee_tokenizer **out, const char *const *tokens, const uint64_t *lens, uint32_t n) {
    *out = NULL;
    if (n == 0 || n > (1u << 28)) return bee_fail("vocabulary: bad size %u", n);
    bee_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return bee_fail("out of memory");
    t->n = n;
    t->n_slots = 1;
    while (t->n_slots < 2 * n) t->n_slots <<= 1;
    t->text = calloc(n, sizeof *t->text);
    t->len = calloc(n, sizeof *t->len);
    t->special = calloc(n, 1);
    t->slots = calloc(t->n_slots, sizeof *t->slots);
    if (!t->text || !t->len || !t->special || !t->slots) {
        bee_tokenizer_free(t);
        return bee_fail("out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        if (add_token(t, i, tokens[i], lens[i])) {
            bee_tokenizer_free(t);
            return -1;
        }
    }
    if (lookup_special(t)) {
        bee_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

static void rename_token(const char **s, uint64_t *len) {
    if (*len == 4 && memcmp(*s, "</n>", 4) == 0) {
        *s = "\n";
        *len = 1;
    } else if (*len == 4 && memcmp(*s, "</_>", 4) == 0) {
        *s = " ";
        *len = 1;
    }
}

int bee_tokenizer_load_txt(const char *path, bee_tokenizer **out) {
    char *buf;
    size_t size;
    if (bee_read_file(path, &buf, &size)) return -1;
    size_t cap = 1024, n = 0;
    const char **toks = malloc(cap * sizeof *toks);
    uint64_t *lens = malloc(cap * sizeof *lens);
    int rc = -1;
    for (size_t i = 0; i < size && toks && lens;) {
        size_t j = i;
        while (j < size && buf[j] != '\n') j++;
        if (j > i) { /* empty lines are skipped, like upstream */
            if (n == cap) {
                cap *= 2;
                const char **nt = realloc(toks, cap * sizeof *toks);
                uint64_t *nl = realloc(lens, cap * sizeof *lens);
                if (nt) toks = nt;
                if (nl) lens = nl;
                if (!nt || !nl) break;
            }
            toks[n] = buf + i;
            lens[n] = j - i;
            rename_token(&toks[n], &lens[n]);
            n++;
        }
        i = j + 1;
    }
    if (!toks || !lens || n == 0 || n > UINT32_MAX) {
        bee_fail("%s: empty vocabulary or out of memory", path);
    } else {
        rc = bee_tokenizer_init(out, toks, lens, (uint32_t)n);
        if (rc) bee_fail_prefix("%s: ", path);
    }
    free(toks);
    free(lens);
    free(buf);
    return rc;
}

void bee_tokenizer_free(bee_tokenizer *t) {
    if (!t) return;
    if (t->text)
        for (uint32_t i = 0; i < t->n; i++) free(t->text[i]);
    free(t->text);
    free(t->len);
    free(t->special);
    free(t->slots);
    free(t);
}

uint32_t bee_tokenizer_n_vocab(const bee_tokenizer *t) { return t->n; }
const bee_special_ids *bee_tokenizer_special(const bee_tokenizer *t) { return &t->sp; }

const char *bee_tokenizer_text(const bee_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || (uint32_t)id >= t->n) return NULL;
    if (len) *len = t->len[id];
    return t->text[id];
}

int bee_tokenizer_is_special(const bee_tokenizer *t, int32_t id) {
    return id >= 0 && (uint32_t)id < t->n && t->special[id];
}

/* ================================================================ ext table */

int bee_ext_table_find(const bee_ext_table *e, const char *s, size_t len) {
    for (size_t i = 0; i < e->n; i++)
        if (e->len[i] == len && memcmp(e->str[i], s, len) == 0) return (int)i;
    return -1;
}

int bee_ext_table_add(bee_ext_table *e, const char *s, size_t len) {
    int k = bee_ext_table_find(e, s, len);
    if (k >= 0) return k;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 8;
        char **ns = realloc(e->str, cap * sizeof *ns);
        if (ns) e->str = ns;
        size_t *nl = realloc(e->len, cap * sizeof *nl);
        if (nl) e->len = nl;
        if (!ns || !nl) return bee_fail("out of memory");
        e->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return bee_fail("out of memory");
    memcpy(copy, s, len);
    copy[len] = 0;
    e->str[e->n] = copy;
    e->len[e->n] = len;
    return (int)e->n++;
}

void bee_ext_table_free(bee_ext_table *e) {
    for (size_t i = 0; i < e->n; i++) free(e->str[i]);
    free(e->str);
    free(e->len);
    memset(e, 0, sizeof *e);
}

/* ================================================================ splitting */

static int pieces_push(bee_pieces *p, bee_piece x) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        bee_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) return bee_fail("out of memory");
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = x;
    return 0;
}

void bee_pieces_free(bee_pieces *p) {
    free(p->v);
    bee_str_free(&p->scratch);
    memset(p, 0, sizeof *p);
}

/* Greedy longest match of one text part (already unescaped). Offsets refer to
 * the part; `base` maps them back to the original text only approximately
 * (escapes shift them), which upstream does too. */
static int cut_text_part(const bee_tokenizer *t, const char *s, size_t n, size_t base, bee_pieces *out) {
    size_t p = 0, unk_start = 0;
    int in_unk = 0;
    while (p < n) {
        size_t ends[64];
        int k = 0;
        for (size_t q = p; q < n && k < t->max_chars && k < 64;) {
            int cl = bee_utf8_len((const unsigned char *)s + q, n - q);
            q += cl ? (size_t)cl : 1;
            ends[k++] = q;
        }
        int32_t id = -1;
        size_t plen = 0;
        for (int j = k - 1; j >= 0 && id < 0; j--) {
            int32_t c = bee_tokenizer_find(t, s + p, ends[j] - p);
            if (c >= 0 && !t->special[c]) {
                id = c;
                plen = ends[j] - p;
            }
        }
        if (id < 0) {
            if (!in_unk) unk_start = p;
            in_unk = 1;
            p = ends[0];
            continue;
        }
        if (in_unk) {
            bee_piece u = {BEE_PIECE_UNKNOWN, -1, base + unk_start, p - unk_start, s + unk_start, p - unk_start};
            if (pieces_push(out, u)) return -1;
            in_unk = 0;
        }
        bee_piece v = {BEE_PIECE_VOCAB, id, base + p, plen, t->text[id], plen};
        if (pieces_push(out, v)) return -1;
        p += plen;
    }
    if (in_unk) {
        bee_piece u = {BEE_PIECE_UNKNOWN, -1, base + unk_start, n - unk_start, s + unk_start, n - unk_start};
        if (pieces_push(out, u)) return -1;
    }
    return 0;
}

typedef struct {
    size_t off, len; /* into scratch */
    size_t src;      /* offset in the original text */
    int is_tag;
} raw_part;

/* Step 1 (SPEC §4.2): text parts and tags, with "<<" → "<". */
static int split_tags(const char *text, size_t len, bee_str *scratch, raw_part **parts, size_t *n_parts) {
    size_t cap = 8, n = 0;
    raw_part *v = malloc(cap * sizeof *v);
    if (!v) return bee_fail("out of memory");
    v[n++] = (raw_part){scratch->n, 0, 0, 0};
    enum { NORMAL, SEEN_LT, IN_TAG } st = NORMAL;
    size_t chars = 0, tag_start = 0;
    for (size_t i = 0; i < len; chars++) {
        int cl = bee_utf8_len((const unsigned char *)text + i, len - i);
        if (!cl) {
            free(v);
            return bee_fail("invalid UTF-8 at byte %zu", i);
        }
        char c = text[i];
        if (st == NORMAL) {
            if (c == '<') {
                st = SEEN_LT;
                tag_start = i;
            } else {
                if (bee_str_append(scratch, text + i, (size_t)cl)) goto oom;
                v[n - 1].len += (size_t)cl;
            }
        } else if (st == SEEN_LT) {
            if (c == '<') {
                if (bee_str_append(scratch, "<", 1)) goto oom;
                v[n - 1].len++;
                st = NORMAL;
            } else {
                st = IN_TAG; /* even '>' opens the tag: "<>" closes at the next '>' */
            }
        } else if (c == '<') {
            free(v);
            return bee_fail("invalid special token: '<' inside a tag at character %zu", chars);
        } else if (c == '>') {
            if (n + 2 > cap) {
                cap *= 2;
                raw_part *nv = realloc(v, cap * sizeof *nv);
                if (!nv) goto oom;
                v = nv;
            }
            v[n++] = (raw_part){tag_start, i + 1 - tag_start, tag_start, 1};
            v[n++] = (raw_part){scratch->n, 0, i + 1, 0};
            st = NORMAL;
        }
        i += (size_t)cl;
    }
    if (st != NORMAL) {
        free(v);
        return bee_fail("unexpected end of text: unterminated '<' tag starting at byte %zu (write '<<' for a literal '<')",
                        tag_start);
    }
    *parts = v;
    *n_parts = n;
    return 0;
oom:
    free(v);
    return bee_fail("out of memory");
}

int bee_tokenizer_pieces(const bee_tokenizer *t, const char *text, size_t len, bee_pieces *out) {
    memset(out, 0, sizeof *out);
    raw_part *parts = NULL;
    size_t n_parts = 0;
    if (split_tags(text, len, &out->scratch, &parts, &n_parts)) {
        bee_pieces_free(out);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n_parts && rc == 0; i++) {
        raw_part *r = &parts[i];
        if (r->is_tag) {
            int32_t id = bee_tokenizer_find(t, text + r->off, r->len);
            bee_piece p = {BEE_PIECE_TAG, id, r->src, r->len, text + r->off, r->len};
            rc = pieces_push(out, p);
        } else if (r->len) {
            rc = cut_text_part(t, out->scratch.s + r->off, r->len, r->src, out);
        }
    }
    free(parts);
    if (rc) bee_pieces_free(out);
    return rc;
}

int bee_tokenizer_encode(const bee_tokenizer *t, const char *text, size_t len, bee_ext_table *ext, bee_ivec *ids) {
    bee_pieces ps;
    if (bee_tokenizer_pieces(t, text, len, &ps)) return -1;
    int rc = 0;
    for (size_t i = 0; i < ps.n && rc == 0; i++) {
        bee_piece *p = &ps.v[i];
        int32_t id = p->id;
        if (id < 0) {
            int k = bee_ext_table_add(ext, p->s, p->slen);
            if (k < 0) {
                rc = -1;
                break;
            }
            id = (int32_t)t->n + k;
        }
        rc = bee_ivec_push(ids, id);
    }
    bee_pieces_free(&ps);
    return rc;
}

/* ================================================================ decoding */

int bee_decode_table_set(bee_decode_table *d, int32_t id, const char *s, size_t len) {
    long k = bee_decode_table_find(d, id);
    char *copy = malloc(len + 1);
    if (!copy) return bee_fail("out of memory");
    memcpy(copy, s, len);
    copy[len] = 0;
    if (k >= 0) {
        free(d->str[k]);
        d->str[k] = copy;
        d->len[k] = len;
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        int32_t *ni = realloc(d->id, cap * sizeof *ni);
        if (ni) d->id = ni;
        char **ns = realloc(d->str, cap * sizeof *ns);
        if (ns) d->str = ns;
        size_t *nl = realloc(d->len, cap * sizeof *nl);
        if (nl) d->len = nl;
        if (!ni || !ns || !nl) {
            free(copy);
            return bee_fail("out of memory");
        }
        d->cap = cap;
    }
    d->id[d->n] = id;
    d->str[d->n] = copy;
    d->len[d->n++] = len;
    return 0;
}

long bee_decode_table_find(const bee_decode_table *d, int32_t id) {
    for (size_t i = 0; d && i < d->n; i++)
        if (d->id[i] == id) return (long)i;
    return -1;
}

void bee_decode_table_free(bee_decode_table *d) {
    for (size_t i = 0; i < d->n; i++) free(d->str[i]);
    free(d->id);
    free(d->str);
    free(d->len);
    memset(d, 0, sizeof *d);
}

int bee_text_escape(const char *s, size_t n, bee_str *out) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<' ? bee_str_append(out, "<<", 2) : bee_str_append(out, s + i, 1)) return -1;
    }
    if (!out->s && bee_str_append(out, "", 0)) return -1;
    return 0;
}

int bee_tokenizer_decode_one(const bee_tokenizer *t, int32_t id, const bee_decode_table *table, bee_str *out) {
    long k = bee_decode_table_find(table, id);
    if (k >= 0) return bee_str_append(out, table->str[k], table->len[k]);
    if (id < 0) return 0;
    if ((uint32_t)id >= t->n) return bee_fail("cannot decode id %d: not in the vocabulary (%u) nor the ext table", id, t->n);
    if (t->special[id]) return bee_str_append(out, t->text[id], t->len[id]);
    return bee_text_escape(t->text[id], t->len[id], out);
}

int bee_tokenizer_decode(const bee_tokenizer *t, const int32_t *ids, size_t n, const bee_decode_table *table,
                         bee_str *out) {
    if (bee_str_append(out, "", 0)) return -1;
    for (size_t i = 0; i < n; i++)
        if (bee_tokenizer_decode_one(t, ids[i], table, out)) return -1;
    return 0;
}

/* ================================================================ builtin vocab */

static int put_utf8(char *b, uint32_t cp) {
    if (cp < 0x80) {
        b[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    b[0] = (char)(0xe0 | cp >> 12);
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
}

int bee_vocab_builtin(char ***tokens, uint32_t *n) {
    static const char *fixed[] = {"<pad>", "<unk>", "<mask>", "<sep>", "\n", " ", "<s>", "</s>", "<root>", "<ans>",
                                  "<option>", "<eod>"};
    static const uint32_t ranges[][2] = {
        {0x21, 0x7e}, {0x2010, 0x2027}, {0x3000, 0x303f}, {0xff01, 0xff5e}, {0x4e00, 0x9fff},
    };
    uint32_t total = sizeof fixed / sizeof fixed[0];
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) total += ranges[r][1] - ranges[r][0] + 1;
    char **v = calloc(total, sizeof *v);
    if (!v) return bee_fail("out of memory");
    uint32_t k = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) v[k++] = strdup(fixed[i]);
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        for (uint32_t cp = ranges[r][0]; cp <= ranges[r][1]; cp++) {
            char b[4] = {0};
            put_utf8(b, cp);
            v[k++] = strdup(b);
        }
    }
    for (uint32_t i = 0; i < k; i++) {
        if (!v[i]) {
            for (uint32_t j = 0; j < k; j++) free(v[j]);
            free(v);
            return bee_fail("out of memory");
        }
    }
    *tokens = v;
    *n = k;
    return 0;
}
