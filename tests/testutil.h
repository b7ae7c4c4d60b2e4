/* Shared helpers for the cmocka test programs. */
#ifndef BEE_TESTUTIL_H
#define BEE_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "train/train.h"

/* Path under the shared golden folder, or NULL (after printing why) when the
 * folder is absent: tests that need it then exit with 77 (skipped). */
const char *tu_shared(const char *rel);
/* Exits 77 with a clear message if ../shared/cpmbee is not present. */
void tu_require_shared(void);
/* 1 when ../shared/cpmbee/golden exists (for cmocka skip()). */
int bee_file_present_golden(void);
/* A fresh scratch directory for this test program. */
const char *tu_tmpdir(void);
/* Joins a path under tu_tmpdir() into a static buffer (rotating, 8 slots). */
const char *tu_tmp(const char *name);
/* Writes bytes to a file (test fixtures). */
void tu_write(const char *path, const void *data, size_t n);
/* Runs a shell command, returns its exit status; stdout+stderr captured in *out (malloc'd). */
int tu_run(const char *cmd, char **out);
/* A growable byte buffer for building binary fixtures by hand. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} tu_buf;
void tu_buf_put(tu_buf *b, const void *d, size_t n);
/* Appends v as n little-endian bytes. */
void tu_buf_le(tu_buf *b, uint64_t v, size_t n);

/* Path of the bee CLI binary. */
const char *tu_bee(void);
/* Runs `bee ARGS` (printf-formatted), like tu_run. */
int tu_bee_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `bee init -o tu_tmp(name) --seed 7 EXTRA` (a random-weight model); the
 * path goes to path (4096 bytes). Fails the test when bee init fails. */
void tu_make_model(char *path, const char *name, const char *extra);

/* Rough XML well-formedness (for the SVG charts): tags nest and close, the
 * attributes are quoted, text has no bare '<' and '&' starts an entity.
 * Returns NULL when it holds, else what is wrong (static buffer). */
const char *tu_xml_problem(const char *s);
/* Occurrences of needle in s (non-overlapping). */
size_t tu_count(const char *s, const char *needle);

/* Training: the loss of a batch (no backward) and a fourth-order central
 * difference of it in one weight x (restored afterwards). */
double tu_train_loss(bee_train_model *t, const bee_train_batch *b);
double tu_fd_grad(bee_train_model *t, const bee_train_batch *b, float *x, double h);

#endif
