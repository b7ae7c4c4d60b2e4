/* Panel layout: weight matrices repacked at load time so that 16 consecutive
 * output rows sit in the 16 lanes of a vector register. One kernel then
 * serves decode (1 token) and prefill (tiles of up to 12 tokens): each weight
 * vector loaded is used for every token of the tile, the int8 dot products
 * need no horizontal sums, and a token's result does not depend on how many
 * tokens share the call (or on the thread count).
 *
 * Layouts (a panel = 16 rows; the last panel of a matrix is zero-padded):
 *   F32/F16/BF16: for each column k, the 16 rows' elements (64 or 32 bytes).
 *   Q8_0: for each 32-column block: 8 groups of 64 bytes, group g holding
 *         for row r (bytes 4r..4r+3) its weights 4g..4g+3 as unsigned
 *         (w + 128); then the 16 rows' fp16 scales (32 bytes). 544 bytes.
 *   Q4_0: for each block: 4 chunks of 64 bytes, chunk c holding for row r
 *         the nibbles of weights 4c..4c+3 (low) and 4c+16..4c+19 (high),
 *         unsigned (q, where w = (q - 8) d); then 16 fp16 scales. 288 bytes.
 *   Q4_1: as Q4_0 (w = q d + m), then 16 fp16 scales, then 16 fp16
 *         minimums. 320 bytes.
 * A panel matrix takes exactly the bytes of the row-major one when the row
 * count is a multiple of 16.
 *
 * Arithmetic (the scalar reference and the SIMD kernel agree bit for bit):
 *   float types: y = fma(w_k, x_k, y) over k = 0 .. cols-1 in order.
 *   int8 types: per block b, I = sum_k w_k q_k in exact int32 (activations
 *   are q8_0: q in [-127, 127], scale dx); y = fma((float)I, dw_b * dx_b, y)
 *   over the blocks in order. Q4_1: I starts at 0 and each block then adds
 *   y = fma(m_b, dx_b * S, y), S the sum of the block's activation quants. */
#ifndef BEE_KERNELS_PANEL_H
#define BEE_KERNELS_PANEL_H

#include <stddef.h>
#include <stdint.h>

#define BEE_PANEL_ROWS 16
#define BEE_PANEL_TILE 12 /* tokens per kernel call */

/* Whether type has a panel layout and kernel (fast only when
 * bee_panel_fast() says so). */
int bee_panel_has_type(uint32_t type);
/* Whether this CPU (and BEE_CPU) gives a SIMD panel kernel for type. */
int bee_panel_fast(uint32_t type);
/* Bytes of the panel copy of a (rows, cols) matrix; 0 when unsupported or
 * cols does not fill whole blocks. */
size_t bee_panel_nbytes(uint32_t type, uint64_t rows, uint64_t cols);
/* Repacks rows [0, rows) of a row-major matrix; dst has bee_panel_nbytes. */
void bee_panel_pack(uint32_t type, const void *src, uint64_t rows, uint64_t cols, void *dst);
/* Row r of a panel matrix, as fp32. */
void bee_panel_row(uint32_t type, const void *panel, uint64_t cols, uint64_t r, float *out);

/* Activations prepared for a panel matrix of the given weight type, stored
 * tile by tile (BEE_PANEL_TILE tokens) so that a kernel reaches every token
 * of its tile from one base pointer (tile = t / TILE, i = t % TILE):
 *   f[(tile * cols + k) * TILE + i]              float types
 *   q[((tile * nb + b) * TILE + i) * 32 + k % 32]  int8 types, b = k / 32
 *   d, c[(tile * nb + b) * TILE + i]               scale, -off * sum(q) */
typedef struct {
    uint32_t wtype;
    size_t n_tok, cols;
    float *f;
    int8_t *q;
    float *d;
    int32_t *c;
    uint16_t *h; /* the AMX split (panel_amx.c) instead of f, or NULL */
} bee_panel_act;

/* Flags of bee_panel_act_init. BEE_PANEL_SPLIT: the tokens are a prompt's,
 * and float weights may take the AMX path (bee_panel_amx_type), whose sums are f32
 * sums in another order than the FMA kernel's: the same for any thread
 * count and any other tokens sharing the call, but not bit-identical to
 * the FMA path, so a caller sets it per prompt, never per batch. */
enum { BEE_PANEL_SPLIT = 1u };
/* Tokens below which BEE_PANEL_SPLIT is not worth it (the weight stream
 * bounds both paths). */
#define BEE_PANEL_SPLIT_MIN 32

/* Allocates room for n_tok tokens (whole tiles; for float types the lanes
 * of a ragged last tile beyond n_tok are zeroed, since the pair path runs
 * that tile whole); bee_panel_act_fill converts tokens [t0, t1) of x
 * (n_tok, cols) (separate calls may run on separate threads). */
int bee_panel_act_init(bee_panel_act *a, uint32_t wtype, size_t n_tok, size_t cols, unsigned flags);
void bee_panel_act_fill(bee_panel_act *a, const float *x, size_t t0, size_t t1);
void bee_panel_act_free(bee_panel_act *a);

/* y[t * ldy + r] = (W row r . x_t) / div for the rows of panels [p0, p1)
 * (rows beyond n_rows skipped) and every token of a. Returns -1 (with
 * bee_fail) only when the AMX path finds no memory for its buffers. */
int bee_panel_matmul(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                      const bee_panel_act *a, float *y, size_t ldy, float div);
/* The same with the portable reference kernel. */
void bee_panel_matmul_ref(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                          const bee_panel_act *a, float *y, size_t ldy, float div);

/* Internal: AVX-512 tile kernel (NULL when unavailable): out (T, 16) for T
 * tokens starting at token t0 of a, panel p. */
typedef void (*bee_panel_tile_fn)(const void *pw, const bee_panel_act *a, size_t t0, int T, float *out);
bee_panel_tile_fn bee_panel_tile_avx512(uint32_t type);
/* Internal: where the pair kernel stores final results: y[t * ldy + r] =
 * sum / div for tokens t < T, rows r < n0 of the first panel and, at
 * y + 16, rows r < n1 of the second (y is the tile's first token and the
 * first panel's first row). */
typedef struct {
    float *y;
    size_t ldy;
    float div;
    int T, n0, n1;
} bee_panel_dst;
/* Internal: float types, two panels (pw0 to out0, pw1 to out1) for one whole
 * tile of BEE_PANEL_TILE tokens, columns [k0, k1): the sums continue from
 * what out0/out1 hold (from zero when k0 == 0), so column blocks run one
 * after another give each output the same FMA chain as the tile kernel.
 * The sums go back to out0/out1, or, when dst is not NULL (the last
 * block), to dst as final results. pf (may be NULL): (k1 - k0) / 4 cache
 * lines from there are prefetched into L2, a hint only. NULL when
 * unavailable. */
typedef void (*bee_panel_pair_fn)(const void *pw0, const void *pw1, const bee_panel_act *a, size_t t0, size_t k0,
                                  size_t k1, float *out0, float *out1, const void *pf, const bee_panel_dst *dst);
bee_panel_pair_fn bee_panel_pair_avx512(uint32_t type);
/* Internal: the cache blocking of the pair path (kernels/panel.c): columns
 * per block, panel pairs per group, tiles per chunk. Tests size their
 * matrices from these so that every boundary is crossed. */
#define BEE_PANEL_PAIR_KC 128
#define BEE_PANEL_PAIR_GROUP 8
#define BEE_PANEL_PAIR_CHUNK 43
/* Internal: q8_0 quantization of nb activation blocks into quants q, scales
 * d and corrections c = -off * sum(q); the reference and the AVX-512 path
 * (NULL when unavailable) agree bit for bit. */
/* Block b goes to q + b * qs, d[b * ds], c[b * ds]. */
typedef void (*bee_panel_quant_fn)(const float *x, size_t nb, int8_t *q, size_t qs, float *d, int32_t *c, size_t ds,
                                   int off);
bee_panel_quant_fn bee_panel_quant_avx512(void);
void bee_panel_quant_ref(const float *x, size_t nb, int8_t *q, size_t qs, float *d, int32_t *c, size_t ds, int off);

/* Internal, the AMX path (panel_amx.c): whether this CPU and OS give AMX
 * BF16 tiles (and BEE_AMX is not 0/off/no), asking Linux for the tile
 * state on the first call; the bytes of a->h for n_tok tokens; the split
 * of tokens [t0, t1) of x (n_tok, cols) into h; the product (-1 without
 * memory or AMX). */
int bee_panel_amx(void);
/* Whether weights of this type take the AMX path (f32, f16, bf16). */
int bee_panel_amx_type(uint32_t type);
/* Its blocking: panels per weight block, columns per weight block (tests
 * size their matrices from these so that every boundary is crossed). */
#define BEE_PANEL_AMX_NC 16
#define BEE_PANEL_AMX_KC 512
size_t bee_panel_amx_act_bytes(size_t n_tok, size_t cols);
void bee_panel_amx_act_fill(uint16_t *h, size_t cols, const float *x, size_t t0, size_t t1);
int bee_panel_amx_matmul(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                         const bee_panel_act *a, float *y, size_t ldy, float div);

#endif
