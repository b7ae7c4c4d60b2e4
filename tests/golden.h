/* Golden-model helpers shared by the parity tests: builds a GGUF of the tiny
 * golden model straight from weights_tiny/weights.bin + manifest.json (an
 * independent path from `bee convert`), loads npy files, compares arrays. */
#ifndef BEE_TESTS_GOLDEN_H
#define BEE_TESTS_GOLDEN_H

#include <jansson.h>
#include <stdint.h>

#include "model/model.h"
#include "util/npy.h"

/* Writes the golden tiny model to path (mask: NULL or 2 * n_layers flags;
 * inv_freq_f16 as in an upstream half=true config). */
void golden_write_tiny(const char *path, const uint8_t *mask, int inv_freq_f16);
/* Writes and loads the golden tiny model; NULL (with a SKIP message) when the
 * golden data is absent. */
bee_model *golden_load_tiny(void);
/* cmocka group setup/teardown: golden_tiny is golden_load_tiny()'s model
 * (NULL when the golden data is absent) for the group's tests. */
extern bee_model *golden_tiny;
int golden_tiny_setup(void **state);
int golden_tiny_teardown(void **state);
/* A tokenizer over the builtin vocabulary (no golden data needed). */
bee_tokenizer *golden_builtin_tokenizer(void);
/* Loads golden/<example>/<name>.npy. */
void golden_npy(const char *example, const char *name, bee_npy *out);
json_t *golden_record(const char *example);
/* Max |a - golden| over n values; fails the test when counts differ. */
double golden_max_diff(const float *a, size_t n, const bee_npy *g);

#endif
