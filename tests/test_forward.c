/* Forward-pass parity with the upstream reference on the tiny golden model:
 * every intermediate array (<= 1e-4), logits (<= 1e-3, same argmax), KV-cache
 * decode steps, the training-layout forward, a batch of all three examples in
 * one call, the fp16-rounded inv_freq variant and a pruned (mask_modules) model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "golden.h"
#include "model/perplexity.h"
#include "testutil.h"
#include "util/error.h"
#include "util/types.h"

#define TOL_INTER 1e-4
#define TOL_LOGIT 1e-3

static const char *k_examples[] = {"zh", "en", "mixed"};


typedef struct {
    bee_gen_input in;
    bee_gen_batch b;
    json_t *rec;
} example;

static void example_open(example *e, const bee_model *m, const char *name) {
    e->rec = golden_record(name);
    if (bee_gen_input_init(m->tok, json_object_get(e->rec, "data"), &e->in)) fail_msg("%s", bee_error_message());
    if (bee_gen_batch_init(&e->b, m, &e->in, 1)) fail_msg("%s", bee_error_message());
}

static void example_close(example *e) {
    bee_gen_batch_free(&e->b);
    bee_gen_input_free(&e->in);
    json_decref(e->rec);
}

static bee_token *context_tokens(const bee_gen_input *in) {
    bee_token *t = calloc(in->ids.n, sizeof *t);
    for (size_t i = 0; i < in->ids.n; i++)
        t[i] = (bee_token){in->ids.v[i], in->subs.v[i], (int32_t)i, in->segs.v[i], 0, in->enc.n_seg, 0, 1};
    return t;
}

static void expect_close(const char *ex, const char *name, const float *a, size_t n, double tol) {
    bee_npy g;
    golden_npy(ex, name, &g);
    double d = golden_max_diff(a, n, &g);
    bee_npy_free(&g);
    fprintf(stderr, "  %s/%s: max abs diff %.3g\n", ex, name, d);
    if (!(d <= tol)) fail_msg("%s/%s: max abs diff %.3g > %.1g", ex, name, d, tol);
}

static size_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void expect_logits(const char *ex, const char *name, const float *a, size_t n) {
    expect_close(ex, name, a, n, TOL_LOGIT);
    bee_npy g;
    golden_npy(ex, name, &g);
    size_t ga = 0;
    for (size_t i = 1; i < g.count; i++)
        if (bee_npy_get_f(&g, i) > bee_npy_get_f(&g, ga)) ga = i;
    bee_npy_free(&g);
    assert_int_equal(argmax(a, n), ga);
}

/* ---------------------------------------------------------------- prefill */

static void check_int_array(const char *ex, const char *name, const int32_t *a, const uint8_t *b, size_t n) {
    bee_npy g;
    golden_npy(ex, name, &g);
    assert_int_equal(g.count, n);
    for (size_t i = 0; i < n; i++) {
        int64_t got = a ? a[i] : b[i];
        if (got != bee_npy_get_i(&g, i)) fail_msg("%s/%s[%zu] = %lld, golden %lld", ex, name, i, (long long)got,
                                                  (long long)bee_npy_get_i(&g, i));
    }
    bee_npy_free(&g);
}

static void check_all_positions(const char *ex, const bee_model *m, const example *e, const bee_token *toks, size_t n) {
    size_t W = e->b.width;
    float *all = malloc(n * W * sizeof *all);
    bee_seq s;
    assert_int_equal(bee_seq_init(&s, m, 0, e->in.enc.seg_rel, (size_t)e->in.enc.n_seg * e->in.enc.n_seg), 0);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {toks};
    assert_int_equal(bee_forward(m, sp, tp, &n, 1, &e->b.ext, BEE_LOGITS_ALL, all, NULL), 0);
    bee_npy lse, ids, vals;
    golden_npy(ex, "prefill_logsumexp", &lse);
    golden_npy(ex, "prefill_top16_ids", &ids);
    golden_npy(ex, "prefill_top16_values", &vals);
    for (size_t t = 0; t < n; t++) {
        const float *x = all + t * W;
        double mx = x[argmax(x, W)], sum = 0;
        for (size_t v = 0; v < W; v++) sum += exp(x[v] - mx);
        assert_true(fabs(mx + log(sum) - bee_npy_get_f(&lse, t)) <= TOL_LOGIT);
        for (size_t k = 0; k < 16; k++) {
            int64_t id = bee_npy_get_i(&ids, t * 16 + k);
            assert_true(fabs(x[id] - bee_npy_get_f(&vals, t * 16 + k)) <= TOL_LOGIT);
        }
        assert_int_equal(argmax(x, W), bee_npy_get_i(&ids, t * 16));
    }
    bee_npy_free(&lse), bee_npy_free(&ids), bee_npy_free(&vals);
    bee_seq_free(&s);
    free(all);
}

static void run_prefill(const char *ex) {
    const bee_model *m = golden_tiny;
    example e;
    example_open(&e, m, ex);
    size_t n = e.in.ids.n, d = m->hp.dim;
    bee_token *toks = context_tokens(&e.in);
    bee_seq s;
    assert_int_equal(bee_seq_init(&s, m, 0, e.in.enc.seg_rel, (size_t)e.in.enc.n_seg * e.in.enc.n_seg), 0);
    bee_trace tr = {.enabled = 1};
    float *logits = malloc(e.b.width * sizeof *logits);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {toks};
    if (bee_forward(m, sp, tp, &n, 1, &e.b.ext, BEE_LOGITS_LAST, logits, &tr)) fail_msg("%s", bee_error_message());
    expect_close(ex, "prefill_embedding", tr.embedding, n * d, TOL_INTER);
    check_int_array(ex, "prefill_rel_buckets", tr.rel_bucket, NULL, n * n);
    check_int_array(ex, "prefill_attention_mask", NULL, tr.mask, n * n);
    expect_close(ex, "prefill_position_bias", tr.pos_bias, m->hp.n_heads * n * n, TOL_INTER);
    expect_close(ex, "prefill_layer0_out", tr.layer_out[0], n * d, TOL_INTER);
    expect_close(ex, "prefill_layer1_out", tr.layer_out[1], n * d, TOL_INTER);
    expect_close(ex, "prefill_hidden", tr.hidden, n * d, TOL_INTER);
    expect_close(ex, "prefill_kv_layer0_k", tr.k0, n * d, TOL_INTER);
    expect_close(ex, "prefill_kv_layer0_v", tr.v0, n * d, TOL_INTER);
    expect_logits(ex, "prefill_logits_lastpos", logits, e.b.width);
    check_all_positions(ex, m, &e, toks, n);
    bee_trace_free(&tr, m->hp.n_layers);
    free(logits);
    free(toks);
    bee_seq_free(&s);
    example_close(&e);
}

static void test_prefill(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    for (size_t i = 0; i < 3; i++) run_prefill(k_examples[i]);
}

/* ---------------------------------------------------------------- decode */

static void run_incremental(const char *ex, double tol) {
    const bee_model *m = golden_tiny;
    example e;
    example_open(&e, m, ex);
    bee_seq s;
    assert_int_equal(bee_gen_prefill(&e.b, 0, &s), 0);
    json_t *steps = json_object_get(e.rec, "incremental_steps");
    size_t ns = json_array_size(steps), W = e.b.width;
    float *all = malloc(ns * W * sizeof *all);
    for (size_t i = 0; i < ns; i++) {
        json_t *st = json_array_get(steps, i);
        bee_token t = {(int32_t)json_integer_value(json_object_get(st, "fed_id")),
                       (int32_t)json_integer_value(json_object_get(st, "fed_sub")),
                       (int32_t)json_integer_value(json_object_get(st, "fed_position")),
                       (int32_t)json_integer_value(json_object_get(st, "fed_segment")), 0, e.in.enc.n_seg, 0, 1};
        bee_seq *sp[1] = {&s};
        const bee_token *tp[1] = {&t};
        size_t one = 1;
        assert_int_equal(bee_forward(m, sp, tp, &one, 1, &e.b.ext, BEE_LOGITS_LAST, all + i * W, NULL), 0);
        assert_int_equal(argmax(all + i * W, W), json_integer_value(json_object_get(st, "argmax_next")));
    }
    expect_close(ex, "incremental_logits", all, ns * W, tol);
    free(all);
    bee_seq_free(&s);
    example_close(&e);
}

static void test_incremental(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    for (size_t i = 0; i < 3; i++) run_incremental(k_examples[i], TOL_LOGIT);
}

/* The tiled prefill attention (long runs of new queries) and the per-query
 * path agree to float rounding on every golden example (first half context,
 * second half causal like answer tokens). */
static void test_attention_paths(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    for (size_t i = 0; i < 3; i++) {
        example e;
        example_open(&e, golden_tiny, k_examples[i]);
        size_t n = e.in.ids.n, W = e.b.width;
        bee_token *tk = context_tokens(&e.in);
        for (size_t k = n / 2; k < n; k++) tk[k].ctx = 0; /* a causal tail, like answer tokens */
        float *a = malloc(n * W * sizeof *a), *b = malloc(n * W * sizeof *b);
        for (int pass = 0; pass < 2; pass++) {
            setenv("BEE_ATTN", pass ? "simple" : "auto", 1);
            bee_seq s;
            assert_int_equal(bee_seq_init(&s, golden_tiny, 0, e.in.enc.seg_rel, (size_t)e.in.enc.n_seg * e.in.enc.n_seg), 0);
            bee_seq *sp[1] = {&s};
            const bee_token *tp[1] = {tk};
            assert_int_equal(bee_forward(golden_tiny, sp, tp, &n, 1, &e.b.ext, BEE_LOGITS_ALL, pass ? b : a, NULL), 0);
            bee_seq_free(&s);
        }
        unsetenv("BEE_ATTN");
        double d = 0;
        for (size_t k = 0; k < n * W; k++) d = fmax(d, fabs((double)a[k] - b[k]));
        fprintf(stderr, "  %s: %zu tokens, tiled vs per-query attention max diff %.3g\n", k_examples[i], n, d);
        assert_true(d < 1e-4);
        free(a), free(b), free(tk);
        example_close(&e);
    }
}

/* Half-precision KV caches: same greedy tokens, logits within the rounding of
 * the cached keys and values (f16: 11-bit, bf16: 8-bit mantissas). */
static void test_kv_half(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    assert_int_not_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_Q4_0), 0);
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F16), 0);
    for (size_t i = 0; i < 3; i++) run_incremental(k_examples[i], 5e-3);
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_BF16), 0);
    for (size_t i = 0; i < 3; i++) run_incremental(k_examples[i], 5e-2);
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F32), 0);
    bee_seq a, b;
    assert_int_equal(bee_seq_init(&a, golden_tiny, 4, NULL, 0), 0);
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F16), 0);
    assert_int_equal(bee_seq_init(&b, golden_tiny, 4, NULL, 0), 0);
    assert_int_equal(bee_seq_bytes(golden_tiny, 8) < 8 * (size_t)(2 * 2 * 64 * 4), 1);
    assert_int_not_equal(bee_seq_copy(&b, &a, golden_tiny), 0); /* types differ */
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F32), 0);
    bee_seq_free(&a);
    bee_seq_free(&b);
}

/* Training layout: context + answer tokens (context 0) in one call, global positions. */
static void run_full(const char *ex) {
    const bee_model *m = golden_tiny;
    example e;
    example_open(&e, m, ex);
    bee_npy in, ctx, seg, sub;
    golden_npy(ex, "forward_full_input", &in);
    golden_npy(ex, "forward_full_context", &ctx);
    golden_npy(ex, "forward_full_segment", &seg);
    golden_npy(ex, "forward_full_input_sub", &sub);
    size_t n = in.count, W = e.b.width;
    bee_token *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++)
        t[i] = (bee_token){(int32_t)bee_npy_get_i(&in, i), (int32_t)bee_npy_get_i(&sub, i), (int32_t)i,
                           (int32_t)bee_npy_get_i(&seg, i), 0, e.in.enc.n_seg, 0, (int32_t)bee_npy_get_i(&ctx, i)};
    bee_seq s;
    assert_int_equal(bee_seq_init(&s, m, 0, e.in.enc.seg_rel, (size_t)e.in.enc.n_seg * e.in.enc.n_seg), 0);
    float *all = malloc(n * W * sizeof *all);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {t};
    assert_int_equal(bee_forward(m, sp, tp, &n, 1, &e.b.ext, BEE_LOGITS_ALL, all, NULL), 0);
    size_t n_ans = 6;
    expect_close(ex, "forward_full_logits_answer_positions", all + (n - n_ans) * W, n_ans * W, TOL_LOGIT);
    bee_npy_free(&in), bee_npy_free(&ctx), bee_npy_free(&seg), bee_npy_free(&sub);
    free(all), free(t);
    bee_seq_free(&s);
    example_close(&e);
}

static void test_full_forward(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    for (size_t i = 0; i < 3; i++) run_full(k_examples[i]);
}

/* All three examples in ONE forward call: the same logits as one at a time. */
static void test_batch(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    const bee_model *m = golden_tiny;
    example e[3];
    for (int i = 0; i < 3; i++) example_open(&e[i], m, k_examples[i]);
    bee_seq s[3];
    bee_seq *sp[3];
    const bee_token *tp[3];
    size_t n[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bee_seq_init(&s[i], m, 0, e[i].in.enc.seg_rel, (size_t)e[i].in.enc.n_seg * e[i].in.enc.n_seg), 0);
        sp[i] = &s[i];
        tp[i] = context_tokens(&e[i].in);
        n[i] = e[i].in.ids.n;
    }
    /* the mixed example's ext table serves the whole batch (zh/en have none) */
    size_t W = e[2].b.width;
    float *logits = malloc(3 * W * sizeof *logits);
    assert_int_equal(bee_forward(m, sp, tp, n, 3, &e[2].b.ext, BEE_LOGITS_LAST, logits, NULL), 0);
    for (int i = 0; i < 3; i++) {
        expect_logits(k_examples[i], "prefill_logits_lastpos", logits + (size_t)i * W, e[i].b.width);
        /* bit-identical to the sequence alone: the kernels a prompt takes (the
         * AMX path from BEE_PANEL_SPLIT_MIN tokens: the mixed example, not zh/en)
         * depend on the request, never on what shares the batch */
        float *alone = malloc(e[i].b.width * sizeof *alone);
        bee_seq s1;
        assert_int_equal(bee_seq_init(&s1, m, 0, e[i].in.enc.seg_rel, (size_t)e[i].in.enc.n_seg * e[i].in.enc.n_seg), 0);
        bee_seq *sp1[1] = {&s1};
        assert_int_equal(bee_forward(m, sp1, &tp[i], &n[i], 1, &e[i].b.ext, BEE_LOGITS_LAST, alone, NULL), 0);
        assert_memory_equal(alone, logits + (size_t)i * W, e[i].b.width * sizeof *alone);
        bee_seq_free(&s1);
        free(alone);
        free((void *)tp[i]);
        bee_seq_free(&s[i]);
        example_close(&e[i]);
    }
    free(logits);
}

/* ---------------------------------------------------------------- variants */

static void prefill_lastpos(const bee_model *m, const char *ex, const char *golden_name, int argmax_too) {
    example e;
    example_open(&e, m, ex);
    bee_seq s;
    bee_token *toks = context_tokens(&e.in);
    size_t n = e.in.ids.n;
    assert_int_equal(bee_seq_init(&s, m, 0, e.in.enc.seg_rel, (size_t)e.in.enc.n_seg * e.in.enc.n_seg), 0);
    float *logits = malloc(e.b.width * sizeof *logits);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {toks};
    assert_int_equal(bee_forward(m, sp, tp, &n, 1, &e.b.ext, BEE_LOGITS_LAST, logits, NULL), 0);
    if (argmax_too) expect_logits(ex, golden_name, logits, e.b.width);
    else expect_close(ex, golden_name, logits, e.b.width, TOL_LOGIT);
    free(logits), free(toks);
    bee_seq_free(&s);
    example_close(&e);
}

static void test_inv_freq_f16(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    golden_write_tiny(tu_tmp("tiny_half.gguf"), NULL, 1);
    bee_model *m;
    assert_int_equal(bee_model_load(tu_tmp("tiny_half.gguf"), &m), 0);
    for (size_t i = 0; i < 3; i++) prefill_lastpos(m, k_examples[i], "prefill_logits_lastpos_halfcfg_float", 1);
    bee_model_free(m);
}

static void test_pruned(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    const uint8_t mask[4] = {1, 0, 0, 1}; /* layer 0 attention and layer 1 FFN pruned */
    golden_write_tiny(tu_tmp("tiny_masked.gguf"), mask, 0);
    bee_model *m;
    assert_int_equal(bee_model_load(tu_tmp("tiny_masked.gguf"), &m), 0);
    assert_false(m->layers[0].has_att);
    assert_false(m->layers[1].has_ffn);
    prefill_lastpos(m, "zh", "prefill_logits_lastpos_masked_model", 1);
    bee_model_free(m);
}

/* ---------------------------------------------------------------- buckets */

static void test_position_buckets(void **state) {
    (void)state;
    if (!bee_file_present_golden()) skip();
    json_error_t err;
    json_t *j = json_load_file(tu_shared("cpmbee/golden/position_bucket_table.json"), 0, &err);
    assert_non_null(j);
    json_t *vals = json_object_get(j, "values_rel_-3000_to_3000");
    assert_int_equal(json_array_size(vals), 6001);
    for (int32_t r = -3000; r <= 3000; r++)
        assert_int_equal(bee_position_bucket(r, 256, 2048), json_integer_value(json_array_get(vals, (size_t)(r + 3000))));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "first_abs_rel_for_bucket_rel_positive"), k, v) {
        int32_t a = (int32_t)json_integer_value(v);
        assert_int_equal(bee_position_bucket(a, 256, 2048), atoi(k));
    }
    json_decref(j);
}

/* ---------------------------------------------------------------- threads */

/* Any thread count gives bit-identical logits (static split, fixed order). */
static void test_threads_deterministic(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    example e;
    example_open(&e, golden_tiny, "mixed");
    bee_token *toks = context_tokens(&e.in);
    size_t n = e.in.ids.n, W = e.b.width;
    float *ref = NULL;
    const int counts[] = {1, 2, 3, 7};
    for (int c = 0; c < 4; c++) {
        assert_int_equal(bee_model_set_threads(golden_tiny, counts[c]), 0);
        bee_seq s;
        assert_int_equal(bee_seq_init(&s, golden_tiny, 0, e.in.enc.seg_rel, (size_t)e.in.enc.n_seg * e.in.enc.n_seg), 0);
        float *lg = malloc(n * W * sizeof *lg);
        bee_seq *sp[1] = {&s};
        const bee_token *tp[1] = {toks};
        assert_int_equal(bee_forward(golden_tiny, sp, tp, &n, 1, &e.b.ext, BEE_LOGITS_ALL, lg, NULL), 0);
        if (!ref) ref = lg;
        else {
            assert_memory_equal(ref, lg, n * W * sizeof *lg);
            free(lg);
        }
        bee_seq_free(&s);
    }
    assert_int_equal(bee_model_set_threads(golden_tiny, 1), 0);
    free(ref);
    free(toks);
    example_close(&e);
}

/* ---------------------------------------------------------------- layer-sliced prefill */

/* a and b hold the same tokens and bit-identical K/V rows in every cache. */
static void expect_same_seq(const bee_model *m, const bee_seq *a, const bee_seq *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->n_att, b->n_att);
    assert_memory_equal(a->keys, b->keys, a->n * sizeof *a->keys);
    size_t rb = bee_type_nbytes(a->kv_type, (size_t)m->hp.n_heads * m->hp.dim_head);
    for (uint32_t l = 0; l < a->n_att; l++)
        for (uint32_t j = 0; j < a->n; j++) { /* through the block tables: the rows may lie anywhere in the pools */
            size_t ra = bee_seq_row(a, j) * rb, rbb = bee_seq_row(b, j) * rb;
            assert_memory_equal((const uint8_t *)a->pool->k[l] + ra, (const uint8_t *)b->pool->k[l] + rbb, rb);
            assert_memory_equal((const uint8_t *)a->pool->v[l] + ra, (const uint8_t *)b->pool->v[l] + rbb, rb);
        }
}

/* Sliced prefill of toks[h..n) after a one-shot prefill of toks[0..h) (h = 0:
 * an empty cache), `chunk` layers per step (0: straight to finish), against
 * bee_forward of the same tokens: same KV caches, bit-identical logits of
 * every position, and the same logits for a decode step after it. */
static void sliced_vs_oneshot(const bee_model *m, const example *e, const bee_token *toks, size_t h, uint32_t chunk) {
    size_t n = e->in.ids.n, W = e->b.width, rest = n - h;
    size_t nrel = (size_t)e->in.enc.n_seg * e->in.enc.n_seg;
    bee_seq a, b;
    assert_int_equal(bee_seq_init(&a, m, 0, e->in.enc.seg_rel, nrel), 0);
    assert_int_equal(bee_seq_init(&b, m, 0, e->in.enc.seg_rel, nrel), 0);
    float *la = malloc((rest + 1) * W * sizeof *la), *lb = malloc((rest + 1) * W * sizeof *lb);
    bee_seq *sa[1] = {&a}, *sb[1] = {&b};
    const bee_token *t0[1] = {toks}, *t1[1] = {toks + h};
    if (h) {
        assert_int_equal(bee_forward(m, sa, t0, &h, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
        assert_int_equal(bee_forward(m, sb, t0, &h, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    }
    assert_int_equal(bee_forward(m, sa, t1, &rest, 1, &e->b.ext, BEE_LOGITS_ALL, la, NULL), 0);
    bee_prefill *p;
    assert_int_equal(bee_prefill_begin(m, &b, toks + h, rest, &p), 0);
    assert_int_equal(b.n, n); /* the keys are in at once */
    int steps = 0;
    while (chunk && bee_prefill_layers_left(p) > 0) {
        uint32_t left = bee_prefill_layers_left(p);
        assert_int_equal(bee_prefill_step(p, chunk), 0);
        assert_int_equal(bee_prefill_layers_left(p), left > chunk ? left - chunk : 0);
        steps++;
    }
    assert_int_equal(bee_prefill_step(p, 1), 0); /* nothing left: a no-op */
    if (chunk) assert_int_equal(steps, (m->hp.n_layers + chunk - 1) / chunk);
    assert_int_equal(bee_prefill_finish(p, &e->b.ext, BEE_LOGITS_ALL, lb), 0);
    expect_same_seq(m, &a, &b);
    assert_memory_equal(la, lb, rest * W * sizeof *la);
    /* the next (answer) token sees the same cache */
    bee_token nx = {toks[0].id, 0, (int32_t)n, toks[n - 1].seg, 0, e->in.enc.n_seg, 0, 0};
    size_t one = 1;
    const bee_token *tn[1] = {&nx};
    assert_int_equal(bee_forward(m, sa, tn, &one, 1, &e->b.ext, BEE_LOGITS_LAST, la, NULL), 0);
    assert_int_equal(bee_forward(m, sb, tn, &one, 1, &e->b.ext, BEE_LOGITS_LAST, lb, NULL), 0);
    assert_memory_equal(la, lb, W * sizeof *la);
    free(la), free(lb);
    bee_seq_free(&a), bee_seq_free(&b);
}

/* Cancelling mid-way (and a failed begin) leaves the sequence as it was:
 * the same length and keys, and a later one-shot prefill gives the same
 * logits as on a sequence that never saw the cancelled one. */
static void sliced_cancel(const bee_model *m, const example *e, const bee_token *toks) {
    size_t n = e->in.ids.n, W = e->b.width, h = n / 2, rest = n - h;
    size_t nrel = (size_t)e->in.enc.n_seg * e->in.enc.n_seg;
    bee_seq a, b;
    assert_int_equal(bee_seq_init(&a, m, 0, e->in.enc.seg_rel, nrel), 0);
    assert_int_equal(bee_seq_init(&b, m, 0, e->in.enc.seg_rel, nrel), 0);
    bee_seq *sa[1] = {&a}, *sb[1] = {&b};
    const bee_token *t0[1] = {toks}, *t1[1] = {toks + h};
    assert_int_equal(bee_forward(m, sa, t0, &h, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    assert_int_equal(bee_forward(m, sb, t0, &h, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    for (uint32_t done = 0; done <= m->hp.n_layers; done++) { /* cancelled after 0 .. all layers */
        bee_prefill *p;
        assert_int_equal(bee_prefill_begin(m, &b, toks + h, rest, &p), 0);
        if (done) assert_int_equal(bee_prefill_step(p, done), 0);
        bee_prefill_cancel(p);
        assert_int_equal(b.n, h);
        assert_memory_equal(a.keys, b.keys, h * sizeof *a.keys);
    }
    bee_prefill_cancel(NULL);
    bee_token *bad = malloc(rest * sizeof *bad);
    memcpy(bad, toks + h, rest * sizeof *bad);
    bad[rest - 1].id = (int32_t)m->hp.n_vocab; /* out of the vocabulary */
    bee_prefill *p = (bee_prefill *)&p;
    assert_int_not_equal(bee_prefill_begin(m, &b, bad, rest, &p), 0);
    assert_null(p);
    assert_int_not_equal(bee_prefill_begin(m, &b, toks + h, 0, &p), 0);
    assert_int_equal(b.n, h);
    free(bad);
    float *la = malloc(W * sizeof *la), *lb = malloc(W * sizeof *lb);
    assert_int_equal(bee_forward(m, sa, t1, &rest, 1, &e->b.ext, BEE_LOGITS_LAST, la, NULL), 0);
    assert_int_equal(bee_forward(m, sb, t1, &rest, 1, &e->b.ext, BEE_LOGITS_LAST, lb, NULL), 0);
    expect_same_seq(m, &a, &b);
    assert_memory_equal(la, lb, W * sizeof *la);
    /* a bad ext table at finish: refused, and the sequence rolled back */
    int32_t bid = -1, bsub = 0;
    bee_ext bext = {&bid, &bsub, 1};
    size_t before = b.n;
    assert_int_equal(bee_prefill_begin(m, &b, &toks[0], 1, &p), 0);
    assert_int_not_equal(bee_prefill_finish(p, &bext, BEE_LOGITS_LAST, lb), 0);
    assert_int_equal(b.n, before);
    free(la), free(lb);
    bee_seq_free(&a), bee_seq_free(&b);
}

static void run_sliced(bee_model *m) {
    for (size_t i = 0; i < 3; i++) {
        example e;
        example_open(&e, m, k_examples[i]);
        bee_token *toks = context_tokens(&e.in);
        size_t n = e.in.ids.n;
        for (uint32_t chunk = 0; chunk <= m->hp.n_layers + 1; chunk++) {
            sliced_vs_oneshot(m, &e, toks, 0, chunk);
            sliced_vs_oneshot(m, &e, toks, n / 3, chunk);
        }
        sliced_cancel(m, &e, toks);
        free(toks);
        example_close(&e);
    }
}

static void test_prefill_sliced(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    const int threads[] = {1, 3};
    for (int t = 0; t < 2; t++) {
        assert_int_equal(bee_model_set_threads(golden_tiny, threads[t]), 0);
        run_sliced(golden_tiny);
    }
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F16), 0);
    run_sliced(golden_tiny);
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F32), 0);
    assert_int_equal(bee_model_set_threads(golden_tiny, 1), 0);
    const uint8_t mask[4] = {1, 0, 0, 1}; /* layer 0 attention and layer 1 FFN pruned */
    golden_write_tiny(tu_tmp("tiny_masked_sliced.gguf"), mask, 0);
    bee_model *pm;
    assert_int_equal(bee_model_load(tu_tmp("tiny_masked_sliced.gguf"), &pm), 0);
    run_sliced(pm);
    bee_model_free(pm);
}

/* ---------------------------------------------------------------- perplexity */

/* Independent NLL: the whole text in one training-layout forward. */
static double direct_nll(const bee_model *m, const char *text, size_t *n_scored) {
    json_t *d = json_pack("{s:s}", "<ans>", text);
    bee_dict_enc e = {0};
    assert_int_equal(bee_dict_encode(m->tok, d, &e), 0);
    size_t n = e.ids.n, W = m->hp.n_vocab, first = 0;
    while (e.ctx.v[first]) first++;
    bee_token *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(e.subs.v[i], 0); /* text chosen without unknown characters */
        t[i] = (bee_token){e.ids.v[i], 0, (int32_t)i, e.segs.v[i], 0, e.n_seg, 0, e.ctx.v[i]};
    }
    bee_seq s;
    assert_int_equal(bee_seq_init(&s, m, 0, e.seg_rel, (size_t)e.n_seg * e.n_seg), 0);
    float *lg = malloc(n * W * sizeof *lg);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {t};
    assert_int_equal(bee_forward(m, sp, tp, &n, 1, NULL, BEE_LOGITS_ALL, lg, NULL), 0);
    double nll = 0;
    for (size_t i = first + 1; i < n; i++) {
        const float *x = lg + (i - 1) * W;
        double mx = x[argmax(x, W)], sum = 0;
        for (size_t v = 0; v < W; v++) sum += exp(x[v] - mx);
        nll += mx + log(sum) - x[e.ids.v[i]];
    }
    *n_scored = n - first - 1;
    free(lg), free(t);
    bee_seq_free(&s);
    bee_dict_enc_free(&e);
    json_decref(d);
    return nll;
}

static void test_perplexity(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    const char *text = "北京是中国的首都。The quick brown fox jumps over the lazy dog.";
    size_t n_direct;
    double nll = direct_nll(golden_tiny, text, &n_direct);
    bee_ppl_result one, rolled;
    assert_int_equal(bee_perplexity(golden_tiny, text, strlen(text), 4096, &one, NULL, NULL), 0);
    assert_int_equal(one.n_tokens, n_direct);
    assert_true(fabs(one.nll - nll) <= 1e-3 * (double)n_direct);
    assert_true(fabs(one.ppl - exp(nll / (double)n_direct)) <= 1e-3 * one.ppl);
    /* small windows score every token once, with less context */
    assert_int_equal(bee_perplexity(golden_tiny, text, strlen(text), 8, &rolled, NULL, NULL), 0);
    assert_int_equal(rolled.n_tokens, one.n_tokens);
    assert_true(rolled.ppl > 1.0 && isfinite(rolled.ppl));
    /* unknown characters are scored through ext ids; bad input is refused */
    assert_int_equal(bee_perplexity(golden_tiny, "emoji 😀 and Привет", strlen("emoji 😀 and Привет"), 16, &rolled, NULL, NULL), 0);
    assert_int_equal(bee_perplexity(golden_tiny, "", 0, 16, &rolled, NULL, NULL), -1);
    assert_non_null(strstr(bee_error_message(), "empty"));
    assert_int_equal(bee_perplexity(golden_tiny, "a\xff" "b", 3, 16, &rolled, NULL, NULL), -1);
    assert_non_null(strstr(bee_error_message(), "UTF-8"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_position_buckets), cmocka_unit_test(test_prefill),
        cmocka_unit_test(test_incremental),      cmocka_unit_test(test_full_forward),
        cmocka_unit_test(test_batch),            cmocka_unit_test(test_inv_freq_f16),
        cmocka_unit_test(test_pruned),           cmocka_unit_test(test_perplexity),
        cmocka_unit_test(test_threads_deterministic), cmocka_unit_test(test_kv_half), cmocka_unit_test(test_attention_paths),
        cmocka_unit_test(test_prefill_sliced),
    };
    return cmocka_run_group_tests(tests, golden_tiny_setup, golden_tiny_teardown);
}
