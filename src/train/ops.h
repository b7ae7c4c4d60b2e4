/* Dense fp32 building blocks of the training pass: the three matmuls of a
 * linear layer (forward, input gradient, weight gradient), RMSNorm and GELU
 * with their derivatives. Every output element is produced by one thread in a
 * fixed order, so results do not depend on the thread count. */
#ifndef BEE_TRAIN_OPS_H
#define BEE_TRAIN_OPS_H

#include <stddef.h>

#include "util/threadpool.h"

/* y[t, o] = dot(x[t, :], W[o, :]) / div; x (n, cols), W (rows, cols), y (n, ldy). */
void bee_mm_fwd(bee_pool *p, float *y, size_t ldy, const float *x, const float *W, size_t n, size_t rows, size_t cols,
                float div);
/* dx[t, i] (+)= sum_o dy[t, o] W[o, i]; dy (n, rows), dx (n, cols). */
void bee_mm_dx(bee_pool *p, float *dx, const float *dy, const float *W, size_t n, size_t rows, size_t cols, int accumulate);
/* dW[o, i] += sum_t dy[t, o] x[t, i]; dy (n, rows), x (n, cols). */
void bee_mm_dw(bee_pool *p, float *dW, const float *dy, const float *x, size_t n, size_t rows, size_t cols);

/* y = x * r * w with r = rsqrt(mean(x^2) + eps) (as bee_rmsnorm_ref); returns r. */
float bee_rms_fwd(float *y, const float *x, const float *w, size_t n, float eps);
/* dx (+)= d/dx, dw += d/dw of the above for the output gradient dy (dw NULL: frozen weights). */
void bee_rms_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float r, size_t n, int accumulate);

float bee_gelu_grad(float x);

#endif
