/* Reference (scalar, fp32) kernels. Every fast kernel added later is tested
 * against these. */
#ifndef BEE_KERNELS_H
#define BEE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* A weight matrix (rows, cols) stored row-major in one of the bee types. */
enum { BEE_LAYOUT_ROWS = 0, BEE_LAYOUT_PANEL = 1 };

typedef struct {
    uint32_t type;
    const void *data;
    uint64_t rows, cols;
    uint32_t layout; /* BEE_LAYOUT_ROWS (row-major, as in GGUF) or BEE_LAYOUT_PANEL (kernels/panel.h) */
} bee_weight;

/* Row r as fp32: returns a pointer to the data itself for row-major F32,
 * else converts into tmp (cols floats, always required) and returns tmp. */
const float *bee_weight_row(const bee_weight *w, uint64_t r, float *tmp);
/* Converts a whole 1-D weight to fp32 (n = rows * cols). */
void bee_weight_to_f32(const bee_weight *w, float *dst);

/* y[t, o] = dot(x[t, :], W[o, :]) / div for t < n_tok; x is (n_tok, cols),
 * y is (n_tok, ldy) with o < rows. Fails only when out of memory. */
int bee_matmul_ref(float *y, size_t ldy, const float *x, size_t n_tok, const bee_weight *w, float div);
float bee_dot_ref(const float *a, const float *b, size_t n);
/* y = x * rsqrt(mean(x^2) + eps) * w */
void bee_rmsnorm_ref(float *y, const float *x, const float *w, size_t n, float eps);
float bee_gelu_ref(float x);

#endif
