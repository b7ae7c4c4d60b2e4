/* safetensors: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
 * then the data section; offsets are relative to the data section. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "format/ckpt.h"
#include "util/error.h"
#include "util/types.h"

#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct {
    const char *name; /* key in the JSON object (owned by the json tree) */
    uint32_t type;
    size_t esize;
    int n_dims;
    int64_t shape[BEE_CKPT_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

typedef struct {
    const char *file;
    const uint8_t *data; /* start of the data section */
    uint64_t data_size;
    st_entry *entries;
    size_t count;
} st_reader;

static int st_header_check(const char *file, const uint8_t *d, size_t size, uint64_t *hlen) {
    if (size < 8) return bee_fail("%s: too small for a safetensors file (%zu bytes)", file, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | d[i];
    if (n > ST_MAX_HEADER)
        return bee_fail("%s: safetensors header length %llu is too large (limit %llu bytes; not a safetensors file?)",
                        file, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n > size - 8)
        return bee_fail("%s: safetensors header length %llu exceeds the file size %zu (truncated?)", file,
                        (unsigned long long)n, size);
    if (n < 2 || d[8] != '{')
        return bee_fail("%s: not a safetensors file (header is not a JSON object)", file);
    *hlen = n;
    return 0;
}

static int st_dtype_parse(const st_reader *r, const char *name, const json_t *v, st_entry *e) {
    static const struct { const char *name; uint32_t type; size_t esize; } known[] = {
        {"F32", BEE_TYPE_F32, 4}, {"F16", BEE_TYPE_F16, 2}, {"BF16", BEE_TYPE_BF16, 2}};
    const char *s = json_string_value(json_object_get(v, "dtype"));
    if (!s) return bee_fail("%s: tensor '%s': missing or non-string \"dtype\"", r->file, name);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(s, known[i].name) == 0) {
            e->type = known[i].type;
            e->esize = known[i].esize;
            return 0;
        }
    }
    return bee_fail("%s: tensor '%s': unsupported dtype '%.32s' (only F32, F16 and BF16)", r->file, name, s);
}

static int st_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int st_shape_parse(const st_reader *r, const char *name, const json_t *v, st_entry *e, uint64_t *numel) {
    const json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > BEE_CKPT_MAX_DIMS)
        return bee_fail("%s: tensor '%s': \"shape\" is not an array of at most %d ints", r->file, name,
                        BEE_CKPT_MAX_DIMS);
    e->n_dims = (int)json_array_size(shape);
    *numel = 1;
    for (int i = 0; i < e->n_dims; i++) {
        uint64_t d = 0;
        if (st_uint(json_array_get(shape, (size_t)i), &d) || d > INT64_MAX)
            return bee_fail("%s: tensor '%s': shape[%d] is not a non-negative int", r->file, name, i);
        if (d && *numel > (UINT64_MAX >> 4) / d)
            return bee_fail("%s: tensor '%s': element count overflows", r->file, name);
        e->shape[i] = (int64_t)d;
        *numel *= d;
    }
    return 0;
}

static int st_offsets_parse(const st_reader *r, const char *name, const json_t *v, st_entry *e) {
    const json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 || st_uint(json_array_get(off, 0), &e->begin) ||
        st_uint(json_array_get(off, 1), &e->end))
        return bee_fail("%s: tensor '%s': \"data_offsets\" is not a pair of non-negative ints", r->file, name);
    if (e->begin > e->end || e->end > r->data_size)
        return bee_fail("%s: tensor '%s': data_offsets [%llu, %llu] out of bounds (data section is %llu bytes)",
                        r->file, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)r->data_size);
    return 0;
}

static int st_entry_parse(const st_reader *r, const char *name, const json_t *v, st_entry *e) {
    uint64_t numel = 0;
    memset(e, 0, sizeof *e);
    e->name = name;
    if (!json_is_object(v)) return bee_fail("%s: tensor '%s': header entry is not an object", r->file, name);
    if (st_dtype_parse(r, name, v, e) || st_shape_parse(r, name, v, e, &numel) || st_offsets_parse(r, name, v, e))
        return -1;
    if (numel * e->esize != e->end - e->begin)
        return bee_fail("%s: tensor '%s': shape needs %llu bytes but data_offsets [%llu, %llu] span %llu", r->file,
                        name, (unsigned long long)(numel * e->esize), (unsigned long long)e->begin,
                        (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
    return 0;
}

static int st_entry_cmp(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int st_entries_parse(st_reader *r, json_t *root) {
    if (!(r->entries = calloc(json_object_size(root) + 1, sizeof *r->entries)))
        return bee_fail("%s: out of memory", r->file);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        if (st_entry_parse(r, key, v, &r->entries[r->count])) return -1;
        r->count++;
    }
    qsort(r->entries, r->count, sizeof *r->entries, st_entry_cmp); /* file order */
    return 0;
}

static int st_read(st_reader *r, json_t *root, bee_ckpt **out) {
    if (!json_is_object(root)) return bee_fail("%s: safetensors header is not a JSON object", r->file);
    if (st_entries_parse(r, root) || !(*out = bee_ckpt_new(r->file))) return -1;
    for (size_t i = 0; i < r->count; i++) {
        const st_entry *e = &r->entries[i];
        if (bee_ckpt_add(*out, e->name, e->type, e->n_dims, e->shape, r->data + e->begin, (size_t)(e->end - e->begin)))
            return -1;
    }
    return bee_ckpt_finish(*out);
}

int bee_ckpt_open_safetensors_buffer(const void *data, size_t size, const char *name, bee_ckpt **out) {
    *out = NULL;
    const char *file = name ? name : "(buffer)";
    const uint8_t *d = data;
    uint64_t hlen = 0;
    if (st_header_check(file, d, d ? size : 0, &hlen)) return -1;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)d + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return bee_fail("%s: safetensors header is not valid JSON (byte %d of the header: %s)", file, jerr.position,
                        jerr.text);
    st_reader r = {.file = file, .data = d + 8 + hlen, .data_size = size - 8 - hlen};
    int rc = st_read(&r, root, out);
    free(r.entries);
    json_decref(root);
    if (rc) {
        bee_ckpt_free(*out);
        *out = NULL;
    }
    return rc;
}
