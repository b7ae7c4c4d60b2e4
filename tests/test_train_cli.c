/* `bee train` end to end on a `bee init` model (no golden data needed):
 * the loss goes down, a run stopped and resumed from its checkpoint ends
 * bit-identical to an uninterrupted one, plain-text mode, the packer's
 * upstream target layout, and clear errors for bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include <jansson.h>
#include <math.h>

#include "train/data.h"
#include "train/trainlog.h"
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

/* kill -9 in the middle of a checkpoint save (BEE_CRASH_AFTER_BYTES makes the
 * process SIGKILL itself once the temp file has that many bytes): the previous
 * checkpoint is left byte for byte, and resuming from it ends exactly where an
 * uninterrupted run does. */
static void test_kill_during_save(void **s) {
    (void)s;
    char *out, args[16384], ck[4096], part[4096], saved[4096], ref_ck[4096], ref_gguf[4096];
    /* tu_tmp's buffers are reused after a few calls: keep copies */
    snprintf(ck, sizeof ck, "%s", tu_tmp("kill.ckpt"));
    snprintf(part, sizeof part, "%s", tu_tmp("kill.gguf"));
    snprintf(saved, sizeof saved, "%s", tu_tmp("kill-step3.ckpt"));
    snprintf(ref_ck, sizeof ref_ck, "%s", tu_tmp("ref.ckpt"));
    snprintf(ref_gguf, sizeof ref_gguf, "%s", tu_tmp("ref.gguf"));
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s", ref_gguf, ref_ck);
    run_ok(&out, args), free(out);
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s --stop-after 3", part, ck);
    run_ok(&out, args), free(out);
    char *b;
    size_t nb;
    assert_int_equal(bee_read_file(ck, &b, &nb), 0);
    tu_write(saved, b, nb);
    free(b);
    setenv("BEE_CRASH_AFTER_BYTES", "4096", 1);
    /* no -o: the only file this run writes is the checkpoint */
    int rc = tu_bee_run(&out, "train -m %s --data %s --batch 1 --ctx 64 --lr 1e-2 --warmup 2 --accum 2 -t 2 --steps 8 "
                              "--ckpt %s --resume --stop-after 2",
                        demo(), tu_tmp("d.jsonl"), ck);
    unsetenv("BEE_CRASH_AFTER_BYTES");
    free(out);
    assert_int_not_equal(rc, 0); /* killed, not a clean exit */
    assert_true(same_file(saved, ck));
    snprintf(args, sizeof args, "--steps 8 -o %s --ckpt %s --resume", part, ck);
    run_ok(&out, args);
    assert_non_null(strstr(out, "resumed from"));
    free(out);
    assert_true(same_file(ref_ck, ck));
    assert_true(same_file(ref_gguf, part));
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


/* Points of the first <polyline class="CLASS" ... points="..."> of an SVG. */
static size_t polyline_points(const char *svg, const char *cls) {
    char key[64];
    snprintf(key, sizeof key, "<polyline class=\"%s\"", cls);
    const char *p = strstr(svg, key);
    if (!p) return 0;
    p = strstr(p, "points=\"");
    assert_non_null(p);
    p += 8;
    size_t n = 0;
    for (; *p && *p != '"'; p++) n += *p == ',';
    return n;
}

/* noinline: GCC 12 -O2 reports a false -Wdangling-pointer when this is inlined */
__attribute__((noinline)) static char *slurp(const char *path) {
    char *x = NULL;
    size_t n = 0;
    if (bee_read_file(path, &x, &n)) fail_msg("%s", bee_error_message());
    return x;
}

/* Checks a --log file line by line with jansson: steps (in order, as given),
 * and how many lines carry a training loss and an eval_loss. */
static void check_log(const char *path, const unsigned *steps, size_t n_steps, size_t want_loss, size_t want_eval) {
    char *x = slurp(path), *save = NULL;
    size_t n = 0, n_loss = 0, n_eval = 0;
    for (char *line = strtok_r(x, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
        json_error_t err;
        json_t *o = json_loads(line, 0, &err);
        if (!json_is_object(o)) fail_msg("%s line %zu does not parse: %s", path, n + 1, line);
        json_t *st = json_object_get(o, "step");
        assert_true(json_is_integer(st));
        if (n < n_steps && json_integer_value(st) != steps[n])
            fail_msg("%s line %zu: step %lld, want %u", path, n + 1, (long long)json_integer_value(st), steps[n]);
        if (json_object_get(o, "loss")) {
            n_loss++;
            for (const char *k = "lr\0gnorm\0tok_s\0"; *k; k += strlen(k) + 1)
                if (!json_is_number(json_object_get(o, k))) fail_msg("%s line %zu: no '%s'", path, n + 1, k);
            assert_true(json_real_value(json_object_get(o, "loss")) > 0);
        }
        if (json_object_get(o, "eval_loss")) n_eval++, assert_true(json_number_value(json_object_get(o, "eval_loss")) > 0);
        json_decref(o);
    }
    free(x);
    if (n != n_steps || n_loss != want_loss || n_eval != want_eval)
        fail_msg("%s: %zu lines (%zu with loss, %zu with eval_loss), want %zu (%zu, %zu)", path, n, n_loss, n_eval,
                 n_steps, want_loss, want_eval);
}

static void check_svg(const char *path, size_t want_train, size_t want_eval) {
    char *svg = slurp(path);
    const char *why = tu_xml_problem(svg);
    if (why) fail_msg("%s is not well-formed: %s", path, why);
    assert_non_null(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_non_null(strstr(svg, ">step</text>"));
    assert_non_null(strstr(svg, "loss (nats per token)"));
    size_t nt = polyline_points(svg, "train"), ne = tu_count(svg, "<circle class=\"eval\"");
    if (nt != want_train || ne != want_eval)
        fail_msg("%s: %zu training points and %zu evaluations, want %zu and %zu", path, nt, ne, want_train, want_eval);
    assert_int_equal(polyline_points(svg, "eval-line"), want_eval);
    free(svg);
}

/* --eval-data, --log and --curve on a run, a stopped + resumed run (the log
 * keeps its lines up to the checkpoint and drops later ones), and bee plot. */
static void test_log_and_curve(void **s) {
    (void)s;
    char *out, args[16384], log[4096], svg[4096], ck[4096];
    snprintf(log, sizeof log, "%s", tu_tmp("run.jsonl"));
    snprintf(svg, sizeof svg, "%s", tu_tmp("run.svg"));
    snprintf(ck, sizeof ck, "%s", tu_tmp("lc.ckpt"));
    snprintf(args, sizeof args, "--steps 5 --eval-data %s --eval-every 2 -o %s --log %s --curve %s", tu_tmp("d.jsonl"),
             tu_tmp("lc.gguf"), log, svg);
    run_ok(&out, args);
    assert_non_null(strstr(out, "step 0/5  eval "));
    assert_non_null(strstr(out, "held-out set: 4 of 4 examples in"));
    const char *p = strstr(out, "step 2/5");
    assert_non_null(p);
    assert_non_null(strstr(p, "  eval "));
    assert_non_null(strstr(out, ", held-out loss "));
    free(out);
    static const unsigned all[] = {0, 1, 2, 3, 4, 5};
    check_log(log, all, 6, 5, 4); /* evaluations at 0, 2, 4 and the last step */
    check_svg(svg, 5, 4);
    /* bee plot redraws the same chart from the log */
    int rc = tu_bee_run(&out, "plot --log %s -o %s --title 'a <b> & c'", log, tu_tmp("plot.svg"));
    if (rc) fail_msg("bee plot: %s", out);
    assert_non_null(strstr(out, "5 training points, 4 evaluations"));
    free(out);
    check_svg(tu_tmp("plot.svg"), 5, 4);
    char *t = slurp(tu_tmp("plot.svg"));
    assert_non_null(strstr(t, ">a &lt;b&gt; &amp; c</text>"));
    free(t);

    /* stop after 3, add a stale line from "the future", resume */
    snprintf(args, sizeof args, "--steps 5 --eval-data %s --eval-every 2 --ckpt %s --log %s --curve %s --stop-after 3",
             tu_tmp("d.jsonl"), ck, log, svg);
    run_ok(&out, args), free(out);
    static const unsigned first[] = {0, 1, 2, 3};
    check_log(log, first, 4, 3, 3); /* the end of an invocation is evaluated too */
    FILE *f = fopen(log, "a");
    assert_non_null(f);
    fputs("{\"step\":4,\"loss\":1.5,\"lr\":0.01,\"gnorm\":1,\"tok_s\":5}\n{\"step\":5,\"lo", f);
    fclose(f);
    snprintf(args, sizeof args, "--steps 5 --eval-data %s --eval-every 2 --ckpt %s --log %s --curve %s --resume",
             tu_tmp("d.jsonl"), ck, log, svg);
    run_ok(&out, args), free(out);
    check_log(log, all, 6, 5, 5);
    check_svg(svg, 5, 5);
}

/* The chart itself: averaging above 2000 points, NaN losses skipped, a flat
 * curve, an empty log, and log lines read back. */
static void test_curve_svg(void **s) {
    (void)s;
    bee_train_log l = {0};
    for (unsigned i = 1; i <= 5000; i++) {
        bee_log_point p = {i, 5.0 + 1.0 / i, 1e-3, 1, 100, i % 1000 == 0 ? 4.0 : NAN};
        if (i == 17) p.loss = NAN;
        assert_int_equal(bee_train_log_push(&l, &p), 0);
    }
    bee_str svg = {0};
    assert_int_equal(bee_curve_svg(&l, "big", &svg), 0);
    assert_null(tu_xml_problem(svg.s));
    assert_int_equal(polyline_points(svg.s, "train"), 2000);
    assert_int_equal(tu_count(svg.s, "<circle class=\"eval\""), 5);
    assert_null(strstr(svg.s, "nan"));
    bee_str_free(&svg);
    /* log text round trip */
    bee_str js = {0};
    assert_int_equal(bee_train_log_jsonl(&l, &js), 0);
    tu_write(tu_tmp("big.jsonl"), js.s, js.n);
    bee_str_free(&js);
    bee_train_log back = {0};
    assert_int_equal(bee_train_log_read(tu_tmp("big.jsonl"), &back), 0);
    assert_int_equal(back.n, 5000);
    assert_true(isnan(back.v[16].loss) && back.v[16].step == 17);
    assert_true(fabs(back.v[999].eval_loss - 4.0) < 1e-12 && isnan(back.v[998].eval_loss));
    assert_true(fabs(back.v[4].loss - 5.2) < 1e-8);
    bee_train_log_free(&back);
    /* flat and empty */
    l.n = 3;
    for (size_t i = 0; i < 3; i++) l.v[i].loss = 2.0, l.v[i].eval_loss = NAN;
    assert_int_equal(bee_curve_svg(&l, "flat", &svg), 0);
    assert_null(tu_xml_problem(svg.s));
    assert_int_equal(polyline_points(svg.s, "train"), 3);
    bee_str_free(&svg);
    l.n = 0;
    assert_int_equal(bee_curve_svg(&l, NULL, &svg), 0);
    assert_null(tu_xml_problem(svg.s));
    assert_int_equal(polyline_points(svg.s, "train"), 0);
    bee_str_free(&svg);
    bee_train_log_free(&l);
    /* bad lines name the file, line and field */
    const char *b1 = "{\"step\":1}\n{\"step\":-2}\n", *b2 = "{\"step\":1,\"gnorm\":\"x\"}\n";
    tu_write(tu_tmp("bad1.jsonl"), b1, strlen(b1));
    assert_int_equal(bee_train_log_read(tu_tmp("bad1.jsonl"), &l), -1);
    assert_non_null(strstr(bee_error_message(), "bad1.jsonl:2: field 'step'"));
    bee_train_log_free(&l);
    tu_write(tu_tmp("bad2.jsonl"), b2, strlen(b2));
    assert_int_equal(bee_train_log_read(tu_tmp("bad2.jsonl"), &l), -1);
    assert_non_null(strstr(bee_error_message(), "bad2.jsonl:1: field 'gnorm' is not a number"));
    bee_train_log_free(&l);
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
    snprintf(a, sizeof a, "-m %s --data %s -o x.gguf --eval-every 5", demo(), tu_tmp("d.jsonl"));
    expect_error(a, 2, "--eval-every / --eval-batches need a held-out set");
    snprintf(a, sizeof a, "-m %s --data %s -o x.gguf --eval-data %s --eval-text %s", demo(), tu_tmp("d.jsonl"),
             tu_tmp("d.jsonl"), tu_tmp("d.jsonl"));
    expect_error(a, 2, "at most one of --eval-data");
    snprintf(a, sizeof a, "-m %s --data %s -o x.gguf --eval-data %s --eval-batches 0", demo(), tu_tmp("d.jsonl"),
             tu_tmp("d.jsonl"));
    expect_error(a, 2, "--eval-batches");
    snprintf(a, sizeof a, "-m %s --data %s -o %s --eval-data %s", demo(), tu_tmp("d.jsonl"), tu_tmp("x.gguf"),
             tu_tmp("bad.jsonl"));
    expect_error(a, 1, "bad.jsonl:2: invalid JSON");
    snprintf(a, sizeof a, "-m %s --data %s -o %s --steps 1 --log %s/l.jsonl", demo(), tu_tmp("d.jsonl"), tu_tmp("x.gguf"),
             tu_tmp("d.jsonl"));
    expect_error(a, 1, "d.jsonl/l.jsonl: ");
    snprintf(a, sizeof a, "-m %s --data %s -o x.gguf --log %s --curve %s", demo(), tu_tmp("d.jsonl"), tu_tmp("same"),
             tu_tmp("same"));
    expect_error(a, 2, "name the same file");
    char *out;
    assert_int_equal(tu_bee_run(&out, "plot -o x.svg"), 2);
    assert_non_null(strstr(out, "missing --log"));
    free(out);
    assert_int_equal(tu_bee_run(&out, "plot --log %s -o %s", tu_tmp("bad.jsonl"), tu_tmp("x.svg")), 1);
    assert_non_null(strstr(out, "bad.jsonl:1: field 'step' missing"));
    free(out);
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
        cmocka_unit_test(test_kill_during_save),
        cmocka_unit_test(test_text_mode),
        cmocka_unit_test(test_log_and_curve),
        cmocka_unit_test(test_curve_svg),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_pack_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
