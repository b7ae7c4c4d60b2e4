/* CPM-Bee tokenizer (SPEC §4): greedy longest match over the vocabulary,
 * "<<" escapes, special tags, and per-input "ext" ids for unknown strings and
 * tags that are not in the vocabulary. There is no byte fallback. */
#ifndef BEE_TOKENIZER_H
#define BEE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct bee_tokenizer bee_tokenizer;

/* Ids the rest of the stack relies on, looked up by name at load time. */
typedef struct {
    int32_t pad, unk, mask, sep, nl, space, bos, eos, root, ans, option, eod;
} bee_special_ids;

/* tokens[i] (lens[i] bytes, any bytes allowed) is the text of id i, after the
 * bee.txt renames ("</n>" → "\n", "</_>" → " "). Fails on duplicates, empty
 * tokens, invalid UTF-8, or a missing required special token. */
int bee_tokenizer_init(bee_tokenizer **out, const char *const *tokens, const uint64_t *lens, uint32_t n);
/* Loads an upstream vocab.txt / bee.txt (one token per line, renames applied). */
int bee_tokenizer_load_txt(const char *path, bee_tokenizer **out);
void bee_tokenizer_free(bee_tokenizer *t);

uint32_t bee_tokenizer_n_vocab(const bee_tokenizer *t);
const bee_special_ids *bee_tokenizer_special(const bee_tokenizer *t);
/* Id of an exact token string, or -1. */
int32_t bee_tokenizer_find(const bee_tokenizer *t, const char *s, size_t len);
/* Text of id (not NUL-terminated); NULL if out of range. */
const char *bee_tokenizer_text(const bee_tokenizer *t, int32_t id, size_t *len);
/* 1 for vocab entries that start with "<" and end with ">". */
int bee_tokenizer_is_special(const bee_tokenizer *t, int32_t id);

/* ---------------------------------------------------------------- ext table
 * Strings that are not vocabulary tokens, numbered in order of first
 * appearance; string k has id n_vocab + k. */
typedef struct {
    char **str;
    size_t *len;
    size_t n, cap;
} bee_ext_table;

int bee_ext_table_find(const bee_ext_table *e, const char *s, size_t len); /* index or -1 */
int bee_ext_table_add(bee_ext_table *e, const char *s, size_t len);       /* index or -1 */
void bee_ext_table_free(bee_ext_table *e);

/* ---------------------------------------------------------------- pieces */
typedef enum { BEE_PIECE_VOCAB, BEE_PIECE_UNKNOWN, BEE_PIECE_TAG } bee_piece_kind;

typedef struct {
    bee_piece_kind kind;
    int32_t id;      /* vocab id for VOCAB and for tags in the vocab; else -1 */
    size_t off, len; /* bytes of the piece in the original text (a tag includes its brackets;
                        an escaped "<<" piece points at the text it came from) */
    const char *s;   /* piece text: into the vocab for VOCAB, else into `text` or scratch */
    size_t slen;
} bee_piece;

typedef struct {
    bee_piece *v;
    size_t n, cap;
    bee_str scratch; /* text parts after unescaping */
} bee_pieces;

/* Splits text into pieces (SPEC §4.2–4.3 step 1–2). On malformed input
 * (unterminated or nested tags, invalid UTF-8) fails with a message naming the
 * character offset. */
int bee_tokenizer_pieces(const bee_tokenizer *t, const char *text, size_t len, bee_pieces *out);
void bee_pieces_free(bee_pieces *p);

/* encode(text, past_table): appends ids; unknown strings and unknown tags get
 * ids n_vocab + index in ext (added if new). */
int bee_tokenizer_encode(const bee_tokenizer *t, const char *text, size_t len, bee_ext_table *ext, bee_ivec *ids);

/* ---------------------------------------------------------------- decode */
typedef struct {
    int32_t *id;
    char **str;
    size_t *len;
    size_t n, cap;
} bee_decode_table;

int bee_decode_table_set(bee_decode_table *d, int32_t id, const char *s, size_t len);
/* Index of id or -1. */
long bee_decode_table_find(const bee_decode_table *d, int32_t id);
void bee_decode_table_free(bee_decode_table *d);

/* decode(ids, table) (SPEC §4.3): table entries win; special tokens verbatim;
 * other vocab strings with "<" escaped as "<<"; negative ids skipped; ids
 * outside vocab and table fail. */
int bee_tokenizer_decode(const bee_tokenizer *t, const int32_t *ids, size_t n, const bee_decode_table *table,
                         bee_str *out);
/* Appends the decoded text of one id (same rules). */
int bee_tokenizer_decode_one(const bee_tokenizer *t, int32_t id, const bee_decode_table *table, bee_str *out);

/* Escapes user text for the tokenizer: "<" → "<<". */
int bee_text_escape(const char *s, size_t n, bee_str *out);

/* A generated vocabulary for models made without an upstream vocab: the
 * CPM-Bee special tokens at their usual ids, printable ASCII, common
 * punctuation and the CJK Unified Ideographs block. Returns token strings
 * (malloc'd array of malloc'd strings) and their count. */
int bee_vocab_builtin(char ***tokens, uint32_t *n);

#endif
