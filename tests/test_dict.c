/* Structured input parity (SPEC §5–6) with golden/{zh,en,mixed}/record.json:
 * convert_data_to_id arrays, generation model inputs, batch ext table, slots
 * and decode table; plus error paths for malformed dicts. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "testutil.h"
#include "tokenizer/dict.h"
#include "util/error.h"

static bee_tokenizer *g_tok;

static int setup(void **state) {
    (void)state;
    if (bee_tokenizer_load_txt(tu_shared("cpmbee/vocab/bee.txt"), &g_tok) == 0) return 0;
    g_tok = golden_builtin_tokenizer();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    bee_tokenizer_free(g_tok);
    return 0;
}

static void expect_array(const char *what, const bee_ivec *got, json_t *want) {
    if (got->n != json_array_size(want)) fail_msg("%s: length %zu, want %zu", what, got->n, json_array_size(want));
    for (size_t i = 0; i < got->n; i++) {
        long long w = json_integer_value(json_array_get(want, i));
        if (got->v[i] != w) fail_msg("%s[%zu] = %d, want %lld", what, i, got->v[i], w);
    }
}

static json_t *load_record(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "cpmbee/golden/%s/record.json", name);
    json_error_t err;
    json_t *r = json_load_file(tu_shared(rel), 0, &err);
    if (!r) fail_msg("cannot load %s: %s", rel, err.text);
    return r;
}

static void check_convert(json_t *rec) {
    json_t *c = json_object_get(rec, "convert_data_to_id");
    bee_dict_enc e = {0};
    if (bee_dict_encode(g_tok, json_object_get(c, "input_after_placeholders"), &e))
        fail_msg("encode: %s", bee_error_message());
    expect_array("ids", &e.ids, json_object_get(c, "ids"));
    expect_array("id_subs", &e.subs, json_object_get(c, "id_subs"));
    expect_array("context", &e.ctx, json_object_get(c, "context"));
    expect_array("segment_ids", &e.segs, json_object_get(c, "segment_ids"));
    assert_int_equal(e.n_seg, json_integer_value(json_object_get(c, "num_segments")));
    bee_ivec rel = {.v = e.seg_rel, .n = (size_t)e.n_seg * (size_t)e.n_seg};
    expect_array("segment_rel", &rel, json_object_get(c, "segment_rel_flat"));
    json_t *et = json_object_get(c, "ext_table");
    assert_int_equal(e.ext.n, json_object_size(et));
    for (size_t k = 0; k < e.ext.n; k++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", 86583 + k);
        assert_string_equal(e.ext.str[k], json_string_value(json_object_get(et, key)));
    }
    json_t *names = json_object_get(c, "token_id_table");
    assert_int_equal(e.n_names, json_object_size(names));
    size_t i = 0;
    const char *nm;
    json_t *subs;
    json_object_foreach(names, nm, subs) {
        assert_int_equal(e.names[i].base_id, bee_tokenizer_find(g_tok, nm, strlen(nm)));
        assert_int_equal(e.names[i].ext.n, json_object_size(subs));
        i++;
    }
    bee_dict_enc_free(&e);
}

static void check_gen_inputs(json_t *rec) {
    json_t *mi = json_object_get(rec, "model_inputs");
    bee_gen_input in;
    if (bee_gen_input_init(g_tok, json_object_get(rec, "data"), &in)) fail_msg("gen input: %s", bee_error_message());
    expect_array("input", &in.ids, json_array_get(json_object_get(mi, "input"), 0));
    expect_array("input_sub", &in.subs, json_array_get(json_object_get(mi, "input_sub"), 0));
    expect_array("segment", &in.segs, json_array_get(json_object_get(mi, "segment"), 0));
    json_t *ps = json_object_get(json_object_get(rec, "other_info"), "predict_segments");
    assert_int_equal(in.n_slots, json_array_size(ps));
    for (size_t i = 0; i < in.n_slots; i++) {
        assert_int_equal(in.slots[i].segment, json_integer_value(json_array_get(json_array_get(ps, i), 0)));
        assert_int_equal(in.slots[i].answer, json_integer_value(json_array_get(json_array_get(ps, i), 1)));
    }
    bee_batch_ext b = {0};
    bee_decode_table dt = {0};
    assert_int_equal(bee_batch_ext_add(&b, g_tok, &in, &dt), 0);
    expect_array("batch_ext_table_ids", &b.base, json_object_get(mi, "batch_ext_table_ids"));
    expect_array("batch_ext_table_sub", &b.sub, json_object_get(mi, "batch_ext_table_sub"));
    json_t *et = json_object_get(json_object_get(rec, "other_info"), "ext_table");
    assert_int_equal(dt.n, json_object_size(et));
    for (size_t i = 0; i < dt.n; i++) {
        char key[32];
        snprintf(key, sizeof key, "%d", dt.id[i]);
        json_t *w = json_object_get(et, key);
        if (!w) fail_msg("decode table has id %d that golden lacks", dt.id[i]);
        assert_string_equal(dt.str[i], json_string_value(w));
    }
    bee_decode_table_free(&dt);
    bee_batch_ext_free(&b);
    bee_gen_input_free(&in);
}

static void run_example(const char *name) {
    tu_require_shared();
    json_t *rec = load_record(name);
    check_convert(rec);
    check_gen_inputs(rec);
    json_decref(rec);
}

static void test_zh(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    run_example("zh");
}
static void test_en(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    run_example("en");
}
static void test_mixed(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    run_example("mixed");
}

static void expect_error(const char *json, const char *needle) {
    json_error_t jerr;
    json_t *d = json_loads(json, 0, &jerr);
    assert_non_null(d);
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(g_tok, d, &in), -1);
    if (!strstr(bee_error_message(), needle)) fail_msg("error '%s' lacks '%s'", bee_error_message(), needle);
    json_decref(d);
}

static void test_errors(void **s) {
    (void)s;
    expect_error("{\"input\": \"x\"}", "no \"<ans>\"");
    expect_error("{\"input\": \"x\", \"<ans>\": {}}", "no answer slot");
    expect_error("{\"input\": 3, \"<ans>\": \"\"}", "field 'input'");
    expect_error("{\"a\": {\"b\": [1]}, \"<ans>\": \"\"}", "field 'a.b'");
    expect_error("{\"input\": \"x < y\", \"<ans>\": \"\"}", "field 'input'");
    expect_error("{\"input\": \"<foo_1>\", \"<ans>\": \"\"}", "invalid token");
    expect_error("{\"input\": \"x\", \"<ans>\": [\"\"]}", "<ans>");
    expect_error("[1, 2]", "JSON object");
}

static void test_fill_answers(void **s) {
    (void)s;
    json_error_t jerr;
    json_t *d = json_loads("{\"q\": \"x\", \"<ans>\": {\"a\": \"\", \"b\": {\"c\": \"\"}}}", 0, &jerr);
    bee_gen_input in;
    assert_int_equal(bee_gen_input_init(g_tok, d, &in), 0);
    assert_int_equal(in.n_answers, 2);
    assert_int_equal(in.n_slots, 2);
    char *answers[2] = {"one", NULL};
    json_t *out = bee_gen_fill_answers(&in, answers);
    char *txt = json_dumps(out, JSON_COMPACT);
    assert_string_equal(txt, "{\"q\":\"x\",\"<ans>\":{\"a\":\"one\",\"b\":{\"c\":null}}}");
    free(txt);
    json_decref(out);
    bee_gen_input_free(&in);
    json_decref(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zh),     cmocka_unit_test(test_en),          cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_errors), cmocka_unit_test(test_fill_answers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
