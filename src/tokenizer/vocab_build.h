/* Builds a CPM-Bee-format vocabulary (SPEC §4.1) from a plain-text corpus:
 * the fixed special tokens at their upstream ids, every character seen often
 * enough, then frequent Chinese words (CJK n-grams) and English pieces (words
 * with the GPT-2 style leading space, and word endings), best first by
 * count × (characters − 1), i.e. the tokens each piece would save. */
#ifndef BEE_TOKENIZER_VOCAB_BUILD_H
#define BEE_TOKENIZER_VOCAB_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

typedef struct {
    uint32_t size;            /* total tokens including the specials (default 8000) */
    uint32_t min_char_count;  /* a character needs this many occurrences (default 2) */
    uint32_t min_piece_count; /* a multi-character piece needs this many (default 5) */
    uint32_t max_cjk_chars;   /* longest Chinese n-gram considered, 2..8 (default 4) */
} bee_vocab_opts;

void bee_vocab_opts_default(bee_vocab_opts *o);

typedef struct {
    char **tok;   /* token strings (NUL-terminated; "\n" and " " as themselves) */
    uint32_t n;
    uint32_t n_special, n_chars, n_cjk, n_en; /* how many of each kind, in that order */
    uint32_t n_chars_dropped;                 /* characters above the count that did not fit */
} bee_vocab;

/* Fails on an empty corpus, invalid UTF-8 (naming the byte offset) or a size
 * smaller than the special tokens plus one character. Output depends only on
 * the text and the options. */
int bee_vocab_build(const char *text, size_t len, const bee_vocab_opts *o, bee_vocab *out);
void bee_vocab_free(bee_vocab *v);

/* Writes bee.txt form ("\n" as "</n>", " " as "</_>"), atomically. */
int bee_vocab_write(const bee_vocab *v, const char *path);
/* A tokenizer over the built tokens (for measuring and tests). */
int bee_vocab_tokenizer(const bee_vocab *v, bee_tokenizer **out);

typedef struct {
    uint64_t chars;         /* code points, newlines excluded */
    uint64_t unknown_chars; /* code points that became ext (unknown) strings */
    uint64_t tokens;        /* vocab pieces + unknown strings */
    uint64_t lines;
} bee_vocab_stats;

/* Tokenizes every line of text (escaped, as `bee train --text` does) and
 * counts coverage and tokens. */
int bee_vocab_measure(const bee_tokenizer *t, const char *text, size_t len, bee_vocab_stats *s);

#endif
