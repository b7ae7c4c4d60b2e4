/* Greedy and sampled decoding with streaming and stop strings. Slots are
 * filled in order; each starts with <s> at position 0 of its segment. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "util/error.h"

void bee_sample_params_default(bee_sample_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = 100;
    p->temperature = 0.0f;
    p->top_p = 1.0f;
    p->repetition_penalty = 1.0f;
}

/* ================================================================ rng */

static uint64_t rng_next(uint64_t *s) { /* splitmix64: small, seedable, good enough for sampling */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

/* ================================================================ choosing */

typedef struct {
    float p;
    int32_t id;
} prob;

static int cmp_prob_desc(const void *a, const void *b) {
    const prob *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* temperature → top-k → softmax → top-p → min-p → draw. */
static int32_t sample_token(const float *logits, size_t n, const bee_sample_params *p, uint64_t *rng, prob *buf) {
    if (p->temperature <= 0.0f) return argmax(logits, n);
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        buf[i] = (prob){logits[i] / p->temperature, (int32_t)i};
        if (buf[i].p > mx) mx = buf[i].p;
    }
    qsort(buf, n, sizeof *buf, cmp_prob_desc);
    size_t keep = (p->top_k > 0 && (size_t)p->top_k < n) ? (size_t)p->top_k : n;
    double sum = 0;
    for (size_t i = 0; i < keep; i++) sum += (buf[i].p = expf(buf[i].p - mx));
    for (size_t i = 0; i < keep; i++) buf[i].p = (float)(buf[i].p / sum);
    if (p->top_p < 1.0f) {
        double cum = 0;
        size_t k = 0;
        while (k < keep && (k == 0 || cum < p->top_p)) cum += buf[k++].p;
        keep = k;
    }
    if (p->min_p > 0.0f) {
        size_t k = 1;
        while (k < keep && buf[k].p >= p->min_p * buf[0].p) k++;
        keep = k;
    }
    double total = 0;
    for (size_t i = 0; i < keep; i++) total += buf[i].p;
    double r = rng_uniform(rng) * total, acc = 0;
    for (size_t i = 0; i < keep; i++) {
        acc += buf[i].p;
        if (r < acc) return buf[i].id;
    }
    return buf[keep - 1].id;
}

static void apply_penalties(float *x, const int32_t *gen, size_t n, const bee_sample_params *p) {
    if (p->presence_penalty == 0.0f && p->frequency_penalty == 0.0f) return;
    for (size_t t = 0; t < n; t++) {
        int first = 1;
        for (size_t u = 0; u < t && first; u++) first = gen[u] != gen[t];
        x[gen[t]] -= p->frequency_penalty + (first ? p->presence_penalty : 0.0f);
    }
}

/* ================================================================ streaming */

typedef struct {
    bee_str text;   /* decoded text of the current slot */
    size_t emitted; /* bytes already streamed */
    int stopped;
} slot_text;

/* Length of the longest suffix of s that is a proper prefix of a stop string. */
static size_t held_back(const char *s, size_t n, const char *const *stop) {
    size_t hold = 0;
    for (size_t k = 0; stop && stop[k]; k++) {
        size_t L = strlen(stop[k]);
        for (size_t m = L > n ? n : L - 1; m > hold; m--)
            if (memcmp(s + n - m, stop[k], m) == 0) {
                hold = m;
                break;
            }
    }
    return hold;
}

/* Appends a token's text; returns 1 when a stop string completed. */
static int slot_feed(slot_text *st, const char *piece, size_t len, const bee_sample_params *p, size_t slot) {
    size_t before = st->text.n;
    if (bee_str_append(&st->text, piece, len)) return -1;
    for (size_t k = 0; p->stop && p->stop[k]; k++) {
        size_t L = strlen(p->stop[k]);
        size_t from = before >= L ? before - L + 1 : 0;
        char *hit = L ? memmem(st->text.s + from, st->text.n - from, p->stop[k], L) : NULL;
        if (hit) {
            st->text.n = (size_t)(hit - st->text.s);
            st->text.s[st->text.n] = 0;
            st->stopped = 1;
        }
    }
    size_t safe = st->stopped ? st->text.n : st->text.n - held_back(st->text.s, st->text.n, p->stop);
    if (p->stream && safe > st->emitted) p->stream(p->stream_user, slot, st->text.s + st->emitted, safe - st->emitted);
    if (safe > st->emitted) st->emitted = safe;
    return st->stopped;
}

static void slot_flush(slot_text *st, const bee_sample_params *p, size_t slot) {
    if (p->stream && st->text.n > st->emitted)
        p->stream(p->stream_user, slot, st->text.s + st->emitted, st->text.n - st->emitted);
    st->emitted = st->text.n;
}

/* ================================================================ loop */

typedef struct {
    const bee_gen_batch *b;
    const bee_sample_params *p;
    bee_seq seq;
    float *logits;
    prob *buf;
    bee_ivec hist;            /* base ids fed (for the repetition penalty) */
    bee_ivec gen;             /* generated ids (presence/frequency penalties) */
    char **answers;           /* decoded text per answer number; NULL = slot never reached */
    uint64_t rng;
} sampler;

static int step(sampler *s, bee_token tok) {
    bee_seq *sp[1] = {&s->seq};
    const bee_token *tp[1] = {&tok};
    size_t one = 1;
    if (bee_ivec_push(&s->hist, tok.id)) return -1;
    return bee_forward(s->b->m, sp, tp, &one, 1, &s->b->ext, BEE_LOGITS_LAST, s->logits, NULL);
}

static int32_t choose(sampler *s) {
    float *x = s->logits;
    bee_gen_batch_mask(s->b, 0, x);
    bee_repetition_penalty(x, s->hist.v, s->hist.n, s->p->repetition_penalty);
    apply_penalties(x, s->gen.v, s->gen.n, s->p);
    return sample_token(x, s->b->width, s->p, &s->rng, s->buf);
}

static int run_slots(sampler *s, int *n_generated) {
    const bee_gen_input *in = &s->b->ins[0];
    const bee_special_ids *sp = bee_tokenizer_special(s->b->m->tok);
    int32_t nv = (int32_t)s->b->m->hp.n_vocab, nseg = in->enc.n_seg;
    int made = 0;
    for (size_t slot = 0; slot < in->n_slots && made < s->p->max_tokens; slot++) {
        int32_t answer = in->slots[slot].answer, seg = in->slots[slot].segment;
        bee_token tok = {sp->bos, 0, 0, seg, 0, nseg, 0, 1};
        slot_text st = {{0}, 0, 0};
        int ended = 0;
        while (!ended && made < s->p->max_tokens) {
            if (step(s, tok)) goto fail;
            int32_t w = choose(s);
            made++;
            if (bee_ivec_push(&s->gen, w)) goto fail;
            if (w == sp->eos) break;
            bee_str piece = {0};
            if (bee_tokenizer_decode_one(s->b->m->tok, w, &s->b->dt[0], &piece) && w < nv) {
                bee_str_free(&piece);
                goto fail;
            }
            int r = slot_feed(&st, piece.s ? piece.s : "", piece.n, s->p, slot);
            bee_str_free(&piece);
            if (r < 0) goto fail;
            ended = r;
            tok = (bee_token){w >= nv ? s->b->ext.ids[w - nv] : w, w >= nv ? s->b->ext.subs[w - nv] : 0,
                              tok.pos + 1, seg, 0, nseg, 0, 1};
        }
        slot_flush(&st, s->p, slot);
        free(s->answers[answer - 1]);
        s->answers[answer - 1] = bee_str_take(&st.text);
        continue;
    fail:
        bee_str_free(&st.text);
        return -1;
    }
    if (n_generated) *n_generated = made;
    return 0;
}

int bee_sample_generate(const bee_model *m, bee_gen_input *in, const bee_sample_params *p, json_t **out,
                        int *n_generated) {
    *out = NULL;
    if (p->max_tokens < 0) return bee_fail("max tokens must be >= 0");
    if (!(p->temperature >= 0) || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p < 1) ||
        p->top_k < 0 || !(p->repetition_penalty > 0))
        return bee_fail("invalid sampling parameters (temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1, top_k >= 0, "
                        "repetition_penalty > 0)");
    bee_gen_batch b;
    if (bee_gen_batch_init(&b, m, in, 1)) return -1;
    sampler s = {&b, p, {0}, NULL, NULL, {0}, {0}, NULL, p->seed};
    s.logits = malloc(b.width * sizeof *s.logits);
    s.buf = malloc(b.width * sizeof *s.buf);
    s.answers = calloc(in->n_answers + 1, sizeof *s.answers);
    int rc = s.logits && s.buf && s.answers ? 0 : bee_fail("out of memory");
    if (rc == 0) rc = bee_gen_prefill(&b, 0, &s.seq);
    if (rc == 0) rc = run_slots(&s, n_generated);
    if (rc == 0 && !(*out = bee_gen_fill_answers(in, s.answers))) rc = bee_fail("out of memory");
    for (size_t a = 0; s.answers && a < in->n_answers; a++) free(s.answers[a]);
    free(s.answers), free(s.logits), free(s.buf);
    bee_ivec_free(&s.hist), bee_ivec_free(&s.gen);
    bee_seq_free(&s.seq);
    bee_gen_batch_free(&b);
    return rc;
}
