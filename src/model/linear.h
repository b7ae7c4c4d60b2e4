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

/* y[i] = x · W[i]ᵀ / div[i] for n matrices over the same input x (at most
 * BEE_LINEAR_MAX). Matrices sharing a panel type and width convert x once and
 * run in one parallel region; each output is computed exactly as
 * bee_linear would compute it. */
#define BEE_LINEAR_MAX 4
int bee_linear_multi(bee_pool *pool, size_t n, float *const *y, const size_t *ldy, const float *x, size_t n_tok,
                     const bee_weight *const *w, const float *div);

/* The same for the tokens of one prompt (BEE_LINEAR_PROMPT, at least
 * BEE_PANEL_SPLIT_MIN of them): f32 panel weights then take the AMX path
 * where the CPU has it (kernels/panel.h, BEE_PANEL_SPLIT). Its sums are f32
 * sums in another order, so the choice must depend on the request alone,
 * never on which other requests share a batch. */
enum { BEE_LINEAR_PROMPT = 1u };
int bee_linear_multi_ex(bee_pool *pool, size_t n, float *const *y, const size_t *ldy, const float *x, size_t n_tok,
                        const bee_weight *const *w, const float *div, unsigned flags);

#endif
