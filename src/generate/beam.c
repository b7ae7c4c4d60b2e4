/* Upstream CPM-Bee beam search (SPEC §8), step for step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "util/error.h"

void bee_beam_params_default(bee_beam_params *p) {
    p->beam_size = 3;
    p->max_length = 100;
    p->repetition_penalty = 1.0f;
    p->repetition_window = 0;
}

/* ================================================================ state */

typedef struct {
    int32_t *words, *nums; /* answer list: (token, answer number) pairs */
    size_t n, cap;
} answer_list;

typedef struct {
    size_t slot;        /* index into the sentence's slots */
    answer_list ans;
    int32_t tok_id, tok_sub, seg, pos; /* token fed at the next step */
    int32_t *hist;      /* base ids fed so far (the repetition window) */
    size_t n_hist, cap_hist;
} beam_state;

typedef struct {
    float score;
    answer_list ans;
} hypothesis;

typedef struct {
    hypothesis *v; /* insertion order, like upstream's list */
    size_t n;
    float worst;
    int done;
} hyp_list;

static int list_push(answer_list *a, int32_t w, int32_t n) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        int32_t *nw = realloc(a->words, cap * sizeof *nw);
        if (nw) a->words = nw;
        int32_t *nn = realloc(a->nums, cap * sizeof *nn);
        if (nn) a->nums = nn;
        if (!nw || !nn) return bee_fail("out of memory");
        a->cap = cap;
    }
    a->words[a->n] = w;
    a->nums[a->n++] = n;
    return 0;
}

static int list_copy(answer_list *dst, const answer_list *src) {
    dst->n = 0;
    for (size_t i = 0; i < src->n; i++)
        if (list_push(dst, src->words[i], src->nums[i])) return -1;
    return 0;
}

static void list_free(answer_list *a) {
    free(a->words);
    free(a->nums);
    memset(a, 0, sizeof *a);
}

static int hist_push(beam_state *s, int32_t id) {
    if (s->n_hist == s->cap_hist) {
        size_t cap = s->cap_hist ? s->cap_hist * 2 : 32;
        int32_t *h = realloc(s->hist, cap * sizeof *h);
        if (!h) return bee_fail("out of memory");
        s->hist = h;
        s->cap_hist = cap;
    }
    s->hist[s->n_hist++] = id;
    return 0;
}

static int state_copy(beam_state *dst, const beam_state *src) {
    answer_list ans = dst->ans;
    int32_t *hist = dst->hist;
    size_t cap = dst->cap_hist;
    *dst = *src;
    dst->ans = ans;
    dst->hist = hist;
    dst->cap_hist = cap;
    dst->n_hist = 0;
    if (list_copy(&dst->ans, &src->ans)) return -1;
    for (size_t i = 0; i < src->n_hist; i++)
        if (hist_push(dst, src->hist[i])) return -1;
    return 0;
}

/* SPEC §8.4: keep the best beam_size hypotheses by length-normalised score. */
static int hyp_add(hyp_list *h, int beam, const answer_list *ans, float sum_logprob) {
    float score = sum_logprob / (float)ans->n;
    if ((int)h->n >= beam && !(score > h->worst)) return 0;
    hypothesis x = {score, {0}};
    if (list_copy(&x.ans, ans)) return -1;
    hypothesis *nv = realloc(h->v, (h->n + 1) * sizeof *nv);
    if (!nv) {
        list_free(&x.ans);
        return bee_fail("out of memory");
    }
    h->v = nv;
    h->v[h->n++] = x;
    if ((int)h->n > beam) {
        size_t worst = 0;
        for (size_t i = 1; i < h->n; i++)
            if (h->v[i].score < h->v[worst].score) worst = i;
        list_free(&h->v[worst].ans);
        memmove(&h->v[worst], &h->v[worst + 1], (h->n - worst - 1) * sizeof *h->v);
        h->n--;
        h->worst = h->v[0].score;
        for (size_t i = 1; i < h->n; i++)
            if (h->v[i].score < h->worst) h->worst = h->v[i].score;
    } else if (score < h->worst) {
        h->worst = score;
    }
    return 0;
}

/* ================================================================ top-k */

typedef struct {
    float score;
    size_t idx;
} cand;

/* Top k of scores[0..n) by value, ties broken by lower index. */
static void top_k(const float *scores, size_t n, cand *out, int k) {
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        float s = scores[i];
        if (have == k && !(s > out[k - 1].score)) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && s > out[j - 1].score) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (cand){s, i};
    }
}

/* ================================================================ search */

typedef struct {
    const bee_gen_batch *b;
    const bee_beam_params *p;
    int beam;
    size_t rows;
    bee_seq *seqs, *spare; // (rows) each: spare receives reordered caches
    beam_state *st, *nst;  // (rows) each
    float *beam_score, *new_score; // (rows)
    int *src_row;          // (rows)
    hyp_list *hyps;        // (n_in)
    float *logits;         // (rows, width)
} search;

static int feed_step(search *s) {
    size_t n_live = 0;
    bee_seq **sp = malloc(s->rows * sizeof *sp);
    bee_token *tok = malloc(s->rows * sizeof *tok);
    const bee_token **tp = malloc(s->rows * sizeof *tp);
    size_t *nt = malloc(s->rows * sizeof *nt), *row_of = malloc(s->rows * sizeof *row_of);
    int rc = sp && tok && tp && nt && row_of ? 0 : bee_fail("out of memory");
    for (size_t r = 0; rc == 0 && r < s->rows; r++) {
        size_t sent = r / (size_t)s->beam;
        beam_state *b = &s->st[r];
        if (hist_push(b, b->tok_id)) rc = -1;
        if (s->hyps[sent].done) continue;
        int32_t nseg = s->b->ins[sent].enc.n_seg;
        tok[n_live] = (bee_token){b->tok_id, b->tok_sub, b->pos, b->seg, 0, nseg, 0, 1};
        tp[n_live] = &tok[n_live];
        sp[n_live] = &s->seqs[r];
        nt[n_live] = 1;
        row_of[n_live++] = r;
    }
    float *out = NULL;
    if (rc == 0 && n_live) out = malloc(n_live * s->b->width * sizeof *out);
    if (rc == 0 && n_live && !out) rc = bee_fail("out of memory");
    if (rc == 0 && n_live) rc = bee_forward(s->b->m, sp, tp, nt, n_live, &s->b->ext, BEE_LOGITS_LAST, out, NULL);
    for (size_t k = 0; rc == 0 && k < n_live; k++)
        memcpy(s->logits + row_of[k] * s->b->width, out + k * s->b->width, s->b->width * sizeof *out);
    free(out), free(sp), free(tok), free(tp), free(nt), free(row_of);
    return rc;
}

static void score_rows(search *s, size_t sent) {
    size_t W = s->b->width;
    for (int j = 0; j < s->beam; j++) {
        size_t r = sent * (size_t)s->beam + (size_t)j;
        float *x = s->logits + r * W;
        beam_state *b = &s->st[r];
        bee_gen_batch_mask(s->b, sent, x);
        size_t from = 0;
        if (s->p->repetition_window > 0 && b->n_hist > (size_t)s->p->repetition_window)
            from = b->n_hist - (size_t)s->p->repetition_window;
        bee_repetition_penalty(x, b->hist + from, b->n_hist - from, s->p->repetition_penalty);
        bee_log_softmax(x, W);
        for (size_t v = 0; v < W; v++) x[v] += s->beam_score[r];
    }
}

/* Builds the next state of row `dst` from candidate (beam row src, word). */
static int advance(search *s, size_t sent, size_t dst, size_t src, int32_t word, float score) {
    const bee_gen_input *in = &s->b->ins[sent];
    beam_state *ns = &s->nst[dst];
    const beam_state *os = &s->st[src];
    if (state_copy(ns, os) || list_push(&ns->ans, word, in->slots[os->slot].answer)) return -1;
    int32_t nv = (int32_t)s->b->m->hp.n_vocab, eos = bee_tokenizer_special(s->b->m->tok)->eos;
    if (word == eos) {
        ns->slot = os->slot + 1;
        ns->tok_id = bee_tokenizer_special(s->b->m->tok)->bos;
        ns->tok_sub = 0;
        ns->seg = in->slots[ns->slot].segment;
        ns->pos = 0;
    } else {
        ns->tok_id = word >= nv ? s->b->ext.ids[word - nv] : word;
        ns->tok_sub = word >= nv ? s->b->ext.subs[word - nv] : 0;
        ns->pos = os->pos + 1;
    }
    s->new_score[dst] = score;
    s->src_row[dst] = (int)src;
    return 0;
}

static int select_sentence(search *s, size_t sent, int i, int last) {
    size_t W = s->b->width, base = sent * (size_t)s->beam;
    int k2 = 2 * s->beam;
    cand c[k2];
    top_k(s->logits + base * W, (size_t)s->beam * W, c, k2);
    hyp_list *h = &s->hyps[sent];
    if (!h->done && (int)h->n >= s->beam && i > 0 && h->worst >= c[0].score / (float)i) h->done = 1;
    int made = 0;
    int32_t eos = bee_tokenizer_special(s->b->m->tok)->eos;
    const bee_gen_input *in = &s->b->ins[sent];
    for (int k = 0; !h->done && k < k2 && made < s->beam; k++) {
        size_t src = base + c[k].idx / W;
        int32_t word = (int32_t)(c[k].idx % W);
        const beam_state *os = &s->st[src];
        if ((word == eos && os->slot + 1 == in->n_slots) || last) {
            answer_list tmp = {0};
            int rc = list_copy(&tmp, &os->ans) || list_push(&tmp, word, in->slots[os->slot].answer) ||
                     hyp_add(h, s->beam, &tmp, c[k].score);
            list_free(&tmp);
            if (rc) return -1;
        } else if (advance(s, sent, base + (size_t)made++, src, word, c[k].score)) {
            return -1;
        }
    }
    for (; made < s->beam; made++) { /* done sentence, or too few live candidates */
        size_t r = base + (size_t)made;
        if (state_copy(&s->nst[r], &s->st[base])) return -1;
        s->new_score[r] = h->done ? 0.0f : -1e9f;
        s->src_row[r] = (int)base;
    }
    return 0;
}

static int reorder(search *s) {
    for (size_t r = 0; r < s->rows; r++)
        if (!s->hyps[r / (size_t)s->beam].done && bee_seq_copy(&s->spare[r], &s->seqs[s->src_row[r]], s->b->m))
            return -1;
    bee_seq *t = s->seqs;
    s->seqs = s->spare;
    s->spare = t;
    beam_state *u = s->st;
    s->st = s->nst;
    s->nst = u;
    memcpy(s->beam_score, s->new_score, s->rows * sizeof *s->beam_score);
    return 0;
}

static int all_done(const search *s) {
    for (size_t i = 0; i < s->b->n_in; i++)
        if (!s->hyps[i].done) return 0;
    return 1;
}

static int run_search(search *s) {
    int M = s->p->max_length + 1;
    for (int i = 0; i <= M; i++) {
        if (feed_step(s)) return -1;
        if (all_done(s)) break;
        for (size_t sent = 0; sent < s->b->n_in; sent++) {
            if (!s->hyps[sent].done) score_rows(s, sent);
            if (select_sentence(s, sent, i, i == M)) return -1;
        }
        if (i == M) break;
        if (reorder(s)) return -1;
    }
    return 0;
}

/* ================================================================ setup */

static int init_rows(search *s) {
    const bee_gen_batch *b = s->b;
    for (size_t sent = 0; sent < b->n_in; sent++) {
        size_t base = sent * (size_t)s->beam;
        if (bee_gen_prefill(b, sent, &s->seqs[base])) return -1;
        const bee_gen_input *in = &b->ins[sent];
        for (int j = 0; j < s->beam; j++) {
            size_t r = base + (size_t)j;
            if (j > 0 && (bee_seq_init(&s->seqs[r], b->m, s->seqs[base].cap, NULL, 0) ||
                          bee_seq_copy(&s->seqs[r], &s->seqs[base], b->m)))
                return -1;
            if (bee_seq_init(&s->spare[r], b->m, s->seqs[base].cap, NULL, 0)) return -1;
            s->st[r].slot = 0;
            s->st[r].tok_id = bee_tokenizer_special(b->m->tok)->bos;
            s->st[r].seg = in->slots[0].segment;
            s->beam_score[r] = j == 0 ? 0.0f : -1e9f;
        }
        s->hyps[sent].worst = 1e9f;
    }
    return 0;
}

static void search_free(search *s) {
    for (size_t r = 0; r < s->rows; r++) {
        if (s->seqs) bee_seq_free(&s->seqs[r]);
        if (s->spare) bee_seq_free(&s->spare[r]);
        if (s->st) list_free(&s->st[r].ans), free(s->st[r].hist);
        if (s->nst) list_free(&s->nst[r].ans), free(s->nst[r].hist);
    }
    for (size_t i = 0; s->hyps && i < s->b->n_in; i++) {
        for (size_t k = 0; k < s->hyps[i].n; k++) list_free(&s->hyps[i].v[k].ans);
        free(s->hyps[i].v);
    }
    free(s->seqs), free(s->spare), free(s->st), free(s->nst), free(s->beam_score), free(s->new_score);
    free(s->src_row), free(s->hyps), free(s->logits);
}

static json_t *best_result(const search *s, size_t sent) {
    const hyp_list *h = &s->hyps[sent];
    size_t best = 0;
    for (size_t k = 1; k < h->n; k++)
        if (h->v[k].score > h->v[best].score) best = k;
    const answer_list *a = &h->v[best].ans;
    return bee_gen_finish(s->b, sent, a->words, a->nums, a->n);
}

int bee_beam_search(const bee_model *m, bee_gen_input *ins, size_t n_in, const bee_beam_params *p, json_t **outs) {
    if (p->beam_size < 1 || p->beam_size > 64) return bee_fail("beam size must be 1..64 (got %d)", p->beam_size);
    if (p->max_length < 0 || p->max_length > 1 << 20) return bee_fail("max length must be 0..1048576");
    bee_gen_batch b;
    if (bee_gen_batch_init(&b, m, ins, n_in)) return -1;
    search s = {0};
    s.b = &b;
    s.p = p;
    s.beam = p->beam_size;
    s.rows = n_in * (size_t)p->beam_size;
    s.seqs = calloc(s.rows, sizeof *s.seqs);
    s.spare = calloc(s.rows, sizeof *s.spare);
    s.st = calloc(s.rows, sizeof *s.st);
    s.nst = calloc(s.rows, sizeof *s.nst);
    s.beam_score = calloc(s.rows, sizeof *s.beam_score);
    s.new_score = calloc(s.rows, sizeof *s.new_score);
    s.src_row = calloc(s.rows, sizeof *s.src_row);
    s.hyps = calloc(n_in, sizeof *s.hyps);
    s.logits = malloc(s.rows * b.width * sizeof *s.logits);
    int rc = s.seqs && s.spare && s.st && s.nst && s.beam_score && s.new_score && s.src_row && s.hyps && s.logits
                 ? 0
                 : bee_fail("out of memory");
    if (rc == 0) rc = init_rows(&s);
    if (rc == 0) rc = run_search(&s);
    for (size_t i = 0; i < n_in; i++) outs[i] = NULL;
    for (size_t i = 0; rc == 0 && i < n_in; i++)
        if (!(outs[i] = best_result(&s, i))) rc = -1;
    if (rc)
        for (size_t i = 0; i < n_in; i++) json_decref(outs[i]), outs[i] = NULL;
    search_free(&s);
    bee_gen_batch_free(&b);
    return rc;
}
