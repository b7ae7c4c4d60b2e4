/* Token shards: text/JSONL → shard → the same instances (and the same token
 * ids as encoding directly), cutting to the row length on load, refusal of
 * corrupt, truncated and foreign shards with the file and offset named, and
 * `bee data` + `bee train --shards` training exactly like `--text`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "testutil.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"
#include "train/shard.h"
#include "util/error.h"
#include "util/file.h"

static const char k_text[] = "今天天气真好，出去玩吧。\n\nthe quick brown fox <jumps>\nabc\tdef Привет\n";
static const char k_jsonl[] = "{\"input\": \"今天天气\", \"<ans>\": \"真好\"}\n"
                              "{\"q\": \"1+1=?\", \"<ans>\": {\"a\": \"2\", \"b\": \"<mask_0>\"}}\n";

static bee_tokenizer *g_tok;

static int setup(void **s) {
    (void)s;
    g_tok = golden_builtin_tokenizer();
    return g_tok ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    bee_tokenizer_free(g_tok);
    return 0;
}

static void load_file(const char *name, const char *content, int is_text, bee_train_data *d) {
    tu_write(tu_tmp(name), content, strlen(content));
    if (bee_train_data_load(g_tok, tu_tmp(name), is_text, UINT32_MAX, d)) fail_msg("%s", bee_error_message());
}

static void assert_same_data(const bee_train_data *a, const bee_train_data *b) {
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->n_tokens, b->n_tokens);
    for (size_t i = 0; i < a->n; i++) {
        const bee_train_inst *x = &a->v[i], *y = &b->v[i];
        assert_int_equal(x->n, y->n);
        assert_int_equal(x->n_seg, y->n_seg);
        assert_memory_equal(x->ids, y->ids, x->n * sizeof *x->ids);
        assert_memory_equal(x->subs, y->subs, x->n * sizeof *x->subs);
        assert_memory_equal(x->segs, y->segs, x->n * sizeof *x->segs);
        assert_memory_equal(x->ctx, y->ctx, x->n);
        assert_memory_equal(x->seg_rel, y->seg_rel, (size_t)x->n_seg * x->n_seg * sizeof *x->seg_rel);
    }
}

static void round_trip(const char *name, const char *content, int is_text) {
    bee_train_data a, b = {0};
    load_file(name, content, is_text, &a);
    const char *shard = tu_tmp("rt.bin");
    assert_int_equal(bee_shard_write(shard, g_tok, &a), 0);
    if (bee_shard_load(shard, g_tok, UINT32_MAX, &b)) fail_msg("%s", bee_error_message());
    assert_same_data(&a, &b);
    bee_train_data_free(&a), bee_train_data_free(&b);
}

static void test_round_trip(void **s) {
    (void)s;
    round_trip("t.txt", k_text, 1);
    round_trip("d.jsonl", k_jsonl, 0);
}

/* The predicted segment of a text line is the line's own encoding (SPEC §5:
 * a need_predict segment ends without </s>). */
static void test_same_ids_as_encoding(void **s) {
    (void)s;
    bee_train_data a, b = {0};
    load_file("t.txt", k_text, 1, &a);
    assert_int_equal(bee_shard_write(tu_tmp("ids.bin"), g_tok, &a), 0);
    assert_int_equal(bee_shard_load(tu_tmp("ids.bin"), g_tok, UINT32_MAX, &b), 0);
    const char *line = "the quick brown fox <jumps>";
    bee_str esc = {0};
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    assert_int_equal(bee_text_escape(line, strlen(line), &esc), 0);
    assert_int_equal(bee_tokenizer_encode(g_tok, esc.s, esc.n, &ext, &ids), 0);
    const bee_train_inst *x = &b.v[1];
    assert_true(x->n > ids.n);
    assert_memory_equal(x->ids + x->n - ids.n, ids.v, ids.n * sizeof *ids.v);
    bee_str_free(&esc), bee_ivec_free(&ids), bee_ext_table_free(&ext);
    bee_train_data_free(&a), bee_train_data_free(&b);
}

static void test_cut_on_load(void **s) {
    (void)s;
    bee_train_data a, b = {0};
    load_file("t.txt", k_text, 1, &a);
    assert_int_equal(bee_shard_write(tu_tmp("cut.bin"), g_tok, &a), 0);
    assert_int_equal(bee_shard_load(tu_tmp("cut.bin"), g_tok, 5, &b), 0);
    assert_int_equal(b.n, a.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(b.v[i].n, a.v[i].n < 5 ? a.v[i].n : 5);
        assert_memory_equal(b.v[i].ids, a.v[i].ids, b.v[i].n * sizeof(int32_t));
    }
    /* a second shard appends */
    assert_int_equal(bee_shard_load(tu_tmp("cut.bin"), g_tok, 5, &b), 0);
    assert_int_equal(b.n, 2 * a.n);
    bee_train_data_free(&a), bee_train_data_free(&b);
}

/* ================================================================ bad files */

static uint8_t *g_good;
static size_t g_good_n;

static void expect_bad(const uint8_t *data, size_t n, const char *needle) {
    const char *path = tu_tmp("bad.bin");
    tu_write(path, data, n);
    bee_train_data d;
    load_file("keep.txt", "kept line\n", 1, &d);
    size_t n0 = d.n, t0 = d.n_tokens;
    if (bee_shard_load(path, g_tok, 256, &d) == 0) fail_msg("expected an error containing '%s'", needle);
    const char *msg = bee_error_message();
    if (!strstr(msg, needle) || !strstr(msg, "bad.bin")) fail_msg("error '%s' lacks '%s' or the file name", msg, needle);
    assert_int_equal(d.n, n0); /* what was loaded before is kept, nothing half-added */
    assert_int_equal(d.n_tokens, t0);
    bee_train_data_free(&d);
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_corrupt(void **s) {
    (void)s;
    bee_train_data a;
    load_file("t.txt", k_text, 1, &a);
    assert_int_equal(bee_shard_write(tu_tmp("good.bin"), g_tok, &a), 0);
    char *buf;
    assert_int_equal(bee_read_file(tu_tmp("good.bin"), &buf, &g_good_n), 0);
    g_good = (uint8_t *)buf;
    uint8_t *c = malloc(g_good_n + 8);
    char needle[64];
    /* every truncation is refused and names the offset where data ran out */
    size_t cuts[] = {0, 7, 39, 40, 44, 47, 48, 60, g_good_n / 2, g_good_n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
        expect_bad(g_good, cuts[i], cuts[i] < 40 ? "offset 0: truncated header" : "offset ");
    expect_bad(g_good, g_good_n - 1, "truncated");
    memcpy(c, g_good, g_good_n);
    c[0] = 'X';
    expect_bad(c, g_good_n, "bad magic");
    memcpy(c, g_good, g_good_n);
    put32(c + 8, 2);
    expect_bad(c, g_good_n, "offset 8: shard version 2");
    memcpy(c, g_good, g_good_n);
    c[16] ^= 1; /* fingerprint */
    expect_bad(c, g_good_n, "another vocabulary");
    memcpy(c, g_good, g_good_n);
    put32(c + 48, 0xffffffffu); /* ids[0] of the first instance */
    expect_bad(c, g_good_n, "offset 48: ids[0] = -1 out of range");
    memcpy(c, g_good, g_good_n);
    put32(c + 40, 1); /* 1 token */
    expect_bad(c, g_good_n, "offset 40: bad instance sizes");
    memcpy(c, g_good, g_good_n);
    put32(c + 44, 100000); /* segments */
    expect_bad(c, g_good_n, "offset 40: bad instance sizes");
    memcpy(c, g_good, g_good_n);
    c[24] = 0xff; /* instance count */
    expect_bad(c, g_good_n, "offset 24");
    memcpy(c, g_good, g_good_n);
    memcpy(c + g_good_n, "junk", 4);
    snprintf(needle, sizeof needle, "offset %zu: 4 bytes after", g_good_n);
    expect_bad(c, g_good_n + 4, needle);
    /* a context flag that is not 0/1: first instance's ctx starts after 3 * n ids */
    memcpy(c, g_good, g_good_n);
    uint32_t n0 = a.v[0].n;
    c[48 + 12 * n0] = 7;
    snprintf(needle, sizeof needle, "offset %u: context flag 7", 48 + 12 * n0);
    expect_bad(c, g_good_n, needle);
    bee_train_data d = {0};
    assert_int_equal(bee_shard_load(tu_tmp("nope.bin"), g_tok, 64, &d), -1);
    assert_non_null(strstr(bee_error_message(), "nope.bin"));
    free(c);
    free(g_good);
    bee_train_data_free(&a);
}

/* ================================================================ CLI */


static char *last_line_with(char *out, const char *needle) {
    char *p = strstr(out, needle);
    if (!p) fail_msg("no '%s' in:\n%s", needle, out);
    return p;
}

static void test_cli(void **s) {
    (void)s;
    char model[4096], txt[4096], shard[4096], *out;
    snprintf(model, sizeof model, "%s", tu_tmp("demo.gguf"));
    snprintf(txt, sizeof txt, "%s", tu_tmp("cli.txt"));
    snprintf(shard, sizeof shard, "%s", tu_tmp("cli.bin"));
    tu_write(txt, k_text, strlen(k_text));
    if (tu_bee_run(&out, "init -o %s --seed 3", model)) fail_msg("%s", out);
    free(out);
    if (tu_bee_run(&out, "data -m %s --text %s -o %s", model, txt, shard)) fail_msg("%s", out);
    assert_non_null(strstr(out, "3 instances"));
    free(out);
    /* same data, same seed: --shards trains exactly like --text */
    const char *common = "--steps 2 --batch 1 --ctx 16 --lr 1e-2 --warmup 1 -t 2";
    char *a, *b;
    if (tu_bee_run(&a, "train -m %s --text %s -o %s %s", model, txt, tu_tmp("a.gguf"), common)) fail_msg("%s", a);
    if (tu_bee_run(&b, "train -m %s --shards %s -o %s %s", model, shard, tu_tmp("b.gguf"), common)) fail_msg("%s", b);
    assert_string_equal(last_line_with(a, "last loss"), last_line_with(b, "last loss"));
    free(a), free(b);
    /* two shards: twice the examples */
    if (tu_bee_run(&out, "train -m %s --shards %s --shards %s --steps 1 --ctx 16 -o %s", model, shard, shard, tu_tmp("c.gguf")))
        fail_msg("%s", out);
    assert_non_null(strstr(out, "6 examples"));
    free(out);
    /* a shard made with another vocabulary is refused by name */
    const char *vocab = "<pad>\n<unk>\n<mask>\n<sep>\n</n>\n</_>\n<s>\n</s>\n<root>\n<ans>\n<option>\n<eod>\na\nb\n";
    tu_write(tu_tmp("v.txt"), vocab, strlen(vocab));
    tu_write(tu_tmp("ab.txt"), "ab ba\n", 6);
    if (tu_bee_run(&out, "data --vocab %s --text %s -o %s", tu_tmp("v.txt"), tu_tmp("ab.txt"), tu_tmp("v.bin")))
        fail_msg("%s", out);
    free(out);
    assert_int_equal(tu_bee_run(&out, "train -m %s --shards %s --steps 1 -o %s", model, tu_tmp("v.bin"), tu_tmp("d.gguf")), 1);
    assert_non_null(strstr(out, "v.bin: offset 12: made with another vocabulary"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "data --text %s -o %s", txt, tu_tmp("x.bin")), 2);
    assert_non_null(strstr(out, "--vocab"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "data -m %s -o %s", model, tu_tmp("x.bin")), 2);
    assert_non_null(strstr(out, "--text"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "train -m %s --text %s --shards %s --steps 1 -o %s", model, txt, shard, tu_tmp("x.gguf")), 2);
    assert_non_null(strstr(out, "exactly one"));
    free(out);
    assert_false(bee_file_exists(tu_tmp("x.bin")));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_same_ids_as_encoding),
        cmocka_unit_test(test_cut_on_load), cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
