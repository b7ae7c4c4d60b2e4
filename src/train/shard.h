/* Binary token shards: training instances encoded once (`bee data`) and read
 * by `bee train --shards` without re-tokenizing. Little-endian layout:
 *
 *   header (40 bytes)
 *     0  char[8]  magic "BEESHARD"
 *     8  u32      version (1)
 *    12  u32      n_vocab of the tokenizer that encoded it
 *    16  u64      vocabulary fingerprint (FNV-1a over every token text and its length)
 *    24  u64      number of instances
 *    32  u64      total tokens
 *   then per instance
 *     u32 n (tokens, >= 2), u32 n_seg (>= 1),
 *     i32 ids[n], i32 subs[n], i32 segs[n], u8 ctx[n], i32 seg_rel[n_seg * n_seg]
 *
 * Instances are stored whole; the reader cuts them to the row length, like
 * bee_train_data_load. */
#ifndef BEE_TRAIN_SHARD_H
#define BEE_TRAIN_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer/tokenizer.h"
#include "train/data.h"

#define BEE_SHARD_VERSION 1u
#define BEE_SHARD_HEADER 40u

/* Identifies a vocabulary: shards made with another one are refused. */
uint64_t bee_vocab_fingerprint(const bee_tokenizer *t);

/* Writes d atomically. */
int bee_shard_write(const char *path, const bee_tokenizer *t, const bee_train_data *d);
/* Appends the instances of a shard to d (cut to max_len tokens). Errors name
 * the file and the byte offset of the bad field; d keeps what it had. */
int bee_shard_load(const char *path, const bee_tokenizer *t, uint32_t max_len, bee_train_data *d);
/* The same on bytes in memory; `name` is used in error messages. */
int bee_shard_parse(const uint8_t *data, size_t size, const char *name, const bee_tokenizer *t, uint32_t max_len,
                    bee_train_data *d);

#endif
