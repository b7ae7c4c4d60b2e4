/* libFuzzer: random bytes through normalisation, the automaton and the
 * streaming checker. Input: flags byte, chunk-size byte, then terms (one per
 * line) up to a NUL, then the text. The one-shot check and a stream fed in
 * chunks must agree exactly; normalisation offsets must stay in range.
 * Inputs starting with '{' are parsed as policy files instead. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safety/normalize.h"
#include "safety/safety.h"

static void check_norm(const char *text, size_t n, unsigned flags) {
    bee_norm_text t;
    if (bee_norm_text_init(&t, text, n, flags)) abort();
    for (size_t i = 0; i < t.len; i++)
        if (t.src_start[i] >= t.src_end[i] || t.src_end[i] > n || (i && t.src_start[i] < t.src_start[i - 1])) abort();
    bee_norm_text_free(&t);
}

static bee_safety_policy *make_policy(const char *terms, size_t n, unsigned flags) {
    static const bee_safety_action acts[] = {BEE_SAFETY_LOG, BEE_SAFETY_MASK, BEE_SAFETY_BLOCK};
    bee_safety_policy *p;
    if (bee_safety_policy_new(flags, &p)) abort();
    for (int c = 0; c < 3; c++) {
        char name[8] = {'c', (char)('0' + c), 0};
        if (bee_safety_policy_add_category(p, name, acts[c]) != c) abort();
    }
    size_t i = 0, k = 0;
    while (i < n && k < 64) {
        size_t e = i;
        while (e < n && terms[e] != '\n') e++;
        if (e > i) bee_safety_policy_add_term(p, (int)(k++ % 3), terms + i, e - i);
        i = e + 1;
    }
    if (bee_safety_policy_compile(p)) abort();
    return p;
}

/* Policy JSON: errors must be clean. Inputs with '/' are skipped so that no
 * lexicon path can name a real file (relative ones resolve under a folder
 * that does not exist). */
static void fuzz_policy_json(const char *json, size_t n) {
    if (memchr(json, '/', n)) return;
    bee_safety_policy *p;
    if (bee_safety_policy_parse(json, n, "fuzz.json", "no-such-dir-bee-fuzz", &p) == 0) {
        bee_safety_result r;
        if (bee_safety_check(p, json, n, &r)) abort();
        bee_safety_result_free(&r);
        bee_safety_policy_free(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 1 << 14) return 0;
    if (data[0] == '{') {
        fuzz_policy_json((const char *)data, size);
        return 0;
    }
    unsigned flags = data[0] & 3;
    size_t chunk = 1 + data[1] % 17;
    const char *rest = (const char *)data + 2;
    size_t n = size - 2;
    const char *nul = memchr(rest, 0, n);
    size_t tn = nul ? (size_t)(nul - rest) : 0;
    const char *text = nul ? nul + 1 : rest;
    size_t len = n - (size_t)(text - rest);
    check_norm(text, len, flags);
    bee_safety_policy *p = make_policy(rest, tn, flags);

    bee_safety_result r;
    if (bee_safety_check(p, text, len, &r)) abort();
    bee_safety_stream *s;
    bee_str out = {0};
    if (bee_safety_stream_init(&s, p)) abort();
    for (size_t i = 0; i < len; i += chunk)
        if (bee_safety_stream_push(s, text + i, len - i < chunk ? len - i : chunk, &out)) abort();
    if (bee_safety_stream_finish(s, &out)) abort();
    size_t nm;
    const bee_safety_match *m = bee_safety_stream_matches(s, &nm);
    if (bee_safety_stream_action(s) != r.action || nm != r.n_matches) abort();
    for (size_t i = 0; i < nm; i++)
        if (m[i].start != r.matches[i].start || m[i].end != r.matches[i].end || m[i].category != r.matches[i].category ||
            m[i].end > len || m[i].start >= m[i].end)
            abort();
    if (r.action != BEE_SAFETY_BLOCK && (out.n != r.len || (out.n && memcmp(out.s, r.text, out.n) != 0))) abort();
    bee_str_free(&out);
    bee_safety_stream_free(s);
    bee_safety_result_free(&r);
    bee_safety_policy_free(p);
    return 0;
}
