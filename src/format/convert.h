/* `bee convert`: upstream CPM-Bee checkpoints (torch zip / safetensors, fp32,
 * fp16 or bf16, upstream or HF key names, upstream or HF config) → GGUF. */
#ifndef BEE_FORMAT_CONVERT_H
#define BEE_FORMAT_CONVERT_H

#include <stdio.h>

#include "model/model.h"

typedef struct {
    const char *src;    /* checkpoint file, or an HF-layout folder */
    const char *config; /* NULL: <folder>/config.json or beside the file */
    const char *vocab;  /* NULL: <folder>/vocab.txt or beside the file */
    const char *out;
    const char *name;   /* general.name; NULL: derived from src */
    int dtype;          /* enum bee_type, or -1 to keep each tensor's type */
} bee_convert_opts;

/* Upstream config.json (cpm_live or HF field names) → hparams + mask_modules.
 * mask is malloc'd (2 * n_layers bytes, 1 = pruned) or NULL when absent. */
int bee_config_load(const char *path, bee_hparams *hp, uint8_t **mask);

int bee_convert(const bee_convert_opts *o, FILE *log);

/* Maps an upstream state-dict key (with or without the HF "cpmbee." prefix)
 * to its GGUF tensor name; -1 if the key is not a CPM-Bee weight. */
int bee_convert_tensor_name(const char *key, char *out, size_t n);

/* Writes a model GGUF: metadata, vocabulary and the given tensors (names per
 * model/arch.h). Shared by the converter and `bee init`. */
typedef struct {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[2]; /* ne[0] = fastest (input) dimension */
    const void *data;
    size_t nbytes;
} bee_model_tensor;

int bee_model_write(const char *path, const char *name, const bee_hparams *hp, const uint8_t *mask,
                    const char *const *tokens, const uint64_t *token_lens, const bee_model_tensor *t, size_t n_t);

#endif
