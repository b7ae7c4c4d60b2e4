#include "model/model.h"
#include "model/lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include "kernels/panel.h"
#include "model/arch.h"
#include "util/threadpool.h"
#include "util/error.h"
#include "util/types.h"

/* ================================================================ hparams */

int bee_hparams_check(const bee_hparams *hp) {
    if (hp->n_vocab < 12 || hp->dim == 0 || hp->dim % 2 || hp->n_heads == 0 || hp->dim_head == 0 ||
        hp->dim_ff == 0 || hp->n_layers == 0)
        return bee_fail("invalid model shape (vocab %u, dim %u, heads %u x %u, ff %u, layers %u)", hp->n_vocab, hp->dim,
                        hp->n_heads, hp->dim_head, hp->dim_ff, hp->n_layers);
    if (hp->dim > 65536 || hp->n_heads > 1024 || hp->dim_head > 4096 || hp->dim_ff > 1u << 20 || hp->n_layers > 1024)
        return bee_fail("model shape too large");
    if (hp->n_buckets < 4 || hp->n_buckets % 4 || hp->n_seg_buckets < 2 || hp->n_buckets > 1u << 16 ||
        hp->n_seg_buckets > 1u << 16)
        return bee_fail("invalid position bias buckets (%u, %u)", hp->n_buckets, hp->n_seg_buckets);
    if (hp->max_distance <= hp->n_buckets / 4)
        return bee_fail("position_bias_max_distance %u must exceed num_buckets/4", hp->max_distance);
    if (!(hp->eps > 0 && hp->eps < 1)) return bee_fail("invalid eps %g", (double)hp->eps);
    if (!(hp->residual_scale > 0) || !(hp->rope_base > 1) || !(hp->rope_scale > 0))
        return bee_fail("invalid rotary/residual constants");
    return 0;
}

static int get_u32(const bee_gguf *g, const char *key, uint32_t *v) { return bee_gguf_get_u32(g, key, v); }

static void get_opt_f32(const bee_gguf *g, const char *key, float *v, float dflt) {
    if (bee_gguf_find_key(g, key) < 0 || bee_gguf_get_f32(g, key, v)) *v = dflt;
}

static int read_hparams(const bee_gguf *g, bee_hparams *hp) {
    const char *arch;
    uint64_t alen;
    if (bee_gguf_get_str(g, BEE_KEY_ARCH, &arch, &alen)) return -1;
    if (alen != strlen(BEE_ARCH) || memcmp(arch, BEE_ARCH, alen) != 0)
        return bee_fail("architecture is '%.*s', expected '" BEE_ARCH "'", (int)(alen > 64 ? 64 : alen), arch);
    memset(hp, 0, sizeof *hp);
    if (get_u32(g, BEE_KEY_VOCAB_SIZE, &hp->n_vocab) || get_u32(g, BEE_KEY_DIM, &hp->dim) ||
        get_u32(g, BEE_KEY_LAYERS, &hp->n_layers) || get_u32(g, BEE_KEY_FF, &hp->dim_ff) ||
        get_u32(g, BEE_KEY_HEADS, &hp->n_heads) || get_u32(g, BEE_KEY_DIM_HEAD, &hp->dim_head) ||
        get_u32(g, BEE_KEY_NB, &hp->n_buckets) || get_u32(g, BEE_KEY_NSB, &hp->n_seg_buckets) ||
        get_u32(g, BEE_KEY_MAXD, &hp->max_distance) || bee_gguf_get_f32(g, BEE_KEY_EPS, &hp->eps))
        return -1;
    get_opt_f32(g, BEE_KEY_ROPE_BASE, &hp->rope_base, 10000.0f);
    get_opt_f32(g, BEE_KEY_ROPE_SCALE, &hp->rope_scale, 16.0f);
    get_opt_f32(g, BEE_KEY_RESIDUAL, &hp->residual_scale, 1.05f);
    if (bee_gguf_find_key(g, BEE_KEY_ROPE_F16) >= 0 && bee_gguf_get_bool(g, BEE_KEY_ROPE_F16, &hp->inv_freq_f16))
        return -1;
    if (bee_gguf_find_key(g, BEE_KEY_HALF) >= 0 && bee_gguf_get_bool(g, BEE_KEY_HALF, &hp->half)) return -1;
    return bee_hparams_check(hp);
}

/* ================================================================ weights */

static int bind_tensor(const bee_gguf *g, const char *name, uint64_t rows, uint64_t cols, bee_weight *w) {
    const bee_gguf_tensor *t = bee_gguf_find_tensor(g, name);
    if (!t) return bee_fail("tensor '%s' is missing", name);
    int ok = rows == 1 ? (t->n_dims == 1 && t->ne[0] == cols) : (t->n_dims == 2 && t->ne[0] == cols && t->ne[1] == rows);
    if (!ok)
        return bee_fail("tensor '%s' has shape [%llu, %llu], expected [%llu, %llu] (ne0 = in)", name,
                        (unsigned long long)t->ne[0], (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 1),
                        (unsigned long long)cols, (unsigned long long)rows);
    *w = (bee_weight){t->type, t->data, rows, cols};
    return 0;
}

static int bind_f32(const bee_gguf *g, const char *name, uint64_t rows, uint64_t cols, float *dst) {
    bee_weight w;
    if (bind_tensor(g, name, rows, cols, &w)) return -1;
    bee_weight_to_f32(&w, dst);
    return 0;
}

static int read_mask(const bee_gguf *g, const bee_hparams *hp, bee_layer *layers) {
    for (uint32_t i = 0; i < hp->n_layers; i++) layers[i].has_att = layers[i].has_ffn = 1;
    if (bee_gguf_find_key(g, BEE_KEY_MASK) < 0) return 0;
    uint32_t et;
    uint64_t n;
    const void *data;
    if (bee_gguf_get_arr(g, BEE_KEY_MASK, &et, &n) || bee_gguf_get_arr_data(g, BEE_KEY_MASK, &data)) return -1;
    if ((et != BEE_GGUF_BOOL && et != BEE_GGUF_UINT8) || n != 2ull * hp->n_layers)
        return bee_fail(BEE_KEY_MASK " must be a bool array of 2 x %u entries", hp->n_layers);
    const uint8_t *b = data;
    for (uint32_t i = 0; i < hp->n_layers; i++) {
        layers[i].has_att = !b[2 * i];
        layers[i].has_ffn = !b[2 * i + 1];
    }
    return 0;
}

static int bind_layer(const bee_gguf *g, const bee_hparams *hp, int i, bee_layer *l, float **pool) {
    char name[96];
    uint64_t A = (uint64_t)hp->n_heads * hp->dim_head;
#define NAME(fmt) (snprintf(name, sizeof name, fmt, i), name)
    if (l->has_att) {
        l->att_norm = *pool;
        *pool += hp->dim;
        if (bind_f32(g, NAME(BEE_T_ATTN_NORM), 1, hp->dim, l->att_norm) ||
            bind_tensor(g, NAME(BEE_T_ATTN_Q), A, hp->dim, &l->wq) ||
            bind_tensor(g, NAME(BEE_T_ATTN_K), A, hp->dim, &l->wk) ||
            bind_tensor(g, NAME(BEE_T_ATTN_V), A, hp->dim, &l->wv) ||
            bind_tensor(g, NAME(BEE_T_ATTN_OUT), hp->dim, A, &l->wo))
            return -1;
    }
    if (l->has_ffn) {
        l->ffn_norm = *pool;
        *pool += hp->dim;
        if (bind_f32(g, NAME(BEE_T_FFN_NORM), 1, hp->dim, l->ffn_norm) ||
            bind_tensor(g, NAME(BEE_T_FFN_GATE), hp->dim_ff, hp->dim, &l->w_gate) ||
            bind_tensor(g, NAME(BEE_T_FFN_UP), hp->dim_ff, hp->dim, &l->w_up) ||
            bind_tensor(g, NAME(BEE_T_FFN_DOWN), hp->dim, hp->dim_ff, &l->w_down))
            return -1;
    }
#undef NAME
    return 0;
}

static void init_inv_freq(bee_model *m) {
    uint32_t d = m->hp.dim;
    for (uint32_t j = 0; j < d / 2; j++) {
        float e = (float)(2 * j) / (float)d;
        float f = 1.0f / powf(m->hp.rope_base, e);
        m->inv_freq[j] = m->hp.inv_freq_f16 ? bee_f16_to_f32(bee_f32_to_f16(f)) : f;
    }
}

/* Positional buckets for |rel| < 65536, so attention needs no log() per pair. */
static int init_pos_tab(bee_model *m) {
    m->n_pos_tab = 65536;
    m->pos_tab = malloc(m->n_pos_tab * sizeof *m->pos_tab);
    if (!m->pos_tab) return bee_fail("out of memory");
    for (uint32_t a = 0; a < m->n_pos_tab; a++)
        m->pos_tab[a] = bee_position_bucket(-(int32_t)a, m->hp.n_buckets, m->hp.max_distance);
    return 0;
}

static int bind_weights(bee_model *m) {
    const bee_hparams *hp = &m->hp;
    size_t nbias = (size_t)(hp->n_buckets + hp->n_seg_buckets) * hp->n_heads;
    size_t pool_n = nbias + hp->dim + hp->dim / 2 + 2ull * hp->n_layers * hp->dim;
    m->f32_pool = malloc(pool_n * sizeof(float));
    m->layers = calloc(hp->n_layers, sizeof *m->layers);
    if (!m->f32_pool || !m->layers) return bee_fail("out of memory");
    float *pool = m->f32_pool;
    m->pos_bias = pool, pool += nbias;
    m->out_norm = pool, pool += hp->dim;
    m->inv_freq = pool, pool += hp->dim / 2;
    init_inv_freq(m);
    if (init_pos_tab(m)) return -1;
    if (bind_tensor(m->gguf, BEE_T_TOK_EMBD, hp->n_vocab, hp->dim, &m->tok_embd) ||
        bind_f32(m->gguf, BEE_T_POS_BIAS, hp->n_buckets + hp->n_seg_buckets, hp->n_heads, m->pos_bias) ||
        bind_f32(m->gguf, BEE_T_OUT_NORM, 1, hp->dim, m->out_norm) || read_mask(m->gguf, hp, m->layers))
        return -1;
    for (uint32_t i = 0; i < hp->n_layers; i++)
        if (bind_layer(m->gguf, hp, (int)i, &m->layers[i], &pool)) return -1;
    return 0;
}

/* ================================================================ panel repack */

static size_t collect_matrices(bee_model *m, bee_weight **ws) {
    size_t n = 0;
    ws[n++] = &m->tok_embd;
    for (uint32_t i = 0; i < m->hp.n_layers; i++) {
        bee_layer *L = &m->layers[i];
        bee_weight *lw[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int k = 0; k < 4 && L->has_att; k++) ws[n++] = lw[k];
        for (int k = 4; k < 7 && L->has_ffn; k++) ws[n++] = lw[k];
    }
    return n;
}

static int repack_enabled(void) {
    const char *e = getenv("BEE_REPACK");
    return !(e && strcmp(e, "0") == 0);
}

/* Drops the file pages under [p, p + n) from this process's resident set
 * (they are clean and come back from the file if ever touched again). */
static void release_pages(const void *p, size_t n) {
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)p + pg - 1) & ~(pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int repack_weights(bee_model *m) {
    if (!repack_enabled()) return 0;
    bee_weight **ws = malloc((1 + 7 * (size_t)m->hp.n_layers) * sizeof *ws);
    if (!ws) return bee_fail("out of memory");
    size_t n = collect_matrices(m, ws), total = 0;
    for (size_t i = 0; i < n; i++)
        if (bee_panel_fast(ws[i]->type)) total += (bee_panel_nbytes(ws[i]->type, ws[i]->rows, ws[i]->cols) + 63) & ~(size_t)63;
    if (total == 0) return free(ws), 0;
    void *buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED) return free(ws), bee_fail("cannot allocate %zu bytes for the repacked weights", total);
    madvise(buf, total, MADV_HUGEPAGE);
    uint8_t *dst = buf;
    for (size_t i = 0; i < n; i++) {
        bee_weight *w = ws[i];
        size_t nb = bee_panel_nbytes(w->type, w->rows, w->cols);
        if (!bee_panel_fast(w->type) || nb == 0) continue;
        bee_panel_pack(w->type, w->data, w->rows, w->cols, dst);
        release_pages(w->data, bee_type_nbytes(w->type, w->rows * w->cols));
        w->data = dst, w->layout = BEE_LAYOUT_PANEL;
        dst += (nb + 63) & ~(size_t)63;
    }
    mprotect(buf, total, PROT_READ); /* like the mapped file: nobody writes weights */
    m->panel_buf = buf, m->panel_bytes = total;
    free(ws);
    return 0;
}

static int load_tokenizer(bee_model *m) {
    uint32_t et;
    uint64_t n;
    if (bee_gguf_get_arr(m->gguf, BEE_KEY_TOKENS, &et, &n)) return -1;
    if (et != BEE_GGUF_STRING || n != m->hp.n_vocab)
        return bee_fail(BEE_KEY_TOKENS " must be a string array of vocab_size (%u) entries, has %llu", m->hp.n_vocab,
                        (unsigned long long)n);
    const char **toks = malloc(n * sizeof *toks);
    uint64_t *lens = malloc(n * sizeof *lens);
    int rc = toks && lens ? 0 : bee_fail("out of memory");
    for (uint64_t i = 0; rc == 0 && i < n; i++) rc = bee_gguf_get_arr_str(m->gguf, BEE_KEY_TOKENS, i, &toks[i], &lens[i]);
    if (rc == 0) rc = bee_tokenizer_init(&m->tok, toks, lens, (uint32_t)n);
    free(toks);
    free(lens);
    return rc;
}

int bee_model_load(const char *path, bee_model **out) {
    *out = NULL;
    bee_model *m = calloc(1, sizeof *m);
    if (!m) return bee_fail("out of memory");
    int rc = bee_gguf_open(path, &m->gguf);
    if (rc == 0) {
        rc = read_hparams(m->gguf, &m->hp);
        if (rc == 0) rc = load_tokenizer(m);
        if (rc == 0) rc = bind_weights(m);
        if (rc == 0) rc = repack_weights(m);
        if (rc) bee_fail_prefix("%s: ", path);
    }
    if (rc == 0) {
        const char *nm;
        uint64_t nl;
        if (bee_gguf_find_key(m->gguf, BEE_KEY_NAME) >= 0 && bee_gguf_get_str(m->gguf, BEE_KEY_NAME, &nm, &nl) == 0)
            m->name = strndup(nm, nl);
    }
    if (rc) {
        bee_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

int bee_model_set_threads(bee_model *m, int n) {
    bee_pool_free(m->pool);
    m->pool = bee_pool_init(n);
    return m->pool ? 0 : bee_fail("cannot start %d threads", n);
}

void bee_model_free(bee_model *m) {
    if (!m) return;
    bee_pool_free(m->pool);
    bee_tokenizer_free(m->tok);
    bee_gguf_free(m->gguf);
    if (m->panel_buf) munmap(m->panel_buf, m->panel_bytes);
    free(m->layers);
    free(m->f32_pool);
    free(m->pos_tab);
    free(m->name);
    bee_lora_free(m->lora);
    free(m->lora);
    free(m);
}

uint64_t bee_model_n_params(const bee_model *m) {
    const bee_hparams *hp = &m->hp;
    uint64_t d = hp->dim, A = (uint64_t)hp->n_heads * hp->dim_head, n = (uint64_t)hp->n_vocab * d + d;
    n += (uint64_t)(hp->n_buckets + hp->n_seg_buckets) * hp->n_heads;
    for (uint32_t i = 0; i < hp->n_layers; i++) {
        if (m->layers[i].has_att) n += d + 4 * d * A;
        if (m->layers[i].has_ffn) n += d + 3 * d * hp->dim_ff;
    }
    return n;
}

uint64_t bee_model_n_bytes(const bee_model *m) {
    uint64_t n = 0;
    for (size_t i = 0; i < bee_gguf_n_tensors(m->gguf); i++) n += bee_gguf_tensor_at(m->gguf, i)->nbytes;
    return n;
}
