/* bee safety check, bee feedback export */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util/json.h"
#include "feedback/feedback.h"
#include "safety/normalize.h"
#include "safety/safety.h"
#include "util/error.h"
#include "util/file.h"

/* ================================================================ safety check */

static int read_input(const char *path, char **buf, size_t *len) {
    if (path && strcmp(path, "-") != 0) return bee_read_file(path, buf, len);
    bee_str s = {0};
    char chunk[65536];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (bee_str_append(&s, chunk, k)) return bee_fail("stdin: out of memory");
    if (ferror(stdin)) return bee_fail("stdin: read error");
    *len = s.n;
    *buf = bee_str_take(&s);
    return 0;
}

static void print_result(int as_json, bee_safety_action act, const bee_safety_match *m, size_t nm, const bee_str *text) {
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nm; i++)
            json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:o}", "category", m[i].category_name, "action",
                                                 bee_safety_action_name(m[i].action), "start", (json_int_t)m[i].start,
                                                 "end", (json_int_t)m[i].end, "term",
                                                 bee_json_string_lossy(m[i].term, strlen(m[i].term))));
        json_t *o = json_pack("{s:s, s:o, s:o}", "decision", bee_safety_action_name(act), "matches", arr, "text",
                              act == BEE_SAFETY_BLOCK ? json_null() : bee_json_string_lossy(text->s ? text->s : "", text->n));
        char *s = json_dumps(o, 0);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    printf("decision: %s\n", bee_safety_action_name(act));
    for (size_t i = 0; i < nm; i++)
        printf("match: %s %s %llu-%llu %s\n", m[i].category_name, bee_safety_action_name(m[i].action),
               (unsigned long long)m[i].start, (unsigned long long)m[i].end, m[i].term);
    if (act != BEE_SAFETY_BLOCK) {
        printf("---\n");
        if (text->n) fwrite(text->s, 1, text->n, stdout);
        if (!text->n || text->s[text->n - 1] != '\n') printf("\n");
    }
}

/* Runs the text through a stream in chunks of `chunk` bytes (the whole text
 * at once when 0), the way a server checks generated output. */
static int run_check(const bee_safety_policy *p, const char *text, size_t len, size_t chunk, bee_str *out,
                     bee_safety_stream **st) {
    if (bee_safety_stream_init(st, p)) return -1;
    if (chunk == 0) chunk = len ? len : 1;
    for (size_t i = 0; i < len; i += chunk)
        if (bee_safety_stream_push(*st, text + i, len - i < chunk ? len - i : chunk, out)) return -1;
    return bee_safety_stream_finish(*st, out);
}

static int safety_check(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"policy", 'p', "POLICY.json", "policy file (required)", "BEE_SAFETY_POLICY", 0},
        {"json", 0, NULL, "print {\"decision\", \"matches\", \"text\"} as JSON", "BEE_SAFETY_JSON", 0},
        {"chunk", 0, "N", "feed the text to the streaming checker N bytes at a time (default: all at once)",
         "BEE_SAFETY_CHUNK", 0},
        {"audit", 0, "DB.sqlite", "record the matches in this audit database", "BEE_SAFETY_AUDIT", 0},
        {"request-id", 0, "ID", "request id for the audit rows (default: cli)", "BEE_REQUEST_ID", 0},
        {"stage", 0, "STAGE", "prompt or output (default: output), for the audit rows", "BEE_SAFETY_STAGE", 0},
        {"stats", 0, NULL, "print size, time and throughput to stderr", "BEE_SAFETY_STATS", 0},
        {0},
    };
    cli_args a = {"safety check", "--policy P.json [--json] [--chunk N] [--audit DB] [FILE|-]",
                  "Checks a UTF-8 text (FILE, or stdin) against a content-safety policy and prints the decision,\n"
                  "the matches and the masked text. Exit status: 0 allowed (including log and mask), 1 blocked,\n"
                  "2 usage error or unusable policy/input.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *policy = cli_get(&a, "policy"), *stage_s = cli_get(&a, "stage"), *audit_path = cli_get(&a, "audit");
    long chunk = 0;
    bee_safety_stage stage = BEE_SAFETY_STAGE_OUTPUT;
    if (a.n_pos > 1) rc = cli_error(a.cmd, "expected at most one FILE argument") + 1;
    else if (!policy) rc = cli_error(a.cmd, "missing --policy P.json") + 1;
    else if (cli_int(&a, "chunk", 0, 1L << 30, &chunk)) rc = 2;
    else if (stage_s && strcmp(stage_s, "prompt") && strcmp(stage_s, "output"))
        rc = cli_error(a.cmd, "--stage: expected prompt or output, got '%s'", stage_s) + 1;
    if (stage_s && strcmp(stage_s, "prompt") == 0) stage = BEE_SAFETY_STAGE_PROMPT;
    bee_safety_policy *p = NULL;
    bee_safety_stream *st = NULL;
    bee_safety_audit *au = NULL;
    char *text = NULL;
    size_t len = 0;
    bee_str out = {0};
    if (rc == 0 && (bee_safety_policy_load(policy, &p) || read_input(a.n_pos ? a.pos[0] : NULL, &text, &len) ||
                    (audit_path && bee_safety_audit_open(audit_path, &au))))
        rc = cli_fail(a.cmd) + 1;
    if (rc == 0) {
        /* CPU time too: on a shared machine it varies much less than wall time */
        struct timespec t0, t1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        if (run_check(p, text, len, (size_t)chunk, &out, &st)) rc = cli_fail(a.cmd) + 1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        double ct = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
        if (rc == 0 && cli_get(&a, "stats"))
            fprintf(stderr, "safety: %zu bytes, %zu terms, %.3f s (%.1f MB/s), CPU %.3f s (%.1f MB/s)\n", len,
                    bee_safety_policy_n_terms(p), dt, dt > 0 ? (double)len / dt / 1e6 : 0.0, ct,
                    ct > 0 ? (double)len / ct / 1e6 : 0.0);
    }
    if (rc == 0) {
        size_t nm;
        const bee_safety_match *m = bee_safety_stream_matches(st, &nm);
        const char *rid = cli_get(&a, "request-id");
        if (au && bee_safety_audit_record(au, rid ? rid : "cli", stage, m, nm)) rc = cli_fail(a.cmd) + 1;
        else {
            print_result(cli_get(&a, "json") != NULL, bee_safety_stream_action(st), m, nm, &out);
            rc = bee_safety_stream_action(st) == BEE_SAFETY_BLOCK;
        }
    }
    bee_str_free(&out);
    free(text);
    bee_safety_stream_free(st);
    bee_safety_audit_close(au);
    bee_safety_policy_free(p);
    cli_free(&a);
    return rc;
}

int cmd_safety(int argc, char **argv) {
    static const cli_subcommand subs[] = {
        {"check", safety_check, "check a text against a policy: decision, matches, masked text"},
    };
    return cli_dispatch("safety", subs, sizeof subs / sizeof *subs, argc, argv);
}

/* ================================================================ feedback export */

static int feedback_export(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"db", 0, "FEEDBACK.sqlite", "feedback database (required)", "BEE_FEEDBACK_DB", 0},
        {"out", 'o', "DIR", "output folder (required): sft.jsonl and pairs.jsonl", "BEE_FEEDBACK_OUT", 0},
        {0},
    };
    cli_args a = {"feedback export", "--db F.sqlite --out DIR",
                  "Writes the collected feedback as CPM-Bee fine-tuning data (DIR/sft.jsonl: {\"input\", \"<ans>\"},\n"
                  "corrections win over the original answer, disliked answers are left out) and preference pairs\n"
                  "(DIR/pairs.jsonl: {\"prompt\", \"chosen\", \"rejected\"}). Files are replaced atomically.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *db = cli_get(&a, "db"), *out = cli_get(&a, "out");
    if (a.n_pos) rc = cli_error(a.cmd, "unexpected argument '%s'", a.pos[0]) + 1;
    else if (!db) rc = cli_error(a.cmd, "missing --db F.sqlite") + 1;
    else if (!out) rc = cli_error(a.cmd, "missing --out DIR") + 1;
    bee_feedback *fb = NULL;
    bee_feedback_export_stats stats;
    if (rc == 0 && (!bee_file_exists(db) ? bee_fail("%s: no such database", db) : bee_feedback_open(db, &fb)))
        rc = cli_fail(a.cmd);
    if (rc == 0 && bee_feedback_export(fb, out, &stats)) rc = cli_fail(a.cmd);
    if (rc == 0)
        printf("exported %zu responses with feedback: %zu SFT examples to %s/sft.jsonl, %zu preference pairs to "
               "%s/pairs.jsonl\n",
               stats.n_rated, stats.n_sft, out, stats.n_pairs, out);
    bee_feedback_close(fb);
    cli_free(&a);
    return rc;
}

int cmd_feedback(int argc, char **argv) {
    static const cli_subcommand subs[] = {
        {"export", feedback_export, "write fine-tuning JSONL and preference pairs from the feedback store"},
    };
    return cli_dispatch("feedback", subs, sizeof subs / sizeof *subs, argc, argv);
}
