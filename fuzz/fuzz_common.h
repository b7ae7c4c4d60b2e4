/* Shared setup for the tokenizer and dict fuzzers: the vocabulary is bee.txt
 * when BEE_FUZZ_VOCAB names it, else the builtin one. */
#ifndef BEE_FUZZ_COMMON_H
#define BEE_FUZZ_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"

static bee_tokenizer *fuzz_tokenizer(void) {
    static bee_tokenizer *tok;
    if (tok) return tok;
    const char *path = getenv("BEE_FUZZ_VOCAB");
    if (path && bee_tokenizer_load_txt(path, &tok) == 0) return tok;
    char **toks;
    uint32_t n;
    if (bee_vocab_builtin(&toks, &n)) abort();
    uint64_t *lens = malloc(n * sizeof *lens);
    for (uint32_t i = 0; i < n; i++) lens[i] = strlen(toks[i]);
    if (bee_tokenizer_init(&tok, (const char *const *)toks, lens, n)) abort();
    for (uint32_t i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(lens);
    return tok;
}

#endif
