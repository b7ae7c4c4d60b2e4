/* Dense fp32 kernels of the training pass (see ops.h). */
#include "train/ops.h"

#include <math.h>
#include <string.h>

#include "kernels/dot.h"
#include "kernels/kernels.h"
#include "util/types.h"

/* ================================================================ matmuls */

typedef struct {
    float *y;
    size_t ldy;
    const float *x, *W;
    size_t n, rows, cols;
    float div;
    int accumulate;
    const bee_dot_kernel *k;
} mm_job;

/* Threads own output columns o, so each W row is streamed once per thread. */
static void fwd_range(void *ctx, size_t begin, size_t end, int ith) {
    const mm_job *j = ctx;
    (void)ith;
    for (size_t o = begin; o < end; o++) {
        const float *w = j->W + o * j->cols;
        for (size_t t = 0; t < j->n; t++) j->y[t * j->ldy + o] = j->k->dot(j->cols, w, j->x + t * j->cols) / j->div;
    }
}

void bee_mm_fwd(bee_pool *p, float *y, size_t ldy, const float *x, const float *W, size_t n, size_t rows, size_t cols,
                float div) {
    mm_job j = {y, ldy, x, W, n, rows, cols, div, 0, bee_dot_kernel_get(BEE_TYPE_F32)};
    bee_pool_for(p, rows, 16, fwd_range, &j);
}

static void axpy(float *y, float a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* Threads own rows t of dx. */
static void dx_range(void *ctx, size_t begin, size_t end, int ith) {
    const mm_job *j = ctx;
    (void)ith;
    for (size_t t = begin; t < end; t++) {
        float *dx = j->y + t * j->cols;
        const float *dy = j->x + t * j->rows;
        if (!j->accumulate) memset(dx, 0, j->cols * sizeof *dx);
        for (size_t o = 0; o < j->rows; o++)
            if (dy[o] != 0) axpy(dx, dy[o], j->W + o * j->cols, j->cols);
    }
}

void bee_mm_dx(bee_pool *p, float *dx, const float *dy, const float *W, size_t n, size_t rows, size_t cols, int accumulate) {
    mm_job j = {dx, cols, dy, W, n, rows, cols, 1.0f, accumulate, NULL};
    bee_pool_for(p, n, 1, dx_range, &j);
}

/* Threads own rows o of dW. */
static void dw_range(void *ctx, size_t begin, size_t end, int ith) {
    const mm_job *j = ctx;
    (void)ith;
    for (size_t o = begin; o < end; o++) {
        float *dw = j->y + o * j->cols;
        for (size_t t = 0; t < j->n; t++) {
            float g = j->W[t * j->rows + o];
            if (g != 0) axpy(dw, g, j->x + t * j->cols, j->cols);
        }
    }
}

void bee_mm_dw(bee_pool *p, float *dW, const float *dy, const float *x, size_t n, size_t rows, size_t cols) {
    mm_job j = {dW, cols, x, dy, n, rows, cols, 1.0f, 1, NULL};
    bee_pool_for(p, rows, 16, dw_range, &j);
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
        dw[i] += dy[i] * x[i] * r;
    }
}

/* d/dx of x * Phi(x) = Phi(x) + x * phi(x). */
float bee_gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
