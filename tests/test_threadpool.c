/* Thread pool: every index covered exactly once for many (n, grain, threads),
 * the documented static split, results independent of the thread count,
 * many back-to-back dispatches (and dispatches after the workers fell
 * asleep), nested and concurrent calls, NULL pool; roofline measurements
 * return sane figures on every instruction set level. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/panel.h"
#include "kernels/roofline.h"
#include "testutil.h"
#include "util/threadpool.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const int k_threads[] = {1, 2, 3, 8};
#define N_THREADS_CASES (int)(sizeof k_threads / sizeof k_threads[0])

/* ---------------------------------------------------------------- coverage */

#define MAX_TH 16

typedef struct {
    atomic_int *hits;
    size_t n, grain;
    atomic_int calls[MAX_TH];
    size_t begin[MAX_TH], end[MAX_TH];
    atomic_int bad;
} cover_ctx;

static void cover_fn(void *arg, size_t begin, size_t end, int ith) {
    cover_ctx *c = arg;
    if (ith < 0 || ith >= MAX_TH || begin >= end || end > c->n) {
        atomic_store(&c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->calls[ith], 1);
    c->begin[ith] = begin;
    c->end[ith] = end;
    for (size_t i = begin; i < end; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void check_cover(bee_pool *p, size_t n, size_t grain) {
    static cover_ctx c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.grain = grain;
    c.hits = calloc(n ? n : 1, sizeof *c.hits);
    assert_non_null(c.hits);
    bee_pool_for(p, n, grain, cover_fn, &c);
    assert_int_equal(atomic_load(&c.bad), 0);
    for (size_t i = 0; i < n; i++) {
        if (atomic_load(&c.hits[i]) != 1)
            fail_msg("n=%zu grain=%zu threads=%d: index %zu hit %d times", n, grain, bee_pool_size(p), i,
                     atomic_load(&c.hits[i]));
    }
    size_t g = grain ? grain : 1, blocks = (n + g - 1) / g;
    int nth = bee_pool_size(p), called = 0;
    size_t prev_end = 0;
    for (int t = 0; t < MAX_TH; t++) {
        int k = atomic_load(&c.calls[t]);
        assert_true(k <= 1);
        if (!k) continue;
        called++;
        assert_true(t < nth);
        assert_int_equal(c.begin[t] % g, 0);             /* chunks start on a grain boundary */
        assert_true(c.begin[t] >= prev_end);             /* ordered by thread */
        assert_true(c.end[t] == n || c.end[t] % g == 0); /* and end on one (or at n) */
        prev_end = c.end[t];
        if (blocks > 1 && nth > 1) { /* the documented balanced split */
            size_t q = blocks / (size_t)nth, r = blocks % (size_t)nth, tt = (size_t)t;
            size_t b0 = tt * q + (tt < r ? tt : r), b1 = b0 + q + (tt < r);
            assert_int_equal(c.begin[t], b0 * g);
            assert_int_equal(c.end[t], b1 * g < n ? b1 * g : n);
        }
    }
    if (n == 0)
        assert_int_equal(called, 0);
    else if (blocks == 1) {
        assert_int_equal(called, 1); /* a single block runs inline as thread 0 */
        assert_int_equal(atomic_load(&c.calls[0]), 1);
    } else
        assert_int_equal(called, (int)(blocks < (size_t)nth ? blocks : (size_t)nth));
    free(c.hits);
}

static void test_cover(void **s) {
    (void)s;
    static const size_t ns[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 63, 64, 65, 100, 1000, 1023, 4097};
    static const size_t grains[] = {0, 1, 2, 3, 7, 16, 64, 100, 1000, 5000};
    for (int ti = 0; ti < N_THREADS_CASES; ti++) {
        bee_pool *p = bee_pool_init(k_threads[ti]);
        assert_non_null(p);
        assert_int_equal(bee_pool_size(p), k_threads[ti]);
        for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
            for (size_t b = 0; b < sizeof grains / sizeof grains[0]; b++) check_cover(p, ns[a], grains[b]);
        bee_pool_free(p);
    }
    check_cover(NULL, 100, 7);
}

/* ---------------------------------------------------------------- run: ith/nth */

typedef struct {
    atomic_int seen[MAX_TH];
    atomic_int nth_bad;
    int want_nth;
} run_ctx;

static void run_fn(void *arg, int ith, int nth) {
    run_ctx *c = arg;
    if (nth != c->want_nth || ith < 0 || ith >= nth)
        atomic_store(&c->nth_bad, 1);
    else
        atomic_fetch_add(&c->seen[ith], 1);
}

static void test_run_every_thread(void **s) {
    (void)s;
    for (int ti = 0; ti < N_THREADS_CASES; ti++) {
        bee_pool *p = bee_pool_init(k_threads[ti]);
        assert_non_null(p);
        run_ctx c;
        memset(&c, 0, sizeof c);
        c.want_nth = k_threads[ti];
        for (int r = 0; r < 10; r++) bee_pool_run(p, run_fn, &c);
        assert_int_equal(atomic_load(&c.nth_bad), 0);
        for (int t = 0; t < k_threads[ti]; t++) assert_int_equal(atomic_load(&c.seen[t]), 10);
        bee_pool_free(p);
    }
    bee_pool *p = bee_pool_init(0);
    assert_non_null(p);
    assert_int_equal(bee_pool_size(p), (int)sysconf(_SC_NPROCESSORS_ONLN));
    bee_pool_free(p);
}

/* ---------------------------------------------------------------- determinism */

typedef struct {
    const float *x;
    size_t block;
    float *out;    /* one partial sum per block */
    float *scaled; /* per element */
} reduce_ctx;

static void reduce_fn(void *arg, size_t begin, size_t end, int ith) {
    const reduce_ctx *c = arg;
    for (size_t b = begin; b < end; b++) {
        float acc = 0;
        for (size_t i = b * c->block; i < (b + 1) * c->block; i++) {
            acc += c->x[i] * c->x[i];
            c->scaled[i] = c->x[i] * 0.37f + acc;
        }
        c->out[b] = acc;
    }
}

static void test_deterministic(void **s) {
    (void)s;
    enum { BLOCKS = 997, BLOCK = 131, N = BLOCKS * BLOCK };
    float *x = malloc(N * sizeof *x), *ref_out = malloc(BLOCKS * sizeof *x), *ref_scaled = malloc(N * sizeof *x);
    float *out = malloc(BLOCKS * sizeof *x), *scaled = malloc(N * sizeof *x);
    assert_true(x && ref_out && ref_scaled && out && scaled);
    uint64_t st = 42;
    for (size_t i = 0; i < N; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 11) / 9007199254740992.0 * 2 - 1);
    }
    double ref_total = 0;
    for (int ti = 0; ti < N_THREADS_CASES; ti++) {
        bee_pool *p = bee_pool_init(k_threads[ti]);
        assert_non_null(p);
        for (size_t grain = 1; grain <= 64; grain *= 8) {
            reduce_ctx c = {x, BLOCK, out, scaled};
            memset(out, 0xff, BLOCKS * sizeof *out);
            bee_pool_for(p, BLOCKS, grain, reduce_fn, &c);
            double total = 0;
            for (size_t b = 0; b < BLOCKS; b++) total += out[b];
            if (ti == 0 && grain == 1) {
                memcpy(ref_out, out, BLOCKS * sizeof *out);
                memcpy(ref_scaled, scaled, N * sizeof *out);
                ref_total = total;
            } else {
                assert_memory_equal(out, ref_out, BLOCKS * sizeof *out);
                assert_memory_equal(scaled, ref_scaled, N * sizeof *out);
                assert_true(total == ref_total);
            }
        }
        bee_pool_free(p);
    }
    free(x);
    free(ref_out);
    free(ref_scaled);
    free(out);
    free(scaled);
}

/* ---------------------------------------------------------------- many dispatches */

static void count_fn(void *arg, int ith, int nth) { atomic_fetch_add((atomic_long *)arg, 1); }

static void tiny_for(void *arg, size_t begin, size_t end, int ith) {
    atomic_fetch_add((atomic_long *)arg, (long)(end - begin));
}

static void test_many_runs(void **s) {
    (void)s;
    static const int threads[] = {2, 0, 3};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++) {
        bee_pool *p = bee_pool_init(threads[k]);
        assert_non_null(p);
        int nth = bee_pool_size(p);
        /* 100k back to back; fewer when oversubscribed (no spinning there) */
        long iters = nth <= sysconf(_SC_NPROCESSORS_ONLN) ? 100000 : 20000;
        atomic_long cnt = 0;
        double t0 = now_s();
        for (long i = 0; i < iters; i++) bee_pool_run(p, count_fn, &cnt);
        double dt = now_s() - t0;
        assert_int_equal(atomic_load(&cnt), iters * nth);
        print_message("bee_pool_run, %d threads: %.3f us per call (%ld calls)\n", nth, dt / (double)iters * 1e6, iters);
        assert_true(dt < 60.0);
        atomic_store(&cnt, 0);
        t0 = now_s();
        for (long i = 0; i < iters; i++) bee_pool_for(p, 64, 1, tiny_for, &cnt);
        dt = now_s() - t0;
        assert_int_equal(atomic_load(&cnt), iters * 64);
        print_message("bee_pool_for,  %d threads: %.3f us per call\n", nth, dt / (double)iters * 1e6);
        assert_true(dt < 60.0);
        bee_pool_free(p);
    }
}

/* Dispatches after idle gaps around and beyond the spin window, so the
 * workers go through the sleep/wake path. */
static void test_sleep_wake(void **s) {
    (void)s;
    static const long gaps_us[] = {0, 50, 150, 250, 400, 2000, 10000};
    bee_pool *p = bee_pool_init(2);
    assert_non_null(p);
    atomic_long cnt = 0;
    long calls = 0;
    for (int r = 0; r < 3; r++)
        for (size_t g = 0; g < sizeof gaps_us / sizeof gaps_us[0]; g++) {
            struct timespec ts = {0, gaps_us[g] * 1000};
            nanosleep(&ts, NULL);
            bee_pool_run(p, count_fn, &cnt);
            calls++;
        }
    assert_int_equal(atomic_load(&cnt), calls * 2);
    bee_pool_free(p);
    /* freed while the workers sleep, and right after creation */
    p = bee_pool_init(3);
    assert_non_null(p);
    bee_pool_free(p);
}

/* ---------------------------------------------------------------- nested, concurrent, NULL */

typedef struct {
    bee_pool *p;
    atomic_int inner_calls, inner_bad, inner_for;
} nest_ctx;

static void inner_fn(void *arg, int ith, int nth) {
    nest_ctx *c = arg;
    if (ith != 0 || nth != 1) atomic_store(&c->inner_bad, 1);
    atomic_fetch_add(&c->inner_calls, 1);
}

static void inner_for(void *arg, size_t begin, size_t end, int ith) {
    nest_ctx *c = arg;
    if (begin != 0 || end != 10 || ith != 0) atomic_store(&c->inner_bad, 1);
    atomic_fetch_add(&c->inner_for, 1);
}

static void outer_fn(void *arg, int ith, int nth) {
    nest_ctx *c = arg;
    bee_pool_run(c->p, inner_fn, c);
    bee_pool_for(c->p, 10, 1, inner_for, c);
}

static void test_nested(void **s) {
    (void)s;
    nest_ctx c;
    memset(&c, 0, sizeof c);
    c.p = bee_pool_init(3);
    assert_non_null(c.p);
    for (int r = 0; r < 100; r++) bee_pool_run(c.p, outer_fn, &c);
    assert_int_equal(atomic_load(&c.inner_bad), 0);
    assert_int_equal(atomic_load(&c.inner_calls), 300);
    assert_int_equal(atomic_load(&c.inner_for), 300);
    /* the pool still dispatches to every thread afterwards */
    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.want_nth = 3;
    bee_pool_run(c.p, run_fn, &rc);
    assert_int_equal(atomic_load(&rc.nth_bad), 0);
    for (int t = 0; t < 3; t++) assert_int_equal(atomic_load(&rc.seen[t]), 1);
    bee_pool_free(c.p);
}

typedef struct {
    bee_pool *p;
    atomic_long cnt;
} conc_ctx;

static void conc_for(void *arg, size_t begin, size_t end, int ith) {
    atomic_fetch_add(&((conc_ctx *)arg)->cnt, (long)(end - begin));
}

static void *conc_thread(void *arg) {
    conc_ctx *c = arg;
    for (int i = 0; i < 2000; i++) bee_pool_for(c->p, 100, 4, conc_for, c);
    return NULL;
}

/* Two outside threads dispatching on one pool at once: one of them runs
 * inline whenever the pool is busy; nothing is lost or deadlocks. */
static void test_concurrent_callers(void **s) {
    (void)s;
    conc_ctx c = {bee_pool_init(2), 0};
    assert_non_null(c.p);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, conc_thread, &c), 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&c.cnt), 2L * 2000 * 100);
    bee_pool_free(c.p);
}

static void test_null_pool(void **s) {
    (void)s;
    assert_int_equal(bee_pool_size(NULL), 1);
    run_ctx rc;
    memset(&rc, 0, sizeof rc);
    rc.want_nth = 1;
    bee_pool_run(NULL, run_fn, &rc);
    assert_int_equal(atomic_load(&rc.nth_bad), 0);
    assert_int_equal(atomic_load(&rc.seen[0]), 1);
    nest_ctx c;
    memset(&c, 0, sizeof c);
    bee_pool_for(NULL, 10, 3, inner_for, &c);
    bee_pool_for(NULL, 0, 3, inner_for, &c);
    assert_int_equal(atomic_load(&c.inner_for), 1);
    assert_int_equal(atomic_load(&c.inner_bad), 0);
    bee_pool_free(NULL);
    /* a one-thread pool behaves the same */
    bee_pool *p = bee_pool_init(1);
    assert_non_null(p);
    bee_pool_run(p, run_fn, &rc);
    assert_int_equal(atomic_load(&rc.seen[0]), 2);
    bee_pool_free(p);
}

/* ---------------------------------------------------------------- roofline */

/* Sanity only (finite, positive, not absurd): speed belongs to bee bench, and a
 * sanitizer build on a loaded 2-core machine measured 0.5 GFLOP/s for the
 * scalar FMA probe. */
static void check_roofline(bee_pool *p, const char *label) {
    double bw = bee_roofline_read_bw(p, (size_t)64 << 20, 3);
    double fma = bee_roofline_fma_peak(p, 3);
    double i8 = bee_roofline_int8_peak(p, 3);
    print_message("roofline %-6s %d thr: read %.2f GB/s, fma %.1f GFLOP/s, int8 %.1f GOP/s\n", label, bee_pool_size(p),
                  bw * 1e-9, fma * 1e-9, i8 * 1e-9);
    assert_true(isfinite(bw) && bw > 1e7);
    assert_true(isfinite(fma) && fma > 1e7);
    assert_true(isfinite(i8) && i8 >= 0);
    if (i8 > 0) assert_true(i8 > 1e7);
    double amx = bee_roofline_amx_peak(p, 1);
    assert_true(isfinite(amx) && amx >= 0);
    assert_true((amx > 0) == (bee_panel_amx() != 0)); /* measured exactly when the tile unit is there */
    if (amx > 0) print_message("roofline AMX BF16: %.1f GFLOP/s\n", amx * 1e-9);
}

static void test_roofline(void **s) {
    (void)s;
    const char *old = getenv("BEE_CPU");
    char *saved = old ? strdup(old) : NULL;
    bee_pool *p = bee_pool_init(2);
    assert_non_null(p);
    unsetenv("BEE_CPU");
    const char *best = bee_roofline_isa();
    check_roofline(NULL, best);
    check_roofline(p, best);
    /* the fallbacks run (and never need more than the CPU has) */
    static const char *const caps[] = {"avx2", "scalar"};
    for (int i = 0; i < 2; i++) {
        setenv("BEE_CPU", caps[i], 1);
        assert_true(!strcmp(bee_roofline_isa(), caps[i]) || !strcmp(bee_roofline_isa(), "scalar"));
        assert_true(bee_roofline_int8_peak(p, 1) == 0);
        check_roofline(p, bee_roofline_isa());
    }
    if (saved)
        setenv("BEE_CPU", saved, 1);
    else
        unsetenv("BEE_CPU");
    free(saved);
    /* a tiny request is raised to the minimum size */
    assert_true(bee_roofline_read_bw(NULL, 1, 1) > 1e8);
    /* the default probe is out of the LLC's reach: 4x it (at least 1 GiB), within a quarter of the RAM */
    size_t pb = bee_roofline_probe_bytes(), ram4 = (size_t)sysconf(_SC_PHYS_PAGES) / 4 * (size_t)sysconf(_SC_PAGESIZE);
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t want = llc > 0 && (size_t)llc * 4 > ((size_t)1 << 30) ? (size_t)llc * 4 : (size_t)1 << 30;
    print_message("probe buffer %zu MiB (LLC %ld KiB)\n", pb >> 20, llc / 1024);
    assert_true(pb == (want < ram4 ? want : ram4));
    bee_pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cover),
        cmocka_unit_test(test_run_every_thread),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_many_runs),
        cmocka_unit_test(test_sleep_wake),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_null_pool),
        cmocka_unit_test(test_roofline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
