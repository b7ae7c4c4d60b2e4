/* Dot-kernel dispatch and the portable scalar reference kernels. */
#include "kernels/dot.h"

#include "kernels/cpu.h"
#include "kernels/quant.h"
#include "util/types.h"

/* ---------------------------------------------------------------- float types */

/* Eight interleaved fp32 accumulators (element i goes to acc[i % 8]),
 * combined pairwise at the end. wt/xt are compile-time constants after
 * inlining. */
static inline float dot_float(size_t n, uint32_t wt, const void *w, uint32_t xt, const void *x) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += bee_float_load(wt, w, i + k) * bee_float_load(xt, x, i + k);
    for (int k = 0; i < n; i++, k++) acc[k] += bee_float_load(wt, w, i) * bee_float_load(xt, x, i);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static float dot_f32_ref(size_t n, const void *w, const void *x) {
    return dot_float(n, BEE_TYPE_F32, w, BEE_TYPE_F32, x);
}
static float dot_f16_ref(size_t n, const void *w, const void *x) {
    return dot_float(n, BEE_TYPE_F16, w, BEE_TYPE_F32, x);
}
static float dot_bf16_ref(size_t n, const void *w, const void *x) {
    return dot_float(n, BEE_TYPE_BF16, w, BEE_TYPE_F32, x);
}
static float dot_bf16_bf16_ref(size_t n, const void *w, const void *x) {
    return dot_float(n, BEE_TYPE_BF16, w, BEE_TYPE_BF16, x);
}

/* ---------------------------------------------------------------- quantized types */

/* Per block: exact int32 dot of the quants, then sum += isum * (dw * dx) in
 * fp32, blocks in order. */
static float dot_q8_0_ref(size_t n, const void *w, const void *x) {
    const uint8_t *wb = w, *xb = x;
    float sum = 0.0f;
    for (size_t k = 0; k < n / 32; k++, wb += BEE_Q8_0_BYTES, xb += BEE_Q8_0_BYTES) {
        int32_t isum = 0;
        for (int i = 0; i < 32; i++) isum += (int8_t)wb[2 + i] * (int8_t)xb[2 + i];
        sum += (float)isum * (bee_ld_f16(wb) * bee_ld_f16(xb));
    }
    return sum;
}

static float dot_q4_0_ref(size_t n, const void *w, const void *x) {
    const uint8_t *wb = w, *xb = x;
    float sum = 0.0f;
    for (size_t k = 0; k < n / 32; k++, wb += BEE_Q4_0_BYTES, xb += BEE_Q8_0_BYTES) {
        int32_t isum = 0;
        for (int i = 0; i < 16; i++)
            isum += ((wb[2 + i] & 15) - 8) * (int8_t)xb[2 + i] + ((wb[2 + i] >> 4) - 8) * (int8_t)xb[2 + i + 16];
        sum += (float)isum * (bee_ld_f16(wb) * bee_ld_f16(xb));
    }
    return sum;
}

/* sum_i (q_i dw + m)(qx_i dx) = dw dx sum(q qx) + m s, with s = dx sum(qx)
 * stored in the Q8_1 block. */
static float dot_q4_1_ref(size_t n, const void *w, const void *x) {
    const uint8_t *wb = w, *xb = x;
    float sum = 0.0f;
    for (size_t k = 0; k < n / 32; k++, wb += BEE_Q4_1_BYTES, xb += BEE_Q8_1_BYTES) {
        int32_t isum = 0;
        for (int i = 0; i < 16; i++)
            isum += (wb[4 + i] & 15) * (int8_t)xb[4 + i] + (wb[4 + i] >> 4) * (int8_t)xb[4 + i + 16];
        float t = (float)isum * (bee_ld_f16(wb) * bee_ld_f16(xb));
        sum += t + bee_ld_f16(wb + 2) * bee_ld_f16(xb + 2);
    }
    return sum;
}

/* ---------------------------------------------------------------- tables */

#define REF_DOT4(name)                                                                                 \
    static void name##4(size_t n, const void *w, const void *const x[4], float out[4]) {              \
        for (int r = 0; r < 4; r++) out[r] = name(n, w, x[r]);                                          \
    }
REF_DOT4(dot_f32_ref)
REF_DOT4(dot_f16_ref)
REF_DOT4(dot_bf16_ref)
REF_DOT4(dot_bf16_bf16_ref)
REF_DOT4(dot_q8_0_ref)
REF_DOT4(dot_q4_0_ref)
REF_DOT4(dot_q4_1_ref)

static const bee_dot_kernel k_ref[] = {
    {BEE_TYPE_F32, BEE_TYPE_F32, dot_f32_ref, dot_f32_ref4, "scalar"},
    {BEE_TYPE_F16, BEE_TYPE_F32, dot_f16_ref, dot_f16_ref4, "scalar"},
    {BEE_TYPE_BF16, BEE_TYPE_F32, dot_bf16_ref, dot_bf16_ref4, "scalar"},
    {BEE_TYPE_Q8_0, BEE_TYPE_Q8_0, dot_q8_0_ref, dot_q8_0_ref4, "scalar"},
    {BEE_TYPE_Q4_0, BEE_TYPE_Q8_0, dot_q4_0_ref, dot_q4_0_ref4, "scalar"},
    {BEE_TYPE_Q4_1, BEE_TYPE_Q8_1, dot_q4_1_ref, dot_q4_1_ref4, "scalar"},
};
static const bee_dot_kernel k_ref_bf16_bf16 = {BEE_TYPE_BF16, BEE_TYPE_BF16, dot_bf16_bf16_ref, dot_bf16_bf16_ref4,
                                               "scalar"};

const bee_dot_kernel *bee_dot_kernel_ref(uint32_t weight_type) {
    for (size_t i = 0; i < sizeof k_ref / sizeof k_ref[0]; i++)
        if (k_ref[i].type == weight_type) return &k_ref[i];
    return NULL;
}

const bee_dot_kernel *bee_dot_kernel_ref_act(uint32_t weight_type, uint32_t act_type) {
    if (weight_type == BEE_TYPE_BF16 && act_type == BEE_TYPE_BF16) return &k_ref_bf16_bf16;
    const bee_dot_kernel *k = bee_dot_kernel_ref(weight_type);
    return k && k->act_type == act_type ? k : NULL;
}

const bee_dot_kernel *bee_dot_kernel_at(uint32_t weight_type, int level, unsigned ext) {
    const bee_dot_kernel *ref = bee_dot_kernel_ref(weight_type), *k = NULL;
    if (!ref || level < BEE_CPU_SCALAR || level > bee_cpu_max_level()) return NULL;
    if (level == BEE_CPU_AVX512) {
        if (ext & ~bee_cpu_max_ext()) return NULL;
        k = bee_dot_avx512_kernel(weight_type, ext);
    } else if (ext) {
        return NULL;
    }
    if (!k && level >= BEE_CPU_AVX2) k = bee_dot_avx2_kernel(weight_type);
    return k ? k : ref;
}

const bee_dot_kernel *bee_dot_kernel_get(uint32_t weight_type) {
    return bee_dot_kernel_at(weight_type, bee_cpu_level(), bee_cpu_ext());
}
