#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "kernels/roofline.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/panel.h"
#include "util/error.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define ROOF_X86 1
#include <immintrin.h>
#else
#define ROOF_X86 0
#endif

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

#define DEFAULT_REPS 5
#define FLOOR_BYTES ((size_t)1 << 30)
#define MIN_BYTES ((size_t)1 << 20)
#define BLOCK 256          /* bytes summed per loop iteration */
#define CHAINS 12          /* independent accumulators in the peak loops */
#define PEAK_ITERS 4000000 /* loop iterations per thread per run */
#define SLOT 8             /* uint64 per thread result slot: one cache line */

/* ---------------------------------------------------------------- ISA choice */

static int cpu_isa(void) {
#if ROOF_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ISA_AVX2;
#endif
    return ISA_SCALAR;
}

/* The CPU's level, capped by BEE_CPU (read at every call: cheap, and tests
 * can change it). */
static int roof_isa(void) {
    int isa = cpu_isa();
    const char *e = getenv("BEE_CPU");
    if (e) {
        int cap = !strcmp(e, "scalar") ? ISA_SCALAR : !strcmp(e, "avx2") ? ISA_AVX2 : ISA_AVX512;
        if (cap < isa) isa = cap;
    }
    return isa;
}

static int have_vnni(int isa) {
#if ROOF_X86
    return isa == ISA_AVX512 && __builtin_cpu_supports("avx512vnni");
#else
    (void)isa;
    return 0;
#endif
}

const char *bee_roofline_isa(void) {
    static const char *const names[] = {"scalar", "avx2", "avx512"};
    return names[roof_isa()];
}

/* ---------------------------------------------------------------- helpers */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Keeps results alive so the measured loops are not optimised away. */
static volatile uint64_t g_sink;

/* Runs fn once untimed, then reps timed times; returns the median of
 * work / seconds, or -1 when out of memory. With nth_used, work is per thread
 * and is multiplied by the thread count the run had (fn sets it: a nested
 * call runs on one thread). */
static double timed_median(bee_pool *p, void (*fn)(void *, int, int), void *ctx, double work, const int *nth_used,
                           int reps) {
    if (reps <= 0) reps = DEFAULT_REPS;
    double *rate = malloc((size_t)reps * sizeof *rate);
    if (!rate) {
        bee_fail("out of memory");
        return -1.0;
    }
    bee_pool_run(p, fn, ctx); /* warm-up: caches, TLB, frequency */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        bee_pool_run(p, fn, ctx);
        double dt = now_s() - t0;
        rate[r] = work * (nth_used ? *nth_used : 1) / (dt > 1e-9 ? dt : 1e-9);
    }
    double m = median(rate, reps);
    free(rate);
    return m;
}

/* ---------------------------------------------------------------- read bandwidth */

#if ROOF_X86
__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint8_t *buf, size_t blocks) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *q = buf + i * BLOCK;
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)q));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(q + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(q + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(q + 192)));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    uint64_t v[8], s = 0;
    _mm512_storeu_si512((void *)v, a0);
    for (int k = 0; k < 8; k++) s += v[k]; /* wraps: unsigned */
    return s;
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint8_t *buf, size_t blocks) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < blocks; i++) {
        const __m256i *q = (const __m256i *)(const void *)(buf + i * BLOCK);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(q));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(q + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(q + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(q + 3));
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(q + 4));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(q + 5));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(q + 6));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(q + 7));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t v[4];
    _mm256_storeu_si256((__m256i *)(void *)v, a0);
    return v[0] + v[1] + v[2] + v[3];
}
#endif

static uint64_t sum_scalar(const uint8_t *buf, size_t blocks) {
    const uint64_t *w = (const uint64_t *)(const void *)buf;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < blocks * (BLOCK / 8); i += 4) {
        s0 += w[i];
        s1 += w[i + 1];
        s2 += w[i + 2];
        s3 += w[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

typedef struct {
    uint8_t *buf;
    size_t blocks;
    int isa;
    uint64_t *out; /* SLOT per thread */
} bw_job;

/* Thread ith's share of the blocks: the same split for filling and reading,
 * so each thread reads the pages it faulted in. */
static void bw_share(const bw_job *j, int ith, int nth, size_t *b0, size_t *b1) {
    *b0 = j->blocks * (size_t)ith / (size_t)nth;
    *b1 = j->blocks * (size_t)(ith + 1) / (size_t)nth;
}

static void bw_fill(void *ctx, int ith, int nth) {
    const bw_job *j = ctx;
    size_t b0, b1;
    bw_share(j, ith, nth, &b0, &b1);
    uint64_t *w = (uint64_t *)(void *)(j->buf + b0 * BLOCK);
    for (size_t i = 0, n = (b1 - b0) * (BLOCK / 8); i < n; i++) w[i] = (uint64_t)(b0 * (BLOCK / 8) + i);
}

static void bw_read(void *ctx, int ith, int nth) {
    const bw_job *j = ctx;
    size_t b0, b1;
    bw_share(j, ith, nth, &b0, &b1);
    const uint8_t *q = j->buf + b0 * BLOCK;
    uint64_t s;
#if ROOF_X86
    if (j->isa == ISA_AVX512)
        s = sum_avx512(q, b1 - b0);
    else if (j->isa == ISA_AVX2)
        s = sum_avx2(q, b1 - b0);
    else
#endif
        s = sum_scalar(q, b1 - b0);
    j->out[(size_t)ith * SLOT] += s;
}

static void *buf_alloc(size_t bytes, int *mapped) {
#if defined(__linux__)
    void *b = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
        madvise(b, bytes, MADV_HUGEPAGE); /* fewer faults and TLB misses; advisory */
#endif
        *mapped = 1;
        return b;
    }
#endif
    void *m = NULL;
    *mapped = 0;
    return posix_memalign(&m, 4096, bytes) == 0 ? m : NULL;
}

static void buf_free(void *b, size_t bytes, int mapped) {
#if defined(__linux__)
    if (mapped) {
        munmap(b, bytes);
        return;
    }
#endif
    (void)bytes;
    (void)mapped;
    free(b);
}

size_t bee_roofline_probe_bytes(void) {
    size_t bytes = FLOOR_BYTES;
#if defined(_SC_LEVEL3_CACHE_SIZE) && defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE), pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (llc > 0 && (size_t)llc * 4 > bytes) bytes = (size_t)llc * 4;
    /* a quarter of the RAM at most, so the probe never pushes the model out */
    if (pages > 0 && page > 0 && bytes > (size_t)pages / 4 * (size_t)page) bytes = (size_t)pages / 4 * (size_t)page;
#endif
    return bytes < MIN_BYTES ? MIN_BYTES : bytes;
}

double bee_roofline_read_bw(bee_pool *p, size_t bytes, int reps) {
    if (bytes == 0) bytes = bee_roofline_probe_bytes();
    if (bytes < MIN_BYTES) bytes = MIN_BYTES;
    bytes -= bytes % BLOCK;
    int nth = bee_pool_size(p), mapped = 0;
    bw_job j = {NULL, bytes / BLOCK, roof_isa(), calloc((size_t)nth * SLOT, sizeof(uint64_t))};
    j.buf = buf_alloc(bytes, &mapped);
    if (!j.buf || !j.out) {
        if (j.buf) buf_free(j.buf, bytes, mapped);
        free(j.out);
        bee_fail("out of memory (%zu byte bandwidth buffer)", bytes);
        return -1.0;
    }
    bee_pool_run(p, bw_fill, &j); /* page faults happen here, untimed */
    double r = timed_median(p, bw_read, &j, (double)(j.blocks * BLOCK), NULL, reps);
    uint64_t s = 0;
    for (int i = 0; i < nth; i++) s += j.out[(size_t)i * SLOT];
    g_sink = s;
    buf_free(j.buf, bytes, mapped);
    free(j.out);
    return r;
}

/* ---------------------------------------------------------------- FMA peak */

/* Inputs read through volatiles so nothing is folded at compile time; the
 * chains converge to b / (1 - a) = 1 with no overflow or denormals. */
static volatile float g_fa = 0.999999f, g_fb = 1e-6f;
static volatile int g_ia = 0x01010101, g_ib = 0x01010101, g_ic = 0;

#if ROOF_X86
__attribute__((target("avx512f"))) static uint64_t fma_avx512(long iters) {
    const __m512 a = _mm512_set1_ps(g_fa), b = _mm512_set1_ps(g_fb);
    __m512 c[CHAINS];
    for (int k = 0; k < CHAINS; k++) c[k] = _mm512_set1_ps(g_fb * (float)(k + 1));
    for (long i = 0; i < iters; i++) {
        c[0] = _mm512_fmadd_ps(c[0], a, b);
        c[1] = _mm512_fmadd_ps(c[1], a, b);
        c[2] = _mm512_fmadd_ps(c[2], a, b);
        c[3] = _mm512_fmadd_ps(c[3], a, b);
        c[4] = _mm512_fmadd_ps(c[4], a, b);
        c[5] = _mm512_fmadd_ps(c[5], a, b);
        c[6] = _mm512_fmadd_ps(c[6], a, b);
        c[7] = _mm512_fmadd_ps(c[7], a, b);
        c[8] = _mm512_fmadd_ps(c[8], a, b);
        c[9] = _mm512_fmadd_ps(c[9], a, b);
        c[10] = _mm512_fmadd_ps(c[10], a, b);
        c[11] = _mm512_fmadd_ps(c[11], a, b);
    }
    __m512 s = c[0];
    for (int k = 1; k < CHAINS; k++) s = _mm512_add_ps(s, c[k]);
    return (uint64_t)_mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static uint64_t fma_avx2(long iters) {
    const __m256 a = _mm256_set1_ps(g_fa), b = _mm256_set1_ps(g_fb);
    __m256 c[CHAINS];
    for (int k = 0; k < CHAINS; k++) c[k] = _mm256_set1_ps(g_fb * (float)(k + 1));
    for (long i = 0; i < iters; i++) {
        c[0] = _mm256_fmadd_ps(c[0], a, b);
        c[1] = _mm256_fmadd_ps(c[1], a, b);
        c[2] = _mm256_fmadd_ps(c[2], a, b);
        c[3] = _mm256_fmadd_ps(c[3], a, b);
        c[4] = _mm256_fmadd_ps(c[4], a, b);
        c[5] = _mm256_fmadd_ps(c[5], a, b);
        c[6] = _mm256_fmadd_ps(c[6], a, b);
        c[7] = _mm256_fmadd_ps(c[7], a, b);
        c[8] = _mm256_fmadd_ps(c[8], a, b);
        c[9] = _mm256_fmadd_ps(c[9], a, b);
        c[10] = _mm256_fmadd_ps(c[10], a, b);
        c[11] = _mm256_fmadd_ps(c[11], a, b);
    }
    __m256 s = c[0];
    for (int k = 1; k < CHAINS; k++) s = _mm256_add_ps(s, c[k]);
    float v[8];
    _mm256_storeu_ps(v, s);
    return (uint64_t)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
}

/* vpdpbusd through inline asm: with the intrinsic, gcc 12 copies every
 * accumulator twice per iteration (24 extra register moves per 12 dot
 * products) and measures half the machine's rate. */
#define DPBUSD(acc, a, b) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))
__attribute__((target("avx512f,avx512vnni"))) static uint64_t vnni_avx512(long iters) {
    const __m512i a = _mm512_set1_epi32(g_ia), b = _mm512_set1_epi32(g_ib);
    const int c = g_ic;
    __m512i c0 = _mm512_set1_epi32(c), c1 = _mm512_set1_epi32(c + 1), c2 = _mm512_set1_epi32(c + 2);
    __m512i c3 = _mm512_set1_epi32(c + 3), c4 = _mm512_set1_epi32(c + 4), c5 = _mm512_set1_epi32(c + 5);
    __m512i c6 = _mm512_set1_epi32(c + 6), c7 = _mm512_set1_epi32(c + 7), c8 = _mm512_set1_epi32(c + 8);
    __m512i c9 = _mm512_set1_epi32(c + 9), c10 = _mm512_set1_epi32(c + 10), c11 = _mm512_set1_epi32(c + 11);
    for (long i = 0; i < iters; i++) {
        DPBUSD(c0, a, b);
        DPBUSD(c1, a, b);
        DPBUSD(c2, a, b);
        DPBUSD(c3, a, b);
        DPBUSD(c4, a, b);
        DPBUSD(c5, a, b);
        DPBUSD(c6, a, b);
        DPBUSD(c7, a, b);
        DPBUSD(c8, a, b);
        DPBUSD(c9, a, b);
        DPBUSD(c10, a, b);
        DPBUSD(c11, a, b);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
    uint32_t v[16], t = 0;
    _mm512_storeu_si512((void *)v, s);
    for (int k = 0; k < 16; k++) t += v[k]; /* wraps: unsigned */
    return t;
}
#endif

static uint64_t fma_scalar(long iters) {
    const float a = g_fa, b = g_fb;
    float c0 = b, c1 = 2 * b, c2 = 3 * b, c3 = 4 * b, c4 = 5 * b, c5 = 6 * b;
    float c6 = 7 * b, c7 = 8 * b, c8 = 9 * b, c9 = 10 * b, c10 = 11 * b, c11 = 12 * b;
    for (long i = 0; i < iters; i++) {
        c0 = c0 * a + b;
        c1 = c1 * a + b;
        c2 = c2 * a + b;
        c3 = c3 * a + b;
        c4 = c4 * a + b;
        c5 = c5 * a + b;
        c6 = c6 * a + b;
        c7 = c7 * a + b;
        c8 = c8 * a + b;
        c9 = c9 * a + b;
        c10 = c10 * a + b;
        c11 = c11 * a + b;
    }
    return (uint64_t)(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
}

#if ROOF_X86 && defined(__linux__)
/* The AMX BF16 tile unit: 4 independent accumulator tiles (16 x 16 f32)
 * over operand tiles (16 x 32 bf16) held in registers, 4 products per
 * iteration. The caller has checked bee_panel_amx() (the tile state). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_tile_config;

__attribute__((target("amx-tile,amx-bf16"))) static uint64_t amx_bf16(long iters) {
    amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.rows[i] = 16, cfg.colsb[i] = 64;
    _tile_loadconfig(&cfg);
    uint16_t small[16 * 32]; /* 2^-7 each: the sums stay far from overflow */
    for (int i = 0; i < 16 * 32; i++) small[i] = 0x3c00;
    float out[16 * 16];
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, small, 64);
    _tile_loadd(5, small, 64);
    _tile_loadd(6, small, 64);
    _tile_loadd(7, small, 64);
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return (uint64_t)out[0] + (uint64_t)g_ia;
}
#define HAVE_AMX_PROBE 1
#endif

/* AMX iterations take 4 x 16 cycles: fewer of them per run. */
#define AMX_ITERS (PEAK_ITERS / 16)

enum { PEAK_FMA, PEAK_VNNI, PEAK_AMX };

typedef struct {
    int isa, kind;
    uint64_t *out; /* SLOT per thread */
    int nth_used;  /* set by thread 0 */
} peak_job;

static void peak_run(void *ctx, int ith, int nth) {
    peak_job *j = ctx;
    uint64_t s;
#ifdef HAVE_AMX_PROBE
    if (j->kind == PEAK_AMX)
        s = amx_bf16(AMX_ITERS);
    else
#endif
#if ROOF_X86
    if (j->kind == PEAK_VNNI)
        s = vnni_avx512(PEAK_ITERS);
    else if (j->isa == ISA_AVX512)
        s = fma_avx512(PEAK_ITERS);
    else if (j->isa == ISA_AVX2)
        s = fma_avx2(PEAK_ITERS);
    else
#endif
        s = fma_scalar(PEAK_ITERS);
    j->out[(size_t)ith * SLOT] += s;
    if (ith == 0) j->nth_used = nth;
}

static double peak(bee_pool *p, int isa, int kind, double ops_per_run, int reps) {
    int nth = bee_pool_size(p);
    peak_job j = {isa, kind, calloc((size_t)nth * SLOT, sizeof(uint64_t)), 1};
    if (!j.out) {
        bee_fail("out of memory");
        return -1.0;
    }
    double r = timed_median(p, peak_run, &j, ops_per_run, &j.nth_used, reps);
    uint64_t s = 0;
    for (int i = 0; i < nth; i++) s += j.out[(size_t)i * SLOT];
    g_sink = s;
    free(j.out);
    return r;
}

double bee_roofline_fma_peak(bee_pool *p, int reps) {
    int isa = roof_isa();
    /* flops per loop iteration: CHAINS FMAs of 16 / 8 lanes, 2 flops a lane */
    double per_iter = isa == ISA_AVX512 ? CHAINS * 16 * 2 : isa == ISA_AVX2 ? CHAINS * 8 * 2 : CHAINS * 2;
    return peak(p, isa, PEAK_FMA, per_iter * PEAK_ITERS, reps);
}

double bee_roofline_int8_peak(bee_pool *p, int reps) {
    int isa = roof_isa();
    if (!have_vnni(isa)) return 0.0;
    /* vpdpbusd zmm: 64 u8 x s8 multiply-adds = 128 ops */
    return peak(p, isa, PEAK_VNNI, (double)CHAINS * 64 * 2 * PEAK_ITERS, reps);
}

double bee_roofline_amx_peak(bee_pool *p, int reps) {
#ifdef HAVE_AMX_PROBE
    if (bee_panel_amx()) /* 4 products of 16 x 16 x 32 multiply-adds per iteration */
        return peak(p, roof_isa(), PEAK_AMX, 4.0 * 16 * 16 * 32 * 2 * AMX_ITERS, reps);
#endif
    (void)p, (void)reps;
    return 0.0;
}
