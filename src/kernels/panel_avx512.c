/* AVX-512 panel kernels (see panel.h): the 16 rows of a panel in the lanes
 * of one register, each token's activation broadcast from memory, up to 12
 * tokens per call so that every weight vector loaded is used 12 times.
 * int8 types use vpdpbusd (AVX512_VNNI): unsigned weights times signed
 * activations, the offset removed through the per-block correction term the
 * activations carry. */
#include "kernels/panel.h"

#include "kernels/cpu.h"
#include "util/types.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define ISA "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define TGT __attribute__((target(ISA)))
#define TGTV __attribute__((target(ISA ",avx512vnni")))
#define INL static inline __attribute__((always_inline))
#define P BEE_PANEL_ROWS
#define TMAX BEE_PANEL_TILE

/* Prefetch distance for the panel stream: a single core needs KiBs in flight
 * to reach its share of the read bandwidth. 2 KiB beat 4 KiB by 4-10 % in
 * paired decode runs on the 1B/2B shapes (docs/PERFORMANCE.md). */
#ifndef PF_AHEAD
#define PF_AHEAD 2048
#endif
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T0
#endif

/* ================================================================ float types */

enum { K_F32, K_F16, K_BF16 };

INL TGT __m512 ld16(int kind, const uint8_t *p) {
    if (kind == K_F32) return _mm512_loadu_ps(p);
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (kind == K_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

INL TGT void ftile(int kind, int T, const uint8_t *pw, const bee_panel_act *a, size_t t0, float *out) {
    size_t cols = a->cols, es = kind == K_F32 ? 4 : 2;
    const float *x = a->f + t0 * cols; /* t0 is a tile start: element (t, k) at x[k * TMAX + t] */
    __m512 acc[TMAX];
#pragma GCC unroll 12
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (size_t k = 0; k < cols; k++) {
        const uint8_t *e = pw + k * P * es;
        if ((k & 3) == 0) _mm_prefetch((const char *)e + PF_AHEAD, PF_HINT);
        __m512 w = ld16(kind, e);
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[k * TMAX + (size_t)t]), acc[t]);
    }
#pragma GCC unroll 12
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * P, acc[t]);
}

/* One column: w at e0 and e0 + d, the tile's 12 activations at xk. */
INL TGT void ftile2_col(int kind, const uint8_t *e0, size_t d, const float *xk, __m512 acc0[TMAX],
                        __m512 acc1[TMAX]) {
    __m512 w0 = ld16(kind, e0), w1 = ld16(kind, e0 + d);
#pragma GCC unroll 12
    for (int t = 0; t < TMAX; t++) {
        __m512 b = _mm512_set1_ps(xk[t]);
        acc0[t] = _mm512_fmadd_ps(w0, b, acc0[t]);
        acc1[t] = _mm512_fmadd_ps(w1, b, acc1[t]);
    }
}

/* The column loop, unrolled by hand four times (the compiler's unrolling
 * kept one pointer update and one prefetch test per column); has_pf is a
 * constant, so each instance has no test at all. The same columns of the
 * next tile (xnext floats on) are prefetched into L1 as these run. */
INL TGT void ftile2_cols(int kind, int has_pf, const uint8_t *e0, size_t d, const float *xk, size_t xnext, size_t n,
                         const char *pf, __m512 acc0[TMAX], __m512 acc1[TMAX]) {
    const size_t step = P * (kind == K_F32 ? 4 : 2);
    for (; n >= 4; n -= 4, e0 += 4 * step, xk += 4 * TMAX) {
        const char *xn = (const char *)(xk + xnext);
        _mm_prefetch(xn, _MM_HINT_T0), _mm_prefetch(xn + 64, _MM_HINT_T0), _mm_prefetch(xn + 128, _MM_HINT_T0);
        if (has_pf) _mm_prefetch(pf, _MM_HINT_T1), pf += 64;
        ftile2_col(kind, e0, d, xk, acc0, acc1);
        ftile2_col(kind, e0 + step, d, xk + TMAX, acc0, acc1);
        ftile2_col(kind, e0 + 2 * step, d, xk + 2 * TMAX, acc0, acc1);
        ftile2_col(kind, e0 + 3 * step, d, xk + 3 * TMAX, acc0, acc1);
    }
    for (; n; n--, e0 += step, xk += TMAX) ftile2_col(kind, e0, d, xk, acc0, acc1);
}

/* Final results straight into the output, divided as the scalar scatter
 * divides (one correctly rounded division per element); masked stores for a
 * ragged panel never touch the lanes beyond its rows. */
INL TGT void ftile2_final(const __m512 acc0[TMAX], const __m512 acc1[TMAX], const bee_panel_dst *dst) {
    const __m512 dv = _mm512_set1_ps(dst->div);
    const __mmask16 m0 = (__mmask16)((1u << dst->n0) - 1), m1 = (__mmask16)((1u << dst->n1) - 1);
#pragma GCC unroll 12
    for (int t = 0; t < TMAX; t++) {
        if (t >= dst->T) break;
        float *yt = dst->y + (size_t)t * dst->ldy;
        _mm512_mask_storeu_ps(yt, m0, _mm512_div_ps(acc0[t], dv));
        _mm512_mask_storeu_ps(yt + P, m1, _mm512_div_ps(acc1[t], dv));
    }
}

/* Two panels at once (rows of pw0 to out0, of pw1 to out1): each broadcast
 * activation feeds two FMAs, so a full tile needs 14 loads per 24 FMAs.
 * Columns [k0, k1) only, continuing the sums over [0, k0) that out0/out1
 * hold (from zero when k0 == 0): each output's FMA chain runs in k order
 * whatever the column blocks, so blocking does not change a bit. The sums
 * go back to out0/out1, or as final results to dst. When pf is not NULL,
 * one cache line of it per 4 columns is prefetched into L2 (part of the
 * caller's next weight block, which otherwise arrives from DRAM on demand;
 * a line per 4 columns keeps few requests in flight). */
INL TGT void ftile2(int kind, const uint8_t *pw0, const uint8_t *pw1, const bee_panel_act *a, size_t t0, size_t k0,
                    size_t k1, float *out0, float *out1, const uint8_t *pf, const bee_panel_dst *dst) {
    size_t es = kind == K_F32 ? 4 : 2, d = (size_t)(pw1 - pw0);
    const float *xk = a->f + t0 * a->cols + k0 * TMAX;
    const uint8_t *e0 = pw0 + k0 * P * es;
    __m512 acc0[TMAX], acc1[TMAX];
#pragma GCC unroll 12
    for (int t = 0; t < TMAX; t++) {
        acc0[t] = k0 ? _mm512_loadu_ps(out0 + t * P) : _mm512_setzero_ps();
        acc1[t] = k0 ? _mm512_loadu_ps(out1 + t * P) : _mm512_setzero_ps();
    }
    if (pf) ftile2_cols(kind, 1, e0, d, xk, a->cols * TMAX, k1 - k0, (const char *)pf, acc0, acc1);
    else ftile2_cols(kind, 0, e0, d, xk, a->cols * TMAX, k1 - k0, NULL, acc0, acc1);
    if (dst) {
        ftile2_final(acc0, acc1, dst);
        return;
    }
#pragma GCC unroll 12
    for (int t = 0; t < TMAX; t++) _mm512_storeu_ps(out0 + t * P, acc0[t]), _mm512_storeu_ps(out1 + t * P, acc1[t]);
}

/* ================================================================ int8 types */

INL TGTV int32_t ld32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 8 unsigned weight groups of one block: g holds weights 4g'..4g'+3 where
 * xoff[g] gives the activation offset of the group within the block. */
INL TGTV void block_groups(int q4, const uint8_t *blk, __m512i wv[8], int xoff[8]) {
    if (!q4) {
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) wv[g] = _mm512_loadu_si512(blk + 64 * g), xoff[g] = 4 * g;
        return;
    }
    const __m512i lo = _mm512_set1_epi8(15);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i raw = _mm512_loadu_si512(blk + 64 * c);
        wv[2 * c] = _mm512_and_si512(raw, lo), xoff[2 * c] = 4 * c;
        wv[2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), lo), xoff[2 * c + 1] = 16 + 4 * c;
    }
}

enum { Q_8_0, Q_4_0, Q_4_1 };

/* Q4_1 (w = d q + m): the int8 sum starts at 0, and each block adds
 * m * (dx * sum(x_q)), the activations' correction term being their sum. */
INL TGTV void qtile(int kind, int T, const uint8_t *pw, const bee_panel_act *a, size_t t0, float *out) {
    const int q4 = kind != Q_8_0;
    size_t cols = a->cols, nb = cols / 32, bb = kind == Q_8_0 ? 544 : kind == Q_4_0 ? 288 : 320;
    size_t sc = kind == Q_8_0 ? 512 : 256;
    /* Few tokens leave too few independent vpdpbusd chains to hide their
     * latency: split each token's block sum over C chains (exact in int32). */
    const int C = T == 1 ? 4 : T <= 3 ? 2 : 1;
    /* t0 is a tile start: block b of token t at x + (b * TMAX + t) * 32 */
    const int8_t *x = a->q + t0 * cols;
    const float *dx = a->d + t0 * nb;
    const int32_t *cx = a->c + t0 * nb;
    __m512 acc[TMAX];
#pragma GCC unroll 12
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = pw + b * bb;
#ifndef BEE_NO_PF
        for (size_t o = 0; o < bb; o += 64) _mm_prefetch((const char *)blk + PF_AHEAD + o, PF_HINT);
#endif
        __m512i wv[8], ia[TMAX][4];
        int xoff[8];
        block_groups(q4, blk, wv, xoff);
        const int8_t *xb = x + b * TMAX * 32;
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) {
            ia[t][0] = kind == Q_4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(cx[b * TMAX + (size_t)t]);
#pragma GCC unroll 4
            for (int k = 1; k < C; k++) ia[t][k] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++)
#pragma GCC unroll 12
            for (int t = 0; t < T; t++)
                ia[t][g % C] = _mm512_dpbusd_epi32(ia[t][g % C], wv[g],
                                                   _mm512_set1_epi32(ld32(xb + 32 * t + xoff[g])));
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + sc)));
#pragma GCC unroll 12
        for (int t = 0; t < T; t++) {
            __m512i sum = ia[t][0];
#pragma GCC unroll 4
            for (int k = 1; k < C; k++) sum = _mm512_add_epi32(sum, ia[t][k]);
            float dxt = dx[b * TMAX + (size_t)t];
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(dw, _mm512_set1_ps(dxt)), acc[t]);
            if (kind == Q_4_1)
                acc[t] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + sc + 32))),
                                         _mm512_set1_ps(dxt * (float)cx[b * TMAX + (size_t)t]), acc[t]);
        }
    }
#pragma GCC unroll 12
    for (int t = 0; t < T; t++) _mm512_storeu_ps(out + t * P, acc[t]);
}

/* ================================================================ activations
 * q8_0 quantization of activation blocks, bit-identical to the reference
 * (kernels/quant.c): amax ignoring NaN, fp16 scale rounded to nearest even,
 * x / d clamped to [-127, 127] (NaN to -127), rounded half away from zero. */

TGT static void quant_blocks(const float *x, size_t nb, int8_t *q, size_t qs, float *d, int32_t *c, size_t ds,
                             int off) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < nb; b++) {
        __m512 x0 = _mm512_loadu_ps(x + 32 * b), x1 = _mm512_loadu_ps(x + 32 * b + 16);
        __m512 m = _mm512_max_ps(_mm512_and_ps(x0, absmask), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_and_ps(x1, absmask), m);
        float amax = _mm512_reduce_max_ps(m);
        float s = amax / 127.0f;
        if (s > 65504.0f) s = 65504.0f;
        float dd = bee_f16_to_f32(bee_f32_to_f16(s));
        int8_t *qb = q + b * qs;
        if (!(dd > 0.0f)) {
            memset(qb, 0, 32);
            d[b * ds] = 0.0f, c[b * ds] = 0;
            continue;
        }
        __m512 vd = _mm512_set1_ps(dd), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
        __m512i sum = _mm512_setzero_si512();
        for (int h = 0; h < 2; h++) {
            __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(h ? x1 : x0, vd), lo), hi);
            __m512 a = _mm512_and_ps(v, absmask);
            __m512 t = _mm512_roundscale_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __mmask16 up = _mm512_cmp_ps_mask(_mm512_sub_ps(a, t), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
            __m512i qi = _mm512_mask_add_epi32(_mm512_cvttps_epi32(t), up, _mm512_cvttps_epi32(t), _mm512_set1_epi32(1));
            __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
            qi = _mm512_mask_sub_epi32(qi, neg, _mm512_setzero_si512(), qi);
            sum = _mm512_add_epi32(sum, qi);
            _mm_storeu_si128((__m128i *)(qb + 16 * h), _mm512_cvtepi32_epi8(qi));
        }
        d[b * ds] = dd;
        c[b * ds] = -off * _mm512_reduce_add_epi32(sum);
    }
}

bee_panel_quant_fn bee_panel_quant_avx512(void) { return bee_cpu_level() >= BEE_CPU_AVX512 ? quant_blocks : NULL; }

/* ================================================================ instances
 * One function per (type, tile size), so each inner loop is fully unrolled
 * with its accumulators in registers. */

#define TILE_CASES(call)                                                                               \
    switch (T) {                                                                                       \
    case 1: call(1); break;                                                                            \
    case 2: call(2); break;                                                                            \
    case 3: call(3); break;                                                                            \
    case 4: call(4); break;                                                                            \
    case 5: call(5); break;                                                                            \
    case 6: call(6); break;                                                                            \
    case 7: call(7); break;                                                                            \
    case 8: call(8); break;                                                                            \
    case 9: call(9); break;                                                                            \
    case 10: call(10); break;                                                                          \
    case 11: call(11); break;                                                                          \
    default: call(12); break;                                                                          \
    }

#define FLOAT_TILE(name, kind)                                                                         \
    TGT static void name(const void *pw_, const bee_panel_act *a, size_t t0, int T, float *out) {     \
        const uint8_t *pw = pw_;                                                                       \
        TILE_CASES(FT_##kind)                                                                          \
    }
#define FT_K_F32(n) ftile(K_F32, n, pw, a, t0, out)
#define FT_K_F16(n) ftile(K_F16, n, pw, a, t0, out)
#define FT_K_BF16(n) ftile(K_BF16, n, pw, a, t0, out)
FLOAT_TILE(tile_f32, K_F32)
FLOAT_TILE(tile_f16, K_F16)
FLOAT_TILE(tile_bf16, K_BF16)

#define FLOAT_PAIR(name, kind)                                                                         \
    TGT static void name(const void *pw0, const void *pw1, const bee_panel_act *a, size_t t0, size_t k0,  \
                         size_t k1, float *out0, float *out1, const void *pf, const bee_panel_dst *dst) { \
        ftile2(kind, pw0, pw1, a, t0, k0, k1, out0, out1, pf, dst);                                    \
    }
FLOAT_PAIR(pair_f32, K_F32)
FLOAT_PAIR(pair_f16, K_F16)
FLOAT_PAIR(pair_bf16, K_BF16)

bee_panel_pair_fn bee_panel_pair_avx512(uint32_t type) {
    if (bee_cpu_level() < BEE_CPU_AVX512) return NULL;
    switch (type) {
    case BEE_TYPE_F32: return pair_f32;
    case BEE_TYPE_F16: return pair_f16;
    case BEE_TYPE_BF16: return pair_bf16;
    default: return NULL;
    }
}

#define QT_Q8(n) qtile(Q_8_0, n, pw, a, t0, out)
#define QT_Q4(n) qtile(Q_4_0, n, pw, a, t0, out)
#define QT_Q41(n) qtile(Q_4_1, n, pw, a, t0, out)
TGTV static void tile_q8_0(const void *pw_, const bee_panel_act *a, size_t t0, int T, float *out) {
    const uint8_t *pw = pw_;
    TILE_CASES(QT_Q8)
}
TGTV static void tile_q4_0(const void *pw_, const bee_panel_act *a, size_t t0, int T, float *out) {
    const uint8_t *pw = pw_;
    TILE_CASES(QT_Q4)
}
TGTV static void tile_q4_1(const void *pw_, const bee_panel_act *a, size_t t0, int T, float *out) {
    const uint8_t *pw = pw_;
    TILE_CASES(QT_Q41)
}

bee_panel_tile_fn bee_panel_tile_avx512(uint32_t type) {
    if (bee_cpu_level() < BEE_CPU_AVX512) return NULL;
    switch (type) {
    case BEE_TYPE_F32: return tile_f32;
    case BEE_TYPE_F16: return tile_f16;
    case BEE_TYPE_BF16: return tile_bf16;
    case BEE_TYPE_Q8_0: return (bee_cpu_ext() & BEE_CPU_EXT_VNNI) ? tile_q8_0 : NULL;
    case BEE_TYPE_Q4_0: return (bee_cpu_ext() & BEE_CPU_EXT_VNNI) ? tile_q4_0 : NULL;
    case BEE_TYPE_Q4_1: return (bee_cpu_ext() & BEE_CPU_EXT_VNNI) ? tile_q4_1 : NULL;
    default: return NULL;
    }
}

#else
bee_panel_tile_fn bee_panel_tile_avx512(uint32_t type) {
    (void)type;
    return NULL;
}
bee_panel_quant_fn bee_panel_quant_avx512(void) { return NULL; }
bee_panel_pair_fn bee_panel_pair_avx512(uint32_t type) {
    (void)type;
    return NULL;
}
#endif
