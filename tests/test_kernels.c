/* Quantization and dot kernels, in the spirit of ggml's test-backend-ops:
 * every weight type x every path this CPU has (scalar, avx2, avx512 with and
 * without VNNI/BF16) x sizes x seeds is compared against the scalar
 * reference, which is itself checked against a double-precision dot of the
 * dequantized weights and activations.
 *
 * Tolerances (M = sum of |term| over the rounded terms, u = FLT_EPSILON):
 *   float types: |dot - exact| <= (n/8 + 8) u M,   M = sum_i |w_i x_i|
 *   quantized:   |dot - exact| <= (2 nb + 8) u M,  M = sum_b |isum_b dw_b dx_b| (+ |m_b s_b| for Q4_1)
 * (the classic recursive-summation bound gamma_k ~ k u/2 for the longest
 * accumulation chain of the reference, with slack; the SIMD kernels have
 * shorter chains). For Q4_1 "exact" also carries the fp16 rounding of the
 * stored s = d * sum(q): + sum_b |m_b| |s_b - dx_b sum(qx_b)|.
 * A kernel is compared with the reference within twice that bound; dot4 must
 * equal dot bit for bit, and results must not depend on buffer alignment.
 *
 * Round trips: Q8_0/Q8_1 |x - y| <= d/2; Q4_0 <= |d|/2 except clamped top
 * quants (<= |d|); Q4_1 <= d/2 + |fp16(min) - min|; F16 <= 2^-11 |x|
 * (normal range); BF16 <= 2^-8 |x|; F32 exact (all with 1e-6 relative slack). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu.h"
#include "kernels/dot.h"
#include "kernels/gemm.h"
#include "kernels/panel.h"
#include "model/linear.h"
#include "util/threadpool.h"
#include "kernels/vec.h"
#include "kernels/quant.h"
#include "testutil.h"
#include "util/types.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t g_rng;

static uint64_t rng_next(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

static double rng_unif(void) { return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0); }

static float rng_normal(void) {
    double u1 = rng_unif() + 1e-300, u2 = rng_unif();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Realistic-ish rows: normal values whose scale and offset change every 32
 * elements (so block scales differ), with an occasional outlier. */
static void fill(float *x, size_t n, float offset) {
    float scale = 1.0f, off = 0.0f;
    for (size_t i = 0; i < n; i++) {
        if (i % 32 == 0) {
            scale = (float)exp(2.0 * rng_unif() - 1.0);
            off = offset * (float)(2.0 * rng_unif() - 1.0);
        }
        x[i] = off + scale * rng_normal();
        if (rng_next() % 97 == 0) x[i] *= 6.0f;
    }
}

static const uint32_t k_wtypes[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16, BEE_TYPE_Q8_0, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
#define N_WTYPES (sizeof k_wtypes / sizeof k_wtypes[0])

static int is_quant(uint32_t t) { return bee_type_block(t) > 1; }

/* Every distinct kernel this CPU can run for weight type t (ref first). */
static int kernels_for(uint32_t t, const bee_dot_kernel **out) {
    int n = 0;
    out[n++] = bee_dot_kernel_ref(t);
    static const struct {
        int level;
        unsigned ext;
    } paths[] = {{BEE_CPU_AVX2, 0},
                 {BEE_CPU_AVX512, 0},
                 {BEE_CPU_AVX512, BEE_CPU_EXT_VNNI},
                 {BEE_CPU_AVX512, BEE_CPU_EXT_BF16},
                 {BEE_CPU_AVX512, BEE_CPU_EXT_VNNI | BEE_CPU_EXT_BF16}};
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
        const bee_dot_kernel *k = bee_dot_kernel_at(t, paths[p].level, paths[p].ext);
        if (!k) continue;
        int dup = 0;
        for (int i = 0; i < n; i++) dup |= out[i] == k;
        if (!dup) out[n++] = k;
    }
    return n;
}

/* Exact (double) dot of the dequantized rows, plus the magnitude M and the
 * length of the reference's longest accumulation chain (see the header). */
typedef struct {
    double exact, mag, extra;
    size_t chain;
} exact_dot;

static exact_dot dot_exact(uint32_t wt, const void *w, uint32_t xt, const void *x, size_t n) {
    exact_dot e = {0, 0, 0, 0};
    float *wf = malloc(n * sizeof *wf + 1), *xf = malloc(n * sizeof *xf + 1);
    assert_non_null(wf);
    assert_non_null(xf);
    bee_dequantize_row(wt, w, wf, n);
    bee_dequantize_row(xt, x, xf, n);
    for (size_t i = 0; i < n; i++) e.exact += (double)wf[i] * (double)xf[i];
    if (!is_quant(wt)) {
        for (size_t i = 0; i < n; i++) e.mag += fabs((double)wf[i] * (double)xf[i]);
        e.chain = n / 8 + 8;
    } else {
        size_t wb = bee_type_nbytes(wt, 32), xb = bee_type_nbytes(xt, 32);
        for (size_t b = 0; b < n / 32; b++) {
            const uint8_t *wp = (const uint8_t *)w + b * wb, *xp = (const uint8_t *)x + b * xb;
            double dw = bee_ld_f16(wp), dx = bee_ld_f16(xp), isum = 0;
            const int8_t *xq = (const int8_t *)(xp + xb - 32);
            for (int i = 0; i < 32; i++) {
                int q;
                if (wt == BEE_TYPE_Q8_0) q = (int8_t)wp[2 + i];
                else if (wt == BEE_TYPE_Q4_0) q = (i < 16 ? wp[2 + i] & 15 : wp[2 + i - 16] >> 4) - 8;
                else q = i < 16 ? wp[4 + i] & 15 : wp[4 + i - 16] >> 4;
                isum += q * xq[i];
            }
            e.mag += fabs(isum * dw * dx);
            if (wt == BEE_TYPE_Q4_1) {
                double m = bee_ld_f16(wp + 2), s = bee_ld_f16(xp + 2), sq = 0;
                for (int i = 0; i < 32; i++) sq += xq[i];
                e.mag += fabs(m * s);
                e.extra += fabs(m) * fabs(s - dx * sq);
            }
        }
        e.chain = 2 * (n / 32) + 8;
    }
    free(wf);
    free(xf);
    return e;
}

static double tol_of(const exact_dot *e) { return (double)e->chain * FLT_EPSILON * e->mag + e->extra + 1e-30; }

/* ---------------------------------------------------------------- types */

static void test_type_table(void **state) {
    (void)state;
    static const struct {
        uint32_t t;
        const char *name;
        size_t bytes32;
    } k[] = {{BEE_TYPE_F32, "f32", 128},  {BEE_TYPE_F16, "f16", 64},   {BEE_TYPE_BF16, "bf16", 64},
             {BEE_TYPE_Q4_0, "q4_0", 18}, {BEE_TYPE_Q4_1, "q4_1", 20}, {BEE_TYPE_Q8_0, "q8_0", 34},
             {BEE_TYPE_Q8_1, "q8_1", 36}};
    assert_int_equal(BEE_TYPE_Q4_0, 2);
    assert_int_equal(BEE_TYPE_Q4_1, 3);
    assert_int_equal(BEE_TYPE_Q8_0, 8);
    assert_int_equal(BEE_TYPE_Q8_1, 9);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        assert_true(bee_type_valid(k[i].t));
        assert_string_equal(bee_type_name(k[i].t), k[i].name);
        assert_int_equal(bee_type_from_name(k[i].name), (int)k[i].t);
        assert_int_equal(bee_type_nbytes(k[i].t, 32), k[i].bytes32);
        assert_int_equal(bee_type_nbytes(k[i].t, 32 * 1000), k[i].bytes32 * 1000);
        int q = k[i].bytes32 < 64;
        assert_int_equal(bee_type_block(k[i].t), q ? 32 : 1);
        /* non-multiples of the block are rejected */
        for (uint64_t n = 1; n < 100; n++)
            if (n % 32) assert_int_equal(bee_type_nbytes(k[i].t, n) == 0, q);
        assert_int_equal(bee_type_nbytes(k[i].t, 0), 0);
    }
    assert_int_equal(bee_type_from_name("Q4_0"), BEE_TYPE_Q4_0);
    assert_int_equal(bee_type_from_name("q4_2"), -1);
    assert_false(bee_type_valid(4));
    assert_false(bee_type_valid(7));
    assert_int_equal(bee_type_nbytes(7, 32), 0);
    assert_int_equal(bee_type_nbytes(BEE_TYPE_Q8_0, UINT64_MAX - 31), 0); /* overflow */
}

/* ---------------------------------------------------------------- layouts (hand-computed) */

static void test_layout_q8_0(void **state) {
    (void)state;
    float x[32], y[32];
    uint8_t b[34];
    for (int i = 0; i < 32; i++) x[i] = (float)(8 * i - 127) * 0.25f; /* max |x| = 127 / 4 -> d = 0.25 */
    bee_quantize_row(BEE_TYPE_Q8_0, x, b, 32);
    assert_int_equal(b[0], 0x00); /* fp16 0.25 = 0x3400, little-endian */
    assert_int_equal(b[1], 0x34);
    for (int i = 0; i < 32; i++) assert_int_equal((int8_t)b[2 + i], 8 * i - 127);
    bee_dequantize_row(BEE_TYPE_Q8_0, b, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == x[i]);
    /* rounding: halves go away from zero */
    for (int i = 0; i < 32; i++) x[i] = 0;
    x[0] = 127.0f, x[1] = 2.5f, x[2] = -2.5f, x[3] = 0.5f, x[4] = -0.49f, x[5] = 126.5f;
    bee_quantize_row(BEE_TYPE_Q8_0, x, b, 32);
    assert_int_equal(bee_ld_u16(b), 0x3c00); /* d = 1 */
    assert_int_equal((int8_t)b[2], 127);
    assert_int_equal((int8_t)b[3], 3);
    assert_int_equal((int8_t)b[4], -3);
    assert_int_equal((int8_t)b[5], 1);
    assert_int_equal((int8_t)b[6], 0);
    assert_int_equal((int8_t)b[7], 127);
    /* hand-built block: d = 2.0 (0x4000) */
    uint8_t h[34] = {0x00, 0x40};
    for (int i = 0; i < 32; i++) h[2 + i] = (uint8_t)(int8_t)(i - 16);
    bee_dequantize_row(BEE_TYPE_Q8_0, h, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == 2.0f * (float)(i - 16));
}

static void test_layout_q8_1(void **state) {
    (void)state;
    float x[32], y[32];
    uint8_t b[36];
    for (int i = 0; i < 32; i++) x[i] = (float)(8 * i - 127) * 0.25f;
    bee_quantize_row(BEE_TYPE_Q8_1, x, b, 32);
    assert_int_equal(bee_ld_u16(b), 0x3400); /* d = 0.25 */
    int sum = 0;
    for (int i = 0; i < 32; i++) {
        assert_int_equal((int8_t)b[4 + i], 8 * i - 127);
        sum += 8 * i - 127;
    }
    assert_int_equal(sum, 8 * 496 - 32 * 127);
    assert_int_equal(bee_ld_u16(b + 2), bee_f32_to_f16(0.25f * (float)sum)); /* s = d * sum(q) */
    bee_dequantize_row(BEE_TYPE_Q8_1, b, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == x[i]);
}

static void test_layout_q4_0(void **state) {
    (void)state;
    /* hand-built: d = 2 (0x4000); byte i = lo i | hi (15 - i) */
    uint8_t h[18] = {0x00, 0x40};
    float y[32], x[32];
    for (int i = 0; i < 16; i++) h[2 + i] = (uint8_t)(i | (15 - i) << 4);
    bee_dequantize_row(BEE_TYPE_Q4_0, h, y, 32);
    for (int i = 0; i < 16; i++) {
        assert_true(y[i] == 2.0f * (float)(i - 8));       /* low nibble = element i */
        assert_true(y[i + 16] == 2.0f * (float)(7 - i));  /* high nibble = element i + 16 */
    }
    /* quantize: largest magnitude is +8 -> d = 8 / -8 = -1 (0xbc00); q = -x + 8 */
    for (int i = 0; i < 32; i++) x[i] = (float)((i % 16) - 7); /* -7 .. 8 */
    bee_quantize_row(BEE_TYPE_Q4_0, x, h, 32);
    assert_int_equal(bee_ld_u16(h), 0xbc00);
    for (int i = 0; i < 16; i++) {
        int lo = h[2 + i] & 15, hi = h[2 + i] >> 4;
        assert_int_equal(lo, 8 - (int)x[i]);
        assert_int_equal(hi, 8 - (int)x[i + 16]);
    }
    bee_dequantize_row(BEE_TYPE_Q4_0, h, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == x[i]);
    /* ggml rounding: (int)(x/d + 8.5) -> 0.5 / d rounds up */
    for (int i = 0; i < 32; i++) x[i] = 0;
    x[0] = -8.0f, x[1] = 0.5f, x[2] = -0.5f, x[3] = 8.0f;
    bee_quantize_row(BEE_TYPE_Q4_0, x, h, 32); /* first of the tied magnitudes: -8 -> d = 1 */
    assert_int_equal(bee_ld_u16(h), 0x3c00);
    assert_int_equal(h[2] & 15, 0);  /* -8 */
    assert_int_equal(h[3] & 15, 9);  /* 0.5 + 8.5 = 9 */
    assert_int_equal(h[4] & 15, 8);  /* -0.5 + 8.5 = 8 */
    assert_int_equal(h[5] & 15, 15); /* 8 clamps to 15 (value 7) */
}

static void test_layout_q4_1(void **state) {
    (void)state;
    /* hand-built: d = 0.5 (0x3800), m = -1 (0xbc00) */
    uint8_t h[20] = {0x00, 0x38, 0x00, 0xbc};
    float y[32], x[32];
    for (int i = 0; i < 16; i++) h[4 + i] = (uint8_t)(i | (15 - i) << 4);
    bee_dequantize_row(BEE_TYPE_Q4_1, h, y, 32);
    for (int i = 0; i < 16; i++) {
        assert_true(y[i] == 0.5f * (float)i - 1.0f);
        assert_true(y[i + 16] == 0.5f * (float)(15 - i) - 1.0f);
    }
    /* quantize: min -1, max 6.5 -> d = 0.5, m = -1 */
    for (int i = 0; i < 32; i++) x[i] = -1.0f + 0.5f * (float)(i % 16);
    bee_quantize_row(BEE_TYPE_Q4_1, x, h, 32);
    assert_int_equal(bee_ld_u16(h), 0x3800);
    assert_int_equal(bee_ld_u16(h + 2), 0xbc00);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(h[4 + i] & 15, i);
        assert_int_equal(h[4 + i] >> 4, i);
    }
    bee_dequantize_row(BEE_TYPE_Q4_1, h, y, 32);
    for (int i = 0; i < 32; i++) assert_true(y[i] == x[i]);
}

static void test_zero_and_constant_blocks(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_Q8_0, BEE_TYPE_Q8_1, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1,
                                     BEE_TYPE_F16,  BEE_TYPE_BF16, BEE_TYPE_F32};
    static const float consts[] = {0.0f, 3.7f, -3.7f, 1e-3f, -250.0f, 1e-9f};
    float x[64], y[64];
    uint8_t b[256];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (size_t c = 0; c < sizeof consts / sizeof consts[0]; c++) {
            for (int i = 0; i < 64; i++) x[i] = consts[c];
            memset(b, 0xa5, sizeof b);
            bee_quantize_row(types[t], x, b, 64);
            bee_dequantize_row(types[t], b, y, 64);
            for (int i = 0; i < 64; i++) {
                assert_true(isfinite(y[i]));
                double err = fabs((double)y[i] - consts[c]);
                /* constants: exact up to one fp16 rounding (and the tiny one underflows) */
                assert_true(err <= fabs(consts[c]) * 1e-3 + 1e-7);
                if (consts[c] == 0.0f) assert_true(y[i] == 0.0f);
            }
            if (consts[c] == 0.0f && is_quant(types[t])) {
                assert_int_equal(bee_ld_u16(b), 0); /* d = 0 */
                if (types[t] == BEE_TYPE_Q4_0) assert_int_equal(b[2], 0x88);
            }
        }
    /* a single non-zero value in a zero block */
    for (int i = 0; i < 32; i++) x[i] = 0;
    x[17] = -5.0f;
    bee_quantize_row(BEE_TYPE_Q4_1, x, b, 32);
    bee_dequantize_row(BEE_TYPE_Q4_1, b, y, 32);
    assert_true(fabsf(y[17] + 5.0f) < 1e-3f);
    for (int i = 0; i < 32; i++)
        if (i != 17) assert_true(fabsf(y[i]) <= 5.0f / 30 + 1e-3f);
}

/* ---------------------------------------------------------------- round trips */

static void test_roundtrip_bounds(void **state) {
    (void)state;
    const size_t n = 4096;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    uint8_t *b = malloc(bee_type_nbytes(BEE_TYPE_F32, n));
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16,  BEE_TYPE_BF16, BEE_TYPE_Q8_0,
                                     BEE_TYPE_Q8_1, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
    for (int seed = 1; seed <= 4; seed++)
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            g_rng = 0x9e3779b97f4a7c15ull * (uint64_t)seed;
            fill(x, n, seed % 2 ? 0.0f : 3.0f);
            uint32_t ty = types[t];
            bee_quantize_row(ty, x, b, n);
            bee_dequantize_row(ty, b, y, n);
            size_t bs = bee_type_nbytes(ty, 32);
            for (size_t i = 0; i < n; i++) {
                double err = fabs((double)x[i] - y[i]), ax = fabs(x[i]), bound;
                const uint8_t *blk = b + (i / 32) * bs;
                switch (ty) {
                case BEE_TYPE_F32: bound = 0; break;
                case BEE_TYPE_F16: bound = ax * 0x1p-11; break;
                case BEE_TYPE_BF16: bound = ax * 0x1p-8; break;
                case BEE_TYPE_Q8_0:
                case BEE_TYPE_Q8_1: bound = bee_ld_f16(blk) / 2; break;
                case BEE_TYPE_Q4_0: {
                    int k = (int)(i % 32), q = k < 16 ? blk[2 + k] & 15 : blk[2 + k - 16] >> 4;
                    bound = fabs(bee_ld_f16(blk)) * (q == 15 ? 1.0 : 0.5);
                    break;
                }
                default: {
                    float mn = x[i - i % 32];
                    for (size_t k = i - i % 32; k < i - i % 32 + 32; k++) mn = fminf(mn, x[k]);
                    bound = bee_ld_f16(blk) / 2 + fabs((double)bee_ld_f16(blk + 2) - mn);
                }
                }
                if (err > bound * (1 + 1e-6) + 1e-6 * ax)
                    fail_msg("%s: element %zu: x=%g y=%g err=%g bound=%g", bee_type_name(ty), i, x[i], y[i], err,
                             bound);
            }
            if (ty == BEE_TYPE_Q8_1) /* s = fp16(d * sum(q)) */
                for (size_t k = 0; k < n / 32; k++) {
                    const uint8_t *blk = b + k * bs;
                    int sum = 0;
                    for (int i = 0; i < 32; i++) sum += (int8_t)blk[4 + i];
                    assert_int_equal(bee_ld_u16(blk + 2), bee_f32_to_f16(bee_ld_f16(blk) * (float)sum));
                }
        }
    free(x);
    free(y);
    free(b);
}

/* ---------------------------------------------------------------- kernels */

static const size_t k_sizes[] = {32, 64, 96, 128, 160, 224, 480, 1056, 4064, 4096, 4128, 10240};
static const size_t k_float_sizes[] = {0, 1, 7, 15, 17, 33, 63, 65, 100, 127, 129, 1000, 4097};

/* Checks one weight type at one size with one seed on every path. */
static void check_type(uint32_t wt, size_t n, int seed) {
    const bee_dot_kernel *ks[8];
    int nk = kernels_for(wt, ks);
    const bee_dot_kernel *ref = ks[0];
    assert_non_null(ref);
    float *wf = malloc((n + 1) * sizeof *wf), *xf = malloc((4 * n + 1) * sizeof *xf);
    g_rng = 0x2545f4914f6cdd1dull * (uint64_t)(seed + 1) + n;
    fill(wf, n, wt == BEE_TYPE_Q4_1 ? 2.0f : 0.0f);
    fill(xf, 4 * n, 0.0f);
    size_t wbytes = bee_type_nbytes(wt, n);
    uint8_t *w = malloc(wbytes + 64), *wu = malloc(wbytes + 64);
    bee_quantize_row(wt, wf, w, n);
    for (int ki = 0; ki < nk; ki++) {
        const bee_dot_kernel *k = ks[ki];
        assert_int_equal(k->type, wt);
        const bee_dot_kernel *kref = bee_dot_kernel_ref_act(wt, k->act_type);
        assert_non_null(kref);
        size_t xbytes = bee_type_nbytes(k->act_type, n);
        uint8_t *x = malloc(4 * xbytes + 64), *xu = malloc(4 * xbytes + 64);
        for (int r = 0; r < 4; r++) bee_quantize_row(k->act_type, xf + r * n, x + r * xbytes, n);
        const void *xr[4] = {x, x + xbytes, x + 2 * xbytes, x + 3 * xbytes};
        float out[4], out_u[4];
        k->dot4(n, w, xr, out);
        /* misaligned copies (the scalar path needs element alignment) */
        size_t shift = ki == 0 ? (is_quant(wt) ? 1 : bee_type_nbytes(wt, 1)) : 3;
        size_t xshift = ki == 0 ? (is_quant(k->act_type) ? 1 : bee_type_nbytes(k->act_type, 1)) : 5;
        memcpy(wu + shift, w, wbytes);
        memcpy(xu + xshift, x, 4 * xbytes);
        const void *xur[4] = {xu + xshift, xu + xshift + xbytes, xu + xshift + 2 * xbytes, xu + xshift + 3 * xbytes};
        k->dot4(n, wu + shift, xur, out_u);
        for (int r = 0; r < 4; r++) {
            float d1 = k->dot(n, w, xr[r]), d2 = k->dot(n, w, xr[r]), du = k->dot(n, wu + shift, xur[r]);
            float rf = kref->dot(n, w, xr[r]);
            exact_dot e = dot_exact(wt, w, k->act_type, xr[r], n);
            double tol = tol_of(&e);
            /* determinism: repeat, alignment, dot4 == dot, bit for bit */
            if (memcmp(&d1, &d2, 4) || memcmp(&d1, &du, 4) || memcmp(&d1, &out[r], 4) || memcmp(&d1, &out_u[r], 4))
                fail_msg("%s/%s n=%zu row %d: dot %a, again %a, misaligned %a, dot4 %a, dot4 misaligned %a",
                         bee_type_name(wt), k->path, n, r, d1, d2, du, out[r], out_u[r]);
            if (fabs(rf - e.exact) > tol)
                fail_msg("%s/%s ref n=%zu: %.9g vs exact %.9g (tol %.3g)", bee_type_name(wt),
                         bee_type_name(k->act_type), n, rf, e.exact, tol);
            if (fabs(d1 - e.exact) > tol || fabs((double)d1 - rf) > 2 * tol)
                fail_msg("%s/%s n=%zu seed %d row %d: %.9g vs ref %.9g vs exact %.9g (tol %.3g)", bee_type_name(wt),
                         k->path, n, seed, r, d1, rf, e.exact, tol);
        }
        /* the same activation row four times */
        const void *xsame[4] = {xr[2], xr[2], xr[2], xr[2]};
        k->dot4(n, w, xsame, out);
        for (int r = 0; r < 4; r++) assert_memory_equal(&out[r], &out_u[2], 4);
        free(x);
        free(xu);
    }
    free(w);
    free(wu);
    free(wf);
    free(xf);
}

static void test_dot_all(void **state) {
    (void)state;
    for (size_t t = 0; t < N_WTYPES; t++)
        for (size_t s = 0; s < sizeof k_sizes / sizeof k_sizes[0]; s++)
            for (int seed = 0; seed < 3; seed++) check_type(k_wtypes[t], k_sizes[s], seed);
}

static void test_dot_float_odd_sizes(void **state) {
    (void)state;
    for (size_t t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof k_float_sizes / sizeof k_float_sizes[0]; s++)
            for (int seed = 0; seed < 2; seed++) check_type(k_wtypes[t], k_float_sizes[s], seed);
}

/* Extreme quants with d = 1: every int8 path must give the exact integer
 * (|w| = 128 on the weight side is legal in Q8_0 files). */
static void test_dot_extreme_quants(void **state) {
    (void)state;
    enum { NB = 9 };
    uint8_t w8[NB * 34], w4[NB * 18], w41[NB * 20], x8[NB * 34], x81[NB * 36];
    for (int pattern = 0; pattern < 4; pattern++) {
        long want8 = 0, want4 = 0, want41 = 0;
        for (int b = 0; b < NB; b++) {
            uint8_t *p8 = w8 + 34 * b, *p4 = w4 + 18 * b, *p41 = w41 + 20 * b, *q8 = x8 + 34 * b, *q81 = x81 + 36 * b;
            p8[0] = p4[0] = p41[0] = q8[0] = q81[0] = 0x00;
            p8[1] = p4[1] = p41[1] = q8[1] = q81[1] = 0x3c; /* d = 1 */
            p41[2] = 0, p41[3] = 0;                          /* m = 0 */
            int xsum = 0;
            for (int i = 0; i < 32; i++) {
                int xv = (pattern & 1) ? ((i + b) % 2 ? 127 : -127) : 127;
                int wv = (pattern & 2) ? -128 : ((i * 7 + b) % 2 ? 127 : -128);
                int nib = (pattern & 2) ? 0 : ((i + b) % 3 ? 15 : 0);
                q8[2 + i] = (uint8_t)(int8_t)xv;
                q81[4 + i] = (uint8_t)(int8_t)xv;
                xsum += xv;
                p8[2 + i] = (uint8_t)(int8_t)wv;
                want8 += (long)wv * xv;
                if (i < 16) p4[2 + i] = (uint8_t)nib, p41[4 + i] = (uint8_t)nib;
                else p4[2 + i - 16] |= (uint8_t)(nib << 4), p41[4 + i - 16] |= (uint8_t)(nib << 4);
                want4 += (long)(nib - 8) * xv;
                want41 += (long)nib * xv;
            }
            memcpy(q81 + 2, &(uint16_t){bee_f32_to_f16((float)xsum)}, 2);
        }
        static const uint32_t types[] = {BEE_TYPE_Q8_0, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
        const void *ws[] = {w8, w4, w41}, *xs[] = {x8, x8, x81};
        long want[] = {want8, want4, want41};
        for (int t = 0; t < 3; t++) {
            const bee_dot_kernel *ks[8];
            int nk = kernels_for(types[t], ks);
            for (int k = 0; k < nk; k++) {
                const void *x4[4] = {xs[t], xs[t], xs[t], xs[t]};
                float out[4];
                ks[k]->dot4(NB * 32, ws[t], x4, out);
                float d = ks[k]->dot(NB * 32, ws[t], xs[t]);
                if (d != (float)want[t] || out[3] != (float)want[t])
                    fail_msg("%s/%s pattern %d: %g (dot4 %g), want %ld", bee_type_name(types[t]), ks[k]->path,
                             pattern, d, out[3], want[t]);
            }
        }
    }
}

static void test_dot_zero(void **state) {
    (void)state;
    const size_t n = 4096 + 96;
    float *z = calloc(n, sizeof *z), *xf = malloc(n * sizeof *xf);
    g_rng = 7;
    fill(xf, n, 0);
    for (size_t t = 0; t < N_WTYPES; t++) {
        const bee_dot_kernel *ks[8];
        int nk = kernels_for(k_wtypes[t], ks);
        for (int k = 0; k < nk; k++) {
            uint8_t *w = malloc(bee_type_nbytes(k_wtypes[t], n)), *x = malloc(bee_type_nbytes(ks[k]->act_type, n));
            bee_quantize_row(k_wtypes[t], z, w, n);
            bee_quantize_row(ks[k]->act_type, xf, x, n);
            assert_true(ks[k]->dot(n, w, x) == 0.0f);
            bee_quantize_row(k_wtypes[t], xf, w, n);
            bee_quantize_row(ks[k]->act_type, z, x, n);
            assert_true(ks[k]->dot(n, w, x) == 0.0f);
            free(w);
            free(x);
        }
    }
    free(z);
    free(xf);
}

/* ---------------------------------------------------------------- dispatch */

static char g_self[4096];

/* Attention kernels over gathered cache rows: every path equals the
 * reference bit for bit, for every head width and key count. */
static void test_attn(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    static const size_t dhs[] = {8, 16, 40, 64, 128, 200, 256};
    assert_null(bee_attn_get(BEE_TYPE_Q4_0, 64));
    enum { NK = 9, MAXD = 256 };
    float q[MAXD], kv[NK * MAXD], p[NK], o0[MAXD], o1[MAXD], s0[NK], s1[NK];
    uint8_t rows[NK * MAXD * 4];
    int32_t idx[NK] = {8, 3, 0, 7, 1, 5, 2, 6, 4};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t di = 0; di < sizeof dhs / sizeof *dhs; di++) {
            size_t dh = dhs[di], rb = bee_type_nbytes(types[ti], dh);
            const bee_attn_kernels *f = bee_attn_get(types[ti], dh), *r = bee_attn_ref(types[ti]);
            fill(q, dh, 0.1f);
            fill(kv, NK * dh, 0.3f);
            fill(p, NK, 0.0f);
            for (size_t k = 0; k < NK; k++) bee_quantize_row(types[ti], kv + k * dh, rows + k * rb, dh);
            for (size_t n = 0; n <= NK; n++) {
                r->dots(n, dh, q, rows, rb, idx, s0);
                f->dots(n, dh, q, rows, rb, idx, s1);
                r->wsum(n, dh, p, rows, rb, idx, o0);
                f->wsum(n, dh, p, rows, rb, idx, o1);
                if (memcmp(s0, s1, n * sizeof *s0) || memcmp(o0, o1, dh * sizeof *o0))
                    fail_msg("attention %s dh=%zu n=%zu: fast != ref", bee_type_name(types[ti]), dh, n);
                for (size_t i = 0; i < n; i++) { /* and the scores are the dot products */
                    double e = 0, mag = 0;
                    float row[MAXD];
                    bee_dequantize_row(types[ti], rows + (size_t)idx[i] * rb, row, dh);
                    for (size_t k = 0; k < dh; k++) e += (double)q[k] * row[k], mag += fabs((double)q[k] * row[k]);
                    if (fabs(s0[i] - e) > 1e-5 * mag) fail_msg("attention dot %zu: %g vs %g", i, (double)s0[i], e);
                }
            }
        }
}

/* Several matrices over one input in one region (q/k/v, gate/up): each
 * output equals bee_linear's bit for bit, for panel weights of one type and
 * width (the joint path) and for a mix that falls back to one call each. */
static void test_linear_multi(void **state) {
    (void)state;
    enum { COLS = 64, MAXT = 13 };
    static const uint64_t rows[3] = {40, 24, 17};
    static const uint32_t types[3] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_Q8_0};
    bee_pool *pool = bee_pool_init(2);
    assert_non_null(pool);
    float x[MAXT * COLS];
    g_rng = 11;
    fill(x, MAXT * COLS, 0.0f);
    for (int mixed = 0; mixed < 2; mixed++)
        for (size_t ti = 0; ti < 3; ti++) {
            bee_weight w[3];
            void *mem[3];
            for (int m = 0; m < 3; m++) {
                uint32_t type = mixed && m == 1 ? BEE_TYPE_F32 : types[ti];
                float *wf = malloc(rows[m] * COLS * sizeof *wf);
                fill(wf, rows[m] * COLS, 0.0f);
                uint8_t *wr = malloc(bee_type_nbytes(type, rows[m] * COLS));
                bee_quantize_row(type, wf, wr, rows[m] * COLS);
                if (mixed && m == 1) { /* row-major: not joinable */
                    mem[m] = wr;
                    w[m] = (bee_weight){type, wr, rows[m], COLS, BEE_LAYOUT_ROWS};
                } else {
                    mem[m] = malloc(bee_panel_nbytes(type, rows[m], COLS));
                    bee_panel_pack(type, wr, rows[m], COLS, mem[m]);
                    free(wr);
                    w[m] = (bee_weight){type, mem[m], rows[m], COLS, BEE_LAYOUT_PANEL};
                }
                free(wf);
            }
            for (size_t n_tok = 1; n_tok <= MAXT; n_tok += 4) {
                float *y0[3], *y1[3], div[3] = {8.0f, 1.0f, 3.0f};
                size_t ld[3];
                const bee_weight *wp[3] = {&w[0], &w[1], &w[2]};
                for (int m = 0; m < 3; m++) {
                    ld[m] = rows[m] + 3;
                    y0[m] = calloc(n_tok * ld[m], sizeof(float));
                    y1[m] = calloc(n_tok * ld[m], sizeof(float));
                    assert_int_equal(bee_linear(pool, y0[m], ld[m], x, n_tok, &w[m], div[m]), 0);
                }
                assert_int_equal(bee_linear_multi(pool, 3, y1, ld, x, n_tok, wp, div), 0);
                for (int m = 0; m < 3; m++) {
                    if (memcmp(y0[m], y1[m], n_tok * ld[m] * sizeof(float)))
                        fail_msg("linear_multi %s mixed=%d n_tok=%zu matrix %d != bee_linear", bee_type_name(types[ti]),
                                 mixed, n_tok, m);
                    free(y0[m]), free(y1[m]);
                }
            }
            for (int m = 0; m < 3; m++) free(mem[m]);
        }
    bee_pool_free(pool);
}

/* All heads of a query at once (each row read once): bit for bit the per-head
 * kernels, fast and reference, for head counts that fill a group of 4 or not
 * and head widths with and without a specialized path. */
static void test_attn_heads(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    static const size_t dhs[] = {8, 32, 40, 64, 128, 200};
    static const size_t hs[] = {1, 3, 4, 5, 9};
    enum { NK = 11, MAXH = 9, MAXD = 200, LD = 13 };
    float *q = malloc(MAXH * MAXD * sizeof *q), *kv = malloc(NK * MAXH * MAXD * sizeof *kv);
    float p[MAXH * LD], s0[MAXH * LD], s1[MAXH * LD], s2[MAXH * LD], *o0 = malloc(MAXH * MAXD * sizeof *o0),
                                                                     *o1 = malloc(MAXH * MAXD * sizeof *o1),
                                                                     *o2 = malloc(MAXH * MAXD * sizeof *o2);
    uint8_t *rows = malloc(NK * (MAXH * MAXD * 4 + 64));
    int32_t idx[NK] = {10, 8, 3, 0, 7, 1, 9, 5, 2, 6, 4};
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t di = 0; di < sizeof dhs / sizeof *dhs; di++)
            for (size_t hi = 0; hi < sizeof hs / sizeof *hs; hi++) {
                size_t dh = dhs[di], H = hs[hi], hb = bee_type_nbytes(types[ti], dh), rb = H * hb + 64; /* padded rows */
                const bee_attn_kernels *f = bee_attn_get(types[ti], dh), *r = bee_attn_ref(types[ti]);
                fill(q, H * dh, 0.1f);
                fill(kv, NK * H * dh, 0.3f);
                fill(p, H * LD, 0.0f);
                for (size_t k = 0; k < NK; k++) bee_quantize_row(types[ti], kv + k * H * dh, rows + k * rb, H * dh);
                for (size_t n = 0; n <= NK; n++) {
                    memset(s0, 0, sizeof s0), memset(s1, 0, sizeof s1), memset(s2, 0, sizeof s2);
                    for (size_t h = 0; h < H; h++) { /* the per-head reference */
                        r->dots(n, dh, q + h * dh, rows + h * hb, rb, idx, s0 + h * LD);
                        r->wsum(n, dh, p + h * LD, rows + h * hb, rb, idx, o0 + h * dh);
                    }
                    r->dots_heads(n, H, dh, q, rows, rb, hb, idx, s1, LD);
                    f->dots_heads(n, H, dh, q, rows, rb, hb, idx, s2, LD);
                    r->wsum_heads(n, H, dh, p, LD, rows, rb, hb, idx, o1);
                    f->wsum_heads(n, H, dh, p, LD, rows, rb, hb, idx, o2);
                    if (memcmp(s0, s1, sizeof s0) || memcmp(s0, s2, sizeof s0))
                        fail_msg("dots_heads %s dh=%zu H=%zu n=%zu: != per-head", bee_type_name(types[ti]), dh, H, n);
                    if (memcmp(o0, o1, H * dh * sizeof *o0) || memcmp(o0, o2, H * dh * sizeof *o0))
                        fail_msg("wsum_heads %s dh=%zu H=%zu n=%zu: != per-head", bee_type_name(types[ti]), dh, H, n);
                }
            }
    free(q), free(kv), free(o0), free(o1), free(o2), free(rows);
}

/* Tiled prefill attention: packed keys, 12-query score tiles and 4-query
 * value tiles equal the reference bit for bit. */
static void test_attn_tiles(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    static const size_t dhs[] = {16, 40, 64, 128};
    enum { NK = 37, NQ = 13, MAXD = 128 };
    static float q[NQ * MAXD], kv[NK * MAXD], kp[48 * MAXD], S0[NQ * NK], S1[NQ * NK], P[NQ * NK], o0[NQ * MAXD],
        o1[NQ * MAXD];
    static uint8_t rows[NK * MAXD * 4], rev[NK * MAXD * 4];
    static int32_t idx[NK];
    for (size_t ti = 0; ti < 3; ti++)
        for (size_t di = 0; di < 4; di++) {
            size_t dh = dhs[di], rb = bee_type_nbytes(types[ti], dh);
            const bee_attn_tile_kernels *f = bee_attn_tile_get(types[ti]), *r = bee_attn_tile_ref(types[ti]);
            fill(q, NQ * dh, 0.1f);
            fill(kv, NK * dh, 0.3f);
            fill(P, NQ * NK, 0.0f);
            for (size_t k = 0; k < NK; k++) bee_quantize_row(types[ti], kv + k * dh, rows + k * rb, dh);
            bee_attn_pack_keys(types[ti], NK, dh, rows, rb, kp);
            for (size_t T = 1; T <= 12; T++) {
                r->qk(T, NK, dh, q, dh, kp, S0, NK);
                f->qk(T, NK, dh, q, dh, kp, S1, NK);
                if (memcmp(S0, S1, T * NK * sizeof *S0)) fail_msg("qk %s dh=%zu T=%zu", bee_type_name(types[ti]), dh, T);
            }
            for (size_t k = 0; k < NK; k++) /* the same rows stored backwards, read through an index list */
                memcpy(rev + (NK - 1 - k) * rb, rows + k * rb, rb), idx[k] = (int32_t)(NK - 1 - k);
            for (size_t T = 1; T <= 4; T++) {
                r->pv(T, NK, dh, P, NK, rows, rb, NULL, o0, dh);
                f->pv(T, NK, dh, P, NK, rows, rb, NULL, o1, dh);
                if (memcmp(o0, o1, T * dh * sizeof *o0)) fail_msg("pv %s dh=%zu T=%zu", bee_type_name(types[ti]), dh, T);
                r->pv(T, NK, dh, P, NK, rev, rb, idx, o1, dh);
                if (memcmp(o0, o1, T * dh * sizeof *o0)) fail_msg("pv ref idx %s dh=%zu T=%zu", bee_type_name(types[ti]), dh, T);
                f->pv(T, NK, dh, P, NK, rev, rb, idx, o1, dh);
                if (memcmp(o0, o1, T * dh * sizeof *o0)) fail_msg("pv idx %s dh=%zu T=%zu", bee_type_name(types[ti]), dh, T);
            }
            float row[MAXD]; /* scores are dot products of the cached keys */
            bee_dequantize_row(types[ti], rows + 5 * rb, row, dh);
            double e = 0;
            for (size_t k = 0; k < dh; k++) e += (double)q[dh + k] * row[k];
            assert_true(fabs(S0[NK + 5] - e) < 1e-4);
        }
}

/* Element-wise kernels: the SIMD GELU (A&S erf + polynomial exp) and RMSNorm
 * stay within float rounding of the libm-based reference. */
static void test_eltwise(void **state) {
    (void)state;
    const bee_eltwise_kernels *f = bee_eltwise_get(), *r = bee_eltwise_ref();
    enum { N = 4001 };
    static float g0[N], g1[N], u[N], x[N], w[N], y0[N], y1[N];
    for (int i = 0; i < N; i++) {
        g0[i] = g1[i] = -12.0f + 24.0f * (float)i / (N - 1); /* dense over the range that matters */
        u[i] = 1.0f + 0.001f * (float)i;
    }
    g0[7] = g1[7] = -100.0f, g0[8] = g1[8] = 100.0f, g0[9] = g1[9] = 1e-30f, g0[10] = g1[10] = 0.0f;
    r->gelu_mul(g0, u, N);
    f->gelu_mul(g1, u, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double err = fabs((double)g1[i] - g0[i]) / (fabs((double)u[i]) * fmax(1.0, fabs(-12.0 + 24.0 * i / (N - 1))));
        worst = fmax(worst, err);
        if (!(err <= 1e-6)) fail_msg("gelu[%d]: %.9g vs ref %.9g", i, (double)g1[i], (double)g0[i]);
    }
    fprintf(stderr, "  gelu: worst scaled error %.3g\n", worst);
    /* the training backward: derivative and value, against libm erff/expf */
    static float dz[N], dg0[N], du0[N], dg1[N], du1[N];
    for (int i = 0; i < N; i++) g1[i] = -12.0f + 24.0f * (float)i / (N - 1), dz[i] = 0.5f - 0.0003f * (float)i;
    r->gelu_bwd(dg0, du0, dz, g1, u, N, 3.0f);
    f->gelu_bwd(dg1, du1, dz, g1, u, N, 3.0f);
    for (int i = 0; i < N; i++) {
        double sc = fabs((double)dz[i] * u[i]) / 3.0 * fmax(1.0, fabs((double)g1[i]));
        if (!(fabs((double)dg1[i] - dg0[i]) <= 1e-6 * sc + 1e-30) || !(fabs((double)du1[i] - du0[i]) <= 1e-6 * sc + 1e-30))
            fail_msg("gelu_bwd[%d] x=%g: %.9g %.9g vs ref %.9g %.9g", i, (double)g1[i], (double)dg1[i], (double)du1[i],
                     (double)dg0[i], (double)du0[i]);
    }
    /* gelu'(x) against a central difference of the reference gelu */
    for (int i = 0; i < N; i += 97) {
        double xv = g1[i], h = 1e-3;
        double fd = (0.5 * (xv + h) * (1 + erf((xv + h) / sqrt(2.0))) - 0.5 * (xv - h) * (1 + erf((xv - h) / sqrt(2.0)))) / (2 * h);
        double got = (double)dg0[i] * 3.0 / ((double)dz[i] * u[i]);
        if (fabs((double)dz[i] * u[i]) > 1e-3 && !(fabs(got - fd) <= 1e-4)) fail_msg("gelu' at %g: %g vs %g", xv, got, fd);
    }
    for (size_t n = 1; n <= N; n = n * 3 + 1) {
        fill(x, n, 0.5f);
        fill(w, n, 1.0f);
        r->rmsnorm(y0, x, w, n, 1e-6f);
        f->rmsnorm(y1, x, w, n, 1e-6f);
        for (size_t i = 0; i < n; i++)
            if (!(fabs((double)y1[i] - y0[i]) <= 1e-5 * fabs((double)w[i]) + 1e-30))
                fail_msg("rmsnorm n=%zu [%zu]: %.9g vs ref %.9g", n, i, (double)y1[i], (double)y0[i]);
    }
}

/* ---------------------------------------------------------------- panel layout */

/* One matrix of each panel type with a ragged last panel: rows read back
 * exactly; the SIMD tile kernel equals the reference bit for bit for every
 * tile size; a token's result does not depend on the other tokens of the
 * call; and the result is the dot product of the dequantized weights with
 * the (q8_0-rounded, for int8 types) activations. The sizes reach the
 * prefill path of the float types (panel pairs over whole tiles, then a
 * ragged tile, then an odd panel alone). */
static void check_panel_type(uint32_t type) {
    const size_t rows = 37, cols = 576, n_tok = 110;
    float *wf = malloc(rows * cols * sizeof *wf), *x = malloc(n_tok * cols * sizeof *x);
    uint8_t *wr = malloc(bee_type_nbytes(type, rows * cols));
    size_t pn = bee_panel_nbytes(type, rows, cols);
    assert_int_equal(pn, bee_type_nbytes(type, 48 * cols)); /* 3 panels, same bytes as 48 rows */
    uint8_t *pw = malloc(pn);
    float *y_ref = calloc(n_tok * rows, sizeof *y_ref), *y_fast = calloc(n_tok * rows, sizeof *y_fast);
    float *y_one = calloc(rows, sizeof *y_one), *row = malloc(cols * sizeof *row), *row2 = malloc(cols * sizeof *row2);
    fill(wf, rows * cols, 0.2f);
    fill(x, n_tok * cols, 0.5f);
    bee_quantize_row(type, wf, wr, rows * cols);
    bee_panel_pack(type, wr, rows, cols, pw);
    for (size_t r = 0; r < rows; r++) {
        bee_dequantize_row(type, wr + r * bee_type_nbytes(type, cols), row, cols);
        bee_panel_row(type, pw, cols, r, row2);
        if (memcmp(row, row2, cols * sizeof *row) != 0) fail_msg("%s: panel row %zu differs", bee_type_name(type), r);
    }
    bee_panel_act a, a1;
    assert_int_equal(bee_panel_act_init(&a, type, n_tok, cols, 0), 0);
    bee_panel_act_fill(&a, x, 0, 5);
    bee_panel_act_fill(&a, x, 5, n_tok);
    bee_panel_matmul_ref(type, pw, rows, 0, 3, &a, y_ref, rows, 2.0f);
    for (size_t T = 1; T <= n_tok; T += T < 30 ? 1 : 19) { /* tile sizes, through the first T tokens */
        a.n_tok = T;
        memset(y_fast, 0, n_tok * rows * sizeof *y_fast);
        bee_panel_matmul(type, pw, rows, 0, 3, &a, y_fast, rows, 2.0f);
        if (memcmp(y_ref, y_fast, T * rows * sizeof *y_ref) != 0) fail_msg("%s: fast != ref with %zu tokens", bee_type_name(type), T);
    }
    for (size_t t = 0; t < n_tok; t += 5) { /* alone, split over panel ranges */
        assert_int_equal(bee_panel_act_init(&a1, type, 1, cols, 0), 0);
        bee_panel_act_fill(&a1, x + t * cols, 0, 1);
        bee_panel_matmul(type, pw, rows, 0, 1, &a1, y_one, rows, 2.0f);
        bee_panel_matmul(type, pw, rows, 1, 3, &a1, y_one, rows, 2.0f);
        if (memcmp(y_one, y_ref + t * rows, rows * sizeof *y_one) != 0) fail_msg("%s: token %zu alone differs", bee_type_name(type), t);
        bee_panel_act_free(&a1);
    }
    for (size_t t = 0; t < n_tok; t++) {
        float xr[576];
        if (type == BEE_TYPE_Q8_0 || type == BEE_TYPE_Q4_0 || type == BEE_TYPE_Q4_1) {
            uint8_t xq[18 * 34];
            bee_quantize_row(BEE_TYPE_Q8_0, x + t * cols, xq, cols);
            bee_dequantize_row(BEE_TYPE_Q8_0, xq, xr, cols);
        } else {
            memcpy(xr, x + t * cols, sizeof xr);
        }
        for (size_t r = 0; r < rows; r++) {
            bee_dequantize_row(type, wr + r * bee_type_nbytes(type, cols), row, cols);
            double e = 0, mag = 0;
            for (size_t k = 0; k < cols; k++) e += (double)row[k] * xr[k], mag += fabs((double)row[k] * xr[k]);
            double got = 2.0 * y_ref[t * rows + r];
            if (fabs(got - e) > 1e-5 * mag + 1e-6) fail_msg("%s: [%zu,%zu] %.7g vs exact %.7g", bee_type_name(type), t, r, got, e);
        }
    }
    bee_panel_act_free(&a);
    free(wf), free(x), free(wr), free(pw), free(y_ref), free(y_fast), free(y_one), free(row), free(row2);
}

/* The cache-blocked pair path of the float types: sizes that cross every
 * column block, pair group and tile chunk boundary, with a ragged column
 * block, a ragged last tile, an odd last panel and a ragged last panel. The
 * result equals the reference bit for bit, also when the panels are split
 * into ranges the way the thread pool splits them (so for any -t). */
static void check_panel_blocked(uint32_t type) {
    const size_t n_panels = 2 * BEE_PANEL_PAIR_GROUP + 3, rows = n_panels * 16 - 5;
    const size_t cols = 2 * BEE_PANEL_PAIR_KC + 40, n_tok = BEE_PANEL_PAIR_CHUNK * BEE_PANEL_TILE + 17;
    float *wf = malloc(rows * cols * sizeof *wf), *x = malloc(n_tok * cols * sizeof *x);
    uint8_t *wr = malloc(bee_type_nbytes(type, rows * cols)), *pw = malloc(bee_panel_nbytes(type, rows, cols));
    float *y_ref = malloc(n_tok * rows * sizeof *y_ref), *y = malloc(n_tok * rows * sizeof *y);
    fill(wf, rows * cols, 0.2f);
    fill(x, n_tok * cols, 0.5f);
    bee_quantize_row(type, wf, wr, rows * cols);
    bee_panel_pack(type, wr, rows, cols, pw);
    bee_panel_act a;
    assert_int_equal(bee_panel_act_init(&a, type, n_tok, cols, 0), 0);
    bee_panel_act_fill(&a, x, 0, n_tok);
    bee_panel_matmul_ref(type, pw, rows, 0, n_panels, &a, y_ref, rows, 3.0f);
    const size_t splits[] = {n_panels, 7, 10, 1};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++) {
        memset(y, 0, n_tok * rows * sizeof *y);
        bee_panel_matmul(type, pw, rows, 0, splits[i], &a, y, rows, 3.0f);
        bee_panel_matmul(type, pw, rows, splits[i], n_panels, &a, y, rows, 3.0f);
        if (memcmp(y_ref, y, n_tok * rows * sizeof *y) != 0)
            fail_msg("%s: blocked pair path != ref (split at panel %zu)", bee_type_name(type), splits[i]);
    }
    bee_panel_act_free(&a);
    free(wf), free(x), free(wr), free(pw), free(y_ref), free(y);
}

static void test_panel_blocked(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) check_panel_blocked(types[i]);
}

/* The AMX path of prompts with float weights (panel_amx.c): sizes that cross every panel
 * block and column block, with ragged columns, rows, panels and tokens.
 * Its sums are f32 sums in another order, so it is checked against the
 * exact (double) products within 2^-19 of sum |w x|: with all-positive data
 * every truncation error has one sign, so dropping the mid/lo parts of the
 * split (2^-17 of |w x| on average) would fail; mixed signs catch layout
 * errors. Each token's result must not depend on the other tokens of the
 * call or on how the panels are split over threads (bit for bit). */
static void check_panel_amx(uint32_t type, float lo) {
    const size_t n_panels = BEE_PANEL_AMX_NC + 5, rows = n_panels * 16 - 3;
    const size_t cols = BEE_PANEL_AMX_KC + 2 * 32 + 7, n_tok = 3 * 16 + 5;
    const char *tn = bee_type_name(type);
    float *w = malloc(rows * cols * sizeof *w), *x = malloc(n_tok * cols * sizeof *x);
    float *y = malloc(n_tok * rows * sizeof *y), *y2 = malloc(n_tok * rows * sizeof *y2);
    uint8_t *wq = malloc(bee_type_nbytes(type, rows * cols)), *pw = malloc(bee_panel_nbytes(type, rows, cols));
    unsigned seed = 7; /* uniform in [lo, 1) */
    for (size_t i = 0; i < rows * cols + n_tok * cols; i++) {
        seed = seed * 1664525u + 1013904223u;
        float v = lo + (1 - lo) * (float)(seed >> 8) / 16777216.0f;
        if (i < rows * cols) w[i] = v;
        else x[i - rows * cols] = v;
    }
    bee_quantize_row(type, w, wq, rows * cols);
    bee_dequantize_row(type, wq, w, rows * cols); /* the weights exactly as stored */
    bee_panel_pack(type, wq, rows, cols, pw);
    bee_panel_act a;
    assert_int_equal(bee_panel_act_init(&a, type, n_tok, cols, BEE_PANEL_SPLIT), 0);
    assert_non_null(a.h);
    bee_panel_act_fill(&a, x, 0, 20);
    bee_panel_act_fill(&a, x, 20, n_tok);
    assert_int_equal(bee_panel_matmul(type, pw, rows, 0, n_panels, &a, y, rows, 3.0f), 0);
    for (size_t t = 0; t < n_tok; t++)
        for (size_t r = 0; r < rows; r++) {
            double e = 0, mag = 0;
            for (size_t k = 0; k < cols; k++) {
                double p = (double)w[r * cols + k] * x[t * cols + k];
                e += p, mag += fabs(p);
            }
            double got = 3.0 * y[t * rows + r];
            if (!(fabs(got - e) <= 0x1p-19 * mag))
                fail_msg("AMX %s [%zu,%zu]: %.9g vs exact %.9g (sum |wx| %.3g)", tn, t, r, got, e, mag);
        }
    const size_t splits[] = {1, 7, BEE_PANEL_AMX_NC, BEE_PANEL_AMX_NC + 1};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++) {
        memset(y2, 0, n_tok * rows * sizeof *y2);
        assert_int_equal(bee_panel_matmul(type, pw, rows, 0, splits[i], &a, y2, rows, 3.0f), 0);
        assert_int_equal(bee_panel_matmul(type, pw, rows, splits[i], n_panels, &a, y2, rows, 3.0f), 0);
        if (memcmp(y, y2, n_tok * rows * sizeof *y) != 0) fail_msg("AMX %s: split at panel %zu changes the result", tn, splits[i]);
    }
    bee_panel_act_free(&a);
    const size_t subsets[][2] = {{0, 1}, {17, 33}, {40, n_tok}}; /* tokens alone, in other blocks */
    for (size_t i = 0; i < sizeof subsets / sizeof *subsets; i++) {
        size_t t0 = subsets[i][0], n = subsets[i][1] - t0;
        assert_int_equal(bee_panel_act_init(&a, type, n, cols, BEE_PANEL_SPLIT), 0);
        bee_panel_act_fill(&a, x + t0 * cols, 0, n);
        assert_int_equal(bee_panel_matmul(type, pw, rows, 0, n_panels, &a, y2, rows, 3.0f), 0);
        if (memcmp(y + t0 * rows, y2, n * rows * sizeof *y) != 0) fail_msg("AMX %s: tokens [%zu, %zu) alone differ", tn, t0, t0 + n);
        bee_panel_act_free(&a);
    }
    free(w), free(x), free(y), free(y2), free(wq), free(pw);
}

static void test_panel_amx(void **state) {
    (void)state;
    if (!bee_panel_amx()) {
        fprintf(stderr, "  no AMX BF16 on this CPU/OS (or BEE_AMX=0): skipped\n");
        skip();
    }
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        check_panel_amx(types[i], 0.0f);  /* all positive */
        check_panel_amx(types[i], -1.0f); /* mixed signs */
    }
}

/* For int8 weights BEE_PANEL_SPLIT changes nothing. */
static void test_panel_split_fallback(void **state) {
    (void)state;
    bee_panel_act a;
    assert_int_equal(bee_panel_act_init(&a, BEE_TYPE_Q8_0, 64, 64, BEE_PANEL_SPLIT), 0);
    assert_null(a.h);
    assert_non_null(a.q);
    bee_panel_act_free(&a);
}

static void test_panel_quant(void **state) {
    (void)state;
    bee_panel_quant_fn fast = bee_panel_quant_avx512();
    if (!fast) skip();
    enum { NB = 64 };
    float x[NB * 32];
    fill(x, NB * 32, 0.3f);
    for (int i = 0; i < 32; i++) x[32 + i] = 0.0f;           /* zero block */
    for (int i = 0; i < 32; i++) x[64 + i] = 1e-9f * (float)i; /* scale below fp16 */
    x[100] = NAN, x[101] = INFINITY, x[102] = -INFINITY;     /* NaN ignored in amax; inf saturates */
    for (int i = 0; i < 32; i++) x[128 + i] = (float)(i - 16) * 127.0f / 16.0f + 0.5f; /* exact halves */
    x[200] = 1e30f;
    int8_t q0[NB * 32], q1[NB * 32];
    float d0[NB], d1[NB];
    int32_t c0[NB], c1[NB];
    bee_panel_quant_ref(x, NB, q0, 32, d0, c0, 1, 128);
    fast(x, NB, q1, 32, d1, c1, 1, 128);
    assert_memory_equal(q0, q1, sizeof q0);
    assert_memory_equal(d0, d1, sizeof d0);
    assert_memory_equal(c0, c1, sizeof c0);
}

static void test_panel(void **state) {
    (void)state;
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16, BEE_TYPE_Q8_0, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
    assert_int_equal(bee_panel_nbytes(BEE_TYPE_Q8_1, 16, 32), 0);
    assert_int_equal(bee_panel_nbytes(BEE_TYPE_Q8_0, 16, 48), 0);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        fprintf(stderr, "  panel %s: %s kernel\n", bee_type_name(types[i]), bee_panel_fast(types[i]) ? "avx512" : "reference");
        check_panel_type(types[i]);
    }
}

static void test_dispatch(void **state) {
    (void)state;
    for (size_t t = 0; t < N_WTYPES; t++) {
        const bee_dot_kernel *k = bee_dot_kernel_get(k_wtypes[t]), *r = bee_dot_kernel_ref(k_wtypes[t]);
        assert_non_null(k);
        assert_non_null(r);
        assert_int_equal(k->type, k_wtypes[t]);
        assert_string_equal(r->path, "scalar");
        uint32_t want = k_wtypes[t] == BEE_TYPE_Q4_1   ? BEE_TYPE_Q8_1
                        : is_quant(k_wtypes[t])         ? BEE_TYPE_Q8_0
                        : k_wtypes[t] == BEE_TYPE_BF16 ? k->act_type
                                                        : BEE_TYPE_F32;
        assert_int_equal(k->act_type, want);
        assert_int_equal(r->act_type, is_quant(k_wtypes[t]) ? want : BEE_TYPE_F32);
        if (k_wtypes[t] == BEE_TYPE_BF16)
            assert_int_equal(k->act_type, (bee_cpu_ext() & BEE_CPU_EXT_BF16) ? BEE_TYPE_BF16 : BEE_TYPE_F32);
    }
    assert_null(bee_dot_kernel_get(BEE_TYPE_Q8_1));
    assert_null(bee_dot_kernel_get(1234));
    assert_null(bee_dot_kernel_ref(BEE_TYPE_Q8_1));
    assert_null(bee_dot_kernel_ref_act(BEE_TYPE_Q8_0, BEE_TYPE_F32));
    assert_non_null(bee_dot_kernel_ref_act(BEE_TYPE_BF16, BEE_TYPE_BF16));
    assert_non_null(bee_dot_kernel_at(BEE_TYPE_F32, BEE_CPU_SCALAR, 0));
    assert_null(bee_dot_kernel_at(BEE_TYPE_F32, BEE_CPU_SCALAR, BEE_CPU_EXT_VNNI));
    assert_null(bee_dot_kernel_at(BEE_TYPE_F32, 7, 0));
    if (bee_cpu_max_level() < BEE_CPU_AVX512) assert_null(bee_dot_kernel_at(BEE_TYPE_F32, BEE_CPU_AVX512, 0));
    assert_non_null(bee_cpu_path());
    assert_int_equal(bee_cpu_parse("scalar"), BEE_CPU_SCALAR);
    assert_int_equal(bee_cpu_parse("AVX2"), BEE_CPU_AVX2);
    assert_int_equal(bee_cpu_parse("avx512"), BEE_CPU_AVX512);
    assert_int_equal(bee_cpu_parse("auto"), -1);
    assert_int_equal(bee_cpu_parse(""), -1);
    assert_int_equal(bee_cpu_parse(NULL), -1);
    assert_int_equal(bee_cpu_parse("sse9"), -2);
    assert_string_equal(bee_cpu_path_name(BEE_CPU_AVX512, BEE_CPU_EXT_VNNI | BEE_CPU_EXT_BF16), "avx512-vnni-bf16");
    const bee_cpu_info *ci = bee_cpu_info_get();
    print_message("cpu: max level %d ext %u, path in use %s (avx2 %d fma %d f16c %d avx512f %d bw %d vl %d vnni %d "
                  "bf16 %d fp16 %d amx %d)\n",
                  bee_cpu_max_level(), bee_cpu_max_ext(), bee_cpu_path(), ci->avx2, ci->fma, ci->f16c, ci->avx512f,
                  ci->avx512bw, ci->avx512vl, ci->avx512vnni, ci->avx512bf16, ci->avx512fp16, ci->amx_tile);
}

/* BEE_CPU caps the path chosen at start-up (checked in a child process). */
static void test_env_override(void **state) {
    (void)state;
    if (!g_self[0]) skip();
    static const char *want[] = {"scalar", "avx2", "avx512"};
    for (int lvl = 0; lvl <= bee_cpu_max_level(); lvl++) {
        char cmd[8300], *out = NULL;
        snprintf(cmd, sizeof cmd, "BEE_CPU=%s '%s' --print-path", want[lvl], g_self);
        assert_int_equal(tu_run(cmd, &out), 0);
        assert_non_null(out);
        const char *exp = bee_cpu_path_name(lvl, lvl == BEE_CPU_AVX512 ? bee_cpu_max_ext() : 0);
        if (strncmp(out, exp, strlen(exp)) != 0) fail_msg("BEE_CPU=%s gave '%s', want '%s'", want[lvl], out, exp);
        free(out);
    }
    char cmd[8300], *out = NULL;
    snprintf(cmd, sizeof cmd, "BEE_CPU=bogus '%s' --print-path", g_self);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "not one of"));
    assert_non_null(strstr(out, bee_cpu_path_name(bee_cpu_max_level(), bee_cpu_max_ext())));
    free(out);
}

/* ---------------------------------------------------------------- gemm */

/* One product in the three stride layouts the training pass uses, on every
 * path, with 1 and 3 threads: bit-identical to the reference. The reference
 * itself is held to a double-precision product. */
static void gemm_case(size_t M, size_t N, size_t K, int layout, int accumulate, float div) {
    size_t na = M * K, nb = K * N;
    float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
    float *C0 = malloc(M * N * sizeof(float)), *C1 = malloc(M * N * sizeof(float));
    assert_non_null(A), assert_non_null(B), assert_non_null(C0), assert_non_null(C1);
    for (size_t i = 0; i < na; i++) A[i] = (float)rng_unif() * 2 - 1;
    for (size_t i = 0; i < nb; i++) B[i] = (float)rng_unif() * 2 - 1;
    for (size_t i = 0; i < M * N; i++) C0[i] = (float)rng_unif();
    bee_gemm_args g = {M, N, K, A, K, 1, B, N, 1, C0, N, accumulate, div};
    if (layout == 1) g.rsb = 1, g.csb = K;   /* B = W^T, W (N, K): forward */
    if (layout == 2) g.rsa = 1, g.csa = M;   /* A = dy^T, dy (K, M): weight gradient */
    float *init = malloc(M * N * sizeof(float));
    assert_non_null(init);
    memcpy(init, C0, M * N * sizeof(float));
    bee_gemm_ref(&g);
    for (size_t m = 0; m < M; m++)
        for (size_t n = 0; n < N; n++) {
            double e = accumulate ? init[m * N + n] : 0, mag = fabs(e);
            for (size_t k = 0; k < K; k++) {
                double t = (double)A[m * g.rsa + k * g.csa] * B[k * g.rsb + n * g.csb];
                e += t, mag += fabs(t);
            }
            double got = (double)C0[m * N + n] * div;
            assert_true(fabs(got - e) <= (double)(K / 8 + 8) * FLT_EPSILON * mag + 1e-30);
        }
    bee_pool *pools[2] = {NULL, bee_pool_init(3)};
    for (int lvl = BEE_CPU_SCALAR; lvl <= bee_cpu_max_level(); lvl++)
        for (int pi = 0; pi < 2; pi++) {
            memcpy(C1, init, M * N * sizeof(float));
            g.C = C1;
            bee_gemm_at(pools[pi], &g, lvl);
            g.C = C0;
            if (memcmp(C0, C1, M * N * sizeof(float)) != 0) {
                print_error("gemm %zux%zux%zu layout %d acc %d div %g level %d threads %d differs\n", M, N, K, layout,
                            accumulate, (double)div, lvl, pi ? 3 : 1);
                fail();
            }
        }
    bee_pool_free(pools[1]);
    free(A), free(B), free(C0), free(C1), free(init);
}

static void test_gemm(void **state) {
    (void)state;
    g_rng = 0x9e3779b97f4a7c15ull;
    static const size_t sizes[][3] = {{1, 1, 1},   {12, 32, 7},  {13, 33, 256}, {11, 31, 257}, {25, 70, 600},
                                      {6, 16, 3},  {7, 17, 513}, {40, 300, 64}, {3, 520, 33},  {100, 9, 1000}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int layout = 0; layout < 3; layout++)
            gemm_case(sizes[i][0], sizes[i][1], sizes[i][2], layout, (int)(i + layout) % 2, i % 3 == 0 ? 16.0f : 1.0f);
    /* K = 0: the empty sum, divided */
    float C[2] = {3, 5};
    bee_gemm_args g = {1, 2, 0, C, 0, 1, C, 2, 1, C, 2, 1, 2.0f};
    bee_gemm(NULL, &g);
    assert_true(C[0] == 1.5f && C[1] == 2.5f);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-path") == 0) {
        printf("%s\n", bee_cpu_path());
        return 0;
    }
    ssize_t k = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[k > 0 ? k : 0] = 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_layout_q8_0),
        cmocka_unit_test(test_layout_q8_1),
        cmocka_unit_test(test_layout_q4_0),
        cmocka_unit_test(test_layout_q4_1),
        cmocka_unit_test(test_zero_and_constant_blocks),
        cmocka_unit_test(test_roundtrip_bounds),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_env_override),
        cmocka_unit_test(test_dot_all),
        cmocka_unit_test(test_dot_float_odd_sizes),
        cmocka_unit_test(test_dot_extreme_quants),
        cmocka_unit_test(test_dot_zero),
        cmocka_unit_test(test_attn),
        cmocka_unit_test(test_attn_heads),
        cmocka_unit_test(test_linear_multi),
        cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_attn_tiles),
        cmocka_unit_test(test_panel),
        cmocka_unit_test(test_panel_blocked),
        cmocka_unit_test(test_panel_amx),
        cmocka_unit_test(test_panel_split_fallback),
        cmocka_unit_test(test_panel_quant),
        cmocka_unit_test(test_gemm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
