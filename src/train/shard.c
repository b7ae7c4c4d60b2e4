/* Token shards (format in shard.h). Values are encoded byte by byte so files
 * are the same on any host; every field is bounds-checked on reading. */
#include "train/shard.h"

#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

static const char k_magic[8] = {'B', 'E', 'E', 'S', 'H', 'A', 'R', 'D'};

/* Guards against absurd counts in a corrupt header before allocating. */
#define MAX_INST_TOKENS (1u << 24)
#define MAX_INST_SEGS (1u << 12)

uint64_t bee_vocab_fingerprint(const bee_tokenizer *t) {
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < bee_tokenizer_n_vocab(t); i++) {
        size_t len;
        const char *s = bee_tokenizer_text(t, (int32_t)i, &len);
        for (size_t k = 0; k < len; k++) h = (h ^ (uint8_t)s[k]) * 1099511628211ull;
        h = (h ^ (uint64_t)len) * 1099511628211ull; /* token boundaries matter */
    }
    return h;
}

/* ================================================================ writing */

static int put_le(bee_str *s, uint64_t v, int n) {
    char b[8];
    for (int i = 0; i < n; i++) b[i] = (char)(v >> (8 * i));
    return bee_str_append(s, b, (size_t)n);
}

static int put_i32s(bee_str *s, const int32_t *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (put_le(s, (uint32_t)v[i], 4)) return -1;
    return 0;
}

static int put_inst(bee_str *s, const bee_train_inst *x) {
    size_t nr = (size_t)x->n_seg * x->n_seg;
    return put_le(s, x->n, 4) || put_le(s, x->n_seg, 4) || put_i32s(s, x->ids, x->n) || put_i32s(s, x->subs, x->n) ||
                   put_i32s(s, x->segs, x->n) || bee_str_append(s, (const char *)x->ctx, x->n) ||
                   put_i32s(s, x->seg_rel, nr)
               ? -1
               : 0;
}

int bee_shard_write(const char *path, const bee_tokenizer *t, const bee_train_data *d) {
    bee_str s = {0};
    int rc = bee_str_append(&s, k_magic, 8) || put_le(&s, BEE_SHARD_VERSION, 4) ||
                     put_le(&s, bee_tokenizer_n_vocab(t), 4) || put_le(&s, bee_vocab_fingerprint(t), 8) ||
                     put_le(&s, d->n, 8) || put_le(&s, d->n_tokens, 8)
                 ? -1
                 : 0;
    bee_afile *f = rc ? NULL : bee_afile_open(path);
    if (!f) rc = -1;
    for (size_t i = 0; rc == 0 && i < d->n; i++) {
        rc = put_inst(&s, &d->v[i]);
        /* flush in pieces so a large shard never sits in memory twice */
        if (rc == 0 && (s.n >= (1u << 20) || i + 1 == d->n)) {
            rc = bee_afile_write(f, s.s, s.n);
            s.n = 0;
        }
    }
    if (rc == 0 && d->n == 0) rc = bee_afile_write(f, s.s, s.n);
    if (rc == 0) rc = bee_afile_commit(f);
    else bee_afile_abort(f);
    bee_str_free(&s);
    return rc;
}

/* ================================================================ reading */

typedef struct {
    const uint8_t *p;
    size_t size, off;
    const char *path;
} cursor;

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int need(const cursor *c, uint64_t n, const char *what) {
    if (n > c->size - c->off)
        return bee_fail("%s: offset %zu: truncated %s (%llu bytes needed, %zu left)", c->path, c->off, what,
                        (unsigned long long)n, c->size - c->off);
    return 0;
}

static int rd(cursor *c, int n, const char *what, uint64_t *v) {
    if (need(c, (uint64_t)n, what)) return -1;
    *v = le(c->p + c->off, n);
    c->off += (size_t)n;
    return 0;
}

/* n int32 values, each checked against [lo, hi). */
static int rd_i32s(cursor *c, int32_t *v, size_t n, int64_t lo, int64_t hi, const char *what) {
    if (need(c, (uint64_t)n * 4, what)) return -1;
    for (size_t i = 0; i < n; i++) {
        int64_t x = (int32_t)(uint32_t)le(c->p + c->off, 4);
        if (x < lo || x >= hi)
            return bee_fail("%s: offset %zu: %s[%zu] = %lld out of range [%lld, %lld)", c->path, c->off, what, i,
                            (long long)x, (long long)lo, (long long)hi);
        v[i] = (int32_t)x;
        c->off += 4;
    }
    return 0;
}

static int rd_header(cursor *c, const bee_tokenizer *t, uint64_t *n_inst) {
    if (need(c, BEE_SHARD_HEADER, "header")) return -1;
    if (memcmp(c->p, k_magic, 8) != 0) return bee_fail("%s: offset 0: not a bee token shard (bad magic)", c->path);
    c->off = 8;
    uint64_t ver = 0, nv = 0, fp = 0, ntok = 0; /* the header length was checked above */
    rd(c, 4, "version", &ver), rd(c, 4, "n_vocab", &nv), rd(c, 8, "fingerprint", &fp);
    rd(c, 8, "instance count", n_inst), rd(c, 8, "token count", &ntok);
    if (ver != BEE_SHARD_VERSION)
        return bee_fail("%s: offset 8: shard version %llu, this bee reads %u", c->path, (unsigned long long)ver,
                        BEE_SHARD_VERSION);
    if (nv != bee_tokenizer_n_vocab(t) || fp != bee_vocab_fingerprint(t))
        return bee_fail("%s: offset 12: made with another vocabulary (%llu tokens) than this model's (%u tokens)",
                        c->path, (unsigned long long)nv, bee_tokenizer_n_vocab(t));
    /* every instance takes at least 8 + 2 * 13 + 4 bytes */
    if (*n_inst > (c->size - c->off) / 38)
        return bee_fail("%s: offset 24: %llu instances cannot fit in %zu bytes", c->path, (unsigned long long)*n_inst,
                        c->size);
    return 0;
}

static int rd_inst(cursor *c, const bee_tokenizer *t, uint32_t max_len, bee_train_inst *x) {
    size_t at = c->off;
    uint64_t n, ns;
    if (rd(c, 4, "token count", &n) || rd(c, 4, "segment count", &ns)) return -1;
    if (n < 2 || n > MAX_INST_TOKENS || ns < 1 || ns > MAX_INST_SEGS)
        return bee_fail("%s: offset %zu: bad instance sizes (%llu tokens, %llu segments)", c->path, at,
                        (unsigned long long)n, (unsigned long long)ns);
    if (need(c, n * 13 + ns * ns * 4, "instance")) return -1;
    memset(x, 0, sizeof *x);
    x->ids = malloc(n * 4), x->subs = malloc(n * 4), x->segs = malloc(n * 4), x->ctx = malloc(n);
    x->seg_rel = malloc(ns * ns * 4);
    if (!x->ids || !x->subs || !x->segs || !x->ctx || !x->seg_rel) {
        bee_train_inst_free(x);
        return bee_fail("out of memory");
    }
    int rc = rd_i32s(c, x->ids, n, 0, bee_tokenizer_n_vocab(t), "ids") ||
                     rd_i32s(c, x->subs, n, 0, INT32_MAX, "subs") ||
                     rd_i32s(c, x->segs, n, 0, (int64_t)ns, "segment ids")
                 ? -1
                 : 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (c->p[c->off + i] > 1) rc = bee_fail("%s: offset %zu: context flag %u is not 0 or 1", c->path, c->off + i, c->p[c->off + i]);
        x->ctx[i] = c->p[c->off + i];
    }
    c->off += rc ? 0 : n;
    if (rc == 0) rc = rd_i32s(c, x->seg_rel, ns * ns, 0, INT32_MAX, "segment_rel");
    if (rc) {
        bee_train_inst_free(x);
        return -1;
    }
    x->n = n < max_len ? (uint32_t)n : max_len, x->n_seg = (uint32_t)ns;
    return 0;
}

int bee_shard_parse(const uint8_t *data, size_t size, const char *name, const bee_tokenizer *t, uint32_t max_len,
                    bee_train_data *d) {
    if (max_len < 2) return bee_fail("row length %u is too short", max_len);
    cursor c = {data, size, 0, name};
    uint64_t n_inst = 0;
    size_t n0 = d->n;
    int rc = rd_header(&c, t, &n_inst);
    for (uint64_t i = 0; rc == 0 && i < n_inst; i++) {
        bee_train_inst x;
        rc = rd_inst(&c, t, max_len, &x);
        if (rc == 0 && (rc = bee_train_data_push(d, &x))) bee_train_inst_free(&x);
    }
    if (rc == 0 && c.off != c.size)
        rc = bee_fail("%s: offset %zu: %zu bytes after the last instance", name, c.off, c.size - c.off);
    if (rc == 0 && n_inst == 0) rc = bee_fail("%s: no training examples", name);
    if (rc) /* leave d as it was */
        while (d->n > n0) {
            d->n--;
            d->n_tokens -= d->v[d->n].n;
            bee_train_inst_free(&d->v[d->n]);
        }
    return rc;
}

int bee_shard_load(const char *path, const bee_tokenizer *t, uint32_t max_len, bee_train_data *d) {
    if (max_len < 2) return bee_fail("row length %u is too short", max_len);
    bee_mmap m;
    if (bee_mmap_open(path, &m)) return -1;
    int rc = bee_shard_parse(m.data, m.size, path, t, max_len, d);
    bee_mmap_close(&m);
    return rc;
}
