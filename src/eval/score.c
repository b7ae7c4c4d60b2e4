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

/* {"input": prompt, "<ans>": answer}, or {"<ans>": answer} when prompt is
 * NULL (the form `bee perplexity` scores). */
static json_t *make_dict(const char *prompt, const char *answer) {
    json_t *d = json_object(), *p = prompt ? escaped(prompt) : json_null(), *a = escaped(answer);
    if (!d || !p || !a) {
        json_decref(d), json_decref(p), json_decref(a);
        return NULL;
    }
    if (prompt) json_object_set_new(d, "input", p);
    else json_decref(p);
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
    for (size_t i = 0; rc == 0 && i < e->ext_ids.n; i++) { /* the text of each ext output id */
        const char *str = "";
        size_t len = 0;
        for (size_t k = 0; k < enc.n_names; k++)
            if (enc.names[k].base_id == e->ext_ids.v[i] && (size_t)e->ext_subs.v[i] < enc.names[k].ext.n) {
                int32_t x = enc.names[k].ext.v[e->ext_subs.v[i]];
                str = enc.ext.str[x], len = enc.ext.len[x];
            }
        if (bee_decode_table_set(&e->ext_text, (int32_t)m->hp.n_vocab + (int32_t)i, str, len)) rc = bee_fail("out of memory");
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
    bee_decode_table_free(&e->ext_text);
    memset(e, 0, sizeof *e);
}

/* Text of output id `id` ("<<" unescaped). */
static int token_text(const bee_model *m, const bee_eval_enc *e, int32_t id, char **out) {
    bee_str raw = {0}, t = {0};
    int rc = bee_tokenizer_decode_one(m->tok, id, &e->ext_text, &raw);
    for (size_t i = 0; rc == 0 && i < raw.n; i++) {
        rc = bee_str_append(&t, raw.s + i, 1);
        if (raw.s[i] == '<' && i + 1 < raw.n && raw.s[i + 1] == '<') i++;
    }
    if (rc == 0 && bee_str_append(&t, "", 0)) rc = bee_fail("out of memory");
    bee_str_free(&raw);
    if (rc) {
        bee_str_free(&t);
        return -1;
    }
    *out = bee_str_take(&t);
    return 0;
}

/* Log-softmax of row x at target and the row's top k (ids best first). */
static double row_scores(const float *x, size_t w, int32_t target, int k, int32_t *top, double *top_lp) {
    float mx = x[0];
    for (size_t v = 1; v < w; v++) mx = x[v] > mx ? x[v] : mx;
    double sum = 0;
    for (size_t v = 0; v < w; v++) sum += exp((double)x[v] - mx);
    double lse = mx + log(sum);
    for (int r = 0; r < k; r++) {
        top[r] = -1;
        for (size_t v = 0; v < w; v++) {
            int taken = 0;
            for (int q = 0; q < r; q++) taken |= top[q] == (int32_t)v;
            if (!taken && (top[r] < 0 || x[v] > x[top[r]])) top[r] = (int32_t)v;
        }
        top_lp[r] = top[r] >= 0 ? (double)x[top[r]] - lse : -INFINITY;
    }
    return (double)x[target] - lse;
}

static bee_token enc_token(const bee_eval_enc *e, size_t i) { return e->tokens[i]; }

/* Scores answer tokens [from, end) of the window [begin, end) of answer
 * tokens, with the whole context in front (tokens keep their positions,
 * as in bee perplexity). */
static int score_window(const bee_model *m, const bee_eval_enc *e, size_t begin, size_t end, size_t from, int k,
                        float *logits, bee_eval_lps *o) {
    size_t n = e->n_prefix + (end - begin), w = m->hp.n_vocab + e->ext_ids.n;
    bee_token *t = malloc(n * sizeof *t);
    if (!t) return bee_fail("out of memory");
    for (size_t i = 0; i < e->n_prefix; i++) t[i] = enc_token(e, i);
    for (size_t i = begin; i < end; i++) t[e->n_prefix + i - begin] = enc_token(e, e->n_prefix + i);
    bee_seq s;
    bee_ext ext = {e->ext_ids.v, e->ext_subs.v, e->ext_ids.n};
    int rc = bee_seq_init(&s, m, (uint32_t)n, e->seg_rel, e->n_seg_rel);
    if (rc == 0) {
        bee_seq *sp[1] = {&s};
        const bee_token *tp[1] = {t};
        rc = bee_forward(m, sp, tp, &n, 1, &ext, BEE_LOGITS_ALL, logits, NULL);
        /* answer token i is predicted by the logits of answer token i - 1 */
        for (size_t i = from; rc == 0 && i < end; i++)
            o->lp[i] = row_scores(logits + (e->n_prefix + i - 1 - begin) * w, w, e->target[i], k, o->top_id + i * (size_t)k,
                                  o->top_lp + i * (size_t)k);
        bee_seq_free(&s);
    }
    free(t);
    return rc;
}

int bee_eval_token_logprobs(const bee_model *m, const char *context, const char *answer, size_t window, int top_k,
                            bee_eval_lps *o) {
    memset(o, 0, sizeof *o);
    if (top_k < 0 || top_k > 64) return bee_fail("top_k must be in [0, 64]");
    if (window && window < 8) return bee_fail("window must be at least 8 tokens");
    bee_eval_enc e;
    if (bee_eval_enc_init(m, context, answer, &e)) return -1;
    size_t n = e.n - e.n_prefix, w = m->hp.n_vocab + e.ext_ids.n, win = window && window < n ? window : n;
    o->n = n;
    o->n_prefix = e.n_prefix;
    o->top_k = top_k;
    o->lp = calloc(n, sizeof *o->lp);
    o->text = calloc(n, sizeof *o->text);
    o->offset = calloc(n, sizeof *o->offset);
    o->top_id = calloc(n * (size_t)top_k + 1, sizeof *o->top_id);
    o->top_lp = calloc(n * (size_t)top_k + 1, sizeof *o->top_lp);
    o->top_text = calloc(n * (size_t)top_k + 1, sizeof *o->top_text);
    float *logits = malloc((e.n_prefix + win) * w * sizeof *logits);
    int rc = o->lp && o->text && o->offset && o->top_id && o->top_lp && o->top_text && logits ? 0 : bee_fail("out of memory");
    if (rc == 0) o->lp[0] = NAN; /* <s> opens the answer: context, not scored */
    /* rolling windows as in bee perplexity: advance by win/2, score only new tokens */
    for (size_t begin = 0, scored = 1; rc == 0 && scored < n; begin += win / 2) {
        size_t end = begin + win < n ? begin + win : n;
        rc = score_window(m, &e, begin, end, scored, top_k, logits, o);
        scored = end;
    }
    size_t off = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i == 0) rc = (o->text[0] = strdup("")) ? 0 : bee_fail("out of memory");
        else rc = token_text(m, &e, e.target[i], &o->text[i]);
        o->offset[i] = off;
        if (rc == 0) off += strlen(o->text[i]);
        for (int r = 0; rc == 0 && i > 0 && r < top_k; r++)
            if (o->top_id[i * (size_t)top_k + (size_t)r] >= 0)
                rc = token_text(m, &e, o->top_id[i * (size_t)top_k + (size_t)r], &o->top_text[i * (size_t)top_k + (size_t)r]);
    }
    free(logits);
    bee_eval_enc_free(&e);
    if (rc) bee_eval_lps_free(o);
    return rc;
}

void bee_eval_lps_free(bee_eval_lps *o) {
    for (size_t i = 0; o->text && i < o->n; i++) free(o->text[i]);
    for (size_t i = 0; o->top_text && i < o->n * (size_t)o->top_k; i++) free(o->top_text[i]);
    free(o->lp), free(o->text), free(o->offset), free(o->top_id), free(o->top_lp), free(o->top_text);
    memset(o, 0, sizeof *o);
}

int bee_eval_loglik(const bee_model *m, const char *prompt, const char *answer, double *ll, size_t *n_tok) {
    bee_eval_lps o;
    *ll = 0;
    *n_tok = 0;
    if (bee_eval_token_logprobs(m, prompt, answer, 0, 0, &o)) return -1;
    for (size_t i = 1; i < o.n; i++) *ll += o.lp[i];
    *n_tok = o.n - 1;
    bee_eval_lps_free(&o);
    return 0;
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
