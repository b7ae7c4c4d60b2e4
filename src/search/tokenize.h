/* The search tokenizer (registered with FTS5 as "bee"). Text is normalised
 * (full-width ASCII → half-width, ideographic space → space), then split:
 *   - CJK (Han, kana, Hangul): in documents a run gives its overlapping
 *     bigrams and then its last character alone, so every character starts
 *     exactly one token: a 1-character query is a prefix query over them,
 *     longer ones are their bigrams;
 *   - other letters and digits form words: ASCII is case-folded and
 *     alphabetic words are suffix-stripped (bee_search_stem);
 *   - everything else separates tokens.
 * Offsets passed to the callback are byte offsets into the original text. */
#ifndef BEE_SEARCH_TOKENIZE_H
#define BEE_SEARCH_TOKENIZE_H

#include <stddef.h>

/* Longest token in bytes; longer words are truncated (still searchable by prefix equality). */
#define BEE_SEARCH_TOKEN_MAX 64

typedef enum {
    BEE_STOK_DOCUMENT = 0, /* CJK: bigrams + the run's last character */
    BEE_STOK_QUERY = 1,    /* a CJK run of 1 char → its unigram, longer runs → their bigrams */
} bee_stok_mode;

/* colocated: 1 when the token shares the previous token's position (the
 * current tokenizer never does this; kept for the FTS5 glue).
 * A non-zero return stops tokenizing and is returned by bee_search_tokenize. */
typedef int (*bee_stok_fn)(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated);

int bee_search_tokenize(const char *text, size_t n, bee_stok_mode mode, bee_stok_fn fn, void *user);

/* 1 when tok is exactly one CJK character (a query's 1-character run: searched as a prefix). */
int bee_search_cjk_char(const char *tok, size_t n);

/* Strips common English suffixes in place from a lower-case ASCII word; returns the new length. */
size_t bee_search_stem(char *w, size_t n);

#endif
