#include "model/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/dict.h"
#include "util/error.h"

/* The encoded {"<ans>": TEXT}: context prefix, answer tokens and their targets. */
typedef struct {
    bee_dict_enc enc;
    size_t n_prefix;   /* context tokens before the answer segment */
    int32_t *target;   /* (answer tokens) output id of each answer token */
    bee_ivec ext_ids, ext_subs;
} ppl_input;

static int build_targets(const bee_model *m, ppl_input *p) {
    int32_t nv = (int32_t)m->hp.n_vocab;
    size_t n = p->enc.ids.n - p->n_prefix;
    p->target = malloc((n ? n : 1) * sizeof *p->target);
    if (!p->target) return bee_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        int32_t id = p->enc.ids.v[p->n_prefix + i], sub = p->enc.subs.v[p->n_prefix + i];
        if (sub == 0) {
            p->target[i] = id;
            continue;
        }
        size_t j = 0;
        while (j < p->ext_ids.n && !(p->ext_ids.v[j] == id && p->ext_subs.v[j] == sub)) j++;
        if (j == p->ext_ids.n && (bee_ivec_push(&p->ext_ids, id) || bee_ivec_push(&p->ext_subs, sub))) return -1;
        p->target[i] = nv + (int32_t)j;
    }
    return 0;
}

static int ppl_input_init(const bee_model *m, const char *text, size_t len, ppl_input *p) {
    memset(p, 0, sizeof *p);
    size_t bad = bee_utf8_check(text, len);
    if (bad) return bee_fail("text is not valid UTF-8 (byte %zu)", bad - 1);
    bee_str esc = {0};
    if (bee_text_escape(text, len, &esc)) return -1;
    json_t *d = json_object();
    int rc = d && json_object_set_new(d, "<ans>", json_stringn(esc.s, esc.n)) == 0 ? 0 : bee_fail("out of memory");
    bee_str_free(&esc);
    if (rc == 0) rc = bee_dict_encode(m->tok, d, &p->enc);
    json_decref(d);
    if (rc) return -1;
    while (p->n_prefix < p->enc.ctx.n && p->enc.ctx.v[p->n_prefix]) p->n_prefix++;
    return build_targets(m, p);
}

static void ppl_input_free(ppl_input *p) {
    bee_dict_enc_free(&p->enc);
    free(p->target);
    bee_ivec_free(&p->ext_ids);
    bee_ivec_free(&p->ext_subs);
}

static bee_token token_at(const ppl_input *p, size_t i) {
    const bee_dict_enc *e = &p->enc;
    return (bee_token){e->ids.v[i], e->subs.v[i], (int32_t)i, e->segs.v[i], 0, e->n_seg, 0, e->ctx.v[i]};
}

/* Scores answer tokens [score_from, end) of a window [begin, end) of answer tokens. */
static int score_window(const bee_model *m, const ppl_input *p, size_t begin, size_t end, size_t score_from,
                        float *logits, double *nll) {
    size_t n = p->n_prefix + (end - begin), W = m->hp.n_vocab + p->ext_ids.n;
    bee_token *t = malloc(n * sizeof *t);
    if (!t) return bee_fail("out of memory");
    for (size_t i = 0; i < p->n_prefix; i++) t[i] = token_at(p, i);
    for (size_t i = begin; i < end; i++) t[p->n_prefix + i - begin] = token_at(p, p->n_prefix + i);
    bee_seq s;
    bee_ext ext = {p->ext_ids.v, p->ext_subs.v, p->ext_ids.n};
    int rc = bee_seq_init(&s, m, (uint32_t)n, p->enc.seg_rel, (size_t)p->enc.n_seg * p->enc.n_seg);
    bee_seq *sp[1] = {&s};
    const bee_token *tp[1] = {t};
    if (rc == 0) rc = bee_forward(m, sp, tp, &n, 1, &ext, BEE_LOGITS_ALL, logits, NULL);
    /* the logits at answer token i predict answer token i + 1 */
    for (size_t i = score_from; rc == 0 && i < end; i++) {
        const float *x = logits + (p->n_prefix + (i - 1 - begin)) * W;
        float mx = x[0];
        for (size_t v = 1; v < W; v++) mx = x[v] > mx ? x[v] : mx;
        double sum = 0;
        for (size_t v = 0; v < W; v++) sum += exp((double)x[v] - mx);
        *nll += mx + log(sum) - x[p->target[i]];
    }
    bee_seq_free(&s);
    free(t);
    return rc;
}

int bee_perplexity(const bee_model *m, const char *text, size_t len, size_t ctx, bee_ppl_result *out,
                   bee_ppl_progress progress, void *user) {
    memset(out, 0, sizeof *out);
    if (ctx < 8) return bee_fail("context must be at least 8 tokens");
    ppl_input p;
    if (ppl_input_init(m, text, len, &p)) {
        ppl_input_free(&p);
        return -1;
    }
    size_t n_ans = p.enc.ids.n - p.n_prefix; /* <s> + text tokens */
    if (n_ans < 2) {
        ppl_input_free(&p);
        return bee_fail("text is empty: nothing to score");
    }
    size_t W = m->hp.n_vocab + p.ext_ids.n;
    float *logits = malloc((p.n_prefix + ctx) * W * sizeof *logits);
    int rc = logits ? 0 : bee_fail("out of memory");
    size_t stride = ctx / 2, begin = 0, scored_to = 1;
    while (rc == 0 && scored_to < n_ans) {
        size_t end = begin + ctx < n_ans ? begin + ctx : n_ans;
        rc = score_window(m, &p, begin, end, scored_to, logits, &out->nll);
        out->n_tokens += end - scored_to;
        scored_to = end;
        begin += stride;
        if (progress) progress(user, scored_to - 1, n_ans - 1);
    }
    out->ppl = out->n_tokens ? exp(out->nll / (double)out->n_tokens) : 0;
    free(logits);
    ppl_input_free(&p);
    return rc;
}
