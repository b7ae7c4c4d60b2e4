/* Run-time CPU feature detection and kernel path selection.
 *
 * Levels (each implies the ones below):
 *   BEE_CPU_SCALAR  portable C
 *   BEE_CPU_AVX2    AVX2 + FMA + F16C (OS saves YMM)
 *   BEE_CPU_AVX512  AVX-512 F/BW/VL/DQ on top of AVX2 (OS saves ZMM)
 * Extensions used at the AVX512 level when present:
 *   BEE_CPU_EXT_VNNI  AVX512_VNNI (vpdpbusd) + AVX512_VBMI (vpermt2b) for the
 *                     int8 kernels (Ice Lake and later, Zen 4); without them
 *                     (e.g. Skylake-SP, Cascade Lake) the int8 kernels are the
 *                     AVX2 ones
 *   BEE_CPU_EXT_BF16  AVX512_BF16 (vdpbf16ps) for BF16 weights; changes the
 *                     BF16 kernel's activation type to BF16
 *
 * The environment variable BEE_CPU=scalar|avx2|avx512|auto caps the level
 * (read once, at the first query). A level above what the CPU has is capped
 * to the CPU's; an unknown value is ignored with a warning on stderr. */
#ifndef BEE_KERNELS_CPU_H
#define BEE_KERNELS_CPU_H

enum bee_cpu_level { BEE_CPU_SCALAR = 0, BEE_CPU_AVX2 = 1, BEE_CPU_AVX512 = 2 };

enum { BEE_CPU_EXT_VNNI = 1u, BEE_CPU_EXT_BF16 = 2u };

/* Raw CPUID bits (already masked by what the OS saves via XGETBV). */
typedef struct {
    int sse42, avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512vbmi, avx512bf16, avx512fp16;
    int avxvnni, amx_tile, amx_int8, amx_bf16;
} bee_cpu_info;

const bee_cpu_info *bee_cpu_info_get(void);
/* Highest level this CPU supports (ignores BEE_CPU). */
int bee_cpu_max_level(void);
/* Extensions (BEE_CPU_EXT_*) this CPU has at the AVX512 level (0 below it). */
unsigned bee_cpu_max_ext(void);
/* Level in use: the maximum, capped by BEE_CPU. */
int bee_cpu_level(void);
/* Extensions in use (0 unless bee_cpu_level() == BEE_CPU_AVX512). */
unsigned bee_cpu_ext(void);
/* Name of a level + extension set: "scalar", "avx2", "avx512",
 * "avx512-vnni", "avx512-bf16", "avx512-vnni-bf16". */
const char *bee_cpu_path_name(int level, unsigned ext);
/* Name of the path in use (bee_cpu_path_name(bee_cpu_level(), bee_cpu_ext())). */
const char *bee_cpu_path(void);
/* Parses a BEE_CPU value: the level it asks for, or -1 for "auto"/empty/NULL,
 * or -2 when unrecognised. */
int bee_cpu_parse(const char *s);

#endif
