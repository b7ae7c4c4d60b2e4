/* GGUF v3 reader and writer, written from the published format description.
 *
 * Reader: every length, count and offset is checked against the bytes that
 * remain before it is used, using subtraction only (never an addition that
 * could wrap). Counts are checked against the smallest encoding their items
 * could have before anything is allocated, so memory stays proportional to
 * the file size. Keys and tensor names get open-addressing hash indexes;
 * string arrays get a table of element offsets so element i is O(1). */
#include "format/gguf.h"

#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

#define GGUF_VERSION 3u
#define N_VTYPES 13u
#define ALIGN_KEY "general.alignment"
/* Smallest possible encodings, used to reject counts the file cannot hold. */
#define KV_MIN_BYTES 14u /* key length + 1 key byte + value type + 1 value byte */
#define TI_MIN_BYTES 33u /* name length + 1 name byte + n_dims + ne[0] + type + offset */
#define NO_ELEM UINT64_MAX

typedef unsigned long long ull;

static const struct {
    const char *name;
    unsigned size; /* 0: variable (string, array) */
} g_vtypes[N_VTYPES] = {
    [BEE_GGUF_UINT8] = {"uint8", 1},     [BEE_GGUF_INT8] = {"int8", 1},     [BEE_GGUF_UINT16] = {"uint16", 2},
    [BEE_GGUF_INT16] = {"int16", 2},     [BEE_GGUF_UINT32] = {"uint32", 4}, [BEE_GGUF_INT32] = {"int32", 4},
    [BEE_GGUF_FLOAT32] = {"float32", 4}, [BEE_GGUF_BOOL] = {"bool", 1},     [BEE_GGUF_STRING] = {"string", 0},
    [BEE_GGUF_ARRAY] = {"array", 0},     [BEE_GGUF_UINT64] = {"uint64", 8}, [BEE_GGUF_INT64] = {"int64", 8},
    [BEE_GGUF_FLOAT64] = {"float64", 8},
};

static const char *vtype_name(uint32_t t) { return t < N_VTYPES ? g_vtypes[t].name : "unknown"; }
static size_t vtype_size(uint32_t t) { return t < N_VTYPES ? g_vtypes[t].size : 0; }

static uint64_t le_load(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    while (n-- > 0) v = v << 8 | p[n];
    return v;
}

static void le_store(uint8_t *p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++, v >>= 8) p[i] = (uint8_t)v;
}

/* Copies s for use in a message: printable ASCII only, at most n-1 bytes. */
static void sanitize(const char *s, char *out, size_t n) {
    size_t k = 0;
    for (; *s && k + 4 < n; s++) out[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    if (*s) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = 0;
}

/* ================================================================ reader */

struct kv {
    char *key;
    uint32_t type;
    size_t pos;         /* file offset of the value type field */
    const uint8_t *val; /* scalar bytes, string bytes, or first array element */
    uint64_t raw;       /* scalar value bits */
    uint64_t len;       /* string length or array count */
    uint32_t elem_type; /* arrays */
    size_t *str_offs;   /* string arrays: file offset of each element's length */
};

struct index {
    size_t *slot; /* item index + 1; 0 = empty */
    size_t mask;
};

struct bee_gguf {
    bee_mmap map; /* owned mapping (bee_gguf_open) or empty */
    const uint8_t *base;
    size_t size;
    char *name;
    uint32_t version, alignment;
    size_t data_off;
    struct kv *kvs;
    size_t n_kv;
    bee_gguf_tensor *tensors;
    size_t *t_pos; /* file offset of each tensor info's data offset field */
    size_t n_tensors;
    struct index kidx, tidx;
};

typedef const char *(*name_fn)(const bee_gguf *g, size_t i);
static const char *kv_name(const bee_gguf *g, size_t i) { return g->kvs[i].key; }
static const char *tensor_name(const bee_gguf *g, size_t i) { return g->tensors[i].name; }

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int index_init(struct index *ix, uint64_t n) {
    size_t cap = 8;
    while (cap / 2 < n) cap *= 2; /* n is bounded by the file size */
    ix->slot = calloc(cap, sizeof *ix->slot);
    ix->mask = cap - 1;
    return ix->slot ? 0 : -1;
}

/* Index of name or -1; *pos gets its slot or the empty slot where it would go. */
static long index_find(const struct index *ix, const bee_gguf *g, name_fn fn, const char *name, size_t *pos) {
    size_t h = (size_t)str_hash(name) & ix->mask;
    for (; ix->slot[h]; h = (h + 1) & ix->mask) {
        if (strcmp(fn(g, ix->slot[h] - 1), name) == 0) break;
    }
    if (pos) *pos = h;
    return ix->slot[h] ? (long)(ix->slot[h] - 1) : -1;
}

/* Parsing cursor plus what is being read, for messages. */
typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *file;
    const char *item; /* "key", "tensor", or NULL (header) */
    size_t idx;
    const char *iname; /* the item's name once known */
    uint64_t elem;     /* array element being read, or NO_ELEM */
} rd;

static void rd_at(rd *r, const char *item, size_t idx, const char *iname) {
    r->item = item;
    r->idx = idx;
    r->iname = iname;
    r->elem = NO_ELEM;
}

static void rd_where(const rd *r, const char *field, char *buf, size_t n) {
    char nm[72] = "", el[40] = "", s[64];
    if (r->iname) {
        sanitize(r->iname, s, sizeof s);
        snprintf(nm, sizeof nm, " ('%s')", s);
    }
    if (r->elem != NO_ELEM) snprintf(el, sizeof el, "array element #%llu ", (ull)r->elem);
    if (r->item) snprintf(buf, n, "%s #%zu%s %s%s", r->item, r->idx, nm, el, field);
    else snprintf(buf, n, "%s", field);
}

static int rd_fail(const rd *r, size_t off, const char *field, const char *fmt, ...) BEE_PRINTF(4, 5);
static int rd_fail(const rd *r, size_t off, const char *field, const char *fmt, ...) {
    char msg[512], w[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rd_where(r, field, w, sizeof w);
    return bee_fail("%s: offset %zu: %s: %s", r->file, off, w, msg);
}

static int rd_need(const rd *r, uint64_t n, const char *field) {
    size_t left = r->size - r->pos;
    if (n <= left) return 0;
    char w[256];
    rd_where(r, field, w, sizeof w);
    return bee_fail("%s: truncated at offset %zu while reading %s (need %llu bytes, %zu left)", r->file, r->pos, w,
                    (ull)n, left);
}

static int rd_uint(rd *r, size_t n, const char *field, uint64_t *v) {
    if (rd_need(r, n, field)) return -1;
    *v = le_load(r->p + r->pos, n);
    r->pos += n;
    return 0;
}

/* A gguf string: uint64 length + bytes. len_field names the length in messages. */
static int rd_str(rd *r, const char *len_field, const uint8_t **s, uint64_t *len) {
    size_t at = r->pos;
    if (rd_uint(r, 8, len_field, len)) return -1;
    if (*len > r->size - r->pos)
        return rd_fail(r, at, len_field, "length %llu exceeds the %zu bytes left in the file", (ull)*len,
                       r->size - r->pos);
    *s = r->p + r->pos;
    r->pos += (size_t)*len;
    return 0;
}

/* A key or tensor name: non-empty, no NUL; returns a NUL-terminated copy. */
static int rd_name(rd *r, char **out) {
    const uint8_t *s = NULL;
    uint64_t len = 0;
    size_t at = r->pos;
    if (rd_str(r, "name length", &s, &len)) return -1;
    if (len == 0) return rd_fail(r, at, "name length", "empty name");
    const uint8_t *nul = memchr(s, 0, (size_t)len);
    if (nul) return rd_fail(r, at + 8 + (size_t)(nul - s), "name", "name contains a NUL byte");
    *out = malloc((size_t)len + 1);
    if (!*out) return bee_fail("%s: out of memory", r->file);
    memcpy(*out, s, (size_t)len);
    (*out)[len] = 0;
    return 0;
}

static int bad_version(const rd *r, uint64_t v) {
    if (v == 1 || v == 2)
        return rd_fail(r, 4, "header version",
                       "GGUF version %llu is not supported (only version 3); re-convert the model with a "
                       "current converter",
                       (ull)v);
    if (v == 0x03000000u)
        return rd_fail(r, 4, "header version", "version 0x03000000: big-endian GGUF files are not supported");
    return rd_fail(r, 4, "header version", "unsupported GGUF version %llu (only version 3 is supported)", (ull)v);
}

static int parse_header(bee_gguf *g, rd *r, uint64_t *n_t, uint64_t *n_kv) {
    uint64_t v = 0;
    if (rd_need(r, 4, "header magic")) return -1;
    const uint8_t *m = r->p;
    if (memcmp(m, "GGUF", 4) != 0)
        return rd_fail(r, 0, "header magic", "not a GGUF file (magic %02x %02x %02x %02x, expected 47 47 55 46 'GGUF')",
                       m[0], m[1], m[2], m[3]);
    r->pos = 4;
    if (rd_uint(r, 4, "header version", &v)) return -1;
    if (v != GGUF_VERSION) return bad_version(r, v);
    g->version = GGUF_VERSION;
    if (rd_uint(r, 8, "header tensor count", n_t) || rd_uint(r, 8, "header key/value count", n_kv)) return -1;
    size_t left = r->size - r->pos;
    if (*n_kv > left / KV_MIN_BYTES)
        return rd_fail(r, 16, "header key/value count", "%llu key/value pairs cannot fit in the %zu bytes left",
                       (ull)*n_kv, left);
    left -= (size_t)*n_kv * KV_MIN_BYTES;
    if (*n_t > left / TI_MIN_BYTES)
        return rd_fail(r, 8, "header tensor count", "%llu tensor infos cannot fit in the %zu bytes left", (ull)*n_t,
                       left);
    return 0;
}

static int parse_scalar(rd *r, struct kv *kv) {
    if (kv->type == BEE_GGUF_STRING) return rd_str(r, "string length", &kv->val, &kv->len);
    size_t n = vtype_size(kv->type);
    if (n == 0) return rd_fail(r, kv->pos, "value type", "unknown value type %u", kv->type);
    if (rd_need(r, n, "value")) return -1;
    kv->val = r->p + r->pos;
    kv->raw = le_load(kv->val, n);
    if (kv->type == BEE_GGUF_BOOL && kv->raw > 1)
        return rd_fail(r, r->pos, "value", "bool value is %llu, must be 0 or 1", (ull)kv->raw);
    r->pos += n;
    return 0;
}

static int parse_str_array(rd *r, struct kv *kv) {
    const uint8_t *s = NULL;
    uint64_t len = 0;
    if (kv->len == 0) return 0;
    kv->str_offs = malloc((size_t)kv->len * sizeof *kv->str_offs);
    if (!kv->str_offs) return bee_fail("%s: out of memory", r->file);
    for (uint64_t i = 0; i < kv->len; i++) {
        r->elem = i;
        kv->str_offs[i] = r->pos;
        if (rd_str(r, "string length", &s, &len)) return -1;
    }
    r->elem = NO_ELEM;
    return 0;
}

static int parse_fixed_array(rd *r, struct kv *kv, size_t esz) {
    if (kv->elem_type == BEE_GGUF_BOOL) {
        for (uint64_t i = 0; i < kv->len; i++) {
            if (kv->val[i] <= 1) continue;
            r->elem = i;
            return rd_fail(r, r->pos + (size_t)i, "value", "bool value is %u, must be 0 or 1", kv->val[i]);
        }
    }
    r->pos += (size_t)kv->len * esz;
    return 0;
}

static int parse_array(rd *r, struct kv *kv) {
    uint64_t et = 0;
    size_t at = r->pos;
    if (rd_uint(r, 4, "array element type", &et)) return -1;
    if (et == BEE_GGUF_ARRAY) return rd_fail(r, at, "array element type", "nested arrays are not supported");
    if (et != BEE_GGUF_STRING && vtype_size((uint32_t)et) == 0)
        return rd_fail(r, at, "array element type", "unknown value type %llu", (ull)et);
    kv->elem_type = (uint32_t)et;
    at = r->pos;
    if (rd_uint(r, 8, "array length", &kv->len)) return -1;
    size_t esz = et == BEE_GGUF_STRING ? 8 : vtype_size(kv->elem_type);
    size_t left = r->size - r->pos;
    if (kv->len > left / esz)
        return rd_fail(r, at, "array length", "%llu elements of at least %zu bytes cannot fit in the %zu bytes left",
                       (ull)kv->len, esz, left);
    kv->val = r->p + r->pos;
    return et == BEE_GGUF_STRING ? parse_str_array(r, kv) : parse_fixed_array(r, kv, esz);
}

static int parse_kv(bee_gguf *g, rd *r, size_t i) {
    struct kv *kv = &g->kvs[i];
    size_t at = r->pos, slot = 0;
    uint64_t t = 0;
    rd_at(r, "key", i, NULL);
    if (rd_name(r, &kv->key)) return -1;
    r->iname = kv->key;
    long prev = index_find(&g->kidx, g, kv_name, kv->key, &slot);
    if (prev >= 0) return rd_fail(r, at, "name", "duplicate key (first defined as key #%ld)", prev);
    g->kidx.slot[slot] = i + 1;
    kv->pos = r->pos;
    if (rd_uint(r, 4, "value type", &t)) return -1;
    kv->type = t < N_VTYPES ? (uint32_t)t : UINT32_MAX;
    if (t >= N_VTYPES) return rd_fail(r, kv->pos, "value type", "unknown value type %llu", (ull)t);
    return kv->type == BEE_GGUF_ARRAY ? parse_array(r, kv) : parse_scalar(r, kv);
}

static int parse_kvs(bee_gguf *g, rd *r, uint64_t n) {
    g->kvs = calloc(n ? (size_t)n : 1, sizeof *g->kvs);
    if (!g->kvs || index_init(&g->kidx, n)) return bee_fail("%s: out of memory", g->name);
    g->n_kv = (size_t)n;
    for (size_t i = 0; i < n; i++)
        if (parse_kv(g, r, i)) return -1;
    return 0;
}

static int setup_alignment(bee_gguf *g, rd *r) {
    g->alignment = BEE_GGUF_DEFAULT_ALIGNMENT;
    long i = bee_gguf_find_key(g, ALIGN_KEY);
    if (i < 0) return 0;
    const struct kv *kv = &g->kvs[i];
    rd_at(r, "key", (size_t)i, kv->key);
    if (kv->type != BEE_GGUF_UINT32)
        return rd_fail(r, kv->pos, "value type", "%s must be uint32, not %s", ALIGN_KEY, vtype_name(kv->type));
    if (kv->raw == 0 || (kv->raw & (kv->raw - 1)))
        return rd_fail(r, kv->pos + 4, "value", "alignment %llu is not a non-zero power of two", (ull)kv->raw);
    g->alignment = (uint32_t)kv->raw;
    return 0;
}

static int parse_dims(rd *r, bee_gguf_tensor *t) {
    static const char *const ne_field[BEE_GGUF_MAX_DIMS] = {"ne[0]", "ne[1]", "ne[2]", "ne[3]"};
    uint64_t nd = 0;
    size_t at = r->pos;
    if (rd_uint(r, 4, "n_dims", &nd)) return -1;
    if (nd == 0 || nd > BEE_GGUF_MAX_DIMS)
        return rd_fail(r, at, "n_dims", "n_dims is %llu, must be 1..%d", (ull)nd, BEE_GGUF_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    t->n_elements = 1;
    for (int j = 0; j < BEE_GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        at = r->pos;
        if (rd_uint(r, 8, ne_field[j], &t->ne[j])) return -1;
        if (t->ne[j] == 0) return rd_fail(r, at, ne_field[j], "dimension is 0");
        if (t->ne[j] > (uint64_t)INT64_MAX / t->n_elements)
            return rd_fail(r, at, ne_field[j], "element count overflows (dimension %llu)", (ull)t->ne[j]);
        t->n_elements *= t->ne[j];
    }
    return 0;
}

static int parse_type(rd *r, bee_gguf_tensor *t) {
    uint64_t type = 0;
    size_t at = r->pos;
    if (rd_uint(r, 4, "type", &type)) return -1;
    if (!bee_type_valid((uint32_t)type)) return rd_fail(r, at, "type", "unknown tensor type %llu", (ull)type);
    t->type = (uint32_t)type;
    uint64_t blk = bee_type_block(t->type);
    if (blk == 0 || t->ne[0] % blk != 0)
        return rd_fail(r, at, "type", "ne[0] = %llu is not a multiple of the %s block size %llu", (ull)t->ne[0],
                       bee_type_name(t->type), (ull)blk);
    t->nbytes = bee_type_nbytes(t->type, t->n_elements);
    if (t->nbytes == 0)
        return rd_fail(r, at, "type", "%llu elements of %s is too large", (ull)t->n_elements, bee_type_name(t->type));
    return 0;
}

static int parse_tensor_info(bee_gguf *g, rd *r, size_t i) {
    bee_gguf_tensor *t = &g->tensors[i];
    size_t at = r->pos, slot = 0;
    char *name = NULL;
    rd_at(r, "tensor", i, NULL);
    if (rd_name(r, &name)) return -1;
    t->name = name;
    r->iname = name;
    long prev = index_find(&g->tidx, g, tensor_name, name, &slot);
    if (prev >= 0) return rd_fail(r, at, "name", "duplicate tensor name (first used by tensor #%ld)", prev);
    g->tidx.slot[slot] = i + 1;
    if (parse_dims(r, t) || parse_type(r, t)) return -1;
    g->t_pos[i] = r->pos;
    if (rd_uint(r, 8, "data offset", &t->offset)) return -1;
    if (t->offset % g->alignment != 0)
        return rd_fail(r, g->t_pos[i], "data offset", "%llu is not a multiple of the alignment %u", (ull)t->offset,
                       g->alignment);
    return 0;
}

static int parse_tensor_infos(bee_gguf *g, rd *r, uint64_t n) {
    g->tensors = calloc(n ? (size_t)n : 1, sizeof *g->tensors);
    g->t_pos = calloc(n ? (size_t)n : 1, sizeof *g->t_pos);
    if (!g->tensors || !g->t_pos || index_init(&g->tidx, n)) return bee_fail("%s: out of memory", g->name);
    g->n_tensors = (size_t)n;
    for (size_t i = 0; i < n; i++)
        if (parse_tensor_info(g, r, i)) return -1;
    return 0;
}

struct span {
    uint64_t off, end;
    size_t idx;
};

static int span_cmp(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int overlap_fail(bee_gguf *g, rd *r, const struct span *a, const struct span *b) {
    char other[64];
    sanitize(g->tensors[a->idx].name, other, sizeof other);
    rd_at(r, "tensor", b->idx, g->tensors[b->idx].name);
    return rd_fail(r, g->t_pos[b->idx], "data offset", "data [%llu, %llu) overlaps tensor #%zu ('%s') at [%llu, %llu)",
                   (ull)b->off, (ull)b->end, a->idx, other, (ull)a->off, (ull)a->end);
}

static int check_overlap(bee_gguf *g, rd *r) {
    size_t n = g->n_tensors;
    int rc = 0;
    if (n < 2) return 0;
    struct span *s = malloc(n * sizeof *s);
    if (!s) return bee_fail("%s: out of memory", g->name);
    for (size_t i = 0; i < n; i++)
        s[i] = (struct span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].nbytes, i};
    qsort(s, n, sizeof *s, span_cmp);
    for (size_t k = 1; k < n && rc == 0; k++)
        if (s[k].off < s[k - 1].end) rc = overlap_fail(g, r, &s[k - 1], &s[k]);
    free(s);
    return rc;
}

static int place_tensors(bee_gguf *g, rd *r) {
    size_t a = g->alignment;
    if (r->pos > SIZE_MAX - (a - 1)) return bee_fail("%s: file too large", g->name);
    g->data_off = (r->pos + (a - 1)) / a * a;
    if (g->n_tensors == 0) return 0;
    size_t avail = g->data_off <= g->size ? g->size - g->data_off : 0;
    for (size_t i = 0; i < g->n_tensors; i++) {
        bee_gguf_tensor *t = &g->tensors[i];
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            rd_at(r, "tensor", i, t->name);
            return rd_fail(r, g->t_pos[i], "data offset",
                           "data [%llu, +%zu bytes) extends past the end of the file (data section starts at %zu, "
                           "file size %zu)",
                           (ull)t->offset, t->nbytes, g->data_off, g->size);
        }
        t->data = g->base + g->data_off + t->offset;
    }
    return check_overlap(g, r);
}

static int parse(bee_gguf *g) {
    rd r = {.p = g->base, .size = g->size, .file = g->name, .elem = NO_ELEM};
    uint64_t n_t = 0, n_kv = 0;
    if (parse_header(g, &r, &n_t, &n_kv) || parse_kvs(g, &r, n_kv) || setup_alignment(g, &r) ||
        parse_tensor_infos(g, &r, n_t))
        return -1;
    return place_tensors(g, &r);
}

int bee_gguf_open_buffer(const void *data, size_t size, const char *name, bee_gguf **out) {
    if (!name) name = "<buffer>";
    if (!out) return bee_fail("%s: bee_gguf_open_buffer: out is NULL", name);
    *out = NULL;
    if (!data && size) return bee_fail("%s: NULL buffer of %zu bytes", name, size);
    bee_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->name = strdup(name))) {
        free(g);
        return bee_fail("%s: out of memory", name);
    }
    g->base = data;
    g->size = size;
    if (parse(g)) {
        bee_gguf_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

int bee_gguf_open(const char *path, bee_gguf **out) {
    bee_mmap m = {0};
    if (out) *out = NULL;
    if (bee_mmap_open(path, &m)) return -1;
    if (bee_gguf_open_buffer(m.data, m.size, path, out)) {
        bee_mmap_close(&m);
        return -1;
    }
    (*out)->map = m;
    return 0;
}

void bee_gguf_free(bee_gguf *g) {
    if (!g) return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].str_offs);
    }
    for (size_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->t_pos);
    free(g->kidx.slot);
    free(g->tidx.slot);
    free(g->name);
    bee_mmap_close(&g->map);
    free(g);
}

uint32_t bee_gguf_version(const bee_gguf *g) { return g ? g->version : 0; }
uint32_t bee_gguf_alignment(const bee_gguf *g) { return g ? g->alignment : 0; }
size_t bee_gguf_file_size(const bee_gguf *g) { return g ? g->size : 0; }
size_t bee_gguf_n_kv(const bee_gguf *g) { return g ? g->n_kv : 0; }
const char *bee_gguf_kv_key(const bee_gguf *g, size_t i) { return g && i < g->n_kv ? g->kvs[i].key : NULL; }
uint32_t bee_gguf_kv_type(const bee_gguf *g, size_t i) { return g && i < g->n_kv ? g->kvs[i].type : UINT32_MAX; }

long bee_gguf_find_key(const bee_gguf *g, const char *key) {
    if (!g || !key || !g->kidx.slot) return -1;
    return index_find(&g->kidx, g, kv_name, key, NULL);
}

size_t bee_gguf_n_tensors(const bee_gguf *g) { return g ? g->n_tensors : 0; }

const bee_gguf_tensor *bee_gguf_tensor_at(const bee_gguf *g, size_t i) {
    return g && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const bee_gguf_tensor *bee_gguf_find_tensor(const bee_gguf *g, const char *name) {
    if (!g || !name || !g->tidx.slot) return NULL;
    long i = index_find(&g->tidx, g, tensor_name, name, NULL);
    return i < 0 ? NULL : &g->tensors[i];
}

/* ---------------------------------------------------------------- getters */

static const struct kv *lookup(const bee_gguf *g, const char *key) {
    long i = bee_gguf_find_key(g, key);
    if (i >= 0) return &g->kvs[i];
    bee_fail("%s: key '%s' not found", g ? g->name : "gguf", key ? key : "(null)");
    return NULL;
}

static int wrong_type(const bee_gguf *g, const struct kv *kv, const char *expected) {
    int arr = kv->type == BEE_GGUF_ARRAY;
    return bee_fail("%s: key '%s' (offset %zu) has type %s%s, expected %s", g->name, kv->key, kv->pos,
                    arr ? "array of " : "", vtype_name(arr ? kv->elem_type : kv->type), expected);
}

/* Integer value as sign + magnitude; -1 if not an integer type. */
static int int_value(const struct kv *kv, int *neg, uint64_t *mag) {
    unsigned bits = (unsigned)vtype_size(kv->type) * 8;
    switch (kv->type) {
    case BEE_GGUF_UINT8: case BEE_GGUF_UINT16: case BEE_GGUF_UINT32: case BEE_GGUF_UINT64:
        *neg = 0;
        *mag = kv->raw;
        return 0;
    case BEE_GGUF_INT8: case BEE_GGUF_INT16: case BEE_GGUF_INT32: case BEE_GGUF_INT64: {
        uint64_t mask = bits == 64 ? UINT64_MAX : (1ull << bits) - 1;
        *neg = (kv->raw >> (bits - 1)) & 1;
        *mag = *neg ? (~kv->raw + 1) & mask : kv->raw;
        return 0;
    }
    default: return -1;
    }
}

static int get_uint(const bee_gguf *g, const char *key, uint64_t max, const char *tname, uint64_t *out) {
    const struct kv *kv = lookup(g, key);
    int neg = 0;
    uint64_t mag = 0;
    if (!kv) return -1;
    if (int_value(kv, &neg, &mag)) return wrong_type(g, kv, "an integer");
    if (neg || mag > max)
        return bee_fail("%s: key '%s' (offset %zu): value %s%llu does not fit in %s", g->name, kv->key, kv->pos,
                        neg ? "-" : "", (ull)mag, tname);
    *out = mag;
    return 0;
}

int bee_gguf_get_u32(const bee_gguf *g, const char *key, uint32_t *out) {
    uint64_t v = 0;
    if (get_uint(g, key, UINT32_MAX, "uint32", &v)) return -1;
    *out = (uint32_t)v;
    return 0;
}

int bee_gguf_get_u64(const bee_gguf *g, const char *key, uint64_t *out) {
    return get_uint(g, key, UINT64_MAX, "uint64", out);
}

int bee_gguf_get_i64(const bee_gguf *g, const char *key, int64_t *out) {
    const struct kv *kv = lookup(g, key);
    int neg = 0;
    uint64_t mag = 0;
    if (!kv) return -1;
    if (int_value(kv, &neg, &mag)) return wrong_type(g, kv, "an integer");
    if (mag > (uint64_t)INT64_MAX + (uint64_t)neg)
        return bee_fail("%s: key '%s' (offset %zu): value %llu does not fit in int64", g->name, kv->key, kv->pos,
                        (ull)mag);
    *out = !neg ? (int64_t)mag : mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    return 0;
}

int bee_gguf_get_f64(const bee_gguf *g, const char *key, double *out) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type == BEE_GGUF_FLOAT32) {
        uint32_t b = (uint32_t)kv->raw;
        float f;
        memcpy(&f, &b, sizeof f);
        *out = f;
    } else if (kv->type == BEE_GGUF_FLOAT64) {
        memcpy(out, &kv->raw, sizeof *out);
    } else {
        return wrong_type(g, kv, "float32 or float64");
    }
    return 0;
}

int bee_gguf_get_f32(const bee_gguf *g, const char *key, float *out) {
    double d = 0;
    if (bee_gguf_get_f64(g, key, &d)) return -1;
    if ((d > FLT_MAX && d <= DBL_MAX) || (d < -FLT_MAX && d >= -DBL_MAX))
        return bee_fail("%s: key '%s': value %g does not fit in float32", g->name, key, d);
    *out = (float)d;
    return 0;
}

int bee_gguf_get_bool(const bee_gguf *g, const char *key, int *out) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != BEE_GGUF_BOOL) return wrong_type(g, kv, "bool");
    *out = (int)kv->raw;
    return 0;
}

int bee_gguf_get_str(const bee_gguf *g, const char *key, const char **s, uint64_t *len) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != BEE_GGUF_STRING) return wrong_type(g, kv, "string");
    *s = (const char *)kv->val;
    if (len) *len = kv->len;
    return 0;
}

int bee_gguf_get_arr(const bee_gguf *g, const char *key, uint32_t *elem_type, uint64_t *count) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != BEE_GGUF_ARRAY) return wrong_type(g, kv, "array");
    if (elem_type) *elem_type = kv->elem_type;
    if (count) *count = kv->len;
    return 0;
}

int bee_gguf_get_arr_data(const bee_gguf *g, const char *key, const void **data) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != BEE_GGUF_ARRAY || kv->elem_type == BEE_GGUF_STRING)
        return wrong_type(g, kv, "array of fixed-size elements");
    *data = kv->val;
    return 0;
}

int bee_gguf_get_arr_str(const bee_gguf *g, const char *key, uint64_t i, const char **s, uint64_t *len) {
    const struct kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != BEE_GGUF_ARRAY || kv->elem_type != BEE_GGUF_STRING)
        return wrong_type(g, kv, "array of string");
    if (i >= kv->len)
        return bee_fail("%s: key '%s': index %llu out of range (array has %llu strings)", g->name, kv->key, (ull)i,
                        (ull)kv->len);
    const uint8_t *p = g->base + kv->str_offs[i];
    *s = (const char *)p + 8;
    if (len) *len = le_load(p, 8);
    return 0;
}

/* ================================================================ writer */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n && cap <= SIZE_MAX / 2) cap *= 2;
        uint8_t *np = cap - b->n >= n ? realloc(b->p, cap) : NULL;
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void wb_uint(wbuf *b, uint64_t v, size_t n) {
    uint8_t t[8];
    le_store(t, v, n);
    wb_put(b, t, n);
}

static void wb_str(wbuf *b, const void *s, uint64_t len) {
    wb_uint(b, len, 8);
    wb_put(b, s, (size_t)len);
}

struct wkv {
    char *key;
    uint32_t type;
    wbuf val; /* serialized value, without the type */
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    uint64_t ne[BEE_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
};

struct bee_gguf_writer {
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
};

/* Grows *arr (of elem-size items) so that one more fits. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = nc <= SIZE_MAX / elem ? realloc(*arr, nc * elem) : NULL;
    if (!p) return bee_fail("gguf writer: out of memory");
    *arr = p;
    *cap = nc;
    return 0;
}

bee_gguf_writer *bee_gguf_writer_init(void) {
    bee_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) bee_fail("gguf writer: out of memory");
    return w;
}

void bee_gguf_writer_free(bee_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->ts[i].name);
    free(w->kvs);
    free(w->ts);
    free(w);
}

static struct wkv *wkv_find(const bee_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0) return &w->kvs[i];
    return NULL;
}

/* Stores key = (type, serialized value); takes ownership of val->p. */
static int w_set(bee_gguf_writer *w, const char *key, uint32_t type, wbuf *val) {
    int rc = 0;
    struct wkv *kv = w && key && *key ? wkv_find(w, key) : NULL;
    if (!w || !key || !*key) rc = bee_fail("gguf writer: missing writer or empty key");
    else if (val->oom) rc = bee_fail("gguf writer: key '%s': out of memory", key);
    else if (!kv && grow((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs)) rc = -1;
    else if (!kv && !(key = strdup(key))) rc = bee_fail("gguf writer: out of memory");
    if (rc) {
        free(val->p);
        return rc;
    }
    if (!kv) {
        kv = &w->kvs[w->n_kv++];
        kv->key = (char *)key;
    } else {
        free(kv->val.p);
    }
    kv->type = type;
    kv->val = *val;
    return 0;
}

static int set_uint(bee_gguf_writer *w, const char *key, uint32_t type, uint64_t v) {
    wbuf b = {0};
    wb_uint(&b, v, vtype_size(type));
    return w_set(w, key, type, &b);
}

int bee_gguf_set_u32(bee_gguf_writer *w, const char *key, uint32_t v) {
    return set_uint(w, key, BEE_GGUF_UINT32, v);
}

int bee_gguf_set_i32(bee_gguf_writer *w, const char *key, int32_t v) {
    return set_uint(w, key, BEE_GGUF_INT32, (uint32_t)v);
}

int bee_gguf_set_u64(bee_gguf_writer *w, const char *key, uint64_t v) {
    return set_uint(w, key, BEE_GGUF_UINT64, v);
}

int bee_gguf_set_f32(bee_gguf_writer *w, const char *key, float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof b);
    return set_uint(w, key, BEE_GGUF_FLOAT32, b);
}

int bee_gguf_set_bool(bee_gguf_writer *w, const char *key, int v) {
    return set_uint(w, key, BEE_GGUF_BOOL, v != 0);
}

/* Reads one element of a fixed-size type from host memory as raw bits. */
static uint64_t host_bits(const void *p, size_t size) {
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (size) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

int bee_gguf_set_scalar(bee_gguf_writer *w, const char *key, uint32_t type, const void *v) {
    size_t n = vtype_size(type);
    if (n == 0 || !v)
        return bee_fail("gguf writer: key '%s': %s is not a fixed-size value type", key ? key : "(null)",
                        vtype_name(type));
    uint64_t bits = host_bits(v, n);
    if (type == BEE_GGUF_BOOL && bits > 1)
        return bee_fail("gguf writer: key '%s': bool value %llu is not 0 or 1", key ? key : "(null)", (ull)bits);
    return set_uint(w, key, type, bits);
}

int bee_gguf_set_str(bee_gguf_writer *w, const char *key, const char *v) {
    wbuf b = {0};
    if (!v) return bee_fail("gguf writer: key '%s': NULL string", key ? key : "(null)");
    wb_str(&b, v, strlen(v));
    return w_set(w, key, BEE_GGUF_STRING, &b);
}

static int check_arr(const char *key, uint32_t elem_type, const void *data, uint64_t n, size_t *bytes) {
    size_t esz = vtype_size(elem_type);
    key = key ? key : "(null)";
    if (esz == 0) return bee_fail("gguf writer: key '%s': %s arrays need bee_gguf_set_arr_str or are unsupported",
                                  key, vtype_name(elem_type));
    if (n > SIZE_MAX / esz) return bee_fail("gguf writer: key '%s': array too large", key);
    if (n && !data) return bee_fail("gguf writer: key '%s': NULL array data", key);
    *bytes = (size_t)n * esz;
    const uint8_t *p = data;
    for (uint64_t i = 0; elem_type == BEE_GGUF_BOOL && i < n; i++)
        if (p[i] > 1) return bee_fail("gguf writer: key '%s': bool element %llu is %u, not 0 or 1", key, (ull)i, p[i]);
    return 0;
}

int bee_gguf_set_arr(bee_gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    size_t bytes = 0, esz = vtype_size(elem_type);
    wbuf b = {0};
    if (check_arr(key, elem_type, data, n, &bytes)) return -1;
    wb_uint(&b, elem_type, 4);
    wb_uint(&b, n, 8);
    const uint8_t *p = data; /* elements written little-endian */
    for (size_t i = 0; i < bytes && !b.oom; i += esz) wb_uint(&b, host_bits(p + i, esz), esz);
    return w_set(w, key, BEE_GGUF_ARRAY, &b);
}

int bee_gguf_set_arr_str(bee_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                         uint64_t n) {
    wbuf b = {0};
    if (n && !strs) return bee_fail("gguf writer: key '%s': NULL string array", key ? key : "(null)");
    wb_uint(&b, BEE_GGUF_STRING, 4);
    wb_uint(&b, n, 8);
    for (uint64_t i = 0; i < n && !b.oom; i++) {
        uint64_t len = lens ? lens[i] : strs[i] ? strlen(strs[i]) : 0;
        if (len && !strs[i]) {
            free(b.p);
            return bee_fail("gguf writer: key '%s': string %llu is NULL", key ? key : "(null)", (ull)i);
        }
        wb_str(&b, strs[i], len);
    }
    return w_set(w, key, BEE_GGUF_ARRAY, &b);
}

static int check_tensor(const bee_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                        const uint64_t *ne, size_t nbytes) {
    uint64_t n = 1;
    if (!name || !*name) return bee_fail("gguf writer: empty tensor name");
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0) return bee_fail("gguf writer: duplicate tensor name '%s'", name);
    if (!bee_type_valid(type)) return bee_fail("gguf writer: tensor '%s': unknown type %u", name, type);
    if (n_dims == 0 || n_dims > BEE_GGUF_MAX_DIMS || !ne)
        return bee_fail("gguf writer: tensor '%s': n_dims %u must be 1..%d", name, n_dims, BEE_GGUF_MAX_DIMS);
    for (uint32_t j = 0; j < n_dims; j++) {
        if (ne[j] == 0 || ne[j] > (uint64_t)INT64_MAX / n)
            return bee_fail("gguf writer: tensor '%s': bad dimension ne[%u] = %llu", name, j, (ull)ne[j]);
        n *= ne[j];
    }
    if (ne[0] % bee_type_block(type) != 0)
        return bee_fail("gguf writer: tensor '%s': ne[0] = %llu is not a multiple of the block size", name,
                        (ull)ne[0]);
    size_t want = bee_type_nbytes(type, n);
    if (want == 0 || want != nbytes)
        return bee_fail("gguf writer: tensor '%s': nbytes is %zu, expected %zu for %llu %s elements", name, nbytes,
                        want, (ull)n, bee_type_name(type));
    return 0;
}

int bee_gguf_add_tensor(bee_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                        const void *data, size_t nbytes) {
    if (!w) return bee_fail("gguf writer: NULL writer");
    if (check_tensor(w, name, type, n_dims, ne, nbytes)) return -1;
    if (!data) return bee_fail("gguf writer: tensor '%s': NULL data", name);
    if (grow((void **)&w->ts, &w->cap_t, w->n_t, sizeof *w->ts)) return -1;
    struct wtensor *t = &w->ts[w->n_t];
    if (!(t->name = strdup(name))) return bee_fail("gguf writer: out of memory");
    w->n_t++;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t j = 0; j < BEE_GGUF_MAX_DIMS; j++) t->ne[j] = j < n_dims ? ne[j] : 1;
    t->data = data;
    t->nbytes = nbytes;
    return 0;
}

static int writer_alignment(const bee_gguf_writer *w, const char *path, uint32_t *align) {
    const struct wkv *kv = wkv_find(w, ALIGN_KEY);
    *align = BEE_GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return 0;
    if (kv->type != BEE_GGUF_UINT32)
        return bee_fail("%s: %s must be uint32, not %s", path, ALIGN_KEY, vtype_name(kv->type));
    uint32_t a = (uint32_t)le_load(kv->val.p, 4);
    if (a == 0 || (a & (a - 1))) return bee_fail("%s: %s = %u is not a non-zero power of two", path, ALIGN_KEY, a);
    *align = a;
    return 0;
}

/* Header, key/values and tensor infos (data offsets in offs). */
static void serialize_meta(const bee_gguf_writer *w, wbuf *b, const uint64_t *offs) {
    wb_put(b, "GGUF", 4);
    wb_uint(b, GGUF_VERSION, 4);
    wb_uint(b, w->n_t, 8);
    wb_uint(b, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(b, w->kvs[i].key, strlen(w->kvs[i].key));
        wb_uint(b, w->kvs[i].type, 4);
        wb_put(b, w->kvs[i].val.p, w->kvs[i].val.n);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        wb_str(b, t->name, strlen(t->name));
        wb_uint(b, t->n_dims, 4);
        for (uint32_t j = 0; j < t->n_dims; j++) wb_uint(b, t->ne[j], 8);
        wb_uint(b, t->type, 4);
        wb_uint(b, offs[i], 8);
    }
}

static int tensor_offsets(const bee_gguf_writer *w, const char *path, uint32_t align, uint64_t *offs) {
    uint64_t cur = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        offs[i] = cur;
        if (w->ts[i].nbytes > UINT64_MAX - align - cur) return bee_fail("%s: tensor data too large", path);
        cur = (cur + w->ts[i].nbytes + (align - 1)) / align * align;
    }
    return 0;
}

static int write_body(const bee_gguf_writer *w, bee_afile *f, const wbuf *meta, uint32_t align,
                      const uint64_t *offs) {
    if (bee_afile_write(f, meta->p, meta->n) || bee_afile_pad(f, align)) return -1;
    uint64_t start = bee_afile_tell(f);
    for (size_t i = 0; i < w->n_t; i++) {
        if (bee_afile_tell(f) - start != offs[i]) return bee_fail("gguf writer: internal error: offset mismatch");
        if (bee_afile_write(f, w->ts[i].data, w->ts[i].nbytes) || bee_afile_pad(f, align)) return -1;
    }
    return 0;
}

int bee_gguf_writer_write(bee_gguf_writer *w, const char *path) {
    uint32_t align = BEE_GGUF_DEFAULT_ALIGNMENT;
    wbuf meta = {0};
    if (!w || !path) return bee_fail("gguf writer: NULL writer or path");
    if (writer_alignment(w, path, &align)) return -1;
    uint64_t *offs = malloc((w->n_t ? w->n_t : 1) * sizeof *offs);
    if (!offs) return bee_fail("%s: out of memory", path);
    int rc = tensor_offsets(w, path, align, offs);
    if (rc == 0) serialize_meta(w, &meta, offs);
    if (rc == 0 && meta.oom) rc = bee_fail("%s: out of memory", path);
    bee_afile *f = rc == 0 ? bee_afile_open(path) : NULL;
    if (rc == 0 && !f) rc = -1;
    if (rc == 0 && write_body(w, f, &meta, align, offs)) {
        bee_afile_abort(f);
        rc = -1;
    } else if (rc == 0) {
        rc = bee_afile_commit(f);
    }
    free(meta.p);
    free(offs);
    return rc;
}

/* ================================================================ copying */

int bee_gguf_writer_copy_kv(bee_gguf_writer *w, const bee_gguf *g, size_t i) {
    if (i >= g->n_kv) return bee_fail("gguf copy: key index %zu out of range", i);
    const struct kv *kv = &g->kvs[i];
    if (kv->type == BEE_GGUF_STRING) {
        wbuf b = {0};
        wb_str(&b, (const char *)kv->val, (size_t)kv->len);
        return w_set(w, kv->key, BEE_GGUF_STRING, &b);
    }
    if (kv->type != BEE_GGUF_ARRAY) return set_uint(w, kv->key, kv->type, kv->raw);
    if (kv->elem_type != BEE_GGUF_STRING) return bee_gguf_set_arr(w, kv->key, kv->elem_type, kv->val, kv->len);
    const char **strs = malloc((kv->len ? kv->len : 1) * sizeof *strs);
    uint64_t *lens = malloc((kv->len ? kv->len : 1) * sizeof *lens);
    int rc = strs && lens ? 0 : bee_fail("out of memory");
    for (uint64_t k = 0; rc == 0 && k < kv->len; k++) rc = bee_gguf_get_arr_str(g, kv->key, k, &strs[k], &lens[k]);
    if (rc == 0) rc = bee_gguf_set_arr_str(w, kv->key, strs, lens, kv->len);
    free(strs);
    free(lens);
    return rc;
}
