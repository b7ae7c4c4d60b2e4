/* CPM-Bee model: hyperparameters, weights (zero-copy views into a GGUF
 * mapping), per-sequence KV cache and the fp32 reference forward pass
 * (SPEC §3 and §7). */
#ifndef BEE_MODEL_H
#define BEE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "kernels/kernels.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    uint32_t n_vocab, dim, n_heads, dim_head, dim_ff, n_layers;
    uint32_t n_buckets, n_seg_buckets, max_distance;
    float eps, rope_base, rope_scale, residual_scale;
    int inv_freq_f16; /* round the rotary inv_freq to fp16 (upstream half=true) */
    int half;         /* upstream config "half" (informational) */
} bee_hparams;

typedef struct {
    int has_att, has_ffn;  /* false = pruned sub-block (mask_modules) */
    float *att_norm;       // (dim)
    bee_weight wq, wk, wv; // (n_heads * dim_head, dim)
    bee_weight wo;         // (dim, n_heads * dim_head)
    float *ffn_norm;       // (dim)
    bee_weight w_gate;     // (dim_ff, dim)
    bee_weight w_up;       // (dim_ff, dim)
    bee_weight w_down;     // (dim, dim_ff)
} bee_layer;

typedef struct bee_model {
    bee_hparams hp;
    char *name;
    bee_gguf *gguf;     /* owns the mapping the weights point into */
    bee_tokenizer *tok;
    bee_weight tok_embd; // (n_vocab, dim)
    float *pos_bias;     // (n_buckets + n_seg_buckets, n_heads)
    float *out_norm;     // (dim)
    float *inv_freq;     // (dim / 2)
    int32_t *pos_tab;    // (n_pos_tab) positional bucket of |rel| (before the +half for rel > 0)
    uint32_t n_pos_tab;
    bee_layer *layers;   // (n_layers)
    float *f32_pool;     /* one allocation carved into the small fp32 tensors above */
    struct bee_pool *pool; /* worker threads of the forward pass (NULL = one thread) */
    uint32_t kv_type;      /* element type of new sequences' KV caches (F32 default, F16, BF16) */
    void *panel_buf;       /* the matrices repacked into the panel layout (kernels/panel.h), or NULL */
    size_t panel_bytes;
    struct bee_lora *lora; /* adapter added to project_q / project_v (model/lora.h), or NULL */
} bee_model;

/* Starts n worker threads for this model's forward passes (0 = all cores). */
int bee_model_set_threads(bee_model *m, int n);
/* Element type of the KV caches of sequences initialised from now on: f32
 * (default: exact parity), f16 or bf16 (half the memory). */
int bee_model_set_kv_type(bee_model *m, uint32_t type);

/* Loads a GGUF model. The matrices are memory-mapped; when this CPU has
 * panel kernels for their type they are then repacked into anonymous memory
 * in the panel layout (the file pages are released as each one is done, so
 * the resident size stays about the file size). BEE_REPACK=0 keeps every
 * matrix mapped in place. */
int bee_model_load(const char *path, bee_model **out);
void bee_model_free(bee_model *m);
uint64_t bee_model_n_params(const bee_model *m);
uint64_t bee_model_n_bytes(const bee_model *m);
/* Validates hyperparameters (shared with the converter and `bee init`). */
int bee_hparams_check(const bee_hparams *hp);

/* ---------------------------------------------------------------- tokens */
/* One model input token (SPEC §3 notation). */
typedef struct {
    int32_t id, sub;  /* base vocab id and subscript */
    int32_t pos, seg; /* position and segment id */
    int32_t sid;      /* sample id (0 = main input) */
    int32_t nseg;     /* number of segments of its sample (0 = padding) */
    int32_t off;      /* offset of its sample's segment_rel block */
    int32_t ctx;      /* 1 = context token */
} bee_token;

/* ---------------------------------------------------------------- sequences
 * A sequence owns its KV cache and the per-key arrays the mask and bias need. */
typedef struct {
    uint32_t n, cap;   /* cached tokens and capacity (grows on demand) */
    uint32_t n_att;    /* layers with attention (pruned ones keep no cache) */
    uint32_t kv_type;  /* element type of k and v (the model's kv_type at init) */
    void **k, **v;     // n_att × (cap, n_heads * dim_head) elements of kv_type
    bee_token *keys;   // (cap)
    int32_t *seg_rel;  // (n_seg_rel)
    size_t n_seg_rel;
} bee_seq;

int bee_seq_init(bee_seq *s, const bee_model *m, uint32_t cap, const int32_t *seg_rel, size_t n_seg_rel);
/* Ensures room for cap tokens. */
int bee_seq_reserve(bee_seq *s, const bee_model *m, uint32_t cap);
void bee_seq_free(bee_seq *s);
/* Copies src's cache and keys into dst (same model; dst grows if needed). */
int bee_seq_copy(bee_seq *dst, const bee_seq *src, const bee_model *m);
/* Bytes held by one sequence's cache of cap tokens (the model's kv_type). */
size_t bee_seq_bytes(const bee_model *m, uint32_t cap);

/* ---------------------------------------------------------------- forward */
/* Batch ext table (SPEC §6.5): logits width = n_vocab + n. */
typedef struct {
    const int32_t *ids, *subs;
    size_t n;
} bee_ext;

/* Optional capture of intermediates for the first sequence of a batch
 * (golden parity tests and `bee forward --dump`). Arrays are malloc'd by the
 * forward pass; free with bee_trace_free. */
typedef struct {
    int enabled;
    size_t n_q, n_k;
    float *embedding;     // (n_q, dim)
    int32_t *rel_bucket;  // (n_q, n_k) segment bucket before the shift (0 = positional)
    uint8_t *mask;        // (n_q, n_k)
    float *pos_bias;      // (n_heads, n_q, n_k)
    float **layer_out;    // n_layers × (n_q, dim)
    float *hidden;        // (n_q, dim) after the final norm
    float *k0, *v0;       // (n_heads, n_k, dim_head) layer-0 cache after the call
} bee_trace;
void bee_trace_free(bee_trace *t, uint32_t n_layers);

typedef enum { BEE_LOGITS_NONE, BEE_LOGITS_LAST, BEE_LOGITS_ALL } bee_logits_mode;

/* Runs new tokens of several sequences in one pass (weights read once per
 * call): sequence i gets n_tok[i] tokens from toks[i], appended to its cache.
 * Logits (width n_vocab + ext->n) go to `logits`: one row per sequence for
 * LAST, one per token (in order) for ALL. */
int bee_forward(const bee_model *m, bee_seq *const *seqs, const bee_token *const *toks, const size_t *n_tok,
                size_t n_seq, const bee_ext *ext, bee_logits_mode mode, float *logits, bee_trace *trace);

/* The prefill of one sequence split by layers, for schedulers that interleave
 * a long prompt with the decode steps of other sequences. Context tokens
 * attend to each other in both directions, so a prompt cannot be split by
 * tokens; split by layers, the result is exact: the KV cache and logits are
 * bit-identical to one bee_forward call with this sequence alone.
 *   begin: checks the tokens, appends them to s (s->n grows at once, but the
 *          caches of layers not yet run are unfilled: s must not be used by
 *          any other forward pass until finish or cancel) and embeds them;
 *   step:  runs up to n_layers more layers (0 when all have run; after a
 *          failure, cancel);
 *   finish: runs the remaining layers, the final norm and the logits (as
 *          bee_forward for this one sequence) and frees p; on failure s is
 *          rolled back;
 *   cancel: s back to its length before begin, p freed (NULL is a no-op).
 * Between calls p holds the new tokens' hidden states, (n_tok, dim) floats;
 * each call allocates the layer scratch bee_forward would. The model's
 * thread count must not change between begin and finish (begin sizes the
 * per-thread attention scratch). No trace, one sequence, no LoRA swap. */
typedef struct bee_prefill bee_prefill;
int bee_prefill_begin(const bee_model *m, bee_seq *s, const bee_token *toks, size_t n_tok, bee_prefill **out);
int bee_prefill_step(bee_prefill *p, uint32_t n_layers);
uint32_t bee_prefill_layers_left(const bee_prefill *p);
int bee_prefill_finish(bee_prefill *p, const bee_ext *ext, bee_logits_mode mode, float *logits);
void bee_prefill_cancel(bee_prefill *p);

/* Embedding of (id, sub): E[id] / sqrt(dim), rotated by the subscript. */
void bee_embed(const bee_model *m, int32_t id, int32_t sub, float *out);
/* SPEC §3.8 positional bucket of rel = pos_k - pos_q. */
int32_t bee_position_bucket(int32_t rel, uint32_t n_buckets, uint32_t max_distance);

#endif
