/* Training from scratch actually learns: a vocabulary built by `bee vocab
 * build` from real English text (the license texts every Debian system has in
 * /usr/share/common-licenses), a `bee init` model of dim 64 with 2 layers, a
 * few hundred steps of `bee train`, and the held-out loss must end well below
 * the unigram entropy of the held-out tokens — the best any model that ignores
 * context can do on them. Deterministic (fixed seeds, thread-count-independent
 * arithmetic). Under AddressSanitizer the run is shorter and the bar lower. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "testutil.h"
#include "train/data.h"
#include "util/error.h"
#include "util/file.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Steps and the required margin below the unigram entropy. */
#define STEPS (SANITIZED ? 100 : 300)
#define MARGIN (SANITIZED ? 0.05 : 0.20)
#define BATCH 8
#define CTX 64

static const char *k_licenses[] = {"Apache-2.0", "Artistic", "BSD", "CC0-1.0", "GFDL-1.3",
                                   "GPL-2",      "GPL-3",    "LGPL-2.1", "MPL-2.0"};

/* Writes the slice: every non-empty line (leading blanks dropped) of the
 * license texts; every 10th line is held out. Returns the lines kept. */
static size_t make_slice(const char *train, const char *heldout) {
    FILE *ft = fopen(train, "w"), *fh = fopen(heldout, "w");
    assert_non_null(ft);
    assert_non_null(fh);
    size_t kept = 0, files = 0;
    for (size_t i = 0; i < sizeof k_licenses / sizeof *k_licenses; i++) {
        char path[256], *buf;
        size_t n;
        snprintf(path, sizeof path, "/usr/share/common-licenses/%s", k_licenses[i]);
        if (bee_read_file(path, &buf, &n)) continue;
        files++;
        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            while (*line == ' ' || *line == '\t') line++;
            size_t len = strlen(line);
            while (len && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
            if (!len) continue;
            fprintf(++kept % 10 == 0 ? fh : ft, "%s\n", line);
        }
        free(buf);
    }
    fclose(ft), fclose(fh);
    return files < 5 ? 0 : kept;
}

/* Unigram entropy (nats) of the predicted tokens of a text file, packed
 * exactly as bee train packs the held-out set (file order, BATCH x CTX). */
static double unigram_entropy(const bee_model *m, const char *path, size_t *n_targets) {
    bee_train_data d;
    if (bee_train_data_load(m->tok, path, 1, CTX, &d)) fail_msg("%s", bee_error_message());
    uint32_t *order = malloc(d.n * sizeof *order);
    size_t cols = m->hp.n_vocab + 4096;
    double *count = calloc(cols, sizeof *count);
    assert_non_null(order);
    assert_non_null(count);
    for (size_t i = 0; i < d.n; i++) order[i] = (uint32_t)i;
    size_t cur = 0, total = 0;
    while (cur < d.n) {
        bee_packed_batch pb;
        if (bee_train_pack(&d, m->tok, order, d.n, &cur, BATCH, CTX, &pb)) fail_msg("%s", bee_error_message());
        for (size_t j = 0; j < (size_t)BATCH * CTX; j++) {
            int32_t t = pb.b.targets[j];
            if (t < 0) continue;
            assert_true((size_t)t < cols);
            count[t]++, total++;
        }
        bee_packed_batch_free(&pb);
    }
    double h = 0;
    for (size_t c = 0; c < cols; c++)
        if (count[c] > 0) h -= count[c] / (double)total * log(count[c] / (double)total);
    free(count), free(order);
    bee_train_data_free(&d);
    *n_targets = total;
    return h;
}

static double number_after(const char *out, const char *key) {
    const char *p = strstr(out, key);
    if (!p) fail_msg("no '%s' in:\n%s", key, out);
    return atof(p + strlen(key));
}

static void test_scratch_beats_unigram(void **s) {
    (void)s;
    char train[4096], heldout[4096], vocab[4096], model[4096], log[4096];
    snprintf(train, sizeof train, "%s", tu_tmp("train.txt"));
    snprintf(heldout, sizeof heldout, "%s", tu_tmp("heldout.txt"));
    snprintf(vocab, sizeof vocab, "%s", tu_tmp("vocab.txt"));
    snprintf(model, sizeof model, "%s", tu_tmp("scratch.gguf"));
    snprintf(log, sizeof log, "%s", tu_tmp("scratch.jsonl"));
    size_t lines = make_slice(train, heldout);
    if (!lines) skip(); /* not a Debian system: no /usr/share/common-licenses */
    char *out;
    if (tu_bee_run(&out, "vocab build --corpus %s --size 160 -o %s", train, vocab)) fail_msg("vocab build: %s", out);
    free(out);
    if (tu_bee_run(&out, "init -o %s --dim 64 --layers 2 --heads 2 --dim-head 32 --ff 128 --vocab %s --seed 1", model,
                   vocab))
        fail_msg("init: %s", out);
    free(out);

    bee_model *m;
    if (bee_model_load(model, &m)) fail_msg("%s", bee_error_message());
    size_t n_ho, n_tr;
    double h_ho = unigram_entropy(m, heldout, &n_ho), h_tr = unigram_entropy(m, train, &n_tr);
    bee_model_free(m);

    int rc = tu_bee_run(&out,
                        "train -m %s --text %s --eval-text %s --eval-batches 1000 --eval-every 100 --steps %d "
                        "--batch %d --ctx %d --lr 2e-2 --min-lr 1e-3 --warmup 20 --wd 0.01 --log-every 50 -t 2 "
                        "--log %s --ckpt %s",
                        model, train, heldout, STEPS, BATCH, CTX, log, tu_tmp("scratch.ckpt"));
    if (rc) fail_msg("bee train: exit %d\n%s", rc, out);
    const char *first = strstr(out, "step 0/");
    if (!first) fail_msg("no evaluation before the first step:\n%s", out);
    double e0 = number_after(first, "eval "), e1 = number_after(out, "held-out loss "), l1 = number_after(out, "last loss ");
    fprintf(stderr,
            "  %zu lines; unigram entropy: held-out %.4f nats (%zu tokens), train %.4f (%zu tokens)\n"
            "  held-out loss %.4f -> %.4f after %d steps (%.1f%% below the unigram entropy; need %.0f%%), "
            "last training loss %.4f\n",
            lines, h_ho, n_ho, h_tr, n_tr, e0, e1, STEPS, 100 * (1 - e1 / h_ho), 100 * MARGIN, l1);
    assert_true(e0 > h_ho);                 /* a random model is worse than unigram */
    assert_true(e1 <= (1 - MARGIN) * h_ho); /* the trained one is well below it */
    assert_true(l1 < h_tr);
    /* the log holds the evaluations (before, every 100 steps, at the end) */
    char *x;
    size_t n;
    if (bee_read_file(log, &x, &n)) fail_msg("%s", bee_error_message());
    assert_int_equal(tu_count(x, "\"eval_loss\""), STEPS / 100 + 1 + (STEPS % 100 != 0));
    free(x);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scratch_beats_unigram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
