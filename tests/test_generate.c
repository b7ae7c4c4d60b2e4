/* Generation: upstream beam search token for token (golden beam_search_result
 * for zh/en/mixed, alone and as one batch), greedy/sampled decoding, stop
 * strings, streaming and error paths. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "golden.h"
#include "testutil.h"
#include "util/error.h"

static const char *k_examples[] = {"zh", "en", "mixed"};


static void expect_json_equal(json_t *got, json_t *want, const char *what) {
    if (json_equal(got, want)) return;
    char *a = json_dumps(got, JSON_COMPACT), *b = json_dumps(want, JSON_COMPACT);
    fail_msg("%s:\n got  %s\n want %s", what, a, b);
}

static void test_beam_golden(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    bee_beam_params p;
    bee_beam_params_default(&p);
    p.beam_size = 3, p.max_length = 8, p.repetition_penalty = 1.1f;
    for (size_t i = 0; i < 3; i++) {
        json_t *rec = golden_record(k_examples[i]);
        bee_gen_input in;
        assert_int_equal(bee_gen_input_init(golden_tiny->tok, json_object_get(rec, "data"), &in), 0);
        json_t *out;
        if (bee_beam_search(golden_tiny, &in, 1, &p, &out)) fail_msg("%s", bee_error_message());
        expect_json_equal(out, json_object_get(rec, "beam_search_result"), k_examples[i]);
        json_decref(out);
        bee_gen_input_free(&in);
        json_decref(rec);
    }
}

/* One batch of all three: a shared ext table and one forward per step. */
static void test_beam_batch(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    bee_beam_params p;
    bee_beam_params_default(&p);
    p.beam_size = 3, p.max_length = 8, p.repetition_penalty = 1.1f;
    json_t *rec[3];
    bee_gen_input in[3];
    json_t *out[3];
    for (size_t i = 0; i < 3; i++) {
        rec[i] = golden_record(k_examples[i]);
        assert_int_equal(bee_gen_input_init(golden_tiny->tok, json_object_get(rec[i], "data"), &in[i]), 0);
    }
    if (bee_beam_search(golden_tiny, in, 3, &p, out)) fail_msg("%s", bee_error_message());
    for (size_t i = 0; i < 3; i++) {
        expect_json_equal(out[i], json_object_get(rec[i], "beam_search_result"), k_examples[i]);
        json_decref(out[i]);
        bee_gen_input_free(&in[i]);
        json_decref(rec[i]);
    }
}

/* Greedy decoding follows the golden argmax chain (no penalties, one slot). */
static void test_greedy_matches_argmax(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    json_t *rec = golden_record("zh");
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(golden_tiny->tok, json_object_get(rec, "data"), &in), 0);
    bee_sample_params p;
    bee_sample_params_default(&p);
    p.max_tokens = 5;
    json_t *out;
    int made = 0;
    assert_int_equal(bee_sample_generate(golden_tiny, &in, &p, &out, &made), 0);
    assert_int_equal(made, 5);
    bee_str want = {0};
    json_t *steps = json_object_get(rec, "incremental_steps");
    for (size_t i = 0; i < 5; i++) {
        int32_t id = (int32_t)json_integer_value(json_object_get(json_array_get(steps, i), "argmax_next"));
        assert_int_equal(bee_tokenizer_decode_one(golden_tiny->tok, id, NULL, &want), 0);
    }
    assert_string_equal(json_string_value(json_object_get(out, "<ans>")), want.s);
    bee_str_free(&want);
    json_decref(out);
    bee_gen_input_free(&in);
    json_decref(rec);
}

typedef struct {
    bee_str text;
    int calls;
} stream_sink;

static void sink(void *user, size_t slot, const char *text, size_t len) {
    stream_sink *s = user;
    (void)slot;
    bee_str_append(&s->text, text, len);
    s->calls++;
}

static json_t *sample_once(const char *prompt, bee_sample_params *p, int *made) {
    json_t *d = bee_dict_from_text(prompt);
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(golden_tiny->tok, d, &in), 0);
    json_t *out;
    if (bee_sample_generate(golden_tiny, &in, p, &out, made)) fail_msg("%s", bee_error_message());
    bee_gen_input_free(&in);
    json_decref(d);
    return out;
}

static void test_sampling_seed_and_stream(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    bee_sample_params p;
    bee_sample_params_default(&p);
    p.temperature = 0.9f, p.top_p = 0.95f, p.top_k = 50, p.min_p = 0.01f, p.seed = 7, p.max_tokens = 12;
    stream_sink s1 = {{0}, 0};
    p.stream = sink, p.stream_user = &s1;
    int made = 0;
    json_t *a = sample_once("北京是中国的首都", &p, &made);
    p.stream = NULL;
    json_t *b = sample_once("北京是中国的首都", &p, NULL); /* same seed, same text */
    assert_true(json_equal(a, b));
    assert_true(made >= 1 && made <= 12);
    assert_string_equal(s1.text.s ? s1.text.s : "", json_string_value(json_object_get(a, "<ans>")));
    p.seed = 8;
    int differs = 0;
    for (int k = 0; k < 4 && !differs; k++, p.seed++) {
        json_t *c = sample_once("北京是中国的首都", &p, NULL);
        differs = !json_equal(a, c);
        json_decref(c);
    }
    assert_true(differs);
    json_decref(a), json_decref(b);
    bee_str_free(&s1.text);
}

static void test_stop_strings(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    bee_sample_params p;
    bee_sample_params_default(&p);
    p.max_tokens = 10;
    json_t *full = sample_once("今天天气真好，", &p, NULL);
    const char *text = json_string_value(json_object_get(full, "<ans>"));
    assert_true(strlen(text) > 6);
    /* stop at the 2nd..4th bytes of the greedy answer: the answer is cut just before */
    char stop[16] = {0};
    size_t off = 3;
    while ((text[off] & 0xc0) == 0x80) off++;
    memcpy(stop, text + off, 3);
    const char *stops[] = {stop, NULL};
    p.stop = stops;
    stream_sink s = {{0}, 0};
    p.stream = sink, p.stream_user = &s;
    json_t *cut = sample_once("今天天气真好，", &p, NULL);
    const char *got = json_string_value(json_object_get(cut, "<ans>"));
    assert_int_equal(strlen(got), (size_t)(strstr(text, stop) - text));
    assert_memory_equal(got, text, strlen(got));
    assert_string_equal(s.text.s ? s.text.s : "", got); /* the stop string never streamed */
    bee_str_free(&s.text);
    json_decref(cut), json_decref(full);
}

static void test_multi_slot_sampling(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    json_t *rec = golden_record("mixed");
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(golden_tiny->tok, json_object_get(rec, "data"), &in), 0);
    bee_sample_params p;
    bee_sample_params_default(&p);
    p.max_tokens = 6; /* random weights rarely emit </s>: the first slot uses the whole budget */
    json_t *out;
    assert_int_equal(bee_sample_generate(golden_tiny, &in, &p, &out, NULL), 0);
    json_t *ans = json_object_get(out, "<ans>");
    assert_true(json_is_string(json_object_get(ans, "<mask_0>")));
    assert_true(json_is_null(json_object_get(ans, "<mask_1>")));
    json_decref(out);
    bee_gen_input_free(&in);
    json_decref(rec);
}

static void test_bad_params(void **state) {
    (void)state;
    if (!golden_tiny) skip();
    json_t *d = bee_dict_from_text("x");
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(golden_tiny->tok, d, &in), 0);
    bee_beam_params bp;
    bee_beam_params_default(&bp);
    bp.beam_size = 0;
    json_t *out = NULL;
    assert_int_equal(bee_beam_search(golden_tiny, &in, 1, &bp, &out), -1);
    assert_non_null(strstr(bee_error_message(), "beam size"));
    bee_sample_params sp;
    bee_sample_params_default(&sp);
    sp.top_p = 0;
    assert_int_equal(bee_sample_generate(golden_tiny, &in, &sp, &out, NULL), -1);
    assert_non_null(strstr(bee_error_message(), "top_p"));
    bee_gen_input_free(&in);
    json_decref(d);
}

/* The lane-wise greedy argmax ends where the sequential scan does: random
 * values, ties, signed zeros, infinities and NaNs (first or later), every
 * length around the 16-lane blocks. */
static int32_t argmax_scan(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

static void test_argmax_matches_scan(void **state) {
    (void)state;
    enum { N = 80 };
    float x[N];
    uint64_t r = 12345;
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1.0f, -1.0f};
    for (int trial = 0; trial < 4000; trial++) {
        size_t n = (size_t)(trial % N) + (trial % 7 == 0 ? 0 : 1);
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            int kind = (int)(r >> 60) % 4;
            if (kind == 0) x[i] = specials[(r >> 32) % 7];
            else if (kind == 1) x[i] = (float)((r >> 40) % 5); /* many ties */
            else x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 20.0 - 10.0);
        }
        if (bee_argmax(x, n) != argmax_scan(x, n)) fail_msg("trial %d (n=%zu): %d vs scan %d", trial, n, bee_argmax(x, n), argmax_scan(x, n));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beam_golden),       cmocka_unit_test(test_beam_batch),
        cmocka_unit_test(test_greedy_matches_argmax), cmocka_unit_test(test_argmax_matches_scan), cmocka_unit_test(test_sampling_seed_and_stream),
        cmocka_unit_test(test_stop_strings),      cmocka_unit_test(test_multi_slot_sampling),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, golden_tiny_setup, golden_tiny_teardown);
}
