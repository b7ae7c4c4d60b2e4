/* The public API in include/bee.h on a random-weight model (no golden data
 * needed): load, tokenize, beam and sampled generation, error reporting. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bee.h"
#include "model/init.h"
#include "testutil.h"

static bee_model *g_model;

static int setup(void **state) {
    (void)state;
    bee_init_opts o = {0};
    uint8_t *mask = NULL;
    assert_int_equal(bee_init_preset("tiny", &o.hp, &mask), 0);
    o.type = 1; /* f16 weights exercise the conversion path */
    o.seed = 5;
    assert_int_equal(bee_model_init_random(tu_tmp("api.gguf"), &o), 0);
    assert_int_equal(bee_model_load(tu_tmp("api.gguf"), &g_model), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    bee_model_free(g_model);
    return 0;
}

static void test_tokenize(void **s) {
    (void)s;
    char *j = NULL;
    assert_int_equal(bee_tokenize_json(g_model, "你好<mask_0>😀", &j), 0);
    json_error_t err;
    json_t *o = json_loads(j, 0, &err);
    assert_int_equal(json_array_size(json_object_get(o, "ids")), 4);
    assert_int_equal(json_object_size(json_object_get(o, "ext_table")), 2);
    json_decref(o);
    free(j);
    assert_int_equal(bee_tokenize_json(g_model, "a <b", &j), -1);
    assert_non_null(strstr(bee_last_error(), "unterminated"));
}

static void test_generate(void **s) {
    (void)s;
    bee_generate_params p;
    bee_generate_params_default(&p);
    p.max_length = 4;
    char *out = NULL;
    assert_int_equal(bee_generate_json(g_model, "{\"input\":\"天气\",\"<ans>\":{\"a\":\"\",\"b\":\"\"}}", &p, &out), 0);
    json_error_t err;
    json_t *o = json_loads(out, 0, &err);
    assert_non_null(json_object_get(json_object_get(o, "<ans>"), "a"));
    json_decref(o);
    free(out);
    p.mode = BEE_DECODE_SAMPLE, p.temperature = 1.0f, p.seed = 1;
    char *a = NULL, *b = NULL;
    assert_int_equal(bee_generate_json(g_model, "{\"input\":\"天气\",\"<ans>\":\"\"}", &p, &a), 0);
    assert_int_equal(bee_generate_json(g_model, "{\"input\":\"天气\",\"<ans>\":\"\"}", &p, &b), 0);
    assert_string_equal(a, b);
    free(a), free(b);
    assert_int_equal(bee_generate_json(g_model, "{\"input\":", &p, &out), -1);
    assert_non_null(strstr(bee_last_error(), "invalid JSON"));
    assert_true(bee_model_n_params(g_model) > 1000);
    assert_non_null(bee_version());
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_tokenize), cmocka_unit_test(test_generate)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
