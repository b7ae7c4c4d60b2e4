/* Structured input (SPEC §5–6): a JSON dict becomes segments, token ids,
 * subscripts, segment ids, segment_rel and answer slots. */
#ifndef BEE_TOKENIZER_DICT_H
#define BEE_TOKENIZER_DICT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"

#define BEE_DICT_MAX_DEPTH 8 /* segment_rel clamps distances to max_depth - 1 */
#define BEE_DICT_MAX_SEGMENTS 4096

/* One base special token (<unk>, <mask>, <option>, <ans>, ...) and the ext
 * strings mapped to it; a string's index in `ext` is its subscript. */
typedef struct {
    int32_t base_id;
    bee_ivec ext; /* indices into bee_dict_enc.ext */
} bee_dict_name;

/* convert_data_to_id: the training-form encoding of one dict. */
typedef struct {
    bee_ivec ids, subs, ctx, segs; /* (n_tokens) each */
    int32_t n_seg;
    int32_t *seg_rel; /* (n_seg, n_seg) */
    bee_ext_table ext; /* running table of ext strings, shared by later samples */
    bee_dict_name *names; /* in order of first appearance */
    size_t n_names;
} bee_dict_enc;

/* Encodes `data` (a JSON object; leaves must be strings). Appends to the ext
 * table and name table already in `enc` (for in-context samples), resets the
 * rest. Errors name the offending field path. */
int bee_dict_encode(const bee_tokenizer *t, json_t *data, bee_dict_enc *enc);
void bee_dict_enc_free(bee_dict_enc *enc);

/* ---------------------------------------------------------------- generation */

typedef struct {
    int32_t segment; /* segment id of the slot */
    int32_t answer;  /* answer number n of <ans_n> (1-based) */
} bee_slot;

typedef struct {
    json_t *data;        /* the caller's dict (borrowed reference, kept alive) */
    json_t *placeholder; /* copy with <ans> leaves replaced by <ans_n> */
    json_t **paths;      /* (n_answers) JSON arrays of keys under "<ans>" */
    size_t n_answers;
    bee_dict_enc enc;
    /* model input: context tokens only, positions 0..n-1 */
    bee_ivec ids, subs, segs;
    bee_slot *slots;
    size_t n_slots;
    /* (base id, sub, ext index) for every non-<ans> ext string */
    bee_ivec ext_base, ext_sub, ext_idx;
} bee_gen_input;

/* SPEC §5.1 + §6 steps 1–4 for one dict: requires a top-level "<ans>". */
int bee_gen_input_init(const bee_tokenizer *t, json_t *data, bee_gen_input *in);
void bee_gen_input_free(bee_gen_input *in);

/* Batch ext table (SPEC §6.5): (base id, sub) pairs registered once per batch;
 * output id of pair j is n_vocab + j. */
typedef struct {
    bee_ivec base, sub;
} bee_batch_ext;

/* Registers one sentence's pairs and fills its decode table. */
int bee_batch_ext_add(bee_batch_ext *b, const bee_tokenizer *t, const bee_gen_input *in, bee_decode_table *dt);
void bee_batch_ext_free(bee_batch_ext *b);

/* Returns a deep copy of in->data with every answer leaf set: answers[n-1]
 * (NULL → JSON null). */
json_t *bee_gen_fill_answers(const bee_gen_input *in, char *const *answers);

/* Wraps plain text as {"input": TEXT, "<ans>": ""} (the text is used as-is). */
json_t *bee_dict_from_text(const char *text);

#endif
