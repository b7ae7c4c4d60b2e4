#include "model/linear.h"

#include <stdlib.h>

#include "util/error.h"
#include "util/types.h"

typedef struct {
    const bee_weight *w;
    const float *x;
    size_t n_tok, ldy;
    float *y, div;
    float *tmp; /* (n_threads, cols) row conversion buffers */
} linear_job;

static void linear_rows(void *ctx, size_t begin, size_t end, int ith) {
    const linear_job *j = ctx;
    size_t cols = j->w->cols;
    float *tmp = j->tmp ? j->tmp + (size_t)ith * cols : NULL;
    for (size_t o = begin; o < end; o++) {
        const float *row = bee_weight_row(j->w, o, tmp);
        for (size_t t = 0; t < j->n_tok; t++) j->y[t * j->ldy + o] = bee_dot_ref(j->x + t * cols, row, cols) / j->div;
    }
}

int bee_linear(bee_pool *pool, float *y, size_t ldy, const float *x, size_t n_tok, const bee_weight *w, float div) {
    linear_job j = {w, x, n_tok, ldy, y, div, NULL};
    if (w->type != BEE_TYPE_F32 &&
        !(j.tmp = malloc((size_t)bee_pool_size(pool) * w->cols * sizeof *j.tmp)))
        return bee_fail("out of memory");
    bee_pool_for(pool, w->rows, 16, linear_rows, &j);
    free(j.tmp);
    return 0;
}
