/* Vector kernels of the attention inner loop over the KV cache, whose rows
 * may be stored as f32, f16 or bf16. Chosen at run time like the dot kernels
 * (BEE_CPU caps the level); results never depend on the thread count. */
#ifndef BEE_KERNELS_VEC_H
#define BEE_KERNELS_VEC_H

#include <stddef.h>
#include <stdint.h>

/* Attention over selected cached rows (row i at rows + idx[i] * stride bytes,
 * dh elements of type F32, F16 or BF16):
 *   dots: out[i] = q . row_i, each as 16 lane sums (lane l takes elements
 *         l, l + 16, ... by fma) reduced by the fixed tree
 *         ((s0 + s2) + (s1 + s3)), s_L = (l0 + l2) + (l1 + l3) over the lanes
 *         4L .. 4L + 3;
 *   wsum: out[e] = sum_i p[i] * row_i[e], by fma in the order of i.
 * The reference computes exactly that, so every path agrees bit for bit. */
typedef struct {
    void (*dots)(size_t n, size_t dh, const float *q, const void *rows, size_t stride, const int32_t *idx, float *out);
    void (*wsum)(size_t n, size_t dh, const float *p, const void *rows, size_t stride, const int32_t *idx, float *out);
} bee_attn_kernels;

/* Kernels for a cache of `type` (any dh); NULL when unsupported. */
const bee_attn_kernels *bee_attn_get(uint32_t type, size_t dh);
const bee_attn_kernels *bee_attn_ref(uint32_t type);

/* Element-wise parts of a transformer block, per token row:
 *   rmsnorm: y = x / sqrt(mean(x^2) + eps) * w (sum of squares in 16 lanes,
 *            then a fixed tree; the reference sums in order: they agree to
 *            rounding, ~1e-7 relative);
 *   gelu_mul: g[i] = gelu(g[i]) * u[i], gelu(x) = x/2 (1 + erf(x / sqrt 2)),
 *            erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7) with a
 *            polynomial exp (the reference uses libm erff). */
typedef struct {
    void (*rmsnorm)(float *y, const float *x, const float *w, size_t n, float eps);
    void (*gelu_mul)(float *g, const float *u, size_t n);
} bee_eltwise_kernels;

const bee_eltwise_kernels *bee_eltwise_get(void);
const bee_eltwise_kernels *bee_eltwise_ref(void);

#endif
