/* Linear layer of the forward pass: y (n_tok, ldy) = x (n_tok, cols) · Wᵀ / div
 * with the best dot kernel for W's type, output rows split across the pool's
 * threads. Each output is computed by one kernel call in a fixed order, so
 * results are identical for any -t. */
#ifndef BEE_MODEL_LINEAR_H
#define BEE_MODEL_LINEAR_H

#include <stddef.h>

#include "kernels/kernels.h"
#include "util/threadpool.h"

int bee_linear(bee_pool *pool, float *y, size_t ldy, const float *x, size_t n_tok, const bee_weight *w, float div);

#endif
