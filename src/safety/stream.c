/* The checker. Text is decoded character by character, normalised, and fed
 * byte by byte to the automaton; a small window keeps, for each normalised byte
 * still undecided, the original span it came from. After each push everything
 * before the undecided tail is emitted (masked spans replaced) and dropped, so
 * memory stays bounded by the longest term however long the stream runs.
 * The one-shot check is a stream with a single push. */
#include <stdlib.h>
#include <string.h>

#include "safety/internal.h"
#include "safety/normalize.h"
#include "util/error.h"

enum {
    WINDOW_FLUSH = 4096,      /* flush inside a large push once this many normalised bytes wait */
    MAX_MATCHES = 1 << 16,    /* matches kept for reporting; decisions count every match */
};

typedef struct {
    uint32_t pat;
    uint64_t start_n;        /* normalised index of the first byte */
    uint64_t start, end;     /* original span */
} pending_match;

typedef struct {
    uint64_t start, end;
} span;

struct bee_safety_stream {
    const bee_safety_policy *p;
    /* Original bytes [emitted, received) are read through view (view[0] is
     * byte view_base): the caller's chunk itself while a push is scanned
     * when nothing was held back, else buf[off .. n), where the held tail is
     * copied at the end of each push. */
    const char *view;
    uint64_t view_base;
    int external;
    char *buf;
    size_t off, n, cap;
    uint64_t emitted, decoded, received;
    /* normalised window: byte nbase + i came from original [ns[i], ne[i]) */
    uint64_t *ns, *ne;
    uint8_t *bnd;
    size_t wn, wcap;
    uint64_t nbase;
    uint32_t state;
    size_t flush_at; /* window size that triggers a flush inside a push */
    int at_start, sep_pending, prev_word, finished;
    pending_match *pend; /* matches waiting for a word boundary after them */
    size_t n_pend, cap_pend;
    span *masks; /* sorted, disjoint, not yet emitted */
    size_t n_masks, cap_masks;
    bee_safety_match *matches;
    size_t n_matches, cap_matches;
    bee_safety_action action;
};

/* Returns arr grown to hold at least need elements of size sz (updating
 * *cap), or NULL (arr untouched) when out of memory. */
static void *grow(void *arr, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return arr;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *np = realloc(arr, c * sz);
    if (!np) {
        bee_fail("safety stream: out of memory");
        return NULL;
    }
    *cap = c;
    return np;
}

/* ================================================================ lifecycle */

int bee_safety_stream_init(bee_safety_stream **out, const bee_safety_policy *p) {
    if (!p || !p->compiled) return bee_fail("safety stream: policy not compiled");
    bee_safety_stream *s = calloc(1, sizeof *s);
    if (!s) return bee_fail("safety stream: out of memory");
    s->p = p;
    s->at_start = 1;
    s->flush_at = WINDOW_FLUSH;
    *out = s;
    return 0;
}

void bee_safety_stream_free(bee_safety_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s->ns);
    free(s->ne);
    free(s->bnd);
    free(s->pend);
    free(s->masks);
    free(s->matches);
    free(s);
}

bee_safety_action bee_safety_stream_action(const bee_safety_stream *s) { return s->action; }

const bee_safety_match *bee_safety_stream_matches(const bee_safety_stream *s, size_t *n) {
    *n = s->n_matches;
    return s->matches;
}

size_t bee_safety_stream_held(const bee_safety_stream *s) { return (size_t)(s->received - s->emitted); }

static const char *at(const bee_safety_stream *s, uint64_t abs) { return s->view + (abs - s->view_base); }

/* ================================================================ decisions */

static int add_mask(bee_safety_stream *s, uint64_t a, uint64_t b) {
    size_t i = 0;
    while (i < s->n_masks && s->masks[i].end < a) i++;
    size_t j = i;
    while (j < s->n_masks && s->masks[j].start <= b) {
        if (s->masks[j].start < a) a = s->masks[j].start;
        if (s->masks[j].end > b) b = s->masks[j].end;
        j++;
    }
    if (j == i) { /* no overlap: insert at i */
        void *np = grow(s->masks, &s->cap_masks, s->n_masks + 1, sizeof *s->masks);
        if (!np) return -1;
        s->masks = np;
        memmove(s->masks + i + 1, s->masks + i, (s->n_masks - i) * sizeof *s->masks);
        s->n_masks++;
    } else { /* merge masks[i..j) into masks[i] */
        memmove(s->masks + i + 1, s->masks + j, (s->n_masks - j) * sizeof *s->masks);
        s->n_masks -= j - i - 1;
    }
    s->masks[i].start = a;
    s->masks[i].end = b;
    return 0;
}

static int accept(bee_safety_stream *s, uint32_t pat, uint64_t start, uint64_t end) {
    const safety_pattern *sp = &s->p->pats[pat];
    const safety_category *c = &s->p->cats[sp->cat];
    if (c->action > s->action) s->action = c->action;
    if (c->action == BEE_SAFETY_MASK && add_mask(s, start, end)) return -1;
    if (s->n_matches >= MAX_MATCHES) return 0;
    void *np = grow(s->matches, &s->cap_matches, s->n_matches + 1, sizeof *s->matches);
    if (!np) return -1;
    s->matches = np;
    bee_safety_match *m = &s->matches[s->n_matches++];
    m->category = sp->cat;
    m->category_name = c->name;
    m->action = c->action;
    m->term = sp->term;
    m->start = start;
    m->end = end;
    return 0;
}

static int resolve_pending(bee_safety_stream *s, int boundary) {
    for (size_t i = 0; i < s->n_pend; i++)
        if (boundary && accept(s, s->pend[i].pat, s->pend[i].start, s->pend[i].end)) return -1;
    s->n_pend = 0;
    return 0;
}

/* A pattern of len bytes ends at window index b. */
static int on_match(void *user, size_t b, uint32_t pat, uint32_t len) {
    bee_safety_stream *s = user;
    const safety_pattern *sp = &s->p->pats[pat];
    if (len > b + 1) return bee_fail("safety stream: internal error (match before the window)");
    size_t a = b + 1 - len;
    uint64_t start_n = s->nbase + a;
    if (sp->need_left && !s->bnd[a]) return 0;
    if (!sp->need_right) return accept(s, pat, s->ns[a], s->ne[b]);
    void *np = grow(s->pend, &s->cap_pend, s->n_pend + 1, sizeof *s->pend);
    if (!np) return -1;
    s->pend = np;
    s->pend[s->n_pend++] = (pending_match){pat, start_n, s->ns[a], s->ne[b]};
    return 0;
}

/* ================================================================ feeding characters */

static int window_reserve(bee_safety_stream *s, size_t need) {
    if (need <= s->wcap) return 0;
    size_t c = s->wcap ? s->wcap * 2 : 256;
    while (c < need) c *= 2;
    uint64_t *a = realloc(s->ns, c * sizeof *a);
    if (a) s->ns = a;
    uint64_t *b = realloc(s->ne, c * sizeof *b);
    if (b) s->ne = b;
    uint8_t *d = realloc(s->bnd, c);
    if (d) s->bnd = d;
    if (!a || !b || !d) return bee_fail("safety stream: out of memory");
    s->wcap = c;
    return 0;
}

static int feed_char(bee_safety_stream *s, uint32_t cp, size_t k) {
    uint32_t m;
    bee_norm_class cls = bee_norm_cp(cp, s->p->flags, &m);
    if (cls == BEE_NORM_DROP) return 0;
    if (cls == BEE_NORM_SEP && (s->p->flags & BEE_NORM_SKIP_SEP)) {
        s->sep_pending = 1; /* a word boundary, whatever comes next */
        return s->n_pend ? resolve_pending(s, 1) : 0;
    }
    int word = bee_norm_is_word(m);
    int boundary = s->at_start || s->sep_pending || !s->prev_word || !word;
    if (s->n_pend && resolve_pending(s, boundary)) return -1;
    s->at_start = s->sep_pending = 0;
    s->prev_word = word;
    char enc[4];
    size_t e = bee_utf8_encode(m, enc);
    if (window_reserve(s, s->wn + e)) return -1;
    size_t first = s->wn;
    for (size_t j = 0; j < e; j++) {
        s->ns[s->wn] = s->decoded;
        s->ne[s->wn] = s->decoded + k;
        s->bnd[s->wn] = j == 0 && boundary;
        s->wn++;
    }
    return bee_ac_scan(s->p->ac, &s->state, (const uint8_t *)enc, e, first, on_match, s);
}

/* ================================================================ emitting */

static void emit_range(bee_safety_stream *s, uint64_t from, uint64_t to, bee_str *out, int *err) {
    if (s->action == BEE_SAFETY_BLOCK || from >= to) return;
    if (bee_str_append(out, at(s, from), (size_t)(to - from))) *err = 1;
}

/* Masked spans become one mask string per character. */
static void emit_masked(bee_safety_stream *s, uint64_t from, uint64_t to, bee_str *out, int *err) {
    if (s->action == BEE_SAFETY_BLOCK) return;
    while (from < to) {
        uint32_t cp;
        const unsigned char *p = (const unsigned char *)at(s, from);
        int k = bee_utf8_decode(p, (size_t)(to - from), &cp);
        from += k > 0 ? (uint64_t)k : 1;
        if (bee_str_append(out, s->p->mask, s->p->mask_len)) *err = 1;
    }
}

/* Emits the original bytes [emitted, upto) and forgets them; the buffer is
 * compacted only between pushes so that one large push is never copied
 * around while it is being scanned. */
static int emit_until(bee_safety_stream *s, uint64_t upto, bee_str *out, int compact) {
    int err = 0;
    uint64_t x = s->emitted;
    size_t i = 0;
    while (x < upto) {
        while (i < s->n_masks && s->masks[i].end <= x) i++;
        if (i < s->n_masks && s->masks[i].start <= x) {
            uint64_t stop = s->masks[i].end < upto ? s->masks[i].end : upto;
            emit_masked(s, x, stop, out, &err);
            x = stop;
        } else {
            uint64_t stop = i < s->n_masks && s->masks[i].start < upto ? s->masks[i].start : upto;
            emit_range(s, x, stop, out, &err);
            x = stop;
        }
    }
    if (err) return bee_fail("safety stream: out of memory");
    size_t keep = 0;
    for (size_t j = 0; j < s->n_masks; j++)
        if (s->masks[j].end > upto) s->masks[keep++] = s->masks[j];
    s->n_masks = keep;
    if (s->external) {
        s->emitted = upto;
        return 0;
    }
    s->off += (size_t)(upto - s->emitted);
    s->emitted = upto;
    if (s->off == s->n) s->off = s->n = 0;
    else if (compact && s->off > s->n / 2) { /* amortised: moves fewer bytes than were consumed */
        memmove(s->buf, s->buf + s->off, s->n - s->off);
        s->n -= s->off;
        s->off = 0;
    }
    return 0;
}

/* Everything before the first normalised byte that may still start a match
 * (or before an undecided match) is final. */
static int flush(bee_safety_stream *s, bee_str *out, int compact) {
    uint64_t nend = s->nbase + s->wn;
    uint64_t hold_n = s->finished ? nend : nend - bee_ac_hold(s->p->ac, s->state);
    for (size_t i = 0; i < s->n_pend; i++)
        if (s->pend[i].start_n < hold_n) hold_n = s->pend[i].start_n;
    uint64_t upto = hold_n < nend ? s->ns[hold_n - s->nbase] : s->decoded;
    if (emit_until(s, upto, out, compact)) return -1;
    size_t drop = (size_t)(hold_n - s->nbase);
    if (drop && drop < s->wn) {
        memmove(s->ns, s->ns + drop, (s->wn - drop) * sizeof *s->ns);
        memmove(s->ne, s->ne + drop, (s->wn - drop) * sizeof *s->ne);
        memmove(s->bnd, s->bnd + drop, s->wn - drop);
    }
    s->wn -= drop;
    s->nbase = hold_n;
    return 0;
}

/* Decodes and feeds what has arrived; at the end of the stream a truncated
 * character is dropped byte by byte like any invalid byte. */
static int feed_available(bee_safety_stream *s, bee_str *out) {
    for (;;) {
        if (s->decoded >= s->received) return 0;
        const unsigned char *p = (const unsigned char *)at(s, s->decoded);
        uint32_t cp = p[0];
        int k = cp < 0x80 ? 1 : bee_utf8_decode(p, (size_t)(s->received - s->decoded), &cp);
        if (k == 0 && !s->finished) return 0;
        if (k <= 0) {
            s->decoded++;
            continue;
        }
        if (feed_char(s, cp, (size_t)k)) return -1;
        s->decoded += (uint64_t)k;
        if (s->wn >= s->flush_at) {
            if (flush(s, out, 0)) return -1;
            s->flush_at = s->wn + WINDOW_FLUSH;
        }
    }
}

int bee_safety_stream_push(bee_safety_stream *s, const char *data, size_t n, bee_str *out) {
    if (s->finished) return bee_fail("safety stream: push after finish");
    if (n == 0) return 0;
    if (s->received == s->emitted) { /* nothing held: scan the caller's bytes in place */
        s->external = 1;
        s->off = s->n = 0;
        s->view = data;
    } else {
        void *np = grow(s->buf, &s->cap, s->n + n, 1);
        if (!np) return -1;
        s->buf = np;
        memcpy(s->buf + s->n, data, n);
        s->n += n;
        s->view = s->buf + s->off;
    }
    s->view_base = s->emitted;
    s->received += n;
    if (feed_available(s, out) || flush(s, out, 1)) return -1;
    if (s->external) { /* keep the undecided tail: the caller's buffer goes away */
        size_t tail = (size_t)(s->received - s->emitted);
        if (tail) {
            void *np = grow(s->buf, &s->cap, tail, 1);
            if (!np) return -1;
            s->buf = np;
            memcpy(s->buf, at(s, s->emitted), tail);
        }
        s->off = 0;
        s->n = tail;
        s->external = 0;
    }
    s->view = s->buf ? s->buf + s->off : NULL;
    s->view_base = s->emitted;
    return 0;
}

int bee_safety_stream_finish(bee_safety_stream *s, bee_str *out) {
    if (s->finished) return 0;
    s->finished = 1;
    if (feed_available(s, out) || resolve_pending(s, 1)) return -1;
    return flush(s, out, 1);
}

/* ================================================================ one-shot */

int bee_safety_check(const bee_safety_policy *p, const char *text, size_t n, bee_safety_result *r) {
    memset(r, 0, sizeof *r);
    bee_safety_stream *s = NULL;
    if (bee_safety_stream_init(&s, p)) return -1;
    bee_str out = {0};
    if (bee_safety_stream_push(s, text, n, &out) || bee_safety_stream_finish(s, &out)) {
        bee_str_free(&out);
        bee_safety_stream_free(s);
        return -1;
    }
    r->action = s->action;
    r->matches = s->matches;
    r->n_matches = s->n_matches;
    s->matches = NULL;
    if (r->action != BEE_SAFETY_BLOCK) {
        r->len = out.n;
        r->text = bee_str_take(&out);
    }
    bee_str_free(&out);
    bee_safety_stream_free(s);
    return 0;
}

void bee_safety_result_free(bee_safety_result *r) {
    free(r->matches);
    free(r->text);
    memset(r, 0, sizeof *r);
}
