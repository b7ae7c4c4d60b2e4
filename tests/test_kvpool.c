/* The KV block pool: allocation, reference counts, copy on write and the
 * budget (no model data needed); and, on the tiny golden model, a sequence
 * whose blocks lie out of order in a shared pool, and two sequences forked
 * from one prefix, against private-pool sequences: bit-identical logits and
 * caches for decode steps and the tiled prefill, f32/f16/bf16, 1 and 2
 * threads. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "testutil.h"
#include "util/error.h"
#include "util/types.h"

/* ---------------------------------------------------------------- a model shape without weights */

typedef struct {
    bee_model m;
    bee_layer layers[3];
} shape;

/* 3 layers, the middle one pruned (no cache), 2 heads of 4. */
static void shape_init(shape *s) {
    memset(s, 0, sizeof *s);
    s->m.hp.n_layers = 3, s->m.hp.n_heads = 2, s->m.hp.dim_head = 4, s->m.hp.n_seg_buckets = 4;
    s->layers[0].has_att = s->layers[2].has_att = 1;
    s->m.layers = s->layers;
    s->m.kv_type = BEE_TYPE_F32;
}

/* Row j of every layer of s's cache filled with the value `val`. */
static void fill_row(bee_seq *s, uint32_t j, float val) {
    size_t w = s->pool->row_bytes / sizeof(float), r = bee_seq_row(s, j);
    for (uint32_t l = 0; l < s->n_att; l++)
        for (size_t e = 0; e < w; e++) {
            ((float *)s->pool->k[l])[r * w + e] = val;
            ((float *)s->pool->v[l])[r * w + e] = -val;
        }
}

static float row_val(const bee_seq *s, uint32_t l, uint32_t j) {
    size_t w = s->pool->row_bytes / sizeof(float);
    return ((const float *)s->pool->k[l])[bee_seq_row(s, j) * w];
}

static void test_pool_blocks(void **state) {
    (void)state;
    shape sh;
    shape_init(&sh);
    size_t bb = bee_kv_block_bytes(&sh.m);
    assert_int_equal(bb, (size_t)BEE_KV_BLOCK * 2 * 2 * 8 * sizeof(float));
    bee_kv_pool p;
    assert_int_not_equal(bee_kv_pool_init(&p, &sh.m, bb - 1), 0); /* not even one block */
    assert_non_null(strstr(bee_error_message(), "budget"));
    assert_int_equal(bee_kv_pool_init(&p, &sh.m, 5 * bb + 7), 0);
    assert_int_equal(bee_kv_pool_available(&p), 5);
    uint32_t id[6];
    for (uint32_t i = 0; i < 5; i++) {
        assert_int_equal(bee_kv_pool_alloc(&p, &id[i]), 0);
        assert_int_equal(id[i], i); /* a fresh pool hands blocks out in order */
    }
    assert_int_equal(bee_kv_pool_available(&p), 0);
    assert_int_not_equal(bee_kv_pool_alloc(&p, &id[5]), 0); /* over budget: an error, not a crash */
    assert_non_null(strstr(bee_error_message(), "budget"));
    bee_kv_pool_share(&p, id[2]);
    assert_int_equal(p.n_shared, 1);
    bee_kv_pool_release(&p, id[2]); /* still referenced once */
    assert_int_equal(bee_kv_pool_available(&p), 0);
    assert_int_equal(p.n_used, 5);
    bee_kv_pool_release(&p, id[3]);
    bee_kv_pool_release(&p, id[1]);
    assert_int_equal(bee_kv_pool_available(&p), 2);
    assert_int_equal(p.n_used, 3);
    assert_int_equal(bee_kv_pool_alloc(&p, &id[5]), 0);
    assert_int_equal(id[5], 1); /* the last released comes back first */
    assert_int_equal(bee_kv_pool_bytes(&p), 5 * bb);
    bee_kv_pool_free(&p);
}

/* A copy within a pool shares blocks; the first append into the shared
 * partial block copies it (the prefix rows too) and leaves the source alone. */
static void test_seq_cow(void **state) {
    (void)state;
    shape sh;
    shape_init(&sh);
    bee_kv_pool p;
    assert_int_equal(bee_kv_pool_init(&p, &sh.m, 0), 0);
    int32_t rel = 0;
    bee_seq a, b;
    assert_int_equal(bee_seq_init_pooled(&a, &sh.m, &p, &rel, 1), 0);
    assert_int_equal(bee_seq_init_pooled(&b, &sh.m, &p, &rel, 1), 0);
    assert_int_equal(p.n_used, 0); /* blocks come with the tokens */
    assert_int_equal(bee_seq_prepare_append(&a, &sh.m, 100), 0);
    for (uint32_t j = 0; j < 100; j++) fill_row(&a, j, (float)j + 1);
    memset(a.keys, 0, 100 * sizeof *a.keys);
    a.n = 100;
    assert_int_equal(p.n_used, 2);
    assert_int_equal(bee_seq_copy(&b, &a, &sh.m), 0);
    assert_int_equal(p.n_used, 2); /* shared, nothing copied */
    assert_int_equal(p.n_shared, 2);
    assert_int_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(bee_seq_prepare_append(&b, &sh.m, 1), 0); /* row 100 falls in the shared block 1 */
    assert_int_equal(p.n_cow, 1);
    assert_int_equal(p.n_used, 3);
    assert_int_not_equal(b.blocks[1], a.blocks[1]);
    assert_int_equal(b.blocks[0], a.blocks[0]); /* full blocks stay shared */
    fill_row(&b, 100, -5.0f);
    b.n = 101;
    for (uint32_t j = 0; j < 100; j++) {
        assert_true(row_val(&b, 1, j) == (float)j + 1); /* the prefix came along (last cached layer) */
        assert_true(row_val(&a, 0, j) == (float)j + 1);
    }
    assert_int_equal(bee_seq_prepare_append(&a, &sh.m, 1), 0); /* a is the only owner now: written in place */
    assert_int_equal(p.n_cow, 1);
    fill_row(&a, 100, 7.0f);
    assert_true(row_val(&b, 0, 100) == -5.0f);
    bee_seq_truncate(&b, 10); /* releases block 1 (b's copy) */
    assert_int_equal(p.n_used, 2);
    bee_seq_free(&a);
    assert_int_equal(p.n_used, 1); /* block 0 still held by b */
    bee_seq_free(&b);
    assert_int_equal(p.n_used, 0);
    bee_kv_pool_free(&p);
}

/* A budgeted pool runs out with an error naming the budget; the sequence
 * keeps what it had. */
static void test_seq_budget(void **state) {
    (void)state;
    shape sh;
    shape_init(&sh);
    bee_kv_pool p;
    assert_int_equal(bee_kv_pool_init(&p, &sh.m, 2 * bee_kv_block_bytes(&sh.m)), 0);
    bee_seq a;
    assert_int_equal(bee_seq_init_pooled(&a, &sh.m, &p, NULL, 0), 0);
    assert_int_equal(bee_seq_prepare_append(&a, &sh.m, 128), 0);
    assert_int_not_equal(bee_seq_prepare_append(&a, &sh.m, 129), 0);
    assert_non_null(strstr(bee_error_message(), "budget"));
    assert_int_equal(a.n, 0);
    sh.m.kv_type = BEE_TYPE_F16; /* a pool of another type does not fit */
    bee_seq b;
    assert_int_not_equal(bee_seq_init_pooled(&b, &sh.m, &p, NULL, 0), 0);
    bee_seq_free(&a);
    bee_kv_pool_free(&p);
}

/* ---------------------------------------------------------------- the golden model */



enum { N_PRE = 70, N_MORE = 40, N_DEC = 30, N_ALL = N_PRE + N_MORE + N_DEC };

/* Synthetic tokens (malloc'd): N_PRE + N_MORE context tokens (one
 * segment), then N_DEC causal ones, ids spread over the vocabulary. */
static bee_token *make_tokens(const bee_model *m) {
    bee_token *t = malloc(N_ALL * sizeof *t);
    assert_non_null(t);
    for (size_t i = 0; i < N_ALL; i++)
        t[i] = (bee_token){(int32_t)((i * 7919 + 13) % m->hp.n_vocab), 0, (int32_t)i, 0, 0, 1, 0, i < N_PRE + N_MORE};
    return t;
}

/* The same tokens through a private-pool sequence and through one whose
 * blocks come out of order from a shared pool (another sequence takes
 * blocks in between): a tiled prefill, a second tiled chunk (on the paged
 * side as a layer-sliced prefill, as bee serve runs long prompts), then
 * single decode steps across a block boundary. Logits and cache rows equal
 * bit for bit. */
static void paged_vs_private(const bee_model *m) {
    size_t n_all = N_ALL, W = m->hp.n_vocab;
    bee_token *t = make_tokens(m);
    int32_t rel = 0;
    bee_kv_pool pool;
    assert_int_equal(bee_kv_pool_init(&pool, m, 0), 0);
    uint32_t ids[9], order[9] = {4, 7, 1, 8, 0, 5, 2, 6, 3};
    for (int i = 0; i < 9; i++) assert_int_equal(bee_kv_pool_alloc(&pool, &ids[i]), 0);
    for (int i = 0; i < 9; i++) bee_kv_pool_release(&pool, ids[order[i]]); /* a shuffled free stack */
    bee_seq a, b, other;
    assert_int_equal(bee_seq_init(&a, m, 0, &rel, 1), 0);
    assert_int_equal(bee_seq_init_pooled(&b, m, &pool, &rel, 1), 0);
    assert_int_equal(bee_seq_init_pooled(&other, m, &pool, &rel, 1), 0);
    float *la = malloc(N_PRE * W * sizeof *la), *lb = malloc(N_PRE * W * sizeof *lb);
    size_t done = 0, steps[3] = {N_PRE, N_MORE, 1};
    for (int phase = 0; done < n_all; phase = phase < 2 ? phase + 1 : 2) {
        size_t n = steps[phase];
        bee_seq *sa[1] = {&a}, *sb[1] = {&b};
        const bee_token *tp[1] = {t + done};
        assert_int_equal(bee_forward(m, sa, tp, &n, 1, NULL, BEE_LOGITS_ALL, la, NULL), 0);
        if (phase == 1) {
            bee_prefill *pf;
            assert_int_equal(bee_prefill_begin(m, &b, t + done, n, &pf), 0);
            assert_int_equal(bee_prefill_step(pf, 1), 0);
            assert_int_equal(bee_prefill_finish(pf, NULL, BEE_LOGITS_ALL, lb), 0);
        } else {
            assert_int_equal(bee_forward(m, sb, tp, &n, 1, NULL, BEE_LOGITS_ALL, lb, NULL), 0);
        }
        if (memcmp(la, lb, n * W * sizeof *la)) fail_msg("logits differ after %zu + %zu tokens", done, n);
        done += n;
        if (phase < 2) assert_int_equal(bee_seq_prepare_append(&other, m, BEE_KV_BLOCK), 0), other.n += BEE_KV_BLOCK;
    }
    int ordered = 1;
    for (uint32_t i = 0; i < b.n_blk; i++) ordered &= b.blocks[i] == i;
    assert_false(ordered); /* the test means something only if the blocks are scattered */
    size_t rb = pool.row_bytes;
    for (uint32_t l = 0; l < a.n_att; l++)
        for (uint32_t j = 0; j < a.n; j++) {
            assert_memory_equal((uint8_t *)a.pool->k[l] + bee_seq_row(&a, j) * rb, (uint8_t *)pool.k[l] + bee_seq_row(&b, j) * rb, rb);
            assert_memory_equal((uint8_t *)a.pool->v[l] + bee_seq_row(&a, j) * rb, (uint8_t *)pool.v[l] + bee_seq_row(&b, j) * rb, rb);
        }
    bee_seq_free(&a), bee_seq_free(&b), bee_seq_free(&other);
    assert_int_equal(pool.n_used, 0);
    bee_kv_pool_free(&pool);
    free(la), free(lb), free(t);
}

static void test_paged_identity(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    static const uint32_t types[] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    for (int th = 1; th <= 2; th++)
        for (int k = 0; k < 3; k++) {
            assert_int_equal(bee_model_set_threads(golden_tiny, th), 0);
            assert_int_equal(bee_model_set_kv_type(golden_tiny, types[k]), 0);
            fprintf(stderr, "  paged vs private: %s KV, %d thread(s)\n", bee_type_name(types[k]), th);
            paged_vs_private(golden_tiny);
        }
    setenv("BEE_ATTN", "simple", 1); /* the per-query path for the prefills too */
    paged_vs_private(golden_tiny);
    unsetenv("BEE_ATTN");
    assert_int_equal(bee_model_set_kv_type(golden_tiny, BEE_TYPE_F32), 0);
    assert_int_equal(bee_model_set_threads(golden_tiny, 1), 0);
}

/* Two sequences forked from one prefilled prefix (shared blocks, copy on
 * write) and decoding different tokens give the logits of two independent
 * sequences. */
static void test_fork_cow(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    const bee_model *m = golden_tiny;
    size_t W = m->hp.n_vocab;
    bee_token *t = make_tokens(m);
    int32_t rel = 0;
    bee_kv_pool pool;
    assert_int_equal(bee_kv_pool_init(&pool, m, 0), 0);
    bee_seq base, fork, ia, ib;
    assert_int_equal(bee_seq_init_pooled(&base, m, &pool, &rel, 1), 0);
    assert_int_equal(bee_seq_init_pooled(&fork, m, &pool, &rel, 1), 0);
    assert_int_equal(bee_seq_init(&ia, m, 0, &rel, 1), 0);
    assert_int_equal(bee_seq_init(&ib, m, 0, &rel, 1), 0);
    size_t n = N_PRE;
    const bee_token *tp[1] = {t};
    bee_seq *sb[1] = {&base}, *sia[1] = {&ia}, *sib[1] = {&ib};
    assert_int_equal(bee_forward(m, sb, tp, &n, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    assert_int_equal(bee_forward(m, sia, tp, &n, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    assert_int_equal(bee_forward(m, sib, tp, &n, 1, NULL, BEE_LOGITS_NONE, NULL, NULL), 0);
    uint32_t used = pool.n_used;
    assert_int_equal(bee_seq_copy(&fork, &base, m), 0);
    assert_int_equal(pool.n_used, used); /* shared */
    float *l1 = malloc(2 * W * sizeof *l1), *l2 = malloc(2 * W * sizeof *l2);
    for (int step = 0; step < 80; step++) { /* across the block boundary at 128 */
        bee_token x = {(int32_t)(100 + step), 0, N_PRE + step, 0, 0, 1, 0, 0}, y = x;
        y.id = (int32_t)(5000 + 3 * step);
        const bee_token *txy[2] = {&x, &y}, *tx[1] = {&x}, *ty[1] = {&y};
        size_t ones[2] = {1, 1}, one = 1;
        bee_seq *pair[2] = {&base, &fork};
        assert_int_equal(bee_forward(m, pair, txy, ones, 2, NULL, BEE_LOGITS_LAST, l1, NULL), 0);
        assert_int_equal(bee_forward(m, sia, tx, &one, 1, NULL, BEE_LOGITS_LAST, l2, NULL), 0);
        assert_int_equal(bee_forward(m, sib, ty, &one, 1, NULL, BEE_LOGITS_LAST, l2 + W, NULL), 0);
        if (memcmp(l1, l2, 2 * W * sizeof *l1)) fail_msg("forked logits differ at step %d", step);
    }
    assert_int_equal(pool.n_cow, 1); /* the shared partial block: copied once, by its first writer */
    assert_int_equal(base.blocks[0], fork.blocks[0]);
    assert_int_not_equal(base.blocks[1], fork.blocks[1]);
    bee_seq_free(&base), bee_seq_free(&fork), bee_seq_free(&ia), bee_seq_free(&ib);
    assert_int_equal(pool.n_used, 0);
    bee_kv_pool_free(&pool);
    free(l1), free(l2), free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_blocks),
        cmocka_unit_test(test_seq_cow),
        cmocka_unit_test(test_seq_budget),
        cmocka_unit_test(test_paged_identity),
        cmocka_unit_test(test_fork_cow),
    };
    return cmocka_run_group_tests(tests, golden_tiny_setup, golden_tiny_teardown);
}
