/* LoRA adapters (CPM-Bee / OpenDelta-style delta tuning) on project_q and
 * project_v of every attention block: y += (alpha / r) * B (A x), where x is
 * the block's normed input (before the base linear's 1/sqrt(dim) scale),
 * A is (r, dim) and B is (n_heads * dim_head, r).
 *
 * One flat fp32 buffer holds every A and B (so training can treat the
 * adapter as one parameter vector); the same struct serves training
 * (src/train) and inference (bee_forward when bee_model.lora is set). */
#ifndef BEE_MODEL_LORA_H
#define BEE_MODEL_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

#define BEE_LORA_ARCH "cpmbee-lora"
#define BEE_LORA_KEY_RANK "cpmbee-lora.rank"
#define BEE_LORA_KEY_ALPHA "cpmbee-lora.alpha"
#define BEE_LORA_KEY_TARGETS "cpmbee-lora.target_modules" /* string array: project_q, project_v */
#define BEE_LORA_KEY_BASE "cpmbee-lora.base_model"        /* general.name of the base */
#define BEE_LORA_KEY_DIM "cpmbee-lora.embedding_length"
#define BEE_LORA_KEY_WIDTH "cpmbee-lora.attention.width"  /* n_heads * dim_head */
#define BEE_LORA_KEY_LAYERS "cpmbee-lora.block_count"
#define BEE_LORA_T_A "blk.%u.attn_%s.lora_a" /* (r, dim), %s = q or v */
#define BEE_LORA_T_B "blk.%u.attn_%s.lora_b" /* (width, r) */

enum { BEE_LORA_Q = 0, BEE_LORA_V = 1 };

typedef struct bee_lora {
    uint32_t rank, n_layers, dim, width;
    float alpha;
    uint8_t *has;   // (n_layers) 1 = layer has an adapter (its attention is not pruned)
    float **a, **b; // (n_layers * 2) [layer * 2 + which]; NULL where has[layer] = 0
    float *mem;     /* every A and B, layer by layer: A_q, B_q, A_v, B_v */
    size_t n;       /* floats in mem */
    char *base;     /* base model name recorded in the file */
} bee_lora;

/* Adapter for a model of this shape: A ~ N(0, 1/dim) from seed, B = 0 (so the
 * adapted model starts equal to the base). has_att: (n_layers) or NULL = all. */
int bee_lora_init(bee_lora *lo, const bee_hparams *hp, const uint8_t *has_att, uint32_t rank, float alpha,
                  uint64_t seed);
void bee_lora_free(bee_lora *lo);
/* (alpha / r): the factor of B A x. */
float bee_lora_scale(const bee_lora *lo);

/* y[t] += scale * B (A x[t]) for n rows; x (n, dim), y (n, ldy). */
int bee_lora_add(const bee_lora *lo, uint32_t layer, int which, size_t n, const float *x, float *y, size_t ldy);

int bee_lora_write(const bee_lora *lo, const char *path, const char *base_name);
/* Reads an adapter and checks it fits a model of this shape (has_att: NULL = all). */
int bee_lora_read(const char *path, const bee_hparams *hp, const uint8_t *has_att, bee_lora *lo);

/* Loads an adapter applied by every later bee_forward of m (without merging);
 * replaces an adapter applied before. */
int bee_model_apply_lora(bee_model *m, const char *path);

#endif
