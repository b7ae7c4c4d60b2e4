#include "kernels/panel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/quant.h"
#include "util/error.h"
#include "util/types.h"

#define P BEE_PANEL_ROWS

/* ================================================================ layout */

int bee_panel_has_type(uint32_t type) {
    return type == BEE_TYPE_F32 || type == BEE_TYPE_F16 || type == BEE_TYPE_BF16 || type == BEE_TYPE_Q8_0 ||
           type == BEE_TYPE_Q4_0 || type == BEE_TYPE_Q4_1;
}

int bee_panel_fast(uint32_t type) { return bee_panel_has_type(type) && bee_panel_tile_avx512(type) != NULL; }

static int is_int8(uint32_t type) { return type == BEE_TYPE_Q8_0 || type == BEE_TYPE_Q4_0 || type == BEE_TYPE_Q4_1; }

/* Bytes of one 32-column block of a panel (int8 types). */
static size_t block_bytes(uint32_t type) { return type == BEE_TYPE_Q8_0 ? 544 : type == BEE_TYPE_Q4_0 ? 288 : 320; }

/* Offset of the 16 fp16 scales in a block (the Q4_1 minimums follow them). */
static size_t scale_offset(uint32_t type) { return type == BEE_TYPE_Q8_0 ? 512 : 256; }

static size_t elem_bytes(uint32_t type) { return type == BEE_TYPE_F32 ? 4 : 2; }

static size_t panel_bytes(uint32_t type, uint64_t cols) {
    return is_int8(type) ? (size_t)(cols / 32) * block_bytes(type) : (size_t)cols * P * elem_bytes(type);
}

size_t bee_panel_nbytes(uint32_t type, uint64_t rows, uint64_t cols) {
    if (!bee_panel_has_type(type) || (is_int8(type) && cols % 32)) return 0;
    return (size_t)((rows + P - 1) / P) * panel_bytes(type, cols);
}

static void pack_float(uint32_t type, const uint8_t *src, uint64_t rows, uint64_t cols, uint8_t *dst) {
    size_t es = elem_bytes(type), rb = (size_t)cols * es;
    for (uint64_t p = 0; p * P < rows; p++) {
        uint8_t *pd = dst + p * panel_bytes(type, cols);
        for (uint64_t k = 0; k < cols; k++)
            for (int r = 0; r < P; r++) {
                uint64_t row = p * P + (uint64_t)r;
                uint8_t *e = pd + ((size_t)k * P + (size_t)r) * es;
                if (row < rows) memcpy(e, src + row * rb + k * es, es);
                else memset(e, 0, es);
            }
    }
}

/* Quants of row `row`, block b, as integers (0 for padding rows); returns the
 * fp16 scale, and the fp16 minimum in *m (Q4_1; 0 otherwise). */
static uint16_t block_quants(uint32_t type, const uint8_t *src, uint64_t rows, uint64_t cols, uint64_t row,
                             uint64_t b, int q[32], uint16_t *m) {
    *m = 0;
    if (row >= rows) {
        memset(q, 0, 32 * sizeof *q);
        return 0;
    }
    size_t bb = type == BEE_TYPE_Q8_0 ? BEE_Q8_0_BYTES : type == BEE_TYPE_Q4_0 ? BEE_Q4_0_BYTES : BEE_Q4_1_BYTES;
    const uint8_t *blk = src + row * (cols / 32) * bb + b * bb;
    uint16_t d = (uint16_t)(blk[0] | blk[1] << 8);
    const uint8_t *qs = blk + 2;
    if (type == BEE_TYPE_Q4_1) *m = (uint16_t)(blk[2] | blk[3] << 8), qs = blk + 4;
    for (int i = 0; i < 32; i++)
        q[i] = type == BEE_TYPE_Q8_0 ? (int8_t)qs[i] : (i < 16 ? qs[i] & 15 : qs[i - 16] >> 4);
    return d;
}

static void pack_int8(uint32_t type, const uint8_t *src, uint64_t rows, uint64_t cols, uint8_t *dst) {
    size_t bb = block_bytes(type), nb = (size_t)cols / 32, sc = scale_offset(type);
    for (uint64_t p = 0; p * P < rows; p++)
        for (size_t b = 0; b < nb; b++) {
            uint8_t *o = dst + (p * nb + b) * bb;
            memset(o, 0, bb);
            for (int r = 0; r < P; r++) {
                int q[32];
                uint16_t m, d = block_quants(type, src, rows, cols, p * P + (uint64_t)r, b, q, &m);
                o[sc + 2 * r] = (uint8_t)d, o[sc + 2 * r + 1] = (uint8_t)(d >> 8);
                if (type == BEE_TYPE_Q4_1) o[sc + 2 * P + 2 * r] = (uint8_t)m, o[sc + 2 * P + 2 * r + 1] = (uint8_t)(m >> 8);
                for (int i = 0; i < 32; i++) {
                    if (type == BEE_TYPE_Q8_0) {
                        o[(i / 4) * 64 + 4 * r + i % 4] = (uint8_t)(q[i] + 128);
                    } else { /* weight i: chunk (i % 16) / 4, high nibble when i >= 16 */
                        uint8_t *byte = &o[((i % 16) / 4) * 64 + 4 * r + i % 4];
                        *byte |= (uint8_t)(i < 16 ? q[i] : q[i] << 4);
                    }
                }
            }
        }
}

void bee_panel_pack(uint32_t type, const void *src, uint64_t rows, uint64_t cols, void *dst) {
    if (is_int8(type)) pack_int8(type, src, rows, cols, dst);
    else pack_float(type, src, rows, cols, dst);
}

void bee_panel_row(uint32_t type, const void *panel, uint64_t cols, uint64_t r, float *out) {
    const uint8_t *pd = (const uint8_t *)panel + (r / P) * panel_bytes(type, cols);
    int lane = (int)(r % P);
    if (!is_int8(type)) {
        size_t es = elem_bytes(type);
        for (uint64_t k = 0; k < cols; k++) {
            const uint8_t *e = pd + ((size_t)k * P + (size_t)lane) * es;
            if (type == BEE_TYPE_F32) memcpy(&out[k], e, 4);
            else {
                uint16_t h = (uint16_t)(e[0] | e[1] << 8);
                out[k] = type == BEE_TYPE_F16 ? bee_f16_to_f32(h) : bee_bf16_to_f32(h);
            }
        }
        return;
    }
    size_t bb = block_bytes(type), sc = scale_offset(type);
    for (uint64_t b = 0; b < cols / 32; b++) {
        const uint8_t *blk = pd + b * bb;
        float d = bee_f16_to_f32((uint16_t)(blk[sc + 2 * lane] | blk[sc + 2 * lane + 1] << 8));
        float m = type != BEE_TYPE_Q4_1 ? 0.0f /* no minimums in the block */
                                        : bee_f16_to_f32((uint16_t)(blk[sc + 2 * P + 2 * lane] | blk[sc + 2 * P + 2 * lane + 1] << 8));
        for (int i = 0; i < 32; i++) {
            int q;
            if (type == BEE_TYPE_Q8_0) q = (int)blk[(i / 4) * 64 + 4 * lane + i % 4] - 128;
            else {
                uint8_t byte = blk[((i % 16) / 4) * 64 + 4 * lane + i % 4];
                q = (i < 16 ? byte & 15 : byte >> 4) - (type == BEE_TYPE_Q4_0 ? 8 : 0);
            }
            out[b * 32 + (uint64_t)i] = type == BEE_TYPE_Q4_1 ? (float)q * d + m : (float)q * d;
        }
    }
}

/* ================================================================ activations */

#define TL BEE_PANEL_TILE

static int act_init_split(bee_panel_act *a) {
    size_t n = bee_panel_amx_act_bytes(a->n_tok, a->cols), tail = bee_panel_amx_act_bytes(1, a->cols);
    if (!(a->h = aligned_alloc(64, n))) return bee_fail("out of memory");
    /* the last token block runs whole: its unused rows must be finite */
    memset((uint8_t *)a->h + n - tail, 0, tail);
    return 0;
}

int bee_panel_act_init(bee_panel_act *a, uint32_t wtype, size_t n_tok, size_t cols, unsigned flags) {
    memset(a, 0, sizeof *a);
    a->wtype = wtype, a->n_tok = n_tok, a->cols = cols;
    if ((flags & BEE_PANEL_SPLIT) && n_tok > 0 && bee_panel_amx_type(wtype)) return act_init_split(a);
    size_t n = (n_tok + TL - 1) / TL * TL; /* whole tiles */
    if (n == 0) n = TL;
    if (!is_int8(wtype)) {
        if (!(a->f = malloc(n * cols * sizeof *a->f + 64))) return bee_fail("out of memory");
        /* the pair kernel runs a ragged last tile whole: its unused lanes
         * must hold finite values (zeros: no subnormal slow path either) */
        memset(a->f + (n - TL) * cols, 0, TL * cols * sizeof *a->f);
        return 0;
    }
    size_t nb = cols / 32;
    a->q = malloc(n * cols + 64);
    a->d = malloc(n * nb * sizeof *a->d + 64);
    a->c = malloc(n * nb * sizeof *a->c + 64);
    if (!a->q || !a->d || !a->c) {
        bee_panel_act_free(a);
        return bee_fail("out of memory");
    }
    return 0;
}

void bee_panel_act_fill(bee_panel_act *a, const float *x, size_t t0, size_t t1) {
    size_t cols = a->cols, nb = cols / 32;
    if (a->h) {
        bee_panel_amx_act_fill(a->h, cols, x, t0, t1);
        return;
    }
    if (!is_int8(a->wtype)) {
        for (size_t t = t0; t < t1; t++) {
            float *f = a->f + (t / TL) * cols * TL + t % TL;
            for (size_t k = 0; k < cols; k++) f[k * TL] = x[t * cols + k];
        }
        return;
    }
    /* the correction c = -off * sum(q): the weights' offset for Q8_0/Q4_0; for
     * Q4_1 (off = -1) the plain sum, which its minimums multiply */
    int off = a->wtype == BEE_TYPE_Q8_0 ? 128 : a->wtype == BEE_TYPE_Q4_0 ? 8 : -1;
    bee_panel_quant_fn fast = bee_panel_quant_avx512();
    for (size_t t = t0; t < t1; t++) {
        size_t base = (t / TL) * nb * TL + t % TL;
        (fast ? fast : bee_panel_quant_ref)(x + t * cols, nb, a->q + base * 32, TL * 32, a->d + base, a->c + base, TL, off);
    }
}

void bee_panel_quant_ref(const float *x, size_t nb, int8_t *q, size_t qs, float *d, int32_t *c, size_t ds, int off) {
    for (size_t b = 0; b < nb; b++) {
        uint8_t blk[BEE_Q8_0_BYTES];
        bee_quantize_block_q8_0(x + 32 * b, blk);
        memcpy(q + b * qs, blk + 2, 32);
        int s = 0;
        for (int i = 0; i < 32; i++) s += q[b * qs + (size_t)i];
        d[b * ds] = bee_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
        c[b * ds] = -off * s;
    }
}

void bee_panel_act_free(bee_panel_act *a) {
    free(a->f), free(a->q), free(a->d), free(a->c), free(a->h);
    memset(a, 0, sizeof *a);
}

/* ================================================================ reference kernel */

static void tile_ref(uint32_t type, const uint8_t *pw, const bee_panel_act *a, size_t t0, int T, float *out) {
    size_t cols = a->cols;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < P; r++) {
            float y = 0;
            if (!is_int8(type)) {
                size_t es = elem_bytes(type);
                size_t tt = t0 + (size_t)t;
                const float *x = a->f + (tt / TL) * cols * TL + tt % TL; /* element k at x[k * TL] */
                for (size_t k = 0; k < cols; k++) {
                    const uint8_t *e = pw + (k * P + (size_t)r) * es;
                    float w;
                    if (type == BEE_TYPE_F32) memcpy(&w, e, 4);
                    else {
                        uint16_t h = (uint16_t)(e[0] | e[1] << 8);
                        w = type == BEE_TYPE_F16 ? bee_f16_to_f32(h) : bee_bf16_to_f32(h);
                    }
                    y = fmaf(w, x[k * TL], y);
                }
            } else {
                size_t nb = cols / 32, bb = block_bytes(type), sc = scale_offset(type), tt = t0 + (size_t)t;
                size_t base = (tt / TL) * nb * TL + tt % TL; /* block b at base + b * TL */
                int q41 = type == BEE_TYPE_Q4_1;
                for (size_t b = 0; b < nb; b++) {
                    const uint8_t *blk = pw + b * bb;
                    const int8_t *x = a->q + (base + b * TL) * 32;
                    int32_t c = a->c[base + b * TL], I = q41 ? 0 : c;
                    for (int i = 0; i < 32; i++) {
                        int u;
                        if (type == BEE_TYPE_Q8_0) u = blk[(i / 4) * 64 + 4 * r + i % 4];
                        else {
                            uint8_t byte = blk[((i % 16) / 4) * 64 + 4 * r + i % 4];
                            u = i < 16 ? byte & 15 : byte >> 4;
                        }
                        I += u * x[i];
                    }
                    float dw = bee_f16_to_f32((uint16_t)(blk[sc + 2 * r] | blk[sc + 2 * r + 1] << 8));
                    float dx = a->d[base + b * TL];
                    y = fmaf((float)I, dw * dx, y);
                    if (q41) y = fmaf(bee_f16_to_f32((uint16_t)(blk[sc + 32 + 2 * r] | blk[sc + 33 + 2 * r] << 8)),
                                      dx * (float)c, y);
                }
            }
            out[t * P + r] = y;
        }
}

/* ================================================================ driver */

static void scatter(const float *out, size_t t0, int T, size_t p, size_t nr, float *y, size_t ldy, float div) {
    for (int t = 0; t < T; t++)
        for (size_t r = 0; r < nr; r++) y[(t0 + (size_t)t) * ldy + p * P + r] = out[t * P + (int)r] / div;
}

typedef struct {
    bee_panel_tile_fn tile;
    bee_panel_pair_fn pair;
} panel_kernels;

static size_t rows_in(uint64_t n_rows, size_t p) { return n_rows - p * P < P ? (size_t)(n_rows - p * P) : P; }

static void matmul_tiles(uint32_t type, const panel_kernels *kf, const uint8_t *pw, size_t p, uint64_t n_rows,
                         const bee_panel_act *a, float *y, size_t ldy, float div) {
    float out[BEE_PANEL_TILE * P];
    for (size_t t0 = 0; t0 < a->n_tok; t0 += BEE_PANEL_TILE) {
        int T = a->n_tok - t0 < BEE_PANEL_TILE ? (int)(a->n_tok - t0) : BEE_PANEL_TILE;
        if (kf->tile) kf->tile(pw, a, t0, T, out);
        else tile_ref(type, pw, a, t0, T, out);
        scatter(out, t0, T, p, rows_in(n_rows, p), y, ldy, div);
    }
}

/* Prefill of float types takes two panels at a time where it can, so that
 * each broadcast activation feeds two FMAs (14 loads per 24 FMAs instead of
 * 13 per 12). Each output's FMA chain is unchanged.
 *
 * Cache blocking (per thread, 2 MiB of L2 and 48 KiB of L1 here): the pair
 * kernel needs 128 bytes of weights and 48 of activations per 24 FMAs, too
 * much to stream from L3 (512 tokens of 4096 columns are 8 MiB). So a group
 * of PAIR_GROUP pairs runs column block by column block (PAIR_KC columns):
 * within a block, every tile of a chunk of up to PAIR_CHUNK tiles passes over
 * one pair's weights (PAIR_KC * 128 bytes, in L1), then the next pair's; the
 * chunk's activations of the block (256 KiB) stay in L2 for all the pairs of
 * the group, and so do the group's partial sums (512 KiB). The kernel resumes
 * each output's chain where the previous block left it, in k order, so the
 * results are those of the unblocked kernel bit for bit; the last block
 * divides and stores them into y itself, as the scatter would (a separate
 * pass cost 5 % of the prefill). While a pair runs,
 * its first tiles prefetch the next pair's weight block into L2: those come
 * from DRAM exactly once. */
#define PAIR_KC BEE_PANEL_PAIR_KC
#define PAIR_GROUP BEE_PANEL_PAIR_GROUP
#define PAIR_CHUNK BEE_PANEL_PAIR_CHUNK

typedef struct {
    const panel_kernels *kf;
    const uint8_t *pw; /* first panel of the pairs */
    size_t pb, kb;     /* bytes of a panel, of one column of a panel */
    size_t p;          /* index of the first panel */
    uint64_t n_rows;
    const bee_panel_act *a;
    float *y;
    size_t ldy;
    float div;
    float *sums;          /* partial sums: (pair, tile, panel) -> TL * P floats */
    size_t group, chunk;  /* pairs and tiles a block of sums holds */
} pair_run;

static float *pair_sums(const pair_run *r, size_t j, size_t i, int h) {
    return r->sums + ((j * r->chunk + i) * 2 + (size_t)h) * TL * P;
}

/* Where tile i of a pair prefetches the next pair's block nx (its two
 * panels' columns [k0, k1), each call taking (k1 - k0) / 4 lines): the
 * first tiles share the lines out, so few requests are in flight at once. */
static const uint8_t *pair_prefetch(const pair_run *r, const uint8_t *nx, size_t i, size_t k0, size_t k1) {
    size_t per = (k1 - k0) / 4, lines = ((k1 - k0) * r->kb + 63) / 64;
    if (!nx || !per) return NULL;
    size_t calls = (lines + per - 1) / per, h = i / calls; /* calls per panel; panel h of the pair */
    return h < 2 ? nx + h * r->pb + (i % calls) * per * 64 : NULL;
}

/* One column block [k0, k1) of pairs [g0, g0 + gn) over tiles [c0, c0 + nt);
 * next is the weight block the caller runs after this one (NULL: none). */
static void pair_block(const pair_run *r, size_t g0, size_t gn, size_t c0, size_t nt, size_t k0, size_t k1,
                       const uint8_t *next) {
    int last = k1 == r->a->cols;
    for (size_t j = 0; j < gn; j++) {
        const uint8_t *pw = r->pw + 2 * (g0 + j) * r->pb;
        const uint8_t *nx = j + 1 < gn ? pw + 2 * r->pb + k0 * r->kb : next;
        size_t p = r->p + 2 * (g0 + j);
        for (size_t i = 0; i < nt; i++) {
            size_t t0 = (c0 + i) * TL;
            /* the last block stores the results itself: no second pass */
            bee_panel_dst dst = {r->y + t0 * r->ldy + p * P, r->ldy, r->div,
                                 r->a->n_tok - t0 < TL ? (int)(r->a->n_tok - t0) : TL, (int)rows_in(r->n_rows, p),
                                 (int)rows_in(r->n_rows, p + 1)};
            r->kf->pair(pw, pw + r->pb, r->a, t0, k0, k1, pair_sums(r, j, i, 0), pair_sums(r, j, i, 1),
                        pair_prefetch(r, nx, i, k0, k1), last ? &dst : NULL);
        }
    }
}

static void pair_group(const pair_run *r, size_t g0, size_t gn, size_t n_pairs, size_t c0, size_t nt) {
    size_t cols = r->a->cols;
    for (size_t k0 = 0; k0 < cols; k0 += PAIR_KC) {
        size_t k1 = cols - k0 < PAIR_KC ? cols : k0 + PAIR_KC;
        const uint8_t *first = r->pw + 2 * g0 * r->pb, *next = NULL;
        if (k1 < cols) next = first + k1 * r->kb;
        else if (g0 + gn < n_pairs) next = r->pw + 2 * (g0 + gn) * r->pb;
        pair_block(r, g0, gn, c0, nt, k0, k1, next);
    }
}

/* Pairs of panels [p, p + 2 n_pairs) over every token. A ragged last tile
 * runs whole on the zeroed lanes bee_panel_act_init leaves (each lane is its
 * own chain, so the real tokens' results do not change): a separate pass of
 * the narrow tile kernel would stream every weight from DRAM once more. The
 * sums buffer is the heap's; without memory, the same loops run one pair and
 * one tile at a time on the stack. */
static void matmul_pairs(const panel_kernels *kf, uint32_t type, const uint8_t *pw, size_t p, size_t n_pairs,
                         uint64_t n_rows, const bee_panel_act *a, float *y, size_t ldy, float div) {
    size_t n_tiles = (a->n_tok + TL - 1) / TL, group = n_pairs < PAIR_GROUP ? n_pairs : PAIR_GROUP;
    size_t chunk = n_tiles < PAIR_CHUNK ? n_tiles : PAIR_CHUNK;
    float one[2 * TL * P];
    float *heap = malloc(group * chunk * sizeof one);
    if (!heap) group = chunk = 1;
    pair_run r = {kf,  pw,   panel_bytes(type, a->cols), P * elem_bytes(type), p, n_rows, a, y, ldy, div,
                  heap ? heap : one, group, chunk};
    for (size_t c0 = 0; c0 < n_tiles; c0 += chunk) {
        size_t nt = n_tiles - c0 < chunk ? n_tiles - c0 : chunk;
        for (size_t g0 = 0; g0 < n_pairs; g0 += group)
            pair_group(&r, g0, n_pairs - g0 < group ? n_pairs - g0 : group, n_pairs, c0, nt);
    }
    free(heap);
}

static void matmul(uint32_t type, const panel_kernels *kf, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                   const bee_panel_act *a, float *y, size_t ldy, float div) {
    size_t pb = panel_bytes(type, a->cols), p = p0;
    const uint8_t *pw = (const uint8_t *)panel;
    if (kf->pair && a->n_tok >= 2 * TL && p1 - p0 >= 2) {
        size_t n_pairs = (p1 - p0) / 2;
        matmul_pairs(kf, type, pw + p0 * pb, p0, n_pairs, n_rows, a, y, ldy, div);
        p += 2 * n_pairs;
    }
    for (; p < p1; p++) matmul_tiles(type, kf, pw + p * pb, p, n_rows, a, y, ldy, div);
}

int bee_panel_matmul(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1, const bee_panel_act *a,
                     float *y, size_t ldy, float div) {
    if (a->h) return bee_panel_amx_matmul(type, panel, n_rows, p0, p1, a, y, ldy, div) ? bee_fail("out of memory") : 0;
    panel_kernels kf = {bee_panel_tile_avx512(type), bee_panel_pair_avx512(type)};
    matmul(type, &kf, panel, n_rows, p0, p1, a, y, ldy, div);
    return 0;
}

void bee_panel_matmul_ref(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                          const bee_panel_act *a, float *y, size_t ldy, float div) {
    panel_kernels kf = {NULL, NULL};
    matmul(type, &kf, panel, n_rows, p0, p1, a, y, ldy, div);
}
