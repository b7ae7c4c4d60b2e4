/* Training forward over a packed batch (upstream CPMBeeTorch.forward, the
 * training path: positions = array index, spans, length mask), cross-entropy
 * over the targets and the full backward pass. The forward keeps the
 * activations the backward needs except the attention probabilities, which
 * the backward recomputes row by row (memory per layer is O(B L (d + A + F)),
 * plus one B L^2 table of bias rows shared by all layers). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dot.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "model/lora.h"
#include "train/ops.h"
#include "train/train.h"
#include "util/error.h"
#include "util/types.h"

#define IGNORE_INDEX (-100)
#define LOGIT_CHUNK 128 /* rows of logits materialised at a time */

/* ================================================================ state */

typedef struct {
    float *in, *a, *r;    // (T, d), (T, d), (T): block input, normed input, rsqrt of the norm
    float *q, *k, *v, *o; // (T, A)
} att_acts;

typedef struct {
    float *in, *a, *r;    // (T, d), (T, d), (T)
    float *g, *u, *z;     // (T, F): gate pre-activation, linear branch, gelu(g) * u
} ffn_acts;

typedef struct {
    bee_train_model *t;
    const bee_train_batch *b;
    size_t T, d, A, F, H, dh; /* tokens (B * L) and dims */
    int32_t *brow;    // (B, L, L) row of the bias table for (q, k), -1 = masked
    float *h;         // (T, d) running hidden state
    float *hl, *fr;   // (T, d), (T): input of the final norm and its rsqrt
    float *hf;        // (T, d) after the final norm
    float *ext;       // (n_ext, d) ext-table embeddings
    float *scratch;   // (n_threads, 2 L) attention probability and dP rows
    const bee_dot_kernel *dotk; /* fp32 dot product of the attention scores */
    att_acts *att;    // (n_layers)
    ffn_acts *ffn;    // (n_layers)
    size_t n_targets;
    double nll_sum;
} train_ctx;

static void *zalloc(size_t n, size_t size, int *ok) {
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = 0;
    return p;
}

static int ctx_alloc(train_ctx *c) {
    const bee_train_model *t = c->t;
    size_t T = c->T, d = c->d, A = c->A, F = c->F, BL2 = (size_t)c->b->B * c->b->L * c->b->L;
    int ok = 1;
    c->brow = zalloc(BL2, sizeof *c->brow, &ok);
    c->h = zalloc(T * d, sizeof(float), &ok);
    c->hl = zalloc(T * d, sizeof(float), &ok);
    c->hf = zalloc(T * d, sizeof(float), &ok);
    c->fr = zalloc(T, sizeof(float), &ok);
    c->ext = zalloc(c->b->n_ext * d, sizeof(float), &ok);
    c->scratch = zalloc((size_t)bee_pool_size(t->pool) * 2 * c->b->L, sizeof(float), &ok);
    c->dotk = bee_dot_kernel_get(BEE_TYPE_F32);
    c->att = zalloc(t->hp.n_layers, sizeof *c->att, &ok);
    c->ffn = zalloc(t->hp.n_layers, sizeof *c->ffn, &ok);
    for (uint32_t l = 0; ok && l < t->hp.n_layers; l++) {
        if (t->has_att[l]) {
            att_acts *a = &c->att[l];
            a->in = zalloc(T * d, sizeof(float), &ok), a->a = zalloc(T * d, sizeof(float), &ok);
            a->r = zalloc(T, sizeof(float), &ok);
            a->q = zalloc(T * A, sizeof(float), &ok), a->k = zalloc(T * A, sizeof(float), &ok);
            a->v = zalloc(T * A, sizeof(float), &ok), a->o = zalloc(T * A, sizeof(float), &ok);
        }
        if (t->has_ffn[l]) {
            ffn_acts *f = &c->ffn[l];
            f->in = zalloc(T * d, sizeof(float), &ok), f->a = zalloc(T * d, sizeof(float), &ok);
            f->r = zalloc(T, sizeof(float), &ok);
            f->g = zalloc(T * F, sizeof(float), &ok), f->u = zalloc(T * F, sizeof(float), &ok);
            f->z = zalloc(T * F, sizeof(float), &ok);
        }
    }
    return ok ? 0 : bee_fail("out of memory for the activations of a %u x %u batch", c->b->B, c->b->L);
}

static void ctx_free(train_ctx *c) {
    for (uint32_t l = 0; c->att && l < c->t->hp.n_layers; l++) {
        att_acts *a = &c->att[l];
        free(a->in), free(a->a), free(a->r), free(a->q), free(a->k), free(a->v), free(a->o);
    }
    for (uint32_t l = 0; c->ffn && l < c->t->hp.n_layers; l++) {
        ffn_acts *f = &c->ffn[l];
        free(f->in), free(f->a), free(f->r), free(f->g), free(f->u), free(f->z);
    }
    free(c->att), free(c->ffn), free(c->brow), free(c->h), free(c->hl), free(c->hf), free(c->fr), free(c->ext), free(c->scratch);
}

/* ================================================================ batch checks */

#define AT(arr, i, j) ((arr)[(size_t)(i) * b->L + (j)])

static int check_tokens(const bee_train_model *t, const bee_train_batch *b) {
    size_t W = t->hp.n_vocab + b->n_ext;
    for (uint32_t i = 0; i < b->B; i++) {
        if (b->length[i] < 0 || (uint32_t)b->length[i] > b->L)
            return bee_fail("length[%u] = %d is outside 0..%u", i, b->length[i], b->L);
        for (uint32_t j = 0; j < b->L; j++) {
            int32_t id = AT(b->inputs, i, j), sub = AT(b->inputs_sub, i, j), tg = AT(b->targets, i, j);
            if (id < 0 || (uint32_t)id >= t->hp.n_vocab)
                return bee_fail("inputs[%u][%u] = %d is outside the vocabulary (%u)", i, j, id, t->hp.n_vocab);
            if (sub < 0) return bee_fail("inputs_sub[%u][%u] = %d is negative", i, j, sub);
            if (tg != IGNORE_INDEX && (tg < 0 || (size_t)tg >= W))
                return bee_fail("targets[%u][%u] = %d is neither -100 nor a column < %zu", i, j, tg, W);
        }
    }
    for (size_t j = 0; j < b->n_ext; j++)
        if (b->ext_ids[j] < 0 || (uint32_t)b->ext_ids[j] >= t->hp.n_vocab || b->ext_sub[j] < 0)
            return bee_fail("ext table entry %zu: bad id %d / sub %d", j, b->ext_ids[j], b->ext_sub[j]);
    return 0;
}

static int check_batch(const bee_train_model *t, const bee_train_batch *b) {
    if (!b->B || !b->L || b->B > 65536 || b->L > 65536)
        return bee_fail("batch shape %u x %u is empty or too large", b->B, b->L);
    if (!b->inputs || !b->inputs_sub || !b->length || !b->context || !b->sample_ids || !b->num_segments ||
        !b->segment_ids || !b->segment_rel_offset || !b->spans || !b->targets)
        return bee_fail("batch: a per-token array is missing");
    if ((b->n_seg_rel && !b->segment_rel) || (b->n_ext && (!b->ext_ids || !b->ext_sub)))
        return bee_fail("batch: segment_rel or the ext table is missing");
    return check_tokens(t, b);
}

/* ================================================================ bias and mask */

/* Training-form mask (SPEC §3.9) and bias row (§3.8, spans as samples). */
static int bias_row(const train_ctx *c, uint32_t i, uint32_t q, uint32_t k, int32_t *row) {
    const bee_train_batch *b = c->b;
    const bee_hparams *hp = &c->t->hp;
    int32_t len = b->length[i], sq = AT(b->sample_ids, i, q), sk = AT(b->sample_ids, i, k);
    int ctx_q = AT(b->context, i, q) != 0, ctx_k = AT(b->context, i, k) != 0;
    int same_span = AT(b->spans, i, q) == AT(b->spans, i, k);
    *row = -1;
    if ((int32_t)q >= len || (int32_t)k >= len || !same_span || !(ctx_k || (!ctx_q && k <= q)) || !(sq == 0 || sq == sk))
        return 0;
    int32_t bucket = 1;
    if (sq == sk) {
        int64_t idx = (int64_t)AT(b->segment_rel_offset, i, q) +
                      (int64_t)AT(b->segment_ids, i, q) * AT(b->num_segments, i, q) + AT(b->segment_ids, i, k);
        if (idx < 0 || (size_t)idx >= b->n_seg_rel)
            return bee_fail("row %u, tokens %u -> %u: segment_rel index %lld outside 0..%zu", i, q, k, (long long)idx,
                            b->n_seg_rel);
        bucket = b->segment_rel[(size_t)i * b->n_seg_rel + (size_t)idx];
        if (bucket < 0 || (bucket > 0 && (uint32_t)(bucket - 1) >= hp->n_seg_buckets))
            return bee_fail("row %u: segment_rel value %d is outside the %u segment buckets", i, bucket, hp->n_seg_buckets);
    }
    *row = bucket ? bucket - 1 + (int32_t)hp->n_buckets : bee_position_bucket((int32_t)k - (int32_t)q, hp->n_buckets, hp->max_distance);
    return 0;
}

static int build_bias_rows(train_ctx *c) {
    const bee_train_batch *b = c->b;
    for (uint32_t i = 0; i < b->B; i++)
        for (uint32_t q = 0; q < b->L; q++)
            for (uint32_t k = 0; k < b->L; k++)
                if (bias_row(c, i, q, k, &c->brow[((size_t)i * b->L + q) * b->L + k])) return -1;
    return 0;
}

/* ================================================================ embedding */

/* out = rotate(E[id] / sqrt(d), sub): the same arithmetic as bee_embed. */
static void embed(const bee_train_model *t, int32_t id, int32_t sub, float *out) {
    uint32_t d = t->hp.dim, half = d / 2;
    const float *row = t->w.tok_embd + (size_t)id * d;
    float sd = sqrtf((float)d), p = (float)sub * t->hp.rope_scale;
    for (uint32_t i = 0; i < half; i++) {
        float x0 = row[i] / sd, x1 = row[i + half] / sd;
        float th = p * t->inv_freq[i], cs = cosf(th), sn = sinf(th);
        out[i] = x0 * cs + (-x1) * sn;
        out[i + half] = x1 * cs + x0 * sn;
    }
}

/* Transposed rotation of dout, scaled by 1/sqrt(d), into dE[id]. */
static void embed_bwd(bee_train_model *t, int32_t id, int32_t sub, const float *dout) {
    if (!t->g.mem) return; /* frozen base (LoRA) */
    uint32_t d = t->hp.dim, half = d / 2;
    float *g = t->g.tok_embd + (size_t)id * d;
    float sd = sqrtf((float)d), p = (float)sub * t->hp.rope_scale;
    for (uint32_t i = 0; i < half; i++) {
        float th = p * t->inv_freq[i], cs = cosf(th), sn = sinf(th);
        g[i] += (dout[i] * cs + dout[i + half] * sn) / sd;
        g[i + half] += (dout[i + half] * cs - dout[i] * sn) / sd;
    }
}

/* ================================================================ element-wise, threaded */

#define ELT_GRAIN 16384 /* elements per block of a threaded element-wise loop */

typedef struct {
    float *dst, *dst2;
    const float *src, *src2, *src3;
    float s;
} elt_job;

static void scale_range(void *ctx, size_t b, size_t e, int ith) {
    const elt_job *j = ctx;
    (void)ith;
    for (size_t i = b; i < e; i++) j->dst[i] = j->src[i] / j->s;
}

/* dst = src / s */
static void scale_rows(bee_pool *p, float *dst, const float *src, size_t n, float s) {
    elt_job j = {dst, NULL, src, NULL, NULL, s};
    bee_pool_for(p, n, ELT_GRAIN, scale_range, &j);
}

static void residual_range(void *ctx, size_t b, size_t e, int ith) {
    const elt_job *j = ctx;
    (void)ith;
    for (size_t i = b; i < e; i++) j->dst[i] = (j->dst[i] + j->src[i]) / j->s;
}

/* z = gelu(g) u with the inference path's element-wise kernel (SIMD erf). */
static void gelu_fwd_range(void *ctx, size_t b, size_t e, int ith) {
    const elt_job *j = ctx;
    (void)ith;
    memcpy(j->dst + b, j->src + b, (e - b) * sizeof(float));
    bee_eltwise_get()->gelu_mul(j->dst + b, j->src2 + b, e - b);
}

/* dg = dz u gelu'(g) / s, du = dz gelu(g) / s: src dz, src2 g, src3 u. */
static void gelu_bwd_range(void *ctx, size_t b, size_t e, int ith) {
    const elt_job *j = ctx;
    (void)ith;
    bee_eltwise_get()->gelu_bwd(j->dst + b, j->dst2 + b, j->src + b, j->src2 + b, j->src3 + b, e - b, j->s);
}

/* ================================================================ attention */

typedef struct {
    train_ctx *c;
    att_acts *a;
    float *scratch;             // (n_threads, L) one probability row per thread
    float *dq, *dk, *dv, *dout; /* backward only */
} attn_job;

/* Softmax row of query q of row i, head h into p (0 where masked). The
 * backward calls this again instead of storing B * H * L^2 probabilities;
 * the arithmetic is the same, so the values are too. */
static void attn_probs(const train_ctx *c, const att_acts *a, size_t i, size_t h, size_t q, float *p) {
    size_t L = c->b->L, A = c->A, dh = c->dh, H = c->H;
    float sd = sqrtf((float)dh), mx = -INFINITY, sum = 0;
    const float *bias = c->t->w.pos_bias, *qv = a->q + (i * L + q) * A + h * dh;
    const int32_t *rows = c->brow + (i * L + q) * L;
    const bee_dot_kernel *kd = c->dotk;
    for (size_t k = 0; k < L; k++) {
        p[k] = 0;
        if (rows[k] < 0) continue;
        p[k] = kd->dot(dh, a->k + (i * L + k) * A + h * dh, qv) / sd + bias[(size_t)rows[k] * H + h];
        if (p[k] > mx) mx = p[k];
    }
    for (size_t k = 0; k < L; k++) {
        if (rows[k] < 0) continue;
        p[k] = expf(p[k] - mx);
        sum += p[k];
    }
    for (size_t k = 0; k < L; k++)
        if (rows[k] >= 0) p[k] /= sum;
}

static void axpy_f(float *restrict y, float a, const float *restrict x, size_t n) {
    for (size_t e = 0; e < n; e++) y[e] += a * x[e];
}

/* One (row, head) pair: P V for every query of the row. */
static void attn_fwd_one(const train_ctx *c, att_acts *a, size_t i, size_t h, float *p) {
    size_t L = c->b->L, A = c->A, dh = c->dh;
    for (size_t q = 0; q < L; q++) {
        const int32_t *rows = c->brow + (i * L + q) * L;
        attn_probs(c, a, i, h, q, p);
        float *o = a->o + (i * L + q) * A + h * dh;
        memset(o, 0, dh * sizeof *o);
        for (size_t k = 0; k < L; k++) {
            if (rows[k] < 0) continue;
            axpy_f(o, p[k], a->v + (i * L + k) * A + h * dh, dh);
        }
    }
}

static void attn_fwd_range(void *ctx, size_t begin, size_t end, int ith) {
    attn_job *j = ctx;
    float *p = j->scratch + (size_t)ith * 2 * j->c->b->L;
    for (size_t x = begin; x < end; x++) attn_fwd_one(j->c, j->a, x / j->c->H, x % j->c->H, p);
}

/* Backward of query q of row i, head h: dQ, dK, dV of that head's columns and
 * dS = P (dP - sum P dP) into the head's column of the bias-table gradient.
 * dq and dk are accumulated without the 1/sqrt(dh) factor, which the caller
 * applies once per element. */
static void attn_bwd_query(const attn_job *j, size_t i, size_t h, size_t q, float *p, float *dp) {
    const train_ctx *c = j->c;
    const att_acts *a = j->a;
    size_t L = c->b->L, A = c->A, dh = c->dh, H = c->H;
    float *gb = c->t->g.pos_bias;
    const int32_t *rows = c->brow + (i * L + q) * L;
    size_t qo = (i * L + q) * A + h * dh;
    const float *dout = j->dout + qo, *qv = a->q + qo;
    float *dq = j->dq + qo;
    attn_probs(c, a, i, h, q, p);
    double s = 0;
    for (size_t k = 0; k < L; k++)
        if (rows[k] >= 0) dp[k] = c->dotk->dot(dh, a->v + (i * L + k) * A + h * dh, dout), s += (double)p[k] * dp[k];
    for (size_t k = 0; k < L; k++) {
        if (rows[k] < 0) continue;
        size_t ko = (i * L + k) * A + h * dh;
        float ds = p[k] * (dp[k] - (float)s);
        axpy_f(j->dv + ko, p[k], dout, dh);
        axpy_f(dq, ds, a->k + ko, dh);
        axpy_f(j->dk + ko, ds, qv, dh);
        if (gb) gb[(size_t)rows[k] * H + h] += ds;
    }
}

/* Threads own heads: a head's columns of dQ, dK, dV and of the bias gradient
 * are written by one thread only, in the order (row, query, key). */
static void attn_bwd_range(void *ctx, size_t begin, size_t end, int ith) {
    attn_job *j = ctx;
    float *p = j->scratch + (size_t)ith * 2 * j->c->b->L, *dp = p + j->c->b->L;
    for (size_t h = begin; h < end; h++)
        for (size_t i = 0; i < j->c->b->B; i++)
            for (size_t q = 0; q < j->c->b->L; q++) attn_bwd_query(j, i, h, q, p, dp);
}

/* ================================================================ blocks: forward */

typedef struct {
    const train_ctx *c;
    float *y, *r;
    const float *x, *w;
} rms_job;

static void rms_range(void *ctx, size_t b, size_t e, int ith) {
    const rms_job *j = ctx;
    size_t d = j->c->d;
    (void)ith;
    for (size_t t = b; t < e; t++) j->r[t] = bee_rms_fwd(j->y + t * d, j->x + t * d, j->w, d, j->c->t->hp.eps);
}

static void rms_rows(const train_ctx *c, float *y, float *r, const float *x, const float *w) {
    rms_job j = {c, y, r, x, w};
    bee_pool_for(c->t->pool, c->T, 64, rms_range, &j);
}

static void residual(const train_ctx *c, const float *y) {
    float s = c->t->hp.residual_scale;
    elt_job j = {c->h, NULL, y, NULL, NULL, s};
    bee_pool_for(c->t->pool, c->T * c->d, ELT_GRAIN, residual_range, &j);
}

static int att_fwd(train_ctx *c, uint32_t l, float *tmp) {
    const bee_tlayer *L = &c->t->w.layers[l];
    att_acts *a = &c->att[l];
    bee_pool *pool = c->t->pool;
    size_t T = c->T, d = c->d, A = c->A;
    float sd = sqrtf((float)d), sa = sqrtf((float)A);
    memcpy(a->in, c->h, T * d * sizeof(float));
    rms_rows(c, a->a, a->r, a->in, L->att_norm);
    bee_mm_fwd(pool, a->q, A, a->a, L->wq, T, A, d, sd);
    bee_mm_fwd(pool, a->k, A, a->a, L->wk, T, A, d, sd);
    bee_mm_fwd(pool, a->v, A, a->a, L->wv, T, A, d, sd);
    if (c->t->lora && (bee_lora_add(c->t->lora, l, BEE_LORA_Q, T, a->a, a->q, A) ||
                       bee_lora_add(c->t->lora, l, BEE_LORA_V, T, a->a, a->v, A)))
        return -1;
    attn_job j = {c, a, c->scratch, NULL, NULL, NULL, NULL};
    bee_pool_for(pool, (size_t)c->b->B * c->H, 1, attn_fwd_range, &j);
    bee_mm_fwd(pool, tmp, d, a->o, L->wo, T, d, A, sa);
    residual(c, tmp);
    return 0;
}

static void ffn_fwd(train_ctx *c, uint32_t l, float *tmp) {
    const bee_tlayer *L = &c->t->w.layers[l];
    ffn_acts *f = &c->ffn[l];
    bee_pool *pool = c->t->pool;
    size_t T = c->T, d = c->d, F = c->F;
    float sd = sqrtf((float)d), sf = sqrtf((float)F);
    memcpy(f->in, c->h, T * d * sizeof(float));
    rms_rows(c, f->a, f->r, f->in, L->ffn_norm);
    bee_mm_fwd(pool, f->g, F, f->a, L->w_gate, T, F, d, sd);
    bee_mm_fwd(pool, f->u, F, f->a, L->w_up, T, F, d, sd);
    elt_job gj = {f->z, NULL, f->g, f->u, NULL, 1.0f};
    bee_pool_for(pool, T * F, ELT_GRAIN, gelu_fwd_range, &gj);
    bee_mm_fwd(pool, tmp, d, f->z, L->w_down, T, d, F, sf);
    residual(c, tmp);
}

static int forward(train_ctx *c) {
    const bee_train_batch *b = c->b;
    bee_train_model *t = c->t;
    size_t d = c->d;
    float *tmp = malloc(c->T * d * sizeof *tmp);
    if (!tmp) return bee_fail("out of memory");
    for (size_t x = 0; x < c->T; x++) embed(t, b->inputs[x], b->inputs_sub[x], c->h + x * d);
    for (size_t j = 0; j < b->n_ext; j++) embed(t, b->ext_ids[j], b->ext_sub[j], c->ext + j * d);
    for (uint32_t l = 0; l < t->hp.n_layers; l++) {
        if (t->has_att[l] && att_fwd(c, l, tmp)) {
            free(tmp);
            return -1;
        }
        if (t->has_ffn[l]) ffn_fwd(c, l, tmp);
    }
    memcpy(c->hl, c->h, c->T * d * sizeof(float));
    rms_rows(c, c->hf, c->fr, c->hl, t->w.out_norm);
    free(tmp);
    return 0;
}

/* ================================================================ blocks: backward */

/* A block computes h_out = (h_in + f(norm(h_in))) / s. Its backward first
 * divides dh by s (then dh is both d loss / d f and the skip path's share of
 * d loss / d h_in), runs f backward to da = d loss / d norm(h_in), and this
 * adds the norm's input gradient on top. */
static void norm_bwd(train_ctx *c, float *dh, const float *da, const float *x, const float *w, const float *r, float *dw) {
    for (size_t t = 0; t < c->T; t++) bee_rms_bwd(dh + t * c->d, dw, da + t * c->d, x + t * c->d, w, r[t], c->d, 1);
}



typedef struct {
    float *dy, *da, *b0, *b1, *b2; /* (T, d), (T, d), 3 x (T, max(A, F)) */
    float *lu, *ldu;               /* (T, rank) LoRA: A x and its gradient */
} bwd_bufs;

/* Weight gradients are skipped when the base is frozen (dW NULL). */
static void mm_dw(bee_pool *p, float *dW, const float *dy, const float *x, size_t n, size_t rows, size_t cols) {
    if (dW) bee_mm_dw(p, dW, dy, x, n, rows, cols);
}

/* Adapter y += k' B (A x) with dys = dL/dy / sd (the base linear's scaled
 * output gradient), so dL/dy = sd dys and the factor is k = scale * sd. */
static void lora_bwd(train_ctx *c, uint32_t l, int which, const float *dys, const float *x, bwd_bufs *s) {
    bee_train_model *t = c->t;
    const bee_lora *lo = t->lora;
    const float *A = lo->a[2 * l + which], *B = lo->b[2 * l + which];
    float *gA = t->lora_g + (A - lo->mem), *gB = t->lora_g + (B - lo->mem);
    size_t T = c->T, r = lo->rank;
    float k = bee_lora_scale(lo) * sqrtf((float)c->d);
    bee_mm_fwd(t->pool, s->lu, r, x, A, T, r, c->d, 1.0f);
    for (size_t i = 0; i < T * r; i++) s->lu[i] *= k;
    bee_mm_dw(t->pool, gB, dys, s->lu, T, c->A, r);
    bee_mm_dx(t->pool, s->ldu, dys, B, T, c->A, r, 0);
    for (size_t i = 0; i < T * r; i++) s->ldu[i] *= k;
    bee_mm_dw(t->pool, gA, s->ldu, x, T, r, c->d);
    bee_mm_dx(t->pool, s->da, s->ldu, A, T, r, c->d, 1);
}

static void att_bwd(train_ctx *c, uint32_t l, float *dh, bwd_bufs *s) {
    bee_train_model *t = c->t;
    const bee_tlayer *L = &t->w.layers[l];
    bee_tlayer *G = t->g.mem ? &t->g.layers[l] : &(bee_tlayer){0};
    att_acts *a = &c->att[l];
    bee_pool *pool = t->pool;
    size_t T = c->T, d = c->d, A = c->A, H = c->H;
    float sd = sqrtf((float)d), sa = sqrtf((float)A), rs = t->hp.residual_scale;
    scale_rows(pool, dh, dh, T * d, rs); /* now dy: gradient of the block output and of h_in */
    scale_rows(pool, s->dy, dh, T * d, sa);
    mm_dw(pool, G->wo, s->dy, a->o, T, d, A);
    float *dout = s->b0, *dq = s->b1, *dk = s->b2, *dv = a->o; /* o is no longer needed */
    bee_mm_dx(pool, dout, s->dy, L->wo, T, d, A, 0);
    memset(dq, 0, T * A * sizeof(float)), memset(dk, 0, T * A * sizeof(float)), memset(dv, 0, T * A * sizeof(float));
    attn_job j = {c, a, c->scratch, dq, dk, dv, dout};
    bee_pool_for(pool, H, 1, attn_bwd_range, &j);
    float sdh = sqrtf((float)c->dh);
    scale_rows(pool, dq, dq, T * A, sd * sdh), scale_rows(pool, dk, dk, T * A, sd * sdh), scale_rows(pool, dv, dv, T * A, sd);
    mm_dw(pool, G->wq, dq, a->a, T, A, d);
    mm_dw(pool, G->wk, dk, a->a, T, A, d);
    mm_dw(pool, G->wv, dv, a->a, T, A, d);
    bee_mm_dx(pool, s->da, dq, L->wq, T, A, d, 0);
    bee_mm_dx(pool, s->da, dk, L->wk, T, A, d, 1);
    bee_mm_dx(pool, s->da, dv, L->wv, T, A, d, 1);
    if (t->lora) lora_bwd(c, l, BEE_LORA_Q, dq, a->a, s), lora_bwd(c, l, BEE_LORA_V, dv, a->a, s);
    norm_bwd(c, dh, s->da, a->in, L->att_norm, a->r, G->att_norm);
}

static void ffn_bwd(train_ctx *c, uint32_t l, float *dh, bwd_bufs *s) {
    bee_train_model *t = c->t;
    const bee_tlayer *L = &t->w.layers[l];
    bee_tlayer *G = t->g.mem ? &t->g.layers[l] : &(bee_tlayer){0};
    ffn_acts *f = &c->ffn[l];
    bee_pool *pool = t->pool;
    size_t T = c->T, d = c->d, F = c->F;
    float sd = sqrtf((float)d), sf = sqrtf((float)F), rs = t->hp.residual_scale;
    scale_rows(pool, dh, dh, T * d, rs);
    scale_rows(pool, s->dy, dh, T * d, sf);
    mm_dw(pool, G->w_down, s->dy, f->z, T, d, F);
    float *dz = s->b0, *dg = s->b1, *du = s->b2;
    bee_mm_dx(pool, dz, s->dy, L->w_down, T, d, F, 0);
    elt_job gj = {dg, du, dz, f->g, f->u, sd};
    bee_pool_for(pool, T * F, ELT_GRAIN, gelu_bwd_range, &gj);
    mm_dw(pool, G->w_gate, dg, f->a, T, F, d);
    mm_dw(pool, G->w_up, du, f->a, T, F, d);
    bee_mm_dx(pool, s->da, dg, L->w_gate, T, F, d, 0);
    bee_mm_dx(pool, s->da, du, L->w_up, T, F, d, 1);
    norm_bwd(c, dh, s->da, f->in, L->ffn_norm, f->r, G->ffn_norm);
}

static int backward_pass(train_ctx *c, float *dhf) {
    bee_train_model *t = c->t;
    size_t T = c->T, d = c->d, big = c->A > c->F ? c->A : c->F;
    bwd_bufs s;
    int ok = 1;
    float *dh = zalloc(T * d, sizeof(float), &ok);
    s.dy = zalloc(T * d, sizeof(float), &ok), s.da = zalloc(T * d, sizeof(float), &ok);
    s.b0 = zalloc(T * big, sizeof(float), &ok), s.b1 = zalloc(T * big, sizeof(float), &ok);
    s.b2 = zalloc(T * big, sizeof(float), &ok);
    size_t r = t->lora ? t->lora->rank : 0;
    s.lu = zalloc(T * r, sizeof(float), &ok), s.ldu = zalloc(T * r, sizeof(float), &ok);
    if (ok) {
        for (size_t x = 0; x < T; x++)
            bee_rms_bwd(dh + x * d, t->g.out_norm, dhf + x * d, c->hl + x * d, t->w.out_norm, c->fr[x], d, 0);
        for (uint32_t l = t->hp.n_layers; l-- > 0;) {
            if (t->has_ffn[l]) ffn_bwd(c, l, dh, &s);
            if (t->has_att[l]) att_bwd(c, l, dh, &s);
        }
        for (size_t x = 0; x < T; x++) embed_bwd(t, c->b->inputs[x], c->b->inputs_sub[x], dh + x * d);
    }
    free(dh), free(s.dy), free(s.da), free(s.b0), free(s.b1), free(s.b2), free(s.lu), free(s.ldu);
    return ok ? 0 : bee_fail("out of memory");
}

/* ================================================================ logits and loss */

typedef struct {
    float *hs;  // (LOGIT_CHUNK, d) final hidden / sqrt(d)
    float *lg;  // (LOGIT_CHUNK, n_vocab) logits, then their gradient
    float *lx;  // (LOGIT_CHUNK, n_ext) ext-column logits, then their gradient
    float *dhs; // (LOGIT_CHUNK, d)
    float *dx;  // (n_ext, d) gradient of the ext embeddings
    size_t *rows; // (LOGIT_CHUNK) positions of the chunk
    double *nll;  // (LOGIT_CHUNK) per-row NLL
} logit_bufs;

/* Log-sum-exp over both column groups, accumulated in double. */
static double row_lse(const float *lg, size_t V, const float *lx, size_t E) {
    float mx = -INFINITY;
    for (size_t v = 0; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    for (size_t j = 0; j < E; j++) mx = lx[j] > mx ? lx[j] : mx;
    double s = 0;
    for (size_t v = 0; v < V; v++) s += exp((double)lg[v] - mx);
    for (size_t j = 0; j < E; j++) s += exp((double)lx[j] - mx);
    return mx + log(s);
}

/* softmax - onehot, times coef (rows without a target get no gradient). */
static void row_dlogits(float *lg, size_t V, float *lx, size_t E, double lse, int32_t tg, float coef) {
    for (size_t v = 0; v < V; v++) lg[v] = tg < 0 ? 0 : (float)exp((double)lg[v] - lse) * coef;
    for (size_t j = 0; j < E; j++) lx[j] = tg < 0 ? 0 : (float)exp((double)lx[j] - lse) * coef;
    if (tg >= 0 && (size_t)tg < V) lg[tg] -= coef;
    else if (tg >= 0) lx[(size_t)tg - V] -= coef;
}

typedef struct {
    train_ctx *c;
    logit_bufs *lb;
    int backward;
    float coef;
    bee_train_trace *tr;
} logit_job;

/* Per row: ext-column logits, logsumexp, the token's NLL (summed later in
 * row order, so the loss does not depend on the thread count) and, for the
 * backward, the logit gradient in place. */
static void logit_rows_range(void *ctx, size_t b, size_t e, int ith) {
    const logit_job *j = ctx;
    train_ctx *c = j->c;
    logit_bufs *lb = j->lb;
    size_t d = c->d, V = c->t->hp.n_vocab, E = c->b->n_ext;
    (void)ith;
    for (size_t r = b; r < e; r++) {
        size_t x = lb->rows[r];
        int32_t tg = c->b->targets[x];
        float *lg = lb->lg + r * V, *lx = lb->lx + r * E;
        for (size_t k = 0; k < E; k++) lx[k] = bee_dot_ref(c->hf + x * d, c->ext + k * d, d);
        double lse = row_lse(lg, V, lx, E);
        double nll = tg < 0 ? 0 : lse - (tg < (int32_t)V ? lg[tg] : lx[tg - (int32_t)V]);
        lb->nll[r] = nll;
        if (j->tr && j->tr->logsumexp) j->tr->logsumexp[x] = (float)lse;
        if (j->tr && j->tr->token_nll) j->tr->token_nll[x] = (float)nll;
        if (j->backward) row_dlogits(lg, V, lx, E, lse, tg, j->coef);
    }
}

static void logit_chunk(train_ctx *c, logit_bufs *lb, size_t n, int backward, float coef, float *dhf,
                        bee_train_trace *tr) {
    bee_train_model *t = c->t;
    size_t d = c->d, E = c->b->n_ext, V = t->hp.n_vocab;
    float sd = sqrtf((float)d);
    for (size_t r = 0; r < n; r++)
        for (size_t e = 0; e < d; e++) lb->hs[r * d + e] = c->hf[lb->rows[r] * d + e] / sd;
    bee_mm_fwd(t->pool, lb->lg, V, lb->hs, t->w.tok_embd, n, V, d, 1.0f);
    logit_job lj = {c, lb, backward, coef, tr};
    bee_pool_for(t->pool, n, 4, logit_rows_range, &lj);
    for (size_t r = 0; r < n; r++) c->nll_sum += lb->nll[r];
    if (!backward) return;
    bee_mm_dx(t->pool, lb->dhs, lb->lg, t->w.tok_embd, n, V, d, 0);
    mm_dw(t->pool, t->g.tok_embd, lb->lg, lb->hs, n, V, d);
    for (size_t r = 0; r < n; r++) {
        float *g = dhf + lb->rows[r] * d;
        const float *hf = c->hf + lb->rows[r] * d;
        for (size_t e = 0; e < d; e++) g[e] += lb->dhs[r * d + e] / sd;
        for (size_t j = 0; j < E; j++) {
            float gl = lb->lx[r * E + j];
            for (size_t e = 0; e < d; e++) g[e] += gl * c->ext[j * d + e], lb->dx[j * d + e] += gl * hf[e];
        }
    }
}

/* Logits of the positions that have a target (all positions when the caller
 * wants every logsumexp), LOGIT_CHUNK rows at a time so the full
 * (T, n_vocab) matrix never exists. */
static int logits_loss(train_ctx *c, int backward, float grad_scale, float *dhf, bee_train_trace *tr) {
    size_t d = c->d, V = c->t->hp.n_vocab, E = c->b->n_ext;
    int all = tr && tr->logsumexp, ok = 1;
    logit_bufs lb;
    lb.hs = zalloc(LOGIT_CHUNK * d, sizeof(float), &ok), lb.lg = zalloc(LOGIT_CHUNK * V, sizeof(float), &ok);
    lb.lx = zalloc(LOGIT_CHUNK * E, sizeof(float), &ok), lb.dhs = zalloc(LOGIT_CHUNK * d, sizeof(float), &ok);
    lb.dx = zalloc(E * d, sizeof(float), &ok), lb.rows = zalloc(LOGIT_CHUNK, sizeof(size_t), &ok);
    lb.nll = zalloc(LOGIT_CHUNK, sizeof(double), &ok);
    if (tr && tr->token_nll) memset(tr->token_nll, 0, c->T * sizeof(float));
    float coef = c->n_targets ? grad_scale / (float)c->n_targets : 0;
    size_t n = 0;
    for (size_t x = 0; ok && x < c->T; x++) {
        if (!all && c->b->targets[x] == IGNORE_INDEX) continue;
        lb.rows[n++] = x;
        if (n == LOGIT_CHUNK) logit_chunk(c, &lb, n, backward, coef, dhf, tr), n = 0;
    }
    if (ok && n) logit_chunk(c, &lb, n, backward, coef, dhf, tr);
    for (size_t j = 0; ok && backward && j < E; j++) embed_bwd(c->t, c->b->ext_ids[j], c->b->ext_sub[j], lb.dx + j * d);
    free(lb.hs), free(lb.lg), free(lb.lx), free(lb.dhs), free(lb.dx), free(lb.rows), free(lb.nll);
    return ok ? 0 : bee_fail("out of memory for the logits");
}

/* ================================================================ driver */

int bee_train_forward_backward(bee_train_model *t, const bee_train_batch *b, int backward, float grad_scale,
                               bee_train_result *res, bee_train_trace *trace) {
    memset(res, 0, sizeof *res);
    if (check_batch(t, b)) return -1;
    train_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t, c.b = b;
    c.T = (size_t)b->B * b->L, c.d = t->hp.dim, c.H = t->hp.n_heads, c.dh = t->hp.dim_head;
    c.A = c.H * c.dh, c.F = t->hp.dim_ff;
    for (size_t x = 0; x < c.T; x++) c.n_targets += b->targets[x] != IGNORE_INDEX;
    float *dhf = NULL;
    int rc = ctx_alloc(&c);
    if (rc == 0 && backward && !(dhf = calloc(c.T * c.d, sizeof *dhf))) rc = bee_fail("out of memory");
    if (rc == 0) rc = build_bias_rows(&c);
    if (rc == 0) rc = forward(&c);
    if (rc == 0 && trace && trace->hidden) memcpy(trace->hidden, c.hf, c.T * c.d * sizeof(float));
    if (rc == 0) rc = logits_loss(&c, backward, grad_scale, dhf, trace);
    if (rc == 0 && backward) rc = backward_pass(&c, dhf);
    if (rc == 0) {
        res->n_targets = c.n_targets;
        res->loss = c.n_targets ? c.nll_sum / (double)c.n_targets : 0;
    }
    free(dhf);
    ctx_free(&c);
    return rc;
}
