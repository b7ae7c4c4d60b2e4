/* Dense fp32 kernels of the training pass (see ops.h). */
#include "train/ops.h"

#include <math.h>
#include <string.h>

#include "kernels/gemm.h"
#include "util/types.h"

/* ================================================================ matmuls */

/* The three products of a linear layer as strided views for bee_gemm, so no
 * operand is ever transposed in memory. */

void bee_mm_fwd(bee_pool *p, float *y, size_t ldy, const float *x, const float *W, size_t n, size_t rows, size_t cols,
                float div) {
    bee_gemm_args g = {n, rows, cols, x, cols, 1, W, 1, cols, y, ldy, 0, div};
    bee_gemm(p, &g);
}

void bee_mm_dx(bee_pool *p, float *dx, const float *dy, const float *W, size_t n, size_t rows, size_t cols, int accumulate) {
    bee_gemm_args g = {n, cols, rows, dy, rows, 1, W, cols, 1, dx, cols, accumulate, 1.0f};
    bee_gemm(p, &g);
}

void bee_mm_dw(bee_pool *p, float *dW, const float *dy, const float *x, size_t n, size_t rows, size_t cols) {
    bee_gemm_args g = {rows, cols, n, dy, 1, rows, x, cols, 1, dW, cols, 1, 1.0f};
    bee_gemm(p, &g);
}

/* ================================================================ norm, gelu */

float bee_rms_fwd(float *y, const float *x, const float *w, size_t n, float eps) {
    float ss = 0;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
    return r;
}

/* y_i = x_i r w_i with dr/dx_i = -r^3 x_i / n. */
void bee_rms_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, float r, size_t n, int accumulate) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)dy[i] * w[i] * x[i];
    float c = (float)(s * r * r * r / (double)n);
    for (size_t i = 0; i < n; i++) {
        float g = dy[i] * w[i] * r - c * x[i];
        dx[i] = accumulate ? dx[i] + g : g;
        if (dw) dw[i] += dy[i] * x[i] * r;
    }
}

/* d/dx of x * Phi(x) = Phi(x) + x * phi(x). */
float bee_gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
