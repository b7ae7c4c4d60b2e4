/* bee train: fine-tunes (or trains from a `bee init` model) on CPM-Bee dicts
 * or plain text with AdamW, warmup + cosine learning rate, gradient clipping
 * and accumulation; checkpoints are atomic and resuming is bit-identical to an
 * uninterrupted run. */
#include <errno.h>
#include <math.h>
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/data.h"
#include "train/shard.h"
#include "train/dist.h"
#include "train/train.h"
#include "train/trainlog.h"
#include "util/error.h"
#include "util/file.h"

typedef struct {
    long batch, ctx, accum, threads, log_every, eval_batches;
    unsigned long long steps, warmup, stop_after, ckpt_every, seed, eval_every;
    double lr, min_lr, wd, clip, beta1, beta2;
    const char *model, *data, *text, *out, *ckpt;
    const char **shards; /* NULL-terminated; NULL without --shards */
    const char *eval_data, *eval_text; /* held-out set (at most one of these and eval_shards) */
    const char **eval_shards;
    const char *log, *curve; /* --log FILE.jsonl, --curve FILE.svg */
    int resume;
    unsigned long lora_rank; /* 0 = train every weight */
    double lora_alpha;
} train_opts;

typedef struct {
    bee_model *m;
    bee_train_model t;
    bee_adamw opt;
    bee_train_data data;
    uint32_t *order;
    bee_train_state st;
    bee_lora lora;
    bee_dist dist;   /* ranks of an mpirun job (size 1 otherwise) */
    bee_packed_batch *eval;  /* the fixed held-out batches (n_eval), packed once */
    size_t n_eval;
    bee_train_log hist;      /* rank 0: every progress line, for --log and --curve */
    FILE *logf;              /* --log, opened for appending */
    int resumed;
} train_run;

#define LOG(r, ...) ((r)->dist.rank == 0 ? fprintf(stderr, __VA_ARGS__) : 0)

/* ================================================================ optimizer state (ZeRO-1 when distributed) */

/* Each rank keeps AdamW moments only for its slice of the flat parameters. */
static int opt_init(train_run *r) {
    if (r->dist.size == 1) return bee_adamw_init(&r->opt, &r->t);
    size_t n, lo, hi;
    bee_train_flat(&r->t, NULL, &n);
    bee_dist_slice(&r->dist, r->dist.rank, n, &lo, &hi);
    memset(&r->opt, 0, sizeof r->opt);
    r->opt.m.n = r->opt.v.n = hi - lo;
    r->opt.m.mem = calloc(hi - lo + 1, sizeof(float));
    r->opt.v.mem = calloc(hi - lo + 1, sizeof(float));
    return r->opt.m.mem && r->opt.v.mem ? 0 : bee_fail("out of memory for the optimizer state");
}

/* Update this rank's slice, then every rank gathers the whole buffer. */
static int opt_step(train_run *r, const bee_adamw_cfg *c, double lr) {
    if (r->dist.size == 1) {
        bee_adamw_step(&r->opt, &r->t, c, lr);
        return 0;
    }
    size_t n, lo, hi;
    float *g, *w = bee_train_flat(&r->t, &g, &n);
    bee_dist_slice(&r->dist, r->dist.rank, n, &lo, &hi);
    r->opt.step++;
    bee_adamw_update(w + lo, g + lo, r->opt.m.mem, r->opt.v.mem, hi - lo, r->opt.step, c, lr);
    return bee_dist_allgather(&r->dist, w, n);
}

/* The checkpoint holds full moments: rank 0 gathers the slices and writes. */
static int ckpt_save(train_run *r, const char *path) {
    if (r->dist.size == 1) return bee_train_ckpt_save(path, &r->t, &r->opt, &r->st);
    bee_adamw full;
    memset(&full, 0, sizeof full);
    size_t n;
    bee_train_flat(&r->t, NULL, &n);
    int rc = r->dist.rank == 0 ? bee_adamw_init(&full, &r->t) : 0;
    if (bee_dist_any(&r->dist, rc)) rc = -1;
    if (rc == 0) rc = bee_dist_gather(&r->dist, r->opt.m.mem, full.m.mem, n);
    if (rc == 0) rc = bee_dist_gather(&r->dist, r->opt.v.mem, full.v.mem, n);
    full.step = r->opt.step;
    if (rc == 0 && r->dist.rank == 0) rc = bee_train_ckpt_save(path, &r->t, &full, &r->st);
    bee_adamw_free(&full);
    return bee_dist_any(&r->dist, rc) ? (rc ? -1 : bee_fail("rank 0 could not write %s", path)) : 0;
}

/* Every rank reads the checkpoint and keeps its slice of the moments. */
static int ckpt_load(train_run *r, const char *path) {
    if (r->dist.size == 1) return bee_train_ckpt_load(path, &r->t, &r->opt, &r->st);
    bee_adamw full;
    size_t n, lo, hi;
    bee_train_flat(&r->t, NULL, &n);
    bee_dist_slice(&r->dist, r->dist.rank, n, &lo, &hi);
    int rc = bee_adamw_init(&full, &r->t);
    if (rc == 0) rc = bee_train_ckpt_load(path, &r->t, &full, &r->st);
    if (rc == 0) {
        memcpy(r->opt.m.mem, full.m.mem + lo, (hi - lo) * sizeof(float));
        memcpy(r->opt.v.mem, full.v.mem + lo, (hi - lo) * sizeof(float));
        r->opt.step = full.step;
    }
    bee_adamw_free(&full);
    return rc;
}

/* ================================================================ options */

static int parse_lora(const char *s, train_opts *o) {
    char *end;
    o->lora_rank = strtoul(s, &end, 10);
    if (end == s || *end != ',' || o->lora_rank == 0 || o->lora_rank > 65536) return -1;
    const char *p = end + 1;
    o->lora_alpha = strtod(p, &end);
    return end == p || *end || !(o->lora_alpha > 0) || !isfinite(o->lora_alpha) ? -1 : 0;
}

static int parse_opts(cli_args *a, train_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch = 4, o->ctx = 256, o->accum = 1, o->log_every = 1, o->eval_batches = 20;
    o->steps = 100, o->warmup = 10, o->seed = 1;
    o->lr = 1e-4, o->min_lr = 1e-5, o->wd = 0.1, o->clip = 1.0, o->beta1 = 0.9, o->beta2 = 0.95;
    o->model = cli_get(a, "model"), o->data = cli_get(a, "data"), o->text = cli_get(a, "text");
    o->out = cli_get(a, "out"), o->ckpt = cli_get(a, "ckpt"), o->resume = cli_get(a, "resume") != NULL;
    if (cli_int(a, "batch", 1, 65536, &o->batch) || cli_int(a, "ctx", 8, 65536, &o->ctx) ||
        cli_int(a, "accum", 1, 1 << 20, &o->accum) || cli_int(a, "threads", 0, 1024, &o->threads) ||
        cli_int(a, "log-every", 1, 1 << 30, &o->log_every) || cli_u64(a, "steps", &o->steps) ||
        cli_u64(a, "warmup", &o->warmup) || cli_u64(a, "stop-after", &o->stop_after) ||
        cli_u64(a, "ckpt-every", &o->ckpt_every) || cli_u64(a, "seed", &o->seed) ||
        cli_float(a, "lr", 0, 10, &o->lr) || cli_float(a, "min-lr", 0, 10, &o->min_lr) ||
        cli_float(a, "wd", 0, 10, &o->wd) || cli_float(a, "clip", 0, 1e9, &o->clip) ||
        cli_float(a, "beta1", 0, 0.999999, &o->beta1) || cli_float(a, "beta2", 0, 0.999999, &o->beta2) ||
        cli_u64(a, "eval-every", &o->eval_every) || cli_int(a, "eval-batches", 1, 1 << 20, &o->eval_batches))
        return 2;
    o->eval_data = cli_get(a, "eval-data"), o->eval_text = cli_get(a, "eval-text");
    o->log = cli_get(a, "log"), o->curve = cli_get(a, "curve");
    if (cli_get(a, "eval-shards") && !(o->eval_shards = cli_list(a, "eval-shards")))
        return cli_error("train", "out of memory") + 1;
    int n_eval = (o->eval_data != NULL) + (o->eval_text != NULL) + (o->eval_shards != NULL);
    if (n_eval > 1) return cli_error("train", "give at most one of --eval-data, --eval-text and --eval-shards") + 1;
    if (!n_eval && (cli_get(a, "eval-every") || cli_get(a, "eval-batches")))
        return cli_error("train", "--eval-every / --eval-batches need a held-out set: --eval-data FILE.jsonl, "
                                  "--eval-text FILE or --eval-shards SHARD.bin") + 1;
    if (o->log && o->curve && strcmp(o->log, o->curve) == 0)
        return cli_error("train", "--log and --curve name the same file '%s'", o->log) + 1;
    const char *lora = cli_get(a, "lora");
    if (lora && parse_lora(lora, o)) return cli_error("train", "--lora wants RANK,ALPHA (e.g. 8,16), got '%s'", lora) + 1;
    if (!o->model) return cli_error("train", "missing -m MODEL.gguf") + 1;
    o->shards = cli_get(a, "shards") ? cli_list(a, "shards") : NULL;
    if (cli_get(a, "shards") && !o->shards) return cli_error("train", "out of memory") + 1;
    if ((o->data != NULL) + (o->text != NULL) + (o->shards != NULL) != 1)
        return cli_error("train", "give exactly one of --data FILE.jsonl, --text FILE and --shards FILE") + 1;
    if (!o->out && !o->ckpt) return cli_error("train", "nothing would be saved: give -o OUT.gguf and/or --ckpt FILE") + 1;
    if (o->resume && !o->ckpt) return cli_error("train", "--resume needs --ckpt FILE") + 1;
    if (o->steps == 0) return cli_error("train", "--steps must be at least 1") + 1;
    return 0;
}

/* ================================================================ held-out set, log, curve */

/* The held-out examples in file order, packed once into at most
 * --eval-batches batches of the training shape; the same batches every time. */
static int eval_setup(train_run *r, const train_opts *o) {
    if (!o->eval_data && !o->eval_text && !o->eval_shards) return 0;
    bee_train_data d;
    memset(&d, 0, sizeof d);
    int rc = 0;
    if (o->eval_shards) {
        for (size_t i = 0; rc == 0 && o->eval_shards[i]; i++)
            rc = bee_shard_load(o->eval_shards[i], r->m->tok, (uint32_t)o->ctx, &d);
        if (rc == 0 && d.n == 0) rc = bee_fail("%s: no held-out examples", o->eval_shards[0]);
    } else {
        rc = bee_train_data_load(r->m->tok, o->eval_data ? o->eval_data : o->eval_text, o->eval_text != NULL,
                                 (uint32_t)o->ctx, &d);
    }
    uint32_t *order = rc == 0 ? malloc(d.n * sizeof *order) : NULL;
    r->eval = rc == 0 ? calloc((size_t)o->eval_batches, sizeof *r->eval) : NULL;
    if (rc == 0 && (!order || !r->eval)) rc = bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && i < d.n; i++) order[i] = (uint32_t)i;
    size_t cur = 0;
    while (rc == 0 && cur < d.n && r->n_eval < (size_t)o->eval_batches) {
        rc = bee_train_pack(&d, r->m->tok, order, d.n, &cur, (uint32_t)o->batch, (uint32_t)o->ctx, &r->eval[r->n_eval]);
        if (rc == 0) r->n_eval++;
    }
    if (rc == 0) {
        size_t tok = 0;
        for (size_t k = 0; k < r->n_eval; k++) tok += r->eval[k].n_tokens;
        LOG(r, "train: held-out set: %zu of %zu examples in %zu batches (%zu tokens)\n", cur, d.n, r->n_eval, tok);
    }
    free(order);
    bee_train_data_free(&d);
    return rc;
}

/* Mean NLL per predicted token over the held-out batches (no weight update;
 * under mpirun the batches are split over the ranks and the sums reduced). */
static int evaluate(train_run *r, double *loss) {
    double acc[2] = {0, 0};
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < r->n_eval; k++) {
        if ((int)(k % (size_t)r->dist.size) != r->dist.rank) continue;
        bee_train_result res = {0, 0};
        rc = bee_train_forward_backward(&r->t, &r->eval[k].b, 0, 0, &res, NULL);
        acc[0] += res.loss * (double)res.n_targets, acc[1] += (double)res.n_targets;
    }
    if (bee_dist_any(&r->dist, rc)) return rc ? -1 : bee_fail("another rank failed");
    if (bee_dist_sum_f64(&r->dist, acc, 2)) return -1;
    if (acc[1] == 0) return bee_fail("the held-out set has no predicted tokens");
    *loss = acc[0] / acc[1];
    return 0;
}

/* Rank 0: a resumed run keeps the log's lines up to the checkpoint's step
 * (rewritten atomically), then appends. */
static int log_setup(train_run *r, const train_opts *o) {
    if (r->dist.rank != 0 || !o->log) return 0;
    if (r->resumed && bee_file_exists(o->log)) {
        if (bee_train_log_read(o->log, &r->hist)) return -1;
        bee_train_log_truncate(&r->hist, r->st.step);
    }
    bee_str s = {0};
    int rc = bee_train_log_jsonl(&r->hist, &s);
    if (rc == 0) rc = bee_write_file_atomic(o->log, s.s ? s.s : "", s.n);
    bee_str_free(&s);
    if (rc == 0 && !(r->logf = fopen(o->log, "a"))) rc = bee_fail("%s: cannot open for appending: %s", o->log, strerror(errno));
    return rc ? bee_fail_prefix("--log %s: ", o->log) : 0;
}

/* Rank 0: one progress record into the history, the JSONL log and the curve. */
static int record(train_run *r, const train_opts *o, const bee_log_point *p) {
    if (r->dist.rank != 0 || (!o->log && !o->curve)) return 0;
    if (bee_train_log_push(&r->hist, p)) return -1;
    if (r->logf) {
        bee_str s = {0};
        int rc = bee_log_point_jsonl(p, &s);
        if (rc == 0 && (fwrite(s.s, 1, s.n, r->logf) != s.n || fflush(r->logf)))
            rc = bee_fail("%s: write failed: %s", o->log, strerror(errno));
        bee_str_free(&s);
        if (rc) return -1;
    }
    if (o->curve) {
        const char *base = strrchr(o->model, '/');
        char title[512];
        snprintf(title, sizeof title, "bee train: %s", base ? base + 1 : o->model);
        if (bee_curve_write(o->curve, &r->hist, title)) return bee_fail_prefix("--curve %s: ", o->curve);
    }
    return 0;
}

/* ================================================================ setup */

static int setup(train_run *r, const train_opts *o) {
    if (bee_model_load(o->model, &r->m) || bee_train_model_from(r->m, &r->t) ||
        bee_train_set_threads(&r->t, (int)o->threads))
        return -1;
    /* LoRA: A from the data seed, B = 0; the base weights stay frozen. */
    if (o->lora_rank && (bee_lora_init(&r->lora, &r->m->hp, r->t.has_att, (uint32_t)o->lora_rank,
                                       (float)o->lora_alpha, o->seed ^ 0x4c6f5241ull) ||
                         bee_train_lora_attach(&r->t, &r->lora)))
        return -1;
    if (opt_init(r)) return -1;
    if (o->shards) {
        for (size_t i = 0; o->shards[i]; i++)
            if (bee_shard_load(o->shards[i], r->m->tok, (uint32_t)o->ctx, &r->data)) return -1;
    } else {
        const char *path = o->data ? o->data : o->text;
        if (bee_train_data_load(r->m->tok, path, o->text != NULL, (uint32_t)o->ctx, &r->data)) return -1;
    }
    if (eval_setup(r, o)) return -1;
    r->order = malloc(r->data.n * sizeof *r->order);
    if (!r->order) return bee_fail("out of memory");
    r->st = (bee_train_state){0, 0, 0, o->seed, r->data.n};
    if (o->resume && bee_file_exists(o->ckpt)) {
        if (ckpt_load(r, o->ckpt)) return -1;
        if (r->st.n_examples != r->data.n || r->st.seed != o->seed)
            return bee_fail("%s was made with other data or seed (%llu examples, seed %llu)", o->ckpt,
                             (unsigned long long)r->st.n_examples, (unsigned long long)r->st.seed);
        LOG(r, "train: resumed from %s at step %llu\n", o->ckpt, (unsigned long long)r->st.step);
        r->resumed = 1;
    }
    if (log_setup(r, o)) return -1;
    bee_train_shuffle(r->order, r->data.n, r->st.seed, r->st.epoch);
    LOG(r, "train: %zu examples, %zu tokens; %zu parameters", r->data.n, r->data.n_tokens, r->t.n_params);
    if (o->lora_rank) LOG(r, " (frozen), LoRA rank %lu alpha %g: %zu trainable", o->lora_rank, o->lora_alpha, r->lora.n);
    LOG(r, "; %ld x %ld tokens per batch, accum %ld", o->batch, o->ctx, o->accum);
    if (r->dist.size > 1) LOG(r, " over %d ranks (ZeRO-1 optimizer shards)", r->dist.size);
    LOG(r, "\n");
    return 0;
}

static void run_free(train_run *r) {
    if (r->dist.size > 1) free(r->opt.m.mem), free(r->opt.v.mem);
    else bee_adamw_free(&r->opt);
    bee_train_model_free(&r->t);
    bee_train_data_free(&r->data);
    bee_model_free(r->m);
    bee_lora_free(&r->lora);
    free(r->order);
    for (size_t k = 0; k < r->n_eval; k++) bee_packed_batch_free(&r->eval[k]);
    free(r->eval);
    bee_train_log_free(&r->hist);
    if (r->logf) fclose(r->logf);
}

/* ================================================================ steps */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One micro-batch: the next packed batch of the epoch (a new epoch reshuffles). */
static int micro_batch(train_run *r, const train_opts *o, int mine, double *loss, size_t *tokens) {
    if (r->st.cursor >= r->data.n) {
        r->st.epoch++, r->st.cursor = 0;
        bee_train_shuffle(r->order, r->data.n, r->st.seed, r->st.epoch);
    }
    bee_packed_batch pb;
    size_t cur = (size_t)r->st.cursor;
    if (bee_train_pack(&r->data, r->m->tok, r->order, r->data.n, &cur, (uint32_t)o->batch, (uint32_t)o->ctx, &pb))
        return -1;
    r->st.cursor = cur;
    bee_train_result res = {0, 0};
    /* Every rank packs every micro-batch (cheap) so all walk the data alike;
     * only the owner runs it. */
    int rc = mine ? bee_train_forward_backward(&r->t, &pb.b, 1, 1.0f / (float)o->accum, &res, NULL) : 0;
    *loss += res.loss / (double)o->accum;
    *tokens += mine ? pb.n_tokens : 0;
    bee_packed_batch_free(&pb);
    return rc;
}

/* Sum of the ranks' gradients (each already scaled by 1 / accum, so the sum
 * is what one process computes) and of their losses. */
static int reduce_grads(train_run *r, int rc, double *loss) {
    if (bee_dist_any(&r->dist, rc)) return rc ? -1 : bee_fail("another rank failed");
    size_t n;
    float *g;
    bee_train_flat(&r->t, &g, &n);
    return bee_dist_sum_f32(&r->dist, g, n) || bee_dist_sum_f64(&r->dist, loss, 1) ? -1 : 0;
}

static void progress(const train_run *r, const train_opts *o, const bee_log_point *p, double eta) {
    long e = (long)eta;
    fprintf(stderr, "step %llu/%llu  loss %.4f  lr %.3e  gnorm %.3f  tok/s %.0f  ETA %ld:%02ld:%02ld",
            (unsigned long long)r->st.step, o->steps, p->loss, p->lr, p->gnorm, p->tok_s, e / 3600, e / 60 % 60, e % 60);
    if (isfinite(p->eval_loss)) fprintf(stderr, "  eval %.4f", p->eval_loss);
    fprintf(stderr, "\n");
}

static int train_loop(train_run *r, const train_opts *o, double *last_loss, double *eval_loss) {
    bee_lr_schedule sch = {o->lr, o->min_lr, o->warmup, o->steps};
    bee_adamw_cfg cfg = {o->beta1, o->beta2, 1e-8, o->wd};
    double t0 = now_s(), eval_s = 0;
    size_t tokens = 0;
    unsigned long long done = 0;
    if (r->n_eval && r->st.step == 0 && o->steps > 0) {
        /* before any update: the starting model's held-out loss */
        bee_log_point p = {0, NAN, NAN, NAN, NAN, NAN};
        if (evaluate(r, &p.eval_loss) || record(r, o, &p)) return -1;
        *eval_loss = p.eval_loss;
        LOG(r, "step 0/%llu  eval %.4f\n", o->steps, p.eval_loss);
        eval_s = now_s() - t0;
    }
    while (r->st.step < o->steps && !(o->stop_after && done >= o->stop_after)) {
        bee_train_zero_grad(&r->t);
        double loss = 0;
        int rc = 0;
        for (long k = 0; rc == 0 && k < o->accum; k++)
            rc = micro_batch(r, o, k % r->dist.size == r->dist.rank, &loss, &tokens);
        if (r->dist.size > 1 && reduce_grads(r, rc, &loss)) return -1;
        if (rc) return -1;
        double gnorm = o->clip > 0 ? bee_grad_clip(&r->t, o->clip) : bee_grad_norm(&r->t);
        double lr = bee_lr_at(&sch, r->st.step);
        if (opt_step(r, &cfg, lr)) return -1;
        r->st.step = r->opt.step, done++;
        *last_loss = loss;
        int last = r->st.step == o->steps || (o->stop_after && done >= o->stop_after);
        if (o->ckpt && (last || (o->ckpt_every && r->st.step % o->ckpt_every == 0)) &&
            ckpt_save(r, o->ckpt))
            return -1;
        bee_log_point p = {r->st.step, loss, lr, gnorm, 0, NAN};
        if (r->n_eval && (last || (o->eval_every && r->st.step % o->eval_every == 0))) {
            double e0 = now_s();
            if (evaluate(r, &p.eval_loss)) return -1;
            eval_s += now_s() - e0;
        }
        *eval_loss = p.eval_loss;
        double el = now_s() - t0, train_s = el - eval_s;
        p.tok_s = (double)tokens * r->dist.size / (train_s > 0 ? train_s : 1e-9);
        if (last || r->st.step % (unsigned long long)o->log_every == 0 || isfinite(p.eval_loss)) {
            if (r->dist.rank == 0) progress(r, o, &p, el / (double)done * (double)(o->steps - r->st.step));
            if (record(r, o, &p)) return -1;
        }
    }
    return 0;
}

/* ================================================================ command */

static int write_out(const train_run *r, const train_opts *o) {
    if (r->dist.rank != 0) return 0;
    if (o->lora_rank) return bee_lora_write(&r->lora, o->out, r->m->name);
    return bee_train_model_write(&r->t, o->out, "bee-train");
}

/* Every step allocates and frees the same activation buffers; glibc would
 * hand the large ones back to the kernel each time and page-fault them in
 * again (a tenth of the step time), so keep them in the heap. */
static void keep_heap_memory(void) {
#if defined(M_MMAP_THRESHOLD) && defined(M_TRIM_THRESHOLD)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

int cmd_train(int argc, char **argv) {
    keep_heap_memory();
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "starting weights and vocabulary (any weight type; trained in fp32)", "BEE_MODEL", 0},
        {"data", 0, "FILE.jsonl", "one CPM-Bee dict per line, training form: {\"input\": ..., \"<ans>\": \"answer\"}", NULL, 0},
        {"text", 0, "FILE", "plain text: every non-empty line is one example, all of it predicted", NULL, 0},
        {"shards", 0, "SHARD.bin", "token shards from bee data (repeat for several; read in the order given)", NULL, 1},
        {"out", 'o', "OUT.gguf", "write the trained model here (fp32; with --lora: the adapter) at the end", NULL, 0},
        {"lora", 0, "RANK,ALPHA", "train only LoRA adapters on project_q / project_v (base frozen)", NULL, 0},
        {"ckpt", 0, "FILE", "training checkpoint (weights + AdamW state + data position), written atomically", NULL, 0},
        {"resume", 0, NULL, "continue from --ckpt if it exists (bit-identical to not stopping)", NULL, 0},
        {"ckpt-every", 0, "N", "also checkpoint every N steps (default: only at the end)", NULL, 0},
        {"steps", 0, "N", "optimizer steps in the whole run; the schedule spans them (default 100)", NULL, 0},
        {"stop-after", 0, "N", "stop after N steps of this invocation (checkpoint, resume later)", NULL, 0},
        {"batch", 'b', "ROWS", "rows per micro-batch (default 4)", NULL, 0},
        {"ctx", 'c', "TOKENS", "tokens per row; examples are packed into rows and cut to this (default 256)", NULL, 0},
        {"accum", 0, "N", "micro-batches per optimizer step (default 1)", NULL, 0},
        {"lr", 0, "X", "peak learning rate (default 1e-4)", NULL, 0},
        {"min-lr", 0, "X", "learning rate at the end of the cosine decay (default 1e-5)", NULL, 0},
        {"warmup", 0, "N", "linear warmup steps (default 10)", NULL, 0},
        {"wd", 0, "X", "AdamW decoupled weight decay (default 0.1)", NULL, 0},
        {"beta1", 0, "X", "AdamW beta1 (default 0.9)", NULL, 0},
        {"beta2", 0, "X", "AdamW beta2 (default 0.95)", NULL, 0},
        {"clip", 0, "X", "clip the global gradient norm to X; 0 = off (default 1.0)", NULL, 0},
        {"seed", 0, "N", "data shuffle seed (default 1)", NULL, 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        {"log-every", 0, "N", "progress line every N steps (default 1)", NULL, 0},
        {"log", 0, "FILE.jsonl", "append every progress line as JSON {step, loss, lr, gnorm, tok_s, eval_loss}", NULL, 0},
        {"curve", 0, "FILE.svg", "loss-vs-step chart, rewritten atomically at every progress line", NULL, 0},
        {"eval-data", 0, "FILE.jsonl", "held-out CPM-Bee dicts: mean loss before training, every --eval-every steps and at the end", NULL, 0},
        {"eval-text", 0, "FILE", "held-out plain text (one example per line), as --eval-data", NULL, 0},
        {"eval-shards", 0, "SHARD.bin", "held-out token shards (repeatable), as --eval-data", NULL, 1},
        {"eval-every", 0, "N", "also evaluate every N steps (default: only before the first step and at the last)", NULL, 0},
        {"eval-batches", 0, "N", "held-out batches (--batch x --ctx, file order, fixed) to evaluate (default 20)", NULL, 0},
        {0},
    };
    cli_args a = {"train", "-m MODEL.gguf (--data FILE.jsonl | --text FILE | --shards SHARD.bin...) (-o OUT.gguf | --ckpt FILE) [options]",
                  "Trains all weights in fp32 with AdamW (warmup + cosine learning rate, global-norm clipping,\n"
                  "gradient accumulation) on packed batches in the upstream CPM-Bee training layout.\n"
                  "--lora R,ALPHA trains only LoRA adapters (base frozen) and -o writes the adapter.\n"
                  "Under `mpirun -np N` the --accum micro-batches of a step are split across the ranks\n"
                  "(gradient allreduce, optimizer state sharded); rank 0 logs and writes the outputs.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    train_opts o;
    if ((rc = parse_opts(&a, &o))) {
        free((void *)o.shards), free((void *)o.eval_shards);
        cli_free(&a);
        return rc;
    }
    train_run r;
    memset(&r, 0, sizeof r);
    if (bee_dist_init(&r.dist, NULL, NULL)) {
        cli_free(&a);
        return cli_fail("train");
    }
    if (r.dist.size > 1 && o.accum < r.dist.size) {
        bee_dist_finalize(&r.dist);
        cli_free(&a);
        return cli_error("train", "--accum %ld is less than the %d ranks: each rank needs a micro-batch", o.accum,
                         r.dist.size) + 1;
    }
    double loss = NAN, eval_loss = NAN;
    if (setup(&r, &o) || train_loop(&r, &o, &loss, &eval_loss) || (o.out && write_out(&r, &o))) rc = cli_fail("train");
    if (rc && r.dist.size > 1) bee_dist_abort(&r.dist, rc);
    if (rc == 0 && r.dist.rank == 0) {
        printf("trained to step %llu, last loss %.6f", (unsigned long long)r.st.step, loss);
        if (isfinite(eval_loss)) printf(", held-out loss %.6f", eval_loss);
        printf("\n");
    }
    run_free(&r);
    free((void *)o.shards), free((void *)o.eval_shards);
    bee_dist_finalize(&r.dist);
    cli_free(&a);
    return rc;
}
