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
    /* All H heads of one query at once, each cached row read once (head h of
     * row i at rows + idx[i] * stride + h * hb bytes), each head exactly as
     * dots / wsum compute it:
     *   dots_heads: out[h * ldo + i] = q_h . row_i,h   (q_h = q + h * dh);
     *   wsum_heads: out[h * dh + e] = sum_i p[h * ldp + i] * row_i,h[e]. */
    void (*dots_heads)(size_t n, size_t H, size_t dh, const float *q, const void *rows, size_t stride, size_t hb,
                       const int32_t *idx, float *out, size_t ldo);
    void (*wsum_heads)(size_t n, size_t H, size_t dh, const float *p, size_t ldp, const void *rows, size_t stride,
                       size_t hb, const int32_t *idx, float *out);
} bee_attn_kernels;

/* Prefill of many queries against one head of the cache:
 *   pack_keys: keys [0, n) as fp32 panels of 16 keys, kp[j / 16][e][j % 16]
 *              (the last panel zero-padded);
 *   qk: S[t][j] = q_t . k_j for T <= 12 queries and every key, one fma
 *       chain per score over e in order;
 *   pv: out[t][e] = sum_j P[t][j] v_j[e] for T <= 4 queries, one fma chain
 *       over j in order; v_j is at rows + idx[j] * stride (a paged cache), or
 *       at rows + j * stride when idx is NULL. */
typedef struct {
    void (*qk)(size_t T, size_t n, size_t dh, const float *q, size_t ldq, const float *kp, float *S, size_t lds);
    void (*pv)(size_t T, size_t n, size_t dh, const float *P, size_t ldp, const void *rows, size_t stride,
               const int32_t *idx, float *out, size_t ldo);
} bee_attn_tile_kernels;

void bee_attn_pack_keys(uint32_t type, size_t n, size_t dh, const void *rows, size_t stride, float *kp);
const bee_attn_tile_kernels *bee_attn_tile_get(uint32_t type);
const bee_attn_tile_kernels *bee_attn_tile_ref(uint32_t type);

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
    /* x[i] = exp(x[i] - mx) for x[i] <= mx; returns the sum */
    float (*exp_sum)(float *x, size_t n, float mx);
    /* training backward of z = gelu(g) u: dg = dz u gelu'(g) / s and
     * du = dz gelu(g) / s, gelu'(x) = Phi(x) + x phi(x) (same erf as gelu_mul) */
    void (*gelu_bwd)(float *dg, float *du, const float *dz, const float *g, const float *u, size_t n, float s);
} bee_eltwise_kernels;

const bee_eltwise_kernels *bee_eltwise_get(void);
const bee_eltwise_kernels *bee_eltwise_ref(void);

#endif
