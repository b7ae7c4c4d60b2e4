/* libFuzzer: `bee digest` input (JSON, arrays, JSONL) → answers, the
 * sentence splitter and the extractive digest must not crash on any input,
 * and every citation must be an index of the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apps/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    size_t *sp = NULL;
    long n = bee_digest_split(s, &sp);
    for (long i = 0; i < n; i++)
        if (sp[2 * i] >= sp[2 * i + 1] || sp[2 * i + 1] > size) abort();
    free(sp);
    bee_digest_input in;
    if (bee_digest_parse(s, size, "fuzz", &in) == 0) {
        bee_digest_opts o;
        bee_digest_opts_default(&o);
        o.extractive = 1;
        bee_digest_result r;
        if (bee_digest_run(&in, &o, &r) == 0) {
            for (size_t i = 0; i < r.n; i++)
                for (size_t k = 0; k < r.points[i].n_cites; k++)
                    if (r.points[i].cites[k] >= in.n) abort();
            json_t *j = bee_digest_result_json(&in, &r);
            if (!j) abort();
            json_decref(j);
            bee_digest_result_free(&r);
        }
        bee_digest_input_free(&in);
    }
    free(s);
    return 0;
}
