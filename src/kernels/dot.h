/* Dot-product kernels: one weight row (any bee type) against activation rows
 * prepared in the kernel's activation type.
 *
 * Usage:
 *     const bee_dot_kernel *k = bee_dot_kernel_get(w->type);
 *     bee_quantize_row(k->act_type, x_f32, xq, cols);   // once per activation row
 *     for (row...) y[row] = k->dot(cols, wrow, xq);     // or k->dot4 for 4 activation rows
 *
 * Activation type per weight type (act_type):
 *   F32  -> F32          F16 -> F32 (weights widened with F16C/AVX-512)
 *   BF16 -> BF16 on the AVX-512 path when the CPU has AVX512_BF16 (vdpbf16ps:
 *           activations rounded to bf16, products exact, fp32 accumulation,
 *           bf16 denormals read as 0), else F32.  CPU-dependent: always take
 *           act_type from the kernel you call.
 *   Q8_0 -> Q8_0         Q4_0 -> Q8_0         Q4_1 -> Q8_1
 *   Q8_1 weights have no kernel (NULL).
 *
 * n is the row length in elements: any n >= 0 for F32/F16/BF16 weights, a
 * multiple of 32 for the quantized types. Quantized activations must come from
 * bee_quantize_row (quants in [-127, 127]; the AVX2 int8 kernels rely on it).
 *
 * Alignment: none needed for the SIMD paths (unaligned loads throughout); the
 * scalar path needs F32/F16/BF16 rows aligned to their element size. No
 * kernel reads past the n elements of w or x (the SIMD kernels prefetch 4 KiB
 * ahead of the weights, which never faults).
 *
 * Paths: scalar (portable C); avx2 (AVX2 + FMA + F16C); avx512 (F/BW/VL/DQ)
 * for the float types, with vdpbf16ps when AVX512_BF16 is present and
 * vpdpbusd kernels for the int8 types when AVX512_VNNI + AVX512_VBMI are
 * (otherwise the int8 types use the avx2 kernels). See kernels/cpu.h.
 *
 * Determinism: every kernel reduces in a fixed order that depends only on n,
 * so results are bit-identical across calls, alignments and threads, and
 * dot4(...)[r] is bit-identical to dot(..., x[r]) for the same kernel.
 * Different paths (scalar/avx2/avx512) agree only to rounding. */
#ifndef BEE_KERNELS_DOT_H
#define BEE_KERNELS_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu.h"
#include "kernels/quant.h"

typedef struct {
    uint32_t type;     /* weight type */
    uint32_t act_type; /* what activations are converted to (bee_quantize_row) */
    float (*dot)(size_t n, const void *w, const void *x);
    void (*dot4)(size_t n, const void *w, const void *const x[4], float out[4]);
    const char *path; /* implementation: "scalar", "avx2", "avx512", "avx512-vnni", "avx512-bf16" */
} bee_dot_kernel;

/* Best kernel for this CPU (honours BEE_CPU); NULL for unsupported weight types. */
const bee_dot_kernel *bee_dot_kernel_get(uint32_t weight_type);
/* Portable scalar reference kernel (act_type as for a CPU without AVX-512). */
const bee_dot_kernel *bee_dot_kernel_ref(uint32_t weight_type);
/* Scalar reference for an explicit (weight, activation) pair; besides the
 * pairs above it offers BF16 x BF16. NULL when unsupported. */
const bee_dot_kernel *bee_dot_kernel_ref_act(uint32_t weight_type, uint32_t act_type);
/* Kernel chosen at a given level and extension set (BEE_CPU_EXT_*), ignoring
 * BEE_CPU; NULL when the CPU lacks that level or extension, or the type has no
 * kernel. For tests and benchmarks. */
const bee_dot_kernel *bee_dot_kernel_at(uint32_t weight_type, int level, unsigned ext);

/* The chosen path ("scalar", "avx2", "avx512", "avx512-vnni-bf16", ...). */
/* const char *bee_cpu_path(void);  -- declared in kernels/cpu.h */

/* Internal: per-path tables (NULL where the path has no kernel for the type). */
const bee_dot_kernel *bee_dot_avx2_kernel(uint32_t weight_type);
const bee_dot_kernel *bee_dot_avx512_kernel(uint32_t weight_type, unsigned ext);

#endif
