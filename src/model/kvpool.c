/* The KV block pool and the sequences whose caches live in it (model.h). */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"
#include "util/types.h"

/* ================================================================ pool */

static uint32_t count_att(const bee_model *m) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->hp.n_layers; i++) n += m->layers[i].has_att;
    return n;
}

static size_t kv_row_bytes(const bee_model *m, uint32_t type) {
    return bee_type_nbytes(type, (size_t)m->hp.n_heads * m->hp.dim_head);
}

size_t bee_kv_block_bytes(const bee_model *m) {
    return (size_t)BEE_KV_BLOCK * 2 * count_att(m) * kv_row_bytes(m, m->kv_type);
}

int bee_kv_pool_init(bee_kv_pool *p, const bee_model *m, size_t budget_bytes) {
    memset(p, 0, sizeof *p);
    p->n_att = count_att(m);
    p->kv_type = m->kv_type;
    p->row_bytes = kv_row_bytes(m, m->kv_type);
    p->budget_bytes = budget_bytes;
    size_t bb = bee_kv_block_bytes(m);
    size_t nb = budget_bytes && bb ? budget_bytes / bb : UINT32_MAX;
    if (budget_bytes && nb == 0)
        return bee_fail("a KV cache budget of %zu bytes holds no block of %d tokens (%zu bytes for this model)",
                        budget_bytes, BEE_KV_BLOCK, bb);
    p->max_blocks = nb > UINT32_MAX ? UINT32_MAX : (uint32_t)nb;
    p->k = calloc(p->n_att ? p->n_att : 1, sizeof *p->k);
    p->v = calloc(p->n_att ? p->n_att : 1, sizeof *p->v);
    if (!p->k || !p->v) {
        bee_kv_pool_free(p);
        return bee_fail("out of memory");
    }
    return 0;
}

void bee_kv_pool_free(bee_kv_pool *p) {
    for (uint32_t l = 0; p->k && l < p->n_att; l++) free(p->k[l]);
    for (uint32_t l = 0; p->v && l < p->n_att; l++) free(p->v[l]);
    free(p->k), free(p->v), free(p->ref), free(p->free_ids);
    memset(p, 0, sizeof *p);
}

/* Grows the regions to at least `need` blocks (doubling, within the budget).
 * The new blocks go on the free stack, lowest id on top, so a lone
 * sequence's blocks come out in order. */
static int pool_grow(bee_kv_pool *p, uint32_t need) {
    uint32_t cap = p->cap_blocks * 2 > need ? p->cap_blocks * 2 : need;
    if (cap > p->max_blocks) cap = p->max_blocks;
    size_t bytes = (size_t)cap * BEE_KV_BLOCK * p->row_bytes;
    for (uint32_t l = 0; l < p->n_att; l++) { /* a region that grew stays grown: harmless */
        void *k = realloc(p->k[l], bytes);
        if (k) p->k[l] = k;
        void *v = realloc(p->v[l], bytes);
        if (v) p->v[l] = v;
        if (!k || !v) return bee_fail("out of memory growing the KV cache to %u blocks", cap);
    }
    uint32_t *ref = realloc(p->ref, cap * sizeof *ref);
    if (ref) p->ref = ref;
    uint32_t *ids = realloc(p->free_ids, cap * sizeof *ids);
    if (ids) p->free_ids = ids;
    if (!ref || !ids) return bee_fail("out of memory growing the KV cache to %u blocks", cap);
    for (uint32_t b = cap; b-- > p->cap_blocks;) p->ref[b] = 0, p->free_ids[p->n_free++] = b;
    p->cap_blocks = cap;
    return 0;
}

int bee_kv_pool_alloc(bee_kv_pool *p, uint32_t *id) {
    if (p->n_free == 0) {
        if (p->cap_blocks >= p->max_blocks)
            return bee_fail("the KV cache budget of %zu bytes (%u blocks of %d tokens) is used up", p->budget_bytes,
                            p->max_blocks, BEE_KV_BLOCK);
        if (pool_grow(p, p->cap_blocks + 1)) return -1;
    }
    *id = p->free_ids[--p->n_free];
    p->ref[*id] = 1;
    p->n_used++;
    return 0;
}

void bee_kv_pool_share(bee_kv_pool *p, uint32_t id) {
    p->ref[id]++;
    p->n_shared++;
}

void bee_kv_pool_release(bee_kv_pool *p, uint32_t id) {
    if (--p->ref[id]) return;
    p->free_ids[p->n_free++] = id;
    p->n_used--;
}

uint32_t bee_kv_pool_available(const bee_kv_pool *p) { return p->n_free + (p->max_blocks - p->cap_blocks); }

size_t bee_kv_pool_bytes(const bee_kv_pool *p) { return (size_t)p->cap_blocks * BEE_KV_BLOCK * p->row_bytes * 2 * p->n_att; }

/* Copies block `from` into block `to` in every layer. */
static void pool_copy_block(bee_kv_pool *p, uint32_t to, uint32_t from, uint32_t rows) {
    size_t bb = (size_t)BEE_KV_BLOCK * p->row_bytes, n = rows * p->row_bytes;
    for (uint32_t l = 0; l < p->n_att; l++) {
        memcpy((uint8_t *)p->k[l] + to * bb, (const uint8_t *)p->k[l] + from * bb, n);
        memcpy((uint8_t *)p->v[l] + to * bb, (const uint8_t *)p->v[l] + from * bb, n);
    }
}

/* ================================================================ sequences */

size_t bee_seq_bytes(const bee_model *m, uint32_t cap) {
    return (size_t)cap * (2 * count_att(m) * kv_row_bytes(m, m->kv_type) + sizeof(bee_token));
}

int bee_model_set_kv_type(bee_model *m, uint32_t type) {
    if (type != BEE_TYPE_F32 && type != BEE_TYPE_F16 && type != BEE_TYPE_BF16)
        return bee_fail("KV cache type %s is not supported (use f32, f16 or bf16)", bee_type_name(type));
    m->kv_type = type;
    return 0;
}

static int seq_init_common(bee_seq *s, const bee_model *m, const int32_t *seg_rel, size_t n_seg_rel) {
    memset(s, 0, sizeof *s);
    s->n_att = count_att(m);
    s->kv_type = m->kv_type;
    s->seg_rel = malloc((n_seg_rel ? n_seg_rel : 1) * sizeof *s->seg_rel);
    if (!s->seg_rel) return bee_fail("out of memory");
    for (size_t i = 0; i < n_seg_rel; i++)
        if (seg_rel[i] < 0 || (seg_rel[i] > 0 && (uint32_t)(seg_rel[i] - 1) >= m->hp.n_seg_buckets))
            return bee_fail("segment_rel[%zu] = %d is outside the model's %u segment buckets", i, seg_rel[i],
                            m->hp.n_seg_buckets);
    if (n_seg_rel) memcpy(s->seg_rel, seg_rel, n_seg_rel * sizeof *seg_rel);
    s->n_seg_rel = n_seg_rel;
    return 0;
}

int bee_seq_init(bee_seq *s, const bee_model *m, uint32_t cap, const int32_t *seg_rel, size_t n_seg_rel) {
    int rc = seq_init_common(s, m, seg_rel, n_seg_rel);
    if (rc == 0 && !(s->pool = malloc(sizeof *s->pool))) rc = bee_fail("out of memory");
    if (rc == 0 && (rc = bee_kv_pool_init(s->pool, m, 0)) != 0) free(s->pool), s->pool = NULL;
    if (rc == 0) s->own_pool = 1;
    if (rc == 0) rc = bee_seq_reserve(s, m, cap ? cap : 16);
    if (rc) bee_seq_free(s);
    return rc;
}

int bee_seq_init_pooled(bee_seq *s, const bee_model *m, bee_kv_pool *pool, const int32_t *seg_rel, size_t n_seg_rel) {
    if (pool->kv_type != m->kv_type || pool->n_att != count_att(m)) {
        memset(s, 0, sizeof *s);
        return bee_fail("the KV pool (%s) does not fit this model's %s cache", bee_type_name(pool->kv_type),
                        bee_type_name(m->kv_type));
    }
    int rc = seq_init_common(s, m, seg_rel, n_seg_rel);
    s->pool = pool;
    if (rc) bee_seq_free(s);
    return rc;
}

static int keys_reserve(bee_seq *s, uint32_t cap) {
    if (cap <= s->cap) return 0;
    if (cap < s->cap * 2) cap = s->cap * 2;
    bee_token *keys = realloc(s->keys, cap * sizeof *keys);
    if (!keys) return bee_fail("out of memory growing the KV cache to %u tokens", cap);
    s->keys = keys;
    s->cap = cap;
    return 0;
}

static int table_reserve(bee_seq *s, uint32_t n_blk) {
    if (n_blk <= s->blk_cap) return 0;
    uint32_t cap = s->blk_cap * 2 > n_blk ? s->blk_cap * 2 : n_blk;
    uint32_t *b = realloc(s->blocks, cap * sizeof *b);
    if (!b) return bee_fail("out of memory");
    s->blocks = b;
    s->blk_cap = cap;
    return 0;
}

int bee_seq_reserve(bee_seq *s, const bee_model *m, uint32_t cap) {
    (void)m;
    uint32_t need = (uint32_t)(((uint64_t)cap + BEE_KV_BLOCK - 1) / BEE_KV_BLOCK);
    if (keys_reserve(s, cap) || table_reserve(s, need)) return -1;
    for (; s->n_blk < need; s->n_blk++)
        if (bee_kv_pool_alloc(s->pool, &s->blocks[s->n_blk])) return -1;
    return 0;
}

int bee_seq_prepare_append(bee_seq *s, const bee_model *m, uint32_t n_new) {
    if (bee_seq_reserve(s, m, s->n + n_new)) return -1;
    uint32_t end = (uint32_t)(((uint64_t)s->n + n_new + BEE_KV_BLOCK - 1) / BEE_KV_BLOCK);
    for (uint32_t b = s->n / BEE_KV_BLOCK; b < end; b++) {
        uint32_t old = s->blocks[b], fresh;
        if (s->pool->ref[old] < 2) continue;
        if (bee_kv_pool_alloc(s->pool, &fresh)) return -1;
        /* rows below n are the shared prefix; the others are about to be written */
        uint32_t first = b * BEE_KV_BLOCK, rows = s->n > first ? s->n - first : 0;
        pool_copy_block(s->pool, fresh, old, rows < BEE_KV_BLOCK ? rows : BEE_KV_BLOCK);
        bee_kv_pool_release(s->pool, old);
        s->blocks[b] = fresh;
        s->pool->n_cow++;
    }
    return 0;
}

void bee_seq_truncate(bee_seq *s, uint32_t n) {
    if (n > s->n) return;
    s->n = n;
    uint32_t keep = (n + BEE_KV_BLOCK - 1) / BEE_KV_BLOCK;
    while (s->n_blk > keep) bee_kv_pool_release(s->pool, s->blocks[--s->n_blk]);
}

void bee_seq_free(bee_seq *s) {
    if (s->pool) {
        if (s->own_pool) {
            bee_kv_pool_free(s->pool);
            free(s->pool);
        } else {
            for (uint32_t b = 0; b < s->n_blk; b++) bee_kv_pool_release(s->pool, s->blocks[b]);
        }
    }
    free(s->blocks);
    free(s->keys);
    free(s->seg_rel);
    memset(s, 0, sizeof *s);
}

/* Within one pool: dst takes references on src's blocks. */
static int seq_share(bee_seq *dst, const bee_seq *src) {
    uint32_t nb = (src->n + BEE_KV_BLOCK - 1) / BEE_KV_BLOCK;
    bee_seq_truncate(dst, 0);
    if (table_reserve(dst, nb)) return -1;
    for (uint32_t b = 0; b < nb; b++) {
        bee_kv_pool_share(src->pool, src->blocks[b]);
        dst->blocks[b] = src->blocks[b];
    }
    dst->n_blk = nb;
    return 0;
}

/* Across pools: dst gets fresh blocks of its own and the rows are copied. */
static int seq_copy_rows(bee_seq *dst, const bee_seq *src, const bee_model *m) {
    bee_seq_truncate(dst, 0); /* its blocks may be shared: never write into them */
    if (bee_seq_reserve(dst, m, src->n)) return -1;
    size_t rb = src->pool->row_bytes, bb = (size_t)BEE_KV_BLOCK * rb;
    for (uint32_t b = 0; b * BEE_KV_BLOCK < src->n; b++) {
        uint32_t rows = src->n - b * BEE_KV_BLOCK < BEE_KV_BLOCK ? src->n - b * BEE_KV_BLOCK : BEE_KV_BLOCK;
        for (uint32_t l = 0; l < src->n_att; l++) {
            memcpy((uint8_t *)dst->pool->k[l] + dst->blocks[b] * bb, (const uint8_t *)src->pool->k[l] + src->blocks[b] * bb,
                   rows * rb);
            memcpy((uint8_t *)dst->pool->v[l] + dst->blocks[b] * bb, (const uint8_t *)src->pool->v[l] + src->blocks[b] * bb,
                   rows * rb);
        }
    }
    return 0;
}

int bee_seq_copy(bee_seq *dst, const bee_seq *src, const bee_model *m) {
    if (dst == src) return 0;
    if (dst->kv_type != src->kv_type) return bee_fail("cannot copy a %s KV cache into a %s one",
                                                      bee_type_name(src->kv_type), bee_type_name(dst->kv_type));
    if (keys_reserve(dst, src->n)) return -1;
    if (dst->n_seg_rel != src->n_seg_rel) {
        int32_t *r = realloc(dst->seg_rel, (src->n_seg_rel ? src->n_seg_rel : 1) * sizeof *r);
        if (!r) return bee_fail("out of memory");
        dst->seg_rel = r;
        dst->n_seg_rel = src->n_seg_rel;
    }
    int rc = dst->pool == src->pool ? seq_share(dst, src) : seq_copy_rows(dst, src, m);
    if (rc) return -1;
    memcpy(dst->keys, src->keys, src->n * sizeof *src->keys);
    memcpy(dst->seg_rel, src->seg_rel, src->n_seg_rel * sizeof *src->seg_rel);
    dst->n = src->n;
    return 0;
}
