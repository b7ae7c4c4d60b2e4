#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "util/error.h"

int bee_gen_batch_init(bee_gen_batch *b, const bee_model *m, bee_gen_input *ins, size_t n_in) {
    memset(b, 0, sizeof *b);
    b->m = m;
    b->ins = ins;
    b->n_in = n_in;
    b->dt = calloc(n_in ? n_in : 1, sizeof *b->dt);
    if (!b->dt) return bee_fail("out of memory");
    for (size_t i = 0; i < n_in; i++) {
        if (bee_batch_ext_add(&b->bext, m->tok, &ins[i], &b->dt[i])) {
            bee_gen_batch_free(b);
            return -1;
        }
    }
    b->ext = (bee_ext){b->bext.base.v, b->bext.sub.v, b->bext.base.n};
    b->width = m->hp.n_vocab + b->ext.n;
    return 0;
}

void bee_gen_batch_free(bee_gen_batch *b) {
    for (size_t i = 0; b->dt && i < b->n_in; i++) bee_decode_table_free(&b->dt[i]);
    free(b->dt);
    bee_batch_ext_free(&b->bext);
    memset(b, 0, sizeof *b);
}

void bee_gen_batch_mask(const bee_gen_batch *b, size_t i, float *logits) {
    const bee_decode_table *dt = &b->dt[i];
    int32_t unk = bee_tokenizer_special(b->m->tok)->unk, nv = (int32_t)b->m->hp.n_vocab;
    if (bee_decode_table_find(dt, unk) < 0) logits[unk] = -10000.0f;
    for (size_t j = 0; j < b->ext.n; j++)
        if (bee_decode_table_find(dt, nv + (int32_t)j) < 0) logits[nv + j] = -10000.0f;
}

int bee_gen_prefill(const bee_gen_batch *b, size_t i, bee_seq *seq) {
    const bee_gen_input *in = &b->ins[i];
    size_t n = in->ids.n;
    int32_t nseg = in->enc.n_seg;
    if (bee_seq_init(seq, b->m, (uint32_t)n + 64, in->enc.seg_rel, (size_t)nseg * (size_t)nseg)) return -1;
    bee_token *toks = malloc((n ? n : 1) * sizeof *toks);
    if (!toks) return bee_fail("out of memory");
    for (size_t t = 0; t < n; t++)
        toks[t] = (bee_token){in->ids.v[t], in->subs.v[t], (int32_t)t, in->segs.v[t], 0, nseg, 0, 1};
    bee_seq *seqs[1] = {seq};
    const bee_token *tp[1] = {toks};
    int rc = bee_forward(b->m, seqs, tp, &n, 1, &b->ext, BEE_LOGITS_NONE, NULL, NULL);
    free(toks);
    return rc;
}

static int decode_answer(const bee_gen_batch *b, size_t i, const int32_t *ids, size_t n, char **out) {
    bee_str s = {0};
    if (bee_str_append(&s, "", 0)) return -1;
    for (size_t k = 0; k < n; k++) {
        /* an id the sentence cannot decode (masked, so practically unreachable) is dropped */
        if (bee_tokenizer_decode_one(b->m->tok, ids[k], &b->dt[i], &s) && ids[k] < (int32_t)b->m->hp.n_vocab) {
            bee_str_free(&s);
            return -1;
        }
    }
    *out = bee_str_take(&s);
    return 0;
}

json_t *bee_gen_finish(const bee_gen_batch *b, size_t i, const int32_t *words, const int32_t *answer_nums, size_t n) {
    const bee_gen_input *in = &b->ins[i];
    int32_t eos = bee_tokenizer_special(b->m->tok)->eos;
    char **answers = calloc(in->n_answers + 1, sizeof *answers);
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    json_t *out = NULL;
    int ok = answers && ids;
    for (size_t a = 1; ok && a <= in->n_answers; a++) {
        size_t k = 0, seen = 0;
        for (size_t t = 0; t < n; t++)
            if (answer_nums[t] == (int32_t)a) ids[k++] = words[t], seen = 1;
        if (!seen) continue;
        if (k && ids[k - 1] == eos) k--;
        ok = decode_answer(b, i, ids, k, &answers[a - 1]) == 0;
    }
    if (ok) out = bee_gen_fill_answers(in, answers);
    if (!out && ok) bee_fail("out of memory");
    for (size_t a = 0; answers && a < in->n_answers; a++) free(answers[a]);
    free(answers);
    free(ids);
    return out;
}

void bee_repetition_penalty(float *logits, const int32_t *hist, size_t n, float penalty) {
    if (penalty == 1.0f) return;
    for (size_t t = 0; t < n; t++) {
        int dup = 0;
        for (size_t u = 0; u < t && !dup; u++) dup = hist[u] == hist[t];
        if (dup) continue;
        float *x = &logits[hist[t]];
        *x = *x < 0 ? *x * penalty : *x / penalty;
    }
}

void bee_log_softmax(float *x, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += expf(x[i] - mx);
    float lse = logf(sum);
    for (size_t i = 0; i < n; i++) x[i] = (x[i] - mx) - lse;
}
