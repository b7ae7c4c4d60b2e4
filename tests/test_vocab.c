/* bee vocab build: special tokens at their fixed ids, determinism, round trip
 * through the tokenizer and the written file, coverage counting, error paths,
 * and the CLI. Uses a small inline bilingual corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_build.h"
#include "util/error.h"
#include "util/file.h"

static const char k_corpus[] =
    "今天天气真好，我们去公园散步。\n"
    "今天天气不好，我们在家里看书。\n"
    "天气预报说明天天气很好。\n"
    "The weather is good today, and the park is open.\n"
    "The weather is bad today; the reading room is open.\n"
    "Reading and walking are good for the health of the people.\n"
    "今天天气真好，我们去公园散步。\n"
    "The weather is good today, and the park is open.\n"
    "a <b> tag, x > y; a <b> tag, x > y\n";

static bee_vocab_opts small_opts(void) {
    bee_vocab_opts o;
    bee_vocab_opts_default(&o);
    o.size = 120, o.min_char_count = 1, o.min_piece_count = 2;
    return o;
}

static bee_vocab build_ok(const char *text, const bee_vocab_opts *o) {
    bee_vocab v;
    if (bee_vocab_build(text, strlen(text), o, &v)) fail_msg("build failed: %s", bee_error_message());
    return v;
}

static void test_special_ids(void **s) {
    (void)s;
    bee_vocab_opts o = small_opts();
    bee_vocab v = build_ok(k_corpus, &o);
    bee_tokenizer *t;
    if (bee_vocab_tokenizer(&v, &t)) fail_msg("tokenizer: %s", bee_error_message());
    const bee_special_ids *sp = bee_tokenizer_special(t);
    assert_int_equal(sp->pad, 0);
    assert_int_equal(sp->unk, 1);
    assert_int_equal(sp->mask, 2);
    assert_int_equal(sp->sep, 3);
    assert_int_equal(sp->nl, 4);
    assert_int_equal(sp->space, 5);
    assert_int_equal(sp->bos, 6);
    assert_int_equal(sp->eos, 7);
    assert_int_equal(sp->root, 8);
    assert_int_equal(sp->ans, 9);
    assert_int_equal(sp->option, 10);
    assert_int_equal(sp->eod, 11);
    assert_true(v.n <= o.size); /* a tiny corpus may run out of pieces */
    assert_int_equal(v.n_special + v.n_chars + v.n_cjk + v.n_en, v.n);
    /* frequent words of both languages made it in as single tokens */
    assert_true(bee_tokenizer_find(t, "天气", strlen("天气")) >= 0);
    assert_true(bee_tokenizer_find(t, " weather", 8) >= 0);
    assert_true(v.n_cjk > 0 && v.n_en > 0);
    bee_tokenizer_free(t);
    bee_vocab_free(&v);
}

static void test_deterministic(void **s) {
    (void)s;
    bee_vocab_opts o = small_opts();
    bee_vocab a = build_ok(k_corpus, &o), b = build_ok(k_corpus, &o);
    assert_int_equal(a.n, b.n);
    for (uint32_t i = 0; i < a.n; i++) assert_string_equal(a.tok[i], b.tok[i]);
    char *fa, *fb;
    size_t na, nb;
    assert_int_equal(bee_vocab_write(&a, tu_tmp("a.txt")), 0);
    assert_int_equal(bee_vocab_write(&b, tu_tmp("b.txt")), 0);
    assert_int_equal(bee_read_file(tu_tmp("a.txt"), &fa, &na), 0);
    assert_int_equal(bee_read_file(tu_tmp("b.txt"), &fb, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(fa, fb, na);
    free(fa), free(fb);
    bee_vocab_free(&a), bee_vocab_free(&b);
}

/* The written file loads as bee.txt (renames included) and encodes the corpus
 * to fewer tokens than characters, decoding back to the same text. */
static void test_round_trip(void **s) {
    (void)s;
    bee_vocab_opts o = small_opts();
    bee_vocab v = build_ok(k_corpus, &o);
    const char *path = tu_tmp("vocab.txt");
    assert_int_equal(bee_vocab_write(&v, path), 0);
    bee_tokenizer *t;
    if (bee_tokenizer_load_txt(path, &t)) fail_msg("load: %s", bee_error_message());
    assert_int_equal(bee_tokenizer_n_vocab(t), v.n);
    for (uint32_t i = 0; i < v.n; i++) {
        size_t len;
        const char *txt = bee_tokenizer_text(t, (int32_t)i, &len);
        assert_int_equal(len, strlen(v.tok[i]));
        assert_memory_equal(txt, v.tok[i], len);
    }
    const char *line = "今天天气真好，我们去公园散步。 The weather is good <today>.";
    bee_str esc = {0}, dec = {0};
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    assert_int_equal(bee_text_escape(line, strlen(line), &esc), 0);
    assert_int_equal(bee_tokenizer_encode(t, esc.s, esc.n, &ext, &ids), 0);
    assert_int_equal(ext.n, 0); /* every character of the line is in the corpus */
    assert_true(ids.n < 40);
    assert_int_equal(bee_tokenizer_decode(t, ids.v, ids.n, NULL, &dec), 0);
    assert_int_equal(dec.n, esc.n);
    assert_memory_equal(dec.s, esc.s, esc.n);
    bee_str_free(&esc), bee_str_free(&dec), bee_ivec_free(&ids), bee_ext_table_free(&ext);
    bee_tokenizer_free(t);
    bee_vocab_free(&v);
}

static void test_measure(void **s) {
    (void)s;
    bee_vocab_opts o = small_opts();
    o.min_char_count = 2; /* "Ж" and "ö" occur once: left unknown */
    char text[2048];
    snprintf(text, sizeof text, "%sЖ weather ö\n", k_corpus);
    bee_vocab v = build_ok(text, &o);
    bee_tokenizer *t;
    assert_int_equal(bee_vocab_tokenizer(&v, &t), 0);
    assert_int_equal(bee_tokenizer_find(t, "Ж", strlen("Ж")), -1);
    bee_vocab_stats st;
    assert_int_equal(bee_vocab_measure(t, "Ж weather ö\n\nre", strlen("Ж weather ö\n\nre"), &st), 0);
    assert_int_equal(st.lines, 2);
    assert_int_equal(st.chars, 13);
    assert_int_equal(st.unknown_chars, 2);
    /* "Ж", " weather" (one or more pieces), " ", "ö", "r"+"e" or "re" */
    assert_true(st.tokens >= 5 && st.tokens <= 13);
    bee_tokenizer_free(t);
    bee_vocab_free(&v);
}

static void expect_fail(const char *text, size_t len, uint32_t size, const char *needle) {
    bee_vocab_opts o = small_opts();
    o.size = size;
    bee_vocab v;
    if (bee_vocab_build(text, len, &o, &v) == 0) fail_msg("expected an error containing '%s'", needle);
    if (!strstr(bee_error_message(), needle)) fail_msg("error '%s' lacks '%s'", bee_error_message(), needle);
    assert_null(v.tok);
}

static void test_errors(void **s) {
    (void)s;
    expect_fail("", 0, 100, "empty corpus");
    expect_fail(" \n\n  \n", 6, 100, "empty corpus");
    expect_fail(k_corpus, strlen(k_corpus), 12, "size 12 out of range");
    expect_fail(k_corpus, strlen(k_corpus), 0, "out of range");
    expect_fail("ab\xff" "cd", 5, 100, "byte offset 2");
    bee_vocab_opts o = small_opts();
    o.max_cjk_chars = 1;
    bee_vocab v;
    assert_int_equal(bee_vocab_build(k_corpus, strlen(k_corpus), &o, &v), -1);
    assert_non_null(strstr(bee_error_message(), "2..8"));
    /* a size smaller than the characters keeps the most frequent ones */
    o = small_opts();
    o.size = 20;
    v = build_ok(k_corpus, &o);
    assert_int_equal(v.n, 20);
    assert_true(v.n_chars_dropped > 0);
    bee_vocab_free(&v);
}

static void test_cli(void **s) {
    (void)s;
    char corpus[4096]; /* tu_tmp's buffers rotate */
    snprintf(corpus, sizeof corpus, "%s", tu_tmp("corpus.txt"));
    tu_write(corpus, k_corpus, strlen(k_corpus));
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s vocab build --corpus %s -o %s --size 100 --min-count 1 --min-piece-count 2", tu_bee(),
             corpus, tu_tmp("cli.txt"));
    if (tu_run(cmd, &out)) fail_msg("%s\n%s", cmd, out);
    assert_non_null(strstr(out, "coverage 100.0000%"));
    assert_non_null(strstr(out, "chars/token"));
    free(out);
    assert_true(bee_file_exists(tu_tmp("cli.txt")));
    snprintf(cmd, sizeof cmd, "%s init -o %s --vocab %s --shape tiny", tu_bee(), tu_tmp("m.gguf"), tu_tmp("cli.txt"));
    if (tu_run(cmd, &out)) fail_msg("%s\n%s", cmd, out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s vocab build --corpus %s -o %s", tu_bee(), tu_tmp("missing.txt"), tu_tmp("x.txt"));
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "missing.txt"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s vocab build -o %s", tu_bee(), tu_tmp("x.txt"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--corpus"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s vocab build --corpus %s -o %s --size 5", tu_bee(), corpus, tu_tmp("x.txt"));
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "out of range"));
    free(out);
    assert_false(bee_file_exists(tu_tmp("x.txt")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special_ids), cmocka_unit_test(test_deterministic), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_measure),     cmocka_unit_test(test_errors),        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
