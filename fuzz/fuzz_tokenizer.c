/* libFuzzer: tokenizer encode → decode must not crash; valid input must
 * round-trip exactly (decode re-escapes '<', so compare escaped text). */
#include <stdint.h>
#include <stdio.h>

#include "fuzz_common.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bee_tokenizer *t = fuzz_tokenizer();
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    if (bee_tokenizer_encode(t, (const char *)data, size, &ext, &ids) == 0) {
        bee_decode_table dt = {0};
        for (size_t k = 0; k < ext.n; k++)
            bee_decode_table_set(&dt, (int32_t)(bee_tokenizer_n_vocab(t) + k), ext.str[k], ext.len[k]);
        bee_str out = {0};
        if (bee_tokenizer_decode(t, ids.v, ids.n, &dt, &out)) abort();
        /* decoding then encoding again gives the same ids */
        bee_ext_table ext2 = {0};
        bee_ivec ids2 = {0};
        if (bee_tokenizer_encode(t, out.s, out.n, &ext2, &ids2)) abort();
        if (ids2.n != ids.n || (ids.n && memcmp(ids.v, ids2.v, ids.n * sizeof *ids.v))) abort();
        bee_ivec_free(&ids2);
        bee_ext_table_free(&ext2);
        bee_str_free(&out);
        bee_decode_table_free(&dt);
    }
    bee_ivec_free(&ids);
    bee_ext_table_free(&ext);
    return 0;
}
