#include "model/init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/convert.h"
#include "model/arch.h"
#include "util/error.h"
#include "util/types.h"

/* Layers that keep attention / FFN in the BMCook-compressed 1B/2B/5B (SPEC §1). */
static const int k_att_kept[] = {0, 2, 8, 9, 14, 16, 17, 20, 21, 24, 26, 29, 31, 33, 39, 41, 44, 46, 47};
static const int k_ffn_kept[] = {0, 1, 2, 3, 5, 8, 9, 11, 12, 14, 16, 18, 20, 24, 26, 29, 31, 33, 35, 39, 41, 44, 46, 47};

static uint8_t *compressed_mask(void) {
    uint8_t *m = malloc(96);
    if (!m) return NULL;
    memset(m, 1, 96);
    for (size_t i = 0; i < sizeof k_att_kept / sizeof k_att_kept[0]; i++) m[2 * k_att_kept[i]] = 0;
    for (size_t i = 0; i < sizeof k_ffn_kept / sizeof k_ffn_kept[0]; i++) m[2 * k_ffn_kept[i] + 1] = 0;
    return m;
}

int bee_init_preset(const char *shape, bee_hparams *hp, uint8_t **mask) {
    static const struct { const char *name; uint32_t dim, heads, dh, ff, layers; int compressed; } k[] = {
        {"tiny", 64, 4, 16, 128, 2, 0},          {"small", 256, 8, 32, 640, 4, 0},
        {"cpm-bee-1b", 4096, 32, 40, 1024, 48, 1}, {"cpm-bee-2b", 4096, 32, 64, 5120, 48, 1},
        {"cpm-bee-5b", 4096, 32, 128, 10240, 48, 1}, {"cpm-bee-10b", 4096, 32, 128, 10240, 48, 0},
    };
    *mask = NULL;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        if (strcmp(shape, k[i].name) != 0) continue;
        memset(hp, 0, sizeof *hp);
        hp->dim = k[i].dim, hp->n_heads = k[i].heads, hp->dim_head = k[i].dh, hp->dim_ff = k[i].ff;
        hp->n_layers = k[i].layers;
        hp->n_buckets = 256, hp->n_seg_buckets = 256, hp->max_distance = 2048;
        hp->eps = 1e-6f, hp->rope_base = 10000.0f, hp->rope_scale = 16.0f, hp->residual_scale = 1.05f;
        hp->half = 1, hp->inv_freq_f16 = 1;
        if (k[i].compressed && !(*mask = compressed_mask())) return bee_fail("out of memory");
        return 0;
    }
    return bee_fail("unknown shape '%s' (tiny, small, cpm-bee-1b, cpm-bee-2b, cpm-bee-5b, cpm-bee-10b)", shape);
}

/* ================================================================ random */

uint64_t bee_rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float bee_rng_normal(uint64_t *s) {
    double u1 = ((double)(bee_rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(bee_rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Weights ~ N(0, 1) (every CPM-Bee linear divides by sqrt(in), so unit
 * variance is the natural scale); norms = 1 + 0.1 N(0, 1). */
static void *random_tensor(uint64_t n, uint32_t type, int is_norm, uint64_t *rng) {
    uint8_t *p = malloc(bee_type_nbytes(type, n) + 1);
    float chunk[4096]; /* a multiple of every block size */
    if (!p) return NULL;
    for (uint64_t i = 0; i < n; i += 4096) {
        size_t k = n - i < 4096 ? (size_t)(n - i) : 4096;
        for (size_t j = 0; j < k; j++) chunk[j] = is_norm ? 1.0f + 0.1f * bee_rng_normal(rng) : bee_rng_normal(rng);
        bee_quantize_row(type, chunk, p + bee_type_nbytes(type, i), k);
    }
    return p;
}

typedef struct {
    bee_model_tensor *v;
    char **names;
    size_t n;
} tensors;

static int add(tensors *t, const char *name, uint64_t rows, uint64_t cols, uint32_t type, int is_norm, uint64_t *rng) {
    uint32_t ty = rows == 1 ? BEE_TYPE_F32 : type; /* norms and biases stay f32 */
    void *data = random_tensor(rows * cols, ty, is_norm, rng);
    char *nm = strdup(name);
    if (!data || !nm) {
        free(data);
        free(nm);
        return bee_fail("out of memory");
    }
    t->names[t->n] = nm;
    t->v[t->n++] = (bee_model_tensor){nm, ty, rows == 1 ? 1 : 2, {cols, rows}, data, bee_type_nbytes(ty, rows * cols)};
    return 0;
}

static int add_layer(tensors *t, const bee_hparams *hp, const uint8_t *mask, int i, uint32_t type, uint64_t *rng) {
    char nm[96];
    uint64_t d = hp->dim, A = (uint64_t)hp->n_heads * hp->dim_head, F = hp->dim_ff;
#define N(fmt) (snprintf(nm, sizeof nm, fmt, i), nm)
    if (!(mask && mask[2 * i]) &&
        (add(t, N(BEE_T_ATTN_NORM), 1, d, type, 1, rng) || add(t, N(BEE_T_ATTN_Q), A, d, type, 0, rng) ||
         add(t, N(BEE_T_ATTN_K), A, d, type, 0, rng) || add(t, N(BEE_T_ATTN_V), A, d, type, 0, rng) ||
         add(t, N(BEE_T_ATTN_OUT), d, A, type, 0, rng)))
        return -1;
    if (!(mask && mask[2 * i + 1]) &&
        (add(t, N(BEE_T_FFN_NORM), 1, d, type, 1, rng) || add(t, N(BEE_T_FFN_GATE), F, d, type, 0, rng) ||
         add(t, N(BEE_T_FFN_UP), F, d, type, 0, rng) || add(t, N(BEE_T_FFN_DOWN), d, F, type, 0, rng)))
        return -1;
#undef N
    return 0;
}

static int vocab_tokens(const char *path, char ***toks, uint64_t **lens, uint32_t *n) {
    if (!path) {
        if (bee_vocab_builtin(toks, n)) return -1;
    } else {
        bee_tokenizer *t;
        if (bee_tokenizer_load_txt(path, &t)) return -1;
        *n = bee_tokenizer_n_vocab(t);
        *toks = calloc(*n, sizeof **toks);
        for (uint32_t i = 0; *toks && i < *n; i++) {
            size_t len;
            const char *s = bee_tokenizer_text(t, (int32_t)i, &len);
            (*toks)[i] = strndup(s, len);
        }
        bee_tokenizer_free(t);
        if (!*toks) return bee_fail("out of memory");
    }
    *lens = malloc(*n * sizeof **lens);
    if (!*lens) return bee_fail("out of memory");
    for (uint32_t i = 0; i < *n; i++) (*lens)[i] = (*toks)[i] ? strlen((*toks)[i]) : 0;
    return 0;
}

static uint64_t model_bytes(const bee_hparams *hp, const uint8_t *mask, uint32_t type) {
    uint64_t d = hp->dim, A = (uint64_t)hp->n_heads * hp->dim_head, n = (uint64_t)hp->n_vocab * d;
    for (uint32_t i = 0; i < hp->n_layers; i++) {
        if (!(mask && mask[2 * i])) n += 4 * d * A;
        if (!(mask && mask[2 * i + 1])) n += 3 * d * hp->dim_ff;
    }
    return bee_type_nbytes(type, n);
}

int bee_model_init_random(const char *path, const bee_init_opts *o) {
    bee_hparams hp = o->hp;
    char **toks = NULL;
    uint64_t *lens = NULL;
    uint32_t nv = 0;
    if (vocab_tokens(o->vocab, &toks, &lens, &nv)) return -1;
    hp.n_vocab = nv;
    int rc = bee_hparams_check(&hp);
    uint64_t bytes = model_bytes(&hp, o->mask, o->type);
    if (rc == 0 && bytes > (8ull << 30))
        rc = bee_fail("a %.1f GiB %s model does not fit in memory while it is generated; quantized init is not "
                      "supported yet", (double)bytes / (1 << 30), bee_type_name(o->type));
    size_t cap = 3 + 9 * (size_t)hp.n_layers;
    tensors t = {calloc(cap, sizeof(bee_model_tensor)), calloc(cap, sizeof(char *)), 0};
    if (rc == 0 && (!t.v || !t.names)) rc = bee_fail("out of memory");
    uint64_t rng = o->seed;
    if (rc == 0)
        rc = add(&t, BEE_T_TOK_EMBD, hp.n_vocab, hp.dim, o->type, 0, &rng) ||
             add(&t, BEE_T_POS_BIAS, hp.n_buckets + hp.n_seg_buckets, hp.n_heads, BEE_TYPE_F32, 0, &rng) ||
             add(&t, BEE_T_OUT_NORM, 1, hp.dim, o->type, 1, &rng);
    for (uint32_t i = 0; rc == 0 && i < hp.n_layers; i++) rc = add_layer(&t, &hp, o->mask, (int)i, o->type, &rng);
    if (rc == 0)
        rc = bee_model_write(path, o->name ? o->name : "random", &hp, o->mask, (const char *const *)toks, lens, t.v, t.n);
    for (size_t i = 0; i < t.n; i++) free((void *)t.v[i].data), free(t.names[i]);
    free(t.v), free(t.names);
    for (uint32_t i = 0; toks && i < nv; i++) free(toks[i]);
    free(toks), free(lens);
    return rc;
}
