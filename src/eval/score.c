/* Scoring through a local model: answer log-likelihoods from one forward pass
 * over the training-form dict, and greedy generation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "generate/generate.h"
#include "tokenizer/dict.h"
#include "util/error.h"

static json_t *escaped(const char *s) {
    bee_str e = {0};
    size_t n = strlen(s), bad = bee_utf8_check(s, n);
    if (bad) return bee_fail("text is not valid UTF-8 (byte %zu)", bad - 1), NULL;
    if (bee_text_escape(s, n, &e)) return NULL;
    json_t *j = json_stringn(e.s ? e.s : "", e.n);
    bee_str_free(&e);
    return j;
}

static json_t *make_dict(const char *prompt, const char *answer) {
    json_t *d = json_object(), *p = escaped(prompt), *a = escaped(answer);
    if (!d || !p || !a) {
        json_decref(d), json_decref(p), json_decref(a);
        return NULL;
    }
    json_object_set_new(d, "input", p);
    json_object_set_new(d, "<ans>", a);
    return d;
}

/* Output id of each answer token: its vocab id, or n_vocab + its index in the
 * ext table for strings outside the vocabulary. */
static int fill_targets(const bee_model *m, const bee_dict_enc *enc, bee_eval_enc *e) {
    size_t n = e->n - e->n_prefix;
    e->target = malloc((n ? n : 1) * sizeof *e->target);
    if (!e->target) return bee_fail("out of memory");
    for (size_t i = 0; i < n; i++) {
        int32_t id = enc->ids.v[e->n_prefix + i], sub = enc->subs.v[e->n_prefix + i];
        size_t j = 0;
        if (sub == 0) {
            e->target[i] = id;
            continue;
        }
        while (j < e->ext_ids.n && !(e->ext_ids.v[j] == id && e->ext_subs.v[j] == sub)) j++;
        if (j == e->ext_ids.n && (bee_ivec_push(&e->ext_ids, id) || bee_ivec_push(&e->ext_subs, sub))) return -1;
        e->target[i] = (int32_t)m->hp.n_vocab + (int32_t)j;
    }
    return 0;
}

int bee_eval_enc_init(const bee_model *m, const char *prompt, const char *answer, bee_eval_enc *e) {
    memset(e, 0, sizeof *e);
    json_t *d = make_dict(prompt, answer);
    if (!d) return -1;
    bee_dict_enc enc = {0};
    int rc = bee_dict_encode(m->tok, d, &enc);
    json_decref(d);
    e->n = enc.ids.n;
    if (rc == 0 && !(e->tokens = malloc((e->n ? e->n : 1) * sizeof *e->tokens))) rc = bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && i < e->n; i++)
        e->tokens[i] = (bee_token){enc.ids.v[i], enc.subs.v[i], (int32_t)i, enc.segs.v[i], 0, enc.n_seg, 0, enc.ctx.v[i]};
    while (rc == 0 && e->n_prefix < e->n && enc.ctx.v[e->n_prefix]) e->n_prefix++;
    if (rc == 0 && e->n - e->n_prefix < 1) rc = bee_fail("the answer segment is empty");
    if (rc == 0) rc = fill_targets(m, &enc, e);
    if (rc == 0) {
        e->n_seg_rel = (size_t)enc.n_seg * (size_t)enc.n_seg;
        e->seg_rel = malloc((e->n_seg_rel ? e->n_seg_rel : 1) * sizeof *e->seg_rel);
        if (!e->seg_rel) rc = bee_fail("out of memory");
        else memcpy(e->seg_rel, enc.seg_rel, e->n_seg_rel * sizeof *e->seg_rel);
    }
    bee_dict_enc_free(&enc);
    if (rc) bee_eval_enc_free(e);
    return rc;
}

void bee_eval_enc_free(bee_eval_enc *e) {
    free(e->tokens);
    free(e->target);
    free(e->seg_rel);
    bee_ivec_free(&e->ext_ids);
    bee_ivec_free(&e->ext_subs);
    memset(e, 0, sizeof *e);
}

static double log_softmax_at(const float *x, size_t w, int32_t target) {
    float mx = x[0];
    for (size_t v = 1; v < w; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0;
    for (size_t v = 0; v < w; v++) sum += exp((double)x[v] - mx);
    return (double)x[target] - mx - log(sum);
}

int bee_eval_loglik(const bee_model *m, const char *prompt, const char *answer, double *ll, size_t *n_tok) {
    bee_eval_enc e;
    *ll = 0;
    *n_tok = 0;
    if (bee_eval_enc_init(m, prompt, answer, &e)) return -1;
    size_t w = m->hp.n_vocab + e.ext_ids.n;
    float *logits = malloc(e.n * w * sizeof *logits);
    bee_seq s;
    int rc = logits ? bee_seq_init(&s, m, (uint32_t)e.n, e.seg_rel, e.n_seg_rel) : bee_fail("out of memory");
    if (rc == 0) {
        bee_seq *sp[1] = {&s};
        const bee_token *tp[1] = {e.tokens};
        bee_ext ext = {e.ext_ids.v, e.ext_subs.v, e.ext_ids.n};
        rc = bee_forward(m, sp, tp, &e.n, 1, &ext, BEE_LOGITS_ALL, logits, NULL);
        /* answer token i (after <s>) is predicted by the logits of token i - 1 */
        for (size_t i = 1; rc == 0 && i < e.n - e.n_prefix; i++) {
            *ll += log_softmax_at(logits + (e.n_prefix + i - 1) * w, w, e.target[i]);
            (*n_tok)++;
        }
        bee_seq_free(&s);
    }
    free(logits);
    bee_eval_enc_free(&e);
    return rc;
}

int bee_eval_generate(const bee_model *m, const char *prompt, int max_tokens, char **out) {
    *out = NULL;
    json_t *d = make_dict(prompt, ""), *res = NULL;
    if (!d) return -1;
    bee_gen_input in;
    int rc = bee_gen_input_init(m->tok, d, &in);
    if (rc == 0) {
        bee_sample_params p;
        bee_sample_params_default(&p);
        p.temperature = 0;
        p.max_tokens = max_tokens;
        rc = bee_sample_generate(m, &in, &p, &res, NULL);
        bee_gen_input_free(&in);
    }
    if (rc == 0) {
        /* answers come back in the tokenizer's escaped form: "<<" is a literal "<" */
        const char *a = json_string_value(json_object_get(res, "<ans>"));
        *out = strdup(a ? a : "");
        if (!*out) rc = bee_fail("out of memory");
        char *w = *out;
        for (const char *r = *out; r && *r; r++) {
            *w++ = *r;
            if (r[0] == '<' && r[1] == '<') r++;
        }
        if (w) *w = 0;
    }
    json_decref(res);
    json_decref(d);
    return rc;
}
