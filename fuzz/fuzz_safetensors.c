/* libFuzzer harness: arbitrary bytes as a safetensors file. The bytes are
 * copied into an exact-size buffer so that ASan catches reads past the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    bee_ckpt *c = NULL;
    if (bee_ckpt_open_safetensors_buffer(copy, size, "fuzz.safetensors", &c) == 0) {
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < bee_ckpt_count(c); i++) {
            const bee_ckpt_tensor *t = bee_ckpt_get(c, i);
            if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
            if (bee_ckpt_find(c, t->name) == NULL) abort();
        }
        (void)sink;
        bee_ckpt_free(c);
    }
    free(copy);
    return 0;
}
