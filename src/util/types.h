/* Tensor element types. Numbering follows ggml so GGUF files can store the
 * value directly. */
#ifndef BEE_UTIL_TYPES_H
#define BEE_UTIL_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum bee_type {
    BEE_TYPE_F32 = 0,
    BEE_TYPE_F16 = 1,
    BEE_TYPE_Q4_0 = 2, /* 32-weight blocks: fp16 d, 16 bytes of nibbles; w = (q - 8) d */
    BEE_TYPE_Q4_1 = 3, /* 32-weight blocks: fp16 d, fp16 m, 16 bytes of nibbles; w = q d + m */
    BEE_TYPE_Q8_0 = 8, /* 32-weight blocks: fp16 d, 32 int8; w = q d */
    BEE_TYPE_Q8_1 = 9, /* 32-weight blocks: fp16 d, fp16 s = d * sum(q), 32 int8; w = q d (activations for Q4_1) */
    BEE_TYPE_BF16 = 30,
};

#define BEE_QK 32 /* weights per quantization block */

/* 1 when the type is known to this build. */
int bee_type_valid(uint32_t type);
const char *bee_type_name(uint32_t type);
/* 1 for the block-quantized types. */
int bee_type_is_quant(uint32_t type);
/* Parses "f32", "f16", "bf16", "q8_0", "q8_1", "q4_0", "q4_1" (case-insensitive); -1 if unknown. */
int bee_type_from_name(const char *name);
/* Bytes for n elements (n must be a multiple of the block size); 0 if invalid. */
size_t bee_type_nbytes(uint32_t type, uint64_t n);
/* Elements per block (1 for plain float types). */
uint64_t bee_type_block(uint32_t type);

/* IEEE binary16 and bfloat16 conversions; float→half rounds to nearest even. */
static inline float bee_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

static inline uint16_t bee_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t x = v.u, sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow */
    if (absx < 0x38800000u) { /* subnormal or zero in half */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t e = absx >> 23, m = (absx & 0x7fffff) | 0x800000;
        uint32_t s = 126 - e; /* 14..24 */
        uint32_t half_bits = m >> s;
        uint32_t rem = m & ((1u << s) - 1), mid = 1u << (s - 1);
        if (rem > mid || (rem == mid && (half_bits & 1))) half_bits++;
        return (uint16_t)(sign | half_bits);
    }
    uint32_t h = ((absx >> 13) - ((127 - 15) << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static inline float bee_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

static inline uint16_t bee_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t x = v.u;
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Quantizes / dequantizes n values (n a multiple of the block for quantized
 * types) between fp32 and any bee type. Implemented in kernels/quant.c, which
 * documents the exact rounding rules and block layouts. */
void bee_quantize_row(uint32_t type, const float *x, void *dst, size_t n);
void bee_dequantize_row(uint32_t type, const void *src, float *y, size_t n);

/* Element i of a float-typed buffer (F32, F16 or BF16) as fp32, and back. */
static inline float bee_float_load(uint32_t type, const void *src, size_t i) {
    if (type == BEE_TYPE_F32) return ((const float *)src)[i];
    uint16_t h = ((const uint16_t *)src)[i];
    return type == BEE_TYPE_F16 ? bee_f16_to_f32(h) : bee_bf16_to_f32(h);
}

static inline void bee_float_store(uint32_t type, void *dst, size_t i, float f) {
    if (type == BEE_TYPE_F32) ((float *)dst)[i] = f;
    else ((uint16_t *)dst)[i] = type == BEE_TYPE_F16 ? bee_f32_to_f16(f) : bee_f32_to_bf16(f);
}

#endif
