/* Reference quantization (see quant.h for the layouts and rounding rules). */
#include "kernels/quant.h"

#include <math.h>
#include <string.h>

#include "util/types.h"

/* fp32 -> fp16 (round to nearest even) with the magnitude clamped to the
 * largest finite half, so scales never become inf. */
static uint16_t f16_sat(float v) {
    if (v > 65504.0f) v = 65504.0f;
    if (v < -65504.0f) v = -65504.0f;
    return bee_f32_to_f16(v);
}

static void st_u16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* Rounds v (|v| <= 127, not NaN) to the nearest integer, halves away from 0. */
static int round_away(float v) {
    float a = fabsf(v);
    int q = (int)a;
    if (a - (float)q >= 0.5f) q++;
    return v < 0 ? -q : q;
}

/* Shared by Q8_0 and Q8_1: writes d (fp16) and the 32 quants; returns sum(q). */
static int quant8(const float *x, uint16_t *dh_out, int8_t *qs) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    uint16_t dh = f16_sat(amax / 127.0f);
    float d = bee_f16_to_f32(dh);
    int sum = 0;
    if (!(d > 0.0f)) { /* zero block, or a scale too small for fp16 */
        dh = 0;
        memset(qs, 0, 32);
    } else {
        for (int i = 0; i < 32; i++) {
            float v = fminf(fmaxf(x[i] / d, -127.0f), 127.0f); /* also maps NaN to -127 */
            int q = round_away(v);
            qs[i] = (int8_t)q;
            sum += q;
        }
    }
    *dh_out = dh;
    return sum;
}

void bee_quantize_block_q8_0(const float *x, void *dst) {
    uint8_t *b = dst;
    uint16_t dh;
    int8_t qs[32];
    quant8(x, &dh, qs);
    st_u16(b, dh);
    memcpy(b + 2, qs, 32);
}

void bee_quantize_block_q8_1(const float *x, void *dst) {
    uint8_t *b = dst;
    uint16_t dh;
    int8_t qs[32];
    int sum = quant8(x, &dh, qs);
    st_u16(b, dh);
    st_u16(b + 2, f16_sat(bee_f16_to_f32(dh) * (float)sum));
    memcpy(b + 4, qs, 32);
}

void bee_quantize_block_q4_0(const float *x, void *dst) {
    uint8_t *b = dst;
    float amax = 0.0f, mx = 0.0f;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), mx = x[i];
    uint16_t dh = f16_sat(mx / -8.0f);
    float d = bee_f16_to_f32(dh);
    uint8_t q[32];
    if (d == 0.0f || d != d) {
        dh = 0;
        memset(q, 8, sizeof q);
    } else {
        for (int i = 0; i < 32; i++) {
            float v = fminf(fmaxf(x[i] / d + 8.5f, 0.0f), 15.0f);
            q[i] = (uint8_t)(int)v;
        }
    }
    st_u16(b, dh);
    for (int i = 0; i < 16; i++) b[2 + i] = (uint8_t)(q[i] | q[i + 16] << 4);
}

void bee_quantize_block_q4_1(const float *x, void *dst) {
    uint8_t *b = dst;
    float mn = x[0], mx = x[0];
    for (int i = 1; i < 32; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    uint16_t mh = f16_sat(mn), dh = f16_sat((mx - mn) / 15.0f);
    float m = bee_f16_to_f32(mh), d = bee_f16_to_f32(dh);
    uint8_t q[32];
    if (!(d > 0.0f)) {
        dh = 0;
        memset(q, 0, sizeof q);
    } else {
        for (int i = 0; i < 32; i++) {
            float v = fminf(fmaxf((x[i] - m) / d + 0.5f, 0.0f), 15.0f);
            q[i] = (uint8_t)(int)v;
        }
    }
    st_u16(b, dh);
    st_u16(b + 2, mh);
    for (int i = 0; i < 16; i++) b[4 + i] = (uint8_t)(q[i] | q[i + 16] << 4);
}

void bee_quantize_row(uint32_t type, const float *x, void *dst, size_t n) {
    uint8_t *b = dst;
    size_t nb = n / 32;
    switch (type) {
    case BEE_TYPE_F32: memcpy(dst, x, n * sizeof *x); break;
    case BEE_TYPE_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bee_f32_to_f16(x[i]);
        break;
    case BEE_TYPE_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = bee_f32_to_bf16(x[i]);
        break;
    case BEE_TYPE_Q8_0:
        for (size_t k = 0; k < nb; k++) bee_quantize_block_q8_0(x + 32 * k, b + BEE_Q8_0_BYTES * k);
        break;
    case BEE_TYPE_Q8_1:
        for (size_t k = 0; k < nb; k++) bee_quantize_block_q8_1(x + 32 * k, b + BEE_Q8_1_BYTES * k);
        break;
    case BEE_TYPE_Q4_0:
        for (size_t k = 0; k < nb; k++) bee_quantize_block_q4_0(x + 32 * k, b + BEE_Q4_0_BYTES * k);
        break;
    case BEE_TYPE_Q4_1:
        for (size_t k = 0; k < nb; k++) bee_quantize_block_q4_1(x + 32 * k, b + BEE_Q4_1_BYTES * k);
        break;
    default: break;
    }
}

void bee_dequantize_row(uint32_t type, const void *src, float *y, size_t n) {
    const uint8_t *b = src;
    size_t nb = n / 32;
    switch (type) {
    case BEE_TYPE_F32: memcpy(y, src, n * sizeof *y); break;
    case BEE_TYPE_F16:
        for (size_t i = 0; i < n; i++) y[i] = bee_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case BEE_TYPE_BF16:
        for (size_t i = 0; i < n; i++) y[i] = bee_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case BEE_TYPE_Q8_0:
    case BEE_TYPE_Q8_1: {
        size_t bs = type == BEE_TYPE_Q8_0 ? BEE_Q8_0_BYTES : BEE_Q8_1_BYTES, off = bs - 32;
        for (size_t k = 0; k < nb; k++, b += bs) {
            float d = bee_ld_f16(b);
            for (int i = 0; i < 32; i++) y[32 * k + i] = (float)(int8_t)b[off + i] * d;
        }
        break;
    }
    case BEE_TYPE_Q4_0:
        for (size_t k = 0; k < nb; k++, b += BEE_Q4_0_BYTES) {
            float d = bee_ld_f16(b);
            for (int i = 0; i < 16; i++) {
                y[32 * k + i] = (float)((b[2 + i] & 15) - 8) * d;
                y[32 * k + i + 16] = (float)((b[2 + i] >> 4) - 8) * d;
            }
        }
        break;
    case BEE_TYPE_Q4_1:
        for (size_t k = 0; k < nb; k++, b += BEE_Q4_1_BYTES) {
            float d = bee_ld_f16(b), m = bee_ld_f16(b + 2);
            for (int i = 0; i < 16; i++) {
                y[32 * k + i] = (float)(b[4 + i] & 15) * d + m;
                y[32 * k + i + 16] = (float)(b[4 + i] >> 4) * d + m;
            }
        }
        break;
    default: break;
    }
}
