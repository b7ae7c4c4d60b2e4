/* `bee train` end to end on a `bee init` model (no golden data needed):
 * the loss goes down, a run stopped and resumed from its checkpoint ends
 * bit-identical to an uninterrupted one, plain-text mode, the packer's
 * upstream target layout, and clear errors for bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/data.h"
#include "util/error.h"
#include "util/file.h"


static const char *k_data =
    "{\"input\": \"今天天气真好，\", \"<ans>\": \"出去玩吧。\"}\n"
    "{\"input\": \"hello world\", \"prompt\": \"repeat\", \"<ans>\": \"hello world\"}\n"
    "\n"
    "{\"question\": \"1+1=?\", \"<ans>\": \"2\"}\n"
    "{\"input\": \"abc <<def\", \"<ans>\": \"ghi\"}\n";

static const char *demo(void) {
    static char path[4096];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", tu_tmp("demo.gguf"));
        char *out;
        if (tu_bee_run(&out, "init -o %s --seed 3", path)) fail_msg("init failed: %s", out);
        free(out);
        tu_write(tu_tmp("d.jsonl"), k_data, strlen(k_data));
    }
    return path;
}

static void run_ok(char **out, const char *args) {
    int rc = tu_bee_run(out, "train -m %s --data %s --batch 1 --ctx 64 --lr 1e-2 --warmup 2 --accum 2 -t 2 %s", demo(),
                 tu_tmp("d.jsonl"), args);
    if (rc) fail_msg("bee train %s: exit %d\n%s", args, rc, *out);
}

static double last_loss(const char *out) {
    const char *p = strstr(out, "last loss ");
    if (!p) fail_msg("no final line in:\n%s", out);
    return atof(p + 10);
}

static double first_loss(const char *out) {
    const char *p = strstr(out, "step 1/");
    if (!p || !(p = strstr(p, "loss "))) fail_msg("no step-1 progress line in:\n%s", out);
    return atof(p + 5);
}

static int same_file(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    if (bee_read_file(a, &x, &nx) || bee_read_file(b, &y, &ny)) fail_msg("%s", bee_error_message());
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x), free(y);
    return same;
}

/* ================================================================ tests */

static void test_loss_decreases_and_resume(void **s) {
    (void)s;
    char *out, args[16384];
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s", tu_tmp("full.gguf"), tu_tmp("full.ckpt"));
    run_ok(&out, args);
    assert_non_null(strstr(out, "tok/s"));
    assert_non_null(strstr(out, "ETA"));
    double l0 = first_loss(out), l1 = last_loss(out);
    fprintf(stderr, "  loss %.4f -> %.4f over 8 steps\n", l0, l1);
    assert_true(l1 < l0 - 0.5);
    free(out);
    /* 3 steps, then 2 more, then the rest: same bytes as one run */
    const char *part = tu_tmp("part.gguf"), *ck = tu_tmp("part.ckpt");
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s --stop-after 3", part, ck);
    run_ok(&out, args), free(out);
    assert_false(same_file(tu_tmp("full.ckpt"), ck));
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s --resume --stop-after 2", part, ck);
    run_ok(&out, args);
    assert_non_null(strstr(out, "resumed from"));
    free(out);
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s --resume", part, ck);
    run_ok(&out, args), free(out);
    assert_true(same_file(tu_tmp("full.gguf"), part));
    assert_true(same_file(tu_tmp("full.ckpt"), ck));
    /* the trained model is a normal model */
    assert_int_equal(tu_bee_run(&out, "info %s", tu_tmp("full.gguf")), 0);
    free(out);
}

static void test_text_mode(void **s) {
    (void)s;
    const char *txt = "the quick brown fox\n\njumps over <the> lazy dog\n";
    tu_write(tu_tmp("t.txt"), txt, strlen(txt));
    char *out;
    int rc = tu_bee_run(&out, "train -m %s --text %s --steps 2 --ctx 32 -o %s", demo(), tu_tmp("t.txt"), tu_tmp("t.gguf"));
    if (rc) fail_msg("%s", out);
    assert_non_null(strstr(out, "2 examples"));
    free(out);
}

static void expect_error(const char *args, int want_rc, const char *needle) {
    char *out;
    int rc = tu_bee_run(&out, "train %s", args);
    if (rc != want_rc || !strstr(out, needle))
        fail_msg("bee train %s: exit %d (want %d), output:\n%s\n(expected '%s')", args, rc, want_rc, out, needle);
    free(out);
}

static void test_errors(void **s) {
    (void)s;
    char a[16384];
    expect_error("--help", 0, "usage: bee train");
    expect_error("--bogus", 2, "unknown option");
    snprintf(a, sizeof a, "-m %s -o x.gguf", demo());
    expect_error(a, 2, "exactly one of --data");
    snprintf(a, sizeof a, "-m %s --data %s", demo(), tu_tmp("d.jsonl"));
    expect_error(a, 2, "nothing would be saved");
    const char *bad = "{\"a\": \"b\", \"<ans>\": \"c\"}\n{\"a\": \n";
    tu_write(tu_tmp("bad.jsonl"), bad, strlen(bad));
    snprintf(a, sizeof a, "-m %s --data %s -o %s", demo(), tu_tmp("bad.jsonl"), tu_tmp("x.gguf"));
    expect_error(a, 1, "bad.jsonl:2: invalid JSON");
    tu_write(tu_tmp("notckpt"), "hello", 5);
    snprintf(a, sizeof a, "-m %s --data %s --ckpt %s --resume", demo(), tu_tmp("d.jsonl"), tu_tmp("notckpt"));
    expect_error(a, 1, "not a bee training checkpoint");
    snprintf(a, sizeof a, "-m %s --data %s -o x.gguf --ctx 4", demo(), tu_tmp("d.jsonl"));
    expect_error(a, 2, "--ctx");
}

/* The packer reproduces upstream pack_batch targets (golden/train README §2)
 * on a hand-checked instance: answer positions predict the next token, the
 * answer's <s> its first token, the last answer token </s>. */
static void test_pack_targets(void **s) {
    (void)s;
    bee_model *m;
    if (bee_model_load(demo(), &m)) fail_msg("%s", bee_error_message());
    bee_train_data d;
    if (bee_train_data_load(m->tok, tu_tmp("d.jsonl"), 0, 64, &d)) fail_msg("%s", bee_error_message());
    assert_int_equal(d.n, 4);
    uint32_t order[4] = {2, 0, 1, 3};
    size_t cur = 0;
    bee_packed_batch pb;
    assert_int_equal(bee_train_pack(&d, m->tok, order, 4, &cur, 2, 64, &pb), 0);
    const bee_train_batch *b = &pb.b;
    const bee_train_inst *x = &d.v[2]; /* {"question": "1+1=?", "<ans>": "2"} */
    assert_int_equal(b->length[0], (int32_t)x->n + (int32_t)d.v[0].n);
    for (uint32_t j = 0; j < x->n; j++) {
        int32_t want = -100;
        if (!x->ctx[j]) want = j + 1 < x->n ? x->ids[j + 1] : 7;
        if (b->targets[j] != want) fail_msg("target[%u] = %d, want %d", j, b->targets[j], want);
        assert_int_equal(b->spans[j], 0);
    }
    assert_int_equal(b->spans[x->n], 1); /* second instance, same row */
    assert_int_equal(b->segment_rel_offset[x->n], (int32_t)(x->n_seg * x->n_seg));
    assert_int_equal(b->n_ext, 1); /* placeholder (0, 1) as upstream */
    assert_true(cur >= 2);
    bee_packed_batch_free(&pb);
    /* an example longer than the row is cut at load time; an empty order fails */
    cur = 4;
    assert_int_equal(bee_train_pack(&d, m->tok, order, 4, &cur, 2, 32, &pb), -1);
    bee_train_data_free(&d);
    bee_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_decreases_and_resume),
        cmocka_unit_test(test_text_mode),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_pack_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
