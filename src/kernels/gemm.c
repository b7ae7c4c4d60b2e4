/* Blocked GEMM driver (see gemm.h). Each job owns a range of output rows and
 * a group of column panels; for every K block it packs its B panels (kept in
 * L2) and, one register tile of rows at a time, the matching A values (kept
 * in L1), then runs the micro-kernel over the group's panels. */
#include "kernels/gemm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/gemm_impl.h"

#define GROUP_COLS 256 /* columns of B packed per K block (L2 budget) */

/* ================================================================ reference */

static float at_a(const bee_gemm_args *g, size_t m, size_t k) { return g->A[m * g->rsa + k * g->csa]; }
static float at_b(const bee_gemm_args *g, size_t k, size_t n) { return g->B[k * g->rsb + n * g->csb]; }

void bee_gemm_ref(const bee_gemm_args *g) {
    for (size_t m = 0; m < g->M; m++)
        for (size_t n = 0; n < g->N; n++) {
            float *c = g->C + m * g->ldc + n;
            float s = g->accumulate ? *c : 0.0f;
            for (size_t k0 = 0; k0 < g->K; k0 += BEE_GEMM_KC) {
                size_t k1 = k0 + BEE_GEMM_KC < g->K ? k0 + BEE_GEMM_KC : g->K;
                float acc = 0.0f;
                for (size_t k = k0; k < k1; k++) acc = fmaf(at_a(g, m, k), at_b(g, k, n), acc);
                s = (k0 == 0 && !g->accumulate) ? acc : s + acc;
            }
            *c = g->div != 1.0f ? s / g->div : s;
        }
}

/* ================================================================ scalar micro-kernel */

enum { SC_MR = 4, SC_NR = 16 };

static void kernel_scalar(size_t kc, const float *Ap, const float *Bp, float *C, size_t ldc, int mr, int nr, int load,
                          float div) {
    float acc[SC_MR][SC_NR];
    memset(acc, 0, sizeof acc);
    for (size_t k = 0; k < kc; k++, Ap += SC_MR, Bp += SC_NR)
        for (int r = 0; r < SC_MR; r++)
            for (int j = 0; j < SC_NR; j++) acc[r][j] = fmaf(Ap[r], Bp[j], acc[r][j]);
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < nr; j++) {
            float v = load ? C[(size_t)r * ldc + j] + acc[r][j] : acc[r][j];
            C[(size_t)r * ldc + j] = div != 1.0f ? v / div : v;
        }
}

static const bee_gemm_kernel k_scalar = {SC_MR, SC_NR, kernel_scalar};

static const bee_gemm_kernel *kernel_for(int level) {
    const bee_gemm_kernel *k = NULL;
    if (level >= BEE_CPU_AVX512) k = bee_gemm_kernel_avx512();
    if (!k && level >= BEE_CPU_AVX2) k = bee_gemm_kernel_avx2();
    return k ? k : &k_scalar;
}

/* ================================================================ packing */

/* Ap[k * MR + r] = A(m0 + r, k0 + k), rows mr .. MR-1 zero. */
static void pack_a(const bee_gemm_args *g, size_t m0, int mr, size_t k0, size_t kc, int MR, float *Ap) {
    if (mr < MR) memset(Ap, 0, kc * (size_t)MR * sizeof(float));
    if (g->csa == 1) {
        for (int r = 0; r < mr; r++) {
            const float *src = g->A + (m0 + (size_t)r) * g->rsa + k0;
            for (size_t k = 0; k < kc; k++) Ap[k * (size_t)MR + (size_t)r] = src[k];
        }
        return;
    }
    for (size_t k = 0; k < kc; k++) {
        const float *src = g->A + m0 * g->rsa + (k0 + k) * g->csa;
        for (int r = 0; r < mr; r++) Ap[k * (size_t)MR + (size_t)r] = src[(size_t)r * g->rsa];
    }
}

/* Panel p of the group: Bp[p][k * NR + j] = B(k0 + k, n0 + p NR + j), zero past N. */
static void pack_b(const bee_gemm_args *g, size_t n0, size_t n_panels, size_t k0, size_t kc, int NR, float *Bp) {
    for (size_t p = 0; p < n_panels; p++) {
        float *dst = Bp + p * kc * (size_t)NR;
        size_t nb = n0 + p * (size_t)NR, nr = g->N - nb < (size_t)NR ? g->N - nb : (size_t)NR;
        if (nr < (size_t)NR) memset(dst, 0, kc * (size_t)NR * sizeof(float));
        if (g->csb == 1) {
            for (size_t k = 0; k < kc; k++) memcpy(dst + k * (size_t)NR, g->B + (k0 + k) * g->rsb + nb, nr * sizeof(float));
            continue;
        }
        for (size_t j = 0; j < nr; j++) {
            const float *src = g->B + k0 * g->rsb + (nb + j) * g->csb;
            for (size_t k = 0; k < kc; k++) dst[k * (size_t)NR + j] = src[k * g->rsb];
        }
    }
}

/* ================================================================ driver */

typedef struct {
    const bee_gemm_args *g;
    const bee_gemm_kernel *k;
    size_t n_panels, group, n_groups, m_chunk, n_mchunks;
    float *buf;                   /* per thread: packed A tile, then packed B group */
    size_t a_floats, per_thread;
} gemm_job;

static void run_block(const gemm_job *j, size_t mi, size_t gi, float *Ap, float *Bp) {
    const bee_gemm_args *g = j->g;
    size_t MR = (size_t)j->k->mr, NR = (size_t)j->k->nr;
    size_t m_begin = mi * j->m_chunk, m_end = m_begin + j->m_chunk < g->M ? m_begin + j->m_chunk : g->M;
    size_t p_begin = gi * j->group, p_end = p_begin + j->group < j->n_panels ? p_begin + j->group : j->n_panels;
    for (size_t k0 = 0; k0 < g->K; k0 += BEE_GEMM_KC) {
        size_t kc = g->K - k0 < BEE_GEMM_KC ? g->K - k0 : BEE_GEMM_KC;
        int load = k0 > 0 || g->accumulate;
        float div = k0 + kc >= g->K ? g->div : 1.0f;
        pack_b(g, p_begin * NR, p_end - p_begin, k0, kc, (int)NR, Bp);
        for (size_t m0 = m_begin; m0 < m_end; m0 += MR) {
            int mr = (int)(m_end - m0 < MR ? m_end - m0 : MR);
            pack_a(g, m0, mr, k0, kc, (int)MR, Ap);
            for (size_t p = p_begin; p < p_end; p++) {
                size_t n = p * NR;
                int nr = (int)(g->N - n < NR ? g->N - n : NR);
                j->k->fn(kc, Ap, Bp + (p - p_begin) * kc * NR, g->C + m0 * g->ldc + n, g->ldc, mr, nr, load, div);
            }
        }
    }
}

static void job_range(void *ctx, size_t begin, size_t end, int ith) {
    gemm_job *j = ctx;
    float *Ap = j->buf + (size_t)ith * j->per_thread, *Bp = Ap + j->a_floats;
    for (size_t b = begin; b < end; b++) run_block(j, b / j->n_groups, b % j->n_groups, Ap, Bp);
}

/* C = accumulate ? C : 0, divided: the empty sum. */
static void gemm_empty_k(const bee_gemm_args *g) {
    for (size_t m = 0; m < g->M; m++)
        for (size_t n = 0; n < g->N; n++) {
            float *c = g->C + m * g->ldc + n;
            float s = g->accumulate ? *c : 0.0f;
            *c = g->div != 1.0f ? s / g->div : s;
        }
}

void bee_gemm_at(bee_pool *p, const bee_gemm_args *g, int level) {
    if (g->M == 0 || g->N == 0) return;
    if (g->K == 0) {
        gemm_empty_k(g);
        return;
    }
    gemm_job j = {.g = g, .k = kernel_for(level)};
    size_t NR = (size_t)j.k->nr, MR = (size_t)j.k->mr, nth = (size_t)bee_pool_size(p);
    j.n_panels = (g->N + NR - 1) / NR;
    j.group = GROUP_COLS / NR;
    size_t even = (j.n_panels + nth - 1) / nth;
    if (even < j.group) j.group = even;
    j.n_groups = (j.n_panels + j.group - 1) / j.group;
    j.n_mchunks = 1;
    if (j.n_groups < 2 * nth) {
        size_t want = (2 * nth + j.n_groups - 1) / j.n_groups, most = (g->M + 4 * MR - 1) / (4 * MR);
        j.n_mchunks = want < most ? want : most ? most : 1;
    }
    j.m_chunk = ((g->M + j.n_mchunks - 1) / j.n_mchunks + MR - 1) / MR * MR;
    j.n_mchunks = (g->M + j.m_chunk - 1) / j.m_chunk;
    size_t kc = g->K < BEE_GEMM_KC ? g->K : BEE_GEMM_KC;
    j.a_floats = (kc * MR + 15) / 16 * 16; /* keeps B 64-byte aligned */
    j.per_thread = j.a_floats + (kc * j.group * NR + 15) / 16 * 16;
    j.buf = aligned_alloc(64, nth * j.per_thread * sizeof(float));
    if (!j.buf) { /* out of memory: the slow path needs none and rounds the same */
        bee_gemm_ref(g);
        return;
    }
    bee_pool_for(p, j.n_mchunks * j.n_groups, 1, job_range, &j);
    free(j.buf);
}

void bee_gemm(bee_pool *p, const bee_gemm_args *g) { bee_gemm_at(p, g, bee_cpu_level()); }
