/* Training data loading and batch packing (see data.h). */
#include "train/data.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/dict.h"
#include "util/error.h"
#include "util/file.h"

#define IGNORE_INDEX (-100)

/* ================================================================ loading */

void bee_train_inst_free(bee_train_inst *x) {
    free(x->ids), free(x->subs), free(x->segs), free(x->ctx), free(x->seg_rel);
}

static int inst_from_enc(const bee_dict_enc *e, uint32_t max_len, bee_train_inst *x) {
    uint32_t n = e->ids.n < max_len ? (uint32_t)e->ids.n : max_len;
    size_t nr = (size_t)e->n_seg * (size_t)e->n_seg;
    memset(x, 0, sizeof *x);
    x->ids = malloc(n * sizeof *x->ids + 1), x->subs = malloc(n * sizeof *x->subs + 1);
    x->segs = malloc(n * sizeof *x->segs + 1), x->ctx = malloc(n + 1);
    x->seg_rel = malloc(nr * sizeof *x->seg_rel + 1);
    if (!x->ids || !x->subs || !x->segs || !x->ctx || !x->seg_rel) {
        bee_train_inst_free(x);
        return bee_fail("out of memory");
    }
    for (uint32_t i = 0; i < n; i++) {
        x->ids[i] = e->ids.v[i], x->subs[i] = e->subs.v[i], x->segs[i] = e->segs.v[i];
        x->ctx[i] = (uint8_t)(e->ctx.v[i] != 0);
    }
    memcpy(x->seg_rel, e->seg_rel, nr * sizeof *x->seg_rel);
    x->n = n, x->n_seg = (uint32_t)e->n_seg;
    return 0;
}

int bee_train_data_push(bee_train_data *d, const bee_train_inst *x) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        bee_train_inst *v = realloc(d->v, cap * sizeof *v);
        if (!v) return bee_fail("out of memory");
        d->v = v, d->cap = cap;
    }
    d->v[d->n++] = *x;
    d->n_tokens += x->n;
    return 0;
}

/* One line → a dict: parsed JSON, or {"<ans>": escaped text}. */
static json_t *line_dict(const char *s, size_t n, int is_text) {
    if (!is_text) {
        json_error_t err;
        json_t *j = json_loadb(s, n, 0, &err);
        if (!j) bee_fail("invalid JSON: %s", err.text);
        return j;
    }
    bee_str esc = {0};
    json_t *j = NULL;
    if (bee_text_escape(s, n, &esc) == 0) {
        j = json_object();
        if (j && json_object_set_new(j, "<ans>", json_stringn(esc.s, esc.n))) json_decref(j), j = NULL;
    }
    bee_str_free(&esc);
    if (!j) bee_fail("out of memory");
    return j;
}

static int load_line(const bee_tokenizer *t, const char *s, size_t n, int is_text, uint32_t max_len, bee_train_data *d) {
    json_t *j = line_dict(s, n, is_text);
    if (!j) return -1;
    bee_dict_enc e;
    memset(&e, 0, sizeof e);
    bee_train_inst x;
    int rc = bee_dict_encode(t, j, &e);
    if (rc == 0 && e.ids.n < 2) rc = bee_fail("encodes to fewer than 2 tokens");
    if (rc == 0) rc = inst_from_enc(&e, max_len, &x);
    if (rc == 0 && (rc = bee_train_data_push(d, &x))) bee_train_inst_free(&x);
    bee_dict_enc_free(&e);
    json_decref(j);
    return rc;
}

int bee_train_data_load(const bee_tokenizer *t, const char *path, int is_text, uint32_t max_len, bee_train_data *d) {
    memset(d, 0, sizeof *d);
    if (max_len < 2) return bee_fail("row length %u is too short", max_len);
    char *buf;
    size_t len;
    if (bee_read_file(path, &buf, &len)) return -1;
    size_t line = 0;
    int rc = 0;
    for (size_t p = 0; rc == 0 && p < len; line++) {
        const char *nl = memchr(buf + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - buf) : len, n = e - p;
        if (n && buf[p + n - 1] == '\r') n--;
        int blank = 1;
        for (size_t i = 0; i < n; i++) blank &= buf[p + i] == ' ' || buf[p + i] == '\t';
        if (!blank && load_line(t, buf + p, n, is_text, max_len, d)) rc = bee_fail_prefix("%s:%zu: ", path, line + 1);
        p = e + 1;
    }
    free(buf);
    if (rc == 0 && d->n == 0) rc = bee_fail("%s: no training examples", path);
    if (rc) bee_train_data_free(d);
    return rc;
}

void bee_train_data_free(bee_train_data *d) {
    for (size_t i = 0; i < d->n; i++) bee_train_inst_free(&d->v[i]);
    free(d->v);
    memset(d, 0, sizeof *d);
}

/* ================================================================ shuffle */

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bee_train_shuffle(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch) {
    uint64_t s = mix(seed * 0x9e3779b97f4a7c15ull + epoch + 1);
    for (size_t i = 0; i < n; i++) order[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        s = mix(s + 0x9e3779b97f4a7c15ull);
        size_t j = (size_t)(s % i);
        uint32_t tmp = order[i - 1];
        order[i - 1] = order[j], order[j] = tmp;
    }
}

/* ================================================================ packing */

/* Index of (id, sub) in the batch ext table, adding it if new. */
static int32_t ext_index(bee_train_batch *b, int32_t *ids, int32_t *subs, int32_t id, int32_t sub, size_t cap) {
    for (size_t j = 0; j < b->n_ext; j++)
        if (ids[j] == id && subs[j] == sub) return (int32_t)j;
    if (b->n_ext == cap) return -1;
    ids[b->n_ext] = id, subs[b->n_ext] = sub;
    return (int32_t)b->n_ext++;
}

/* Upstream pack_batch targets for one instance at [s, s + n) of row i. */
static void row_targets(bee_train_batch *b, int32_t *tgt, int32_t *ids, int32_t *subs, size_t cap, size_t base,
                        uint32_t n, const bee_special_ids *sp, uint32_t n_vocab) {
    const int32_t *in = b->inputs + base, *sb = b->inputs_sub + base;
    const uint8_t *ctx = b->context + base;
    for (uint32_t j = 0; j < n; j++) {
        int32_t idx = in[j];
        if (sb[j] > 0) idx = (int32_t)n_vocab + ext_index(b, ids, subs, in[j], sb[j], cap);
        if (j > 1 && !ctx[j - 1]) tgt[base + j - 1] = in[j] == sp->bos ? sp->eos : idx;
    }
    if (!ctx[n - 1]) tgt[base + n - 1] = sp->eos;
}

static void place(bee_train_batch *b, int32_t *tgt, const bee_train_inst *x, uint32_t i, uint32_t start, int32_t span,
                  size_t rel_off) {
    size_t base = (size_t)i * b->L + start;
    int32_t *in = (int32_t *)b->inputs, *sb = (int32_t *)b->inputs_sub, *nseg = (int32_t *)b->num_segments;
    int32_t *seg = (int32_t *)b->segment_ids, *off = (int32_t *)b->segment_rel_offset, *sp = (int32_t *)b->spans;
    uint8_t *ctx = (uint8_t *)b->context;
    for (uint32_t j = 0; j < x->n; j++) {
        in[base + j] = x->ids[j], sb[base + j] = x->subs[j], ctx[base + j] = x->ctx[j];
        nseg[base + j] = (int32_t)x->n_seg, seg[base + j] = x->segs[j];
        off[base + j] = (int32_t)rel_off, sp[base + j] = span;
        tgt[base + j] = IGNORE_INDEX;
    }
    memcpy((int32_t *)b->segment_rel + (size_t)i * b->n_seg_rel + rel_off, x->seg_rel,
           (size_t)x->n_seg * x->n_seg * sizeof(int32_t));
}

/* Which instances go where: row of each, and the segment_rel width needed. */
static size_t plan(const bee_train_data *d, const uint32_t *order, size_t n_order, size_t cur, uint32_t B, uint32_t L,
                   uint32_t *row_of, size_t *max_rel) {
    uint32_t row = 0, used = 0;
    size_t rel = 0, k = 0;
    *max_rel = 1;
    for (; cur + k < n_order; k++) {
        const bee_train_inst *x = &d->v[order[cur + k]];
        if (x->n > L) break;
        if (used + x->n > L) {
            if (++row == B) break;
            used = 0, rel = 0;
        }
        used += x->n, rel += (size_t)x->n_seg * x->n_seg;
        if (rel > *max_rel) *max_rel = rel;
        row_of[k] = row;
    }
    return k;
}

int bee_train_pack(const bee_train_data *d, const bee_tokenizer *t, const uint32_t *order, size_t n_order,
                   size_t *cursor, uint32_t B, uint32_t L, bee_packed_batch *out) {
    memset(out, 0, sizeof *out);
    size_t cur = *cursor, max_rel, cap_k = (size_t)B * L;
    if (cur >= n_order) return bee_fail("no training examples left to pack");
    uint32_t *row_of = malloc(cap_k * sizeof *row_of);
    if (!row_of) return bee_fail("out of memory");
    size_t k = plan(d, order, n_order, cur, B, L, row_of, &max_rel), BL = (size_t)B * L;
    /* int32 arrays: 8 per token, segment_rel, 2 ext arrays of up to BL + 1 entries, length */
    out->mem = calloc(8 * BL + (size_t)B * max_rel + 2 * (BL + 1) + B, sizeof(int32_t));
    out->ctx = calloc(BL, 1);
    if (!out->mem || !out->ctx) {
        free(row_of);
        bee_packed_batch_free(out);
        return bee_fail("out of memory");
    }
    bee_train_batch *b = &out->b;
    int32_t *m = out->mem, *tgt = m + 7 * BL, *ext_ids = m + 8 * BL + (size_t)B * max_rel, *ext_sub = ext_ids + BL + 1;
    int32_t *len = ext_sub + BL + 1;
    *b = (bee_train_batch){B, L, m, m + BL, len, out->ctx, m + 2 * BL, m + 3 * BL, m + 4 * BL, m + 5 * BL, m + 6 * BL,
                           m + 8 * BL, max_rel, ext_ids, ext_sub, 0, tgt};
    for (size_t x = 0; x < BL; x++) tgt[x] = IGNORE_INDEX;
    const bee_special_ids *sp = bee_tokenizer_special(t);
    uint32_t used = 0, row = 0;
    int32_t span = 0;
    size_t rel = 0;
    for (size_t q = 0; q < k; q++) {
        const bee_train_inst *x = &d->v[order[cur + q]];
        if (row_of[q] != row) row = row_of[q], used = 0, span = 0, rel = 0;
        place(b, tgt, x, row, used, span, rel);
        row_targets(b, tgt, ext_ids, ext_sub, BL + 1, (size_t)row * L + used, x->n, sp, bee_tokenizer_n_vocab(t));
        used += x->n, span++, rel += (size_t)x->n_seg * x->n_seg;
        len[row] = (int32_t)used;
        out->n_tokens += x->n;
    }
    if (b->n_ext == 0) ext_ids[0] = 0, ext_sub[0] = 1, b->n_ext = 1; /* upstream's placeholder entry */
    free(row_of);
    if (k == 0) {
        bee_packed_batch_free(out);
        return bee_fail("example %u (%u tokens) does not fit a row of %u", order[cur], d->v[order[cur]].n, L);
    }
    *cursor = cur + k;
    return 0;
}

void bee_packed_batch_free(bee_packed_batch *p) {
    free(p->mem);
    free(p->ctx);
    memset(p, 0, sizeof *p);
}
