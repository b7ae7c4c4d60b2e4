/* fp32 reference forward pass (SPEC §3, §7) over a batch of sequences, each
 * with its own KV cache. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/panel.h"
#include "kernels/vec.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/lora.h"
#include "util/error.h"
#include "util/types.h"

/* ================================================================ sequences */

static size_t row_width(const bee_model *m) { return (size_t)m->hp.n_heads * m->hp.dim_head; }

/* Bytes of one cached row of k or v. */
static size_t kv_row_bytes(const bee_model *m, uint32_t type) { return bee_type_nbytes(type, row_width(m)); }

/* ================================================================ embedding */

void bee_embed(const bee_model *m, int32_t id, int32_t sub, float *out) {
    uint32_t d = m->hp.dim, half = d / 2;
    float *e = out;
    const float *row = bee_weight_row(&m->tok_embd, (uint64_t)id, e);
    float sd = sqrtf((float)d);
    float tmp[half ? 2 * half : 1];
    for (uint32_t i = 0; i < d; i++) tmp[i] = row[i] / sd;
    float p = (float)sub * m->hp.rope_scale;
    for (uint32_t i = 0; i < half; i++) {
        /* subscript 0 (almost every token): cosf(±0) = 1 and sinf(±0) = ±0 exactly */
        float th = p * m->inv_freq[i], c = th == 0.0f ? 1.0f : cosf(th), s = th == 0.0f ? th : sinf(th);
        out[i] = tmp[i] * c + (-tmp[i + half]) * s;
        out[i + half] = tmp[i + half] * c + tmp[i] * s;
    }
}

/* ================================================================ bias and mask */

int32_t bee_position_bucket(int32_t rel, uint32_t n_buckets, uint32_t max_distance) {
    int32_t half = (int32_t)n_buckets / 2, exact = half / 2;
    int32_t base = rel > 0 ? half : 0;
    int64_t a = rel < 0 ? -(int64_t)rel : rel;
    if (a < exact) return base + (int32_t)a;
    double v = log((double)a / exact) / log((double)max_distance / exact) * (half - exact);
    int64_t b = exact + (int64_t)v;
    return base + (int32_t)(b < half - 1 ? b : half - 1);
}

static int mask_allowed(const bee_token *q, const bee_token *k) {
    return (k->ctx || (!q->ctx && k->pos <= q->pos)) && (q->sid == 0 || q->sid == k->sid) && k->nseg != 0;
}

/* Segment bucket b (SPEC §3.8 step 1); indices were validated by check_keys. */
static int32_t segment_bucket(const bee_seq *s, const bee_token *q, const bee_token *k) {
    if (q->sid != k->sid) return 1;
    return s->seg_rel[(int64_t)q->off + (int64_t)q->seg * q->nseg + k->seg];
}

static int32_t position_row(const bee_model *m, int32_t rel) {
    int32_t half = (int32_t)m->hp.n_buckets / 2;
    uint32_t a = rel < 0 ? (uint32_t)-(int64_t)rel : (uint32_t)rel;
    int32_t base = rel > 0 ? half : 0;
    if (a < m->n_pos_tab) return base + m->pos_tab[a];
    return bee_position_bucket(rel, m->hp.n_buckets, m->hp.max_distance);
}

/* Row of the bias table for (q, k), or -1 when k is masked for q. */
static int32_t bias_row(const bee_model *m, const bee_seq *s, const bee_token *q, const bee_token *k) {
    if (!mask_allowed(q, k)) return -1;
    int32_t b = segment_bucket(s, q, k);
    return b ? b - 1 + (int32_t)m->hp.n_buckets : position_row(m, k->pos - q->pos);
}

/* Every segment_rel lookup the new queries will make is in bounds. */
static int check_keys(const bee_seq *s, uint32_t n_old) {
    for (uint32_t i = n_old; i < s->n; i++) {
        const bee_token *q = &s->keys[i];
        for (uint32_t j = 0; j < s->n; j++) {
            const bee_token *k = &s->keys[j];
            if (q->sid != k->sid) continue;
            int64_t idx = (int64_t)q->off + (int64_t)q->seg * q->nseg + k->seg;
            if (q->seg < 0 || k->seg < 0 || q->off < 0 || idx < 0 || (size_t)idx >= s->n_seg_rel)
                return bee_fail("token %u: segment_rel index %lld out of range (segments %d/%d, nseg %d, %zu entries)",
                                i, (long long)idx, q->seg, k->seg, q->nseg, s->n_seg_rel);
        }
    }
    return 0;
}

static void trace_bias(const bee_model *m, const bee_seq *s, uint32_t n_old, bee_trace *tr) {
    size_t n_q = tr->n_q, nk = s->n;
    for (size_t i = 0; i < n_q; i++) {
        const bee_token *q = &s->keys[n_old + i];
        for (size_t j = 0; j < nk; j++) {
            const bee_token *k = &s->keys[j];
            int32_t b = segment_bucket(s, q, k);
            int32_t row = b ? b - 1 + (int32_t)m->hp.n_buckets : position_row(m, k->pos - q->pos);
            tr->rel_bucket[i * nk + j] = b;
            tr->mask[i * nk + j] = (uint8_t)mask_allowed(q, k);
            for (uint32_t h = 0; h < m->hp.n_heads; h++)
                tr->pos_bias[((size_t)h * n_q + i) * nk + j] = m->pos_bias[(size_t)row * m->hp.n_heads + h];
        }
    }
}

/* ================================================================ attention */

typedef struct {
    const bee_model *m;
    bee_seq *const *seqs;
    const size_t *n_tok;
    size_t n_seq, total;
    uint32_t *n_old;   // (n_seq) cache length before this call
    uint32_t max_k;    /* longest key buffer in the batch */
    float *scores;     // (n_threads, n_heads, max_k) the score rows of one query per thread
    int32_t *rows;     // (n_threads, 2, max_k) bias-table row and index of each visible key of the current query
    int32_t *qrows;    // (total, 2, max_k) the same per query, kept for every layer (NULL: too big, per layer)
    uint32_t *qn;      // (total) visible keys of each query in qrows
    float *qbias;      // (total, n_heads, max_k) the bias of each visible key per head, with qrows
    int qrows_ready;   /* qrows filled by the first attention layer */
    uint32_t *q_seq;   // (total) sequence of each new token
    const bee_attn_kernels *attn; /* scores and weighted values over the cache's type */
    const bee_eltwise_kernels *elt;
} fwd_ctx;

/* Lists the keys query qi may see: their bias-table rows (from the logical
 * keys) and their physical rows in the pool (what the kernels read);
 * returns how many. */
static uint32_t visible_keys(const bee_model *m, const bee_seq *s, uint32_t qi, int32_t *row, int32_t *key) {
    const bee_token *qt = &s->keys[qi];
    uint32_t n = 0;
    for (uint32_t j = 0; j < s->n; j++) {
        int32_t b = bias_row(m, s, qt, &s->keys[j]);
        if (b >= 0) row[n] = b, key[n++] = (int32_t)bee_seq_row(s, j);
    }
    return n;
}

/* Largest of x[0..n) ignoring NaNs (-inf when none), as the sequential
 * `if (x > mx) mx = x` gives it, in 16 independent lanes (vectorizable). */
static float max_scores(const float *x, uint32_t n) {
    float l[16];
    for (int k = 0; k < 16; k++) l[k] = -INFINITY;
    uint32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) l[k] = x[i + (uint32_t)k] > l[k] ? x[i + (uint32_t)k] : l[k];
    for (; i < n; i++) l[0] = x[i] > l[0] ? x[i] : l[0];
    float mx = -INFINITY;
    for (int k = 0; k < 16; k++) mx = l[k] > mx ? l[k] : mx;
    return mx;
}

/* One query (batch row t) against its sequence's whole cache: the L x L
 * score matrix is never stored, only this query's score row per head, over
 * the keys the mask lets it see (listed once, shared by the heads and, when
 * they fit, by the layers). Each cached row is read once for all heads. */
static void attend_one(const fwd_ctx *c, const bee_seq *s, uint32_t l, size_t t, uint32_t qi, const float *q,
                       float *out, int ith) {
    const bee_model *m = c->m;
    uint32_t H = m->hp.n_heads, dh = m->hp.dim_head, n;
    size_t rb = kv_row_bytes(m, s->kv_type), hb = bee_type_nbytes(s->kv_type, dh), ld = c->max_k;
    float sd = sqrtf((float)dh), *sc = c->scores + (size_t)ith * H * ld, *bias = NULL;
    int32_t *row, *key;
    if (c->qrows) {
        row = c->qrows + t * 2 * ld, key = row + ld, bias = c->qbias + t * H * ld;
        if (!c->qrows_ready) {
            n = c->qn[t] = visible_keys(m, s, qi, row, key);
            for (uint32_t h = 0; h < H; h++)
                for (uint32_t i = 0; i < n; i++) bias[h * ld + i] = m->pos_bias[(size_t)row[i] * H + h];
        }
        n = c->qn[t];
    } else {
        row = c->rows + (size_t)ith * 2 * ld, key = row + ld;
        n = visible_keys(m, s, qi, row, key);
    }
    if (n == 0) { /* fully masked query (padding): zero output, as upstream */
        memset(out, 0, (size_t)H * dh * sizeof *out);
        return;
    }
    const uint8_t *K = s->pool->k[l], *V = s->pool->v[l];
    c->attn->dots_heads(n, H, dh, q, K, rb, hb, key, sc, ld);
    for (uint32_t h = 0; h < H; h++) {
        float *sh = sc + h * ld;
        if (bias) { /* contiguous: the compiler vectorizes it */
            const float *bh = bias + h * ld;
            for (uint32_t i = 0; i < n; i++) sh[i] = sh[i] / sd + bh[i];
        } else {
            for (uint32_t i = 0; i < n; i++) sh[i] = sh[i] / sd + m->pos_bias[(size_t)row[i] * H + h];
        }
        float sum = c->elt->exp_sum(sh, n, max_scores(sh, n));
        for (uint32_t i = 0; i < n; i++) sh[i] /= sum;
    }
    c->attn->wsum_heads(n, H, dh, sc, ld, V, rb, hb, key, out);
}

typedef struct {
    const fwd_ctx *c;
    uint32_t l;
    const float *q;
    float *out;
    const size_t *t0; // (n_seq) first row of each sequence in the batch
    const uint8_t *tiled; // (n_seq) sequences already done by the tiled path
} attn_job;

static void attend_range(void *ctx, size_t begin, size_t end, int ith) {
    const attn_job *j = ctx;
    size_t w = row_width(j->c->m);
    for (size_t t = begin; t < end; t++) {
        uint32_t i = j->c->q_seq[t];
        if (j->tiled[i]) continue;
        const bee_seq *s = j->c->seqs[i];
        uint32_t qi = j->c->n_old[i] + (uint32_t)(t - j->t0[i]);
        attend_one(j->c, s, j->l, t, qi, j->q + t * w, j->out + t * w, ith);
    }
}

/* ---------------------------------------------------------------- tiled prefill
 * Many new queries of one sequence: each head's keys are packed once into
 * panels of 16, and tiles of 12 queries get their scores 16 keys per
 * instruction, then their outputs 4 queries per value row loaded. Masked
 * keys get probability 0. The score rows of a tile (12 x keys) are the
 * largest thing stored. */

enum { QT = 12 };

typedef struct {
    const fwd_ctx *c;
    const bee_seq *s;
    uint32_t l, n_old;
    const float *q;  // (n_new, w) this sequence's queries
    float *out;      // (n_new, w)
    float *kp;       // (H, n_pan * 16, dh) packed keys
    size_t n_pan;
    const int32_t *phys; // (n_k) pool row of each key, NULL when they are rows 0 .. n_k - 1
    float *scratch;  // (n_threads, QT, 2 * n_k) scores and probabilities
    int32_t *rows;   // (n_threads, QT, n_k) bias row per (query, key)
} tiled_job;

/* Packs block by block: a block's rows are contiguous in the pool and 64 is
 * a multiple of the 16-key panel, so the panels are the ones contiguous keys
 * would give (only the last one zero-padded). */
static void pack_heads(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const tiled_job *j = ctx;
    const bee_model *m = j->c->m;
    const bee_seq *s = j->s;
    size_t dh = m->hp.dim_head, rb = kv_row_bytes(m, s->kv_type), hb = bee_type_nbytes(s->kv_type, dh);
    const uint8_t *K = s->pool->k[j->l];
    for (size_t h = begin; h < end; h++)
        for (uint32_t b = 0; b * BEE_KV_BLOCK < s->n; b++) {
            uint32_t rows = s->n - b * BEE_KV_BLOCK < BEE_KV_BLOCK ? s->n - b * BEE_KV_BLOCK : BEE_KV_BLOCK;
            bee_attn_pack_keys(s->kv_type, rows, dh, K + (size_t)s->blocks[b] * BEE_KV_BLOCK * rb + h * hb, rb,
                               j->kp + (h * j->n_pan + (size_t)b * (BEE_KV_BLOCK / 16)) * 16 * dh);
        }
}

/* Scores of one head for the tile -> probabilities P (T, n_k). */
static void tile_softmax(const tiled_job *j, size_t h, size_t T, const int32_t *rows, float *S, float *P) {
    const bee_model *m = j->c->m;
    size_t nk = j->s->n, H = m->hp.n_heads;
    float sd = sqrtf((float)m->hp.dim_head);
    for (size_t t = 0; t < T; t++) {
        float *s = S + t * nk, *p = P + t * nk, mx = -INFINITY;
        const int32_t *r = rows + t * nk;
        for (size_t k = 0; k < nk; k++) {
            s[k] = r[k] < 0 ? -INFINITY : s[k] / sd + m->pos_bias[(size_t)r[k] * H + h];
            if (s[k] > mx) mx = s[k];
        }
        if (mx == -INFINITY) { /* fully masked query (padding): zero output, as upstream */
            memset(p, 0, nk * sizeof *p);
            continue;
        }
        float sum = j->c->elt->exp_sum(s, nk, mx);
        for (size_t k = 0; k < nk; k++) p[k] = r[k] < 0 ? 0.0f : s[k] / sum;
    }
}

static void tiled_range(void *ctx, size_t begin, size_t end, int ith) {
    const tiled_job *j = ctx;
    const bee_model *m = j->c->m;
    const bee_attn_tile_kernels *tk = bee_attn_tile_get(j->s->kv_type);
    size_t nk = j->s->n, w = row_width(m), dh = m->hp.dim_head, H = m->hp.n_heads, n_new = j->s->n - j->n_old;
    size_t rb = kv_row_bytes(m, j->s->kv_type), hb = bee_type_nbytes(j->s->kv_type, dh);
    float *S = j->scratch + (size_t)ith * QT * 2 * nk, *P = S + QT * nk;
    int32_t *rows = j->rows + (size_t)ith * QT * nk;
    for (size_t tile = begin; tile < end; tile++) {
        size_t t0 = tile * QT, T = n_new - t0 < QT ? n_new - t0 : QT;
        for (size_t t = 0; t < T; t++)
            for (size_t k = 0; k < nk; k++) rows[t * nk + k] = bias_row(m, j->s, &j->s->keys[j->n_old + t0 + t], &j->s->keys[k]);
        for (size_t h = 0; h < H; h++) {
            tk->qk(T, nk, dh, j->q + t0 * w + h * dh, w, j->kp + h * j->n_pan * 16 * dh, S, nk);
            tile_softmax(j, h, T, rows, S, P);
            for (size_t t = 0; t < T; t += 4)
                tk->pv(T - t < 4 ? T - t : 4, nk, dh, P + t * nk, nk, (const uint8_t *)j->s->pool->v[j->l] + h * hb, rb,
                       j->phys, j->out + (t0 + t) * w + h * dh, w);
        }
    }
}

/* The pool row of each key, or NULL (no list needed) when the blocks are
 * 0, 1, 2, ... as in a private pool; *out_rc = -1 when out of memory. */
static int32_t *physical_rows(const bee_seq *s, int *out_rc) {
    uint32_t b = 0;
    while (b < s->n_blk && s->blocks[b] == b) b++;
    *out_rc = 0;
    if ((uint64_t)b * BEE_KV_BLOCK >= s->n) return NULL;
    int32_t *r = malloc(s->n * sizeof *r);
    if (!r) {
        *out_rc = bee_fail("out of memory");
        return NULL;
    }
    for (uint32_t i = 0; i < s->n; i++) r[i] = (int32_t)bee_seq_row(s, i);
    return r;
}

static int attention_tiled(const fwd_ctx *c, const bee_seq *s, uint32_t l, uint32_t n_old, const float *q, float *out) {
    const bee_model *m = c->m;
    size_t nk = s->n, n_pan = (nk + 15) / 16, nth = (size_t)bee_pool_size(m->pool), n_new = nk - n_old;
    int rc;
    int32_t *phys = physical_rows(s, &rc);
    tiled_job j = {c, s, l, n_old, q, out, NULL, n_pan, phys, NULL, NULL};
    j.kp = malloc(m->hp.n_heads * n_pan * 16 * m->hp.dim_head * sizeof *j.kp);
    j.scratch = malloc(nth * QT * 2 * nk * sizeof *j.scratch);
    j.rows = malloc(nth * QT * nk * sizeof *j.rows);
    if (rc == 0 && !(j.kp && j.scratch && j.rows)) rc = bee_fail("out of memory");
    if (rc == 0) {
        bee_pool_for(m->pool, m->hp.n_heads, 1, pack_heads, &j);
        bee_pool_for(m->pool, (n_new + QT - 1) / QT, 1, tiled_range, &j);
    }
    free(j.kp), free(j.scratch), free(j.rows), free(phys);
    return rc;
}

/* Tiled prefill pays for packing the keys once per head: worth it from a
 * few dozen new queries. BEE_ATTN=simple keeps the per-query path (tests). */
static int use_tiled(size_t n_new) {
    const char *e = getenv("BEE_ATTN");
    return n_new >= 32 && !(e && strcmp(e, "simple") == 0);
}

/* ---------------------------------------------------------------- driver */

/* q, k, v: (total, w). Appends k, v to the caches, then attends: long runs of
 * new queries tile by tile, the rest one query per thread task. */
static int attention(const fwd_ctx *c, uint32_t l, const float *q, const float *k, const float *v, float *out) {
    size_t w = row_width(c->m), t0 = 0;
    size_t *starts = malloc((c->n_seq + 1) * sizeof *starts);
    uint8_t *tiled = calloc(c->n_seq + 1, 1);
    if (!starts || !tiled) return free(starts), free(tiled), bee_fail("out of memory");
    for (size_t i = 0; i < c->n_seq; i++) {
        bee_seq *s = c->seqs[i];
        size_t n = c->n_tok[i], rb = kv_row_bytes(c->m, s->kv_type);
        for (size_t t = 0; t < n; t++) {
            size_t row = bee_seq_row(s, c->n_old[i] + (uint32_t)t);
            bee_quantize_row(s->kv_type, k + (t0 + t) * w, (uint8_t *)s->pool->k[l] + row * rb, w);
            bee_quantize_row(s->kv_type, v + (t0 + t) * w, (uint8_t *)s->pool->v[l] + row * rb, w);
        }
        starts[i] = t0;
        tiled[i] = (uint8_t)use_tiled(n);
        t0 += n;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->n_seq; i++)
        if (tiled[i]) rc = attention_tiled(c, c->seqs[i], l, c->n_old[i], q + starts[i] * w, out + starts[i] * w);
    attn_job j = {c, l, q, out, starts, tiled};
    if (rc == 0) bee_pool_for(c->m->pool, c->total, 1, attend_range, &j);
    if (rc == 0) ((fwd_ctx *)c)->qrows_ready = 1;
    free(starts);
    free(tiled);
    return rc;
}

/* ================================================================ blocks */

typedef struct {
    float *h, *a, *q, *k, *v, *o, *g, *u; /* scratch, (total, width) */
} fwd_bufs;

/* All new tokens of the batch through n weight matrices of one width, on the
 * model's threads. A prompt (a sequence with BEE_PANEL_SPLIT_MIN new tokens
 * or more) may take the AMX path for float weights, a decode token never: runs
 * of sequences of one kind go through one call each, so a token's
 * arithmetic depends on its own request only, not on what shares the batch. */
static int linear_multi(const fwd_ctx *c, size_t n, float *const *y, const size_t *ldy, const float *x,
                        const bee_weight *const *w, const float *div) {
    if (!bee_panel_amx_type(w[0]->type) || w[0]->layout != BEE_LAYOUT_PANEL)
        return bee_linear_multi(c->m->pool, n, y, ldy, x, c->total, w, div);
    size_t cols = w[0]->cols, t0 = 0;
    for (size_t i = 0; i < c->n_seq;) {
        int prompt = c->n_tok[i] >= BEE_PANEL_SPLIT_MIN;
        size_t t1 = t0;
        for (; i < c->n_seq && (c->n_tok[i] >= BEE_PANEL_SPLIT_MIN) == prompt; i++) t1 += c->n_tok[i];
        float *ys[BEE_LINEAR_MAX];
        for (size_t k = 0; k < n; k++) ys[k] = y[k] + t0 * ldy[k];
        if (t1 > t0 && bee_linear_multi_ex(c->m->pool, n, ys, ldy, x + t0 * cols, t1 - t0, w, div,
                                           prompt ? BEE_LINEAR_PROMPT : 0))
            return -1;
        t0 = t1;
    }
    return 0;
}

static int linear(const fwd_ctx *c, float *y, size_t ldy, const float *x, const bee_weight *w, float div) {
    return linear_multi(c, 1, &y, &ldy, x, &w, &div);
}

/* ---------------------------------------------------------------- element-wise, split by token */

enum { ROW_NORM, ROW_RESIDUAL, ROW_GELU_MUL };

typedef struct {
    const fwd_ctx *c;
    int op;
    float *y;         /* norm: output; residual: h; gelu: g */
    const float *x;   /* norm: input; residual: block output; gelu: u */
    const float *w;   /* norm weights */
    size_t width;
} row_job;

static void rows_range(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const row_job *j = ctx;
    const bee_model *m = j->c->m;
    size_t n = j->width;
    for (size_t t = begin; t < end; t++) {
        float *y = j->y + t * n;
        const float *x = j->x + t * n;
        if (j->op == ROW_NORM) j->c->elt->rmsnorm(y, x, j->w, n, m->hp.eps);
        else if (j->op == ROW_GELU_MUL) j->c->elt->gelu_mul(y, x, n);
        else
            for (size_t i = 0; i < n; i++) y[i] = (y[i] + x[i]) / m->hp.residual_scale;
    }
}

/* Below this many elements a pass runs on the calling thread: waking the
 * workers would cost more than the pass (a decode step of a few streams). */
enum { ROWS_INLINE = 16384 };

static void rows_apply(const fwd_ctx *c, int op, float *y, const float *x, const float *w, size_t width) {
    row_job j = {c, op, y, x, w, width};
    if (c->total * width <= ROWS_INLINE) rows_range(&j, 0, c->total, 0);
    else bee_pool_for(c->m->pool, c->total, 4, rows_range, &j);
}

/* ---------------------------------------------------------------- blocks */

static int attention_block(const fwd_ctx *c, const bee_layer *L, uint32_t cache_l, fwd_bufs *b) {
    const bee_model *m = c->m;
    size_t d = m->hp.dim, w = row_width(m);
    rows_apply(c, ROW_NORM, b->a, b->h, L->att_norm, d);
    float sd = sqrtf((float)d), sw = sqrtf((float)w);
    {
        float *ys[3] = {b->q, b->k, b->v}, divs[3] = {sd, sd, sd};
        size_t ld[3] = {w, w, w};
        const bee_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
        if (linear_multi(c, 3, ys, ld, b->a, ws, divs)) return -1;
    }
    if (m->lora) { /* unmerged adapter: a separate low-rank path, whatever the base layout */
        uint32_t l = (uint32_t)(L - m->layers);
        if (bee_lora_add(m->lora, l, BEE_LORA_Q, c->total, b->a, b->q, w) ||
            bee_lora_add(m->lora, l, BEE_LORA_V, c->total, b->a, b->v, w))
            return -1;
    }
    if (attention(c, cache_l, b->q, b->k, b->v, b->o)) return -1;
    if (linear(c, b->a, d, b->o, &L->wo, sw)) return -1;
    rows_apply(c, ROW_RESIDUAL, b->h, b->a, NULL, d);
    return 0;
}

static int ffn_block(const fwd_ctx *c, const bee_layer *L, fwd_bufs *b) {
    const bee_model *m = c->m;
    size_t d = m->hp.dim, F = m->hp.dim_ff;
    rows_apply(c, ROW_NORM, b->a, b->h, L->ffn_norm, d);
    float sd = sqrtf((float)d), sf = sqrtf((float)F);
    {
        float *ys[2] = {b->g, b->u}, divs[2] = {sd, sd};
        size_t ld[2] = {F, F};
        const bee_weight *ws[2] = {&L->w_gate, &L->w_up};
        if (linear_multi(c, 2, ys, ld, b->a, ws, divs)) return -1;
    }
    rows_apply(c, ROW_GELU_MUL, b->g, b->u, NULL, F);
    if (linear(c, b->a, d, b->g, &L->w_down, sf)) return -1;
    rows_apply(c, ROW_RESIDUAL, b->h, b->a, NULL, d);
    return 0;
}

/* ================================================================ logits */

/* Rows that need logits, scaled by 1/sqrt(dim) as upstream's projection does. */
static size_t gather_logit_rows(const fwd_ctx *c, const float *hid, bee_logits_mode mode, float *dst, size_t *src_row) {
    size_t d = c->m->hp.dim, t0 = 0, k = 0;
    float sd = sqrtf((float)d);
    for (size_t i = 0; i < c->n_seq; i++) {
        size_t n = c->n_tok[i];
        for (size_t t = 0; t < n; t++) {
            if (!(mode == BEE_LOGITS_ALL || (mode == BEE_LOGITS_LAST && t == n - 1))) continue;
            for (size_t e = 0; e < d; e++) dst[k * d + e] = hid[(t0 + t) * d + e] / sd;
            src_row[k++] = t0 + t;
        }
        t0 += n;
    }
    return k;
}

static int compute_logits(fwd_ctx *c, const float *hid, const bee_ext *ext, bee_logits_mode mode, float *logits) {
    const bee_model *m = c->m;
    size_t d = m->hp.dim, n_ext = ext ? ext->n : 0, W = m->hp.n_vocab + n_ext;
    float *ext_emb = malloc((n_ext ? n_ext : 1) * d * sizeof *ext_emb);
    float *hs = malloc((c->total ? c->total : 1) * d * sizeof *hs);
    size_t *src = malloc((c->total ? c->total : 1) * sizeof *src);
    int rc = ext_emb && hs && src ? 0 : bee_fail("out of memory");
    for (size_t j = 0; rc == 0 && j < n_ext; j++) bee_embed(m, ext->ids[j], ext->subs[j], ext_emb + j * d);
    size_t n = rc == 0 ? gather_logit_rows(c, hid, mode, hs, src) : 0;
    /* every row: the rows of the layers, by request; one per sequence: decode-like rows */
    if (rc == 0 && n && mode == BEE_LOGITS_ALL) rc = linear(c, logits, W, hs, &m->tok_embd, 1.0f);
    else if (rc == 0 && n) rc = bee_linear(m->pool, logits, W, hs, n, &m->tok_embd, 1.0f);
    for (size_t k = 0; rc == 0 && k < n; k++)
        for (size_t j = 0; j < n_ext; j++) logits[k * W + m->hp.n_vocab + j] = bee_dot_ref(hid + src[k] * d, ext_emb + j * d, d);
    free(ext_emb), free(hs), free(src);
    return rc;
}

/* ================================================================ driver */

static int check_tokens(const bee_model *m, const bee_token *toks, size_t n, const bee_ext *ext) {
    for (size_t t = 0; t < n; t++) {
        if (toks[t].id < 0 || (uint32_t)toks[t].id >= m->hp.n_vocab)
            return bee_fail("token %zu: id %d outside the vocabulary (%u)", t, toks[t].id, m->hp.n_vocab);
        if (toks[t].sub < 0) return bee_fail("token %zu: negative subscript %d", t, toks[t].sub);
    }
    for (size_t j = 0; ext && j < ext->n; j++)
        if (ext->ids[j] < 0 || (uint32_t)ext->ids[j] >= m->hp.n_vocab || ext->subs[j] < 0)
            return bee_fail("ext table entry %zu: bad id %d / sub %d", j, ext->ids[j], ext->subs[j]);
    return 0;
}

static int trace_alloc(bee_trace *tr, const bee_model *m, size_t n_q, size_t n_k) {
    size_t d = m->hp.dim, H = m->hp.n_heads;
    bee_trace_free(tr, m->hp.n_layers);
    tr->enabled = 1;
    tr->n_q = n_q;
    tr->n_k = n_k;
    tr->embedding = malloc(n_q * d * sizeof(float));
    tr->rel_bucket = malloc(n_q * n_k * sizeof(int32_t) + 1);
    tr->mask = malloc(n_q * n_k + 1);
    tr->pos_bias = malloc(H * n_q * n_k * sizeof(float) + 1);
    tr->layer_out = calloc(m->hp.n_layers, sizeof(float *));
    tr->hidden = malloc(n_q * d * sizeof(float));
    tr->k0 = malloc(H * n_k * m->hp.dim_head * sizeof(float) + 1);
    tr->v0 = malloc(H * n_k * m->hp.dim_head * sizeof(float) + 1);
    int ok = tr->embedding && tr->rel_bucket && tr->mask && tr->pos_bias && tr->layer_out && tr->hidden && tr->k0 && tr->v0;
    for (uint32_t l = 0; ok && l < m->hp.n_layers; l++) ok = (tr->layer_out[l] = malloc(n_q * d * sizeof(float))) != NULL;
    return ok ? 0 : bee_fail("out of memory");
}

void bee_trace_free(bee_trace *t, uint32_t n_layers) {
    free(t->embedding);
    free(t->rel_bucket);
    free(t->mask);
    free(t->pos_bias);
    for (uint32_t l = 0; t->layer_out && l < n_layers; l++) free(t->layer_out[l]);
    free(t->layer_out);
    free(t->hidden);
    free(t->k0);
    free(t->v0);
    int en = t->enabled;
    memset(t, 0, sizeof *t);
    t->enabled = en;
}

static int trace_kv(bee_trace *tr, const bee_model *m, const bee_seq *s) {
    size_t H = m->hp.n_heads, dh = m->hp.dim_head, w = row_width(m), rb = kv_row_bytes(m, s->kv_type);
    float *kr = malloc(w * sizeof *kr), *vr = malloc(w * sizeof *vr);
    if (!kr || !vr) {
        free(kr), free(vr);
        return bee_fail("out of memory");
    }
    for (size_t j = 0; j < s->n; j++) {
        size_t r = bee_seq_row(s, (uint32_t)j);
        bee_dequantize_row(s->kv_type, (const uint8_t *)s->pool->k[0] + r * rb, kr, w);
        bee_dequantize_row(s->kv_type, (const uint8_t *)s->pool->v[0] + r * rb, vr, w);
        for (size_t h = 0; h < H; h++)
            for (size_t e = 0; e < dh; e++) {
                tr->k0[(h * s->n + j) * dh + e] = kr[h * dh + e];
                tr->v0[(h * s->n + j) * dh + e] = vr[h * dh + e];
            }
    }
    free(kr), free(vr);
    return 0;
}

/* Largest queries x keys x (2 + heads) whose visible-key lists and biases
 * are kept across layers (4 bytes each: 32 MiB). */
enum { QROWS_MAX = 1 << 23 };

static int prepare(fwd_ctx *c, const bee_token *const *toks, bee_trace *tr) {
    const bee_model *m = c->m;
    uint32_t max_k = 1;
    for (size_t i = 0; i < c->n_seq; i++) {
        bee_seq *s = c->seqs[i];
        if (s->n + c->n_tok[i] > (1u << 30)) return bee_fail("sequence too long");
        if (bee_seq_prepare_append(s, m, (uint32_t)c->n_tok[i])) return -1;
        memcpy(s->keys + s->n, toks[i], c->n_tok[i] * sizeof *toks[i]);
        s->n += (uint32_t)c->n_tok[i];
        if (s->n > max_k) max_k = s->n;
        if (check_keys(s, c->n_old[i])) return -1;
        if (i == 0 && tr && tr->enabled) {
            if (trace_alloc(tr, m, c->n_tok[i], s->n)) return -1;
            trace_bias(m, s, c->n_old[i], tr);
        }
    }
    for (size_t i = 1; i < c->n_seq; i++)
        if (c->seqs[i]->kv_type != c->seqs[0]->kv_type) return bee_fail("sequences of one batch must share a KV cache type");
    uint32_t kvt = c->n_seq ? c->seqs[0]->kv_type : BEE_TYPE_F32;
    if (!(c->attn = bee_attn_get(kvt, m->hp.dim_head))) return bee_fail("no attention kernel for a %s KV cache", bee_type_name(kvt));
    size_t nth = (size_t)bee_pool_size(m->pool);
    c->max_k = max_k;
    c->scores = malloc(nth * m->hp.n_heads * max_k * sizeof(float));
    c->rows = malloc(nth * 2 * max_k * sizeof(int32_t));
    if (c->total * max_k * (2 + m->hp.n_heads) <= QROWS_MAX) { /* visible keys and their biases, once for all layers */
        c->qrows = malloc((c->total ? c->total : 1) * 2 * max_k * sizeof(int32_t));
        c->qbias = malloc((c->total ? c->total : 1) * m->hp.n_heads * max_k * sizeof(float));
        c->qn = malloc((c->total ? c->total : 1) * sizeof *c->qn);
        if (!c->qrows || !c->qbias || !c->qn) return bee_fail("out of memory");
    }
    c->q_seq = malloc((c->total ? c->total : 1) * sizeof *c->q_seq);
    if (!c->scores || !c->rows || !c->q_seq) return bee_fail("out of memory");
    for (size_t i = 0, t = 0; i < c->n_seq; i++)
        for (size_t k = 0; k < c->n_tok[i]; k++) c->q_seq[t++] = (uint32_t)i;
    return 0;
}

static int run_layers(fwd_ctx *c, fwd_bufs *b, bee_trace *tr) {
    const bee_model *m = c->m;
    uint32_t cache_l = 0;
    for (uint32_t l = 0; l < m->hp.n_layers; l++) {
        const bee_layer *L = &m->layers[l];
        if (L->has_att && attention_block(c, L, cache_l++, b)) return -1;
        if (L->has_ffn && ffn_block(c, L, b)) return -1;
        if (tr && tr->enabled) memcpy(tr->layer_out[l], b->h, tr->n_q * m->hp.dim * sizeof(float));
    }
    return 0;
}

static int alloc_bufs(fwd_bufs *b, const bee_model *m, size_t T) {
    size_t d = m->hp.dim, w = row_width(m), F = m->hp.dim_ff, big = d > w ? d : w;
    b->h = malloc(T * d * sizeof(float));
    b->a = malloc(T * big * sizeof(float));
    b->q = malloc(T * w * sizeof(float));
    b->k = malloc(T * w * sizeof(float));
    b->v = malloc(T * w * sizeof(float));
    b->o = malloc(T * w * sizeof(float));
    b->g = malloc(T * F * sizeof(float));
    b->u = malloc(T * F * sizeof(float));
    return b->h && b->a && b->q && b->k && b->v && b->o && b->g && b->u ? 0 : bee_fail("out of memory");
}

static void free_bufs(fwd_bufs *b) {
    free(b->h), free(b->a), free(b->q), free(b->k), free(b->v), free(b->o), free(b->g), free(b->u);
}

/* The scratch prepare() allocated (not n_old, which the caller owns). */
static void fwd_ctx_free(fwd_ctx *c) {
    free(c->scores), free(c->rows), free(c->qrows), free(c->qbias), free(c->qn), free(c->q_seq);
    c->scores = NULL, c->qbias = NULL, c->rows = c->qrows = NULL, c->qn = NULL, c->q_seq = NULL;
}

static void rollback(fwd_ctx *c) {
    for (size_t i = 0; i < c->n_seq; i++) bee_seq_truncate(c->seqs[i], c->n_old[i]);
}

int bee_forward(const bee_model *m, bee_seq *const *seqs, const bee_token *const *toks, const size_t *n_tok,
                size_t n_seq, const bee_ext *ext, bee_logits_mode mode, float *logits, bee_trace *trace) {
    fwd_ctx c = {m, seqs, n_tok, n_seq, 0, NULL, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, bee_eltwise_get()};
    for (size_t i = 0; i < n_seq; i++) {
        if (check_tokens(m, toks[i], n_tok[i], ext)) return bee_fail_prefix("sequence %zu: ", i);
        if (n_tok[i] == 0 && mode == BEE_LOGITS_LAST) return bee_fail("sequence %zu: no tokens", i);
        c.total += n_tok[i];
    }
    fwd_bufs b = {0};
    c.n_old = calloc(n_seq + 1, sizeof *c.n_old);
    int rc = c.n_old ? 0 : bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && i < n_seq; i++) c.n_old[i] = seqs[i]->n;
    if (rc == 0) rc = alloc_bufs(&b, m, c.total ? c.total : 1);
    if (rc == 0) rc = prepare(&c, toks, trace);
    size_t d = m->hp.dim, t0 = 0;
    for (size_t i = 0; rc == 0 && i < n_seq; i++)
        for (size_t t = 0; t < n_tok[i]; t++, t0++) bee_embed(m, toks[i][t].id, toks[i][t].sub, b.h + t0 * d);
    if (rc == 0 && trace && trace->enabled) memcpy(trace->embedding, b.h, n_tok[0] * d * sizeof(float));
    if (rc == 0) rc = run_layers(&c, &b, trace);
    if (rc == 0) rows_apply(&c, ROW_NORM, b.a, b.h, m->out_norm, d);
    if (rc == 0 && trace && trace->enabled) {
        memcpy(trace->hidden, b.a, n_tok[0] * d * sizeof(float));
        if (m->layers[0].has_att) rc = trace_kv(trace, m, seqs[0]);
    }
    if (rc == 0 && mode != BEE_LOGITS_NONE) rc = compute_logits(&c, b.a, ext, mode, logits);
    if (rc && c.n_old) rollback(&c);
    free(c.n_old);
    fwd_ctx_free(&c);
    free_bufs(&b);
    return rc;
}

/* ================================================================ layer-sliced prefill
 * The prefill of one sequence run a few layers at a time: between calls only
 * the hidden states of the new tokens are kept (the layer scratch is
 * allocated per call). Every layer runs exactly the code bee_forward runs on
 * a batch of this one sequence, so the KV cache and the logits are
 * bit-identical to one bee_forward call. */

struct bee_prefill {
    const bee_model *m;
    bee_seq *seq;
    fwd_ctx c;
    size_t n_tok;
    uint32_t n_old;     /* cache length before begin */
    uint32_t layer;     /* next layer to run */
    uint32_t cache_l;   /* its cache index (attention layers before it) */
    int failed;
    float *h;           // (n_tok, dim) hidden states after layer - 1
};

static void prefill_free(bee_prefill *p) {
    fwd_ctx_free(&p->c);
    free(p->h);
    free(p);
}

void bee_prefill_cancel(bee_prefill *p) {
    if (!p) return;
    bee_seq_truncate(p->seq, p->n_old);
    prefill_free(p);
}

int bee_prefill_begin(const bee_model *m, bee_seq *s, const bee_token *toks, size_t n_tok, bee_prefill **out) {
    *out = NULL;
    if (n_tok == 0) return bee_fail("prefill of no tokens");
    if (check_tokens(m, toks, n_tok, NULL)) return -1;
    bee_prefill *p = calloc(1, sizeof *p);
    if (!p) return bee_fail("out of memory");
    p->m = m, p->seq = s, p->n_tok = n_tok, p->n_old = s->n;
    p->c = (fwd_ctx){.m = m, .seqs = &p->seq, .n_tok = &p->n_tok, .n_seq = 1, .total = n_tok, .n_old = &p->n_old,
                     .elt = bee_eltwise_get()};
    size_t d = m->hp.dim;
    p->h = malloc(n_tok * d * sizeof *p->h);
    int rc = p->h ? 0 : bee_fail("out of memory");
    if (rc == 0) rc = prepare(&p->c, &toks, NULL);
    if (rc) {
        bee_prefill_cancel(p); /* prepare may have appended the keys */
        return -1;
    }
    for (size_t t = 0; t < n_tok; t++) bee_embed(m, toks[t].id, toks[t].sub, p->h + t * d);
    *out = p;
    return 0;
}

uint32_t bee_prefill_layers_left(const bee_prefill *p) { return p->m->hp.n_layers - p->layer; }

/* The layer scratch of one call around the kept hidden states. */
static int prefill_bufs(bee_prefill *p, fwd_bufs *b) {
    memset(b, 0, sizeof *b);
    if (alloc_bufs(b, p->m, p->n_tok)) {
        free_bufs(b);
        return -1;
    }
    free(b->h);
    b->h = p->h;
    return 0;
}

static void prefill_bufs_free(fwd_bufs *b) {
    b->h = NULL;
    free_bufs(b);
}

static int prefill_layers(bee_prefill *p, fwd_bufs *b, uint32_t n_layers) {
    const bee_model *m = p->m;
    for (uint32_t k = 0; k < n_layers && p->layer < m->hp.n_layers; k++, p->layer++) {
        const bee_layer *L = &m->layers[p->layer];
        if ((L->has_att && attention_block(&p->c, L, p->cache_l++, b)) || (L->has_ffn && ffn_block(&p->c, L, b))) {
            p->failed = 1;
            return -1;
        }
    }
    return 0;
}

int bee_prefill_step(bee_prefill *p, uint32_t n_layers) {
    if (p->failed) return bee_fail("this prefill already failed");
    if (n_layers == 0 || p->layer >= p->m->hp.n_layers) return 0;
    fwd_bufs b;
    if (prefill_bufs(p, &b)) return -1;
    int rc = prefill_layers(p, &b, n_layers);
    prefill_bufs_free(&b);
    return rc;
}

int bee_prefill_finish(bee_prefill *p, const bee_ext *ext, bee_logits_mode mode, float *logits) {
    const bee_model *m = p->m;
    int rc = p->failed ? bee_fail("this prefill already failed") : 0;
    if (rc == 0 && ext && check_tokens(m, NULL, 0, ext)) rc = -1;
    fwd_bufs b;
    if (rc == 0) rc = prefill_bufs(p, &b);
    if (rc == 0) {
        rc = prefill_layers(p, &b, m->hp.n_layers);
        if (rc == 0) rows_apply(&p->c, ROW_NORM, b.a, b.h, m->out_norm, m->hp.dim);
        if (rc == 0 && mode != BEE_LOGITS_NONE) rc = compute_logits(&p->c, b.a, ext, mode, logits);
        prefill_bufs_free(&b);
    }
    if (rc) {
        bee_prefill_cancel(p);
        return -1;
    }
    prefill_free(p);
    return 0;
}
