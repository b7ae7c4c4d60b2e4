/* libFuzzer: JSON bytes → CPM-Bee dict conversion (segments, ids, slots,
 * batch ext table, answer filling) must not crash on any input. */
#include <jansson.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "tokenizer/dict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    bee_tokenizer *t = fuzz_tokenizer();
    json_error_t err;
    json_t *d = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (!d) return 0;
    bee_gen_input in;
    if (bee_gen_input_init(t, d, &in) == 0) {
        bee_batch_ext b = {0};
        bee_decode_table dt = {0};
        bee_batch_ext_add(&b, t, &in, &dt);
        char **answers = calloc(in.n_answers + 1, sizeof *answers);
        for (size_t i = 0; i < in.n_answers; i++) answers[i] = (i % 2) ? "x" : NULL;
        json_t *out = bee_gen_fill_answers(&in, answers);
        if (!out) abort();
        json_decref(out);
        free(answers);
        bee_decode_table_free(&dt);
        bee_batch_ext_free(&b);
        bee_gen_input_free(&in);
    }
    json_decref(d);
    return 0;
}
