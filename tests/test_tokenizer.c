/* Tokenizer parity with upstream: every case of golden/tokenizer_cases.jsonl
 * (ids, ext table, decode, and the inputs upstream rejects), plus round trips
 * and error paths on the builtin vocabulary (which needs no golden data). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

static bee_tokenizer *g_bee; /* bee.txt, or NULL when the shared data is absent */
static bee_tokenizer *g_builtin;

static int setup(void **state) {
    (void)state;
    g_builtin = golden_builtin_tokenizer();
    if (bee_tokenizer_load_txt(tu_shared("cpmbee/vocab/bee.txt"), &g_bee) != 0) g_bee = NULL;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    bee_tokenizer_free(g_bee);
    bee_tokenizer_free(g_builtin);
    return 0;
}

static void test_vocab_facts(void **state) {
    (void)state;
    if (!g_bee) skip();
    assert_int_equal(bee_tokenizer_n_vocab(g_bee), 86583);
    const bee_special_ids *sp = bee_tokenizer_special(g_bee);
    assert_int_equal(sp->pad, 0);
    assert_int_equal(sp->unk, 1);
    assert_int_equal(sp->nl, 4);
    assert_int_equal(sp->space, 5);
    assert_int_equal(sp->bos, 6);
    assert_int_equal(sp->eos, 7);
    assert_int_equal(sp->ans, 9);
    assert_int_equal(sp->eod, 65756);
    assert_int_equal(bee_tokenizer_find(g_bee, "<", 1), 40);
    assert_int_equal(bee_tokenizer_find(g_bee, ">", 1), 42);
}

static void check_case(json_t *c, int line) {
    const char *text = json_string_value(json_object_get(c, "text"));
    size_t tlen = json_string_length(json_object_get(c, "text"));
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    int rc = bee_tokenizer_encode(g_bee, text, tlen, &ext, &ids);
    if (json_object_get(c, "error")) {
        if (rc == 0) fail_msg("line %d: expected an error for '%s'", line, text);
        assert_non_null(strstr(bee_error_message(), "character") ? "ok" : strstr(bee_error_message(), "byte"));
        return;
    }
    if (rc != 0) fail_msg("line %d: unexpected error %s", line, bee_error_message());
    json_t *want = json_object_get(c, "ids");
    assert_int_equal(ids.n, json_array_size(want));
    for (size_t i = 0; i < ids.n; i++) {
        if (ids.v[i] != json_integer_value(json_array_get(want, i)))
            fail_msg("line %d ('%s'): id %zu is %d, want %lld", line, text, i, ids.v[i],
                     (long long)json_integer_value(json_array_get(want, i)));
    }
    json_t *et = json_object_get(c, "ext_table");
    assert_int_equal(ext.n, json_object_size(et));
    bee_decode_table dt = {0};
    for (size_t k = 0; k < ext.n; k++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", 86583 + k);
        const char *s = json_string_value(json_object_get(et, key));
        assert_non_null(s);
        assert_int_equal(strlen(s), ext.len[k]);
        assert_memory_equal(s, ext.str[k], ext.len[k]);
        assert_int_equal(bee_decode_table_set(&dt, (int32_t)(86583 + k), ext.str[k], ext.len[k]), 0);
    }
    bee_str out = {0};
    assert_int_equal(bee_tokenizer_decode(g_bee, ids.v, ids.n, &dt, &out), 0);
    const char *dec = json_string_value(json_object_get(c, "decoded"));
    if (strcmp(out.s, dec) != 0) fail_msg("line %d: decoded '%s', want '%s'", line, out.s, dec);
    bee_str_free(&out);
    bee_decode_table_free(&dt);
    bee_ivec_free(&ids);
    bee_ext_table_free(&ext);
}

static void test_golden_cases(void **state) {
    (void)state;
    if (!g_bee) skip();
    FILE *f = fopen(tu_shared("cpmbee/golden/tokenizer_cases.jsonl"), "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, errors = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *c = json_loads(line, 0, &jerr);
        assert_non_null(c);
        errors += json_object_get(c, "error") != NULL;
        check_case(c, ++n);
        json_decref(c);
    }
    free(line);
    fclose(f);
    assert_true(n >= 40);
    assert_true(errors >= 4);
}

static void test_error_messages(void **state) {
    (void)state;
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    assert_int_equal(bee_tokenizer_encode(g_builtin, "nested <a<b>>", 13, &ext, &ids), -1);
    assert_non_null(strstr(bee_error_message(), "character 9"));
    assert_int_equal(bee_tokenizer_encode(g_builtin, "x < y", 5, &ext, &ids), -1);
    assert_non_null(strstr(bee_error_message(), "unterminated"));
    assert_int_equal(bee_tokenizer_encode(g_builtin, "ends <", 6, &ext, &ids), -1);
    assert_int_equal(bee_tokenizer_encode(g_builtin, "bad \xff utf8", 10, &ext, &ids), -1);
    assert_non_null(strstr(bee_error_message(), "byte 4"));
    /* "<>" opens a tag that closes at the next '>' */
    assert_int_equal(bee_tokenizer_encode(g_builtin, "a<>b>c", 6, &ext, &ids), 0);
    assert_int_equal(ext.n, 1);
    assert_string_equal(ext.str[0], "<>b>");
    bee_ivec_free(&ids);
    bee_ext_table_free(&ext);
}

static void test_builtin_round_trip(void **state) {
    (void)state;
    const char *texts[] = {"你好，世界！Hello <<world>>", "多行\n文本 with  spaces", "emoji 😀 and <mask_0> tag", ""};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        bee_ext_table ext = {0};
        bee_ivec ids = {0};
        assert_int_equal(bee_tokenizer_encode(g_builtin, texts[i], strlen(texts[i]), &ext, &ids), 0);
        bee_decode_table dt = {0};
        for (size_t k = 0; k < ext.n; k++)
            bee_decode_table_set(&dt, (int32_t)(bee_tokenizer_n_vocab(g_builtin) + k), ext.str[k], ext.len[k]);
        bee_str out = {0};
        assert_int_equal(bee_tokenizer_decode(g_builtin, ids.v, ids.n, &dt, &out), 0);
        assert_string_equal(out.s, texts[i]);
        bee_str_free(&out);
        bee_decode_table_free(&dt);
        bee_ivec_free(&ids);
        bee_ext_table_free(&ext);
    }
}

static void test_bad_vocab(void **state) {
    (void)state;
    const char *dup[] = {"a", "b", "a"};
    uint64_t lens[] = {1, 1, 1};
    bee_tokenizer *t;
    assert_int_equal(bee_tokenizer_init(&t, dup, lens, 3), -1);
    assert_non_null(strstr(bee_error_message(), "duplicates"));
    const char *nospecial[] = {"a", "b"};
    assert_int_equal(bee_tokenizer_init(&t, nospecial, lens, 2), -1);
    assert_non_null(strstr(bee_error_message(), "<pad>"));
    assert_int_equal(bee_tokenizer_load_txt(tu_tmp("missing.txt"), &t), -1);
    assert_non_null(strstr(bee_error_message(), "missing.txt"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vocab_facts),        cmocka_unit_test(test_golden_cases),
        cmocka_unit_test(test_error_messages),     cmocka_unit_test(test_builtin_round_trip),
        cmocka_unit_test(test_bad_vocab),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
