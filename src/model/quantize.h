/* `bee quantize`: rewrites a model's weight matrices in another type
 * (q8_0, q4_0, q4_1, f16, bf16, f32). Norms and the bias table stay f32. */
#ifndef BEE_MODEL_QUANTIZE_H
#define BEE_MODEL_QUANTIZE_H

#include <stdint.h>
#include <stdio.h>

typedef struct {
    uint32_t type;      /* weight matrices */
    int embd_type;      /* token embedding (also the output projection); -1 = default */
} bee_quantize_opts;

/* Default embedding type for a target: q8_0 for 4-bit targets, else the target. */
uint32_t bee_quantize_default_embd(uint32_t type);
/* Converts a float-typed or quantized tensor of n elements to `type` in a new buffer. */
void *bee_tensor_convert(const void *src, uint32_t from, uint32_t to, uint64_t n, size_t row_len);
int bee_model_quantize(const char *in, const char *out, const bee_quantize_opts *o, FILE *log);

#endif
