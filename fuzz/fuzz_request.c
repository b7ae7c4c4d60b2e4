/* libFuzzer: request bodies of every bee serve endpoint → parameters, the
 * CPM-Bee dict built from them (tokenized with the fuzz vocabulary), error
 * replies, and the streaming "<<" unescaper must not crash on any input. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "serve/request.h"
#include "tokenizer/dict.h"

static void run(bee_api_kind kind, const char *s, size_t n, bee_tokenizer *t) {
    bee_api_req r;
    bee_api_error e;
    if (bee_api_parse(kind, s, n, &r, &e)) {
        char *j = bee_api_error_json(&e);
        if (!j) abort();
        free(j);
        return;
    }
    bee_gen_input in;
    if (r.data && bee_gen_input_init(t, r.data, &in) == 0) bee_gen_input_free(&in);
    bee_api_req_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 1 << 16) return 0;
    bee_tokenizer *t = fuzz_tokenizer();
    const char *s = (const char *)data;
    for (int k = BEE_API_COMPLETION; k <= BEE_API_ASK; k++) run((bee_api_kind)k, s, size, t);
    bee_unescape u = {0};
    bee_str out = {0};
    size_t half = size / 2;
    bee_unescape_feed(&u, s, half, 0, &out);
    bee_unescape_feed(&u, s + half, size - half, 1, &out);
    bee_str_free(&out);
    return 0;
}
