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

/* ---------------------------------------------------------------- KV block pool
 * KV caches live in blocks of BEE_KV_BLOCK rows. For each attention layer a
 * pool holds one K region and one V region of cap_blocks x BEE_KV_BLOCK rows,
 * so physical row b * BEE_KV_BLOCK + r is valid in every layer and one row
 * index list serves all layers. Blocks are reference counted: sequences that
 * share a prefix share its blocks, and the first write into a shared block
 * copies it (copy on write). The regions grow by realloc up to the budget
 * (block ids stay valid; pointers into the regions do not). */
enum { BEE_KV_BLOCK = 64 };

typedef struct bee_kv_pool {
    uint32_t n_att, kv_type;
    size_t row_bytes;       /* one row of K or V of one layer */
    size_t budget_bytes;    /* as asked for (0 = unlimited), for messages */
    uint32_t max_blocks;    /* the budget in blocks (UINT32_MAX = unlimited) */
    uint32_t cap_blocks;    /* blocks the regions hold now */
    uint32_t n_used;        /* blocks with a reference */
    void **k, **v;          // n_att x (cap_blocks * BEE_KV_BLOCK, row width) elements of kv_type
    uint32_t *ref;          // (cap_blocks) references per block
    uint32_t *free_ids;     // (cap_blocks) stack of unreferenced blocks, lowest id on top
    uint32_t n_free;
    uint64_t n_shared;      /* block references taken instead of copies */
    uint64_t n_cow;         /* blocks copied on a write into a shared one */
} bee_kv_pool;

/* Bytes of one block over all attention layers (K and V) for the model's kv_type. */
size_t bee_kv_block_bytes(const bee_model *m);
/* A pool for the model's kv_type; budget_bytes 0 = unlimited, else it must
 * hold at least one block. */
int bee_kv_pool_init(bee_kv_pool *p, const bee_model *m, size_t budget_bytes);
void bee_kv_pool_free(bee_kv_pool *p);
/* One unreferenced block (reference count 1); fails naming the budget. */
int bee_kv_pool_alloc(bee_kv_pool *p, uint32_t *id);
void bee_kv_pool_share(bee_kv_pool *p, uint32_t id);
void bee_kv_pool_release(bee_kv_pool *p, uint32_t id);
/* Blocks that can still be allocated (free ones + room left in the budget). */
uint32_t bee_kv_pool_available(const bee_kv_pool *p);
/* Bytes the regions hold now. */
size_t bee_kv_pool_bytes(const bee_kv_pool *p);

/* ---------------------------------------------------------------- sequences
 * A sequence's KV cache is a table of pool blocks (logical row j lives in
 * block blocks[j / BEE_KV_BLOCK]), plus the per-key arrays the mask and bias
 * need. */
typedef struct {
    uint32_t n, cap;   /* cached tokens and capacity of keys (grows on demand) */
    uint32_t n_att;    /* layers with attention (pruned ones keep no cache) */
    uint32_t kv_type;  /* element type of the cache (the model's kv_type at init) */
    bee_kv_pool *pool; /* where the blocks live */
    int own_pool;      /* the pool is private to this sequence (freed with it) */
    uint32_t *blocks;  // (n_blk) pool block of each BEE_KV_BLOCK rows
    uint32_t n_blk, blk_cap;
    bee_token *keys;   // (cap)
    int32_t *seg_rel;  // (n_seg_rel)
    size_t n_seg_rel;
} bee_seq;

/* A sequence with a private pool, blocks for cap tokens allocated. */
int bee_seq_init(bee_seq *s, const bee_model *m, uint32_t cap, const int32_t *seg_rel, size_t n_seg_rel);
/* A sequence whose blocks come from a shared pool (of the model's kv_type),
 * allocated as tokens are appended. */
int bee_seq_init_pooled(bee_seq *s, const bee_model *m, bee_kv_pool *pool, const int32_t *seg_rel, size_t n_seg_rel);
/* Ensures room for cap tokens (keys and blocks). */
int bee_seq_reserve(bee_seq *s, const bee_model *m, uint32_t cap);
/* Makes rows [s->n, s->n + n_new) writable: room for them, and a shared
 * block they fall in copied first (copy on write). */
int bee_seq_prepare_append(bee_seq *s, const bee_model *m, uint32_t n_new);
/* Keeps the first n tokens, releasing the blocks past them. */
void bee_seq_truncate(bee_seq *s, uint32_t n);
void bee_seq_free(bee_seq *s);
/* dst becomes a copy of src (same model). Within one pool the blocks are
 * shared, not copied; across pools the rows are copied. */
int bee_seq_copy(bee_seq *dst, const bee_seq *src, const bee_model *m);
/* Bytes held by one sequence's cache of cap tokens (the model's kv_type). */
size_t bee_seq_bytes(const bee_model *m, uint32_t cap);
/* Physical pool row of logical row j. */
static inline size_t bee_seq_row(const bee_seq *s, uint32_t j) {
    return (size_t)s->blocks[j / BEE_KV_BLOCK] * BEE_KV_BLOCK + j % BEE_KV_BLOCK;
}

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
