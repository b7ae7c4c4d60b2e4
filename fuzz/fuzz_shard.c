/* libFuzzer: the token-shard reader must reject or accept any bytes without
 * crashing, and an accepted shard must be internally consistent. The header's
 * vocabulary fields are patched to the fuzz tokenizer's, so the fuzzer spends
 * its time on the instances rather than on the fingerprint check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "train/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bee_tokenizer *t = fuzz_tokenizer();
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= BEE_SHARD_HEADER) {
        uint32_t nv = bee_tokenizer_n_vocab(t);
        uint64_t fp = bee_vocab_fingerprint(t);
        for (int i = 0; i < 4; i++) buf[12 + i] = (uint8_t)(nv >> (8 * i));
        for (int i = 0; i < 8; i++) buf[16 + i] = (uint8_t)(fp >> (8 * i));
    }
    bee_train_data d = {0};
    if (bee_shard_parse(buf, size, "fuzz", t, 64, &d) == 0) {
        size_t tokens = 0;
        for (size_t i = 0; i < d.n; i++) {
            const bee_train_inst *x = &d.v[i];
            if (x->n < 2 || x->n > 64 || x->n_seg < 1) abort();
            for (uint32_t k = 0; k < x->n; k++)
                if (x->ids[k] < 0 || (uint32_t)x->ids[k] >= bee_tokenizer_n_vocab(t) || x->segs[k] >= (int32_t)x->n_seg || x->ctx[k] > 1)
                    abort();
            tokens += x->n;
        }
        if (tokens != d.n_tokens) abort();
    }
    bee_train_data_free(&d);
    free(buf);
    return 0;
}
