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

/* The first index of the largest value, as the scan `if (x[i] > x[best])
 * best = i` from best = 0 finds it (NaNs never win; a NaN at 0 stays): the
 * largest value by 16 independent lanes (vectorizable), then its first
 * occurrence. */
int32_t bee_argmax(const float *x, size_t n) {
    if (n == 0 || isnan(x[0])) return 0;
    float l[16];
    for (int k = 0; k < 16; k++) l[k] = x[0];
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) l[k] = x[i + (size_t)k] > l[k] ? x[i + (size_t)k] : l[k];
    for (; i < n; i++) l[0] = x[i] > l[0] ? x[i] : l[0];
    float mx = l[0];
    for (int k = 1; k < 16; k++) mx = l[k] > mx ? l[k] : mx;
    for (i = 0; i < n; i++)
        if (x[i] == mx) return (int32_t)i;
    return 0;
}

/* temperature → top-k → softmax → top-p → min-p → draw. */
static int32_t sample_token(const float *logits, size_t n, const bee_sample_params *p, uint64_t *rng, prob *buf) {
    if (p->temperature <= 0.0f) return bee_argmax(logits, n);
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
static int slot_feed(bee_sampler *s, const char *piece, size_t len) {
    const bee_sample_params *p = s->p;
    size_t before = s->text.n;
    if (bee_str_append(&s->text, piece, len)) return -1;
    for (size_t k = 0; p->stop && p->stop[k]; k++) {
        size_t L = strlen(p->stop[k]);
        size_t from = before >= L ? before - L + 1 : 0;
        char *hit = L ? memmem(s->text.s + from, s->text.n - from, p->stop[k], L) : NULL;
        if (hit) {
            s->text.n = (size_t)(hit - s->text.s);
            s->text.s[s->text.n] = 0;
            s->stopped = 1;
        }
    }
    size_t safe = s->stopped ? s->text.n : s->text.n - held_back(s->text.s, s->text.n, p->stop);
    if (p->stream && safe > s->emitted) p->stream(p->stream_user, s->slot, s->text.s + s->emitted, safe - s->emitted);
    if (safe > s->emitted) s->emitted = safe;
    return s->stopped;
}

/* Streams what the stop-string check held back and stores the slot's answer. */
static int slot_end(bee_sampler *s) {
    const bee_sample_params *p = s->p;
    if (p->stream && s->text.n > s->emitted)
        p->stream(p->stream_user, s->slot, s->text.s + s->emitted, s->text.n - s->emitted);
    int32_t answer = s->b->ins[0].slots[s->slot].answer;
    free(s->answers[answer - 1]);
    s->answers[answer - 1] = bee_str_take(&s->text);
    s->emitted = 0;
    s->stopped = 0;
    return 0;
}

/* ================================================================ stepwise sampler */

static bee_token slot_start(const bee_sampler *s) {
    const bee_gen_input *in = &s->b->ins[0];
    int32_t bos = bee_tokenizer_special(s->b->m->tok)->bos;
    return (bee_token){bos, 0, 0, in->slots[s->slot].segment, 0, in->enc.n_seg, 0, 1};
}

/* Moves to the next answer slot, or finishes. */
static void slot_advance(bee_sampler *s) {
    s->slot++;
    if (s->slot >= s->b->ins[0].n_slots) {
        s->done = 1;
        s->finish = BEE_FINISH_STOP;
    } else if (s->made >= s->p->max_tokens) {
        s->done = 1;
        s->finish = BEE_FINISH_LENGTH;
    } else {
        s->next = slot_start(s);
    }
}

int bee_sampler_check(const bee_sample_params *p) {
    if (p->max_tokens < 0) return bee_fail("max tokens must be >= 0");
    if (!(p->temperature >= 0) || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p < 1) ||
        p->top_k < 0 || !(p->repetition_penalty > 0))
        return bee_fail("invalid sampling parameters (temperature >= 0, 0 < top_p <= 1, 0 <= min_p < 1, top_k >= 0, "
                        "repetition_penalty > 0)");
    return 0;
}

int bee_sampler_init(bee_sampler *s, const bee_gen_batch *b, const bee_sample_params *p) {
    memset(s, 0, sizeof *s);
    s->b = b;
    s->p = p;
    s->rng = p->seed;
    s->last = -1;
    s->scratch = malloc(b->width * sizeof(prob));
    s->answers = calloc(b->ins[0].n_answers + 1, sizeof *s->answers);
    if (!s->scratch || !s->answers) {
        bee_sampler_free(s);
        return bee_fail("out of memory");
    }
    if (b->ins[0].n_slots == 0 || p->max_tokens == 0) {
        s->done = 1;
        s->finish = b->ins[0].n_slots == 0 ? BEE_FINISH_STOP : BEE_FINISH_LENGTH;
    } else {
        s->next = slot_start(s);
    }
    return 0;
}

void bee_sampler_free(bee_sampler *s) {
    for (size_t a = 0; s->answers && a < s->b->ins[0].n_answers; a++) free(s->answers[a]);
    free(s->answers);
    free(s->scratch);
    bee_ivec_free(&s->hist);
    bee_ivec_free(&s->gen);
    bee_str_free(&s->text);
    bee_str_free(&s->piece);
    memset(s, 0, sizeof *s);
}

int bee_sampler_accept(bee_sampler *s, float *logits) {
    if (s->done) return bee_fail("sampler already finished");
    const bee_special_ids *sp = bee_tokenizer_special(s->b->m->tok);
    int32_t nv = (int32_t)s->b->m->hp.n_vocab;
    if (bee_ivec_push(&s->hist, s->next.id)) return -1;
    bee_gen_batch_mask(s->b, 0, logits);
    bee_repetition_penalty(logits, s->hist.v, s->hist.n, s->p->repetition_penalty);
    apply_penalties(logits, s->gen.v, s->gen.n, s->p);
    if (s->p->ignore_eos) logits[sp->eos] = -INFINITY;
    int32_t w = sample_token(logits, s->b->width, s->p, &s->rng, s->scratch);
    s->last = w;
    s->made++;
    s->piece.n = 0;
    if (s->piece.s) s->piece.s[0] = 0;
    if (bee_ivec_push(&s->gen, w)) return -1;
    int ended = w == sp->eos;
    if (!ended) {
        if (bee_tokenizer_decode_one(s->b->m->tok, w, &s->b->dt[0], &s->piece) && w < nv) return -1;
        int r = slot_feed(s, s->piece.s ? s->piece.s : "", s->piece.n);
        if (r < 0) return -1;
        ended = r;
        s->next = (bee_token){w >= nv ? s->b->ext.ids[w - nv] : w, w >= nv ? s->b->ext.subs[w - nv] : 0,
                              s->next.pos + 1, s->next.seg, 0, s->next.nseg, 0, 1};
    }
    if (ended) {
        slot_end(s);
        slot_advance(s);
    } else if (s->made >= s->p->max_tokens) {
        slot_end(s);
        s->done = 1;
        s->finish = BEE_FINISH_LENGTH;
    }
    return 0;
}

json_t *bee_sampler_result(const bee_sampler *s) {
    json_t *out = bee_gen_fill_answers(&s->b->ins[0], s->answers);
    if (!out) bee_fail("out of memory");
    return out;
}

/* ================================================================ one dict */

int bee_sample_generate(const bee_model *m, bee_gen_input *in, const bee_sample_params *p, json_t **out,
                        int *n_generated) {
    *out = NULL;
    if (bee_sampler_check(p)) return -1;
    bee_gen_batch b;
    if (bee_gen_batch_init(&b, m, in, 1)) return -1;
    bee_sampler s;
    bee_seq seq = {0};
    float *logits = malloc(b.width * sizeof *logits);
    int rc = logits ? 0 : bee_fail("out of memory");
    if (rc == 0) rc = bee_sampler_init(&s, &b, p);
    if (rc == 0) {
        rc = bee_gen_prefill(&b, 0, &seq);
        bee_seq *sq[1] = {&seq};
        size_t one = 1;
        while (rc == 0 && !s.done) {
            const bee_token *tp[1] = {&s.next};
            rc = bee_forward(m, sq, tp, &one, 1, &b.ext, BEE_LOGITS_LAST, logits, NULL);
            if (rc == 0) rc = bee_sampler_accept(&s, logits);
        }
        if (rc == 0 && !(*out = bee_sampler_result(&s))) rc = -1;
        if (rc == 0 && n_generated) *n_generated = s.made;
        bee_sampler_free(&s);
    }
    free(logits);
    bee_seq_free(&seq);
    bee_gen_batch_free(&b);
    return rc;
}
