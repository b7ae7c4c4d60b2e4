/* f32 prefill GEMMs of one CPM-Bee 2B layer (d 4096, attention width 2048,
 * FFN 5120, 512 tokens) through bee_linear_multi, as a multiple of the FP32
 * FMA peak probed in the same run; with OpenBLAS (BEE_HAVE_OPENBLAS) also
 * cblas_sgemm on the same shapes as an in-run ceiling, and the pair kernel
 * alone on L1-resident data (its own ceiling); where the CPU has AMX, also
 * the AMX path a prompt takes (kernels/panel_amx.c). Usage:
 *   f32_gemm_bench [threads=1] [reps=5] [tokens=512]
 * The peak is probed before and after the timed runs; the ratio uses their
 * mean. Timing: the median of reps runs of the whole layer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/panel.h"
#include "kernels/roofline.h"
#include "model/linear.h"
#include "util/types.h"

#ifdef BEE_HAVE_OPENBLAS
#include <cblas.h>
#endif

enum { D = 4096, A = 2048, F = 5120, N_MAT = 7 };

/* rows, cols of q, k, v, o, ffn in (two), ffn out */
static const size_t g_rows[N_MAT] = {A, A, A, D, F, F, D};
static const size_t g_cols[N_MAT] = {D, D, D, A, D, D, F};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *random_floats(size_t n, unsigned seed) {
    float *v = malloc(n * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
    return v;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    float *row_major[N_MAT]; /* for OpenBLAS */
    void *panel[N_MAT];
    bee_weight w[N_MAT];
    float *x[3]; /* inputs of width D, A, F */
    float *y[N_MAT];
    size_t n_tok;
} layer;

static int layer_init(layer *l, size_t n_tok) {
    memset(l, 0, sizeof *l);
    l->n_tok = n_tok;
    for (int m = 0; m < N_MAT; m++) {
        size_t rows = g_rows[m], cols = g_cols[m];
        l->row_major[m] = random_floats(rows * cols, 17u + (unsigned)m);
        l->panel[m] = malloc(bee_panel_nbytes(BEE_TYPE_F32, rows, cols));
        l->y[m] = malloc(n_tok * rows * sizeof(float));
        if (!l->row_major[m] || !l->panel[m] || !l->y[m]) return -1;
        bee_panel_pack(BEE_TYPE_F32, l->row_major[m], rows, cols, l->panel[m]);
        l->w[m] = (bee_weight){BEE_TYPE_F32, l->panel[m], rows, cols, BEE_LAYOUT_PANEL};
    }
    l->x[0] = random_floats(n_tok * D, 1);
    l->x[1] = random_floats(n_tok * A, 2);
    l->x[2] = random_floats(n_tok * F, 3);
    return l->x[0] && l->x[1] && l->x[2] ? 0 : -1;
}

static void layer_free(layer *l) {
    for (int m = 0; m < N_MAT; m++) free(l->row_major[m]), free(l->panel[m]), free(l->y[m]);
    for (int i = 0; i < 3; i++) free(l->x[i]);
}

static double layer_flops(size_t n_tok) {
    double f = 0;
    for (int m = 0; m < N_MAT; m++) f += 2.0 * (double)g_rows[m] * (double)g_cols[m] * (double)n_tok;
    return f;
}

/* The calls the forward pass makes: q, k, v together, o, the two FFN inputs
 * together, the FFN output; flags as a prompt's (BEE_LINEAR_PROMPT: the AMX
 * path where the CPU has one) or a batch's (0: the FMA kernels). */
static int layer_run(bee_pool *pool, layer *l, unsigned flags) {
    const bee_weight *qkv[3] = {&l->w[0], &l->w[1], &l->w[2]}, *o = &l->w[3], *ffn[2] = {&l->w[4], &l->w[5]},
                     *out = &l->w[6];
    float *yq[3] = {l->y[0], l->y[1], l->y[2]}, *yf[2] = {l->y[4], l->y[5]};
    const size_t ldq[3] = {A, A, A}, ldf[2] = {F, F}, ldd = D;
    const float div[3] = {1, 1, 1};
    if (bee_linear_multi_ex(pool, 3, yq, ldq, l->x[0], l->n_tok, qkv, div, flags)) return -1;
    if (bee_linear_multi_ex(pool, 1, &l->y[3], &ldd, l->x[1], l->n_tok, &o, div, flags)) return -1;
    if (bee_linear_multi_ex(pool, 2, yf, ldf, l->x[0], l->n_tok, ffn, div, flags)) return -1;
    return bee_linear_multi_ex(pool, 1, &l->y[6], &ldd, l->x[2], l->n_tok, &out, div, flags);
}

static int layer_run_bee(bee_pool *pool, layer *l) { return layer_run(pool, l, 0); }
static int layer_run_amx(bee_pool *pool, layer *l) { return layer_run(pool, l, BEE_LINEAR_PROMPT); }

#ifdef BEE_HAVE_OPENBLAS
static int layer_run_blas(bee_pool *pool, layer *l) {
    (void)pool;
    static const int in[N_MAT] = {0, 0, 0, 1, 0, 0, 2};
    for (int m = 0; m < N_MAT; m++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)l->n_tok, (int)g_rows[m], (int)g_cols[m], 1.0f,
                    l->x[in[m]], (int)g_cols[m], l->row_major[m], (int)g_cols[m], 0.0f, l->y[m], (int)g_rows[m]);
    return 0;
}
#endif

/* The pair kernel alone on data that stays in L1 (one column block of two
 * panels, one tile, over and over): what the kernel can do at best on this
 * machine, next to what it does on the layer. Seconds per call, or -1. */
static double l1_kernel_seconds(long calls) {
    bee_panel_pair_fn pair = bee_panel_pair_avx512(BEE_TYPE_F32);
    if (!pair) return -1;
    enum { K = BEE_PANEL_PAIR_KC };
    float *w = random_floats(2 * 16 * K, 5), *x = random_floats(BEE_PANEL_TILE * K, 6);
    float out[2][BEE_PANEL_TILE * 16];
    bee_panel_act a;
    double dt = -1;
    if (w && x && bee_panel_act_init(&a, BEE_TYPE_F32, BEE_PANEL_TILE, K, 0) == 0) {
        bee_panel_act_fill(&a, x, 0, BEE_PANEL_TILE);
        double t0 = now_s();
        for (long i = 0; i < calls; i++) pair(w, w + 16 * K, &a, 0, 0, K, out[0], out[1], NULL, NULL);
        dt = (now_s() - t0) / (double)calls;
        bee_panel_act_free(&a);
    }
    free(w), free(x);
    return dt;
}

static double time_median(int (*run)(bee_pool *, layer *), bee_pool *pool, layer *l, int reps) {
    double t[64];
    if (reps > 64) reps = 64;
    if (run(pool, l)) return -1; /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (run(pool, l)) return -1;
        t[r] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 5;
    size_t n_tok = argc > 3 ? (size_t)atol(argv[3]) : 512;
    if (threads < 1 || reps < 1 || n_tok < 1) return fprintf(stderr, "usage: f32_gemm_bench [threads] [reps] [tokens]\n"), 2;
    double t_l1 = l1_kernel_seconds(100000); /* before the pool's workers exist */
    bee_pool *pool = threads > 1 ? bee_pool_init(threads) : NULL;
    layer l;
    if (layer_init(&l, n_tok)) return fprintf(stderr, "out of memory\n"), 1;
    double flops = layer_flops(n_tok);
    double peak0 = bee_roofline_fma_peak(pool, 5);
    double t_bee = time_median(layer_run_bee, pool, &l, reps);
    double t_amx = bee_panel_amx() ? time_median(layer_run_amx, pool, &l, reps) : -1;
#ifdef BEE_HAVE_OPENBLAS
    openblas_set_num_threads(threads);
    double t_blas = time_median(layer_run_blas, pool, &l, reps);
#endif
    double peak = 0.5 * (peak0 + bee_roofline_fma_peak(pool, 5));
    printf("threads %d, %zu tokens, FMA peak %.0f GFLOP/s (%.0f before, %.0f after)\n", threads, n_tok, peak / 1e9,
           peak0 / 1e9, (2 * peak - peak0) / 1e9);
    printf("bee      %8.1f ms  %7.1f GFLOP/s  %.3fx peak\n", 1e3 * t_bee, flops / t_bee / 1e9, flops / t_bee / peak);
    if (t_amx > 0)
        printf("bee AMX  %8.1f ms  %7.1f GFLOP/s  %.3fx peak (f32 accuracy: the three-way bf16 split)\n", 1e3 * t_amx,
               flops / t_amx / 1e9, flops / t_amx / peak);
    if (t_l1 > 0) { /* one thread: compare with one thread's share of the peak */
        double f1 = 2.0 * 32 * BEE_PANEL_TILE * BEE_PANEL_PAIR_KC / t_l1;
        printf("bee kernel in L1, one thread: %7.1f GFLOP/s  %.3fx the peak of one thread\n", f1 / 1e9,
               f1 / (peak / threads));
    }
#ifdef BEE_HAVE_OPENBLAS
    printf("openblas %8.1f ms  %7.1f GFLOP/s  %.3fx peak\n", 1e3 * t_blas, flops / t_blas / 1e9, flops / t_blas / peak);
#endif
    layer_free(&l);
    bee_pool_free(pool);
    return 0;
}
