/* Reference quantization: fp32 rows to and from every bee type.
 *
 * Block layouts (little-endian, packed, 32 weights per block; identical to
 * ggml's so GGUF files interoperate):
 *   Q8_0  {fp16 d; int8 qs[32]}            34 B   w[i] = qs[i] * d
 *   Q8_1  {fp16 d; fp16 s; int8 qs[32]}    36 B   w[i] = qs[i] * d, s = fp16(d * sum(qs))
 *   Q4_0  {fp16 d; uint8 qs[16]}           18 B   w[i] = ((qs[i] & 15) - 8) * d,
 *                                                 w[i + 16] = ((qs[i] >> 4) - 8) * d   (i < 16)
 *   Q4_1  {fp16 d; fp16 m; uint8 qs[16]}   20 B   w[i] = (qs[i] & 15) * d + m,
 *                                                 w[i + 16] = (qs[i] >> 4) * d + m
 *
 * Quantization rules (per block of 32; "fp16(v)" is round-to-nearest-even,
 * magnitudes clamped to 65504 so no block ever stores inf):
 *   Q8_0/Q8_1: d = fp16(max|x| / 127); q = clamp(round(x / d), -127, 127),
 *              round = half away from zero.
 *   Q4_0:      mx = the x of largest magnitude (signed, first one on ties);
 *              d = fp16(mx / -8); q = clamp((int)(x / d + 8.5), 0, 15).
 *   Q4_1:      m = fp16(min x); d = fp16((max x - min x) / 15);
 *              q = clamp((int)((x - m) / d + 0.5), 0, 15).
 * The divisions use the fp16-rounded d (and m), which is what dequantization
 * multiplies by, so the round-trip error stays within d/2 per element (Q4_0:
 * up to |d| for the clamped extreme). A block whose d rounds to 0 stores all
 * zero quants (value 0, or m for Q4_1); no NaN or inf is produced from finite
 * input. NaN inputs give unspecified (but finite, UB-free) quants.
 *
 * No alignment is needed for quantized buffers; F32/F16/BF16 buffers must be
 * aligned to their element size. */
#ifndef BEE_KERNELS_QUANT_H
#define BEE_KERNELS_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util/types.h"

typedef struct {
    uint16_t d;
    int8_t qs[32];
} bee_block_q8_0;

typedef struct {
    uint16_t d, s;
    int8_t qs[32];
} bee_block_q8_1;

typedef struct {
    uint16_t d;
    uint8_t qs[16];
} bee_block_q4_0;

typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} bee_block_q4_1;

_Static_assert(sizeof(bee_block_q8_0) == 34, "q8_0 block must be 34 bytes");
_Static_assert(sizeof(bee_block_q8_1) == 36, "q8_1 block must be 36 bytes");
_Static_assert(sizeof(bee_block_q4_0) == 18, "q4_0 block must be 18 bytes");
_Static_assert(sizeof(bee_block_q4_1) == 20, "q4_1 block must be 20 bytes");

/* Byte sizes of one block. */
#define BEE_Q8_0_BYTES 34
#define BEE_Q8_1_BYTES 36
#define BEE_Q4_0_BYTES 18
#define BEE_Q4_1_BYTES 20

/* Unaligned little-endian fp16 load (block scales). */
static inline uint16_t bee_ld_u16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline float bee_ld_f16(const void *p) { return bee_f16_to_f32(bee_ld_u16(p)); }

/* bee_quantize_row(type, x, dst, n) and bee_dequantize_row(type, src, y, n)
 * are declared in util/types.h: n must be a multiple of 32 for the quantized
 * types (a trailing partial block is ignored); unknown types do nothing. */

/* One block of 32 values; exposed for tests and converters. */
void bee_quantize_block_q8_0(const float *x, void *dst);
void bee_quantize_block_q8_1(const float *x, void *dst);
void bee_quantize_block_q4_0(const float *x, void *dst);
void bee_quantize_block_q4_1(const float *x, void *dst);

#endif
