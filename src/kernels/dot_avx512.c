/* AVX-512 dot kernels (F/BW/VL/DQ; VNNI for the int8 types; BF16 for bf16).
 *
 * Layout of the arithmetic (fixed, so results depend only on n):
 *   float types: 4 accumulators of 16 lanes per activation row, 64 elements
 *     per step (element i -> accumulator (i / 16) % 4, lane i % 16); a
 *     partial last step is zero-padded; reduce (a0 + a1) + (a2 + a3), then
 *     the 16 lanes in a fixed tree.
 *   bf16 x bf16 (vdpbf16ps): the same with 32 elements per accumulator step
 *     (lane l takes elements 2l and 2l + 1), 128 per step.
 *   int8 types: blocks in pairs, one 512-bit vpdpbusd per pair giving 8 int32
 *     lanes per block; the activations are offset to unsigned (x + 128) and
 *     128 * sum(w) is subtracted (for Q4_1 the nibbles are the unsigned side
 *     and no offset is needed); lanes converted to fp32 and fma'd with the
 *     block scale dw*dx into accumulator (pair % 2). Blocks are taken 4 at a
 *     time, a partial last group zero-padded. Q4_1 adds m*s per block in a
 *     separate 4-lane accumulator.
 * dot4 runs exactly the per-row arithmetic of dot for each row. */
#include "kernels/dot.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "util/types.h"

#define ISA "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define TGT __attribute__((target(ISA)))
#define TGTV __attribute__((target(ISA ",avx512vnni")))
#define TGTB __attribute__((target(ISA ",avx512bf16")))
#define INL static inline __attribute__((always_inline))

/* ================================================================ float weights (F32 activations) */

enum { K_F32 = 0, K_F16 = 1, K_BF16 = 2 };

/* 16 weights from element i, as fp32. */
INL TGT __m512 ld_w16(int kind, const void *w, size_t i) {
    if (kind == K_F32) return _mm512_loadu_ps((const float *)w + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i));
    if (kind == K_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INL TGT void fstep(int kind, int R, __m512 acc[][4], const void *w, size_t i, const float *const *x, size_t xi) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 wv = ld_w16(kind, w, i + 16 * j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[r] + xi + 16 * j), acc[r][j]);
    }
}

INL TGT float reduce4(__m512 a[4]) {
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
}

INL TGT void fdot_rows(int kind, int R, size_t n, const void *w, const float *const *x, float *out) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) fstep(kind, R, acc, w, i, x, i);
    if (i < n) { /* zero-padded last step */
        size_t rem = n - i, es = kind == K_F32 ? 4 : 2;
        float wt[64], xt[4][64];
        const float *xp[4];
        memset(wt, 0, sizeof wt);
        memcpy(wt, (const uint8_t *)w + i * es, rem * es);
        for (int r = 0; r < R; r++) {
            memset(xt[r], 0, sizeof xt[r]);
            memcpy(xt[r], x[r] + i, rem * sizeof(float));
            xp[r] = xt[r];
        }
        fstep(kind, R, acc, wt, 0, xp, 0);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) out[r] = reduce4(acc[r]);
}

#define FLOAT_KERNEL(name, kind)                                                                       \
    TGT static float name(size_t n, const void *w, const void *x) {                                   \
        const float *xs[1] = {(const float *)x};                                                       \
        float out[1];                                                                                  \
        fdot_rows(kind, 1, n, w, xs, out);                                                             \
        return out[0];                                                                                 \
    }                                                                                                  \
    TGT static void name##4(size_t n, const void *w, const void *const x[4], float out[4]) {          \
        const float *xs[4] = {(const float *)x[0], (const float *)x[1], (const float *)x[2],           \
                              (const float *)x[3]};                                                    \
        fdot_rows(kind, 4, n, w, xs, out);                                                             \
    }

FLOAT_KERNEL(dot_f32, K_F32)
FLOAT_KERNEL(dot_f16, K_F16)
FLOAT_KERNEL(dot_bf16, K_BF16)

/* ================================================================ bf16 x bf16 (vdpbf16ps) */

INL TGTB void bstep(int R, __m512 acc[][4], const uint16_t *w, const uint16_t *const *x, size_t i) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512i wv = _mm512_loadu_si512((const void *)(w + i + 32 * j));
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m512i xv = _mm512_loadu_si512((const void *)(x[r] + i + 32 * j));
            acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)xv, (__m512bh)wv);
        }
    }
}

INL TGTB void bdot_rows(int R, size_t n, const void *w, const void *const *x, float *out) {
    __m512 acc[4][4];
    const uint16_t *xs[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        xs[r] = (const uint16_t *)x[r];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    }
    size_t i = 0;
    for (; i + 128 <= n; i += 128) bstep(R, acc, (const uint16_t *)w, xs, i);
    if (i < n) {
        size_t rem = n - i;
        uint16_t wt[128], xt[4][128];
        memset(wt, 0, sizeof wt);
        memcpy(wt, (const uint16_t *)w + i, rem * 2);
        for (int r = 0; r < R; r++) {
            memset(xt[r], 0, sizeof xt[r]);
            memcpy(xt[r], xs[r] + i, rem * 2);
            xs[r] = xt[r];
        }
        bstep(R, acc, wt, xs, 0);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        out[r] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_add_ps(acc[r][2], acc[r][3])));
}

TGTB static float dot_bf16_bf16(size_t n, const void *w, const void *x) {
    const void *xs[1] = {x};
    float out[1];
    bdot_rows(1, n, w, xs, out);
    return out[0];
}

TGTB static void dot_bf16_bf164(size_t n, const void *w, const void *const x[4], float out[4]) {
    bdot_rows(4, n, w, x, out);
}

/* ================================================================ int8 weights (VNNI) */

enum { K_Q8_0 = 0, K_Q4_0 = 1, K_Q4_1 = 2 };

INL TGTV size_t wbytes(int kind) {
    return kind == K_Q8_0 ? BEE_Q8_0_BYTES : kind == K_Q4_0 ? BEE_Q4_0_BYTES : BEE_Q4_1_BYTES;
}
INL TGTV size_t xbytes(int kind) { return kind == K_Q4_1 ? BEE_Q8_1_BYTES : BEE_Q8_0_BYTES; }

/* Four fp16 values at p, p + stride, ... as fp32. */
INL TGTV __m128 ld_f16x4(const uint8_t *p, size_t stride) {
    uint64_t v = (uint64_t)bee_ld_u16(p) | (uint64_t)bee_ld_u16(p + stride) << 16 |
                 (uint64_t)bee_ld_u16(p + 2 * stride) << 32 | (uint64_t)bee_ld_u16(p + 3 * stride) << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* 32 + 32 bytes from a and b. */
INL TGTV __m512i ld_pair(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* Weights of blocks a and b as 64 bytes in element order: int8 for Q8_0,
 * nibble - 8 for Q4_0, the nibble for Q4_1. */
INL TGTV __m512i ld_wpair(int kind, const uint8_t *a, const uint8_t *b) {
    if (kind == K_Q8_0) return ld_pair(a + 2, b + 2);
    size_t o = kind == K_Q4_0 ? 2 : 4;
    __m256i va = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + o)));
    __m256i vb = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + o)));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1); /* 128-bit lanes: a a b b */
    v = _mm512_mask_blend_epi64(0xcc, v, _mm512_srli_epi16(v, 4));      /* lanes 1, 3: high nibbles */
    v = _mm512_and_si512(v, _mm512_set1_epi8(15));
    if (kind == K_Q4_0) v = _mm512_sub_epi8(v, _mm512_set1_epi8(8));
    return v;
}

INL TGTV void qgroup(int kind, int R, __m512 acc[][2], __m128 *macc, const uint8_t *wg, const uint8_t *const *xg) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), xo = xb - 32;
    const __m512i k80 = _mm512_set1_epi8((char)0x80);
    const __m512i idx01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i idx23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512i w01 = ld_wpair(kind, wg, wg + wb), w23 = ld_wpair(kind, wg + 2 * wb, wg + 3 * wb);
    __m512i c01 = _mm512_setzero_si512(), c23 = _mm512_setzero_si512();
    if (kind != K_Q4_1) { /* -128 * sum(w) per lane: the offset correction */
        c01 = _mm512_sub_epi32(c01, _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, w01));
        c23 = _mm512_sub_epi32(c23, _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, w23));
    }
    __m128 wd = ld_f16x4(wg, wb);
    __m128 wm = _mm_setzero_ps();
    if (kind == K_Q4_1) wm = ld_f16x4(wg + 2, wb);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint8_t *x0 = xg[r];
        __m512i x01 = ld_pair(x0 + xo, x0 + xb + xo), x23 = ld_pair(x0 + 2 * xb + xo, x0 + 3 * xb + xo);
        __m512i i01, i23;
        if (kind == K_Q4_1) {
            i01 = _mm512_dpbusd_epi32(c01, w01, x01);
            i23 = _mm512_dpbusd_epi32(c23, w23, x23);
            macc[r] = _mm_fmadd_ps(wm, ld_f16x4(x0 + 2, xb), macc[r]);
        } else {
            i01 = _mm512_dpbusd_epi32(c01, _mm512_xor_si512(x01, k80), w01);
            i23 = _mm512_dpbusd_epi32(c23, _mm512_xor_si512(x23, k80), w23);
        }
        __m512 sc = _mm512_zextps128_ps512(_mm_mul_ps(wd, ld_f16x4(x0, xb)));
        acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i01), _mm512_permutexvar_ps(idx01, sc), acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i23), _mm512_permutexvar_ps(idx23, sc), acc[r][1]);
    }
}

INL TGTV float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INL TGTV void qdot_rows(int kind, int R, size_t n, const void *w, const void *const *x, float *out) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), nb = n / 32;
    __m512 acc[4][2];
    __m128 macc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps(), macc[r] = _mm_setzero_ps();
    const uint8_t *xg[4];
    size_t g = 0;
    for (; g + 4 <= nb; g += 4) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) xg[r] = (const uint8_t *)x[r] + g * xb;
        qgroup(kind, R, acc, macc, (const uint8_t *)w + g * wb, xg);
    }
    if (g < nb) { /* zero-padded last group: zero blocks add exactly 0 */
        uint8_t wt[4 * BEE_Q8_1_BYTES], xt[4][4 * BEE_Q8_1_BYTES];
        memset(wt, 0, sizeof wt);
        memcpy(wt, (const uint8_t *)w + g * wb, (nb - g) * wb);
        for (int r = 0; r < R; r++) {
            memset(xt[r], 0, sizeof xt[r]);
            memcpy(xt[r], (const uint8_t *)x[r] + g * xb, (nb - g) * xb);
            xg[r] = xt[r];
        }
        qgroup(kind, R, acc, macc, wt, xg);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
        out[r] = kind == K_Q4_1 ? s + hsum4(macc[r]) : s;
    }
}

#define QUANT_KERNEL(name, kind)                                                                       \
    TGTV static float name(size_t n, const void *w, const void *x) {                                  \
        const void *xs[1] = {x};                                                                       \
        float out[1];                                                                                  \
        qdot_rows(kind, 1, n, w, xs, out);                                                             \
        return out[0];                                                                                 \
    }                                                                                                  \
    TGTV static void name##4(size_t n, const void *w, const void *const x[4], float out[4]) {         \
        qdot_rows(kind, 4, n, w, x, out);                                                              \
    }

QUANT_KERNEL(dot_q8_0, K_Q8_0)
QUANT_KERNEL(dot_q4_0, K_Q4_0)
QUANT_KERNEL(dot_q4_1, K_Q4_1)

/* ================================================================ tables */

static const bee_dot_kernel k_float[] = {
    {BEE_TYPE_F32, BEE_TYPE_F32, dot_f32, dot_f324, "avx512"},
    {BEE_TYPE_F16, BEE_TYPE_F32, dot_f16, dot_f164, "avx512"},
    {BEE_TYPE_BF16, BEE_TYPE_F32, dot_bf16, dot_bf164, "avx512"},
};
static const bee_dot_kernel k_bf16 = {BEE_TYPE_BF16, BEE_TYPE_BF16, dot_bf16_bf16, dot_bf16_bf164, "avx512-bf16"};
static const bee_dot_kernel k_vnni[] = {
    {BEE_TYPE_Q8_0, BEE_TYPE_Q8_0, dot_q8_0, dot_q8_04, "avx512-vnni"},
    {BEE_TYPE_Q4_0, BEE_TYPE_Q8_0, dot_q4_0, dot_q4_04, "avx512-vnni"},
    {BEE_TYPE_Q4_1, BEE_TYPE_Q8_1, dot_q4_1, dot_q4_14, "avx512-vnni"},
};

const bee_dot_kernel *bee_dot_avx512_kernel(uint32_t weight_type, unsigned ext) {
    if (weight_type == BEE_TYPE_BF16 && (ext & BEE_CPU_EXT_BF16)) return &k_bf16;
    for (size_t i = 0; i < sizeof k_float / sizeof k_float[0]; i++)
        if (k_float[i].type == weight_type) return &k_float[i];
    if (ext & BEE_CPU_EXT_VNNI)
        for (size_t i = 0; i < sizeof k_vnni / sizeof k_vnni[0]; i++)
            if (k_vnni[i].type == weight_type) return &k_vnni[i];
    return NULL; /* int8 types without VNNI: the AVX2 kernels */
}

#else /* not x86-64 */

const bee_dot_kernel *bee_dot_avx512_kernel(uint32_t weight_type, unsigned ext) {
    (void)weight_type, (void)ext;
    return NULL;
}

#endif
