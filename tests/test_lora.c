/* LoRA: adapter gradients against finite differences, base weights frozen,
 * merged weights give the same logits as the unmerged adapter, GGUF round
 * trip and clear errors for adapters that do not fit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/init.h"
#include "model/lora.h"
#include "testutil.h"
#include "train/train.h"
#include "util/error.h"
#include "util/types.h"

static bee_hparams small_hp(void) {
    bee_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_vocab = 40, hp.dim = 16, hp.n_heads = 2, hp.dim_head = 8, hp.dim_ff = 24, hp.n_layers = 2;
    hp.n_buckets = 16, hp.n_seg_buckets = 8, hp.max_distance = 20;
    hp.eps = 1e-6f, hp.rope_base = 10000.0f, hp.rope_scale = 16.0f, hp.residual_scale = 1.05f;
    return hp;
}

#define RB 2
#define RL 10

/* Two rows, one span each, a single segment: enough to exercise attention. */
typedef struct {
    bee_train_batch b;
    int32_t in[RB * RL], sub[RB * RL], len[RB], sid[RB * RL], nseg[RB * RL], seg[RB * RL], off[RB * RL];
    int32_t span[RB * RL], rel[1], ext_ids[1], ext_sub[1], tgt[RB * RL];
    uint8_t ctx[RB * RL];
} tiny_batch;

static void make_batch(tiny_batch *r, uint32_t seed) {
    memset(r, 0, sizeof *r);
    uint32_t s = seed;
    for (int x = 0; x < RB * RL; x++) {
        s = s * 1664525u + 1013904223u;
        r->in[x] = (int32_t)((s >> 8) % 40);
        r->nseg[x] = 1;
        r->ctx[x] = (uint8_t)(x % RL < 3);
        r->tgt[x] = x % RL >= 2 && x % RL < 9 ? (int32_t)((s >> 16) % 40) : -100;
    }
    r->len[0] = RL, r->len[1] = RL - 1;
    r->b = (bee_train_batch){RB, RL, r->in, r->sub, r->len, r->ctx, r->sid, r->nseg, r->seg, r->off, r->span,
                             r->rel, 1, r->ext_ids, r->ext_sub, 0, r->tgt};
}



static void randomize_b(bee_lora *lo, uint32_t seed, float amp) {
    for (uint32_t l = 0; l < lo->n_layers; l++)
        for (int w = 0; lo->has[l] && w < 2; w++)
            for (size_t i = 0; i < (size_t)lo->width * lo->rank; i++) {
                seed = seed * 1664525u + 1013904223u;
                lo->b[2 * l + w][i] = amp * ((float)(seed >> 8) / 16777216.0f - 0.5f);
            }
}

/* Every A and B entry of a few tensors against a 4-point central difference. */
static void test_lora_gradients(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    bee_train_model t;
    bee_lora lo;
    if (bee_train_model_random(&hp, NULL, 5, &t)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_lora_init(&lo, &hp, NULL, 4, 8.0f, 9), 0);
    randomize_b(&lo, 3, 0.5f); /* B = 0 would make dA vanish */
    assert_int_equal(bee_train_lora_attach(&t, &lo), 0);
    assert_null(t.g.mem); /* base frozen: no gradient memory */
    tiny_batch tb;
    make_batch(&tb, 17);
    bee_train_result res;
    bee_train_zero_grad(&t);
    if (bee_train_forward_backward(&t, &tb.b, 1, 1.0f, &res, NULL)) fail_msg("%s", bee_error_message());
    double mg = 0, worst = 0;
    for (size_t i = 0; i < lo.n; i++) mg = fmax(mg, fabs(t.lora_g[i]));
    assert_true(mg > 0);
    int bad = 0;
    for (uint32_t l = 0; l < 2; l++)
        for (int w = 0; w < 2; w++) {
            float *mats[2] = {lo.a[2 * l + w], lo.b[2 * l + w]};
            size_t sizes[2] = {(size_t)lo.rank * lo.dim, (size_t)lo.width * lo.rank};
            for (int m = 0; m < 2; m++)
                for (size_t q = 0; q < 6; q++) {
                    size_t i = (q * 37 + 5) % sizes[m];
                    float *x = mats[m] + i;
                    double an = t.lora_g[x - lo.mem], fd = tu_fd_grad(&t, &tb.b, x, 1e-2);
                    double err = fabs(fd - an), tol = 3e-3 * fabs(an) + 2e-4 * mg + 2e-5;
                    if (fabs(an) > 1e-3 * mg) worst = fmax(worst, err / fabs(an));
                    if (!(err <= tol)) {
                        bad++;
                        fprintf(stderr, "  layer %u %c %c[%zu]: analytic %.6g numeric %.6g\n", l, w ? 'v' : 'q',
                                m ? 'B' : 'A', i, an, fd);
                    }
                }
        }
    fprintf(stderr, "  LoRA FD: max|g| %.3g, worst relative error %.2g\n", mg, worst);
    assert_int_equal(bad, 0);
    bee_train_model_free(&t);
    bee_lora_free(&lo);
}

/* B = 0 at init: the adapted model equals the base exactly. */
static void test_lora_identity_at_init(void **state) {
    (void)state;
    bee_hparams hp = small_hp();
    bee_train_model t;
    bee_lora lo;
    if (bee_train_model_random(&hp, NULL, 6, &t)) fail_msg("%s", bee_error_message());
    tiny_batch tb;
    make_batch(&tb, 4);
    double base = tu_train_loss(&t, &tb.b);
    assert_int_equal(bee_lora_init(&lo, &hp, NULL, 2, 4.0f, 1), 0);
    assert_int_equal(bee_train_lora_attach(&t, &lo), 0);
    assert_true(tu_train_loss(&t, &tb.b) == base);
    bee_train_model_free(&t);
    bee_lora_free(&lo);
}

static const char *make_base(const char *name, uint32_t layers) {
    bee_init_opts o;
    memset(&o, 0, sizeof o);
    if (bee_init_preset("tiny", &o.hp, &o.mask)) fail_msg("%s", bee_error_message());
    if (layers) o.hp.n_layers = layers;
    o.type = BEE_TYPE_F32, o.seed = 3, o.name = "base";
    const char *path = tu_tmp(name);
    if (bee_model_init_random(path, &o)) fail_msg("%s", bee_error_message());
    free(o.mask);
    return path;
}

static float *logits_of(bee_model *m, size_t *width) {
    static const int32_t ids[6] = {5, 17, 300, 42, 9, 1000};
    bee_token toks[6];
    for (int i = 0; i < 6; i++) toks[i] = (bee_token){ids[i], 0, i, 0, 0, 1, 0, 1};
    int32_t rel = 0;
    bee_seq s;
    if (bee_seq_init(&s, m, 8, &rel, 1)) fail_msg("%s", bee_error_message());
    *width = m->hp.n_vocab;
    float *lg = malloc(6 * *width * sizeof *lg);
    const bee_token *tp = toks;
    size_t n = 6;
    bee_seq *sp = &s;
    if (bee_forward(m, &sp, &tp, &n, 1, NULL, BEE_LOGITS_ALL, lg, NULL)) fail_msg("%s", bee_error_message());
    bee_seq_free(&s);
    return lg;
}

/* Unmerged adapter at inference == merged weights; adapter GGUF round trip. */
static void test_lora_merge_equals_unmerged(void **state) {
    (void)state;
    const char *base = make_base("lora_base.gguf", 0);
    char base_path[512], ad_path[512], merged_path[512];
    snprintf(base_path, sizeof base_path, "%s", base);
    snprintf(ad_path, sizeof ad_path, "%s", tu_tmp("adapter.gguf"));
    snprintf(merged_path, sizeof merged_path, "%s", tu_tmp("merged.gguf"));
    bee_model *m;
    if (bee_model_load(base_path, &m)) fail_msg("%s", bee_error_message());
    bee_lora lo, back;
    assert_int_equal(bee_lora_init(&lo, &m->hp, NULL, 4, 8.0f, 2), 0);
    randomize_b(&lo, 8, 0.2f);
    if (bee_lora_write(&lo, ad_path, m->name)) fail_msg("%s", bee_error_message());
    if (bee_lora_read(ad_path, &m->hp, NULL, &back)) fail_msg("%s", bee_error_message());
    assert_int_equal(back.n, lo.n);
    assert_int_equal(back.rank, 4);
    assert_true(back.alpha == 8.0f);
    assert_string_equal(back.base, "base");
    assert_int_equal(memcmp(back.mem, lo.mem, lo.n * sizeof(float)), 0);
    bee_lora_free(&back);

    size_t W;
    float *plain = logits_of(m, &W);
    if (bee_model_apply_lora(m, ad_path)) fail_msg("%s", bee_error_message());
    float *adapted = logits_of(m, &W);
    bee_train_model t;
    assert_int_equal(bee_train_model_from(m, &t), 0);
    assert_int_equal(bee_train_lora_merge(&t, &lo), 0);
    if (bee_train_model_write(&t, merged_path, "merged")) fail_msg("%s", bee_error_message());
    bee_train_model_free(&t);
    bee_model_free(m);
    if (bee_model_load(merged_path, &m)) fail_msg("%s", bee_error_message());
    float *merged = logits_of(m, &W);
    double diff = 0, moved = 0;
    for (size_t i = 0; i < 6 * W; i++) {
        diff = fmax(diff, fabs(merged[i] - adapted[i]));
        moved = fmax(moved, fabs(adapted[i] - plain[i]));
    }
    fprintf(stderr, "  merged vs unmerged logits: max abs diff %.3g (adapter moved logits by up to %.3g)\n", diff, moved);
    assert_true(moved > 1e-3);
    assert_true(diff <= 1e-5);
    free(plain), free(adapted), free(merged);
    bee_model_free(m);
    bee_lora_free(&lo);
}

static void expect_read_fail(const char *path, const bee_hparams *hp, const char *needle) {
    bee_lora lo;
    assert_int_not_equal(bee_lora_read(path, hp, NULL, &lo), 0);
    const char *msg = bee_error_message();
    if (!strstr(msg, needle)) fail_msg("expected '%s' in: %s", needle, msg);
    assert_null(lo.mem);
}

static void test_lora_bad_files(void **state) {
    (void)state;
    bee_hparams hp = small_hp(), other = small_hp();
    other.dim = 32, other.dim_head = 16;
    bee_lora lo;
    assert_int_equal(bee_lora_init(&lo, &hp, NULL, 2, 2.0f, 1), 0);
    char ok[512];
    snprintf(ok, sizeof ok, "%s", tu_tmp("ok_adapter.gguf"));
    assert_int_equal(bee_lora_write(&lo, ok, "small"), 0);
    expect_read_fail(ok, &other, "dimension is 16 but the base model's is 32");
    bee_hparams more = small_hp();
    more.n_layers = 3;
    expect_read_fail(ok, &more, "layer count");
    /* a model file is not an adapter */
    const char *model = make_base("not_adapter.gguf", 2);
    expect_read_fail(model, &hp, "not a LoRA adapter");
    /* truncated */
    FILE *f = fopen(ok, "rb");
    assert_non_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *cut = tu_tmp("cut_adapter.gguf");
    tu_write(cut, buf, n - 100);
    expect_read_fail(cut, &hp, "cut_adapter.gguf");
    expect_read_fail(tu_tmp("missing_adapter.gguf"), &hp, "missing_adapter.gguf");
    assert_int_not_equal(bee_lora_init(&lo, &hp, NULL, 0, 1.0f, 1), 0);
    bee_lora_free(&lo);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_gradients),
        cmocka_unit_test(test_lora_identity_at_init),
        cmocka_unit_test(test_lora_merge_equals_unmerged),
        cmocka_unit_test(test_lora_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
