/* SIMD micro-kernels of the GEMM (see gemm.h for the rounding they keep):
 * AVX-512 12 x 32 (24 accumulators, each loaded B vector used 12 times) and
 * AVX2 6 x 16 (12 accumulators). A values are broadcast from the packed
 * panel; the compiler folds the broadcast into the FMA's memory operand. */
#include "kernels/gemm_impl.h"

#include "kernels/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)

#include <immintrin.h>

#define ISA512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define ISA2 __attribute__((target("avx2,fma")))

/* ================================================================ AVX-512, 12 x 32 */

#define R512(r)                                                                                                        \
    do {                                                                                                               \
        __m512 a = _mm512_set1_ps(Ap[(r)]);                                                                            \
        c##r##0 = _mm512_fmadd_ps(a, b0, c##r##0);                                                                     \
        c##r##1 = _mm512_fmadd_ps(a, b1, c##r##1);                                                                     \
    } while (0)

#define ST512(r)                                                                                                       \
    if ((r) < mr) {                                                                                                    \
        float *cp = C + (size_t)(r) * ldc;                                                                             \
        __m512 v0 = c##r##0, v1 = c##r##1;                                                                             \
        if (load) {                                                                                                    \
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cp), v0);                                                     \
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cp + 16), v1);                                                \
        }                                                                                                              \
        if (div != 1.0f) v0 = _mm512_div_ps(v0, dv), v1 = _mm512_div_ps(v1, dv);                                       \
        _mm512_mask_storeu_ps(cp, m0, v0);                                                                             \
        _mm512_mask_storeu_ps(cp + 16, m1, v1);                                                                        \
    }

#define Z512(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps()

ISA512 static void kernel_avx512(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr,
                                 int load, float div) {
    Z512(0); Z512(1); Z512(2); Z512(3); Z512(4); Z512(5);
    Z512(6); Z512(7); Z512(8); Z512(9); Z512(10); Z512(11);
    for (size_t k = 0; k < kc; k++, Ap += 12, Bp += 32) {
        __m512 b0 = _mm512_loadu_ps(Bp), b1 = _mm512_loadu_ps(Bp + 16);
        R512(0); R512(1); R512(2); R512(3); R512(4); R512(5);
        R512(6); R512(7); R512(8); R512(9); R512(10); R512(11);
    }
    __mmask16 m0 = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? (__mmask16)0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
    __m512 dv = _mm512_set1_ps(div);
    ST512(0) ST512(1) ST512(2) ST512(3) ST512(4) ST512(5)
    ST512(6) ST512(7) ST512(8) ST512(9) ST512(10) ST512(11)
}

/* ================================================================ AVX2, 6 x 16 */

#define R256(r)                                                                                                        \
    do {                                                                                                               \
        __m256 a = _mm256_broadcast_ss(Ap + (r));                                                                      \
        c##r##0 = _mm256_fmadd_ps(a, b0, c##r##0);                                                                     \
        c##r##1 = _mm256_fmadd_ps(a, b1, c##r##1);                                                                     \
    } while (0)

#define ST256(r)                                                                                                       \
    if ((r) < mr) {                                                                                                    \
        float *cp = C + (size_t)(r) * ldc;                                                                             \
        __m256 v0 = c##r##0, v1 = c##r##1;                                                                             \
        if (load) {                                                                                                    \
            v0 = _mm256_add_ps(_mm256_maskload_ps(cp, k0), v0);                                                        \
            v1 = _mm256_add_ps(_mm256_maskload_ps(cp + 8, k1), v1);                                                    \
        }                                                                                                              \
        if (div != 1.0f) v0 = _mm256_div_ps(v0, dv), v1 = _mm256_div_ps(v1, dv);                                       \
        _mm256_maskstore_ps(cp, k0, v0);                                                                               \
        _mm256_maskstore_ps(cp + 8, k1, v1);                                                                           \
    }

#define Z256(r) __m256 c##r##0 = _mm256_setzero_ps(), c##r##1 = _mm256_setzero_ps()

ISA2 static __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

ISA2 static void kernel_avx2(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr, int load,
                             float div) {
    Z256(0); Z256(1); Z256(2); Z256(3); Z256(4); Z256(5);
    for (size_t k = 0; k < kc; k++, Ap += 6, Bp += 16) {
        __m256 b0 = _mm256_loadu_ps(Bp), b1 = _mm256_loadu_ps(Bp + 8);
        R256(0); R256(1); R256(2); R256(3); R256(4); R256(5);
    }
    __m256i k0 = lane_mask(nr), k1 = lane_mask(nr - 8);
    __m256 dv = _mm256_set1_ps(div);
    ST256(0) ST256(1) ST256(2) ST256(3) ST256(4) ST256(5)
}

static const bee_gemm_kernel k_avx512 = {12, 32, kernel_avx512};
static const bee_gemm_kernel k_avx2 = {6, 16, kernel_avx2};

const bee_gemm_kernel *bee_gemm_kernel_avx512(void) {
    return bee_cpu_max_level() >= BEE_CPU_AVX512 ? &k_avx512 : NULL;
}
const bee_gemm_kernel *bee_gemm_kernel_avx2(void) { return bee_cpu_max_level() >= BEE_CPU_AVX2 ? &k_avx2 : NULL; }

#else

const bee_gemm_kernel *bee_gemm_kernel_avx512(void) { return NULL; }
const bee_gemm_kernel *bee_gemm_kernel_avx2(void) { return NULL; }

#endif
