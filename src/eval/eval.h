/* Evaluation harness: metrics, dataset readers, task definitions and scoring
 * through a local model (docs/EVAL.md). */
#ifndef BEE_EVAL_H
#define BEE_EVAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---------------------------------------------------------------- metrics
 * Text is split into tokens: each CJK character (or other non-ASCII letter) is
 * one token, ASCII letter/digit runs are lower-cased words; punctuation and
 * spaces separate and are dropped, so Chinese is scored per character and
 * English per word. */
typedef struct {
    char **v;
    size_t n;
} bee_eval_toks;

int bee_eval_tokenize(const char *s, bee_eval_toks *out);
void bee_eval_toks_free(bee_eval_toks *t);

/* Scores in [0, 1]; -1 on out of memory. */
double bee_metric_em(const char *pred, const char *gold);
double bee_metric_f1(const char *pred, const char *gold);
double bee_metric_rouge_l(const char *pred, const char *gold);

/* Running mean and sample standard error (Welford). */
typedef struct {
    size_t n;
    double mean, m2;
} bee_stat;

void bee_stat_add(bee_stat *s, double x);
/* Standard error of the mean: sqrt(sample variance / n); 0 for n < 2. */
double bee_stat_se(const bee_stat *s);

/* ---------------------------------------------------------------- readers
 * Every reader returns a JSON array of objects (one per sample) whose values
 * are strings (SQuAD "answers" is an array of strings). */
json_t *bee_read_csv(const char *path);             /* header row names the fields ("" → "id") */
json_t *bee_read_gaokao(const char *path);          /* question, A..D, answer; analysis dropped */
json_t *bee_read_squad(const char *path);           /* id, context, question, answer, answers */
json_t *bee_read_jsonl(const char *path);           /* one object per line */
json_t *bee_read_tsv(const char *path, json_t *columns); /* columns: array of names */

/* Next-line items ("nextline" reader): from a poems JSONL ({"title",
 * "author", "lines": [...]}, one item per poem at a line drawn with the seed)
 * or a text file (one unit, every line after the first is an item). Each
 * item: title, author, context (up to context_lines preceding lines joined
 * by joiner, "\n" by default), next (the true line), line (its index), A.. (the true line and
 * `distractors` lines of other units — other lines of the file — drawn with
 * the seed, of the same length in characters when same_length), answer (the
 * true line's letter). Items without enough distractors are left out. */
typedef struct {
    int poems;           /* 1: poems JSONL, 0: text file */
    int context_lines;   /* >= 1 */
    int distractors;     /* 0..15 */
    int same_length;
    uint64_t seed;
    const char *joiner;  /* between context lines; NULL: "\n" */
} bee_nextline_opts;
json_t *bee_read_nextline(const char *path, const bee_nextline_opts *o);
/* Non-empty lines joined (by "\n") into chunks of at least chunk_chars characters: {"text"}. */
json_t *bee_read_chunks(const char *path, size_t chunk_chars);

/* ---------------------------------------------------------------- tasks */
typedef enum { BEE_TASK_MC, BEE_TASK_GEN, BEE_TASK_PPL } bee_task_type;

enum { BEE_METRIC_ACC = 1, BEE_METRIC_ACC_NORM = 2, BEE_METRIC_EM = 4, BEE_METRIC_F1 = 8, BEE_METRIC_ROUGE_L = 16,
       BEE_METRIC_PPL = 32 };

typedef struct {
    char *name;
    bee_task_type type;
    json_t *def;      /* the task JSON (owned) */
    json_t *samples;  /* evaluated items */
    json_t *fewshot;  /* pool of few-shot examples (may be samples itself) */
    int fewshot_is_samples;
    const char *template_, *target, *gold; /* borrowed from def */
    json_t *choices, *labels;              /* mc: answer texts and gold labels (templates) */
    unsigned metrics;                      /* BEE_METRIC_* bits */
    unsigned primary;                      /* the metric that ranks the task ("primary", default the first in the fixed order) */
    int shots, max_tokens;
    char *source; /* file the task came from, for messages */
    int corpus;   /* data under the corpus folder ("root": "corpus") */
} bee_task;

/* Loads a task by name (TASK_DIR/NAME.json, a path ending in .json, or a
 * built-in: "sanity", "sanity-gen") and reads its data under data_dir.
 * shots < 0 keeps the task's own count. */
int bee_task_load(bee_task *t, const char *name, const char *task_dir, const char *data_dir, int shots);
/* The same with the corpus folder ("root": "corpus" tasks; NULL: the default
 * below). Returns 2 (message set) when a data file is missing. */
int bee_task_load_ex(bee_task *t, const char *name, const char *task_dir, const char *data_dir, const char *corpus_dir, int shots);
/* $BEE_CORPUS, else ".cache/corpus" (scripts/build-corpus.sh's output). */
const char *bee_corpus_dir_default(void);
void bee_task_free(bee_task *t);
/* Renders "{field}" placeholders from a sample ("{{" is a literal brace). */
char *bee_task_render(const char *tmpl, json_t *sample, const char *where);
/* The full prompt of item i: few-shot examples (seeded draw) then the item. */
char *bee_task_prompt(const bee_task *t, size_t i, uint64_t seed);
/* Metric names in output order and their bits. */
const char *bee_metric_name(unsigned bit);

/* ---------------------------------------------------------------- scoring */
/* {"input": prompt, "<ans>": answer} in training form: tokens[0..n_prefix)
 * are the context, the rest the answer segment (<s> then answer tokens);
 * target[i] is the output id (n_vocab + ext index for ext strings) of token
 * n_prefix + i. */
typedef struct {
    bee_token *tokens;
    size_t n, n_prefix;
    int32_t *target;
    bee_ivec ext_ids, ext_subs;
    int32_t *seg_rel;
    size_t n_seg_rel;
    bee_decode_table ext_text; /* text of each ext output id (n_vocab + k) */
} bee_eval_enc;

/* prompt NULL encodes {"<ans>": answer} (the form bee perplexity scores). */
int bee_eval_enc_init(const bee_model *m, const char *prompt, const char *answer, bee_eval_enc *e);
void bee_eval_enc_free(bee_eval_enc *e);

/* Log-likelihood of `answer` given `prompt`: sum of the log-softmax of each
 * answer token (one forward pass, all logits). *n_tok receives the count. */
int bee_eval_loglik(const bee_model *m, const char *prompt, const char *answer, double *ll, size_t *n_tok);
/* Per-token log-probabilities of the answer segment of {"input": context,
 * "<ans>": answer} ({"<ans>": answer} when context is NULL): token 0 is the
 * <s> that opens the answer (lp NAN, text ""), token i > 0 the i-th answer
 * token given the context and the answer tokens before it. window > 0 scores
 * a long answer in rolling windows of that many answer tokens advancing by
 * window/2 (each scores only the tokens it adds, as bee perplexity does);
 * 0 = one pass. top_k alternatives per token (ids are output ids: n_vocab +
 * k for ext strings). Shared by local scoring and bee serve's echo. */
typedef struct {
    size_t n, n_prefix; /* answer-segment tokens; context tokens before them */
    double *lp;
    char **text;    /* (n) token text, "<<" unescaped; concatenated they give the answer */
    size_t *offset; /* (n) byte offset of each token in the answer */
    int top_k;
    int32_t *top_id; /* (n, top_k) */
    double *top_lp;
    char **top_text;
} bee_eval_lps;

int bee_eval_token_logprobs(const bee_model *m, const char *context, const char *answer, size_t window, int top_k,
                            bee_eval_lps *o);
void bee_eval_lps_free(bee_eval_lps *o);

/* Greedy answer of at most max_tokens tokens (*out malloc'd). */
int bee_eval_generate(const bee_model *m, const char *prompt, int max_tokens, char **out);

/* ---------------------------------------------------------------- remote models
 * OpenAI-compatible /v1/completions over plain http (e.g. `bee serve`):
 * generation, and prompt log-probs through echo where the server has them
 * (see docs/EVAL.md). */
typedef struct {
    const char *base_url; /* http://host:port[/prefix] */
    const char *model;
    const char *key_env;  /* environment variable holding the API key, or NULL */
    int timeout_ms;       /* per request: connect + send + the whole response */
    int retries;          /* extra tries after a failed connect, a timeout or HTTP 429/500/502/503/504 */
} bee_remote;

#define BEE_HTTP_BACKOFF_MAX_S 10.0
/* HTTP statuses worth retrying: 429, 500, 502, 503, 504. */
int bee_http_retryable(int status);
/* Seconds to wait before retry `attempt` (0-based): retry_after (a
 * Retry-After header in seconds) when >= 0, else 0.25 * 2^attempt; at most
 * BEE_HTTP_BACKOFF_MAX_S. */
double bee_http_backoff_s(int attempt, double retry_after);

/* POSTs body to base_url + path; *resp receives the body (malloc'd). */
int bee_http_post(const char *base_url, const char *path, const char *key, const char *body, int timeout_ms, int *status,
                  char **resp);
int bee_remote_complete(const bee_remote *r, const char *prompt, int max_tokens, char **out);

/* How a remote model scores log-likelihoods: found out by the first request. */
typedef enum {
    BEE_SCORE_UNKNOWN = 0,
    BEE_SCORE_BEE,    /* bee serve: echo + the bee_context/bee_window extension (same encoding as local) */
    BEE_SCORE_OPENAI, /* plain OpenAI echo: context + text as one prompt, the text's tokens summed */
    BEE_SCORE_NONE,   /* no prompt log-probs: score by generation */
} bee_remote_scoring;

/* Log-likelihood of `text` after `context` (NULL: the text alone, in rolling
 * windows of `window` answer tokens when > 0) from /v1/completions with
 * "echo": true, "logprobs": 1, "max_tokens": 0. Returns 0 with *ll and
 * *n_tok, 1 when the server does not score prompts (*mode becomes
 * BEE_SCORE_NONE, *why the server's answer, malloc'd), -1 on errors. */
int bee_remote_loglik(const bee_remote *r, bee_remote_scoring *mode, const char *context, const char *text, int window,
                      double *ll, size_t *n_tok, char **why);

/* ---------------------------------------------------------------- unigram baseline
 * Scores text by add-one-smoothed unigram log-probabilities of its eval
 * tokens (bee_eval_tokenize) counted in a text file (docs/EVAL.md). */
typedef struct bee_unigram bee_unigram;
int bee_unigram_load(const char *path, bee_unigram **out);
double bee_unigram_token_logprob(const bee_unigram *u, const char *tok);
int bee_unigram_logprob(const bee_unigram *u, const char *text, double *ll, size_t *n_tok);
void bee_unigram_free(bee_unigram *u);

/* ---------------------------------------------------------------- YAML
 * A YAML file as the equivalent JSON value (NULL + error naming file:line);
 * without libyaml (BEE_HAVE_YAML unset) every call fails with that reason. */
int bee_yaml_available(void);
json_t *bee_yaml_load_file(const char *path);
/* The same for text in memory; `name` stands for the file in messages. */
json_t *bee_yaml_load_string(const char *text, size_t len, const char *name);

/* ---------------------------------------------------------------- runs */
typedef struct {
    const char *models_path; /* MODELS.json or MODELS.yaml */
    const char *tasks;       /* comma-separated names */
    const char *out_dir;
    const char *task_dir, *data_dir;
    long limit;              /* 0 = all */
    int shots;               /* -1 = task default */
    uint64_t seed;
    int threads;
    int quiet;
    const char *corpus_dir;  /* "root": "corpus" tasks (NULL: bee_corpus_dir_default()) */
    int concurrency;         /* remote models: requests in flight (1..BEE_EVAL_MAX_CONCURRENCY; 0 = 1) */
} bee_eval_opts;

#define BEE_EVAL_MAX_CONCURRENCY 64

/* Counters of the last run (tests check that a resumed run recomputes nothing). */
typedef struct {
    size_t computed, cached;
} bee_eval_stats;

int bee_eval_run(const bee_eval_opts *o, bee_eval_stats *st);

#endif
