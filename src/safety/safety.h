/* Content-safety policy: lexicon categories with an action each (block, mask,
 * log), matched with one Aho-Corasick automaton over normalised text, checked
 * either at once or as a stream of chunks (generated output), with decisions
 * recorded in an SQLite audit table.
 *
 * Typical server use:
 *   bee_safety_policy_load("policy.json", &pol);             // once
 *   bee_safety_check(pol, prompt, n, &r);                     // per prompt
 *   bee_safety_stream_init(&st, pol);                         // per response
 *   bee_safety_stream_push(st, piece, k, &safe);  ...         // per token
 *   bee_safety_stream_finish(st, &safe);
 *   bee_safety_audit_record(audit, req_id, BEE_SAFETY_STAGE_OUTPUT, m, n);
 * A policy is read-only once loaded and may be shared between threads; a
 * stream or an audit handle belongs to one thread at a time. */
#ifndef BEE_SAFETY_SAFETY_H
#define BEE_SAFETY_SAFETY_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Ordered by severity: a text's decision is the most severe of its matches. */
typedef enum {
    BEE_SAFETY_ALLOW = 0,
    BEE_SAFETY_LOG = 1,
    BEE_SAFETY_MASK = 2,
    BEE_SAFETY_BLOCK = 3,
} bee_safety_action;

typedef enum {
    BEE_SAFETY_STAGE_PROMPT = 0,
    BEE_SAFETY_STAGE_OUTPUT = 1,
} bee_safety_stage;

const char *bee_safety_action_name(bee_safety_action a);
/* Parses "allow", "log", "mask", "block"; -1 if unknown. */
int bee_safety_action_parse(const char *s);
const char *bee_safety_stage_name(bee_safety_stage s);

/* ================================================================ policy */

typedef struct bee_safety_policy bee_safety_policy;

/* Loads a JSON policy file (format in docs/SAFETY.md). Lexicon paths are
 * relative to the policy file's folder. Errors name the file and field. */
int bee_safety_policy_load(const char *path, bee_safety_policy **out);
/* The same from a JSON string; `name` is used in error messages and base_dir
 * resolves relative lexicon paths (NULL: the current directory). */
int bee_safety_policy_parse(const char *json, size_t len, const char *name, const char *base_dir,
                            bee_safety_policy **out);

/* Building a policy in code: new, categories, terms or lexicon files, compile. */
int bee_safety_policy_new(unsigned norm_flags, bee_safety_policy **out);
/* Returns the category index, or -1. A repeated name is an error. */
int bee_safety_policy_add_category(bee_safety_policy *p, const char *name, bee_safety_action action);
int bee_safety_policy_add_term(bee_safety_policy *p, int category, const char *term, size_t len);
/* One entry per line; blank lines and lines starting with '#' are skipped. */
int bee_safety_policy_add_lexicon(bee_safety_policy *p, int category, const char *path);
/* Mask replacement character(s), UTF-8; default "＊". */
int bee_safety_policy_set_mask(bee_safety_policy *p, const char *mask);
/* Builds the automaton; the policy is read-only afterwards. */
int bee_safety_policy_compile(bee_safety_policy *p);
void bee_safety_policy_free(bee_safety_policy *p);

size_t bee_safety_policy_n_categories(const bee_safety_policy *p);
const char *bee_safety_policy_category(const bee_safety_policy *p, int category, bee_safety_action *action);
/* Distinct (category, normalised term) patterns in the automaton. */
size_t bee_safety_policy_n_terms(const bee_safety_policy *p);
unsigned bee_safety_policy_norm_flags(const bee_safety_policy *p);

/* ================================================================ checking */

typedef struct {
    int category;
    const char *category_name; /* owned by the policy */
    bee_safety_action action;
    const char *term; /* the lexicon entry as written; owned by the policy */
    uint64_t start, end; /* byte span in the original text (whole stream) */
} bee_safety_match;

typedef struct {
    bee_safety_action action;
    bee_safety_match *matches;
    size_t n_matches;
    char *text; /* masked text (NUL-terminated); NULL when blocked */
    size_t len;
} bee_safety_result;

/* One-shot check of a whole text. */
int bee_safety_check(const bee_safety_policy *p, const char *text, size_t n, bee_safety_result *r);
void bee_safety_result_free(bee_safety_result *r);

/* ================================================================ streaming */

/* Text arrives in chunks that may split UTF-8 characters and lexicon terms.
 * push appends to *out the text that can no longer become part of a match
 * (masked where needed) and holds back only the undecided tail: an incomplete
 * character, the longest suffix that can still grow into a term, and a word
 * match waiting for the boundary after it. After an error the stream can
 * only be freed.
 * Once a block match is seen nothing more is emitted (the blocked term itself
 * is never emitted); matching continues so the match list does not depend on
 * how the text was split. */
typedef struct bee_safety_stream bee_safety_stream;

int bee_safety_stream_init(bee_safety_stream **out, const bee_safety_policy *p);
int bee_safety_stream_push(bee_safety_stream *s, const char *data, size_t n, bee_str *out);
/* Decides the held-back tail (end of text counts as a word boundary). */
int bee_safety_stream_finish(bee_safety_stream *s, bee_str *out);
bee_safety_action bee_safety_stream_action(const bee_safety_stream *s);
const bee_safety_match *bee_safety_stream_matches(const bee_safety_stream *s, size_t *n);
/* Bytes received but not yet emitted or discarded. */
size_t bee_safety_stream_held(const bee_safety_stream *s);
void bee_safety_stream_free(bee_safety_stream *s);

/* ================================================================ audit */

/* Decisions recorded in SQLite, table safety_audit(id, time, request_id,
 * stage, category, action, term, start, end). */
typedef struct bee_safety_audit bee_safety_audit;

int bee_safety_audit_open(const char *path, bee_safety_audit **out);
/* One row per match, all in one transaction. */
int bee_safety_audit_record(bee_safety_audit *a, const char *request_id, bee_safety_stage stage,
                            const bee_safety_match *m, size_t n);
void bee_safety_audit_close(bee_safety_audit *a);

#endif
