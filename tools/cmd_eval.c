/* bee perplexity */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "util/file.h"

static void show_progress(void *user, size_t done, size_t total) {
    (void)user;
    if (isatty(2)) fprintf(stderr, "\rperplexity: %zu/%zu tokens", done, total);
}

int cmd_perplexity(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        CLI_OPT_KV_TYPE,
        CLI_OPT_LORA,
        {"ctx", 'c', "N", "window of answer tokens (default 512); windows advance by N/2", NULL, 0},
        {"json", 0, NULL, "print {\"tokens\": N, \"ppl\": X}", NULL, 0},
        {0},
    };
    cli_args a = {"perplexity", "-m MODEL.gguf FILE [--ctx N] [--json]",
                  "Rolling perplexity of a UTF-8 text file, scored as CPM-Bee answer tokens.", opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    long ctx = 512;
    char *text = NULL;
    size_t len = 0;
    bee_model *m = NULL;
    const char *path = cli_get(&a, "model");
    if (a.n_pos != 1) rc = cli_error("perplexity", "expected one FILE argument") + 1;
    else if (!path) rc = cli_error("perplexity", "missing -m MODEL.gguf") + 1;
    else if (cli_int(&a, "ctx", 8, 1 << 20, &ctx)) rc = 2;
    else if (bee_read_file(a.pos[0], &text, &len)) rc = cli_fail("perplexity");
    else if (cli_model_load("perplexity", &a, &m)) rc = 1;
    if (rc == 0) {
        bee_ppl_result r;
        if (bee_perplexity(m, text, len, (size_t)ctx, &r, show_progress, NULL)) {
            rc = cli_fail("perplexity");
        } else {
            if (isatty(2)) fprintf(stderr, "\n");
            if (cli_get(&a, "json")) printf("{\"tokens\": %zu, \"ppl\": %.6f}\n", r.n_tokens, r.ppl);
            else printf("tokens: %zu\nperplexity: %.4f\nmean nll: %.6f nats\n", r.n_tokens, r.ppl, r.nll / (double)r.n_tokens);
        }
    }
    free(text);
    bee_model_free(m);
    cli_free(&a);
    return rc;
}

/* ================================================================ bee eval */
#include "eval/eval.h"

#ifndef BEE_TASK_DIR_DEFAULT
#define BEE_TASK_DIR_DEFAULT "tasks"
#endif
#ifndef BEE_CORPUS_DIR_DEFAULT
#define BEE_CORPUS_DIR_DEFAULT ".cache/corpus"
#endif

int cmd_eval(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"models", 0, "MODELS.json|.yaml", "models to evaluate: [{\"name\": N, \"path\": \"m.gguf\"}, ...] (JSON or YAML)", "BEE_EVAL_MODELS", 0},
        {"tasks", 0, "T1,T2", "task names (TASK_DIR/NAME.json, a .json path, or built-in sanity, sanity-gen)", "BEE_EVAL_TASKS", 0},
        {"out", 'o', "DIR", "output folder (results, leaderboard, per-sample JSONL, cache)", "BEE_EVAL_OUT", 0},
        {"limit", 0, "N", "evaluate the first N items of each task (default: all)", "BEE_EVAL_LIMIT", 0},
        {"shots", 0, "K", "few-shot examples per prompt (default: each task's own)", "BEE_EVAL_SHOTS", 0},
        {"seed", 0, "S", "seed of the few-shot draw (default 1)", "BEE_EVAL_SEED", 0},
        {"task-dir", 0, "DIR", "folder of task JSON files (default: the source tree's tasks/)", "BEE_TASK_DIR", 0},
        {"data-dir", 0, "DIR", "folder the tasks' data paths are relative to (default ../shared/data)", "BEE_DATA_DIR", 0},
        {"corpus-dir", 0, "DIR", "corpus folder of \"root\": \"corpus\" tasks (default: the source tree's .cache/corpus)", "BEE_CORPUS", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        {"concurrency", 0, "C", "requests in flight per remote (\"type\": \"openai\") model, 1..64 (default 1); failed requests "
                                "(connect, timeout, HTTP 429/500/502/503/504) are retried \"retries\" times (model list, default 3) "
                                "with backoff 0.25 s x 2^n (or Retry-After), at most 10 s", "BEE_EVAL_CONCURRENCY", 0},
        {"quiet", 'q', NULL, "no progress lines", "BEE_QUIET", 0},
        {0},
    };
    cli_args a = {"eval", "--models MODELS.{json,yaml} --tasks T1,T2 --out DIR [--limit N] [--shots K] [--seed S] [--concurrency C]",
                  "Evaluate local, unigram and remote (OpenAI-compatible) models on tasks: per-sample JSONL, results.json, leaderboard.{md,csv,svg}; "
                  "an interrupted run resumes from DIR/cache.jsonl (docs/EVAL.md).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_eval_opts o = {cli_get(&a, "models"), cli_get(&a, "tasks"), cli_get(&a, "out"), cli_get(&a, "task-dir"),
                       cli_get(&a, "data-dir"), 0, -1, 1, 0, cli_get(&a, "quiet") != NULL};
    long limit = 0, shots = -1, threads = 0, conc = 1;
    unsigned long long seed = 1;
    if (!o.task_dir) o.task_dir = BEE_TASK_DIR_DEFAULT;
    if (!o.data_dir) o.data_dir = "../shared/data";
    o.corpus_dir = cli_get(&a, "corpus-dir");
    if (!o.corpus_dir) o.corpus_dir = BEE_CORPUS_DIR_DEFAULT;
    if (a.n_pos) rc = cli_error("eval", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (!o.models_path || !o.tasks || !o.out_dir) rc = cli_error("eval", "--models, --tasks and --out are required") + 1;
    else if (cli_int(&a, "limit", 0, 1L << 30, &limit) || cli_int(&a, "shots", 0, 64, &shots) ||
             cli_u64(&a, "seed", &seed) || cli_int(&a, "threads", 0, 1024, &threads) ||
             cli_int(&a, "concurrency", 1, BEE_EVAL_MAX_CONCURRENCY, &conc))
        rc = 2;
    if (rc == 0) {
        o.limit = limit;
        o.shots = (int)shots;
        o.seed = seed;
        o.threads = (int)threads;
        o.concurrency = (int)conc;
        bee_eval_stats st;
        if (bee_eval_run(&o, &st)) rc = cli_fail("eval");
        else if (!o.quiet) fprintf(stderr, "eval: %zu items computed, %zu from the cache; results in %s\n", st.computed, st.cached, o.out_dir);
    }
    cli_free(&a);
    return rc;
}
