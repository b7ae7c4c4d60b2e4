/* Training path: (a) parity with the upstream golden batch (golden/train):
 * final hidden states, logsumexp, per-token NLL, loss, every parameter
 * gradient, the weights after one AdamW step and the loss after it;
 * (b) finite-difference checks of every parameter tensor on small random
 * models (always run); (c) bad batches fail with a message; plus the
 * optimizer helpers, thread-count determinism and GGUF round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/convert.h"
#include "golden.h"
#include "testutil.h"
#include "train/data.h"
#include "train/train.h"
#include "util/error.h"
#include "util/file.h"

/* ================================================================ golden batch */

typedef struct {
    bee_train_batch b;
    int32_t *arr[12];
    uint8_t *ctx;
} owned_batch;

static int32_t *npy_i32(const char *name, size_t *n) {
    bee_npy a;
    golden_npy("train", name, &a);
    int32_t *v = malloc((a.count ? a.count : 1) * sizeof *v);
    for (size_t i = 0; i < a.count; i++) v[i] = (int32_t)bee_npy_get_i(&a, i);
    if (n) *n = a.count;
    bee_npy_free(&a);
    return v;
}

static void golden_batch(owned_batch *o) {
    memset(o, 0, sizeof *o);
    bee_train_batch *b = &o->b;
    size_t n, n_rel, n_ext;
    b->B = 2, b->L = 64;
    b->inputs = o->arr[0] = npy_i32("in_inputs", &n);
    assert_int_equal(n, 128);
    b->inputs_sub = o->arr[1] = npy_i32("in_inputs_sub", NULL);
    b->length = o->arr[2] = npy_i32("in_length", NULL);
    int32_t *c = npy_i32("in_context", NULL);
    o->ctx = malloc(n);
    for (size_t i = 0; i < n; i++) o->ctx[i] = (uint8_t)c[i];
    free(c);
    b->context = o->ctx;
    b->sample_ids = o->arr[3] = npy_i32("in_sample_ids", NULL);
    b->num_segments = o->arr[4] = npy_i32("in_num_segments", NULL);
    b->segment_ids = o->arr[5] = npy_i32("in_segment_ids", NULL);
    b->segment_rel_offset = o->arr[6] = npy_i32("in_segment_rel_offset", NULL);
    b->spans = o->arr[7] = npy_i32("in_spans", NULL);
    b->segment_rel = o->arr[8] = npy_i32("in_segment_rel", &n_rel);
    b->n_seg_rel = n_rel / 2;
    b->ext_ids = o->arr[9] = npy_i32("in_ext_ids", &n_ext);
    b->ext_sub = o->arr[10] = npy_i32("in_ext_sub", NULL);
    b->n_ext = n_ext;
    b->targets = o->arr[11] = npy_i32("targets", NULL);
}

static void owned_batch_free(owned_batch *o) {
    for (size_t i = 0; i < 12; i++) free(o->arr[i]);
    free(o->ctx);
}

static void expect_close(const char *name, const float *a, size_t n, double tol) {
    bee_npy g;
    golden_npy("train", name, &g);
    double d = golden_max_diff(a, n, &g);
    bee_npy_free(&g);
    fprintf(stderr, "  %s: max abs diff %.3g (tol %.1g)\n", name, d, tol);
    if (!(d <= tol)) fail_msg("%s: max abs diff %.3g > %.1g", name, d, tol);
}

static double golden_scalar(const char *name) {
    bee_npy g;
    golden_npy("train", name, &g);
    double v = bee_npy_get_f(&g, 0);
    bee_npy_free(&g);
    return v;
}

/* A float32 blob (grads.bin, weights_after_step.bin) and its manifest. */
typedef struct {
    json_t *man;
    char *data;
    size_t len;
} blob;

static void blob_open(blob *bl, const char *bin, const char *manifest) {
    char rel[256];
    snprintf(rel, sizeof rel, "cpmbee/golden/train/%s", manifest);
    json_error_t err;
    bl->man = json_load_file(tu_shared(rel), 0, &err);
    if (!bl->man) fail_msg("%s: %s", rel, err.text);
    snprintf(rel, sizeof rel, "cpmbee/golden/train/%s", bin);
    if (bee_read_file(tu_shared(rel), &bl->data, &bl->len)) fail_msg("%s", bee_error_message());
}

static void blob_close(blob *bl) {
    json_decref(bl->man);
    free(bl->data);
}

/* Entry e of the manifest: our tensor index, golden values, element count. */
static int blob_tensor(const bee_train_model *t, const blob *bl, size_t e, const float **vals, size_t *n, const char **up) {
    json_t *ent = json_array_get(bl->man, e);
    *up = json_string_value(json_object_get(ent, "name"));
    char name[96];
    assert_int_equal(bee_convert_tensor_name(*up, name, sizeof name), 0);
    int k = bee_train_find_tensor(t, name);
    if (k < 0) fail_msg("golden tensor %s (%s) not in the training model", *up, name);
    size_t off = (size_t)json_integer_value(json_object_get(ent, "offset_bytes"));
    size_t nb = (size_t)json_integer_value(json_object_get(ent, "nbytes"));
    *n = nb / sizeof(float);
    assert_int_equal(*n, t->tensors[k].rows * t->tensors[k].cols);
    assert_true(off + nb <= bl->len);
    *vals = (const float *)(bl->data + off);
    return k;
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

static void check_grads(const bee_train_model *t, const blob *g) {
    double worst = 0;
    size_t n_t = json_array_size(g->man);
    assert_int_equal(n_t, t->n_tensors);
    for (size_t e = 0; e < n_t; e++) {
        const float *gv;
        size_t n;
        const char *up;
        int k = blob_tensor(t, g, e, &gv, &n, &up);
        const float *ours = t->g.mem + t->tensors[k].offset;
        double d = 0, mg = max_abs(gv, n);
        for (size_t i = 0; i < n; i++) d = fabs(ours[i] - gv[i]) > d || isnan(ours[i]) ? fabs(ours[i] - gv[i]) : d;
        double rel = d / mg;
        worst = rel > worst ? rel : worst;
        fprintf(stderr, "  grad %-60s max|d| %.3g  max|g| %.3g  rel %.3g\n", up, d, mg, rel);
        if (!(rel <= 1e-4)) fail_msg("gradient of %s: max|d| %.3g > 1e-4 * max|g| (%.3g)", up, d, mg);
    }
    fprintf(stderr, "  worst gradient max|d| / max|g| = %.3g\n", worst);
}

/* Weights after one step: |d| <= 2e-5 except where the golden gradient is
 * within torch's own fp32 error of 0 (1e-8 <= |g| < 2e-6 max|g|; README §5
 * measures that error at <= 1.6e-6 max|g|): there lr g / (|g| + eps) turns
 * rounding noise of g into a weight change of up to 2 lr, so those entries
 * are only held to 2 lr. Below 1e-8 the update is ~g / eps and well
 * conditioned, so those are checked. all_entries: no exclusion
 * (used when the golden gradient itself was fed to the optimizer). */
static void check_step(const bee_train_model *t, const blob *w, const blob *g, int all_entries, const char *what) {
    size_t n_t = json_array_size(w->man), n_noise = 0;
    double worst = 0;
    for (size_t e = 0; e < n_t; e++) {
        const float *wv, *gv;
        size_t n, n2;
        const char *up, *up2;
        int k = blob_tensor(t, w, e, &wv, &n, &up);
        int k2 = blob_tensor(t, g, e, &gv, &n2, &up2);
        assert_int_equal(k, k2);
        const float *ours = t->w.mem + t->tensors[k].offset;
        double noise = 2e-6 * max_abs(gv, n2), d = 0;
        for (size_t i = 0; i < n; i++) {
            double di = fabs(ours[i] - wv[i]);
            if (!(di <= 2.1e-3)) fail_msg("%s[%zu]: %.9g vs golden %.9g", up, i, ours[i], wv[i]);
            if (!all_entries && fabs(gv[i]) < noise && fabs(gv[i]) >= 1e-8 && di > 2e-5) {
                n_noise++;
                continue;
            }
            d = di > d ? di : d;
        }
        worst = d > worst ? d : worst;
        if (!(d <= 2e-5)) fail_msg("%s, %s: max|d| %.3g > 2e-5", what, up, d);
    }
    fprintf(stderr, "  %s: max|d| %.3g (%zu noise-level entries beyond 2e-5, held to 2 lr)\n", what, worst, n_noise);
}

/* AdamW alone: the golden gradient through our optimizer from the golden weights. */
static void check_adamw_alone(const bee_model *m, const blob *w, const blob *g) {
    bee_train_model t;
    if (bee_train_model_from(m, &t)) fail_msg("%s", bee_error_message());
    for (size_t e = 0; e < json_array_size(g->man); e++) {
        const float *gv;
        size_t n;
        const char *up;
        int k = blob_tensor(&t, g, e, &gv, &n, &up);
        memcpy(t.g.mem + t.tensors[k].offset, gv, n * sizeof *gv);
    }
    bee_adamw opt;
    assert_int_equal(bee_adamw_init(&opt, &t), 0);
    bee_adamw_cfg cfg = {0.9, 0.95, 1e-8, 0.1};
    bee_adamw_step(&opt, &t, &cfg, 1e-3);
    check_step(&t, w, g, 1, "AdamW on the golden gradient");
    bee_adamw_free(&opt);
    bee_train_model_free(&t);
}

static void test_golden(void **state) {
    (void)state;
    bee_model *m = golden_load_tiny();
    if (!m) skip();
    bee_train_model t;
    if (bee_train_model_from(m, &t)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_train_set_threads(&t, 2), 0);
    owned_batch ob;
    golden_batch(&ob);
    size_t T = 128, d = t.hp.dim;
    float *hidden = malloc(T * d * sizeof *hidden), *lse = malloc(T * sizeof *lse), *nll = malloc(T * sizeof *nll);
    bee_train_trace tr = {hidden, lse, nll};
    bee_train_result res;
    if (bee_train_forward_backward(&t, &ob.b, 1, 1.0f, &res, &tr)) fail_msg("%s", bee_error_message());
    assert_int_equal(res.n_targets, 18);
    expect_close("hidden", hidden, T * d, 1e-4);
    /* README §1 self-check: the en instance packed at row 0 position 20 and
     * alone in row 1 sees exactly the same keys, so its states are identical */
    assert_int_equal(memcmp(hidden + 20 * d, hidden + 64 * d, 36 * d * sizeof *hidden), 0);
    assert_int_equal(memcmp(lse + 20, lse + 64, 36 * sizeof *lse), 0);
    expect_close("logsumexp", lse, T, 1e-4);
    expect_close("token_nll", nll, T, 1e-4);
    double gl = golden_scalar("loss");
    fprintf(stderr, "  loss %.9f golden %.9f |d| %.3g\n", res.loss, gl, fabs(res.loss - gl));
    assert_true(fabs(res.loss - gl) <= 1e-5);

    blob g, w;
    blob_open(&g, "grads.bin", "grads_manifest.json");
    check_grads(&t, &g);
    fprintf(stderr, "  global grad norm %.6f (golden 1.5348)\n", bee_grad_norm(&t));
    assert_true(fabs(bee_grad_norm(&t) - 1.5348108880145412) <= 1e-4);

    bee_adamw opt;
    assert_int_equal(bee_adamw_init(&opt, &t), 0);
    bee_adamw_cfg cfg = {0.9, 0.95, 1e-8, 0.1};
    bee_adamw_step(&opt, &t, &cfg, 1e-3);
    blob_open(&w, "weights_after_step.bin", "weights_after_step_manifest.json");
    check_step(&t, &w, &g, 0, "weights after one AdamW step");
    check_adamw_alone(m, &w, &g);
    bee_model_free(m);

    bee_train_result after;
    if (bee_train_forward_backward(&t, &ob.b, 0, 1.0f, &after, NULL)) fail_msg("%s", bee_error_message());
    double ga = golden_scalar("loss_after_step");
    fprintf(stderr, "  loss after step %.9f golden %.9f |d| %.3g\n", after.loss, ga, fabs(after.loss - ga));
    assert_true(fabs(after.loss - ga) <= 1e-4);

    blob_close(&g), blob_close(&w);
    bee_adamw_free(&opt);
    free(hidden), free(lse), free(nll);
    owned_batch_free(&ob);
    bee_train_model_free(&t);
}

/* Our packer on the golden examples (zh, en, en; 2 rows of 64) reproduces
 * upstream's _MixedDatasetBatchPacker batch and targets exactly. */
static void expect_same_i32(const char *name, const int32_t *a, const uint8_t *b, size_t n) {
    size_t gn;
    int32_t *g = npy_i32(name, &gn);
    assert_int_equal(gn, n);
    for (size_t i = 0; i < n; i++) {
        int32_t v = a ? a[i] : b[i];
        if (v != g[i]) fail_msg("%s[%zu] = %d, upstream %d", name, i, v, g[i]);
    }
    free(g);
}

static void test_golden_packing(void **state) {
    (void)state;
    bee_model *m = golden_load_tiny();
    if (!m) skip();
    const char *jl = "{\"input\": \"今天天气真好，\", \"<ans>\": \"出去玩吧。\"}\n"
                     "{\"input\": \"Beijing is the capital of China.\", \"prompt\": \"translate to Chinese\", "
                     "\"<ans>\": \"北京是中国的首都。\"}\n"
                     "{\"input\": \"Beijing is the capital of China.\", \"prompt\": \"translate to Chinese\", "
                     "\"<ans>\": \"北京是中国的首都。\"}\n";
    tu_write(tu_tmp("golden.jsonl"), jl, strlen(jl));
    bee_train_data d;
    if (bee_train_data_load(m->tok, tu_tmp("golden.jsonl"), 0, 64, &d)) fail_msg("%s", bee_error_message());
    uint32_t order[3] = {0, 1, 2};
    size_t cur = 0;
    bee_packed_batch pb;
    if (bee_train_pack(&d, m->tok, order, 3, &cur, 2, 64, &pb)) fail_msg("%s", bee_error_message());
    assert_int_equal(cur, 3);
    const bee_train_batch *b = &pb.b;
    expect_same_i32("in_inputs", b->inputs, NULL, 128);
    expect_same_i32("in_inputs_sub", b->inputs_sub, NULL, 128);
    expect_same_i32("in_length", b->length, NULL, 2);
    expect_same_i32("in_context", NULL, b->context, 128);
    expect_same_i32("in_sample_ids", b->sample_ids, NULL, 128);
    expect_same_i32("in_num_segments", b->num_segments, NULL, 128);
    expect_same_i32("in_segment_ids", b->segment_ids, NULL, 128);
    expect_same_i32("in_segment_rel_offset", b->segment_rel_offset, NULL, 128);
    expect_same_i32("in_spans", b->spans, NULL, 128);
    assert_int_equal(b->n_seg_rel, 74);
    expect_same_i32("in_segment_rel", b->segment_rel, NULL, 148);
    expect_same_i32("in_ext_ids", b->ext_ids, NULL, b->n_ext);
    expect_same_i32("in_ext_sub", b->ext_sub, NULL, b->n_ext);
    expect_same_i32("targets", b->targets, NULL, 128);
    fprintf(stderr, "  packed batch identical to upstream (2 x 64, 18 targets)\n");
    bee_packed_batch_free(&pb);
    bee_train_data_free(&d);
    bee_model_free(m);
}

/* ================================================================ random model and batch */

static bee_hparams small_hp(void) {
    bee_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = 40, hp.dim = 16, hp.n_heads = 2, hp.dim_head = 8, hp.dim_ff = 24, hp.n_layers = 2;
    hp.n_buckets = 16, hp.n_seg_buckets = 8, hp.max_distance = 20;
    hp.eps = 1e-6f, hp.rope_base = 10000.0f, hp.rope_scale = 16.0f, hp.residual_scale = 1.05f;
    return hp;
}

#define RB 2
#define RL 12
#define RREL 18

typedef struct {
    bee_train_batch b;
    int32_t in[RB * RL], sub[RB * RL], len[RB], sid[RB * RL], nseg[RB * RL], seg[RB * RL], off[RB * RL];
    int32_t span[RB * RL], rel[RB * RREL], ext_ids[2], ext_sub[2], tgt[RB * RL];
    uint8_t ctx[RB * RL];
} rand_batch;

static uint32_t lcg(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Segment relations of an n-segment instance: 0 on the diagonal, 2.. off it. */
static void fill_rel(int32_t *rel, int n, uint32_t *rng, int nsb) {
    for (int a = 0; a < n; a++)
        for (int c = 0; c < n; c++) rel[a * n + c] = a == c ? 0 : 2 + (int32_t)(lcg(rng) % (uint32_t)(nsb - 1));
}

/* Token j of row i: instance / sample layout, segments of ~3 tokens. */
static void put_token(rand_batch *r, int i, int j, int span, int sid, int first, int nseg, int off, uint32_t *rng) {
    int x = i * RL + j, seg = (j - first) / 3;
    r->in[x] = (int32_t)(lcg(rng) % 40);
    r->sub[x] = lcg(rng) % 4 == 0 ? (int32_t)(1 + lcg(rng) % 2) : 0;
    r->span[x] = span, r->sid[x] = sid, r->nseg[x] = nseg, r->off[x] = off;
    r->seg[x] = seg < nseg ? seg : nseg - 1;
    r->ctx[x] = (uint8_t)(sid != 0 || seg < nseg - 1);
}

/* Row 0: two spans (5 + 5 tokens) then padding; row 1: a main instance
 * (6 tokens) and an in-context sample (3 tokens, sid 1) then padding. Some
 * tokens have subscripts, the ext table has two entries and targets hit
 * vocabulary and ext columns. */
static void random_batch(rand_batch *r, uint32_t seed) {
    memset(r, 0, sizeof *r);
    uint32_t rng = seed;
    for (int j = 0; j < 5; j++) put_token(r, 0, j, 0, 0, 0, 2, 0, &rng);
    for (int j = 5; j < 10; j++) put_token(r, 0, j, 1, 0, 5, 2, 4, &rng);
    for (int j = 0; j < 6; j++) put_token(r, 1, j, 0, 0, 0, 2, 0, &rng);
    for (int j = 6; j < 9; j++) put_token(r, 1, j, 0, 1, 6, 1, 4, &rng);
    r->len[0] = 10, r->len[1] = 9;
    fill_rel(r->rel, 2, &rng, 8), fill_rel(r->rel + 4, 2, &rng, 8);
    fill_rel(r->rel + RREL, 2, &rng, 8), fill_rel(r->rel + RREL + 4, 1, &rng, 8);
    r->ext_ids[0] = 3, r->ext_sub[0] = 1, r->ext_ids[1] = 5, r->ext_sub[1] = 2;
    for (int x = 0; x < RB * RL; x++) {
        int j = x % RL, i = x / RL;
        r->tgt[x] = j < r->len[i] && !r->ctx[x] ? (int32_t)(lcg(&rng) % 42) : -100;
    }
    r->tgt[3] = 40, r->tgt[RL + 2] = 41; /* ext columns, also on context tokens */
    r->b = (bee_train_batch){RB, RL, r->in, r->sub, r->len, r->ctx, r->sid, r->nseg, r->seg, r->off, r->span,
                             r->rel, RREL, r->ext_ids, r->ext_sub, 2, r->tgt};
}


/* ================================================================ finite differences */


/* Compares analytic gradients g (a copy of t->g) with finite differences on
 * the 3 largest-|g| and 3 random entries of every tensor; returns the number of
 * entries outside |fd - g| <= 3e-3 |g| + 2e-4 max|g| + 2e-5 (measured
 * errors of the largest entries are ~1e-4 |g|). */
static int fd_check(bee_train_model *t, const bee_train_batch *b, const float *g, int verbose) {
    int bad = 0;
    uint32_t rng = 7;
    double h = 1e-2;
    for (size_t k = 0; k < t->n_tensors; k++) {
        const bee_ptensor *p = &t->tensors[k];
        size_t n = (size_t)(p->rows * p->cols), pick[6], np = 0;
        const float *gk = g + p->offset;
        double mg = max_abs(gk, n), worst = 0;
        for (int r = 0; r < 3; r++) { /* largest entries not yet picked */
            size_t best = 0;
            double bv = -1;
            for (size_t i = 0; i < n; i++) {
                int used = 0;
                for (size_t q = 0; q < np; q++) used |= pick[q] == i;
                if (!used && fabs(gk[i]) > bv) bv = fabs(gk[i]), best = i;
            }
            pick[np++] = best;
        }
        for (int r = 0; r < 3; r++) pick[np++] = lcg(&rng) % n;
        for (size_t q = 0; q < np; q++) {
            double fd = tu_fd_grad(t, b, t->w.mem + p->offset + pick[q], h), an = gk[pick[q]];
            double err = fabs(fd - an), tol = 3e-3 * fabs(an) + 2e-4 * mg + 2e-5;
            worst = err / (fabs(an) + 1e-12) > worst && q < 3 ? err / (fabs(an) + 1e-12) : worst;
            if (!(err <= tol)) {
                bad++;
                if (verbose) fprintf(stderr, "  FD %s[%zu]: analytic %.6g, numeric %.6g\n", p->name, pick[q], an, fd);
            }
        }
        if (verbose) fprintf(stderr, "  FD %-22s max|g| %.3g  worst rel err (top entries) %.2g\n", p->name, mg, worst);
        if (mg == 0) bad++; /* every tensor must receive a gradient from this batch */
    }
    return bad;
}

static void run_fd(const uint8_t *mask, uint64_t seed) {
    bee_hparams hp = small_hp();
    bee_train_model t;
    if (bee_train_model_random(&hp, mask, seed, &t)) fail_msg("%s", bee_error_message());
    rand_batch rb;
    random_batch(&rb, (uint32_t)seed);
    bee_train_result res;
    if (bee_train_forward_backward(&t, &rb.b, 1, 1.0f, &res, NULL)) fail_msg("%s", bee_error_message());
    assert_true(res.n_targets > 4);
    float *g = malloc(t.n_params * sizeof *g);
    memcpy(g, t.g.mem, t.n_params * sizeof *g);
    int bad = fd_check(&t, &rb.b, g, 1);
    if (bad) fail_msg("%d gradient entries disagree with finite differences", bad);
    /* the check can fail: a gradient 3%% off in one tensor is caught */
    int k = bee_train_find_tensor(&t, mask ? "blk.0.attn_q.weight" : "blk.1.ffn_up.weight");
    assert_true(k >= 0);
    for (size_t i = 0; i < t.tensors[k].rows * t.tensors[k].cols; i++) g[t.tensors[k].offset + i] *= 1.03f;
    assert_true(fd_check(&t, &rb.b, g, 0) > 0);
    free(g);
    bee_train_model_free(&t);
}

static void test_finite_differences(void **state) {
    (void)state;
    run_fd(NULL, 11);
}

static void test_finite_differences_pruned(void **state) {
    (void)state;
    uint8_t mask[4] = {0, 1, 1, 0}; /* layer 0 attention only, layer 1 FFN only */
    run_fd(mask, 12);
}

/* ================================================================ error paths */

static void expect_fail(bee_train_model *t, const bee_train_batch *b, const char *needle) {
    bee_train_result res;
    bee_error_clear();
    int rc = bee_train_forward_backward(t, b, 1, 1.0f, &res, NULL);
    if (rc != -1) fail_msg("expected a failure mentioning '%s'", needle);
    if (!strstr(bee_error_message(), needle)) fail_msg("message '%s' lacks '%s'", bee_error_message(), needle);
}

static void test_bad_batches(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    bee_train_model t;
    assert_int_equal(bee_train_model_random(&hp, NULL, 3, &t), 0);
    rand_batch r;
    random_batch(&r, 5);
    bee_train_batch b = r.b;
    b.B = 0, expect_fail(&t, &b, "batch shape");
    b = r.b, b.spans = NULL, expect_fail(&t, &b, "missing");
    b = r.b, b.segment_rel = NULL, expect_fail(&t, &b, "segment_rel");
    r.len[1] = RL + 1, expect_fail(&t, &r.b, "length[1]"), r.len[1] = 9;
    r.in[4] = 40, expect_fail(&t, &r.b, "inputs[0][4]"), r.in[4] = 1;
    r.sub[5] = -1, expect_fail(&t, &r.b, "inputs_sub[0][5]"), r.sub[5] = 0;
    r.tgt[7] = 42, expect_fail(&t, &r.b, "targets[0][7]");
    r.tgt[7] = -5, expect_fail(&t, &r.b, "targets[0][7]"), r.tgt[7] = -100;
    r.ext_ids[1] = 99, expect_fail(&t, &r.b, "ext table"), r.ext_ids[1] = 5;
    r.off[2] = 1000, expect_fail(&t, &r.b, "segment_rel index"), r.off[2] = 0;
    r.rel[2] = 9, expect_fail(&t, &r.b, "segment buckets"), r.rel[2] = 2; /* answer -> context pair */
    /* a random model has no vocabulary to write */
    assert_int_equal(bee_train_model_write(&t, tu_tmp("x.gguf"), NULL), -1);
    /* the repaired batch works again */
    bee_train_result res;
    assert_int_equal(bee_train_forward_backward(&t, &r.b, 1, 1.0f, &res, NULL), 0);
    bee_train_model_free(&t);
}

/* A batch with no target: loss 0, no gradient, no NaN. */
static void test_no_targets(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    bee_train_model t;
    assert_int_equal(bee_train_model_random(&hp, NULL, 3, &t), 0);
    rand_batch r;
    random_batch(&r, 5);
    for (int x = 0; x < RB * RL; x++) r.tgt[x] = -100;
    bee_train_result res;
    assert_int_equal(bee_train_forward_backward(&t, &r.b, 1, 1.0f, &res, NULL), 0);
    assert_int_equal(res.n_targets, 0);
    assert_true(res.loss == 0 && bee_grad_norm(&t) == 0);
    bee_train_model_free(&t);
}

/* ================================================================ determinism, accumulation */

static void test_threads_deterministic(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    hp.dim = 64, hp.dim_ff = 96, hp.n_heads = 4, hp.dim_head = 16;
    bee_train_model a, b;
    assert_int_equal(bee_train_model_random(&hp, NULL, 9, &a), 0);
    assert_int_equal(bee_train_model_random(&hp, NULL, 9, &b), 0);
    assert_int_equal(bee_train_set_threads(&b, 3), 0);
    rand_batch r;
    random_batch(&r, 21);
    bee_train_result ra, rb;
    assert_int_equal(bee_train_forward_backward(&a, &r.b, 1, 1.0f, &ra, NULL), 0);
    assert_int_equal(bee_train_forward_backward(&b, &r.b, 1, 1.0f, &rb, NULL), 0);
    assert_true(ra.loss == rb.loss);
    assert_int_equal(memcmp(a.g.mem, b.g.mem, a.n_params * sizeof(float)), 0);
    /* two half-weighted micro-batches accumulate to the full gradient */
    bee_train_zero_grad(&b);
    assert_int_equal(bee_train_forward_backward(&b, &r.b, 1, 0.5f, &rb, NULL), 0);
    assert_int_equal(bee_train_forward_backward(&b, &r.b, 1, 0.5f, &rb, NULL), 0);
    double mx = 0, md = 0;
    for (size_t i = 0; i < a.n_params; i++) {
        mx = fabs(a.g.mem[i]) > mx ? fabs(a.g.mem[i]) : mx;
        md = fabs(a.g.mem[i] - b.g.mem[i]) > md ? fabs(a.g.mem[i] - b.g.mem[i]) : md;
    }
    assert_true(md <= 1e-6 * mx);
    bee_train_model_free(&a);
    bee_train_model_free(&b);
}

/* ================================================================ optimizer helpers */

static void test_schedule_and_clip(void **state) {
    (void)state;
    bee_lr_schedule s = {1e-3, 1e-4, 10, 110};
    assert_true(fabs(bee_lr_at(&s, 0) - 1e-4) < 1e-12);
    assert_true(fabs(bee_lr_at(&s, 9) - 1e-3) < 1e-12);
    assert_true(fabs(bee_lr_at(&s, 10) - 1e-3) < 1e-12);
    assert_true(fabs(bee_lr_at(&s, 60) - 5.5e-4) < 1e-12); /* half way: (max + min) / 2 */
    assert_true(fabs(bee_lr_at(&s, 110) - 1e-4) < 1e-12);
    assert_true(fabs(bee_lr_at(&s, 500) - 1e-4) < 1e-12);
    for (uint64_t k = 11; k < 110; k++) assert_true(bee_lr_at(&s, k) <= bee_lr_at(&s, k - 1));

    bee_hparams hp = small_hp();
    bee_train_model t;
    assert_int_equal(bee_train_model_random(&hp, NULL, 3, &t), 0);
    for (size_t i = 0; i < t.n_params; i++) t.g.mem[i] = (i % 2 ? 1.0f : -1.0f) * 0.01f;
    double n0 = bee_grad_norm(&t);
    assert_true(fabs(n0 - 0.01 * sqrt((double)t.n_params)) < 1e-6 * n0);
    assert_true(bee_grad_clip(&t, 1e9) == n0); /* no-op below the limit */
    assert_true(fabs(bee_grad_norm(&t) - n0) < 1e-12);
    assert_true(n0 > 0.1);
    assert_true(fabs(bee_grad_clip(&t, 0.1) - n0) < 1e-9);
    assert_true(fabs(bee_grad_norm(&t) - 0.1) < 1e-5);

    /* AdamW, step 2 by hand (torch formula) for one entry */
    bee_adamw o;
    assert_int_equal(bee_adamw_init(&o, &t), 0);
    bee_adamw_cfg c = {0.9, 0.95, 1e-8, 0.1};
    float p0 = t.w.mem[7];
    t.g.mem[7] = 0.5f;
    bee_adamw_step(&o, &t, &c, 1e-2);
    t.g.mem[7] = -0.25f;
    bee_adamw_step(&o, &t, &c, 1e-2);
    double p = p0, m = 0, v = 0, g[2] = {0.5, -0.25};
    for (int k = 1; k <= 2; k++) {
        p *= 1 - 1e-2 * 0.1;
        m = 0.9 * m + 0.1 * g[k - 1], v = 0.95 * v + 0.05 * g[k - 1] * g[k - 1];
        p -= 1e-2 / (1 - pow(0.9, k)) * m / (sqrt(v) / sqrt(1 - pow(0.95, k)) + 1e-8);
    }
    assert_true(fabs(t.w.mem[7] - p) < 1e-6);
    assert_int_equal(o.step, 2);
    bee_adamw_free(&o);
    bee_train_model_free(&t);
}

/* ================================================================ GGUF round trip */

static void test_write_roundtrip(void **state) {
    (void)state;
    bee_model *m = golden_load_tiny();
    if (!m) skip();
    bee_train_model t, u;
    assert_int_equal(bee_train_model_from(m, &t), 0);
    bee_model_free(m);
    t.w.tok_embd[5] += 0.25f, t.w.layers[1].w_down[3] -= 1.0f; /* "trained" */
    if (bee_train_model_write(&t, tu_tmp("trained.gguf"), "trained")) fail_msg("%s", bee_error_message());
    if (bee_model_load(tu_tmp("trained.gguf"), &m)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_train_model_from(m, &u), 0);
    assert_int_equal(u.n_params, t.n_params);
    assert_int_equal(memcmp(u.w.mem, t.w.mem, t.n_params * sizeof(float)), 0);
    assert_string_equal(m->name, "trained");
    bee_model_free(m);
    bee_train_model_free(&t);
    bee_train_model_free(&u);
}

/* ================================================================ checkpoints */

static void test_checkpoint(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    bee_train_model t, u;
    bee_adamw o, p;
    assert_int_equal(bee_train_model_random(&hp, NULL, 3, &t), 0);
    assert_int_equal(bee_train_model_random(&hp, NULL, 4, &u), 0);
    assert_int_equal(bee_adamw_init(&o, &t), 0);
    assert_int_equal(bee_adamw_init(&p, &u), 0);
    rand_batch r;
    random_batch(&r, 5);
    bee_train_result res;
    assert_int_equal(bee_train_forward_backward(&t, &r.b, 1, 1.0f, &res, NULL), 0);
    bee_adamw_cfg c = {0.9, 0.95, 1e-8, 0.1};
    bee_adamw_step(&o, &t, &c, 1e-3);
    bee_train_state st = {0, 2, 7, 99, 12}, back;
    const char *path = tu_tmp("run.ckpt");
    assert_int_equal(bee_train_ckpt_save(path, &t, &o, &st), 0);
    assert_int_equal(bee_train_ckpt_load(path, &u, &p, &back), 0);
    assert_int_equal(back.step, 1);
    assert_int_equal(back.epoch, 2), assert_int_equal(back.cursor, 7), assert_int_equal(back.seed, 99);
    assert_int_equal(p.step, 1);
    size_t nb = t.n_params * sizeof(float);
    assert_int_equal(memcmp(u.w.mem, t.w.mem, nb), 0);
    assert_int_equal(memcmp(p.m.mem, o.m.mem, nb), 0);
    assert_int_equal(memcmp(p.v.mem, o.v.mem, nb), 0);
    /* truncated, foreign and other-shape files are refused */
    char *buf;
    size_t len;
    assert_int_equal(bee_read_file(path, &buf, &len), 0);
    tu_write(tu_tmp("short.ckpt"), buf, len - 4);
    assert_int_equal(bee_train_ckpt_load(tu_tmp("short.ckpt"), &u, &p, &back), -1);
    assert_non_null(strstr(bee_error_message(), "truncated"));
    tu_write(tu_tmp("junk.ckpt"), "not a checkpoint at all, really", 31);
    assert_int_equal(bee_train_ckpt_load(tu_tmp("junk.ckpt"), &u, &p, &back), -1);
    assert_non_null(strstr(bee_error_message(), "not a bee training checkpoint"));
    free(buf);
    bee_train_model w;
    bee_adamw q;
    hp.dim_ff = 32;
    assert_int_equal(bee_train_model_random(&hp, NULL, 3, &w), 0);
    assert_int_equal(bee_adamw_init(&q, &w), 0);
    assert_int_equal(bee_train_ckpt_load(path, &w, &q, &back), -1);
    assert_non_null(strstr(bee_error_message(), "parameters"));
    bee_adamw_free(&o), bee_adamw_free(&p), bee_adamw_free(&q);
    bee_train_model_free(&t), bee_train_model_free(&u), bee_train_model_free(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_golden_packing),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_finite_differences_pruned),
        cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_no_targets),
        cmocka_unit_test(test_threads_deterministic),
        cmocka_unit_test(test_schedule_and_clip),
        cmocka_unit_test(test_write_roundtrip),
        cmocka_unit_test(test_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
