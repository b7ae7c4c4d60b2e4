/* Text normalisation for lexicon matching. Lexicon entries and checked text go
 * through the same mapping, so evasions (full-width letters, case, traditional
 * characters, zero-width joiners, spaces or dots between characters) still
 * match, and every normalised byte remembers which original bytes it came from
 * so a match can be masked in the original text. */
#ifndef BEE_SAFETY_NORMALIZE_H
#define BEE_SAFETY_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

/* Normalisation switches (full-width folding, ASCII case folding and removal of
 * format characters are always on). */
enum {
    BEE_NORM_SKIP_SEP = 1, /* drop spaces and punctuation between characters */
    BEE_NORM_T2S = 2,      /* map traditional Chinese characters to simplified */
    BEE_NORM_DEFAULT = BEE_NORM_SKIP_SEP | BEE_NORM_T2S,
};

typedef enum {
    BEE_NORM_DROP, /* format / zero-width character: invisible, always removed */
    BEE_NORM_SEP,  /* space or punctuation: removed under BEE_NORM_SKIP_SEP */
    BEE_NORM_KEEP, /* kept (possibly mapped) */
} bee_norm_class;

/* Decodes one UTF-8 character: returns its length (1..4) and sets *cp; 0 when
 * the bytes so far are a valid but incomplete prefix (need more input); -1 when
 * the first byte starts no valid character (skip one byte). */
int bee_utf8_decode(const unsigned char *p, size_t avail, uint32_t *cp);
/* Encodes cp (must be a valid scalar value); returns the length. */
size_t bee_utf8_encode(uint32_t cp, char out[4]);

/* Classifies cp and, for KEEP (and SEP), gives the mapped code point. */
bee_norm_class bee_norm_cp(uint32_t cp, unsigned flags, uint32_t *out);
/* ASCII letters and digits: the characters word-boundary checks look at. */
int bee_norm_is_word(uint32_t cp);

/* A whole text normalised at once. For normalised byte i, the original bytes
 * [src_start[i], src_end[i]) produced it; bnd[i] is 1 when a word boundary lies
 * just before it (start of text, a removed separator, or a non-word character
 * on either side). */
typedef struct {
    char *text;
    size_t len;
    size_t *src_start, *src_end;
    uint8_t *bnd;
} bee_norm_text;

int bee_norm_text_init(bee_norm_text *t, const char *s, size_t n, unsigned flags);
void bee_norm_text_free(bee_norm_text *t);
/* Normalises into a NUL-terminated malloc'd string (lexicon entries). */
char *bee_norm_string(const char *s, size_t n, unsigned flags, size_t *len);

#endif
