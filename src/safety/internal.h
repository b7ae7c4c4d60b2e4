/* Policy internals shared by policy.c and stream.c. */
#ifndef BEE_SAFETY_INTERNAL_H
#define BEE_SAFETY_INTERNAL_H

#include "safety/ac.h"
#include "safety/safety.h"

typedef struct {
    int cat;
    uint32_t len;        /* normalised length in bytes */
    uint8_t need_left;   /* starts with an ASCII letter/digit: needs a word boundary before */
    uint8_t need_right;  /* ends with one: needs a word boundary after */
    char *norm;          /* normalised bytes */
    char *term;          /* the entry as written */
} safety_pattern;

typedef struct {
    char *name;
    bee_safety_action action;
} safety_category;

struct bee_safety_policy {
    unsigned flags;
    safety_category *cats;
    size_t n_cats;
    safety_pattern *pats;
    size_t n_pats, cap_pats;
    bee_ac *ac;
    char *mask;
    size_t mask_len;
    int compiled;
};

#endif
