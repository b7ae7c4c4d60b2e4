#include "kernels/cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define BEE_X86 1
#endif

static bee_cpu_info g_info;
static int g_max_level, g_level;
static unsigned g_max_ext;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

#ifdef BEE_X86
static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(bee_cpu_info *c) {
    unsigned a, b, cx, d;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return;
    unsigned max_leaf = a;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return;
    int osxsave = (cx >> 27) & 1;
    c->sse42 = (cx >> 20) & 1;
    int avx = (cx >> 28) & 1, fma = (cx >> 12) & 1, f16c = (cx >> 29) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;             /* SSE + AVX state */
    int os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    int os_amx = (xcr0 & 0x60000) == 0x60000;     /* XTILECFG + XTILEDATA */
    c->avx = avx && os_ymm;
    c->fma = fma && os_ymm;
    c->f16c = f16c && os_ymm;
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, cx, d);
    c->avx2 = ((b >> 5) & 1) && os_ymm;
    c->avx512f = ((b >> 16) & 1) && os_zmm;
    c->avx512dq = ((b >> 17) & 1) && os_zmm;
    c->avx512bw = ((b >> 30) & 1) && os_zmm;
    c->avx512vl = ((b >> 31) & 1) && os_zmm;
    c->avx512vbmi = ((cx >> 1) & 1) && os_zmm;
    c->avx512vnni = ((cx >> 11) & 1) && os_zmm;
    c->avx512fp16 = ((d >> 23) & 1) && os_zmm;
    c->amx_bf16 = ((d >> 22) & 1) && os_amx;
    c->amx_tile = ((d >> 24) & 1) && os_amx;
    c->amx_int8 = ((d >> 25) & 1) && os_amx;
    unsigned sub = a;
    if (sub >= 1) {
        __cpuid_count(7, 1, a, b, cx, d);
        c->avxvnni = ((a >> 4) & 1) && os_ymm;
        c->avx512bf16 = ((a >> 5) & 1) && os_zmm;
    }
}
#else
static void detect(bee_cpu_info *c) { (void)c; }
#endif

int bee_cpu_parse(const char *s) {
    if (!s || !*s || !strcasecmp(s, "auto")) return -1;
    if (!strcasecmp(s, "scalar")) return BEE_CPU_SCALAR;
    if (!strcasecmp(s, "avx2")) return BEE_CPU_AVX2;
    if (!strcasecmp(s, "avx512")) return BEE_CPU_AVX512;
    return -2;
}

static void init(void) {
    bee_cpu_info *c = &g_info;
    detect(c);
    g_max_level = BEE_CPU_SCALAR;
    if (c->avx2 && c->fma && c->f16c) g_max_level = BEE_CPU_AVX2;
    if (g_max_level == BEE_CPU_AVX2 && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq)
        g_max_level = BEE_CPU_AVX512;
    g_max_ext = 0;
    if (g_max_level == BEE_CPU_AVX512) {
        if (c->avx512vnni && c->avx512vbmi) g_max_ext |= BEE_CPU_EXT_VNNI;
        if (c->avx512bf16) g_max_ext |= BEE_CPU_EXT_BF16;
    }
    g_level = g_max_level;
    const char *env = getenv("BEE_CPU");
    int want = bee_cpu_parse(env);
    if (want == -2)
        fprintf(stderr, "bee: BEE_CPU='%s' is not one of scalar, avx2, avx512, auto; ignored\n", env);
    else if (want >= 0 && want < g_level)
        g_level = want;
}

const bee_cpu_info *bee_cpu_info_get(void) {
    pthread_once(&g_once, init);
    return &g_info;
}

int bee_cpu_max_level(void) {
    pthread_once(&g_once, init);
    return g_max_level;
}

unsigned bee_cpu_max_ext(void) {
    pthread_once(&g_once, init);
    return g_max_ext;
}

int bee_cpu_level(void) {
    pthread_once(&g_once, init);
    return g_level;
}

unsigned bee_cpu_ext(void) {
    pthread_once(&g_once, init);
    return g_level == BEE_CPU_AVX512 ? g_max_ext : 0;
}

const char *bee_cpu_path_name(int level, unsigned ext) {
    if (level <= BEE_CPU_SCALAR) return "scalar";
    if (level == BEE_CPU_AVX2) return "avx2";
    switch (ext & (BEE_CPU_EXT_VNNI | BEE_CPU_EXT_BF16)) {
    case BEE_CPU_EXT_VNNI: return "avx512-vnni";
    case BEE_CPU_EXT_BF16: return "avx512-bf16";
    case BEE_CPU_EXT_VNNI | BEE_CPU_EXT_BF16: return "avx512-vnni-bf16";
    default: return "avx512";
    }
}

const char *bee_cpu_path(void) { return bee_cpu_path_name(bee_cpu_level(), bee_cpu_ext()); }
