/* Quantized weight types (Q8_0, Q4_0, Q4_1; ggml block layouts): hand-checked
 * block layouts, round-trip error bounds, degenerate blocks, and the golden
 * tiny model quantized end to end (logit error vs f32 within documented bounds). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "golden.h"
#include "model/quantize.h"
#include "testutil.h"
#include "util/error.h"
#include "util/types.h"

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return bee_f16_to_f32(h);
}

static void test_layouts(void **s) {
    (void)s;
    float x[32];
    for (int i = 0; i < 32; i++) x[i] = (float)(i - 16) / 4.0f; /* -4 .. 3.75 */
    uint8_t b[40];
    bee_quantize_row(BEE_TYPE_Q8_0, x, b, 32);
    assert_true(fabsf(f16_at(b) - 4.0f / 127.0f) < 1e-5f);
    assert_int_equal((int8_t)b[2], -127); /* x[0] = -4 = -amax */
    assert_int_equal((int8_t)b[2 + 16], 0);
    bee_quantize_row(BEE_TYPE_Q4_0, x, b, 32);
    assert_true(f16_at(b) == 0.5f); /* d = max / -8 with max = -4 */
    assert_int_equal(b[2] & 15, 0);   /* x[0] = -4 → q 0 (low nibble of byte 0) */
    assert_int_equal(b[2] >> 4, 8);   /* x[16] = 0 → q 8 (high nibble of byte 0) */
    bee_quantize_row(BEE_TYPE_Q4_1, x, b, 32);
    assert_true(fabsf(f16_at(b) - 7.75f / 15.0f) < 1e-3f);
    assert_true(f16_at(b + 2) == -4.0f);
    assert_int_equal(b[4] & 15, 0);
    assert_int_equal(b[4 + 15] >> 4, 15); /* x[31] = max */
    assert_int_equal(bee_type_nbytes(BEE_TYPE_Q8_0, 64), 68);
    assert_int_equal(bee_type_nbytes(BEE_TYPE_Q4_0, 64), 36);
    assert_int_equal(bee_type_nbytes(BEE_TYPE_Q4_1, 64), 40);
    assert_int_equal(bee_type_nbytes(BEE_TYPE_Q4_0, 48), 0); /* not a whole block */
    assert_int_equal(bee_type_from_name("Q4_1"), BEE_TYPE_Q4_1);
}

/* Per element error bound, relative to each block's scale. */
static void check_round_trip(uint32_t type, double factor) {
    enum { N = 4096 };
    static float x[N], y[N];
    static uint8_t q[N * 2];
    uint64_t st = 12345;
    for (int i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 6 - 3) * (i % 64 < 32 ? 1.0f : 0.01f);
    }
    bee_quantize_row(type, x, q, N);
    bee_dequantize_row(type, q, y, N);
    for (int k = 0; k < N / 32; k++) {
        float mn = x[k * 32], mx = x[k * 32];
        for (int i = 0; i < 32; i++) mn = fminf(mn, x[k * 32 + i]), mx = fmaxf(mx, x[k * 32 + i]);
        double range = type == BEE_TYPE_Q4_1 ? (mx - mn) / 15.0 : fmax(fabs(mn), fabs(mx)) / (type == BEE_TYPE_Q8_0 ? 127.0 : 8.0);
        for (int i = 0; i < 32; i++) {
            double e = fabs((double)x[k * 32 + i] - y[k * 32 + i]);
            if (e > factor * range + 1e-3 * fabs(mn)) fail_msg("%s block %d elem %d: error %g > %g x step %g",
                                                              bee_type_name(type), k, i, e, factor, range);
        }
    }
}

static void test_round_trip(void **s) {
    (void)s;
    check_round_trip(BEE_TYPE_Q8_0, 0.6);
    check_round_trip(BEE_TYPE_Q4_0, 1.05); /* the side opposite the largest value may clip to q = 15 */
    check_round_trip(BEE_TYPE_Q4_1, 0.6);
    float z[32] = {0}, c[32], y[32];
    uint8_t q[40];
    const uint32_t types[] = {BEE_TYPE_Q8_0, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
    for (int t = 0; t < 3; t++) {
        bee_quantize_row(types[t], z, q, 32);
        bee_dequantize_row(types[t], q, y, 32);
        for (int i = 0; i < 32; i++) assert_true(y[i] == 0.0f);
        for (int i = 0; i < 32; i++) c[i] = 1.5f;
        bee_quantize_row(types[t], c, q, 32);
        bee_dequantize_row(types[t], q, y, 32);
        for (int i = 0; i < 32; i++) assert_true(isfinite(y[i]) && fabsf(y[i] - 1.5f) < 0.01f);
    }
}

/* The golden tiny model quantized: prefill logits vs the f32 model. */
static void test_model_quantized(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    golden_write_tiny(tu_tmp("f32.gguf"), NULL, 0);
    const uint32_t types[] = {BEE_TYPE_Q8_0, BEE_TYPE_Q4_0, BEE_TYPE_Q4_1};
    /* random N(0,1) weights are a hard case for 4 bits (the embedding is quantized too here);
       golden logits span about ±5 */
    /* q8_0 activations add to the weight rounding: 0.063 with f32 activations, 0.09-0.10 with int8 dots */
    const double tol[] = {0.15, 2.0, 2.0}, kl_tol[] = {1e-3, 0.1, 0.1};
    bee_model *ref;
    assert_int_equal(bee_model_load(tu_tmp("f32.gguf"), &ref), 0);
    for (int t = 0; t < 3; t++) {
        bee_quantize_opts o = {types[t], (int)types[t]};
        const char *path = tu_tmp(bee_type_name(types[t]));
        if (bee_model_quantize(tu_tmp("f32.gguf"), path, &o, NULL)) fail_msg("%s", bee_error_message());
        bee_model *m;
        assert_int_equal(bee_model_load(path, &m), 0);
        json_t *rec = golden_record("mixed");
        bee_gen_input in;
        assert_int_equal(bee_gen_input_init(m->tok, json_object_get(rec, "data"), &in), 0);
        bee_gen_batch b;
        assert_int_equal(bee_gen_batch_init(&b, m, &in, 1), 0);
        size_t n = in.ids.n, W = b.width;
        bee_token *tk = calloc(n, sizeof *tk);
        for (size_t i = 0; i < n; i++) tk[i] = (bee_token){in.ids.v[i], in.subs.v[i], (int32_t)i, in.segs.v[i], 0, in.enc.n_seg, 0, 1};
        float *a = malloc(W * sizeof *a), *r = malloc(W * sizeof *r);
        const bee_model *models[2] = {m, ref};
        float *outs[2] = {a, r};
        for (int k = 0; k < 2; k++) {
            bee_seq sq;
            assert_int_equal(bee_seq_init(&sq, models[k], 0, in.enc.seg_rel, (size_t)in.enc.n_seg * in.enc.n_seg), 0);
            bee_seq *sp[1] = {&sq};
            const bee_token *tp[1] = {tk};
            assert_int_equal(bee_forward(models[k], sp, tp, &n, 1, &b.ext, BEE_LOGITS_LAST, outs[k], NULL), 0);
            bee_seq_free(&sq);
        }
        double mx = 0, kl = 0, la = -INFINITY, lr = -INFINITY, sa = 0, sr = 0;
        for (size_t v = 0; v < W; v++) mx = fmax(mx, fabs(a[v] - r[v])), la = fmax(la, a[v]), lr = fmax(lr, r[v]);
        for (size_t v = 0; v < W; v++) sa += exp(a[v] - la), sr += exp(r[v] - lr);
        for (size_t v = 0; v < W; v++) {
            double pr = exp(r[v] - lr) / sr, pa = exp(a[v] - la) / sa;
            kl += pr * (log(pr) - log(pa));
        }
        fprintf(stderr, "  %s: max |logit - f32| %.4f, KL(f32 || %s) %.3g\n", bee_type_name(types[t]), mx,
                bee_type_name(types[t]), kl);
        if (!(mx <= tol[t]) || !(kl <= kl_tol[t]))
            fail_msg("%s: logit error %g (max %g), KL %g (max %g)", bee_type_name(types[t]), mx, tol[t], kl, kl_tol[t]);
        free(a), free(r), free(tk);
        bee_gen_batch_free(&b);
        bee_gen_input_free(&in);
        json_decref(rec);
        bee_model_free(m);
    }
    bee_model_free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_layouts), cmocka_unit_test(test_round_trip),
                                       cmocka_unit_test(test_model_quantized)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
