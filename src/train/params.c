/* Training parameters: layout of the single fp32 allocation, loading from a
 * bee_model, random init and writing back to GGUF. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/convert.h"
#include "model/arch.h"
#include "model/init.h"
#include "model/lora.h"
#include "train/train.h"
#include "util/error.h"
#include "util/types.h"

/* ================================================================ layout */

static int add_tensor(bee_train_model *t, const char *fmt, int layer, uint64_t rows, uint64_t cols, size_t *off) {
    bee_ptensor *p = &t->tensors[t->n_tensors++];
    snprintf(p->name, sizeof p->name, fmt, layer);
    p->rows = rows, p->cols = cols, p->offset = *off;
    *off += (size_t)(rows * cols);
    return 0;
}

/* Lists the tensors in storage order: global ones, then layer by layer. */
static int build_layout(bee_train_model *t) {
    const bee_hparams *hp = &t->hp;
    uint64_t d = hp->dim, A = (uint64_t)hp->n_heads * hp->dim_head, F = hp->dim_ff;
    t->tensors = calloc(3 + 9 * (size_t)hp->n_layers, sizeof *t->tensors);
    if (!t->tensors) return bee_fail("out of memory");
    size_t off = 0;
    add_tensor(t, BEE_T_TOK_EMBD, 0, hp->n_vocab, d, &off);
    add_tensor(t, BEE_T_POS_BIAS, 0, (uint64_t)hp->n_buckets + hp->n_seg_buckets, hp->n_heads, &off);
    add_tensor(t, BEE_T_OUT_NORM, 0, 1, d, &off);
    for (uint32_t l = 0; l < hp->n_layers; l++) {
        if (t->has_att[l]) {
            add_tensor(t, BEE_T_ATTN_NORM, (int)l, 1, d, &off);
            add_tensor(t, BEE_T_ATTN_Q, (int)l, A, d, &off);
            add_tensor(t, BEE_T_ATTN_K, (int)l, A, d, &off);
            add_tensor(t, BEE_T_ATTN_V, (int)l, A, d, &off);
            add_tensor(t, BEE_T_ATTN_OUT, (int)l, d, A, &off);
        }
        if (t->has_ffn[l]) {
            add_tensor(t, BEE_T_FFN_NORM, (int)l, 1, d, &off);
            add_tensor(t, BEE_T_FFN_GATE, (int)l, F, d, &off);
            add_tensor(t, BEE_T_FFN_UP, (int)l, F, d, &off);
            add_tensor(t, BEE_T_FFN_DOWN, (int)l, d, F, &off);
        }
    }
    t->n_params = off;
    return 0;
}

/* Points the fields of p at its allocation, in build_layout's order. */
static void carve(const bee_train_model *t, bee_params *p) {
    float *x = p->mem;
    size_t k = 0;
#define NEXT() (x + t->tensors[k++].offset)
    p->tok_embd = NEXT();
    p->pos_bias = NEXT();
    p->out_norm = NEXT();
    for (uint32_t l = 0; l < t->hp.n_layers; l++) {
        bee_tlayer *L = &p->layers[l];
        memset(L, 0, sizeof *L);
        if (t->has_att[l]) {
            L->att_norm = NEXT(), L->wq = NEXT(), L->wk = NEXT(), L->wv = NEXT(), L->wo = NEXT();
        }
        if (t->has_ffn[l]) {
            L->ffn_norm = NEXT(), L->w_gate = NEXT(), L->w_up = NEXT(), L->w_down = NEXT();
        }
    }
#undef NEXT
}

/* Allocates p with the model's layout (zeroed). */
int bee_params_alloc(const bee_train_model *t, bee_params *p) {
    size_t n = t->n_params; /* p may be t->w itself */
    memset(p, 0, sizeof *p);
    p->n = n;
    p->mem = calloc(p->n ? p->n : 1, sizeof *p->mem);
    p->layers = calloc(t->hp.n_layers, sizeof *p->layers);
    if (!p->mem || !p->layers) {
        free(p->mem), free(p->layers);
        memset(p, 0, sizeof *p);
        return bee_fail("out of memory for %zu training parameters", n);
    }
    carve(t, p);
    return 0;
}

void bee_params_free(bee_params *p) {
    free(p->mem);
    free(p->layers);
    memset(p, 0, sizeof *p);
}

static void init_inv_freq(bee_train_model *t) {
    uint32_t d = t->hp.dim;
    for (uint32_t j = 0; j < d / 2; j++) {
        float f = 1.0f / powf(t->hp.rope_base, (float)(2 * j) / (float)d);
        t->inv_freq[j] = t->hp.inv_freq_f16 ? bee_f16_to_f32(bee_f32_to_f16(f)) : f;
    }
}

/* Shape, masks, layout and the weight + gradient buffers. */
static int model_alloc(bee_train_model *t, const bee_hparams *hp, const uint8_t *has_att, const uint8_t *has_ffn) {
    memset(t, 0, sizeof *t);
    if (bee_hparams_check(hp)) return -1;
    t->hp = *hp;
    t->has_att = malloc(hp->n_layers);
    t->has_ffn = malloc(hp->n_layers);
    t->inv_freq = malloc(hp->dim / 2 * sizeof *t->inv_freq);
    if (!t->has_att || !t->has_ffn || !t->inv_freq) return bee_fail("out of memory");
    memcpy(t->has_att, has_att, hp->n_layers);
    memcpy(t->has_ffn, has_ffn, hp->n_layers);
    init_inv_freq(t);
    if (build_layout(t) || bee_params_alloc(t, &t->w) || bee_params_alloc(t, &t->g)) return -1;
    return 0;
}

/* ================================================================ from a model */

static void copy_weight(const bee_weight *w, float *dst) {
    for (uint64_t r = 0; r < w->rows; r++) {
        float *row = dst + r * w->cols;
        const float *src = bee_weight_row(w, r, row);
        if (src != row) memcpy(row, src, w->cols * sizeof *row);
    }
}

static int copy_vocab(const bee_model *m, bee_train_model *t) {
    uint32_t n = m->hp.n_vocab;
    t->tokens = calloc(n, sizeof *t->tokens);
    t->token_lens = calloc(n, sizeof *t->token_lens);
    if (!t->tokens || !t->token_lens) return bee_fail("out of memory");
    for (uint32_t i = 0; i < n; i++) {
        size_t len;
        const char *s = bee_tokenizer_text(m->tok, (int32_t)i, &len);
        t->tokens[i] = malloc(len + 1);
        if (!t->tokens[i]) return bee_fail("out of memory");
        memcpy(t->tokens[i], s, len);
        t->tokens[i][len] = 0;
        t->token_lens[i] = len;
    }
    return 0;
}

int bee_train_model_from(const bee_model *m, bee_train_model *t) {
    uint32_t nl = m->hp.n_layers;
    uint8_t *flags = malloc(2 * (size_t)nl + 1);
    if (!flags) return bee_fail("out of memory");
    for (uint32_t l = 0; l < nl; l++) flags[l] = (uint8_t)m->layers[l].has_att, flags[nl + l] = (uint8_t)m->layers[l].has_ffn;
    int rc = model_alloc(t, &m->hp, flags, flags + nl);
    free(flags);
    if (rc == 0) rc = copy_vocab(m, t);
    if (rc) {
        bee_train_model_free(t);
        return -1;
    }
    const bee_hparams *hp = &m->hp;
    copy_weight(&m->tok_embd, t->w.tok_embd);
    memcpy(t->w.pos_bias, m->pos_bias, (size_t)(hp->n_buckets + hp->n_seg_buckets) * hp->n_heads * sizeof(float));
    memcpy(t->w.out_norm, m->out_norm, hp->dim * sizeof(float));
    for (uint32_t l = 0; l < nl; l++) {
        const bee_layer *s = &m->layers[l];
        bee_tlayer *d = &t->w.layers[l];
        if (s->has_att) {
            memcpy(d->att_norm, s->att_norm, hp->dim * sizeof(float));
            copy_weight(&s->wq, d->wq), copy_weight(&s->wk, d->wk), copy_weight(&s->wv, d->wv);
            copy_weight(&s->wo, d->wo);
        }
        if (s->has_ffn) {
            memcpy(d->ffn_norm, s->ffn_norm, hp->dim * sizeof(float));
            copy_weight(&s->w_gate, d->w_gate), copy_weight(&s->w_up, d->w_up), copy_weight(&s->w_down, d->w_down);
        }
    }
    return 0;
}

/* ================================================================ random */


int bee_train_model_random(const bee_hparams *hp, const uint8_t *mask, uint64_t seed, bee_train_model *t) {
    uint32_t nl = hp->n_layers;
    uint8_t *flags = malloc(2 * (size_t)nl + 1);
    if (!flags) return bee_fail("out of memory");
    for (uint32_t l = 0; l < nl; l++) flags[l] = !(mask && mask[2 * l]), flags[nl + l] = !(mask && mask[2 * l + 1]);
    int rc = model_alloc(t, hp, flags, flags + nl);
    free(flags);
    if (rc) {
        bee_train_model_free(t);
        return -1;
    }
    uint64_t rng = seed;
    for (size_t k = 0; k < t->n_tensors; k++) {
        const bee_ptensor *p = &t->tensors[k];
        float *x = t->w.mem + p->offset;
        int is_norm = p->rows == 1, is_bias = strcmp(p->name, BEE_T_POS_BIAS) == 0;
        for (uint64_t i = 0; i < p->rows * p->cols; i++) {
            float z = bee_rng_normal(&rng);
            x[i] = is_norm ? 1.0f + 0.1f * z : is_bias ? 0.1f * z : z;
        }
    }
    return 0;
}

/* ================================================================ misc */

void bee_train_model_free(bee_train_model *t) {
    bee_params_free(&t->w);
    bee_params_free(&t->g);
    free(t->lora_g);
    for (uint32_t i = 0; t->tokens && i < t->hp.n_vocab; i++) free(t->tokens[i]);
    free(t->tokens);
    free(t->token_lens);
    free(t->tensors);
    free(t->has_att);
    free(t->has_ffn);
    free(t->inv_freq);
    bee_pool_free(t->pool);
    memset(t, 0, sizeof *t);
}

int bee_train_set_threads(bee_train_model *t, int n) {
    bee_pool_free(t->pool);
    t->pool = bee_pool_init(n);
    return t->pool ? 0 : bee_fail("cannot start %d threads", n);
}

int bee_train_find_tensor(const bee_train_model *t, const char *name) {
    for (size_t k = 0; k < t->n_tensors; k++)
        if (strcmp(t->tensors[k].name, name) == 0) return (int)k;
    return -1;
}

void bee_train_zero_grad(bee_train_model *t) {
    if (t->g.mem) memset(t->g.mem, 0, t->g.n * sizeof *t->g.mem);
    if (t->lora_g) memset(t->lora_g, 0, t->lora->n * sizeof *t->lora_g);
}

int bee_train_lora_attach(bee_train_model *t, bee_lora *lo) {
    if (lo->n_layers != t->hp.n_layers || lo->dim != t->hp.dim || lo->width != t->hp.n_heads * t->hp.dim_head)
        return bee_fail("the adapter's shape does not match the model");
    for (uint32_t l = 0; l < t->hp.n_layers; l++)
        if (lo->has[l] && !t->has_att[l]) return bee_fail("the adapter has layer %u, whose attention is pruned", l);
    float *g = calloc(lo->n ? lo->n : 1, sizeof *g);
    if (!g) return bee_fail("out of memory for the adapter's gradient");
    free(t->lora_g);
    t->lora_g = g;
    t->lora = lo;
    bee_params_free(&t->g); /* frozen base: the backward skips every base gradient */
    return 0;
}

int bee_train_model_write(const bee_train_model *t, const char *path, const char *name) {
    if (!t->tokens) return bee_fail("%s: this model has no vocabulary (random in-memory model); cannot write GGUF", path);
    uint32_t nl = t->hp.n_layers;
    bee_model_tensor *mt = calloc(t->n_tensors, sizeof *mt);
    uint8_t *mask = malloc(2 * (size_t)nl);
    if (!mt || !mask) {
        free(mt), free(mask);
        return bee_fail("out of memory");
    }
    int pruned = 0;
    for (uint32_t l = 0; l < nl; l++) {
        mask[2 * l] = !t->has_att[l], mask[2 * l + 1] = !t->has_ffn[l];
        pruned |= mask[2 * l] | mask[2 * l + 1];
    }
    for (size_t k = 0; k < t->n_tensors; k++) {
        const bee_ptensor *p = &t->tensors[k];
        mt[k] = (bee_model_tensor){p->name, BEE_TYPE_F32, p->rows == 1 ? 1 : 2, {p->cols, p->rows},
                                   t->w.mem + p->offset, (size_t)(p->rows * p->cols) * sizeof(float)};
    }
    int rc = bee_model_write(path, name ? name : "trained", &t->hp, pruned ? mask : NULL,
                             (const char *const *)t->tokens, t->token_lens, mt, t->n_tensors);
    free(mt), free(mask);
    return rc;
}

static void merge_one(float *W, const float *A, const float *B, size_t rows, size_t cols, size_t r, float k) {
    for (size_t o = 0; o < rows; o++)
        for (size_t i = 0; i < cols; i++) {
            float acc = 0;
            for (size_t j = 0; j < r; j++) acc += B[o * r + j] * A[j * cols + i];
            W[o * cols + i] += k * acc;
        }
}

int bee_train_lora_merge(bee_train_model *t, const bee_lora *lo) {
    if (lo->n_layers != t->hp.n_layers || lo->dim != t->hp.dim || lo->width != t->hp.n_heads * t->hp.dim_head)
        return bee_fail("the adapter's shape does not match the model");
    float k = bee_lora_scale(lo) * sqrtf((float)t->hp.dim);
    for (uint32_t l = 0; l < t->hp.n_layers; l++) {
        if (!lo->has[l]) continue;
        if (!t->has_att[l]) return bee_fail("the adapter has layer %u, whose attention is pruned", l);
        bee_tlayer *L = &t->w.layers[l];
        merge_one(L->wq, lo->a[2 * l], lo->b[2 * l], lo->width, lo->dim, lo->rank, k);
        merge_one(L->wv, lo->a[2 * l + 1], lo->b[2 * l + 1], lo->width, lo->dim, lo->rank, k);
    }
    return 0;
}

float *bee_train_flat(bee_train_model *t, float **grad, size_t *n) {
    if (t->lora) {
        if (grad) *grad = t->lora_g;
        *n = t->lora->n;
        return t->lora->mem;
    }
    if (grad) *grad = t->g.mem;
    *n = t->w.n;
    return t->w.mem;
}
