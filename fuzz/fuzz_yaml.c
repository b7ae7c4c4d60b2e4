/* libFuzzer: YAML model lists → JSON (bee eval --models x.yaml) must not
 * crash on any input, and a parsed value must serialise. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "eval/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    json_t *j = bee_yaml_load_string((const char *)data, size, "fuzz.yaml");
    if (j) {
        char *s = json_dumps(j, JSON_ENCODE_ANY);
        if (!s) abort();
        free(s);
        json_decref(j);
    }
    return 0;
}
