/* Roofline of this machine, measured: memory read bandwidth and the FP32 FMA
 * and int8 dot-product peaks, so `bee bench` can express its results as a
 * fraction of what the hardware can do.
 *
 * Each figure is the median of `reps` timed runs (reps <= 0 means 5) after
 * one untimed warm-up run; every thread of the pool works in each run (a NULL
 * pool means one thread). The instruction set is picked at run time (AVX-512,
 * else AVX2 + FMA, else portable C), capped by the environment variable
 * BEE_CPU=scalar|avx2|avx512|auto like the kernels. The work per thread is
 * fixed; the three measurements together take well under 3 s on 2 cores with
 * the default sizes. */
#ifndef BEE_KERNELS_ROOFLINE_H
#define BEE_KERNELS_ROOFLINE_H

#include <stddef.h>

#include "util/threadpool.h"

/* Read bandwidth in bytes/s: a buffer of `bytes` (0: bee_roofline_probe_bytes();
 * values below 1 MiB are raised to 1 MiB) is filled first (page faults are
 * not timed), then each thread sums its contiguous share with vector loads.
 * -1 (with bee_fail's message) when the buffer cannot be allocated. */
double bee_roofline_read_bw(bee_pool *p, size_t bytes, int reps);
/* The default probe size: 4 x the last-level cache, at least 1 GiB, at most a
 * quarter of the RAM. Why 4x: a buffer that fits the LLC (480 MiB on the
 * development host) is read from it, not from DRAM, when the neighbours are
 * quiet, and a DRAM roofline that is really an LLC one makes decode look
 * slow (docs/PERFORMANCE.md). */
size_t bee_roofline_probe_bytes(void);
/* FP32 FLOP/s peak: 12 independent FMA chains per thread in vector registers,
 * 2 flops per lane per FMA (the portable fallback counts a multiply and an
 * add). */
double bee_roofline_fma_peak(bee_pool *p, int reps);
/* int8 multiply-add peak in ops/s with AVX512-VNNI (vpdpbusd, 64 multiply-adds
 * = 128 ops per instruction, 12 independent chains); 0 when the CPU (or
 * BEE_CPU) does not allow it. */
double bee_roofline_int8_peak(bee_pool *p, int reps);
/* AMX BF16 tile peak in FLOP/s (TDPBF16PS on 4 accumulator tiles held in
 * registers); 0 without AMX (bee_panel_amx). The AMX path of f32 prompts
 * needs 6 such products per f32 one, so its ceiling is this / 6. */
double bee_roofline_amx_peak(bee_pool *p, int reps);
/* The instruction set the measurements use now: "avx512", "avx2" or
 * "scalar". */
const char *bee_roofline_isa(void);

#endif
