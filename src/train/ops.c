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

/* The gradient matmuls are axpy loops; on x86 GCC/clang also compile them for
 * AVX2 and AVX-512 and pick one at load time. ISO C mode keeps FP contraction
 * off, so every clone rounds exactly like the plain one. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define BEE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef BEE_CLONES
#define BEE_CLONES
#endif

BEE_CLONES static void axpy(float *y, float a, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* y_k[i] += a_k * x[i] for 4 rows at once, so x is read once for all of them;
 * each y_k accumulates in the same order as one row at a time. */
BEE_CLONES static void axpy4(float *y0, float *y1, float *y2, float *y3, const float a[4], const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y0[i] += a[0] * v, y1[i] += a[1] * v, y2[i] += a[2] * v, y3[i] += a[3] * v;
    }
}

static void axpy_rows(float *const y[4], const float a[4], const float *x, size_t n, size_t m) {
    if (m == 4) {
        axpy4(y[0], y[1], y[2], y[3], a, x, n);
        return;
    }
    for (size_t k = 0; k < m; k++)
        if (a[k] != 0) axpy(y[k], a[k], x, n);
}

/* Threads own rows t of dx, four at a time so each W row is read once per four. */
static void dx_range(void *ctx, size_t begin, size_t end, int ith) {
    const mm_job *j = ctx;
    (void)ith;
    for (size_t t = begin; t < end; t += 4) {
        size_t m = end - t < 4 ? end - t : 4;
        float *dx[4];
        for (size_t k = 0; k < m; k++) {
            dx[k] = j->y + (t + k) * j->cols;
            if (!j->accumulate) memset(dx[k], 0, j->cols * sizeof(float));
        }
        for (size_t o = 0; o < j->rows; o++) {
            float a[4] = {0, 0, 0, 0};
            int any = 0;
            for (size_t k = 0; k < m; k++) a[k] = j->x[(t + k) * j->rows + o], any |= a[k] != 0;
            if (any) axpy_rows(dx, a, j->W + o * j->cols, j->cols, m);
        }
    }
}

void bee_mm_dx(bee_pool *p, float *dx, const float *dy, const float *W, size_t n, size_t rows, size_t cols, int accumulate) {
    mm_job j = {dx, cols, dy, W, n, rows, cols, 1.0f, accumulate, NULL};
    bee_pool_for(p, n, 4, dx_range, &j);
}

/* Threads own rows o of dW, four at a time so each x row is read once per four. */
static void dw_range(void *ctx, size_t begin, size_t end, int ith) {
    const mm_job *j = ctx;
    (void)ith;
    for (size_t o = begin; o < end; o += 4) {
        size_t m = end - o < 4 ? end - o : 4;
        float *dw[4];
        for (size_t k = 0; k < m; k++) dw[k] = j->y + (o + k) * j->cols;
        for (size_t t = 0; t < j->n; t++) {
            float a[4] = {0, 0, 0, 0};
            int any = 0;
            for (size_t k = 0; k < m; k++) a[k] = j->W[t * j->rows + o + k], any |= a[k] != 0;
            if (any) axpy_rows(dw, a, j->x + t * j->cols, j->cols, m);
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
        if (dw) dw[i] += dy[i] * x[i] * r;
    }
}

/* d/dx of x * Phi(x) = Phi(x) + x * phi(x). */
float bee_gelu_grad(float x) {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    return cdf + x * pdf;
}
