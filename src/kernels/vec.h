/* Small vector kernels of the attention inner loop over the KV cache, whose
 * rows may be stored as f32 or f16 (or bf16). Chosen at run time like the dot
 * kernels (BEE_CPU caps the level); every path computes each element with one
 * fused or unfused multiply-add in the same order, so results depend only on
 * the path, never on the thread count. */
#ifndef BEE_KERNELS_VEC_H
#define BEE_KERNELS_VEC_H

#include <stddef.h>
#include <stdint.h>

/* y[i] += a * x[i] for i < n; x is a row of type F32, F16 or BF16. */
typedef void (*bee_axpy_fn)(size_t n, float a, const void *x, float *y);

/* Kernel for rows of `type` at the current CPU level; NULL for other types. */
bee_axpy_fn bee_axpy_get(uint32_t type);
/* Portable reference (the oracle of test_kernels). */
bee_axpy_fn bee_axpy_ref(uint32_t type);

#endif
