/* Rolling perplexity of a plain text, scored as answer tokens (SPEC §5.1 target
 * rule): the text is escaped and placed in {"<ans>": TEXT}; windows of `ctx`
 * answer tokens advance by ctx/2 and each scores only the tokens it adds. */
#ifndef BEE_MODEL_PERPLEXITY_H
#define BEE_MODEL_PERPLEXITY_H

#include <stddef.h>

#include "model/model.h"

typedef struct {
    size_t n_tokens; /* scored tokens */
    double nll;      /* summed negative log-likelihood (nats) */
    double ppl;      /* exp(nll / n_tokens) */
} bee_ppl_result;

typedef void (*bee_ppl_progress)(void *user, size_t done, size_t total);

int bee_perplexity(const bee_model *m, const char *text, size_t len, size_t ctx, bee_ppl_result *out,
                   bee_ppl_progress progress, void *user);

#endif
