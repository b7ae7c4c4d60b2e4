/* The "cpmbee" GGUF architecture: metadata keys and tensor names shared by the
 * converter, `bee init` and the model loader. */
#ifndef BEE_MODEL_ARCH_H
#define BEE_MODEL_ARCH_H

#define BEE_ARCH "cpmbee"

#define BEE_KEY_ARCH "general.architecture"
#define BEE_KEY_NAME "general.name"
#define BEE_KEY_ALIGNMENT "general.alignment"
#define BEE_KEY_VOCAB_SIZE "cpmbee.vocab_size"
#define BEE_KEY_DIM "cpmbee.embedding_length"
#define BEE_KEY_LAYERS "cpmbee.block_count"
#define BEE_KEY_FF "cpmbee.feed_forward_length"
#define BEE_KEY_HEADS "cpmbee.attention.head_count"
#define BEE_KEY_DIM_HEAD "cpmbee.attention.key_length"
#define BEE_KEY_EPS "cpmbee.attention.layer_norm_rms_epsilon"
#define BEE_KEY_NB "cpmbee.position_bias.num_buckets"
#define BEE_KEY_NSB "cpmbee.position_bias.num_segment_buckets"
#define BEE_KEY_MAXD "cpmbee.position_bias.max_distance"
#define BEE_KEY_ROPE_BASE "cpmbee.rotary.base"
#define BEE_KEY_ROPE_SCALE "cpmbee.rotary.distance_scale"
#define BEE_KEY_ROPE_F16 "cpmbee.rotary.inv_freq_f16"
#define BEE_KEY_RESIDUAL "cpmbee.residual_scale"
#define BEE_KEY_HALF "cpmbee.half"
/* bool array (n_layers * 2): [mask_att_0, mask_ffn_0, mask_att_1, ...]; true = pruned */
#define BEE_KEY_MASK "cpmbee.mask_modules"
#define BEE_KEY_TOK_MODEL "tokenizer.ggml.model"
#define BEE_KEY_TOKENS "tokenizer.ggml.tokens"

#define BEE_T_TOK_EMBD "token_embd.weight"   /* (n_vocab, dim) */
#define BEE_T_POS_BIAS "pos_bias.weight"     /* (nb + nsb, n_heads) */
#define BEE_T_OUT_NORM "output_norm.weight"  /* (dim) */
#define BEE_T_ATTN_NORM "blk.%d.attn_norm.weight"
#define BEE_T_ATTN_Q "blk.%d.attn_q.weight"
#define BEE_T_ATTN_K "blk.%d.attn_k.weight"
#define BEE_T_ATTN_V "blk.%d.attn_v.weight"
#define BEE_T_ATTN_OUT "blk.%d.attn_output.weight"
#define BEE_T_FFN_NORM "blk.%d.ffn_norm.weight"
#define BEE_T_FFN_GATE "blk.%d.ffn_gate.weight" /* upstream w_in.w_0 (through GELU) */
#define BEE_T_FFN_UP "blk.%d.ffn_up.weight"     /* upstream w_in.w_1 */
#define BEE_T_FFN_DOWN "blk.%d.ffn_down.weight" /* upstream w_out */

#endif
