/* bee digest: the main viewpoints of a question's answers, with citations. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/digest.h"
#include "bee.h"
#include "cli.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

static int read_input(const char *cmd, const char *path, char **buf, size_t *len) {
    if (strcmp(path, "-") != 0) return bee_read_file(path, buf, len) ? cli_fail(cmd) : 0;
    bee_str s = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, stdin)) > 0)
        if (bee_str_append(&s, tmp, n)) {
            bee_str_free(&s);
            return cli_error(cmd, "out of memory");
        }
    if (ferror(stdin)) {
        bee_str_free(&s);
        return cli_error(cmd, "stdin: read error");
    }
    *len = s.n;
    *buf = bee_str_take(&s);
    return 0;
}

static char *render(const bee_digest_input *in, const bee_digest_result *r, int as_json) {
    if (as_json) {
        json_t *o = bee_digest_result_json(in, r);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!s) return NULL;
        size_t n = strlen(s);
        char *t = realloc(s, n + 2);
        if (!t) {
            free(s);
            return NULL;
        }
        t[n] = '\n', t[n + 1] = 0;
        return t;
    }
    bee_str o = {0};
    bee_str_append(&o, "", 0);
    if (in->question[0]) bee_str_printf(&o, "%s\n", in->question);
    for (size_t i = 0; i < r->n; i++) {
        char *line = bee_digest_point_line(in, &r->points[i]);
        bee_str_printf(&o, "%zu. %s\n", i + 1, line ? line : "");
        free(line);
    }
    if (r->model)
        bee_str_printf(&o, "(model digest: %d chunk%s, %d merge call%s%s)\n", r->chunks, r->chunks == 1 ? "" : "s",
                       r->reduce_calls, r->reduce_calls == 1 ? "" : "s",
                       r->fallbacks ? "; the model's text had no content, replaced by extractive sentences" : "");
    return bee_str_take(&o);
}

int cmd_digest(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model that writes the digest (map-reduce over chunks that fit --ctx)", "BEE_MODEL", 0},
        {"extractive", 0, NULL, "no model: salient, non-redundant sentences of the answers", NULL, 0},
        {"max-points", 'k', "N", "points in the digest (default 5)", NULL, 0},
        {"question", 'q', "TEXT", "the question (for JSONL input without a question line)", NULL, 0},
        {"ctx", 0, "N", "model mode: prompt + generated tokens per model call (default 2048)", NULL, 0},
        {"max-length", 0, "N", "model mode: tokens per summary (default 64)", "BEE_MAX_LENGTH", 0},
        {"beam", 0, "K", "model mode: beam size (default 3)", NULL, 0},
        {"max-sentences", 0, "N", "model mode: sentences pre-selected for the model (default 48)", NULL, 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        CLI_OPT_KV_TYPE,
        CLI_OPT_LORA,
        {"json", 0, NULL, "print {\"question\", \"points\": [{\"text\", \"cites\"}], \"mode\", \"chunks\"}", NULL, 0},
        {"output", 'o', "FILE", "write the digest to FILE (atomically) instead of stdout", NULL, 0},
        {0},
    };
    cli_args a = {"digest", "(-m MODEL.gguf | --extractive) [-k N] [--json] [-o FILE] ANSWERS.json|ANSWERS.jsonl|-",
                  "Digests a question's answers into short points, each citing the answers it comes from, e.g.\n"
                  "\"... [3][7]\". Input: {\"question\": Q, \"answers\": [{\"id\", \"author\", \"upvotes\", \"text\"}]},\n"
                  "a JSON array of answers, or JSONL (one answer per line). Every cited id exists in the input.\n"
                  "--extractive needs no model (TextRank weighted by log(1+upvotes), MMR selection); with -m the\n"
                  "model summarises chunks of pre-selected sentences that fit --ctx, then merges them\n"
                  "(docs/DIGEST.md).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_digest_opts o;
    bee_digest_opts_default(&o);
    long kp = 5, ctx = 2048, ml = 64, beam = 3, ms = 48;
    o.extractive = cli_get(&a, "extractive") != NULL;
    if (a.n_pos != 1) rc = cli_error(a.cmd, "expected one input FILE (or - for stdin)") + 1;
    else if (!o.extractive && !cli_get(&a, "model")) rc = cli_error(a.cmd, "needs -m MODEL.gguf or --extractive") + 1;
    else if (o.extractive && cli_get(&a, "model")) rc = cli_error(a.cmd, "--extractive uses no model: drop -m") + 1;
    else if (cli_int(&a, "max-points", 1, 100, &kp) || cli_int(&a, "ctx", 64, 1 << 20, &ctx) ||
             cli_int(&a, "max-length", 1, 4096, &ml) || cli_int(&a, "beam", 1, 64, &beam) ||
             cli_int(&a, "max-sentences", 1, 100000, &ms))
        rc = 2;
    o.max_points = (int)kp, o.ctx = (int)ctx, o.max_length = (int)ml, o.beam_size = (int)beam, o.max_sentences = (int)ms;
    char *buf = NULL;
    size_t len = 0;
    bee_digest_input in = {0};
    bee_digest_result r = {0};
    bee_model *m = NULL;
    if (rc == 0) rc = read_input(a.cmd, a.pos[0], &buf, &len);
    if (rc == 0 && bee_digest_parse(buf, len, strcmp(a.pos[0], "-") ? a.pos[0] : "stdin", &in)) rc = cli_fail(a.cmd);
    const char *q = cli_get(&a, "question");
    if (rc == 0 && q) {
        free(in.question);
        if (!(in.question = strdup(q))) rc = cli_error(a.cmd, "out of memory");
    }
    if (rc == 0 && !o.extractive) rc = cli_model_load(a.cmd, &a, &m);
    o.model = m;
    if (rc == 0 && bee_digest_run(&in, &o, &r)) rc = cli_fail(a.cmd);
    if (rc == 0) {
        char *out = render(&in, &r, cli_get(&a, "json") != NULL);
        const char *path = cli_get(&a, "output");
        if (!out) rc = cli_error(a.cmd, "out of memory");
        else if (path && bee_write_file_atomic(path, out, strlen(out))) rc = cli_fail(a.cmd);
        else if (!path) fputs(out, stdout);
        free(out);
    }
    bee_digest_result_free(&r);
    bee_digest_input_free(&in);
    bee_model_free(m);
    free(buf);
    cli_free(&a);
    return rc;
}
