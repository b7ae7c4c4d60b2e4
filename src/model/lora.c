/* LoRA adapters: layout, the low-rank product, GGUF read/write. */
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "model/arch.h"
#include "util/error.h"
#include "util/types.h"

static const char *const which_name[2] = {"q", "v"};
static const char *const target_name[2] = {"project_q", "project_v"};

static int lora_alloc(bee_lora *lo, uint32_t n_layers, uint32_t dim, uint32_t width, const uint8_t *has_att,
                      uint32_t rank) {
    memset(lo, 0, sizeof *lo);
    lo->rank = rank, lo->n_layers = n_layers, lo->dim = dim, lo->width = width;
    lo->has = malloc(n_layers ? n_layers : 1);
    lo->a = calloc(2 * (size_t)n_layers + 1, sizeof *lo->a);
    lo->b = calloc(2 * (size_t)n_layers + 1, sizeof *lo->b);
    if (!lo->has || !lo->a || !lo->b) return bee_fail("out of memory");
    size_t per = 2 * (size_t)rank * ((size_t)dim + width);
    for (uint32_t l = 0; l < n_layers; l++) {
        lo->has[l] = has_att ? has_att[l] != 0 : 1;
        lo->n += lo->has[l] ? per : 0;
    }
    lo->mem = calloc(lo->n ? lo->n : 1, sizeof *lo->mem);
    if (!lo->mem) return bee_fail("out of memory for a rank-%u adapter", rank);
    float *p = lo->mem;
    for (uint32_t l = 0; l < n_layers; l++)
        for (int w = 0; lo->has[l] && w < 2; w++) {
            lo->a[2 * l + w] = p, p += (size_t)rank * dim;
            lo->b[2 * l + w] = p, p += (size_t)width * rank;
        }
    return 0;
}

void bee_lora_free(bee_lora *lo) {
    if (!lo) return;
    free(lo->has), free(lo->a), free(lo->b), free(lo->mem), free(lo->base);
    memset(lo, 0, sizeof *lo);
}

float bee_lora_scale(const bee_lora *lo) { return lo->alpha / (float)lo->rank; }

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rng_normal(uint64_t *s) {
    double u1 = ((double)(rng_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

int bee_lora_init(bee_lora *lo, const bee_hparams *hp, const uint8_t *has_att, uint32_t rank, float alpha,
                  uint64_t seed) {
    if (rank == 0 || rank > hp->dim) return bee_fail("LoRA rank %u must be in 1..%u (the model dimension)", rank, hp->dim);
    if (!(alpha > 0) || !isfinite(alpha)) return bee_fail("LoRA alpha must be a positive number");
    if (lora_alloc(lo, hp->n_layers, hp->dim, hp->n_heads * hp->dim_head, has_att, rank)) {
        bee_lora_free(lo);
        return -1;
    }
    lo->alpha = alpha;
    /* Std 1/sqrt(dim) keeps A x of order |x| / sqrt(dim) per component, like
     * the base linear's own 1/sqrt(dim) scaling; B = 0 makes step 0 exact. */
    float sd = 1.0f / sqrtf((float)hp->dim);
    uint64_t rng = seed;
    for (uint32_t l = 0; l < lo->n_layers; l++)
        for (int w = 0; lo->has[l] && w < 2; w++)
            for (size_t i = 0; i < (size_t)rank * lo->dim; i++) lo->a[2 * l + w][i] = sd * rng_normal(&rng);
    return 0;
}

int bee_lora_add(const bee_lora *lo, uint32_t layer, int which, size_t n, const float *x, float *y, size_t ldy) {
    const float *A = lo->a[2 * layer + which], *B = lo->b[2 * layer + which];
    if (!A) return 0;
    size_t r = lo->rank, d = lo->dim, W = lo->width;
    float s = bee_lora_scale(lo), u[256], *heap = r > 256 ? malloc(r * sizeof *heap) : NULL;
    if (r > 256 && !heap) return bee_fail("out of memory");
    float *ub = heap ? heap : u;
    for (size_t t = 0; t < n; t++) {
        for (size_t k = 0; k < r; k++) ub[k] = bee_dot_ref(x + t * d, A + k * d, d);
        float *yt = y + t * ldy;
        for (size_t o = 0; o < W; o++) yt[o] += s * bee_dot_ref(ub, B + o * r, r);
    }
    free(heap);
    return 0;
}

/* ================================================================ GGUF */

int bee_lora_write(const bee_lora *lo, const char *path, const char *base_name) {
    bee_gguf_writer *w = bee_gguf_writer_init();
    if (!w) return bee_fail("out of memory");
    const char *targets[2] = {target_name[0], target_name[1]};
    int rc = bee_gguf_set_str(w, BEE_KEY_ARCH, BEE_LORA_ARCH) || bee_gguf_set_str(w, BEE_KEY_NAME, "lora") ||
             bee_gguf_set_u32(w, BEE_LORA_KEY_RANK, lo->rank) || bee_gguf_set_f32(w, BEE_LORA_KEY_ALPHA, lo->alpha) ||
             bee_gguf_set_arr_str(w, BEE_LORA_KEY_TARGETS, targets, NULL, 2) ||
             bee_gguf_set_str(w, BEE_LORA_KEY_BASE, base_name ? base_name : (lo->base ? lo->base : "")) ||
             bee_gguf_set_u32(w, BEE_LORA_KEY_DIM, lo->dim) || bee_gguf_set_u32(w, BEE_LORA_KEY_WIDTH, lo->width) ||
             bee_gguf_set_u32(w, BEE_LORA_KEY_LAYERS, lo->n_layers);
    char name[64];
    for (uint32_t l = 0; rc == 0 && l < lo->n_layers; l++)
        for (int k = 0; rc == 0 && lo->has[l] && k < 2; k++) {
            uint64_t na[2] = {lo->dim, lo->rank}, nb[2] = {lo->rank, lo->width};
            snprintf(name, sizeof name, BEE_LORA_T_A, l, which_name[k]);
            rc = bee_gguf_add_tensor(w, name, BEE_TYPE_F32, 2, na, lo->a[2 * l + k], (size_t)lo->rank * lo->dim * 4);
            snprintf(name, sizeof name, BEE_LORA_T_B, l, which_name[k]);
            if (rc == 0)
                rc = bee_gguf_add_tensor(w, name, BEE_TYPE_F32, 2, nb, lo->b[2 * l + k], (size_t)lo->rank * lo->width * 4);
        }
    if (rc == 0) rc = bee_gguf_writer_write(w, path);
    bee_gguf_writer_free(w);
    return rc ? bee_fail_prefix("%s: ", path) : 0;
}

static int check_u32(const bee_gguf *g, const char *key, uint32_t want, const char *what) {
    uint32_t v;
    if (bee_gguf_get_u32(g, key, &v)) return bee_fail("missing %s", key);
    if (v != want) return bee_fail("adapter %s is %u but the base model's is %u (made for another model)", what, v, want);
    return 0;
}

static int read_meta(const bee_gguf *g, const bee_hparams *hp, uint32_t *rank, float *alpha) {
    const char *s;
    uint64_t len;
    if (bee_gguf_get_str(g, BEE_KEY_ARCH, &s, &len)) return bee_fail("missing %s", BEE_KEY_ARCH);
    if (len != strlen(BEE_LORA_ARCH) || memcmp(s, BEE_LORA_ARCH, len) != 0)
        return bee_fail("architecture is '%.*s', not '%s' (not a LoRA adapter)", (int)(len > 64 ? 64 : len), s,
                        BEE_LORA_ARCH);
    if (bee_gguf_get_u32(g, BEE_LORA_KEY_RANK, rank)) return bee_fail("missing %s", BEE_LORA_KEY_RANK);
    if (bee_gguf_get_f32(g, BEE_LORA_KEY_ALPHA, alpha)) return bee_fail("missing %s", BEE_LORA_KEY_ALPHA);
    if (*rank == 0 || *rank > hp->dim) return bee_fail("%s = %u out of range", BEE_LORA_KEY_RANK, *rank);
    if (!(*alpha > 0) || !isfinite(*alpha)) return bee_fail("%s must be positive", BEE_LORA_KEY_ALPHA);
    return check_u32(g, BEE_LORA_KEY_DIM, hp->dim, "dimension") ||
           check_u32(g, BEE_LORA_KEY_WIDTH, hp->n_heads * hp->dim_head, "attention width") ||
           check_u32(g, BEE_LORA_KEY_LAYERS, hp->n_layers, "layer count");
}

static int read_tensor(const bee_gguf *g, const char *fmt, uint32_t l, int k, uint64_t ne0, uint64_t ne1, float *dst) {
    char name[64];
    snprintf(name, sizeof name, fmt, l, which_name[k]);
    const bee_gguf_tensor *t = bee_gguf_find_tensor(g, name);
    if (!t) return bee_fail("tensor %s missing", name);
    if (t->type != BEE_TYPE_F32) return bee_fail("tensor %s: type %s, expected f32", name, bee_type_name(t->type));
    if (t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1)
        return bee_fail("tensor %s: shape [%llu, %llu], expected [%llu, %llu] for this base model", name,
                        (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)ne0,
                        (unsigned long long)ne1);
    memcpy(dst, t->data, ne0 * ne1 * sizeof *dst);
    for (uint64_t i = 0; i < ne0 * ne1; i++)
        if (!isfinite(dst[i])) return bee_fail("tensor %s: non-finite value at %llu", name, (unsigned long long)i);
    return 0;
}

static int read_body(const bee_gguf *g, const bee_hparams *hp, const uint8_t *has_att, bee_lora *lo) {
    uint32_t rank;
    float alpha;
    if (read_meta(g, hp, &rank, &alpha)) return -1;
    if (lora_alloc(lo, hp->n_layers, hp->dim, hp->n_heads * hp->dim_head, has_att, rank)) return -1;
    lo->alpha = alpha;
    const char *s;
    uint64_t len;
    if (bee_gguf_get_str(g, BEE_LORA_KEY_BASE, &s, &len) == 0 && (lo->base = malloc(len + 1))) {
        memcpy(lo->base, s, len);
        lo->base[len] = 0;
    }
    for (uint32_t l = 0; l < lo->n_layers; l++)
        for (int k = 0; lo->has[l] && k < 2; k++)
            if (read_tensor(g, BEE_LORA_T_A, l, k, lo->dim, rank, lo->a[2 * l + k]) ||
                read_tensor(g, BEE_LORA_T_B, l, k, rank, lo->width, lo->b[2 * l + k]))
                return -1;
    return 0;
}

int bee_lora_read(const char *path, const bee_hparams *hp, const uint8_t *has_att, bee_lora *lo) {
    memset(lo, 0, sizeof *lo);
    bee_gguf *g = NULL;
    if (bee_gguf_open(path, &g)) return bee_fail_prefix("LoRA adapter %s: ", path);
    int rc = read_body(g, hp, has_att, lo);
    bee_gguf_free(g);
    if (rc) {
        bee_lora_free(lo);
        return bee_fail_prefix("LoRA adapter %s: ", path);
    }
    return 0;
}

int bee_model_apply_lora(bee_model *m, const char *path) {
    uint8_t *has = malloc(m->hp.n_layers ? m->hp.n_layers : 1);
    bee_lora *lo = malloc(sizeof *lo);
    if (!has || !lo) {
        free(has), free(lo);
        return bee_fail("out of memory");
    }
    for (uint32_t l = 0; l < m->hp.n_layers; l++) has[l] = (uint8_t)(m->layers[l].has_att != 0);
    int rc = bee_lora_read(path, &m->hp, has, lo);
    free(has);
    if (rc) {
        free(lo);
        return -1;
    }
    if (m->lora) bee_lora_free(m->lora);
    free(m->lora);
    m->lora = lo;
    return 0;
}
