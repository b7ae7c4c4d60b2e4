/* Feedback store: round trip, error cases, export contents (library and CLI),
 * and durability: a child process killed with SIGKILL mid-stream loses no
 * acknowledged row and leaves a database that passes integrity_check. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "feedback/feedback.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"

#ifdef BEE_HAVE_SQLITE
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>

static bee_feedback *open_db(const char *path) {
    bee_feedback *fb;
    if (bee_feedback_open(path, &fb)) fail_msg("open %s: %s", path, bee_error_message());
    return fb;
}

static void record(bee_feedback *fb, const char *id, const char *prompt, const char *response, int64_t t) {
    bee_feedback_response r = {id, "demo", prompt, response, t};
    if (bee_feedback_record_response(fb, &r, NULL, 0)) fail_msg("record %s: %s", id, bee_error_message());
}

static void rate(bee_feedback *fb, const char *id, int rating, const char *correction) {
    if (bee_feedback_record_feedback(fb, id, rating, correction)) fail_msg("feedback %s: %s", id, bee_error_message());
}

static char *query_text(const char *db, const char *sql) {
    sqlite3 *h;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return s;
}

/* ================================================================ round trip and errors */

static void test_round_trip(void **st) {
    (void)st;
    const char *db = tu_tmp("round.sqlite");
    bee_feedback *fb = open_db(db);
    record(fb, "r1", "\"你好\"", "答案", 0);
    char id[BEE_FEEDBACK_ID_MAX];
    bee_feedback_response r = {NULL, NULL, "[{\"role\":\"user\",\"content\":\"hi\"}]", "hello", 0};
    assert_int_equal(bee_feedback_record_response(fb, &r, id, sizeof id), 0);
    assert_int_equal(strncmp(id, "resp-", 5), 0);
    assert_int_equal(strlen(id), 37);
    rate(fb, "r1", 1, NULL);
    rate(fb, id, -1, "better");
    int64_t nr, nf;
    assert_int_equal(bee_feedback_count(fb, &nr, &nf), 0);
    assert_int_equal(nr, 2);
    assert_int_equal(nf, 2);

    /* errors leave the store unchanged */
    bee_feedback_response dup = {"r1", NULL, "\"x\"", "y", 0};
    assert_int_equal(bee_feedback_record_response(fb, &dup, NULL, 0), -1);
    assert_non_null(strstr(bee_error_message(), "'r1' is already recorded"));
    bee_feedback_response bad = {"r9", NULL, "not json", "y", 0};
    assert_int_equal(bee_feedback_record_response(fb, &bad, NULL, 0), -1);
    assert_non_null(strstr(bee_error_message(), "prompt is not JSON"));
    assert_int_equal(bee_feedback_record_feedback(fb, "r1", 0, NULL), -1);
    assert_non_null(strstr(bee_error_message(), "rating must be -1 or +1"));
    bee_feedback_close(fb);

    fb = open_db(db); /* reopened: everything is still there */
    assert_int_equal(bee_feedback_count(fb, &nr, &nf), 0);
    assert_int_equal(nr, 2);
    assert_int_equal(nf, 2);
    bee_feedback_close(fb);
    char *mode = query_text(db, "PRAGMA journal_mode");
    assert_string_equal(mode, "wal");
    free(mode);
    char *corr = query_text(db, "SELECT correction FROM feedback WHERE rating = -1");
    assert_string_equal(corr, "better");
    free(corr);
}

static void test_unknown_id(void **st) {
    (void)st;
    bee_feedback *fb = open_db(tu_tmp("unknown.sqlite"));
    record(fb, "known", "\"p\"", "a", 0);
    bee_error_clear();
    assert_int_equal(bee_feedback_record_feedback(fb, "nope", 1, NULL), -1);
    assert_non_null(strstr(bee_error_message(), "unknown response id 'nope'"));
    int64_t nr, nf;
    assert_int_equal(bee_feedback_count(fb, &nr, &nf), 0);
    assert_int_equal(nf, 0);
    rate(fb, "known", 1, "");
    assert_int_equal(bee_feedback_count(fb, &nr, &nf), 0);
    assert_int_equal(nf, 1);
    bee_feedback_close(fb);
}

static void expect_json_error(bee_feedback *fb, const char *body, const char *needle) {
    bee_error_clear();
    assert_int_equal(bee_feedback_record_json(fb, body, strlen(body)), -1);
    if (!strstr(bee_error_message(), needle)) fail_msg("%s: error '%s' lacks '%s'", body, bee_error_message(), needle);
}

/* The body of POST /v1/feedback, as the server passes it on. */
static void test_record_json(void **st) {
    (void)st;
    bee_feedback *fb = open_db(tu_tmp("json.sqlite"));
    record(fb, "c1", "\"p\"", "a", 0);
    const char *ok1 = "{\"response_id\": \"c1\", \"rating\": 1}";
    const char *ok2 = "{\"id\": \"c1\", \"rating\": -1, \"correction\": \"b\"}";
    assert_int_equal(bee_feedback_record_json(fb, ok1, strlen(ok1)), 0);
    assert_int_equal(bee_feedback_record_json(fb, ok2, strlen(ok2)), 0);
    expect_json_error(fb, "{\"response_id\": \"c2\", \"rating\": 1}", "unknown response id 'c2'");
    expect_json_error(fb, "{\"response_id\": \"c1\", \"rating\": 2}", "rating: expected 1 or -1");
    expect_json_error(fb, "{\"response_id\": \"c1\", \"rating\": \"up\"}", "rating: expected 1 or -1");
    expect_json_error(fb, "{\"rating\": 1}", "response_id: expected a string");
    expect_json_error(fb, "{\"response_id\": \"c1\", \"rating\": 1, \"correction\": 5}", "correction: expected a string");
    expect_json_error(fb, "{\"response_id\": \"c1\", \"rating\": 1, \"stars\": 5}", "stars: unknown field");
    expect_json_error(fb, "{\"response_id\": ", "invalid JSON");
    expect_json_error(fb, "[1]", "expected a JSON object");
    int64_t nr, nf;
    assert_int_equal(bee_feedback_count(fb, &nr, &nf), 0);
    assert_int_equal(nf, 2);
    bee_feedback_close(fb);
}

/* ================================================================ export */

static const char k_want_sft[] =
    "{\"input\":\"写一首诗\",\"<ans>\":\"A\"}\n"
    "{\"input\":\"翻译\",\"prompt\":\"英文\",\"<ans>\":\"D\"}\n"
    "{\"input\":\"用户：你好<<b><sep>AI：\",\"<ans>\":\"E\"}\n";
static const char k_want_pairs[] =
    "{\"prompt\":\"翻译\",\"chosen\":\"D\",\"rejected\":\"C\"}\n"
    "{\"prompt\":\"写一首诗\",\"chosen\":\"A\",\"rejected\":\"B\"}\n";

static void fill_export_db(const char *db) {
    bee_feedback *fb = open_db(db);
    record(fb, "r1", "\"写一首诗\"", "A", 1000);
    record(fb, "r2", "\"写一首诗\"", "B", 2000);
    record(fb, "r3", "{\"input\":\"翻译\",\"prompt\":\"英文\",\"<ans>\":\"\"}", "C", 3000);
    record(fb, "r4", "[{\"role\":\"user\",\"content\":\"你好<b>\"}]", "E", 4000);
    record(fb, "r5", "\"没有反馈\"", "F", 5000);
    record(fb, "r6", "\"写一首诗\"", "B", 6000); /* the same disliked text again: one pair only */
    rate(fb, "r1", 1, NULL);
    rate(fb, "r2", -1, NULL); /* disliked, no correction: not SFT data */
    rate(fb, "r3", -1, "D");  /* correction wins */
    rate(fb, "r4", -1, NULL);
    rate(fb, "r4", 1, NULL); /* the latest rating decides */
    rate(fb, "r6", -1, NULL);
    bee_feedback_close(fb);
}

static void expect_file(const char *path, const char *want) {
    char *got;
    size_t n;
    if (bee_read_file(path, &got, &n)) fail_msg("%s", bee_error_message());
    if (strcmp(got, want) != 0) fail_msg("%s:\n%s\nwanted:\n%s", path, got, want);
    free(got);
}

static void test_export(void **st) {
    (void)st;
    const char *db = tu_tmp("export.sqlite");
    fill_export_db(db);
    bee_feedback *fb = open_db(db);
    bee_feedback_export_stats s;
    const char *out = tu_tmp("export-lib/nested");
    assert_int_equal(bee_feedback_export(fb, out, &s), 0);
    bee_feedback_close(fb);
    assert_int_equal(s.n_rated, 5);
    assert_int_equal(s.n_sft, 3);
    assert_int_equal(s.n_pairs, 2);
    char path[4200];
    snprintf(path, sizeof path, "%s/sft.jsonl", out);
    expect_file(path, k_want_sft);
    snprintf(path, sizeof path, "%s/pairs.jsonl", out);
    expect_file(path, k_want_pairs);

    /* the CLI writes the same files, and nothing else */
    char cmd[8192], *log;
    const char *cli_out = tu_tmp("export-cli");
    snprintf(cmd, sizeof cmd, "%s feedback export --db %s --out %s", tu_bee(), db, cli_out);
    int rc = tu_run(cmd, &log);
    if (rc != 0 || !strstr(log, "3 SFT examples")) fail_msg("%s: exit %d\n%s", cmd, rc, log);
    free(log);
    snprintf(path, sizeof path, "%s/sft.jsonl", cli_out);
    expect_file(path, k_want_sft);
    snprintf(path, sizeof path, "%s/pairs.jsonl", cli_out);
    expect_file(path, k_want_pairs);
    DIR *d = opendir(cli_out);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') files++;
    closedir(d);
    assert_int_equal(files, 2);
    snprintf(cmd, sizeof cmd, "%s feedback export --db %s --out %s", tu_bee(), tu_tmp("missing.sqlite"), cli_out);
    rc = tu_run(cmd, &log);
    if (rc != 1 || !strstr(log, "no such database")) fail_msg("%s: exit %d\n%s", cmd, rc, log);
    free(log);
    snprintf(cmd, sizeof cmd, "%s feedback export --db %s", tu_bee(), db);
    rc = tu_run(cmd, &log);
    if (rc != 2 || !strstr(log, "missing --out")) fail_msg("%s: exit %d\n%s", cmd, rc, log);
    free(log);
}

/* ================================================================ concurrency */

typedef struct {
    bee_feedback *fb;
    int base, ok;
} writer_arg;

static void *writer_thread(void *p) {
    writer_arg *w = p;
    w->ok = 1;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "t%d-%d", w->base, i);
        bee_feedback_response r = {id, NULL, "\"p\"", "a", 0};
        if (bee_feedback_record_response(w->fb, &r, NULL, 0) || bee_feedback_record_feedback(w->fb, id, 1, NULL))
            w->ok = 0;
    }
    return NULL;
}

/* Threads sharing a handle, and two handles (connections) on one file, as a
 * server with several workers would: no lost rows, no SQLITE_BUSY failures. */
static void test_concurrent_writers(void **st) {
    (void)st;
    const char *db = tu_tmp("threads.sqlite");
    bee_feedback *a = open_db(db), *b = open_db(db);
    pthread_t th[4];
    writer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (writer_arg){i % 2 ? b : a, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, writer_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(args[i].ok);
    }
    int64_t nr, nf;
    assert_int_equal(bee_feedback_count(a, &nr, &nf), 0);
    assert_int_equal(nr, 40);
    assert_int_equal(nf, 40);
    bee_feedback_close(a);
    bee_feedback_close(b);
}

/* ================================================================ durability */

static void child_writer(const char *db, int fd, int start) {
    bee_feedback *fb;
    if (bee_feedback_open(db, &fb)) _exit(3);
    for (int i = start; i < start + 1000000; i++) {
        char id[32];
        snprintf(id, sizeof id, "d%d", i);
        bee_feedback_response r = {id, "demo", "\"durable?\"", "yes", 0};
        if (bee_feedback_record_response(fb, &r, NULL, 0) || bee_feedback_record_feedback(fb, id, i % 2 ? 1 : -1, NULL))
            _exit(4);
        /* acknowledged only once both commits have returned */
        if (write(fd, &i, sizeof i) != (ssize_t)sizeof i) _exit(5);
    }
    _exit(0);
}

/* Starts a writer, lets it acknowledge `kill_after` rows, kills it with
 * SIGKILL and returns every id it acknowledged (the pipe keeps acks written
 * before the kill). */
static int run_and_kill(const char *db, int start, int kill_after, int *acked, int cap) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        child_writer(db, fds[1], start);
    }
    close(fds[1]);
    int n = 0, v;
    ssize_t k;
    while (n < cap && (k = read(fds[0], &v, sizeof v)) == (ssize_t)sizeof v) {
        acked[n++] = v;
        if (n == kill_after) kill(pid, SIGKILL);
    }
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("writer was not killed (status %d, %d acks): open or write failed?", status, n);
    return n;
}

static void test_sigkill_durability(void **st) {
    (void)st;
    const char *db = tu_tmp("durable.sqlite");
    static int acked[200000];
    int start = 0, total = 0;
    srand((unsigned)time(NULL));
    for (int round = 0; round < 3; round++) {
        int n = run_and_kill(db, start, 20 + rand() % 60, acked, 200000);
        assert_true(n >= 20);
        sqlite3 *h;
        assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
        sqlite3_stmt *q;
        assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &q, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(q), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(q, 0), "ok");
        sqlite3_finalize(q);
        assert_int_equal(sqlite3_prepare_v2(h,
                                            "SELECT count(*) FROM responses r JOIN feedback f ON f.response_id = r.id"
                                            " WHERE r.id = ?1 AND f.rating = ?2",
                                            -1, &q, NULL),
                         SQLITE_OK);
        for (int i = 0; i < n; i++) {
            char id[32];
            snprintf(id, sizeof id, "d%d", acked[i]);
            sqlite3_reset(q);
            sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(q, 2, acked[i] % 2 ? 1 : -1);
            assert_int_equal(sqlite3_step(q), SQLITE_ROW);
            if (sqlite3_column_int(q, 0) != 1) fail_msg("acknowledged row %s lost after SIGKILL", id);
        }
        sqlite3_finalize(q);
        sqlite3_close(h);
        total += n;
        start = acked[n - 1] + 2; /* the killed writer may have committed one more row */
    }
    fprintf(stderr, "durability: %d acknowledged rows over 3 killed writers, all present\n", total);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_unknown_id),
        cmocka_unit_test(test_record_json),
        cmocka_unit_test(test_export),
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_sigkill_durability),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void) {
    fprintf(stderr, "SKIP: bee was built without SQLite (libsqlite3-dev)\n");
    return 77;
}

#endif
