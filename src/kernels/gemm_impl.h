/* Internal to the GEMM: the micro-kernel interface shared by gemm.c and the
 * SIMD paths in gemm_simd.c. */
#ifndef BEE_KERNELS_GEMM_IMPL_H
#define BEE_KERNELS_GEMM_IMPL_H

#include <stddef.h>

/* C[0..mr, 0..nr) (+)= Ap * Bp over kc steps: Ap holds MR values per step
 * (rows, zero-padded), Bp NR values per step (columns, zero-padded). load:
 * add the block sum to C instead of replacing it; div != 1: divide after. */
typedef void (*bee_gemm_kernel_fn)(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                                   int load, float div);

typedef struct {
    int mr, nr;          /* register tile: rows, columns */
    bee_gemm_kernel_fn fn;
} bee_gemm_kernel;

/* NULL when the CPU lacks the instructions (or outside x86-64). */
const bee_gemm_kernel *bee_gemm_kernel_avx512(void);
const bee_gemm_kernel *bee_gemm_kernel_avx2(void);

#endif
