/* Training data: CPM-Bee dicts (JSONL, training form with a literal "<ans>")
 * or plain text lines, encoded once with bee_dict_encode, then packed into
 * batches in the upstream training layout (pretrain.py pack_batch; targets as
 * golden/train/README.md §2). */
#ifndef BEE_TRAIN_DATA_H
#define BEE_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"
#include "train/train.h"

/* One encoded instance (convert_data_to_id output), truncated to the row length. */
typedef struct {
    int32_t *ids, *subs, *segs; // (n)
    uint8_t *ctx;               // (n)
    int32_t *seg_rel;           // (n_seg, n_seg)
    uint32_t n, n_seg;
} bee_train_inst;

typedef struct {
    bee_train_inst *v;
    size_t n, cap;
    size_t n_tokens;
} bee_train_data;

/* JSONL: one dict per non-empty line. Text: every non-empty line becomes
 * {"<ans>": line} (escaped), so all its tokens are predicted. Instances longer
 * than max_len are cut to max_len tokens. Errors name the file and line. */
int bee_train_data_load(const bee_tokenizer *t, const char *path, int is_text, uint32_t max_len, bee_train_data *d);
void bee_train_data_free(bee_train_data *d);
/* Appends x, taking ownership of its arrays. */
int bee_train_data_push(bee_train_data *d, const bee_train_inst *x);
void bee_train_inst_free(bee_train_inst *x);

/* A packed batch owning its arrays; `b` points into them. */
typedef struct {
    bee_train_batch b;
    int32_t *mem;  /* every int32 array in one allocation */
    uint8_t *ctx;
    size_t n_tokens; /* non-padding tokens */
} bee_packed_batch;

/* Packs instances order[*cursor], order[*cursor + 1], ... into B rows of L
 * tokens (next-fit: an instance that does not fit in the current row opens
 * the next one) and advances *cursor past those used; stops at the end of
 * `order`. Fails when no instance could be packed. */
int bee_train_pack(const bee_train_data *d, const bee_tokenizer *t, const uint32_t *order, size_t n_order,
                   size_t *cursor, uint32_t B, uint32_t L, bee_packed_batch *out);
void bee_packed_batch_free(bee_packed_batch *p);

/* Deterministic permutation of 0..n-1 for an epoch (seed, epoch). */
void bee_train_shuffle(uint32_t *order, size_t n, uint64_t seed, uint64_t epoch);

#endif
