/* AVX-512 dot kernels (F/BW/VL/DQ; VNNI + VBMI for the int8 types; BF16 for
 * bf16 x bf16).
 *
 * Layout of the arithmetic (fixed, so results depend only on n):
 *   float types: 4 accumulators of 16 lanes per activation row, 64 elements
 *     per step (element i -> accumulator (i / 16) % 4, lane i % 16); a
 *     partial last step is zero-padded; reduce (a0 + a1) + (a2 + a3), then
 *     the 16 lanes in a fixed tree.
 *   bf16 x bf16 (vdpbf16ps): the same with 32 elements per accumulator step
 *     (lane l takes elements 2l and 2l + 1), 128 per step.
 *   int8 types: blocks in pairs, one 512-bit vpdpbusd per pair giving 8 int32
 *     lanes per block (exact). Q8_0: activations offset to unsigned
 *     (x + 128), the sum starts from -128 sum(w); Q4_0: nibbles (unsigned)
 *     times x, plus 8 times -x; Q4_1: nibbles times x. Lanes converted to
 *     fp32 and fma'd with the block scale dw*dx into accumulator (pair % 2).
 *     Blocks are taken 8 at a time (their fp16 scales picked with vpermt2b
 *     and converted together), a partial last group zero-padded (zero blocks
 *     add exactly 0). Q4_1 adds m*s per block in a separate 8-lane
 *     accumulator, added after the main reduction.
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

#define ISA "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define TGT __attribute__((target(ISA)))
#define TGTV __attribute__((target(ISA ",avx512vnni,avx512vbmi")))
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
    for (; i + 64 <= n; i += 64) {
        PF((const uint8_t *)w + i * (kind == K_F32 ? 4 : 2), kind == K_F32 ? 256 : 128);
        fstep(kind, R, acc, w, i, x, i);
    }
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
    for (; i + 128 <= n; i += 128) {
        PF((const uint16_t *)w + i, 256);
        bstep(R, acc, (const uint16_t *)w, xs, i);
    }
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

/* 32 + 32 bytes from a and b. */
INL TGTV __m512i ld_pair(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* The nibbles (0..15) of blocks a and b as 64 bytes in element order
 * (128-bit lanes: lo(a), hi(a), lo(b), hi(b)). */
INL TGTV __m512i ld_nibbles(const uint8_t *qa, const uint8_t *qb) {
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qa));
    v = _mm512_mask_broadcast_i32x4(v, 0xff00, _mm_loadu_si128((const __m128i *)qb)); /* qa qa qb qb */
    v = _mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4);
    return _mm512_and_si512(v, _mm512_set1_epi8(15));
}

/* fp16 scales of an 8-block group as fp32, picked out of 64-byte loads with
 * byte permutes (AVX512_VBMI vpermt2b, one uop) instead of 16 scalar loads.
 * All loads stay inside the group. */
/* Byte indices (vpermt2b: 64 + i = byte i of the second source) of the
 * fp16 word i: both of its bytes. */
#define W(i) 2 * (i), 2 * (i) + 1
static const uint8_t k_idx_q4_0[64] = {W(0), W(9), W(18), W(27), W(32 + 4), W(32 + 13), W(32 + 22), W(32 + 31)};
static const uint8_t k_idx_q8_0a[64] = {W(0), W(17), W(32 + 2), W(32 + 19)};
static const uint8_t k_idx_q8_0b[64] = {W(0), W(0), W(0), W(0), W(4), W(21), W(32 + 6), W(32 + 23)};
static const uint8_t k_idx_q4_1a[64] = {W(0), W(10), W(20), W(30), W(32 + 8), W(32 + 18), W(32 + 28), W(0), W(1), W(11), W(21), W(31), W(32 + 9), W(32 + 19), W(32 + 29)};
static const uint8_t k_idx_q4_1b[64] = {W(0), W(1), W(2), W(3), W(4), W(5), W(6), W(32 + 22), W(8), W(9), W(10), W(11), W(12), W(13), W(14), W(32 + 23)};
static const uint8_t k_idx_q8_1a[64] = {W(0), W(18), W(32 + 4), W(32 + 22), W(0), W(0), W(0), W(0), W(1), W(19), W(32 + 5), W(32 + 23)};
static const uint8_t k_idx_q8_1b[64] = {W(0), W(0), W(0), W(0), W(8), W(26), W(32 + 12), W(32 + 30), W(0), W(0), W(0), W(0), W(9), W(27), W(32 + 13), W(32 + 31)};
#undef W

INL TGTV __m512i ldv(const void *p) { return _mm512_loadu_si512(p); }
INL TGTV __m512i perm2(const uint8_t *a, const uint8_t *idx, const uint8_t *b) {
    return _mm512_permutex2var_epi8(ldv(a), ldv(idx), ldv(b));
}

/* d of 8 Q4_0 blocks (stride 18) */
INL TGTV __m256 sc8_q4_0(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm512_castsi512_si128(perm2(p, k_idx_q4_0, p + 64)));
}

/* d of 8 Q8_0 blocks (stride 34) */
INL TGTV __m256 sc8_q8_0(const uint8_t *p) {
    __m512i a = perm2(p, k_idx_q8_0a, p + 64), b = perm2(p + 128, k_idx_q8_0b, p + 192);
    return _mm256_cvtph_ps(_mm_blend_epi32(_mm512_castsi512_si128(a), _mm512_castsi512_si128(b), 0xc));
}

/* d (lanes 0-7) and m (lanes 8-15) of 8 Q4_1 blocks (stride 20) */
INL TGTV __m512 sc8_q4_1(const uint8_t *p) {
    __m512i v = perm2(p, k_idx_q4_1a, p + 64);
    v = _mm512_permutex2var_epi8(v, ldv(k_idx_q4_1b), ldv(p + 96));
    return _mm512_cvtph_ps(_mm512_castsi512_si256(v));
}

/* d (lanes 0-7) and s (lanes 8-15) of 8 Q8_1 blocks (stride 36) */
INL TGTV __m512 sc8_q8_1(const uint8_t *p) {
    __m512i a = perm2(p, k_idx_q8_1a, p + 64), b = perm2(p + 128, k_idx_q8_1b, p + 192);
    return _mm512_cvtph_ps(_mm256_blend_epi32(_mm512_castsi512_si256(a), _mm512_castsi512_si256(b), 0xcc));
}

#define GB 8 /* blocks per group */

/* One group of 8 blocks (4 pairs) for R activation rows. Pair k lands in
 * accumulator k % 2; lanes 0-7 of a pair are its first block. */
INL TGTV void qgroup(int kind, int R, __m512 acc[][2], __m512 *macc, const uint8_t *wg, const uint8_t *const *xg) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), xo = xb - 32, wo = kind == K_Q4_1 ? 4 : 2;
    const __m512i k80 = _mm512_set1_epi8((char)0x80), k8 = _mm512_set1_epi8(8);
    __m512 wdm; /* lanes 0-7: d of the 8 blocks; Q4_1 lanes 8-15: m */
    if (kind == K_Q8_0) wdm = _mm512_castps256_ps512(sc8_q8_0(wg));
    else if (kind == K_Q4_0) wdm = _mm512_castps256_ps512(sc8_q4_0(wg));
    else wdm = sc8_q4_1(wg);
    __m512i wq[4], c[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const uint8_t *a = wg + 2 * k * wb + wo, *b = a + wb;
        if (kind == K_Q8_0) {
            wq[k] = ld_pair(a, b);
            /* x is offset to unsigned (x + 128): start from -128 sum(w) per lane */
            c[k] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, wq[k]));
        } else {
            wq[k] = ld_nibbles(a, b);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const uint8_t *x0 = xg[r];
        __m512 sc; /* lanes 0-7: dw dx; Q4_1 lanes 8-15: m s */
        if (kind == K_Q4_1) {
            sc = _mm512_mul_ps(wdm, sc8_q8_1(x0));
            macc[r] = _mm512_add_ps(macc[r], sc);
        } else {
            sc = _mm512_castps256_ps512(_mm256_mul_ps(_mm512_castps512_ps256(wdm), sc8_q8_0(x0)));
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m512i xq = ld_pair(x0 + 2 * k * xb + xo, x0 + (2 * k + 1) * xb + xo), i;
            if (kind == K_Q8_0) {
                i = _mm512_dpbusd_epi32(c[k], _mm512_xor_si512(xq, k80), wq[k]);
            } else {
                i = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[k], xq);
                /* Q4_0: (q - 8) x = q x + 8 (-x) */
                if (kind == K_Q4_0) i = _mm512_dpbusd_epi32(i, k8, _mm512_sub_epi8(_mm512_setzero_si512(), xq));
            }
            const __m512i idx = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                 2 * k + 1, 2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
            acc[r][k & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_permutexvar_ps(idx, sc), acc[r][k & 1]);
        }
    }
}

INL TGTV float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INL TGTV void qdot_rows(int kind, int R, size_t n, const void *w, const void *const *x, float *out) {
    const size_t wb = wbytes(kind), xb = xbytes(kind), nb = n / 32;
    __m512 acc[4][2];
    __m512 macc[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps(), macc[r] = _mm512_setzero_ps();
    const uint8_t *wg = w, *xg[4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) xg[r] = x[r];
    size_t g = 0;
    for (; g + GB <= nb; g += GB) {
        PF(wg, GB * wb);
        qgroup(kind, R, acc, macc, wg, xg);
        wg += GB * wb;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) xg[r] += GB * xb;
    }
    if (g < nb) { /* zero-padded last group: zero blocks add exactly 0 */
        uint8_t wt[GB * BEE_Q8_1_BYTES], xt[4][GB * BEE_Q8_1_BYTES];
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
        float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
        out[r] = kind == K_Q4_1 ? s + hsum8(_mm512_extractf32x8_ps(macc[r], 1)) : s;
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
