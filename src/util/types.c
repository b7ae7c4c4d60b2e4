#include "util/types.h"

#include <strings.h>

int bee_type_valid(uint32_t type) {
    return type == BEE_TYPE_F32 || type == BEE_TYPE_F16 || type == BEE_TYPE_BF16;
}

const char *bee_type_name(uint32_t type) {
    switch (type) {
    case BEE_TYPE_F32: return "f32";
    case BEE_TYPE_F16: return "f16";
    case BEE_TYPE_BF16: return "bf16";
    default: return "unknown";
    }
}

int bee_type_from_name(const char *name) {
    if (!strcasecmp(name, "f32")) return BEE_TYPE_F32;
    if (!strcasecmp(name, "f16")) return BEE_TYPE_F16;
    if (!strcasecmp(name, "bf16")) return BEE_TYPE_BF16;
    return -1;
}

uint64_t bee_type_block(uint32_t type) {
    (void)type;
    return 1;
}

size_t bee_type_nbytes(uint32_t type, uint64_t n) {
    switch (type) {
    case BEE_TYPE_F32: return n > SIZE_MAX / 4 ? 0 : (size_t)n * 4;
    case BEE_TYPE_F16:
    case BEE_TYPE_BF16: return n > SIZE_MAX / 2 ? 0 : (size_t)n * 2;
    default: return 0;
    }
}
