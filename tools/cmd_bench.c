/* bee bench: prefill (pp) and decode (tg) speed in the spirit of llama-bench,
 * each figure also given as a fraction of this machine's roofline, measured
 * in the same run (memory read bandwidth for decode, FP32 FMA peak for
 * prefill), because the shared machines we run on are too noisy for
 * absolute numbers to mean much. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "kernels/cpu.h"
#include "kernels/panel.h"
#include "kernels/roofline.h"
#include "model/model.h"
#include "util/error.h"
#include "util/types.h"

/* ================================================================ cost model */

/* Bytes and flops of the model that do not depend on the context. */
typedef struct {
    double lin_bytes, lin_params; /* every kept block's matrices */
    double out_bytes, out_params; /* tied output projection (the embedding) */
    double kv_key_bytes;          /* k + v of one cached token over all attention layers */
    double att_flops_per_key;     /* q.k and p.v of one query against one key, all layers */
    uint32_t type, embd_type;
} model_cost;

static void weight_add(const bee_weight *w, double *bytes, double *params) {
    *bytes += (double)bee_type_nbytes(w->type, w->rows * w->cols);
    *params += (double)w->rows * (double)w->cols;
}

static void cost_init(const bee_model *m, model_cost *c) {
    memset(c, 0, sizeof *c);
    double w = (double)m->hp.n_heads * m->hp.dim_head;
    c->type = m->tok_embd.type;
    for (uint32_t l = 0; l < m->hp.n_layers; l++) {
        const bee_layer *L = &m->layers[l];
        if (L->has_att) {
            const bee_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo};
            for (int i = 0; i < 4; i++) weight_add(ws[i], &c->lin_bytes, &c->lin_params);
            c->kv_key_bytes += 2 * (double)bee_type_nbytes(m->kv_type, (size_t)w);
            c->att_flops_per_key += 4 * w;
            c->type = L->wq.type;
        }
        if (L->has_ffn) {
            const bee_weight *ws[] = {&L->w_gate, &L->w_up, &L->w_down};
            for (int i = 0; i < 3; i++) weight_add(ws[i], &c->lin_bytes, &c->lin_params);
            c->type = L->w_gate.type;
        }
    }
    weight_add(&m->tok_embd, &c->out_bytes, &c->out_params);
    c->embd_type = m->tok_embd.type;
}

/* Per-token work of a prefill of p tokens (logits for the last one only):
 * every weight is read once per pass. */
static void cost_pp(const model_cost *c, double p, double *bytes, double *flops) {
    *bytes = (c->lin_bytes + c->out_bytes) / p;
    *flops = 2 * c->lin_params + 2 * c->out_params / p + c->att_flops_per_key * p; /* prompt = context: every query sees every key */
}

/* Per-token work of n decode steps after one prompt token: all weights, the
 * whole output projection and the cached keys are read for every token. */
static void cost_tg(const model_cost *c, double n, double *bytes, double *flops) {
    double keys = 1 + (n + 1) / 2;
    *bytes = c->lin_bytes + c->out_bytes + c->kv_key_bytes * keys;
    *flops = 2 * c->lin_params + 2 * c->out_params + c->att_flops_per_key * keys;
}

/* ================================================================ timing */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether prompts of these weights run on the AMX path (kernels/panel_amx.c). */
static int uses_amx(uint32_t type) { return bee_panel_amx_type(type); }

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static bee_token bench_token(const bee_model *m, uint32_t i, int ctx) {
    /* Fixed pseudo-random ids away from the special tokens. */
    uint32_t lo = m->hp.n_vocab > 2000 ? 1000 : 0, span = m->hp.n_vocab - lo;
    uint32_t id = lo + (uint32_t)(((uint64_t)i * 2654435761u + 12345u) % span);
    return (bee_token){(int32_t)id, 0, (int32_t)i, 0, 0, 1, 0, ctx};
}

/* Seconds for a prefill of p tokens into an empty cache. */
static int time_pp(bee_model *m, uint32_t p, float *logits, double *secs) {
    bee_token *t = malloc(p * sizeof *t);
    if (!t) return bee_fail("out of memory");
    for (uint32_t i = 0; i < p; i++) t[i] = bench_token(m, i, 1);
    static const int32_t seg_rel[1] = {0};
    bee_seq s;
    int rc = bee_seq_init(&s, m, p, seg_rel, 1);
    if (rc == 0) {
        bee_seq *sp[1] = {&s};
        const bee_token *tp[1] = {t};
        size_t n = p;
        double t0 = now_s();
        rc = bee_forward(m, sp, tp, &n, 1, NULL, BEE_LOGITS_LAST, logits, NULL);
        *secs = now_s() - t0;
        bee_seq_free(&s);
    }
    free(t);
    return rc;
}

/* Seconds for n single-token decode steps after a one-token prompt. */
static int time_tg(bee_model *m, uint32_t n, float *logits, double *secs) {
    static const int32_t seg_rel[1] = {0};
    bee_seq s;
    if (bee_seq_init(&s, m, n + 1, seg_rel, 1)) return -1;
    bee_seq *sp[1] = {&s};
    size_t one = 1;
    bee_token t = bench_token(m, 0, 1);
    const bee_token *tp[1] = {&t};
    int rc = bee_forward(m, sp, tp, &one, 1, NULL, BEE_LOGITS_LAST, logits, NULL);
    double t0 = now_s();
    for (uint32_t i = 1; rc == 0 && i <= n; i++) {
        t = bench_token(m, i, 0);
        rc = bee_forward(m, sp, tp, &one, 1, NULL, BEE_LOGITS_LAST, logits, NULL);
    }
    *secs = now_s() - t0;
    bee_seq_free(&s);
    return rc;
}

/* ================================================================ report */

typedef struct {
    double read_bw, fma, int8, amx; /* amx: 0 without AMX */
} roofline;

typedef struct {
    const char *model;
    const model_cost *c;
    uint64_t file_bytes, params;
    int json, reps;
    const char *kv;
} bench_ctx;

static long g_model_rss; /* peak RSS over the timed runs only (probe buffers excluded) */

static long peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* tps_reps[i]: tokens/s of repetition i; roof_reps[i]: the roofline probed
 * just before and after it (read bandwidth for tg, FMA peak for pp), so each
 * ratio compares figures taken within seconds of each other: the host's
 * bandwidth seen by this VM moves by 2x over minutes. */
static void report(const bench_ctx *b, const roofline *r0, const char *test, uint32_t n, int threads, double *tps_reps,
                   const double *roof_reps) {
    int is_pp = strcmp(test, "pp") == 0, R = b->reps;
    double bytes, flops;
    if (is_pp) cost_pp(b->c, n, &bytes, &flops);
    else cost_tg(b->c, n, &bytes, &flops);
    double ratio[64], roofs[64];
    for (int i = 0; i < R; i++) {
        ratio[i] = tps_reps[i] * (is_pp ? flops : bytes) / roof_reps[i];
        roofs[i] = roof_reps[i];
    }
    roofline rr = *r0, *r = &rr;
    if (is_pp) rr.fma = median(roofs, R);
    else rr.read_bw = median(roofs, R);
    double lo = tps_reps[0], hi = tps_reps[0];
    for (int i = 1; i < R; i++) lo = fmin(lo, tps_reps[i]), hi = fmax(hi, tps_reps[i]);
    double tps = median(tps_reps, R), med_ratio = median(ratio, R);
    double gbs = tps * bytes / 1e9, gflops = tps * flops / 1e9;
    double pct_bw = is_pp ? 100 * tps * bytes / r->read_bw : 100 * med_ratio;
    double x_fma = is_pp ? med_ratio : tps * flops / r->fma;
    if (b->json) {
        printf("{\"model\": \"%s\", \"type\": \"%s\", \"embd_type\": \"%s\", \"kv_type\": \"%s\", \"size_bytes\": %llu, "
               "\"params\": %llu, \"cpu\": \"%s\", \"test\": \"%s\", \"n_tokens\": %u, \"threads\": %d, \"reps\": %d, "
               "\"tokens_per_s\": %.4f, \"tokens_per_s_min\": %.4f, \"tokens_per_s_max\": %.4f, "
               "\"bytes_per_token\": %.0f, \"flops_per_token\": %.0f, \"gb_per_s\": %.3f, \"gflop_per_s\": %.3f, "
               "\"roofline_read_bw\": %.0f, \"roofline_fma_flops\": %.0f, \"roofline_int8_ops\": %.0f, "
               "\"roofline_amx_bf16_flops\": %.0f, "
               "\"roofline_probe_bytes\": %zu, \"pct_read_bw\": %.2f, \"x_fma_peak\": %.4f, \"peak_rss_bytes\": %ld, "
               "\"amx\": %s}\n",
               b->model, bee_type_name(b->c->type), bee_type_name(b->c->embd_type), b->kv,
               (unsigned long long)b->file_bytes, (unsigned long long)b->params, bee_cpu_path(), test, n, threads,
               b->reps, tps, lo, hi, bytes, flops, gbs, gflops, r->read_bw, r->fma, r->int8, r->amx, bee_roofline_probe_bytes(),
               pct_bw, x_fma, g_model_rss, uses_amx(b->c->type) ? "true" : "false");
    } else {
        char name[32], roof[48];
        snprintf(name, sizeof name, "%s%u", test, n);
        if (strcmp(test, "pp") == 0) snprintf(roof, sizeof roof, "%.2fx FMA peak", x_fma);
        else snprintf(roof, sizeof roof, "%.1f%% read BW", pct_bw);
        printf("| %7d | %-7s | %9.2f (%.2f-%.2f) | %8.2f | %9.1f | %-16s |\n", threads, name, tps, lo, hi, gbs, gflops,
               roof);
    }
    fflush(stdout);
}

/* Resets the kernel's peak-RSS mark (Linux "clear_refs" 5), so the 1 GiB
 * bandwidth probe does not count as the model's memory. */
static void reset_peak_rss(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) fputs("5", f), fclose(f);
}

static void note_model_rss(void) {
    long r = peak_rss_bytes();
    if (r > g_model_rss) g_model_rss = r;
}

/* Around every repetition, the headline probe's size: 4x the last-level
 * cache (bee_roofline_probe_bytes). A smaller buffer (256 MiB until
 * 2026-12-01) fits the 480 MiB LLC of the development host and measured
 * that cache's bandwidth whenever the neighbours were quiet. */
#define PROBE_BYTES 0

/* ", AMX BF16 N GFLOP/s" when the CPU has the tile unit. */
static const char *amx_note(const roofline *r) {
    static char buf[64];
    if (!(r->amx > 0)) return "";
    snprintf(buf, sizeof buf, ", AMX BF16 %.0f GFLOP/s", r->amx / 1e9);
    return buf;
}

static int measure_roofline(int threads, roofline *r) {
    bee_pool *p = bee_pool_init(threads);
    if (!p) return -1;
    r->read_bw = bee_roofline_read_bw(p, 0, 5);
    r->fma = bee_roofline_fma_peak(p, 5);
    r->int8 = bee_roofline_int8_peak(p, 5);
    r->amx = bee_roofline_amx_peak(p, 5);
    bee_pool_free(p);
    reset_peak_rss();
    return r->read_bw > 0 && r->fma > 0 ? 0 : bee_fail("roofline measurement failed");
}

/* ================================================================ command */

/* Parses "1,2,4" into v (at most max values in [lo, hi]). */
static int parse_list(const char *cmd, const char *opt, const char *s, long lo, long hi, long *v, int max, int *n) {
    *n = 0;
    while (s && *s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || (*end && *end != ',') || x < lo || x > hi || *n == max)
            return cli_error(cmd, "--%s: '%s' is not a list of at most %d integers in [%ld, %ld]", opt, s, max, lo, hi);
        v[(*n)++] = x;
        s = *end ? end + 1 : end;
    }
    return 0;
}

static int run_tests(bee_model *m, const bench_ctx *b, const long *ths, int n_th, const long *pp, int n_pp,
                     const long *tg, int n_tg) {
    size_t V = m->hp.n_vocab;
    float *logits = malloc(V * sizeof *logits);
    double *tps = malloc((size_t)b->reps * sizeof *tps);
    if (!logits || !tps) return free(logits), free(tps), bee_fail("out of memory");
    int rc = 0;
    for (int ti = 0; rc == 0 && ti < n_th; ti++) {
        roofline r;
        int th = (int)ths[ti];
        if (measure_roofline(th, &r) || bee_model_set_threads(m, th)) rc = -1;
        if (rc == 0 && !b->json)
            printf("\nthreads %d: roofline read %.1f GB/s (%zu MiB buffer), FP32 FMA %.0f GFLOP/s, int8 %.0f GOP/s%s\n\n"
                   "| threads | test    | tokens/s median (min-max) |   GB/s   |  GFLOP/s  | of roofline      |\n"
                   "|--------:|---------|---------------------------|---------:|----------:|------------------|\n",
                   th, r.read_bw / 1e9, bee_roofline_probe_bytes() >> 20, r.fma / 1e9, r.int8 / 1e9, amx_note(&r));
        double secs, roof[64];
        bee_pool *probe = rc == 0 ? bee_pool_init(th) : NULL;
        if (rc == 0 && !probe) rc = -1;
        for (int k = 0; rc == 0 && k < n_pp; k++) {
            rc = time_pp(m, (uint32_t)pp[k], logits, &secs); /* warm-up: page in the weights */
            for (int i = 0; rc == 0 && i < b->reps; i++) {
                double before = bee_roofline_fma_peak(probe, 3);
                reset_peak_rss();
                if ((rc = time_pp(m, (uint32_t)pp[k], logits, &secs)) == 0) tps[i] = (double)pp[k] / secs;
                note_model_rss();
                roof[i] = (before + bee_roofline_fma_peak(probe, 3)) / 2;
            }
            if (rc == 0) report(b, &r, "pp", (uint32_t)pp[k], th, tps, roof);
        }
        for (int k = 0; rc == 0 && k < n_tg; k++) {
            rc = time_tg(m, 2, logits, &secs);
            for (int i = 0; rc == 0 && i < b->reps; i++) {
                double before = bee_roofline_read_bw(probe, PROBE_BYTES, 3);
                reset_peak_rss();
                if ((rc = time_tg(m, (uint32_t)tg[k], logits, &secs)) == 0) tps[i] = (double)tg[k] / secs;
                note_model_rss();
                roof[i] = (before + bee_roofline_read_bw(probe, PROBE_BYTES, 3)) / 2;
                if (!(roof[i] > 0)) rc = bee_fail("bandwidth probe failed");
            }
            if (rc == 0) report(b, &r, "tg", (uint32_t)tg[k], th, tps, roof);
        }
        bee_pool_free(probe);
        reset_peak_rss(); /* the probes' buffers are not the model's memory */
    }
    free(logits);
    free(tps);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
        {"threads", 't', "N[,N...]", "thread counts to test (default: all cores)", "BEE_THREADS", 0},
        {"n-prompt", 'p', "N[,N...]", "prefill lengths (default 512; 0 = none)", NULL, 0},
        {"n-gen", 'n', "N[,N...]", "decode lengths (default 128; 0 = none)", NULL, 0},
        {"reps", 'r', "N", "repetitions per test, median reported (default 3, at most 64)", NULL, 0},
        CLI_OPT_KV_TYPE,
        {"json", 0, NULL, "one JSON object per line and test", NULL, 0},
        {0},
    };
    cli_args a = {"bench", "-m MODEL.gguf [-t 1,2] [-p 512] [-n 128] [-r 3] [--json]",
                  "Measures prefill (pp) and decode (tg) tokens/s and reports them against this machine's\n"
                  "roofline, measured first: decode as % of the memory read bandwidth (weight + KV bytes per\n"
                  "token), prefill as a multiple of the FP32 FMA peak (effective flops per token).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    long ths[16], pp[16], tg[16], reps = 3;
    int n_th = 0, n_pp = 0, n_tg = 0;
    bee_model *m = NULL;
    const char *t = cli_get(&a, "threads"), *p = cli_get(&a, "n-prompt"), *n = cli_get(&a, "n-gen");
    if (a.n_pos) rc = cli_error("bench", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (parse_list("bench", "threads", t ? t : "0", 0, 1024, ths, 16, &n_th) ||
             parse_list("bench", "n-prompt", p ? p : "512", 0, 1 << 16, pp, 16, &n_pp) ||
             parse_list("bench", "n-gen", n ? n : "128", 0, 1 << 16, tg, 16, &n_tg) ||
             cli_int(&a, "reps", 1, 64, &reps))
        rc = 2;
    uint32_t kvt = BEE_TYPE_F32;
    if (rc == 0 && cli_kv_type("bench", &a, &kvt)) rc = 2;
    if (rc == 0 && !cli_get(&a, "model")) rc = cli_error("bench", "missing -m MODEL.gguf") + 1;
    if (rc == 0 && (bee_model_load(cli_get(&a, "model"), &m) || bee_model_set_kv_type(m, kvt) ||
                    bee_model_set_threads(m, 0)))
        rc = cli_fail("bench");
    if (rc == 0) {
        for (int i = 0; i < n_th; i++)
            if (ths[i] == 0) ths[i] = bee_pool_size(m->pool);
        /* zero lengths mean "skip this test" */
        int k = 0;
        for (int i = 0; i < n_pp; i++) if (pp[i] > 0) pp[k++] = pp[i];
        n_pp = k, k = 0;
        for (int i = 0; i < n_tg; i++) if (tg[i] > 0) tg[k++] = tg[i];
        n_tg = k;
        model_cost c;
        cost_init(m, &c);
        const char *kv = bee_type_name(m->kv_type);
        bench_ctx b = {cli_get(&a, "model"), &c, bee_gguf_file_size(m->gguf), bee_model_n_params(m),
                       cli_get(&a, "json") != NULL, (int)reps, kv};
        if (!b.json)
            printf("model %s: %s weights (embedding %s), %.1f MiB, %.3f B params, KV cache %s, kernels %s%s\n", b.model,
                   bee_type_name(c.type), bee_type_name(c.embd_type), (double)b.file_bytes / (1 << 20),
                   (double)b.params / 1e9, kv, bee_cpu_path(),
                   uses_amx(c.type) ? ", prompts on AMX (f32 accuracy by a three-way bf16 split; BEE_AMX=0: FMA)" : "");
        if (run_tests(m, &b, ths, n_th, pp, n_pp, tg, n_tg)) rc = cli_fail("bench");
        else if (!b.json) printf("\npeak RSS %.1f MiB (file %.1f MiB)\n", (double)g_model_rss / (1 << 20),
                                 (double)b.file_bytes / (1 << 20));
    }
    bee_model_free(m);
    cli_free(&a);
    return rc;
}
