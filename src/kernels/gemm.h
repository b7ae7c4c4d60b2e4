/* Cache-blocked fp32 matrix product for the training pass (and any other
 * dense fp32 product): C (+)= A B, optionally divided by a constant.
 *
 * Operands are described by strides, so one routine serves the three
 * matmuls of a linear layer (x W^T, dy W and dy^T x) without transposing
 * anything in memory: A(m, k) = A[m * rsa + k * csa], B(k, n) = B[k * rsb +
 * n * csb], C(m, n) = C[m * ldc + n].
 *
 * Arithmetic, identical on every path (scalar, AVX2, AVX-512) and for every
 * thread count, so the scalar reference checks the SIMD kernels bit for bit:
 * K is cut into blocks of BEE_GEMM_KC; within a block each element is
 * accumulated from 0 with fma(A(m,k), B(k,n), acc) in increasing k; the
 * block sums are then added to C in block order (the first block replaces C
 * unless accumulate is set); when div != 1 the final value is divided by div.
 * Threads split the output into column panels (and row ranges), never K. */
#ifndef BEE_KERNELS_GEMM_H
#define BEE_KERNELS_GEMM_H

#include <stddef.h>

#include "util/threadpool.h"

#define BEE_GEMM_KC 256

typedef struct {
    size_t M, N, K;
    const float *A;
    size_t rsa, csa;
    const float *B;
    size_t rsb, csb;
    float *C;
    size_t ldc;
    int accumulate; /* add to C instead of replacing it */
    float div;      /* divide the result by div (1: no division) */
} bee_gemm_args;

/* C (+)= A B on the best path this CPU (and BEE_CPU) allows. */
void bee_gemm(bee_pool *p, const bee_gemm_args *g);
/* Same, on the path of the given level (BEE_CPU_*), capped at the CPU's. */
void bee_gemm_at(bee_pool *p, const bee_gemm_args *g, int level);
/* Plain triple loop with the same rounding: the oracle for the tests. */
void bee_gemm_ref(const bee_gemm_args *g);

#endif
