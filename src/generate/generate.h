/* Generation over structured inputs: upstream beam search (SPEC §8) and
 * sampling/greedy decoding with streaming, both filling the dict's <ans>
 * slots in order. */
#ifndef BEE_GENERATE_H
#define BEE_GENERATE_H

#include <jansson.h>
#include <stdint.h>

#include "model/model.h"
#include "tokenizer/dict.h"

typedef struct {
    int beam_size;            /* default 3 */
    int max_length;           /* default 100; upstream may return max_length + 2 tokens */
    float repetition_penalty; /* default 1.0 (CTRL style) */
    int repetition_window;    /* 0 = whole history */
} bee_beam_params;

void bee_beam_params_default(bee_beam_params *p);

/* Beam search over a batch of dicts (one forward per step for all rows).
 * outs[i] receives the filled dict of ins[i] (new reference). */
int bee_beam_search(const bee_model *m, bee_gen_input *ins, size_t n_in, const bee_beam_params *p, json_t **outs);

/* ---------------------------------------------------------------- sampling */
typedef void (*bee_stream_fn)(void *user, size_t slot, const char *text, size_t len);

typedef struct {
    int max_tokens;            /* total generated tokens over all slots (default 100) */
    float temperature;         /* 0 = greedy */
    int top_k;                 /* 0 = off */
    float top_p;               /* 1 = off */
    float min_p;               /* 0 = off */
    float repetition_penalty;  /* 1 = off (CTRL style, like beam search) */
    float presence_penalty;    /* 0 = off: subtracted once per distinct generated id */
    float frequency_penalty;   /* 0 = off: subtracted per occurrence */
    uint64_t seed;
    int ignore_eos;            /* never pick </s>: slots run to max_tokens (benchmarks, tests) */
    const char *const *stop;   /* stop strings (NULL-terminated list) or NULL */
    bee_stream_fn stream;      /* called with each new piece of answer text */
    void *stream_user;
} bee_sample_params;

void bee_sample_params_default(bee_sample_params *p);

/* Checks the ranges of sampling parameters. */
int bee_sampler_check(const bee_sample_params *p);

/* ---------------------------------------------------------------- stepwise sampler
 * Decoding of one dict (row 0 of a bee_gen_batch) where the caller runs the
 * forward pass, so a server can batch many samplers into one bee_forward:
 *     prefill; while (!s.done) { forward(s.next) -> logits; bee_sampler_accept(&s, logits); }
 * bee_sample_generate is exactly this loop. */
typedef enum { BEE_FINISH_NONE = 0, BEE_FINISH_STOP, BEE_FINISH_LENGTH } bee_finish;

struct bee_gen_batch;
typedef struct {
    const struct bee_gen_batch *b;
    const bee_sample_params *p;
    void *scratch;   /* sorting buffer (b->width entries) */
    bee_ivec hist;   /* base ids fed (repetition penalty) */
    bee_ivec gen;    /* generated ids (presence/frequency penalties) */
    char **answers;  /* decoded text per answer number; NULL = slot never reached */
    uint64_t rng;
    size_t slot;     /* answer slot being filled */
    bee_token next;  /* token to feed next (valid while !done) */
    bee_str text;    /* current slot's text (escaped tokenizer form) */
    size_t emitted;  /* bytes of text already streamed */
    int stopped;
    int made;        /* generated tokens so far, all slots */
    int32_t last;    /* id chosen by the last accept (-1 before) */
    bee_str piece;   /* its decoded text (empty for </s>) */
    bee_finish finish;
    int done;
} bee_sampler;

int bee_sampler_init(bee_sampler *s, const struct bee_gen_batch *b, const bee_sample_params *p);
/* Takes the logits (width b->width) of the forward over s->next: masks and
 * penalises them in place, picks a token, streams text, advances. */
int bee_sampler_accept(bee_sampler *s, float *logits);
/* The dict with the answers so far (new reference). */
json_t *bee_sampler_result(const bee_sampler *s);
void bee_sampler_free(bee_sampler *s);

/* Greedy / sampled decoding of one dict; *out receives the filled dict.
 * n_generated (optional) receives the number of generated tokens. */
int bee_sample_generate(const bee_model *m, bee_gen_input *in, const bee_sample_params *p, json_t **out,
                        int *n_generated);

/* ---------------------------------------------------------------- shared
 * The batch ext table and per-sentence decode tables of a generation batch. */
typedef struct bee_gen_batch {
    const bee_model *m;
    bee_gen_input *ins;
    size_t n_in;
    bee_batch_ext bext;
    bee_decode_table *dt; // (n_in)
    bee_ext ext;
    size_t width; /* logits width: n_vocab + ext.n */
} bee_gen_batch;

int bee_gen_batch_init(bee_gen_batch *b, const bee_model *m, bee_gen_input *ins, size_t n_in);
void bee_gen_batch_free(bee_gen_batch *b);
/* SPEC §8c: <unk> and foreign ext ids get -10000 for sentence i. */
void bee_gen_batch_mask(const bee_gen_batch *b, size_t i, float *logits);
/* Creates a sequence for sentence i and runs the prefill over its context. */
int bee_gen_prefill(const bee_gen_batch *b, size_t i, bee_seq *seq);
/* Decodes a (word, slot) answer list into per-answer strings and fills the dict. */
json_t *bee_gen_finish(const bee_gen_batch *b, size_t i, const int32_t *words, const int32_t *answer_nums, size_t n);
/* CTRL repetition penalty over the distinct ids in hist[0..n). */
void bee_repetition_penalty(float *logits, const int32_t *hist, size_t n, float penalty);
/* log_softmax in place (fp32). */
void bee_log_softmax(float *x, size_t n);
/* Greedy choice: the index the scan `if (x[i] > x[best]) best = i` from
 * best = 0 ends on (the first largest value; NaNs never win; 0 when n == 0),
 * computed in 16 lanes. */
int32_t bee_argmax(const float *x, size_t n);

#endif
