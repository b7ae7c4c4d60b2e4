/* Training in C: fp32 parameters and gradients (one allocation each, carved
 * into tensors), a training forward over a packed batch in the upstream
 * training layout (SPEC §3, §5.1; golden/train), cross-entropy, the full
 * backward pass, AdamW as torch 1.13 `_single_tensor_adamw`, a warmup +
 * cosine learning-rate schedule and global-norm clipping.
 *
 * Everything is computed in a fixed order per output element, so results do
 * not depend on the number of threads. */
#ifndef BEE_TRAIN_H
#define BEE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "util/threadpool.h"

/* ================================================================ parameters */

typedef struct {
    float *att_norm;      // (dim)                      NULL when the attention block is pruned
    float *wq, *wk, *wv;  // (n_heads * dim_head, dim)
    float *wo;            // (dim, n_heads * dim_head)
    float *ffn_norm;      // (dim)                      NULL when the FFN block is pruned
    float *w_gate;        // (dim_ff, dim)              upstream w_in.w_0 (through GELU)
    float *w_up;          // (dim_ff, dim)              upstream w_in.w_1
    float *w_down;        // (dim, dim_ff)
} bee_tlayer;

/* A full set of tensors carved out of one allocation (`mem`, n floats). The
 * same layout is used for weights, gradients and both AdamW moments. */
typedef struct {
    float *tok_embd;    // (n_vocab, dim)               also the tied output projection
    float *pos_bias;    // (n_buckets + n_seg_buckets, n_heads)
    float *out_norm;    // (dim)
    bee_tlayer *layers; // (n_layers)
    float *mem;
    size_t n;
} bee_params;

/* Allocates / frees a zeroed bee_params with the model's layout. */
struct bee_train_model;
int bee_params_alloc(const struct bee_train_model *t, bee_params *p);
void bee_params_free(bee_params *p);

/* One named tensor of the layout (GGUF name, rows x cols, offset in floats). */
typedef struct {
    char name[48];
    uint64_t rows, cols; /* rows = 1 for vectors */
    size_t offset;
} bee_ptensor;

typedef struct bee_train_model {
    bee_hparams hp;
    uint8_t *has_att, *has_ffn; // (n_layers)
    bee_params w;               /* weights */
    bee_params g;               /* gradients (accumulated by the backward pass) */
    bee_ptensor *tensors;       // (n_tensors) in storage order
    size_t n_tensors;
    size_t n_params;            /* floats in each bee_params allocation */
    float *inv_freq;            // (dim / 2) rotary frequencies, as the inference model
    char **tokens;              // (n_vocab) vocabulary for writing GGUF; NULL for in-memory models
    uint64_t *token_lens;       // (n_vocab)
    bee_pool *pool;             /* NULL = one thread */
    struct bee_lora *lora;      /* adapter trained instead of the weights (not owned), or NULL */
    float *lora_g;              // (lora->n) its gradient, same layout as lora->mem
} bee_train_model;

/* Dequantizes a loaded model into fp32 training tensors (grads zeroed). */
int bee_train_model_from(const bee_model *m, bee_train_model *t);
/* In-memory model with random weights (N(0, 1) matrices, norms 1 + 0.1 N,
 * position bias 0.1 N) for tests and training from scratch; mask: NULL or
 * 2 * n_layers pruning flags. No vocabulary: it cannot be written to GGUF. */
int bee_train_model_random(const bee_hparams *hp, const uint8_t *mask, uint64_t seed, bee_train_model *t);
void bee_train_model_free(bee_train_model *t);
/* Writes the current weights (fp32) as a model GGUF. */
int bee_train_model_write(const bee_train_model *t, const char *path, const char *name);
int bee_train_set_threads(bee_train_model *t, int n);
/* Index of a tensor by GGUF name, or -1. */
int bee_train_find_tensor(const bee_train_model *t, const char *name);
void bee_train_zero_grad(bee_train_model *t);
/* LoRA delta tuning: the forward adds the adapter to project_q / project_v and
 * the backward writes only the adapter's gradient (t->lora_g). The base
 * gradients are freed and never computed: the base weights are frozen. */
int bee_train_lora_attach(bee_train_model *t, struct bee_lora *lo);
/* The flat buffer the optimizer updates (every weight, or the LoRA adapter
 * when one is attached), its gradient (*grad, may be NULL) and length. */
float *bee_train_flat(bee_train_model *t, float **grad, size_t *n);
/* Folds an adapter into the weights: W += sqrt(dim) * (alpha / r) * B A (the
 * base linear divides its output by sqrt(dim), the adapter path does not). */
int bee_train_lora_merge(bee_train_model *t, const struct bee_lora *lo);

/* ================================================================ batch */

/* A packed batch in the upstream training layout (pretrain.py pack_batch):
 * B rows of L tokens; positions are the array index; tokens of different spans
 * or samples never attend to each other; tokens at index >= length are padding. */
typedef struct {
    uint32_t B, L;
    const int32_t *inputs;          // (B, L) base token ids
    const int32_t *inputs_sub;      // (B, L) subscripts
    const int32_t *length;          // (B) valid tokens per row
    const uint8_t *context;         // (B, L) 1 = context token
    const int32_t *sample_ids;      // (B, L)
    const int32_t *num_segments;    // (B, L)
    const int32_t *segment_ids;     // (B, L)
    const int32_t *segment_rel_offset; // (B, L)
    const int32_t *spans;           // (B, L)
    const int32_t *segment_rel;     // (B, n_seg_rel)
    size_t n_seg_rel;
    const int32_t *ext_ids, *ext_sub; // (n_ext) batch ext table: logit columns n_vocab + j
    size_t n_ext;
    const int32_t *targets;         // (B, L) column index, or -100 = ignored
} bee_train_batch;

/* Optional per-position outputs of the forward (each may be NULL). */
typedef struct {
    float *hidden;    // (B, L, dim) after the final norm
    float *logsumexp; // (B, L) over all n_vocab + n_ext columns
    float *token_nll; // (B, L) -log p(target), 0 where ignored
} bee_train_trace;

typedef struct {
    double loss;      /* mean NLL over the non-ignored targets (0 if none) */
    size_t n_targets;
} bee_train_result;

/* Forward + loss; with backward != 0 also adds grad_scale * d loss / d params
 * to t->g (so micro-batches accumulate; zero them with bee_train_zero_grad). */
int bee_train_forward_backward(bee_train_model *t, const bee_train_batch *b, int backward, float grad_scale,
                               bee_train_result *res, bee_train_trace *trace);

/* ================================================================ optimizer */

/* Hyperparameters as Python floats (double): torch derives 1 - beta etc. in
 * double and rounds each scalar to float once. */
typedef struct {
    double beta1, beta2, eps, weight_decay;
} bee_adamw_cfg;

typedef struct {
    bee_params m, v; /* first / second moments, same layout as the weights */
    uint64_t step;   /* steps taken */
} bee_adamw;

int bee_adamw_init(bee_adamw *o, const bee_train_model *t);
void bee_adamw_free(bee_adamw *o);
/* One AdamW step on every tensor with learning rate lr (the schedule's value). */
void bee_adamw_step(bee_adamw *o, bee_train_model *t, const bee_adamw_cfg *c, double lr);
/* The same update on n contiguous floats (step = steps taken including this one). */
void bee_adamw_update(float *p, const float *g, float *m, float *v, size_t n, uint64_t step, const bee_adamw_cfg *c,
                      double lr);

/* Linear warmup over `warmup` steps (step s < warmup gets lr_max (s+1)/warmup),
 * then cosine decay from lr_max to lr_min at step `total` (lr_min after).
 * step counts from 0. */
typedef struct {
    double lr_max, lr_min;
    uint64_t warmup, total;
} bee_lr_schedule;
double bee_lr_at(const bee_lr_schedule *s, uint64_t step);

/* L2 norm of all gradients (fp64 accumulation; the adapter's when training LoRA). */
double bee_grad_norm(const bee_train_model *t);
/* Scales the gradients so their global norm is at most max_norm (torch
 * clip_grad_norm_: coefficient max_norm / (norm + 1e-6)); returns the norm
 * before clipping. */
double bee_grad_clip(bee_train_model *t, double max_norm);
/* Multiplies every gradient by s (e.g. 1 / micro-batches). */
void bee_grad_scale(bee_train_model *t, float s);

/* ================================================================ checkpoints */

/* Where a training run stands: with the weights and both AdamW moments this
 * is everything needed to continue bit-identically. */
typedef struct {
    uint64_t step;     /* optimizer steps taken */
    uint64_t epoch;    /* data epoch (selects the shuffle) */
    uint64_t cursor;   /* next example within the epoch's order */
    uint64_t seed;     /* data shuffle seed */
    uint64_t n_examples;
} bee_train_state;

/* Writes weights, moments and state atomically (temp file + rename). */
int bee_train_ckpt_save(const char *path, const bee_train_model *t, const bee_adamw *o, const bee_train_state *s);
/* Restores them into a model of the same shape (fails on any mismatch). */
int bee_train_ckpt_load(const char *path, bee_train_model *t, bee_adamw *o, bee_train_state *s);

#endif
