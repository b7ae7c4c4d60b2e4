/* Readers for upstream checkpoint containers: PyTorch zip checkpoints
 * (torch.save >= 1.6: a ZIP of data.pkl + raw storages) and safetensors.
 * Tensors point into a read-only mapping of the file (zero-copy). */
#ifndef BEE_FORMAT_CKPT_H
#define BEE_FORMAT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#define BEE_CKPT_MAX_DIMS 8

typedef struct {
    char *name;                      /* state-dict key */
    uint32_t type;                   /* enum bee_type: F32, F16 or BF16 */
    int n_dims;
    int64_t shape[BEE_CKPT_MAX_DIMS]; /* PyTorch order: shape[0] outermost */
    const void *data;                /* contiguous, little-endian, into the mapping */
    size_t nbytes;
} bee_ckpt_tensor;

typedef struct bee_ckpt bee_ckpt;

/* Detects the format from the content (ZIP magic → torch, else safetensors). */
int bee_ckpt_open(const char *path, bee_ckpt **out);
/* Parses from a caller-owned buffer (fuzzers/tests); name used in messages.
 * The result points into data (tensor data, zero-copy): the buffer must stay
 * valid and unchanged until bee_ckpt_free. */
int bee_ckpt_open_torch_buffer(const void *data, size_t size, const char *name, bee_ckpt **out);
int bee_ckpt_open_safetensors_buffer(const void *data, size_t size, const char *name, bee_ckpt **out);
void bee_ckpt_free(bee_ckpt *c);

size_t bee_ckpt_count(const bee_ckpt *c);
const bee_ckpt_tensor *bee_ckpt_get(const bee_ckpt *c, size_t i);
const bee_ckpt_tensor *bee_ckpt_find(const bee_ckpt *c, const char *name);

/* Internal: shared by the torch and safetensors readers (format/torch.c holds
 * the container). Tensors are kept in insertion order; names are copied. */
bee_ckpt *bee_ckpt_new(const char *file);
int bee_ckpt_add(bee_ckpt *c, const char *name, uint32_t type, int n_dims, const int64_t *shape, const void *data,
                 size_t nbytes);
/* Builds the name index; fails on duplicate names. Call once after the last add. */
int bee_ckpt_finish(bee_ckpt *c);

#endif
