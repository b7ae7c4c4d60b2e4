/* Aho-Corasick automaton over bytes: all occurrences of many patterns in one
 * pass. Add patterns, build once, then step state by state; the automaton is
 * read-only after bee_ac_build and may be shared between threads. */
#ifndef BEE_SAFETY_AC_H
#define BEE_SAFETY_AC_H

#include <stddef.h>
#include <stdint.h>

typedef struct bee_ac bee_ac;

int bee_ac_init(bee_ac **out);
void bee_ac_free(bee_ac *ac);
/* Adds a non-empty pattern reported as `id`; before bee_ac_build only. */
int bee_ac_add(bee_ac *ac, const void *pat, size_t len, uint32_t id);
int bee_ac_build(bee_ac *ac);

/* The start state is 0. */
uint32_t bee_ac_step(const bee_ac *ac, uint32_t state, uint8_t c);
/* Length of the longest suffix of the input so far that is a prefix of some
 * pattern (the state's depth in the trie). */
uint32_t bee_ac_depth(const bee_ac *ac, uint32_t state);
/* Length of the longest suffix that is a proper prefix of some pattern: no
 * match still to come can start earlier than this many bytes back. */
uint32_t bee_ac_hold(const bee_ac *ac, uint32_t state);
size_t bee_ac_n_states(const bee_ac *ac);

/* Steps over n bytes; for every pattern ending after p[i] (longest first)
 * calls on_match(user, pos + i, id, len). Stops at and returns the first
 * non-zero value on_match returns. */
typedef int (*bee_ac_match_fn)(void *user, size_t pos, uint32_t id, uint32_t len);
int bee_ac_scan(const bee_ac *ac, uint32_t *state, const uint8_t *p, size_t n, size_t pos, bee_ac_match_fn on_match,
                void *user);

/* Patterns ending at the current position, longest first. */
typedef struct {
    uint32_t node;
    int32_t item;
} bee_ac_iter;
void bee_ac_iter_init(const bee_ac *ac, uint32_t state, bee_ac_iter *it);
/* Returns 1 and the next pattern's id and length, or 0 when done. */
int bee_ac_iter_next(const bee_ac *ac, bee_ac_iter *it, uint32_t *id, uint32_t *len);

#endif
