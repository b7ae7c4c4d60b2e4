/* PyTorch zip checkpoints (torch.save >= 1.6) and the shared bee_ckpt
 * container. The archive holds <root>/data.pkl (a pickle describing the
 * state dict) and <root>/data/<key> (raw little-endian storages); each tensor
 * is _rebuild_tensor_v2(persistent storage id, offset, size, stride, ...).
 * The pickle is interpreted without executing anything (format/pickle.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ckpt.h"
#include "format/pickle.h"
#include "format/zip.h"
#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

struct bee_ckpt {
    char *file;
    bee_mmap map; /* only when opened from a path */
    bee_ckpt_tensor *tensors;
    size_t count, cap;
    const bee_ckpt_tensor **by_name;
};

/* ================================================================== container */

static char *ckpt_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

bee_ckpt *bee_ckpt_new(const char *file) {
    bee_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->file = ckpt_strdup(file ? file : "(buffer)"))) {
        free(c);
        bee_fail("%s: out of memory", file ? file : "(buffer)");
        return NULL;
    }
    return c;
}

int bee_ckpt_add(bee_ckpt *c, const char *name, uint32_t type, int n_dims, const int64_t *shape, const void *data,
                 size_t nbytes) {
    if (n_dims < 0 || n_dims > BEE_CKPT_MAX_DIMS)
        return bee_fail("%s: tensor '%s' has %d dimensions (at most %d supported)", c->file, name, n_dims,
                        BEE_CKPT_MAX_DIMS);
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        bee_ckpt_tensor *t = realloc(c->tensors, cap * sizeof *t);
        if (!t) return bee_fail("%s: out of memory", c->file);
        c->tensors = t;
        c->cap = cap;
    }
    bee_ckpt_tensor *t = &c->tensors[c->count];
    memset(t, 0, sizeof *t);
    if (!(t->name = ckpt_strdup(name))) return bee_fail("%s: out of memory", c->file);
    t->type = type;
    t->n_dims = n_dims;
    if (n_dims) memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    t->data = data;
    t->nbytes = nbytes;
    c->count++;
    return 0;
}

static int ckpt_name_cmp(const void *a, const void *b) {
    return strcmp((*(const bee_ckpt_tensor *const *)a)->name, (*(const bee_ckpt_tensor *const *)b)->name);
}

int bee_ckpt_finish(bee_ckpt *c) {
    free(c->by_name);
    if (!(c->by_name = malloc((c->count ? c->count : 1) * sizeof *c->by_name)))
        return bee_fail("%s: out of memory", c->file);
    for (size_t i = 0; i < c->count; i++) c->by_name[i] = &c->tensors[i];
    qsort(c->by_name, c->count, sizeof *c->by_name, ckpt_name_cmp);
    for (size_t i = 1; i < c->count; i++)
        if (strcmp(c->by_name[i - 1]->name, c->by_name[i]->name) == 0)
            return bee_fail("%s: duplicate tensor name '%s'", c->file, c->by_name[i]->name);
    return 0;
}

void bee_ckpt_free(bee_ckpt *c) {
    if (!c) return;
    for (size_t i = 0; i < c->count; i++) free(c->tensors[i].name);
    free(c->tensors);
    free(c->by_name);
    free(c->file);
    bee_mmap_close(&c->map);
    free(c);
}

size_t bee_ckpt_count(const bee_ckpt *c) { return c ? c->count : 0; }

const bee_ckpt_tensor *bee_ckpt_get(const bee_ckpt *c, size_t i) { return c && i < c->count ? &c->tensors[i] : NULL; }

const bee_ckpt_tensor *bee_ckpt_find(const bee_ckpt *c, const char *name) {
    if (!c || !name) return NULL;
    if (!c->by_name) {
        for (size_t i = 0; i < c->count; i++)
            if (strcmp(c->tensors[i].name, name) == 0) return &c->tensors[i];
        return NULL;
    }
    bee_ckpt_tensor key = {.name = (char *)name};
    const bee_ckpt_tensor *kp = &key;
    const bee_ckpt_tensor **hit = bsearch(&kp, c->by_name, c->count, sizeof *c->by_name, ckpt_name_cmp);
    return hit ? *hit : NULL;
}

/* ================================================================== opening by path */

static int ckpt_is_legacy_torch(const uint8_t *d, size_t n) {
    /* protocol-2 pickle starting with LONG1 of torch's magic number 0x1950a86a20f9469cfc6c */
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    return n >= sizeof magic && memcmp(d, magic, sizeof magic) == 0;
}

int bee_ckpt_open(const char *path, bee_ckpt **out) {
    *out = NULL;
    bee_mmap m;
    if (bee_mmap_open(path, &m)) return -1;
    int rc;
    if (m.size >= 4 && memcmp(m.data, "PK\x03\x04", 4) == 0)
        rc = bee_ckpt_open_torch_buffer(m.data, m.size, path, out);
    else if (ckpt_is_legacy_torch(m.data, m.size))
        rc = bee_fail("%s: legacy torch.save format not supported; re-save with torch>=1.6", path);
    else
        rc = bee_ckpt_open_safetensors_buffer(m.data, m.size, path, out);
    if (rc) {
        bee_mmap_close(&m);
        return -1;
    }
    (*out)->map = m;
    return 0;
}

/* ================================================================== torch zip */

static const char *const torch_allowed_globals[] = {
    "collections OrderedDict",
    "torch._utils _rebuild_tensor_v2",
    "torch._utils _rebuild_tensor",
    "torch._utils _rebuild_parameter",
    "torch._utils _rebuild_parameter_with_state",
    "torch._tensor _rebuild_from_type_v2",
    "torch Tensor",
    "torch.nn.parameter Parameter",
    "torch FloatStorage",
    "torch HalfStorage",
    "torch BFloat16Storage",
    /* harmless names accepted so that the error can say "unsupported storage type" */
    "torch DoubleStorage",
    "torch LongStorage",
    "torch IntStorage",
    "torch ShortStorage",
    "torch CharStorage",
    "torch ByteStorage",
    "torch BoolStorage",
    NULL,
};

typedef struct {
    const char *file;
    bee_zip zip;
    char *root;     /* archive prefix, including the trailing '/' (may be empty) */
    char *pkl_ctx;  /* "<file>: <root>data.pkl", prefix of pickle messages */
    bee_pkl *pkl;
    bee_ckpt *ckpt;
} torch_reader;

/* A tensor as described by the pickle, before its storage is resolved. */
typedef struct {
    const char *name;
    const bee_pkl_value *pid; /* ('storage', torch.<T>Storage, key, location, numel) */
    uint64_t offset;          /* in elements */
    int n_dims;
    int64_t shape[BEE_CKPT_MAX_DIMS];
    int64_t stride[BEE_CKPT_MAX_DIMS];
    uint64_t numel;
    uint32_t type;
    size_t esize;
} torch_tensor;

static char *torch_concat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* The archive root is the prefix of the shortest member named "*data.pkl" at a '/' boundary. */
static int torch_root_find(torch_reader *r) {
    const bee_zip_entry *best = NULL;
    for (size_t i = 0; i < r->zip.count; i++) {
        const char *n = r->zip.entries[i].name;
        if ((strcmp(n, "data.pkl") == 0 || ends_with(n, "/data.pkl")) && (!best || strlen(n) < strlen(best->name)))
            best = &r->zip.entries[i];
    }
    if (!best) return bee_fail("%s: zip archive has no data.pkl member (not a PyTorch checkpoint)", r->file);
    size_t len = strlen(best->name) - strlen("data.pkl");
    if (!(r->root = malloc(len + 1))) return bee_fail("%s: out of memory", r->file);
    memcpy(r->root, best->name, len);
    r->root[len] = 0;
    char *ctx = torch_concat(r->file, ": ");
    r->pkl_ctx = ctx ? torch_concat(ctx, best->name) : NULL;
    free(ctx);
    return r->pkl_ctx ? 0 : bee_fail("%s: out of memory", r->file);
}

/* Member bytes of <root><suffix>, or NULL data when absent. */
static int torch_member(const torch_reader *r, const char *suffix, const uint8_t **data, size_t *size) {
    char *name = torch_concat(r->root, suffix);
    if (!name) return bee_fail("%s: out of memory", r->file);
    const bee_zip_entry *e = bee_zip_find(&r->zip, name);
    free(name);
    *data = NULL;
    *size = 0;
    return e ? bee_zip_member_data(&r->zip, e, data, size) : 0;
}

/* torch >= 2.1 records the storages' byte order; only little-endian is supported. */
static int torch_byteorder_check(const torch_reader *r) {
    const uint8_t *d = NULL;
    size_t n = 0;
    if (torch_member(r, "byteorder", &d, &n)) return -1;
    if (d && !(n >= 6 && memcmp(d, "little", 6) == 0))
        return bee_fail("%s: checkpoint storages are not little-endian (byteorder '%.*s')", r->file,
                        (int)(n < 16 ? n : 16), (const char *)d);
    return 0;
}

static int torch_pickle_load(torch_reader *r, const bee_pkl_value **root) {
    const uint8_t *d = NULL;
    size_t n = 0;
    if (torch_member(r, "data.pkl", &d, &n)) return -1;
    return bee_pkl_load(d, n, r->pkl_ctx, torch_allowed_globals, &r->pkl, root);
}

static int dict_all_objects(const bee_pkl_value *d) {
    for (size_t i = 1; i < d->n; i += 2)
        if (d->items[i]->kind != BEE_PKL_OBJECT) return 0;
    return 1;
}

/* The state dict itself, or the one inside a {"state_dict"|"model"|"module": {...}} wrapper. */
static int torch_state_dict_find(const torch_reader *r, const bee_pkl_value *root, const bee_pkl_value **sd) {
    static const char *const wrappers[] = {"state_dict", "model", "module"};
    if (root->kind != BEE_PKL_DICT)
        return bee_fail("%s: top-level pickled object is a %s, expected a state dict", r->pkl_ctx,
                        bee_pkl_kind_name(root->kind));
    *sd = root;
    if (dict_all_objects(root)) return 0;
    for (size_t i = 0; i < sizeof wrappers / sizeof wrappers[0]; i++) {
        const bee_pkl_value *v = bee_pkl_dict_get(root, wrappers[i]);
        if (v && v->kind == BEE_PKL_DICT) {
            *sd = v;
            return 0;
        }
    }
    return 0;
}

/* Follows _rebuild_parameter / _rebuild_from_type_v2 wrappers to the
 * _rebuild_tensor(_v2) call; outputs its callable and argument tuple. */
static int torch_rebuild_call(const torch_reader *r, const char *name, const bee_pkl_value *v,
                              const bee_pkl_value **fn, const bee_pkl_value **args) {
    for (int depth = 0; depth < 4; depth++) {
        if (v->kind != BEE_PKL_OBJECT)
            return bee_fail("%s: entry '%s' is a %s, not a tensor", r->pkl_ctx, name, bee_pkl_kind_name(v->kind));
        const bee_pkl_value *f = v->callable, *a = v->arg;
        if ((bee_pkl_is_global(f, "torch._utils", "_rebuild_parameter") ||
             bee_pkl_is_global(f, "torch._utils", "_rebuild_parameter_with_state")) && a->n >= 1) {
            v = a->items[0];
            continue;
        }
        if (bee_pkl_is_global(f, "torch._tensor", "_rebuild_from_type_v2") && a->n >= 3 &&
            a->items[2]->kind == BEE_PKL_TUPLE) {
            f = a->items[0];
            a = a->items[2];
        }
        if (!bee_pkl_is_global(f, "torch._utils", "_rebuild_tensor_v2") &&
            !bee_pkl_is_global(f, "torch._utils", "_rebuild_tensor"))
            return bee_fail("%s: tensor '%s': unsupported constructor '%s %s'", r->pkl_ctx, name,
                            f->kind == BEE_PKL_GLOBAL ? f->s : "?", f->kind == BEE_PKL_GLOBAL ? f->name : "?");
        *fn = f;
        *args = a;
        return 0;
    }
    return bee_fail("%s: tensor '%s': too many nested tensor wrappers", r->pkl_ctx, name);
}

static int torch_int_tuple(const torch_reader *r, const torch_tensor *t, const bee_pkl_value *v, const char *what,
                           int64_t *out) {
    if (v->kind != BEE_PKL_TUPLE || v->n != (size_t)t->n_dims)
        return bee_fail("%s: tensor '%s': %s is not a tuple of %d ints", r->pkl_ctx, t->name, what, t->n_dims);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items[i]->kind != BEE_PKL_INT || v->items[i]->i < 0)
            return bee_fail("%s: tensor '%s': %s[%zu] is not a non-negative int", r->pkl_ctx, t->name, what, i);
        out[i] = v->items[i]->i;
    }
    return 0;
}

static int torch_tensor_geometry(const torch_reader *r, torch_tensor *t, const bee_pkl_value *args) {
    const bee_pkl_value *off = args->items[1], *size = args->items[2];
    if (off->kind != BEE_PKL_INT || off->i < 0)
        return bee_fail("%s: tensor '%s': storage offset is not a non-negative int", r->pkl_ctx, t->name);
    t->offset = (uint64_t)off->i;
    if (size->kind != BEE_PKL_TUPLE || size->n > BEE_CKPT_MAX_DIMS)
        return bee_fail("%s: tensor '%s': size is not a tuple of at most %d ints", r->pkl_ctx, t->name,
                        BEE_CKPT_MAX_DIMS);
    t->n_dims = (int)size->n;
    if (torch_int_tuple(r, t, size, "size", t->shape) || torch_int_tuple(r, t, args->items[3], "stride", t->stride))
        return -1;
    t->numel = 1;
    for (int i = 0; i < t->n_dims; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (d && t->numel > (UINT64_MAX >> 4) / d)
            return bee_fail("%s: tensor '%s': element count overflows", r->pkl_ctx, t->name);
        t->numel *= d;
    }
    return 0;
}

/* torch's is_contiguous: dims of size 1 may carry any stride; empty tensors always are. */
static int torch_contiguous_check(const torch_reader *r, const torch_tensor *t) {
    if (t->numel == 0) return 0;
    int64_t expect = 1;
    for (int i = t->n_dims - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect)
            return bee_fail("%s: tensor '%s' is not contiguous (dim %d: stride %lld, expected %lld); re-save after "
                            ".contiguous()",
                            r->pkl_ctx, t->name, i, (long long)t->stride[i], (long long)expect);
        expect *= t->shape[i];
    }
    return 0;
}

static int torch_storage_type(const torch_reader *r, torch_tensor *t, const bee_pkl_value *cls) {
    static const struct { const char *name; uint32_t type; size_t esize; } known[] = {
        {"FloatStorage", BEE_TYPE_F32, 4}, {"HalfStorage", BEE_TYPE_F16, 2}, {"BFloat16Storage", BEE_TYPE_BF16, 2}};
    if (cls->kind != BEE_PKL_GLOBAL)
        return bee_fail("%s: tensor '%s': storage type is a %s, not a class", r->pkl_ctx, t->name,
                        bee_pkl_kind_name(cls->kind));
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (bee_pkl_is_global(cls, "torch", known[i].name)) {
            t->type = known[i].type;
            t->esize = known[i].esize;
            return 0;
        }
    }
    return bee_fail("%s: tensor '%s': unsupported storage type %s.%s (only FloatStorage, HalfStorage and "
                    "BFloat16Storage)",
                    r->pkl_ctx, t->name, cls->s, cls->name);
}

static int torch_tensor_parse(const torch_reader *r, const char *name, const bee_pkl_value *v, torch_tensor *t) {
    const bee_pkl_value *fn = NULL, *args = NULL;
    memset(t, 0, sizeof *t);
    t->name = name;
    if (torch_rebuild_call(r, name, v, &fn, &args)) return -1;
    if (args->kind != BEE_PKL_TUPLE || args->n < 4)
        return bee_fail("%s: tensor '%s': %s expects at least 4 arguments", r->pkl_ctx, name, fn->name);
    const bee_pkl_value *storage = args->items[0];
    if (storage->kind != BEE_PKL_PERSID)
        return bee_fail("%s: tensor '%s': storage is a %s, not a persistent id", r->pkl_ctx, name,
                        bee_pkl_kind_name(storage->kind));
    const bee_pkl_value *pid = storage->arg;
    if (pid->kind != BEE_PKL_TUPLE || pid->n < 5 || !bee_pkl_is_str(pid->items[0], "storage") ||
        pid->items[2]->kind != BEE_PKL_STR || pid->items[4]->kind != BEE_PKL_INT || pid->items[4]->i < 0)
        return bee_fail("%s: tensor '%s': malformed storage id (expected ('storage', type, key, location, numel))",
                        r->pkl_ctx, name);
    t->pid = pid;
    if (torch_storage_type(r, t, pid->items[1])) return -1;
    return torch_tensor_geometry(r, t, args) || torch_contiguous_check(r, t);
}

/* Points the tensor at its bytes in <root>data/<key>, with all bounds checked. */
static int torch_tensor_data(const torch_reader *r, const torch_tensor *t, const uint8_t **data) {
    const char *key = t->pid->items[2]->s;
    uint64_t storage_numel = (uint64_t)t->pid->items[4]->i;
    if (strchr(key, '/') || strlen(key) != t->pid->items[2]->len)
        return bee_fail("%s: tensor '%s': invalid storage key", r->pkl_ctx, t->name);
    char *suffix = torch_concat("data/", key);
    if (!suffix) return bee_fail("%s: out of memory", r->file);
    const uint8_t *base = NULL;
    size_t size = 0;
    int rc = torch_member(r, suffix, &base, &size);
    free(suffix);
    if (rc) return -1;
    if (!base) return bee_fail("%s: tensor '%s': storage member '%sdata/%s' not found", r->file, t->name, r->root, key);
    if (storage_numel > size / t->esize)
        return bee_fail("%s: tensor '%s': storage '%s' declares %llu elements of %zu bytes but member '%sdata/%s' "
                        "holds only %zu bytes",
                        r->file, t->name, key, (unsigned long long)storage_numel, t->esize, r->root, key, size);
    if (t->offset > storage_numel || t->numel > storage_numel - t->offset)
        return bee_fail("%s: tensor '%s' (storage offset %llu, %llu elements) exceeds its storage '%s' of %llu "
                        "elements",
                        r->file, t->name, (unsigned long long)t->offset, (unsigned long long)t->numel, key,
                        (unsigned long long)storage_numel);
    *data = base + t->offset * t->esize;
    return 0;
}

static int torch_tensor_add(torch_reader *r, size_t idx, const bee_pkl_value *key, const bee_pkl_value *v) {
    if (key->kind != BEE_PKL_STR || strlen(key->s) != key->len)
        return bee_fail("%s: state-dict key %zu is a %s, not a string", r->pkl_ctx, idx, bee_pkl_kind_name(key->kind));
    torch_tensor t = {0};
    const uint8_t *data = NULL;
    if (torch_tensor_parse(r, key->s, v, &t) || torch_tensor_data(r, &t, &data)) return -1;
    return bee_ckpt_add(r->ckpt, key->s, t.type, t.n_dims, t.shape, data, (size_t)(t.numel * t.esize));
}

static int torch_read(torch_reader *r, const void *data, size_t size) {
    const bee_pkl_value *root = NULL, *sd = NULL;
    if (bee_zip_open(&r->zip, data, size, r->file) || torch_root_find(r) || torch_byteorder_check(r) ||
        torch_pickle_load(r, &root) || torch_state_dict_find(r, root, &sd))
        return -1;
    if (!(r->ckpt = bee_ckpt_new(r->file))) return -1;
    for (size_t i = 0; i + 1 < sd->n; i += 2)
        if (torch_tensor_add(r, i / 2, sd->items[i], sd->items[i + 1])) return -1;
    return bee_ckpt_finish(r->ckpt);
}

int bee_ckpt_open_torch_buffer(const void *data, size_t size, const char *name, bee_ckpt **out) {
    *out = NULL;
    torch_reader r = {.file = name ? name : "(buffer)"};
    int rc = torch_read(&r, data, size);
    bee_pkl_free(r.pkl);
    bee_zip_close(&r.zip);
    free(r.root);
    free(r.pkl_ctx);
    if (rc) {
        bee_ckpt_free(r.ckpt);
        return -1;
    }
    *out = r.ckpt;
    return 0;
}
