#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/panel.h"
#include "util/error.h"
#include "util/types.h"

const float *bee_weight_row(const bee_weight *w, uint64_t r, float *tmp) {
    uint64_t n = w->cols;
    if (w->layout == BEE_LAYOUT_PANEL) {
        bee_panel_row(w->type, w->data, n, r, tmp);
        return tmp;
    }
    if (w->type == BEE_TYPE_F32) return (const float *)w->data + r * n;
    bee_dequantize_row(w->type, (const uint8_t *)w->data + r * bee_type_nbytes(w->type, n), tmp, (size_t)n);
    return tmp;
}

void bee_weight_to_f32(const bee_weight *w, float *dst) {
    for (uint64_t r = 0; r < w->rows; r++) {
        const float *row = bee_weight_row(w, r, dst + r * w->cols);
        if (row != dst + r * w->cols)
            for (uint64_t i = 0; i < w->cols; i++) dst[r * w->cols + i] = row[i];
    }
}

float bee_dot_ref(const float *a, const float *b, size_t n) {
    float acc[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++) acc[k] += a[i + k] * b[i + k];
    for (; i < n; i++) acc[0] += a[i] * b[i];
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

int bee_matmul_ref(float *y, size_t ldy, const float *x, size_t n_tok, const bee_weight *w, float div) {
    float *tmp = NULL;
    if (!(tmp = malloc((w->cols ? w->cols : 1) * sizeof *tmp))) return bee_fail("out of memory");
    for (uint64_t o = 0; o < w->rows; o++) {
        const float *row = bee_weight_row(w, o, tmp);
        for (size_t t = 0; t < n_tok; t++) y[t * ldy + o] = bee_dot_ref(x + t * w->cols, row, w->cols) / div;
    }
    free(tmp);
    return 0;
}

void bee_rmsnorm_ref(float *y, const float *x, const float *w, size_t n, float eps) {
    float ss = 0;
    for (size_t i = 0; i < n; i++) ss += x[i] * x[i];
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] * r) * w[i];
}

float bee_gelu_ref(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
