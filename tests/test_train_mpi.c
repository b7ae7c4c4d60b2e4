/* Data-parallel `bee train` under OpenMPI: 2 ranks (micro-batches split,
 * gradients allreduced, AdamW state sharded ZeRO-1) reach the same weights as
 * one process with the same global batch, for full training and for LoRA.
 * Skips (77) when the build has no MPI or mpirun is missing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "train/dist.h"
#include "util/error.h"
#include "util/file.h"

/* OpenMPI leaks at MPI_Finalize by design: ASan builds keep address and UB checks there */
#define MPIRUN "ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -np 2"
#define HEADER 64 /* ckpt.c header: magic, two counts, five state words */

static int run(const char *launcher, const char *args) {
    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s %s train %s", launcher, tu_bee(), args);
    int rc = tu_run(cmd, &out);
    if (rc) fprintf(stderr, "%s\n%s\n", cmd, out ? out : "");
    free(out);
    return rc;
}

/* Max |a - b| over the weights (first third after the header) of two
 * checkpoints; *mdiff: the same over both AdamW moments (gathered from the
 * ranks' ZeRO-1 slices when written by mpirun). */
static double weight_diff(const char *p1, const char *p2, size_t *n_out, double *mdiff) {
    bee_mmap a, b;
    if (bee_mmap_open(p1, &a) || bee_mmap_open(p2, &b)) fail_msg("%s", bee_error_message());
    assert_int_equal(a.size, b.size);
    assert_true(a.size > HEADER);
    assert_int_equal(memcmp(a.data, b.data, HEADER), 0); /* same step, cursor, epoch */
    size_t n = (a.size - HEADER) / 4 / 3;
    const float *x = (const float *)(a.data + HEADER), *y = (const float *)(b.data + HEADER);
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)x[i] - y[i]));
    *mdiff = 0;
    for (size_t i = n; i < 3 * n; i++) *mdiff = fmax(*mdiff, fabs((double)x[i] - y[i]));
    bee_mmap_close(&a), bee_mmap_close(&b);
    *n_out = n;
    return d;
}

static void compare(const char *base, const char *data, const char *extra, const char *tag, double tol) {
    char args[4096], c1[512], c2[600], c3[600];
    snprintf(c1, sizeof c1, "%s", tu_tmp(tag));
    snprintf(c2, sizeof c2, "%s.np2", c1);
    snprintf(c3, sizeof c3, "%s.resumed", c1);
    const char *common = "--steps 3 --batch 2 --ctx 32 --accum 4 --lr 1e-3 --warmup 1 -t 1";
    snprintf(args, sizeof args, "-m %s --data %s %s %s --ckpt %s", base, data, common, extra, c1);
    assert_int_equal(run("", args), 0);
    snprintf(args, sizeof args, "-m %s --data %s %s %s --ckpt %s", base, data, common, extra, c2);
    assert_int_equal(run(MPIRUN, args), 0);
    /* 2 ranks for 2 steps, then one process resumes from their checkpoint */
    snprintf(args, sizeof args, "-m %s --data %s %s %s --ckpt %s --stop-after 2", base, data, common, extra, c3);
    assert_int_equal(run(MPIRUN, args), 0);
    snprintf(args, sizeof args, "-m %s --data %s %s %s --ckpt %s --resume", base, data, common, extra, c3);
    assert_int_equal(run("", args), 0);
    size_t n;
    double md, md3, d = weight_diff(c1, c2, &n, &md), d3 = weight_diff(c1, c3, &n, &md3);
    fprintf(stderr, "  %s: %zu trained floats, 1 process vs 2 ranks: max abs diff %.3g (moments %.3g); "
                    "2 ranks then resumed by 1: %.3g (moments %.3g)\n", tag, n, d, md, d3, md3);
    assert_true(d <= tol && md <= tol && d3 <= tol && md3 <= tol);
}

static void test_two_ranks_match_one(void **state) {
    (void)state;
    char base[512], data[512], *out = NULL;
    snprintf(base, sizeof base, "%s", tu_tmp("mpi_base.gguf"));
    snprintf(data, sizeof data, "%s", tu_tmp("mpi.jsonl"));
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s init -o %s --seed 3", tu_bee(), base);
    if (tu_run(cmd, &out)) fail_msg("init: %s", out);
    free(out);
    FILE *f = fopen(data, "w");
    assert_non_null(f);
    for (int i = 0; i < 40; i++) fprintf(f, "{\"input\": \"%d+%d=\", \"<ans>\": \"%d\"}\n", i % 10, i * 7 % 10, i % 10 + i * 7 % 10);
    fclose(f);
    compare(base, data, "", "mpi_full.ckpt", 1e-5);
    compare(base, data, "--lora 4,8", "mpi_lora.ckpt", 1e-5);
}

/* The held-out batches are split over the ranks (batch k on rank k mod 2,
 * sums reduced): the held-out losses before and after training equal the
 * single process's. 5 batches, so the ranks get different numbers. Uses the
 * model and data test_two_ranks_match_one wrote (cmocka runs tests in order). */
static void test_eval_split_over_ranks(void **state) {
    (void)state;
    char cmd[8192], base[512], data[512], *out[2] = {NULL, NULL};
    snprintf(base, sizeof base, "%s", tu_tmp("mpi_base.gguf"));
    snprintf(data, sizeof data, "%s", tu_tmp("mpi.jsonl"));
    double before[2], after[2];
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s %s train -m %s --data %s --eval-data %s --eval-batches 5 --steps 2 --batch 2 "
                                  "--ctx 32 --accum 2 --lr 1e-3 --warmup 1 -t 1 --ckpt %s",
                 k ? MPIRUN : "", tu_bee(), base, data, data, tu_tmp(k ? "ev2.ckpt" : "ev1.ckpt"));
        if (tu_run(cmd, &out[k])) fail_msg("%s\n%s", cmd, out[k]);
        const char *b = strstr(out[k], "step 0/2  eval "), *a = strstr(out[k], "held-out loss ");
        if (!b || !a) fail_msg("no held-out losses in:\n%s", out[k]);
        assert_non_null(strstr(out[k], "in 5 batches"));
        before[k] = atof(b + 15), after[k] = atof(a + 14);
        free(out[k]);
    }
    fprintf(stderr, "  held-out loss, 1 process vs 2 ranks: before %.6f / %.6f, after %.6f / %.6f\n", before[0],
            before[1], after[0], after[1]);
    assert_true(fabs(before[0] - before[1]) < 1e-5 && fabs(after[0] - after[1]) < 1e-5);
    assert_true(after[0] < before[0]);
}

int main(void) {
    if (!bee_dist_available() || system("command -v mpirun >/dev/null 2>&1") != 0) {
        fprintf(stderr, "skipped: %s\n", bee_dist_available() ? "mpirun not found" : "built without MPI");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_ranks_match_one),
        cmocka_unit_test(test_eval_split_over_ranks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
