/* Feedback store for the data flywheel: every served response, and the
 * ratings and corrections users give it, kept in SQLite (WAL mode,
 * synchronous=FULL: a call that returned 0 survives a crash of the process
 * and, as far as the disk honours fsync, of the machine), and exported as
 * CPM-Bee fine-tuning data and preference pairs.
 *
 * Server use (POST /v1/feedback and the completion handlers):
 *   bee_feedback_open("feedback.sqlite", &fb);                        // at start
 *   bee_feedback_record_response(fb, &(bee_feedback_response){...}, id, sizeof id);
 *   bee_feedback_record_feedback(fb, id, +1, NULL);                   // or -1, "better answer"
 *   bee_feedback_close(fb);                                           // at exit
 * A handle may be shared by threads (calls are serialised inside); several
 * processes may open the same file. */
#ifndef BEE_FEEDBACK_FEEDBACK_H
#define BEE_FEEDBACK_FEEDBACK_H

#include <stddef.h>
#include <stdint.h>

typedef struct bee_feedback bee_feedback;

/* Opens or creates the database (and its tables). */
int bee_feedback_open(const char *path, bee_feedback **out);
void bee_feedback_close(bee_feedback *fb);

typedef struct {
    const char *id;       /* response id (e.g. the server's "chatcmpl-…"); NULL: a random one is made */
    const char *model;    /* model name, may be NULL */
    const char *prompt;   /* the prompt as JSON: a string, a CPM-Bee dict, or a chat messages array */
    const char *response; /* the answer text */
    int64_t time_ms;      /* Unix time in milliseconds; 0: now */
} bee_feedback_response;

enum { BEE_FEEDBACK_ID_MAX = 128 };

/* Records a response; its id is copied to id_out (when not NULL). A repeated
 * id or a prompt that is not valid JSON is an error. */
int bee_feedback_record_response(bee_feedback *fb, const bee_feedback_response *r, char *id_out, size_t id_cap);
/* Records a rating (-1 or +1) with an optional correction (NULL or "" for
 * none). Fails with "unknown response id" when the id was never recorded. */
int bee_feedback_record_feedback(bee_feedback *fb, const char *response_id, int rating, const char *correction);

/* Records feedback given as the JSON body of POST /v1/feedback:
 *   {"response_id": "chatcmpl-…", "rating": 1 | -1, "correction": "…"}
 * ("id" is accepted for "response_id"; "correction" is optional). Errors
 * name the field, so they can be returned to the client as they are. */
int bee_feedback_record_json(bee_feedback *fb, const char *body, size_t len);

typedef struct {
    size_t n_rated; /* responses with at least one feedback row */
    size_t n_sft;   /* lines written to sft.jsonl */
    size_t n_pairs; /* lines written to pairs.jsonl */
} bee_feedback_export_stats;

/* Writes out_dir/sft.jsonl and out_dir/pairs.jsonl atomically (format in
 * docs/SAFETY.md). The latest feedback row of a response decides. */
int bee_feedback_export(bee_feedback *fb, const char *out_dir, bee_feedback_export_stats *stats);

/* Counts (for tests and monitoring). */
int bee_feedback_count(bee_feedback *fb, int64_t *n_responses, int64_t *n_feedback);

#endif
