/* `bee init`: models with random weights in the CPM-Bee shapes, for tests,
 * demos and benchmarks before trained weights exist. */
#ifndef BEE_MODEL_INIT_H
#define BEE_MODEL_INIT_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    bee_hparams hp;
    uint8_t *mask;       /* NULL or 2 * n_layers pruning flags (owned by caller) */
    const char *vocab;   /* vocab.txt path, or NULL for the builtin vocabulary */
    uint32_t type;       /* weight type */
    uint64_t seed;
    const char *name;
} bee_init_opts;

/* Fills hp (and *mask, malloc'd, for the compressed shapes) from a preset:
 * "tiny", "small", "cpm-bee-1b", "cpm-bee-2b", "cpm-bee-5b", "cpm-bee-10b".
 * n_vocab is left 0 (set from the vocabulary). */
int bee_init_preset(const char *shape, bee_hparams *hp, uint8_t **mask);
int bee_model_init_random(const char *path, const bee_init_opts *o);

/* The random source of bee init (splitmix64) and a Box-Muller N(0, 1) from it;
 * shared with the training code's random init so both stay reproducible. */
uint64_t bee_rng_next(uint64_t *s);
float bee_rng_normal(uint64_t *s);

#endif
