#include "kernels/vec.h"

#include "kernels/cpu.h"
#include "util/types.h"

/* ================================================================ reference */

static void axpy_f32_ref(size_t n, float a, const void *x, float *y) {
    const float *xs = x;
    for (size_t i = 0; i < n; i++) y[i] += a * xs[i];
}

static void axpy_f16_ref(size_t n, float a, const void *x, float *y) {
    const uint16_t *xs = x;
    for (size_t i = 0; i < n; i++) y[i] += a * bee_f16_to_f32(xs[i]);
}

static void axpy_bf16_ref(size_t n, float a, const void *x, float *y) {
    const uint16_t *xs = x;
    for (size_t i = 0; i < n; i++) y[i] += a * bee_bf16_to_f32(xs[i]);
}

bee_axpy_fn bee_axpy_ref(uint32_t type) {
    switch (type) {
    case BEE_TYPE_F32: return axpy_f32_ref;
    case BEE_TYPE_F16: return axpy_f16_ref;
    case BEE_TYPE_BF16: return axpy_bf16_ref;
    default: return NULL;
    }
}

/* ================================================================ AVX2 / AVX-512
 * Unfused multiply then add, like the reference, so every path agrees with
 * the reference to the last bit (the compiler must not contract a*x+y into
 * an FMA in the reference either: the project builds with the default
 * -ffp-contract=off of ISO C mode). */
#if defined(__x86_64__)
#include <immintrin.h>

#define T2 __attribute__((target("avx2,fma,f16c")))
#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

T2 static void axpy_f32_avx2(size_t n, float a, const void *x, float *y) {
    const float *xs = x;
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, _mm256_loadu_ps(xs + i))));
    for (; i < n; i++) y[i] += a * xs[i];
}

T2 static void axpy_f16_avx2(size_t n, float a, const void *x, float *y) {
    const uint16_t *xs = x;
    __m256 va = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(xs + i)));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, xv)));
    }
    for (; i < n; i++) y[i] += a * bee_f16_to_f32(xs[i]);
}

T5 static void axpy_f32_avx512(size_t n, float a, const void *x, float *y) {
    const float *xs = x;
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, _mm512_loadu_ps(xs + i))));
    for (; i < n; i++) y[i] += a * xs[i];
}

T5 static void axpy_f16_avx512(size_t n, float a, const void *x, float *y) {
    const uint16_t *xs = x;
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(xs + i)));
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, xv)));
    }
    for (; i < n; i++) y[i] += a * bee_f16_to_f32(xs[i]);
}

T5 static void axpy_bf16_avx512(size_t n, float a, const void *x, float *y) {
    const uint16_t *xs = x;
    __m512 va = _mm512_set1_ps(a);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(xs + i));
        __m512 xv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, xv)));
    }
    for (; i < n; i++) y[i] += a * bee_bf16_to_f32(xs[i]);
}
#endif

bee_axpy_fn bee_axpy_get(uint32_t type) {
#if defined(__x86_64__)
    int lvl = bee_cpu_level();
    if (lvl >= BEE_CPU_AVX512) {
        if (type == BEE_TYPE_F32) return axpy_f32_avx512;
        if (type == BEE_TYPE_F16) return axpy_f16_avx512;
        if (type == BEE_TYPE_BF16) return axpy_bf16_avx512;
    } else if (lvl >= BEE_CPU_AVX2) {
        if (type == BEE_TYPE_F32) return axpy_f32_avx2;
        if (type == BEE_TYPE_F16) return axpy_f16_avx2;
    }
#endif
    return bee_axpy_ref(type);
}
