/* AVX2 + FMA + F16C dot kernels.
 *
 * Layout of the arithmetic (fixed, so results depend only on n):
 *   float types: 4 accumulators of 8 lanes per activation row, 32 elements per
 *     step (element i -> accumulator (i / 8) % 4, lane i % 8); a partial last
 *     step is zero-padded; reduce (a0 + a1) + (a2 + a3), then 8 lanes
 *     pairwise.
 *   int8 types: per block an exact int32 dot in 8 lanes (maddubs + madd:
 *     Q8_0 as |w| x sign(x, w), which needs |x| <= 127 as bee_quantize_row
 *     produces; Q4_0 as q x - 8 x and Q4_1 as q x with the unsigned nibbles
 *     q, no int16 overflow possible), converted to fp32 and fma'd with the
 *     block scale dw*dx into accumulator (block % 2); blocks are taken 4 at
 *     a time (scales converted together), a partial last group zero-padded
 *     (zero blocks add exactly 0). Q4_1 adds m*s per block in a separate
 *     4-lane accumulator, added after the main reduction.
 * dot4 runs exactly the per-row arithmetic of dot for each row. */
#include "kernels/dot.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "util/types.h"

/* Weights stream from memory once per matmul: prefetch this far ahead (the
 * hardware prefetcher alone left ~20% of the bandwidth unused for the int8
 * types; 4 KiB was the knee of a sweep from 256 B to 16 KiB). */
#define PF_DIST 4096
#define PF(p, bytes)                                                                                   \
    do {                                                                                               \
        for (size_t pf_ = 0; pf_ < (bytes); pf_ += 64) _mm_prefetch((const char *)(p) + PF_DIST + pf_, _MM_HINT_T0); \
    } while (0)

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* ================================================================ helpers */

/* Sum of 8 lanes, fixed order. */
INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INL float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four fp16 values at p, p + stride, ... as fp32. Two ways with the same
 * result: scalar loads + shifts (best for one row), or word inserts, which
 * use the shuffle port instead of ports 0/1 that the int8 math of dot4
 * saturates. */
INL __m128 ld_f16x4(int inserts, const uint8_t *p, size_t stride) {
    if (inserts) {
        __m128i v = _mm_cvtsi32_si128(bee_ld_u16(p));
        v = _mm_insert_epi16(v, bee_ld_u16(p + stride), 1);
        v = _mm_insert_epi16(v, bee_ld_u16(p + 2 * stride), 2);
        v = _mm_insert_epi16(v, bee_ld_u16(p + 3 * stride), 3);
        return _mm_cvtph_ps(v);
    }
    uint64_t v = (uint64_t)bee_ld_u16(p) | (uint64_t)bee_ld_u16(p + stride) << 16 |
                 (uint64_t)bee_ld_u16(p + 2 * stride) << 32 | (uint64_t)bee_ld_u16(p + 3 * stride) << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* Lane k of s broadcast to 8 lanes. */
INL __m256 bcast_lane(__m128 s, int k) { return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_set1_epi32(k)); }

/* ================================================================ float weights */

enum { K_F32 = 0, K_F16 = 1, K_BF16 = 2 };

/* 8 weights from element i, as fp32. */
INL __m256 ld_w8(int kind, const void *w, size_t i) {
    if (kind == K_F32) return _mm256_loadu_ps((const float *)w + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + i));
    if (kind == K_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INL void fstep(int kind, int R, __m256 acc[][4], const void *w, size_t i, const float *const *x, size_t xi) {
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256 wv = ld_w8(kind, w, i + 8 * j);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[r] + xi + 8 * j), acc[r][j]);
    }
}

/* R (1 or 2) activation rows, fp32. */
INL void fdot_rows(int kind, int R, size_t n, const void *w, const float *const *x, float *out) {
    __m256 acc[2][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[r][j] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        PF((const uint8_t *)w + i * (kind == K_F32 ? 4 : 2), kind == K_F32 ? 128 : 64);
        fstep(kind, R, acc, w, i, x, i);
    }
    if (i < n) { /* zero-padded last step */
        size_t rem = n - i, es = kind == K_F32 ? 4 : 2;
        float wt[32], xt[2][32];
        const float *xp[2];
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
    for (int r = 0; r < R; r++)
        out[r] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
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
        fdot_rows(kind, 2, n, w, xs, out);                                                             \
        fdot_rows(kind, 2, n, w, xs + 2, out + 2);                                                     \
    }

FLOAT_KERNEL(dot_f32, K_F32)
FLOAT_KERNEL(dot_f16, K_F16)
FLOAT_KERNEL(dot_bf16, K_BF16)

/* ================================================================ int8 weights */

enum { K_Q8_0 = 0, K_Q4_0 = 1, K_Q4_1 = 2 };

INL size_t wbytes(int kind) { return kind == K_Q8_0 ? BEE_Q8_0_BYTES : kind == K_Q4_0 ? BEE_Q4_0_BYTES : BEE_Q4_1_BYTES; }
INL size_t xbytes(int kind) { return kind == K_Q4_1 ? BEE_Q8_1_BYTES : BEE_Q8_0_BYTES; }

/* The 32 weights of a block as bytes in element order: int8 for Q8_0, the
 * nibbles 0..15 for Q4_0/Q4_1 (low nibbles = elements 0..15). */
INL __m256i ld_wq(int kind, const uint8_t *b) {
    if (kind == K_Q8_0) return _mm256_loadu_si256((const __m256i *)(b + 2));
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(b + (kind == K_Q4_0 ? 2 : 4))));
    v = _mm256_srlv_epi64(v, _mm256_set_epi64x(4, 4, 0, 0)); /* upper half: high nibbles */
    return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

/* One group of 4 blocks for R activation rows. wg/xg[r] point at the first
 * block of the group. */
INL void qgroup(int kind, int R, __m256 acc[][2], __m128 *macc, const uint8_t *wg, const uint8_t *const *xg) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), xo = xb - 32;
    const __m256i ones = _mm256_set1_epi16(1);
    const int ins = R > 1;
    __m128 wd = ld_f16x4(ins, wg, wb);
    /* block scales dw*dx; one row broadcasts them from memory (loads), dot4
     * with shuffles (port 5 is idle there); the values are the same */
    __m128 sc[4];
    float scm[4] __attribute__((aligned(16)));
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) sc[r] = _mm_mul_ps(wd, ld_f16x4(ins, xg[r], xb));
    if (R == 1) _mm_store_ps(scm, sc[0]);
    if (kind == K_Q4_1) {
        __m128 wm = ld_f16x4(ins, wg + 2, wb);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) macc[r] = _mm_fmadd_ps(wm, ld_f16x4(ins, xg[r] + 2, xb), macc[r]);
    }
#pragma GCC unroll 4
    for (int b = 0; b < 4; b++) {
        __m256i wq = ld_wq(kind, wg + b * wb), aw = wq;
        if (kind == K_Q8_0) aw = _mm256_abs_epi8(wq);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256i xq = _mm256_loadu_si256((const __m256i *)(xg[r] + b * xb + xo)), p;
            if (kind == K_Q8_0) { /* |w| x sign(x, w) */
                p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(xq, wq));
            } else { /* unsigned nibbles x signed quants; Q4_0: (q - 8) x = q x - 8 x (int16, no overflow) */
                p = _mm256_maddubs_epi16(wq, xq);
                if (kind == K_Q4_0) p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(8), xq));
            }
            p = _mm256_madd_epi16(p, ones);
            __m256 bs = R == 1 ? _mm256_broadcast_ss(&scm[b]) : bcast_lane(sc[r], b);
            acc[r][b & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), bs, acc[r][b & 1]);
        }
    }
}

INL void qdot_rows(int kind, int R, size_t n, const void *w, const void *const *x, float *out) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), nb = n / 32;
    __m256 acc[4][2];
    __m128 macc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps(), macc[r] = _mm_setzero_ps();
    const uint8_t *wg = w, *xg[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) xg[r] = x[r];
    size_t g = 0;
    for (; g + 4 <= nb; g += 4) {
        PF(wg, 4 * wb);
        qgroup(kind, R, acc, macc, wg, xg);
        wg += 4 * wb;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) xg[r] += 4 * xb;
    }
    if (g < nb) { /* zero-padded last group: zero blocks add exactly 0 */
        uint8_t wt[4 * BEE_Q8_1_BYTES], xt[4][4 * BEE_Q8_1_BYTES];
        memset(wt, 0, sizeof wt);
        memcpy(wt, wg, (nb - g) * wb);
        for (int r = 0; r < R; r++) {
            memset(xt[r], 0, sizeof xt[r]);
            memcpy(xt[r], xg[r], (nb - g) * xb);
            xg[r] = xt[r];
        }
        qgroup(kind, R, acc, macc, wt, xg);
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float s = hsum8(_mm256_add_ps(acc[r][0], acc[r][1]));
        out[r] = kind == K_Q4_1 ? s + hsum4(macc[r]) : s;
    }
}

#define QUANT_KERNEL(name, kind)                                                                       \
    TGT static float name(size_t n, const void *w, const void *x) {                                   \
        const void *xs[1] = {x};                                                                       \
        float out[1];                                                                                  \
        qdot_rows(kind, 1, n, w, xs, out);                                                             \
        return out[0];                                                                                 \
    }                                                                                                  \
    TGT static void name##4(size_t n, const void *w, const void *const x[4], float out[4]) {          \
        qdot_rows(kind, 4, n, w, x, out);                                                              \
    }

QUANT_KERNEL(dot_q8_0, K_Q8_0)
QUANT_KERNEL(dot_q4_0, K_Q4_0)
QUANT_KERNEL(dot_q4_1, K_Q4_1)

static const bee_dot_kernel k_avx2[] = {
    {BEE_TYPE_F32, BEE_TYPE_F32, dot_f32, dot_f324, "avx2"},
    {BEE_TYPE_F16, BEE_TYPE_F32, dot_f16, dot_f164, "avx2"},
    {BEE_TYPE_BF16, BEE_TYPE_F32, dot_bf16, dot_bf164, "avx2"},
    {BEE_TYPE_Q8_0, BEE_TYPE_Q8_0, dot_q8_0, dot_q8_04, "avx2"},
    {BEE_TYPE_Q4_0, BEE_TYPE_Q8_0, dot_q4_0, dot_q4_04, "avx2"},
    {BEE_TYPE_Q4_1, BEE_TYPE_Q8_1, dot_q4_1, dot_q4_14, "avx2"},
};

const bee_dot_kernel *bee_dot_avx2_kernel(uint32_t weight_type) {
    for (size_t i = 0; i < sizeof k_avx2 / sizeof k_avx2[0]; i++)
        if (k_avx2[i].type == weight_type) return &k_avx2[i];
    return NULL;
}

#else /* not x86-64 */

const bee_dot_kernel *bee_dot_avx2_kernel(uint32_t weight_type) {
    (void)weight_type;
    return NULL;
}

#endif
