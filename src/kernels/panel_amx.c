/* AMX path for the prefill of float panel matrices (see panel.h): f32, and
 * f16/bf16 weights, which are split the same way after widening to f32.
 *
 * Why: the FMA units reach ~0.7x of their peak on prefill here; the AMX
 * tile unit multiplies bf16 pairs ~13x faster. f32 accuracy is kept by a
 * three-way split: every f32 value v is hi + mid + lo EXACTLY, each part a
 * bf16 (hi = v with the low 16 bits cleared, mid the same of v - hi, lo the
 * rest, which has at most 8 significant bits; |mid| < 2^-7 |v|, |lo| <
 * 2^-14 |v|). Of the nine part products the six largest are summed (hi.hi,
 * hi.mid, hi.lo, mid.hi, mid.mid, lo.hi); the three dropped add up to less
 * than 2^-20 of |w x| (about 2^-25 on average), a few f32 roundings at
 * worst. (Rounding instead of truncating would halve the parts' bounds at
 * the cost of more work per split; the tests' bound holds either way.) The tile unit forms bf16
 * products exactly and adds them in f32 with round-to-nearest, so each
 * output is an f32 sum in a fixed order: the same for any thread count and
 * for any other tokens sharing the call (each token is a row of its own).
 * It differs from the FMA path's sum in the last bits, which is why the
 * caller picks this path per prompt, never per batch (model/linear.h).
 *
 * Loop (per thread, panels [p0, p1)): for NC panels at a time and KC
 * columns at a time, the weights are split once into a buffer that stays in
 * L2 (NC * KC * 6 bytes), then every 32 tokens x 32 outputs run over it with
 * four accumulator tiles, resuming the partial sums the previous column
 * block left in a per-thread buffer; the last block divides and stores. */
#include "kernels/panel.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "util/types.h"

#if defined(__x86_64__) && defined(__linux__)

#include <immintrin.h>
#include <pthread.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,amx-tile,amx-bf16")))
#define P BEE_PANEL_ROWS
#define KS 32               /* columns per tile step (16 bf16 pairs) */
#define TILE_BYTES 1024     /* 16 rows of 64 bytes */
#define NC BEE_PANEL_AMX_NC /* panels per weight block */
#define KCS (BEE_PANEL_AMX_KC / KS) /* tile steps per weight block */

/* ================================================================ availability */

static int g_amx;
static pthread_once_t g_amx_once = PTHREAD_ONCE_INIT;

static int env_off(void) {
    const char *e = getenv("BEE_AMX");
    return e && (!strcmp(e, "0") || !strcasecmp(e, "off") || !strcasecmp(e, "no"));
}

static void amx_init(void) {
    const bee_cpu_info *c = bee_cpu_info_get();
    if (!c->amx_tile || !c->amx_bf16 || bee_cpu_level() < BEE_CPU_AVX512 || env_off()) return;
    /* Linux hands out the 8 KiB tile state only on request (once per process) */
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    g_amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int bee_panel_amx(void) {
    pthread_once(&g_amx_once, amx_init);
    return g_amx;
}

int bee_panel_amx_type(uint32_t type) {
    return bee_panel_amx() && (type == BEE_TYPE_F32 || type == BEE_TYPE_F16 || type == BEE_TYPE_BF16);
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* Tiles 0-3: sums (token block i, panel j) at 2i + j; 4, 5: activations of
 * the two token blocks; 6, 7: weights of the two panels. All 16 x 64 bytes. */
TGT static void tiles_begin(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) cfg.rows[i] = 16, cfg.colsb[i] = 64;
    _tile_loadconfig(&cfg);
}

/* ================================================================ the split */

/* The three parts of 32 values (two vectors) as bf16, packed by idx. */
TGT static inline void split3(__m512 v0, __m512 v1, __m512i idx, __m512i out[3]) {
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    __m512 h0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v0), hi_mask));
    __m512 h1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v1), hi_mask));
    __m512 r0 = _mm512_sub_ps(v0, h0), r1 = _mm512_sub_ps(v1, h1); /* exact */
    __m512 m0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r0), hi_mask));
    __m512 m1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r1), hi_mask));
    __m512 l0 = _mm512_sub_ps(r0, m0), l1 = _mm512_sub_ps(r1, m1); /* exact, low 16 bits zero */
    out[0] = _mm512_permutex2var_epi16(_mm512_castps_si512(h0), idx, _mm512_castps_si512(h1));
    out[1] = _mm512_permutex2var_epi16(_mm512_castps_si512(m0), idx, _mm512_castps_si512(m1));
    out[2] = _mm512_permutex2var_epi16(_mm512_castps_si512(l0), idx, _mm512_castps_si512(l1));
}

/* Activations: the high halves in order (words 1, 3, ..., 31 of v0, then of v1). */
TGT static __m512i act_index(void) {
    uint16_t ix[32];
    for (int i = 0; i < 32; i++) ix[i] = (uint16_t)(i < 16 ? 2 * i + 1 : 32 + 2 * (i - 16) + 1);
    return _mm512_loadu_si512(ix);
}

/* Weights: pairs (column k, column k + 1) per output row, as the tile unit
 * wants its second operand. */
TGT static __m512i weight_index(void) {
    uint16_t ix[32];
    for (int n = 0; n < 16; n++) ix[2 * n] = (uint16_t)(2 * n + 1), ix[2 * n + 1] = (uint16_t)(32 + 2 * n + 1);
    return _mm512_loadu_si512(ix);
}

size_t bee_panel_amx_act_bytes(size_t n_tok, size_t cols) {
    size_t ntb = (n_tok + 15) / 16, nkb = (cols + KS - 1) / KS;
    return ntb * nkb * 3 * TILE_BYTES;
}

TGT void bee_panel_amx_act_fill(uint16_t *h, size_t cols, const float *x, size_t t0, size_t t1) {
    size_t nkb = (cols + KS - 1) / KS;
    __m512i idx = act_index();
    for (size_t t = t0; t < t1; t++) {
        const float *xt = x + t * cols;
        uint8_t *row = (uint8_t *)h + (t / 16) * nkb * 3 * TILE_BYTES + (t % 16) * 64;
        for (size_t kb = 0; kb < nkb; kb++) {
            size_t k = kb * KS, left = cols - k;
            __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? 0xffff : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            __m512i parts[3];
            split3(_mm512_maskz_loadu_ps(m0, xt + k), _mm512_maskz_loadu_ps(m1, xt + k + 16), idx, parts);
            for (int s = 0; s < 3; s++) _mm512_storeu_si512(row + (kb * 3 + (size_t)s) * TILE_BYTES, parts[s]);
        }
    }
}

/* Parts of a weight of this type: f32 needs three, f16 (11 significant
 * bits) two, bf16 one; the products with parts that are always zero are
 * skipped. */
static int weight_parts(uint32_t type) { return type == BEE_TYPE_F32 ? 3 : type == BEE_TYPE_F16 ? 2 : 1; }

/* Column k of a panel (16 rows) as f32. */
TGT static inline __m512 load_column(uint32_t type, const uint8_t *pw, size_t k) {
    if (type == BEE_TYPE_F32) return _mm512_loadu_ps(pw + k * P * 4);
    __m256i h = _mm256_loadu_si256((const __m256i *)(pw + k * P * 2));
    if (type == BEE_TYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Weights of panels [0, nq) from pw (pb bytes apart), tile steps [kb0, kb0 +
 * nks): panel j, part s, step ks at buf + ((j * 3 + s) * nks + ks) * 1 KiB. */
TGT static void split_weights(uint32_t type, const uint8_t *pw, size_t pb, size_t nq, size_t cols, size_t kb0,
                              size_t nks, uint8_t *buf) {
    __m512i idx = weight_index();
    int parts = weight_parts(type);
    for (size_t j = 0; j < nq; j++) {
        const uint8_t *w = pw + j * pb;
        for (size_t ks = 0; ks < nks; ks++)
            for (size_t r = 0; r < 16; r++) {
                size_t k = (kb0 + ks) * KS + 2 * r;
                __m512 v0 = k < cols ? load_column(type, w, k) : _mm512_setzero_ps();
                __m512 v1 = k + 1 < cols ? load_column(type, w, k + 1) : _mm512_setzero_ps();
                __m512i out[3];
                split3(v0, v1, idx, out);
                for (int s = 0; s < parts; s++)
                    _mm512_storeu_si512(buf + ((j * 3 + (size_t)s) * nks + ks) * TILE_BYTES + r * 64, out[s]);
            }
    }
}

/* ================================================================ tile kernel */

/* One column block of sums for token blocks (2 when two_t) and panels (2
 * when two_p): a[s] / b[s] are the first tiles of part s, a_step / b_step
 * bytes per tile step, a1 / b1 the offset of the second token block /
 * panel. Sums come from and go back to c (tile (i, j) at c + i * c1 + j *
 * 1 KiB), from zero when first. */
#define DP()                                                                                                           \
    do {                                                                                                               \
        _tile_dpbf16ps(0, 4, 6);                                                                                       \
        if (two_p) _tile_dpbf16ps(1, 4, 7);                                                                            \
        if (two_t) _tile_dpbf16ps(2, 5, 6);                                                                            \
        if (two_t && two_p) _tile_dpbf16ps(3, 5, 7);                                                                   \
    } while (0)
#define LOAD_A(p)                                                                                                      \
    do {                                                                                                               \
        _tile_loadd(4, (p), 64);                                                                                       \
        if (two_t) _tile_loadd(5, (p) + a1, 64);                                                                       \
    } while (0)
#define LOAD_B(p)                                                                                                      \
    do {                                                                                                               \
        _tile_loadd(6, (p), 64);                                                                                       \
        if (two_p) _tile_loadd(7, (p) + b1, 64);                                                                       \
    } while (0)

typedef struct {
    const uint8_t *a[3], *b[3];
    size_t a_step, b_step, a1, b1, c1;
    size_t nks;
    int wp; /* weight parts */
} tile_args;

TGT static void tile_block(const tile_args *t, uint8_t *c, int first, int two_t, int two_p) {
    size_t a1 = t->a1, b1 = t->b1;
    int wp = t->wp;
    if (first) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else {
        _tile_loadd(0, c, 64);
        if (two_p) _tile_loadd(1, c + TILE_BYTES, 64);
        if (two_t) _tile_loadd(2, c + t->c1, 64);
        if (two_t && two_p) _tile_loadd(3, c + t->c1 + TILE_BYTES, 64);
    }
    for (size_t ks = 0; ks < t->nks; ks++) {
        const uint8_t *ah = t->a[0] + ks * t->a_step, *am = t->a[1] + ks * t->a_step, *al = t->a[2] + ks * t->a_step;
        const uint8_t *bh = t->b[0] + ks * t->b_step, *bm = t->b[1] + ks * t->b_step, *bl = t->b[2] + ks * t->b_step;
        /* activation part . weight part: h.h, h.m, h.l, m.m, m.h, l.h (f32:
         * 16 loads for 24 products), without the weight parts the type lacks */
        LOAD_A(ah);
        LOAD_B(bh);
        DP();
        if (wp >= 2) {
            LOAD_B(bm);
            DP();
        }
        if (wp >= 3) {
            LOAD_B(bl);
            DP();
        }
        LOAD_A(am);
        if (wp >= 2) {
            if (wp >= 3) LOAD_B(bm);
            DP();
            LOAD_B(bh);
        }
        DP();
        LOAD_A(al);
        DP();
    }
    _tile_stored(0, c, 64);
    if (two_p) _tile_stored(1, c + TILE_BYTES, 64);
    if (two_t) _tile_stored(2, c + t->c1, 64);
    if (two_t && two_p) _tile_stored(3, c + t->c1 + TILE_BYTES, 64);
}

/* Tokens [t0, t0 + nt) x rows [0, nr) of a finished sum tile to y / div. */
TGT static void store_tile(const float *c, float *y, size_t ldy, size_t nt, size_t nr, float div) {
    __mmask16 m = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __m512 d = _mm512_set1_ps(div);
    for (size_t t = 0; t < nt; t++)
        _mm512_mask_storeu_ps(y + t * ldy, m, _mm512_div_ps(_mm512_loadu_ps(c + t * 16), d));
}

/* ================================================================ driver */

typedef struct {
    uint32_t type;
    const uint8_t *pw;
    size_t pb, p0, nq;   /* first panel's bytes, its index, panels in the block */
    uint64_t n_rows;
    const bee_panel_act *a;
    size_t ntb, nkb;     /* token blocks, column steps */
    uint8_t *wbuf, *sums;
    float *y;
    size_t ldy;
    float div;
    const uint8_t *next; /* the next block's weights (first panel, first column), or NULL */
    size_t next_nq, next_bytes; /* its panels, and bytes per panel */
} amx_run;

/* Part i of n of the next block's weights into L2, spread over the tile
 * calls of this block: the split then finds them there, instead of waiting
 * on DRAM while the tile unit idles. */
static void prefetch_next(const amx_run *r, size_t i, size_t n) {
    if (!r->next) return;
    size_t per_panel = r->next_bytes / 64, lines = r->next_nq * per_panel;
    size_t l0 = lines * i / n, l1 = lines * (i + 1) / n;
    for (size_t l = l0; l < l1; l++)
        _mm_prefetch((const char *)(r->next + (l / per_panel) * r->pb + (l % per_panel) * 64), _MM_HINT_T1);
}

static size_t rows_of(uint64_t n_rows, size_t p) { return n_rows - p * P < P ? (size_t)(n_rows - p * P) : P; }

TGT static void finish_pair(const amx_run *r, size_t tb, size_t j, int two_t, int two_p, const uint8_t *c) {
    for (int i = 0; i <= two_t; i++)
        for (int h = 0; h <= two_p; h++) {
            size_t t0 = (tb + (size_t)i) * 16, p = r->p0 + j + (size_t)h;
            if (t0 >= r->a->n_tok) continue;
            size_t nt = r->a->n_tok - t0 < 16 ? r->a->n_tok - t0 : 16;
            const float *src = (const float *)(c + (size_t)i * r->nq * TILE_BYTES + (size_t)h * TILE_BYTES);
            store_tile(src, r->y + t0 * r->ldy + p * P, r->ldy, nt, rows_of(r->n_rows, p), r->div);
        }
}

TGT static void run_block(const amx_run *r, size_t kb0, size_t nks) {
    size_t a_tb = r->nkb * 3 * TILE_BYTES; /* bytes per token block of activations */
    int first = kb0 == 0, last = kb0 + nks == r->nkb;
    size_t call = 0, calls = ((r->ntb + 1) / 2) * ((r->nq + 1) / 2);
    for (size_t tb = 0; tb < r->ntb; tb += 2) {
        int two_t = tb + 1 < r->ntb;
        const uint8_t *ab = (const uint8_t *)r->a->h + tb * a_tb + kb0 * 3 * TILE_BYTES;
        for (size_t j = 0; j < r->nq; j += 2) {
            int two_p = j + 1 < r->nq;
            const uint8_t *wb = r->wbuf + j * 3 * nks * TILE_BYTES;
            tile_args t = {{ab, ab + TILE_BYTES, ab + 2 * TILE_BYTES},
                           {wb, wb + nks * TILE_BYTES, wb + 2 * nks * TILE_BYTES},
                           3 * TILE_BYTES, TILE_BYTES, a_tb, 3 * nks * TILE_BYTES, r->nq * TILE_BYTES, nks,
                           weight_parts(r->type)};
            uint8_t *c = r->sums + (tb * r->nq + j) * TILE_BYTES;
            prefetch_next(r, call++, calls);
            tile_block(&t, c, first, two_t, two_p);
            if (last) finish_pair(r, tb, j, two_t, two_p, c);
        }
    }
}

/* The block after (r->p0, kb): the next columns of these panels, else the
 * first columns of the next panels before p1. */
static void set_next(amx_run *r, size_t p1, size_t kb) {
    size_t q = r->p0, k = kb;
    if (kb >= r->nkb) q += r->nq, k = 0;
    if (q >= p1) {
        r->next = NULL;
        return;
    }
    size_t nks = r->nkb - k < KCS ? r->nkb - k : KCS, cols_left = r->a->cols - k * KS;
    size_t ncols = nks * KS < cols_left ? nks * KS : cols_left;
    size_t es = r->type == BEE_TYPE_F32 ? 4 : 2;
    r->next = (const uint8_t *)r->pw + (q - r->p0) * r->pb + k * KS * P * es;
    r->next_nq = p1 - q < NC ? p1 - q : NC;
    r->next_bytes = ncols * P * es;
}

TGT int bee_panel_amx_matmul(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                             const bee_panel_act *a, float *y, size_t ldy, float div) {
    if (!bee_panel_amx() || !a->h || !bee_panel_amx_type(type)) return -1;
    size_t cols = a->cols, pb = cols * P * (type == BEE_TYPE_F32 ? 4 : 2);
    amx_run r = {type, NULL, pb, 0, 0, n_rows, a, (a->n_tok + 15) / 16, (cols + KS - 1) / KS, NULL, NULL, y, ldy, div,
                 NULL, 0, 0};
    r.wbuf = aligned_alloc(64, NC * 3 * KCS * TILE_BYTES);
    r.sums = aligned_alloc(64, ((r.ntb + 1) & ~(size_t)1) * NC * TILE_BYTES);
    if (!r.wbuf || !r.sums) {
        free(r.wbuf), free(r.sums);
        return -1;
    }
    tiles_begin();
    for (size_t q = p0; q < p1; q += NC) {
        r.pw = (const uint8_t *)panel + q * pb, r.p0 = q, r.nq = p1 - q < NC ? p1 - q : NC;
        for (size_t kb0 = 0; kb0 < r.nkb; kb0 += KCS) {
            size_t nks = r.nkb - kb0 < KCS ? r.nkb - kb0 : KCS;
            set_next(&r, p1, kb0 + nks);
            split_weights(type, r.pw, pb, r.nq, cols, kb0, nks, r.wbuf);
            run_block(&r, kb0, nks);
        }
    }
    _tile_release();
    free(r.wbuf), free(r.sums);
    return 0;
}

#else

int bee_panel_amx(void) { return 0; }
int bee_panel_amx_type(uint32_t type) { return (void)type, 0; }
size_t bee_panel_amx_act_bytes(size_t n_tok, size_t cols) { return (void)n_tok, (void)cols, 0; }
void bee_panel_amx_act_fill(uint16_t *h, size_t cols, const float *x, size_t t0, size_t t1) {
    (void)h, (void)cols, (void)x, (void)t0, (void)t1;
}
int bee_panel_amx_matmul(uint32_t type, const void *panel, uint64_t n_rows, size_t p0, size_t p1,
                         const bee_panel_act *a, float *y, size_t ldy, float div) {
    (void)type, (void)panel, (void)n_rows, (void)p0, (void)p1, (void)a, (void)y, (void)ldy, (void)div;
    return -1;
}

#endif
