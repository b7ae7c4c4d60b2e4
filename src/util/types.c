#include "util/types.h"

#include <strings.h>

static const struct {
    uint32_t type;
    const char *name;
    uint64_t block;
    size_t block_bytes;
} k_types[] = {
    {BEE_TYPE_F32, "f32", 1, 4},         {BEE_TYPE_F16, "f16", 1, 2},         {BEE_TYPE_BF16, "bf16", 1, 2},
    {BEE_TYPE_Q8_0, "q8_0", BEE_QK, 34}, {BEE_TYPE_Q4_0, "q4_0", BEE_QK, 18}, {BEE_TYPE_Q4_1, "q4_1", BEE_QK, 20},
    {BEE_TYPE_Q8_1, "q8_1", BEE_QK, 36},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static int type_index(uint32_t type) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (k_types[i].type == type) return (int)i;
    return -1;
}

int bee_type_valid(uint32_t type) { return type_index(type) >= 0; }

int bee_type_is_quant(uint32_t type) {
    int i = type_index(type);
    return i >= 0 && k_types[i].block > 1;
}

const char *bee_type_name(uint32_t type) {
    int i = type_index(type);
    return i >= 0 ? k_types[i].name : "unknown";
}

int bee_type_from_name(const char *name) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (!strcasecmp(name, k_types[i].name)) return (int)k_types[i].type;
    return -1;
}

uint64_t bee_type_block(uint32_t type) {
    int i = type_index(type);
    return i >= 0 ? k_types[i].block : 1;
}

size_t bee_type_nbytes(uint32_t type, uint64_t n) {
    int i = type_index(type);
    if (i < 0 || n % k_types[i].block) return 0;
    uint64_t blocks = n / k_types[i].block;
    if (blocks > SIZE_MAX / k_types[i].block_bytes) return 0;
    return (size_t)blocks * k_types[i].block_bytes;
}

/* bee_quantize_row / bee_dequantize_row live in kernels/quant.c. */
