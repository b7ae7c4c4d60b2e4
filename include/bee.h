/* bee: CPM-Bee inference in C — public API.
 *
 * Handles are opaque. Every function that can fail returns 0 (or a non-NULL
 * pointer) on success and -1 (or NULL) on failure, with a message available
 * from bee_last_error() on the same thread. Strings are UTF-8. */
#ifndef BEE_H
#define BEE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bee_model bee_model;

const char *bee_version(void);
const char *bee_last_error(void);

/* Loads a GGUF model (architecture "cpmbee"); weights are memory-mapped. */
int bee_model_load(const char *path, bee_model **out);
void bee_model_free(bee_model *m);
uint64_t bee_model_n_params(const bee_model *m);

/* Tokenizes text; *json_out receives {"ids":[...],"ext_table":{...}} (free()). */
int bee_tokenize_json(const bee_model *m, const char *text, char **json_out);

typedef enum { BEE_DECODE_BEAM = 0, BEE_DECODE_SAMPLE = 1 } bee_decode_mode;

typedef struct {
    bee_decode_mode mode;
    int beam_size;            /* beam: default 3 */
    int max_length;           /* beam: default 100; sample: generated-token limit */
    float repetition_penalty; /* default 1.0 */
    float temperature;        /* sample: 0 = greedy */
    float top_p;              /* sample: default 1 */
    int top_k;                /* sample: 0 = off */
    float min_p;              /* sample: 0 = off */
    uint64_t seed;
} bee_generate_params;

void bee_generate_params_default(bee_generate_params *p);

/* Fills the <ans> slots of a CPM-Bee dict given as JSON text; *json_out
 * receives the filled dict (free()). */
int bee_generate_json(const bee_model *m, const char *json_in, const bee_generate_params *p, char **json_out);

#ifdef __cplusplus
}
#endif

#endif
