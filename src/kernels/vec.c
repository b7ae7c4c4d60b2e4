#include "kernels/vec.h"

#include <math.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/kernels.h"
#include "util/types.h"

/* ---------------------------------------------------------------- attention, reference */

static float elem(uint32_t type, const uint8_t *row, size_t e) {
    if (type == BEE_TYPE_F32) {
        float f;
        memcpy(&f, row + 4 * e, 4);
        return f;
    }
    uint16_t h = (uint16_t)(row[2 * e] | row[2 * e + 1] << 8);
    return type == BEE_TYPE_F16 ? bee_f16_to_f32(h) : bee_bf16_to_f32(h);
}

static float dot_tree_ref(uint32_t type, size_t dh, const float *q, const uint8_t *row) {
    float l[16] = {0};
    for (size_t e = 0; e < dh; e++) l[e % 16] = fmaf(q[e], elem(type, row, e), l[e % 16]);
    float s[4];
    for (int L = 0; L < 4; L++) s[L] = (l[4 * L] + l[4 * L + 2]) + (l[4 * L + 1] + l[4 * L + 3]);
    return (s[0] + s[2]) + (s[1] + s[3]);
}

#define ATTN_REF(name, type)                                                                           \
    static void name##_dots(size_t n, size_t dh, const float *q, const void *rows, size_t stride,      \
                            const int32_t *idx, float *out) {                                          \
        for (size_t i = 0; i < n; i++)                                                                 \
            out[i] = dot_tree_ref(type, dh, q, (const uint8_t *)rows + (size_t)idx[i] * stride);       \
    }                                                                                                  \
    static void name##_wsum(size_t n, size_t dh, const float *p, const void *rows, size_t stride,      \
                            const int32_t *idx, float *out) {                                          \
        for (size_t e = 0; e < dh; e++) out[e] = 0;                                                    \
        for (size_t i = 0; i < n; i++) {                                                               \
            const uint8_t *r = (const uint8_t *)rows + (size_t)idx[i] * stride;                        \
            for (size_t e = 0; e < dh; e++) out[e] = fmaf(p[i], elem(type, r, e), out[e]);             \
        }                                                                                              \
    }                                                                                                  \
    static void name##_dots_heads(size_t n, size_t H, size_t dh, const float *q, const void *rows, size_t stride, \
                                  size_t hb, const int32_t *idx, float *out, size_t ldo) {             \
        for (size_t h = 0; h < H; h++)                                                                 \
            name##_dots(n, dh, q + h * dh, (const uint8_t *)rows + h * hb, stride, idx, out + h * ldo); \
    }                                                                                                  \
    static void name##_wsum_heads(size_t n, size_t H, size_t dh, const float *p, size_t ldp, const void *rows, \
                                  size_t stride, size_t hb, const int32_t *idx, float *out) {          \
        for (size_t h = 0; h < H; h++)                                                                 \
            name##_wsum(n, dh, p + h * ldp, (const uint8_t *)rows + h * hb, stride, idx, out + h * dh); \
    }                                                                                                  \
    static const bee_attn_kernels name = {name##_dots, name##_wsum, name##_dots_heads, name##_wsum_heads};

ATTN_REF(attn_ref_f32, BEE_TYPE_F32)
ATTN_REF(attn_ref_f16, BEE_TYPE_F16)
ATTN_REF(attn_ref_bf16, BEE_TYPE_BF16)

const bee_attn_kernels *bee_attn_ref(uint32_t type) {
    switch (type) {
    case BEE_TYPE_F32: return &attn_ref_f32;
    case BEE_TYPE_F16: return &attn_ref_f16;
    case BEE_TYPE_BF16: return &attn_ref_bf16;
    default: return NULL;
    }
}

/* ---------------------------------------------------------------- element-wise, reference */

static void rmsnorm_ref(float *y, const float *x, const float *w, size_t n, float eps) { bee_rmsnorm_ref(y, x, w, n, eps); }

static void gelu_mul_ref(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = bee_gelu_ref(g[i]) * u[i];
}

static float exp_sum_ref(float *x, size_t n, float mx) {
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += (x[i] = expf(x[i] - mx));
    return sum;
}

static void gelu_bwd_ref(float *dg, float *du, const float *dz, const float *g, const float *u, size_t n, float s) {
    for (size_t i = 0; i < n; i++) {
        float x = g[i], cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        dg[i] = dz[i] * u[i] * (cdf + x * pdf) / s;
        du[i] = dz[i] * (x * cdf) / s;
    }
}

static const bee_eltwise_kernels eltwise_ref = {rmsnorm_ref, gelu_mul_ref, exp_sum_ref, gelu_bwd_ref};

const bee_eltwise_kernels *bee_eltwise_ref(void) { return &eltwise_ref; }

/* ---------------------------------------------------------------- attention tiles, reference */

void bee_attn_pack_keys(uint32_t type, size_t n, size_t dh, const void *rows, size_t stride, float *kp) {
    size_t np = (n + 15) / 16;
    for (size_t p = 0; p < np; p++)
        for (size_t e = 0; e < dh; e++)
            for (size_t l = 0; l < 16; l++) {
                size_t j = 16 * p + l;
                kp[(p * dh + e) * 16 + l] = j < n ? elem(type, (const uint8_t *)rows + j * stride, e) : 0.0f;
            }
}

static void qk_ref(size_t T, size_t n, size_t dh, const float *q, size_t ldq, const float *kp, float *S, size_t lds) {
    for (size_t t = 0; t < T; t++)
        for (size_t j = 0; j < n; j++) {
            float acc = 0;
            for (size_t e = 0; e < dh; e++) acc = fmaf(q[t * ldq + e], kp[((j / 16) * dh + e) * 16 + j % 16], acc);
            S[t * lds + j] = acc;
        }
}

#define PV_REF(name, type)                                                                             \
    static void name(size_t T, size_t n, size_t dh, const float *P, size_t ldp, const void *rows, size_t stride, \
                     const int32_t *idx, float *out, size_t ldo) {                                     \
        for (size_t t = 0; t < T; t++)                                                                 \
            for (size_t e = 0; e < dh; e++) {                                                          \
                float acc = 0;                                                                         \
                for (size_t j = 0; j < n; j++) {                                                       \
                    size_t r = idx ? (size_t)idx[j] : j;                                               \
                    acc = fmaf(P[t * ldp + j], elem(type, (const uint8_t *)rows + r * stride, e), acc); \
                }                                                                                      \
                out[t * ldo + e] = acc;                                                                \
            }                                                                                          \
    }
PV_REF(pv_ref_f32, BEE_TYPE_F32)
PV_REF(pv_ref_f16, BEE_TYPE_F16)
PV_REF(pv_ref_bf16, BEE_TYPE_BF16)
static const bee_attn_tile_kernels tile_ref_f32 = {qk_ref, pv_ref_f32}, tile_ref_f16 = {qk_ref, pv_ref_f16},
                                   tile_ref_bf16 = {qk_ref, pv_ref_bf16};

const bee_attn_tile_kernels *bee_attn_tile_ref(uint32_t type) {
    switch (type) {
    case BEE_TYPE_F32: return &tile_ref_f32;
    case BEE_TYPE_F16: return &tile_ref_f16;
    case BEE_TYPE_BF16: return &tile_ref_bf16;
    default: return NULL;
    }
}

/* ================================================================ AVX-512 */
#if defined(__x86_64__)
#include <immintrin.h>

#define T5 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* ---------------------------------------------------------------- attention, AVX-512 */

enum { A_F32, A_F16, A_BF16 };

/* Rows ahead that the all-heads kernels prefetch (0: none; 2, 4 and 8
 * measured the same within noise on the 2-core VM). */
#ifndef ATTN_PF
#define ATTN_PF 2
#endif

/* 16 elements from p (masked-off lanes read nothing and give 0). */
static inline __attribute__((always_inline)) T5 __m512 ld_kv(int kind, const uint8_t *p, __mmask16 k) {
    if (kind == A_F32) return _mm512_maskz_loadu_ps(k, p);
    __m256i h = _mm256_maskz_loadu_epi16(k, p);
    if (kind == A_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The reduction tree of vec.h for 4 lane-sum vectors at once. */
static inline __attribute__((always_inline)) T5 __m128 reduce4x(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 u = _mm512_add_ps(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(u), _mm512_extractf32x8_ps(u, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

static inline __attribute__((always_inline)) T5 void dots_k(int kind, size_t n, size_t dh, const float *q,
                                                            const void *rows, size_t stride, const int32_t *idx,
                                                            float *out) {
    size_t es = kind == A_F32 ? 4 : 2;
    for (size_t i = 0; i < n; i += 4) {
        __m512 acc[4];
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm512_setzero_ps();
            if (i + (size_t)k >= n) continue;
            const uint8_t *r = (const uint8_t *)rows + (size_t)idx[i + (size_t)k] * stride;
            for (size_t e = 0; e < dh; e += 16) { /* a partial last chunk leaves the other lanes untouched */
                __mmask16 mk = dh - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dh - e)) - 1);
                acc[k] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mk, q + e), ld_kv(kind, r + e * es, mk), acc[k], mk);
            }
        }
        float s[4];
        _mm_storeu_ps(s, reduce4x(acc[0], acc[1], acc[2], acc[3]));
        for (int k = 0; k < 4 && i + (size_t)k < n; k++) out[i + (size_t)k] = s[k];
    }
}

static inline __attribute__((always_inline)) T5 void wsum_k(int kind, size_t n, size_t dh, const float *p,
                                                            const void *rows, size_t stride, const int32_t *idx,
                                                            float *out) {
    size_t es = kind == A_F32 ? 4 : 2;
    for (size_t e0 = 0; e0 < dh; e0 += 128) { /* up to 8 accumulators live */
        size_t m = dh - e0 < 128 ? (dh - e0 + 15) / 16 : 8;
        __m512 acc[8];
        __mmask16 mk[8];
        for (size_t c = 0; c < 8; c++) {
            size_t e = e0 + 16 * c;
            acc[c] = _mm512_setzero_ps();
            mk[c] = e >= dh ? 0 : dh - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dh - e)) - 1);
        }
        for (size_t i = 0; i < n; i++) {
            const uint8_t *r = (const uint8_t *)rows + (size_t)idx[i] * stride + e0 * es;
            __m512 pv = _mm512_set1_ps(p[i]);
            for (size_t c = 0; c < m; c++) acc[c] = _mm512_fmadd_ps(pv, ld_kv(kind, r + 16 * c * es, mk[c]), acc[c]);
        }
        for (size_t c = 0; c < m; c++) _mm512_mask_storeu_ps(out + e0 + 16 * c, mk[c], acc[c]);
    }
}

/* Every head of one query: row i is visited once for all heads (the keys
 * stream through the cache in order); per (row, head) the fma chain and the
 * lane tree are those of dots_k. */
static inline __attribute__((always_inline)) T5 void dots_heads_k(int kind, size_t n, size_t H, size_t dh,
                                                                  const float *q, const void *rows, size_t stride,
                                                                  size_t hb, const int32_t *idx, float *out,
                                                                  size_t ldo) {
    size_t es = kind == A_F32 ? 4 : 2;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *r = (const uint8_t *)rows + (size_t)idx[i] * stride;
        if (ATTN_PF && i + ATTN_PF < n) {
            const uint8_t *nx = (const uint8_t *)rows + (size_t)idx[i + ATTN_PF] * stride;
            for (size_t b = 0; b < H * hb; b += 64) _mm_prefetch((const char *)nx + b, _MM_HINT_T0);
        }
        for (size_t h0 = 0; h0 < H; h0 += 4) {
            __m512 acc[4];
            for (size_t k = 0; k < 4; k++) {
                acc[k] = _mm512_setzero_ps();
                if (h0 + k >= H) continue;
                const float *qh = q + (h0 + k) * dh;
                const uint8_t *rh = r + (h0 + k) * hb;
                for (size_t e = 0; e < dh; e += 16) {
                    __mmask16 mk = dh - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dh - e)) - 1);
                    acc[k] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mk, qh + e), ld_kv(kind, rh + e * es, mk), acc[k], mk);
                }
            }
            float s[4];
            _mm_storeu_ps(s, reduce4x(acc[0], acc[1], acc[2], acc[3]));
            for (size_t k = 0; k < 4 && h0 + k < H; k++) out[(h0 + k) * ldo + i] = s[k];
        }
    }
}

/* G heads of C full 16-lane chunks each (G * C <= 16 accumulators live). */
static inline __attribute__((always_inline)) T5 void wsum_heads_g(int kind, int C, int G, size_t n, size_t H,
                                                                  const float *p, size_t ldp, const void *rows,
                                                                  size_t stride, size_t hb, const int32_t *idx,
                                                                  float *out) {
    size_t es = kind == A_F32 ? 4 : 2, dh = 16 * (size_t)C;
    for (size_t h0 = 0; h0 < H; h0 += (size_t)G) {
        int g_n = H - h0 < (size_t)G ? (int)(H - h0) : G;
        __m512 acc[16];
        for (int a = 0; a < G * C; a++) acc[a] = _mm512_setzero_ps();
        for (size_t i = 0; i < n; i++) {
            const uint8_t *r = (const uint8_t *)rows + (size_t)idx[i] * stride + h0 * hb;
            if (ATTN_PF && i + ATTN_PF < n) {
                const uint8_t *nx = (const uint8_t *)rows + (size_t)idx[i + ATTN_PF] * stride + h0 * hb;
                for (size_t b = 0; b < (size_t)g_n * hb; b += 64) _mm_prefetch((const char *)nx + b, _MM_HINT_T0);
            }
            for (int g = 0; g < G; g++) {
                if (g >= g_n) break;
                __m512 pv = _mm512_set1_ps(p[(h0 + (size_t)g) * ldp + i]);
                for (int c = 0; c < C; c++)
                    acc[g * C + c] = _mm512_fmadd_ps(pv, ld_kv(kind, r + (size_t)g * hb + 16 * (size_t)c * es, 0xffff),
                                                     acc[g * C + c]);
            }
        }
        for (int g = 0; g < g_n; g++)
            for (int c = 0; c < C; c++) _mm512_storeu_ps(out + (h0 + (size_t)g) * dh + 16 * (size_t)c, acc[g * C + c]);
    }
}

static inline __attribute__((always_inline)) T5 void wsum_heads_k(int kind, size_t n, size_t H, size_t dh,
                                                                  const float *p, size_t ldp, const void *rows,
                                                                  size_t stride, size_t hb, const int32_t *idx,
                                                                  float *out) {
    switch (dh) {
    case 32: wsum_heads_g(kind, 2, 8, n, H, p, ldp, rows, stride, hb, idx, out); return;
    case 64: wsum_heads_g(kind, 4, 4, n, H, p, ldp, rows, stride, hb, idx, out); return;
    case 128: wsum_heads_g(kind, 8, 2, n, H, p, ldp, rows, stride, hb, idx, out); return;
    default:
        for (size_t h = 0; h < H; h++) wsum_k(kind, n, dh, p + h * ldp, (const uint8_t *)rows + h * hb, stride, idx, out + h * dh);
    }
}

#define ATTN_AVX512(name, kind)                                                                        \
    T5 static void name##_dots(size_t n, size_t dh, const float *q, const void *rows, size_t stride,   \
                               const int32_t *idx, float *out) {                                       \
        dots_k(kind, n, dh, q, rows, stride, idx, out);                                                \
    }                                                                                                  \
    T5 static void name##_wsum(size_t n, size_t dh, const float *p, const void *rows, size_t stride,   \
                               const int32_t *idx, float *out) {                                       \
        wsum_k(kind, n, dh, p, rows, stride, idx, out);                                                \
    }                                                                                                  \
    T5 static void name##_dots_heads(size_t n, size_t H, size_t dh, const float *q, const void *rows,  \
                                     size_t stride, size_t hb, const int32_t *idx, float *out, size_t ldo) { \
        dots_heads_k(kind, n, H, dh, q, rows, stride, hb, idx, out, ldo);                              \
    }                                                                                                  \
    T5 static void name##_wsum_heads(size_t n, size_t H, size_t dh, const float *p, size_t ldp, const void *rows, \
                                     size_t stride, size_t hb, const int32_t *idx, float *out) {       \
        wsum_heads_k(kind, n, H, dh, p, ldp, rows, stride, hb, idx, out);                              \
    }                                                                                                  \
    static const bee_attn_kernels name = {name##_dots, name##_wsum, name##_dots_heads, name##_wsum_heads};

/* ---------------------------------------------------------------- element-wise, AVX-512 */

static inline __attribute__((always_inline)) T5 float hsum_tree(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

T5 static void rmsnorm_avx512(float *y, const float *x, const float *w, size_t n, float eps) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int k = 0; k < 4; k++) {
            __m512 v = _mm512_loadu_ps(x + i + 16 * k);
            acc[k] = _mm512_fmadd_ps(v, v, acc[k]);
        }
    for (; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        acc[0] = _mm512_fmadd_ps(v, v, acc[0]);
    }
    float ss = hsum_tree(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    __m512 r = _mm512_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    for (i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), r), _mm512_maskz_loadu_ps(mk, w + i));
        _mm512_mask_storeu_ps(y + i, mk, v);
    }
}

/* e^x for x <= 0 (e^-88 and below flush to 0): 2^(x log2 e) split into an
 * integer power (vscalefps) and a degree-6 polynomial of the fraction. */
static inline __attribute__((always_inline)) T5 __m512 exp_neg(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
    __m512 y = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
    __m512 k = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* f = x - k ln2 in two steps (Cody-Waite) so f keeps its low bits */
    __m512 f = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
    f = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.4286068203094173e-06f), f);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

/* erf(x / sqrt 2) by Abramowitz & Stegun 7.1.26. */
static inline __attribute__((always_inline)) T5 __m512 erf16(__m512 x) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    __m512 a = _mm512_and_ps(z, absmask);
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.0f)));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    __m512 erf_a = _mm512_fnmadd_ps(p, exp_neg(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a)), _mm512_set1_ps(1.0f));
    return _mm512_or_ps(erf_a, _mm512_andnot_ps(absmask, z)); /* odd function */
}

static inline __attribute__((always_inline)) T5 __m512 gelu16(__m512 x) {
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(_mm512_set1_ps(1.0f), erf16(x)));
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2 */
static inline __attribute__((always_inline)) T5 __m512 cdf16(__m512 x) {
    return _mm512_mul_ps(_mm512_set1_ps(0.5f), _mm512_add_ps(_mm512_set1_ps(1.0f), erf16(x)));
}

T5 static void gelu_bwd_avx512(float *dg, float *du, const float *dz, const float *g, const float *u, size_t n, float s) {
    __m512 vs = _mm512_set1_ps(s);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 x = _mm512_maskz_loadu_ps(mk, g + i), d = _mm512_maskz_loadu_ps(mk, dz + i);
        __m512 cdf = cdf16(x);
        __m512 pdf = _mm512_mul_ps(_mm512_set1_ps(0.39894228040143268f),
                                   exp_neg(_mm512_mul_ps(_mm512_set1_ps(-0.5f), _mm512_mul_ps(x, x))));
        __m512 grad = _mm512_fmadd_ps(x, pdf, cdf);
        _mm512_mask_storeu_ps(dg + i, mk, _mm512_div_ps(_mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, u + i)), grad), vs));
        _mm512_mask_storeu_ps(du + i, mk, _mm512_div_ps(_mm512_mul_ps(d, _mm512_mul_ps(x, cdf)), vs));
    }
}

T5 static void gelu_mul_avx512(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(gelu16(_mm512_maskz_loadu_ps(mk, g + i)), _mm512_maskz_loadu_ps(mk, u + i));
        _mm512_mask_storeu_ps(g + i, mk, v);
    }
}

T5 static float exp_sum_avx512(float *x, size_t n, float mx) {
    __m512 vm = _mm512_set1_ps(mx), acc = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, x + i), vm));
        acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(mk, v));
        _mm512_mask_storeu_ps(x + i, mk, v);
    }
    return hsum_tree(acc);
}

static const bee_eltwise_kernels eltwise_avx512 = {rmsnorm_avx512, gelu_mul_avx512, exp_sum_avx512, gelu_bwd_avx512};

/* ---------------------------------------------------------------- attention tiles, AVX-512 */

static inline __attribute__((always_inline)) T5 void qk_k(int T, size_t n, size_t dh, const float *q, size_t ldq,
                                                          const float *kp, float *S, size_t lds) {
    for (size_t p = 0; p * 16 < n; p++) {
        __m512 acc[12];
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
        const float *k = kp + p * dh * 16;
        for (size_t e = 0; e < dh; e++) {
            __m512 kv = _mm512_loadu_ps(k + e * 16);
            for (int t = 0; t < T; t++) acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)t * ldq + e]), kv, acc[t]);
        }
        size_t m = n - p * 16 >= 16 ? 16 : n - p * 16;
        __mmask16 mk = (__mmask16)((1u << m) - 1);
        for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(S + (size_t)t * lds + p * 16, mk, acc[t]);
    }
}

#define QK_CASE(k) case k: qk_k(k, n, dh, q, ldq, kp, S, lds); break;
T5 static void qk_avx512(size_t T, size_t n, size_t dh, const float *q, size_t ldq, const float *kp, float *S, size_t lds) {
    switch (T) {
        QK_CASE(1) QK_CASE(2) QK_CASE(3) QK_CASE(4) QK_CASE(5) QK_CASE(6)
        QK_CASE(7) QK_CASE(8) QK_CASE(9) QK_CASE(10) QK_CASE(11)
    default: qk_k(12, n, dh, q, ldq, kp, S, lds); break;
    }
}

static inline __attribute__((always_inline)) T5 void pv_k(int kind, int T, size_t n, size_t dh, const float *P, size_t ldp,
                                                          const void *rows, size_t stride, const int32_t *idx, float *out,
                                                          size_t ldo) {
    size_t es = kind == A_F32 ? 4 : 2;
    for (size_t e0 = 0; e0 < dh; e0 += 64) {
        __m512 acc[4][4];
        __mmask16 mk[4];
        for (int c = 0; c < 4; c++) {
            size_t e = e0 + 16 * (size_t)c;
            mk[c] = e >= dh ? 0 : dh - e >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (dh - e)) - 1);
            for (int t = 0; t < T; t++) acc[t][c] = _mm512_setzero_ps();
        }
        for (size_t j = 0; j < n; j++) {
            const uint8_t *r = (const uint8_t *)rows + (idx ? (size_t)idx[j] : j) * stride + e0 * es;
            __m512 v[4];
            for (int c = 0; c < 4; c++) v[c] = ld_kv(kind, r + 16 * (size_t)c * es, mk[c]);
            for (int t = 0; t < T; t++) {
                __m512 p = _mm512_set1_ps(P[(size_t)t * ldp + j]);
                for (int c = 0; c < 4; c++) acc[t][c] = _mm512_fmadd_ps(p, v[c], acc[t][c]);
            }
        }
        for (int t = 0; t < T; t++)
            for (int c = 0; c < 4; c++) _mm512_mask_storeu_ps(out + (size_t)t * ldo + e0 + 16 * (size_t)c, mk[c], acc[t][c]);
    }
}

#define PV_AVX512(name, kind)                                                                          \
    T5 static void name(size_t T, size_t n, size_t dh, const float *P, size_t ldp, const void *rows, size_t stride, \
                        const int32_t *idx, float *out, size_t ldo) {                                  \
        switch (T) {                                                                                   \
        case 1: pv_k(kind, 1, n, dh, P, ldp, rows, stride, idx, out, ldo); break;                      \
        case 2: pv_k(kind, 2, n, dh, P, ldp, rows, stride, idx, out, ldo); break;                      \
        case 3: pv_k(kind, 3, n, dh, P, ldp, rows, stride, idx, out, ldo); break;                      \
        default: pv_k(kind, 4, n, dh, P, ldp, rows, stride, idx, out, ldo); break;                     \
        }                                                                                              \
    }
PV_AVX512(pv_avx512_f32, A_F32)
PV_AVX512(pv_avx512_f16, A_F16)
PV_AVX512(pv_avx512_bf16, A_BF16)
static const bee_attn_tile_kernels tile_avx512_f32 = {qk_avx512, pv_avx512_f32},
                                   tile_avx512_f16 = {qk_avx512, pv_avx512_f16},
                                   tile_avx512_bf16 = {qk_avx512, pv_avx512_bf16};

ATTN_AVX512(attn_avx512_f32, A_F32)
ATTN_AVX512(attn_avx512_f16, A_F16)
ATTN_AVX512(attn_avx512_bf16, A_BF16)
#endif

const bee_attn_tile_kernels *bee_attn_tile_get(uint32_t type) {
#if defined(__x86_64__)
    if (bee_cpu_level() >= BEE_CPU_AVX512) {
        if (type == BEE_TYPE_F32) return &tile_avx512_f32;
        if (type == BEE_TYPE_F16) return &tile_avx512_f16;
        if (type == BEE_TYPE_BF16) return &tile_avx512_bf16;
    }
#endif
    return bee_attn_tile_ref(type);
}

const bee_eltwise_kernels *bee_eltwise_get(void) {
#if defined(__x86_64__)
    if (bee_cpu_level() >= BEE_CPU_AVX512) return &eltwise_avx512;
#endif
    return &eltwise_ref;
}

const bee_attn_kernels *bee_attn_get(uint32_t type, size_t dh) {
#if defined(__x86_64__)
    if (bee_cpu_level() >= BEE_CPU_AVX512) {
        if (type == BEE_TYPE_F32) return &attn_avx512_f32;
        if (type == BEE_TYPE_F16) return &attn_avx512_f16;
        if (type == BEE_TYPE_BF16) return &attn_avx512_bf16;
    }
#endif
    return bee_attn_ref(type);
}

