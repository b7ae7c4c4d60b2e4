#include "model/linear.h"

#include <stdlib.h>

#include "kernels/dot.h"
#include "kernels/panel.h"
#include "util/error.h"
#include "util/types.h"

/* Activations are converted once to the kernel's activation type (q8_0 for
 * the quantized weights, so the dot products run in int8); each weight row is
 * then reused four tokens at a time. Output rows are split statically across
 * threads, so results do not depend on the thread count. */
typedef struct {
    const bee_dot_kernel *k;
    const bee_weight *w;
    const uint8_t *act;
    size_t act_row, n_tok, ldy;
    float *y, div;
} linear_job;

static void linear_rows(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    const linear_job *j = ctx;
    size_t cols = j->w->cols, w_row = bee_type_nbytes(j->w->type, cols);
    for (size_t o = begin; o < end; o++) {
        const void *wr = (const uint8_t *)j->w->data + o * w_row;
        size_t t = 0;
        for (; t + 4 <= j->n_tok; t += 4) {
            const void *x[4] = {j->act + t * j->act_row, j->act + (t + 1) * j->act_row, j->act + (t + 2) * j->act_row,
                                j->act + (t + 3) * j->act_row};
            float r[4];
            j->k->dot4(cols, wr, x, r);
            for (size_t i = 0; i < 4; i++) j->y[(t + i) * j->ldy + o] = r[i] / j->div;
        }
        for (; t < j->n_tok; t++) j->y[t * j->ldy + o] = j->k->dot(cols, wr, j->act + t * j->act_row) / j->div;
    }
}

/* ================================================================ panel layout */

typedef struct {
    bee_panel_act *a;
    const float *x;
} fill_job;

static void panel_fill(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    fill_job *j = ctx;
    bee_panel_act_fill(j->a, j->x, begin, end);
}

/* Several matrices of one panel type and width over the same input: the
 * activations are converted once and every panel of every matrix is one task
 * of a single parallel region. */
typedef struct {
    size_t n;
    const bee_weight *const *w;
    float *const *y;
    const size_t *ldy;
    const float *div;
    size_t first[BEE_LINEAR_MAX + 1]; /* first panel of each matrix in the joint numbering */
    const bee_panel_act *a;
    _Atomic int failed;
} multi_job;

static void multi_rows(void *ctx, size_t begin, size_t end, int ith) {
    (void)ith;
    multi_job *j = ctx;
    for (size_t i = 0; i < j->n && begin < end; i++) {
        size_t p0 = j->first[i], p1 = j->first[i + 1];
        if (begin >= p1) continue;
        size_t e = end < p1 ? end : p1;
        if (bee_panel_matmul(j->w[i]->type, j->w[i]->data, j->w[i]->rows, begin - p0, e - p0, j->a, j->y[i],
                             j->ldy[i], j->div[i]))
            j->failed = 1;
        begin = e;
    }
}

int bee_linear_multi(bee_pool *pool, size_t n, float *const *y, const size_t *ldy, const float *x, size_t n_tok,
                     const bee_weight *const *w, const float *div) {
    return bee_linear_multi_ex(pool, n, y, ldy, x, n_tok, w, div, 0);
}

int bee_linear_multi_ex(bee_pool *pool, size_t n, float *const *y, const size_t *ldy, const float *x, size_t n_tok,
                        const bee_weight *const *w, const float *div, unsigned flags) {
    int joint = n >= 1 && n <= BEE_LINEAR_MAX;
    for (size_t i = 0; joint && i < n; i++)
        joint = w[i]->layout == BEE_LAYOUT_PANEL && w[i]->type == w[0]->type && w[i]->cols == w[0]->cols;
    if (!joint) {
        for (size_t i = 0; i < n; i++) { /* one by one, panel matrices keeping the flags */
            int panel = w[i]->layout == BEE_LAYOUT_PANEL;
            if (panel ? bee_linear_multi_ex(pool, 1, &y[i], &ldy[i], x, n_tok, &w[i], &div[i], flags)
                      : bee_linear(pool, y[i], ldy[i], x, n_tok, w[i], div[i]))
                return -1;
        }
        return 0;
    }
    bee_panel_act a;
    unsigned split = (flags & BEE_LINEAR_PROMPT) && n_tok >= BEE_PANEL_SPLIT_MIN ? BEE_PANEL_SPLIT : 0;
    if (bee_panel_act_init(&a, w[0]->type, n_tok, w[0]->cols, split)) return -1;
    fill_job fj = {&a, x};
    bee_pool_for(pool, n_tok, 8, panel_fill, &fj);
    multi_job j = {n, w, y, ldy, div, {0}, &a, 0};
    for (size_t i = 0; i < n; i++) j.first[i + 1] = j.first[i] + (w[i]->rows + BEE_PANEL_ROWS - 1) / BEE_PANEL_ROWS;
    bee_pool_for(pool, j.first[n], 1, multi_rows, &j);
    bee_panel_act_free(&a);
    return j.failed ? bee_fail("out of memory for the AMX buffers of a linear layer") : 0;
}

/* ================================================================ entry */

int bee_linear(bee_pool *pool, float *y, size_t ldy, const float *x, size_t n_tok, const bee_weight *w, float div) {
    if (w->layout == BEE_LAYOUT_PANEL) return bee_linear_multi(pool, 1, &y, &ldy, x, n_tok, &w, &div);
    const bee_dot_kernel *k = bee_dot_kernel_get(w->type);
    if (!k) return bee_fail("no dot kernel for %s weights", bee_type_name(w->type));
    size_t act_row = bee_type_nbytes(k->act_type, w->cols);
    if (!act_row && w->cols) return bee_fail("rows of %llu do not fill %s blocks", (unsigned long long)w->cols,
                                            bee_type_name(k->act_type));
    uint8_t *act = malloc(n_tok * act_row + 64);
    if (!act) return bee_fail("out of memory");
    for (size_t t = 0; t < n_tok; t++) bee_quantize_row(k->act_type, x + t * w->cols, act + t * act_row, w->cols);
    linear_job j = {k, w, act, act_row, n_tok, ldy, y, div};
    bee_pool_for(pool, w->rows, 16, linear_rows, &j);
    free(act);
    return 0;
}
