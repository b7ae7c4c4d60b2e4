/* Hot-list digest: the main viewpoints of a question's answers as short
 * points, each citing the answers it comes from (docs/DIGEST.md).
 *
 * Extractive mode (no model): sentences (Chinese 。！？, English . ! ?,
 * line breaks) are compared by TF-IDF cosine over character bigrams (CJK) and
 * words (Latin); TextRank with a teleport vector weighted by 1 + log(1 +
 * upvotes) gives each sentence a salience; MMR picks salient, non-redundant
 * sentences; each becomes a point citing its own answer and every answer with
 * a near-duplicate sentence. Deterministic.
 *
 * Model mode: map-reduce. The extractive ranking pre-selects sentences; they
 * are packed into chunks whose CPM-Bee dict prompt fits the context (tokens
 * counted with the model's tokenizer); the model summarises each chunk (the
 * summary cites the chunk's answers), then merges the summaries, reducing
 * again in groups while they do not fit. Every citation is an id of the
 * input: ids the model writes in its text that are not in the input are
 * removed. */
#ifndef BEE_APPS_DIGEST_H
#define BEE_APPS_DIGEST_H

#include <jansson.h>
#include <stddef.h>

#include "model/model.h"

typedef struct {
    char *id;          /* as text: "3" for "id": 3 */
    int id_is_int;     /* printed back as a JSON integer */
    char *author;      /* NULL when absent */
    long long upvotes; /* >= 0 */
    char *text;
} bee_digest_answer;

typedef struct {
    char *question; /* "" when absent */
    bee_digest_answer *answers;
    size_t n;
} bee_digest_input;

/* Parses {"question", "answers": [...]}, a JSON array of answers, or JSONL
 * (one answer object per line; a line with "question" and no "text" sets the
 * question). `where` names the source in messages ("file.json"). Errors name
 * the line/column/offset of bad JSON and the field with its index
 * ("answers[2].upvotes: expected an integer"). Answers without "id" get their
 * 1-based position; ids must be unique and may not contain '[' or ']'. */
int bee_digest_parse(const char *text, size_t len, const char *where, bee_digest_input *out);
/* The same from an already parsed object/array (the HTTP endpoint). */
int bee_digest_from_json(json_t *j, const char *where, bee_digest_input *out);
void bee_digest_input_free(bee_digest_input *in);

/* Sentences of text: byte spans [start, end) with surrounding spaces trimmed
 * and the closing punctuation/quotes kept. Returns the count (*spans malloc'd,
 * 2 entries per sentence), or -1 on out of memory. */
long bee_digest_split(const char *text, size_t **spans);

/* Model calls: fills the "<ans>" of a CPM-Bee dict (max_length tokens at
 * most). *answer is malloc'd. */
typedef int (*bee_digest_gen_fn)(void *user, json_t *dict, int max_length, char **answer);

typedef struct {
    int max_points;      /* default 5 */
    int extractive;      /* 1: no model */
    const bee_model *model; /* model mode: tokenizer for counting and the default generator */
    int ctx;             /* model mode: prompt + generated tokens limit (default 2048) */
    int max_length;      /* model mode: tokens per summary (default 64) */
    int beam_size;       /* default generator: beam size (default 3) */
    int max_sentences;   /* model mode: sentences pre-selected (default 48) */
    int keep_contentless; /* model mode: keep model text without content (no extractive fallback; for measuring the model) */
    bee_digest_gen_fn gen; /* NULL: beam search on `model` */
    void *gen_user;
} bee_digest_opts;

void bee_digest_opts_default(bee_digest_opts *o);

typedef struct {
    char *text;   /* the point, without citation marks */
    size_t *cites; /* indices into input answers, ascending */
    size_t n_cites;
    double score;
} bee_digest_point;

typedef struct {
    bee_digest_point *points;
    size_t n;
    int model;   /* 1: made by the model (map-reduce) */
    int chunks;  /* map chunks (0 in extractive mode) */
    int reduce_calls; /* merge calls */
    int fallbacks;    /* model texts with no viewpoint (empty, fewer than two features) replaced by extractive text:
                         a chunk summary by the chunk's most salient sentence, a merge by the merged summaries */
} bee_digest_result;

int bee_digest_run(const bee_digest_input *in, const bee_digest_opts *o, bee_digest_result *r);
void bee_digest_result_free(bee_digest_result *r);

/* "text [3][7]" (malloc'd). */
char *bee_digest_point_line(const bee_digest_input *in, const bee_digest_point *p);
/* {"question", "points": [{"text", "cites": [ids]}], "mode", "chunks"} */
json_t *bee_digest_result_json(const bee_digest_input *in, const bee_digest_result *r);

#endif
