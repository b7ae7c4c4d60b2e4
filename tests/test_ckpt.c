/* Checkpoint readers: PyTorch zip checkpoints (the real golden files plus
 * synthetic archives built here with a tiny STORED-zip writer and hand-written
 * pickles), safetensors files built here, and hostile inputs (truncation,
 * corrupt zip structures, malicious pickles), each checked for the exact
 * error. Golden tests skip when the shared folder is absent. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/ckpt.h"
#include "format/pickle.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

/* ================================================================== byte buffer */


static void tb_u8(tu_buf *b, uint8_t v) { tu_buf_put(b, &v, 1); }
static void tb_str(tu_buf *b, const char *s) { tu_buf_put(b, s, strlen(s)); }

/* ================================================================== STORED zip writer */

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    uint16_t method; /* written as-is; the bytes are never compressed */
} zmember;

/* Like torch: flag 0x0808, zero sizes in the local header plus a data
 * descriptor, data aligned to 64 with an "FB" extra field. With zip64 the
 * central directory uses 0xffffffff + zip64 extra fields and a ZIP64 EOCD. */
static void zip_local_write(tu_buf *b, const zmember *m) {
    tu_buf_le(b, 0x04034b50, 4);
    tu_buf_le(b, 20, 2);
    tu_buf_le(b, 0x0808, 2);
    tu_buf_le(b, m->method, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0x21, 2);
    tu_buf_le(b, 0, 4); /* crc */
    tu_buf_le(b, 0, 4);
    tu_buf_le(b, 0, 4);
    size_t nl = strlen(m->name);
    size_t pad = (64 - (b->n + 2 + 2 + nl + 4) % 64) % 64;
    tu_buf_le(b, nl, 2);
    tu_buf_le(b, 4 + pad, 2);
    tb_str(b, m->name);
    tu_buf_le(b, 0x4246, 2); /* "FB" padding record */
    tu_buf_le(b, pad, 2);
    for (size_t i = 0; i < pad; i++) tb_u8(b, 'Z');
    tu_buf_put(b, m->data, m->len);
    tu_buf_le(b, 0x08074b50, 4);
    tu_buf_le(b, 0, 4);
    tu_buf_le(b, m->len, 4);
    tu_buf_le(b, m->len, 4);
}

static void zip_central_write(tu_buf *b, const zmember *m, uint64_t local, int zip64) {
    tu_buf_le(b, 0x02014b50, 4);
    tu_buf_le(b, 0x031e, 2);
    tu_buf_le(b, zip64 ? 45 : 20, 2);
    tu_buf_le(b, 0x0808, 2);
    tu_buf_le(b, m->method, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0x21, 2);
    tu_buf_le(b, 0, 4);
    tu_buf_le(b, zip64 ? 0xffffffffu : m->len, 4);
    tu_buf_le(b, zip64 ? 0xffffffffu : m->len, 4);
    tu_buf_le(b, strlen(m->name), 2);
    tu_buf_le(b, zip64 ? 28 : 0, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0, 4);
    tu_buf_le(b, zip64 ? 0xffffffffu : local, 4);
    tb_str(b, m->name);
    if (zip64) {
        tu_buf_le(b, 1, 2);
        tu_buf_le(b, 24, 2);
        tu_buf_le(b, m->len, 8);
        tu_buf_le(b, m->len, 8);
        tu_buf_le(b, local, 8);
    }
}

static void zip_end_write(tu_buf *b, size_t n, uint64_t cd_off, uint64_t cd_size, int zip64) {
    if (zip64) {
        uint64_t rec = b->n;
        tu_buf_le(b, 0x06064b50, 4);
        tu_buf_le(b, 44, 8);
        tu_buf_le(b, 0x031e, 2);
        tu_buf_le(b, 45, 2);
        tu_buf_le(b, 0, 4);
        tu_buf_le(b, 0, 4);
        tu_buf_le(b, n, 8);
        tu_buf_le(b, n, 8);
        tu_buf_le(b, cd_size, 8);
        tu_buf_le(b, cd_off, 8);
        tu_buf_le(b, 0x07064b50, 4);
        tu_buf_le(b, 0, 4);
        tu_buf_le(b, rec, 8);
        tu_buf_le(b, 1, 4);
    }
    tu_buf_le(b, 0x06054b50, 4);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, 0, 2);
    tu_buf_le(b, zip64 ? 0xffff : n, 2);
    tu_buf_le(b, zip64 ? 0xffff : n, 2);
    tu_buf_le(b, zip64 ? 0xffffffffu : cd_size, 4);
    tu_buf_le(b, zip64 ? 0xffffffffu : cd_off, 4);
    tu_buf_le(b, 0, 2);
}

static tu_buf zip_build(const zmember *m, size_t n, int zip64) {
    tu_buf b = {0};
    uint64_t *local = calloc(n + 1, sizeof *local);
    for (size_t i = 0; i < n; i++) {
        local[i] = b.n;
        zip_local_write(&b, &m[i]);
    }
    uint64_t cd = b.n;
    for (size_t i = 0; i < n; i++) zip_central_write(&b, &m[i], local[i], zip64);
    zip_end_write(&b, n, cd, b.n - cd, zip64);
    free(local);
    return b;
}

/* ================================================================== pickle writer */

static void pk_op(tu_buf *b, uint8_t op) { tb_u8(b, op); }

static void pk_text(tu_buf *b, const char *s) {
    pk_op(b, 'X');
    tu_buf_le(b, strlen(s), 4);
    tb_str(b, s);
}

static void pk_int(tu_buf *b, int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        pk_op(b, 'J');
        tu_buf_le(b, (uint64_t)v, 4);
    } else {
        pk_op(b, 0x8a);
        tb_u8(b, 8);
        tu_buf_le(b, (uint64_t)v, 8);
    }
}

static void pk_global(tu_buf *b, const char *module, const char *name) {
    pk_op(b, 'c');
    tb_str(b, module);
    tb_u8(b, '\n');
    tb_str(b, name);
    tb_u8(b, '\n');
}

static void pk_int_tuple(tu_buf *b, const int64_t *v, int n) {
    pk_op(b, '(');
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    pk_op(b, 't');
}

typedef struct {
    const char *name;
    const char *storage_cls; /* e.g. "FloatStorage" */
    const char *key;
    int64_t storage_numel;
    int64_t offset;
    int n_dims;
    int64_t shape[4], stride[4];
} tspec;

static void pk_ordered_dict(tu_buf *b) {
    pk_global(b, "collections", "OrderedDict");
    pk_op(b, ')');
    pk_op(b, 'R');
}

static void pk_tensor(tu_buf *b, const tspec *t) {
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_op(b, '(');
    pk_op(b, '(');
    pk_text(b, "storage");
    pk_global(b, "torch", t->storage_cls);
    pk_text(b, t->key);
    pk_text(b, "cpu");
    pk_int(b, t->storage_numel);
    pk_op(b, 't');
    pk_op(b, 'Q');
    pk_int(b, t->offset);
    pk_int_tuple(b, t->shape, t->n_dims);
    pk_int_tuple(b, t->stride, t->n_dims);
    pk_op(b, 0x89);
    pk_ordered_dict(b);
    pk_op(b, 't');
    pk_op(b, 'R');
}

/* OrderedDict of the tensors, optionally followed by BUILD with a _metadata state. */
static tu_buf pk_state_dict(const tspec *ts, size_t n, int with_build) {
    tu_buf b = {0};
    pk_op(&b, 0x80);
    tb_u8(&b, 2);
    pk_ordered_dict(&b);
    pk_op(&b, '(');
    for (size_t i = 0; i < n; i++) {
        pk_text(&b, ts[i].name);
        pk_tensor(&b, &ts[i]);
    }
    pk_op(&b, 'u');
    if (with_build) {
        pk_op(&b, '}');
        pk_text(&b, "_metadata");
        pk_ordered_dict(&b);
        pk_op(&b, 's');
        pk_op(&b, 'b');
    }
    pk_op(&b, '.');
    return b;
}

/* ================================================================== synthetic torch checkpoint */

static const float g_f32[6] = {0, 1, 2, 3, 4, 5};
static uint16_t g_f16[4], g_bf16[3];

static void synth_init(void) {
    for (int i = 0; i < 4; i++) g_f16[i] = bee_f32_to_f16(0.5f * (float)i - 1.0f);
    for (int i = 0; i < 3; i++) g_bf16[i] = bee_f32_to_bf16(3.25f * (float)i);
}

static const tspec g_specs[] = {
    {"a.weight", "FloatStorage", "0", 6, 0, 2, {2, 3}, {3, 1}},
    {"b.half", "HalfStorage", "1", 4, 0, 1, {4}, {1}},
    {"c.scalar", "BFloat16Storage", "2", 3, 2, 0, {0}, {0}},
    {"d.view", "FloatStorage", "0", 6, 3, 3, {3, 1, 1}, {1, 7, 9}}, /* shares storage 0; size-1 strides free */
};
#define N_SPECS (sizeof g_specs / sizeof g_specs[0])

/* A checkpoint with the given pickle and the three storages; method of member `compressed` set to 8. */
static tu_buf synth_zip(const tu_buf *pkl, int zip64, const char *compressed) {
    zmember m[] = {
        {"arch/data.pkl", pkl->p, pkl->n, 0},
        {"arch/data/0", g_f32, sizeof g_f32, 0},
        {"arch/data/1", g_f16, sizeof g_f16, 0},
        {"arch/data/2", g_bf16, sizeof g_bf16, 0},
        {"arch/version", "3\n", 2, 0},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (compressed && strcmp(m[i].name, compressed) == 0) m[i].method = 8;
    return zip_build(m, sizeof m / sizeof m[0], zip64);
}

static tu_buf synth_ckpt(const tspec *ts, size_t n, int zip64, int with_build) {
    tu_buf pkl = pk_state_dict(ts, n, with_build);
    tu_buf z = synth_zip(&pkl, zip64, NULL);
    free(pkl.p);
    return z;
}

/* Opens a torch buffer from an exact-size heap copy (so ASan sees overreads). */
static int open_torch_copy(const void *d, size_t n, bee_ckpt **c) {
    void *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, d, n);
    int rc = bee_ckpt_open_torch_buffer(copy, n, "t.pt", c);
    if (rc == 0) bee_ckpt_free(*c);
    free(copy);
    return rc;
}

#define assert_error_contains(s)                                                          \
    do {                                                                                  \
        if (!strstr(bee_error_message(), (s))) {                                          \
            fail_msg("error '%s' lacks '%s'", bee_error_message(), (s));                 \
        }                                                                                 \
    } while (0)

static void expect_torch_error(const tu_buf *z, const char *substring) {
    bee_ckpt *c = NULL;
    bee_error_clear();
    assert_int_equal(open_torch_copy(z->p, z->n, &c), -1);
    assert_error_contains(substring);
}

static void expect_pickle_error(const tu_buf *pkl, const char *substring) {
    tu_buf z = synth_zip(pkl, 0, NULL);
    expect_torch_error(&z, substring);
    free(z.p);
}

static void check_synth(const bee_ckpt *c) {
    assert_int_equal(bee_ckpt_count(c), N_SPECS);
    const bee_ckpt_tensor *a = bee_ckpt_find(c, "a.weight"), *b = bee_ckpt_find(c, "b.half");
    const bee_ckpt_tensor *s = bee_ckpt_find(c, "c.scalar"), *d = bee_ckpt_find(c, "d.view");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(s);
    assert_non_null(d);
    assert_null(bee_ckpt_find(c, "nope"));
    assert_ptr_equal(bee_ckpt_get(c, 0), a); /* insertion order kept */
    assert_ptr_equal(bee_ckpt_get(c, 3), d);
    assert_null(bee_ckpt_get(c, 4));
    assert_int_equal(a->type, BEE_TYPE_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(a->nbytes, 24);
    assert_memory_equal(a->data, g_f32, 24);
    assert_int_equal(b->type, BEE_TYPE_F16);
    assert_int_equal(b->nbytes, 8);
    assert_memory_equal(b->data, g_f16, 8);
    assert_int_equal(s->type, BEE_TYPE_BF16);
    assert_int_equal(s->n_dims, 0);
    assert_int_equal(s->nbytes, 2);
    assert_memory_equal(s->data, &g_bf16[2], 2);
    assert_int_equal(d->n_dims, 3);
    assert_int_equal(d->nbytes, 12);
    assert_memory_equal(d->data, &g_f32[3], 12);
}

/* ================================================================== synthetic torch tests */

static void test_torch_synthetic(void **state) {
    (void)state;
    for (int zip64 = 0; zip64 < 2; zip64++) {
        for (int build = 0; build < 2; build++) {
            tu_buf z = synth_ckpt(g_specs, N_SPECS, zip64, build);
            bee_ckpt *c = NULL;
            if (bee_ckpt_open_torch_buffer(z.p, z.n, "synth.pt", &c)) fail_msg("%s", bee_error_message());
            check_synth(c);
            bee_ckpt_free(c);
            free(z.p);
        }
    }
}

static void test_torch_open_path(void **state) {
    (void)state;
    tu_buf z = synth_ckpt(g_specs, N_SPECS, 1, 1);
    const char *path = tu_tmp("synth.pt");
    tu_write(path, z.p, z.n);
    free(z.p);
    bee_ckpt *c = NULL;
    if (bee_ckpt_open(path, &c)) fail_msg("%s", bee_error_message());
    check_synth(c);
    bee_ckpt_free(c);
    /* legacy (pre-1.6) torch.save files are recognised and rejected */
    static const uint8_t legacy[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    path = tu_tmp("legacy.pt");
    tu_write(path, legacy, sizeof legacy);
    assert_int_equal(bee_ckpt_open(path, &c), -1);
    assert_null(c);
    assert_error_contains("legacy torch.save format not supported; re-save with torch>=1.6");
    assert_error_contains("legacy.pt");
    assert_int_equal(bee_ckpt_open(tu_tmp("missing.pt"), &c), -1);
    assert_error_contains("missing.pt");
}

/* {"epoch": 3, "state_dict": {...}} and a protocol-4 style pickle of one tensor. */
static void test_torch_wrapper_and_proto4(void **state) {
    (void)state;
    tu_buf inner = pk_state_dict(g_specs, 1, 0);
    tu_buf b = {0};
    pk_op(&b, 0x80);
    tb_u8(&b, 2);
    pk_op(&b, '}');
    pk_op(&b, '(');
    pk_text(&b, "epoch");
    pk_int(&b, 3);
    pk_text(&b, "state_dict");
    tu_buf_put(&b, inner.p + 2, inner.n - 3); /* the inner dict without PROTO and STOP */
    pk_op(&b, 'u');
    pk_op(&b, '.');
    tu_buf z = synth_zip(&b, 0, NULL);
    bee_ckpt *c = NULL;
    if (bee_ckpt_open_torch_buffer(z.p, z.n, "w.pt", &c)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_ckpt_count(c), 1);
    assert_non_null(bee_ckpt_find(c, "a.weight"));
    bee_ckpt_free(c);
    free(z.p);
    free(b.p);
    free(inner.p);

    /* protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, TUPLE1/2/3, NEWTRUE, EMPTY_DICT + SETITEM */
    static const char p4[] =
        "\x80\x04\x95\x00\x01\x00\x00\x00\x00\x00\x00"
        "}\x94"                                                            /* memo 0: dict */
        "\x8c\x01k\x94"                                                    /* memo 1: key */
        "\x8c\x0ctorch._utils\x94\x8c\x12_rebuild_tensor_v2\x94\x93\x94" /* memo 2,3,4 */
        "((\x8c\x07storage\x94\x8c\x05torch\x94\x8c\x0c" "FloatStorage\x94\x93\x94"
        "\x8c\x01" "0\x94\x8c\x03" "cpu\x94K\x06t\x94Q"
        "K\x00K\x02K\x03\x86\x94K\x03K\x01\x86\x94\x88}\x94t\x94R\x94"
        "s.";
    tu_buf pk = {0};
    tu_buf_put(&pk, p4, sizeof p4 - 1);
    z = synth_zip(&pk, 1, NULL);
    if (bee_ckpt_open_torch_buffer(z.p, z.n, "p4.pt", &c)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_ckpt_count(c), 1);
    const bee_ckpt_tensor *t = bee_ckpt_get(c, 0);
    assert_string_equal(t->name, "k");
    assert_int_equal(t->nbytes, 24);
    assert_memory_equal(t->data, g_f32, 24);
    bee_ckpt_free(c);
    free(z.p);
    free(pk.p);
}

static void test_torch_disallowed_global(void **state) {
    (void)state;
    static const char evil[] = "\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.";
    tu_buf pkl = {0};
    tu_buf_put(&pkl, evil, sizeof evil - 1);
    expect_pickle_error(&pkl, "disallowed global 'os system'");
    expect_pickle_error(&pkl, "arch/data.pkl offset 2:");
    free(pkl.p);
    /* STACK_GLOBAL goes through the same allow-list */
    static const char evil4[] = "\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93.";
    pkl = (tu_buf){0};
    tu_buf_put(&pkl, evil4, sizeof evil4 - 1);
    expect_pickle_error(&pkl, "disallowed global 'builtins eval'");
    free(pkl.p);
}

static void test_torch_hostile_pickles(void **state) {
    (void)state;
#define PK(lit) lit, sizeof(lit) - 1
    static const struct { const char *pkl; size_t n; const char *msg; } cases[] = {
        {PK("\x80\x02X\xff\xff\xff\xff" "abc"), "string length 4294967295 exceeds the 3 bytes left"},
        {PK("\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff."), "string length 18446744073709551615 exceeds"},
        {PK("\x80\x02h\x05."), "memo index 5 not defined"},
        {PK("\x80\x02j\x00\x00\x01\x00."), "memo index 65536 not defined"},
        {PK("\x80\x02N\x72\xff\xff\xff\x7f."), "memo index 2147483647 too large"},
        {PK("\x80\x02R."), "stack underflow"},
        {PK("\x80\x02."), "stack underflow"},
        {PK("\x80\x02(N(."), "stack underflow"},
        {PK("\x80\x02Nu."), "without a preceding MARK"},
        {PK("\x80\x02]N(Ns."), "stack underflow"},
        {PK("\x80\x02N(NNu."), "applied to a None, expected a dict"},
        {PK("\x80\x02\xff."), "unsupported pickle opcode 0xff"},
        {PK("\x80\x09."), "unsupported pickle protocol 9"},
        {PK("\x80\x02}"), "truncated: pickle ends without STOP"},
        {PK("\x80\x02J\x01\x02"), "truncated: opcode 0x4a needs 4 bytes, 2 left"},
        {PK("\x80\x02\x8a\x09" "123456789."), "integer of 9 bytes is too large"},
        {PK("\x80\x02" "ctorch"), "GLOBAL operand not terminated"},
        {PK("\x80\x02N)R."), "only globals can be called"},
        {PK("\x80\x02K\x01."), "top-level pickled object is a int, expected a state dict"},
        {PK("\x80\x02}X\x01\x00\x00\x00xK\x01s."), "entry 'x' is a int, not a tensor"},
        {PK("\x80\x02}K\x01K\x01s."), "state-dict key 0 is a int, not a string"},
        {PK("\x80\x02" "ccollections\nOrderedDict\n(K\x01tR."), "OrderedDict with constructor arguments"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_buf pkl = {0};
        tu_buf_put(&pkl, cases[i].pkl, cases[i].n);
        expect_pickle_error(&pkl, cases[i].msg);
        free(pkl.p);
    }
}

/* Deep nesting, long mark chains and huge memo writes stay bounded. */
static void test_torch_resource_limits(void **state) {
    (void)state;
    tu_buf pkl = {0};
    tb_str(&pkl, "\x80\x02");
    for (int i = 0; i < 70000; i++) tb_u8(&pkl, '(');
    tb_u8(&pkl, '.');
    expect_pickle_error(&pkl, "MARK depth exceeds the limit");
    pkl.n = 2;
    for (int i = 0; i < (1 << 20) + 1; i++) tb_u8(&pkl, 'N');
    expect_pickle_error(&pkl, "stack depth exceeds the limit");
    pkl.n = 2;
    /* a list containing itself, then deeply nested lists: the VM never recurses */
    tb_str(&pkl, "]q\x00h\x00" "a");
    for (int i = 0; i < 100000; i++) tb_str(&pkl, "\x85");
    tb_str(&pkl, ".");
    expect_pickle_error(&pkl, "top-level pickled object is a tuple");
    free(pkl.p);
}

static void test_torch_tensor_errors(void **state) {
    (void)state;
    tspec t = {"x", "FloatStorage", "0", 6, 0, 2, {2, 3}, {1, 2}};
    tu_buf z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "tensor 'x' is not contiguous (dim 1: stride 2, expected 1)");
    free(z.p);

    t = (tspec){"x", "FloatStorage", "0", 100, 0, 1, {6}, {1}};
    z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "tensor 'x': storage '0' declares 100 elements of 4 bytes but member 'arch/data/0' holds only 24 bytes");
    free(z.p);

    t = (tspec){"x", "FloatStorage", "0", 6, 4, 1, {3}, {1}};
    z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "tensor 'x' (storage offset 4, 3 elements) exceeds its storage '0' of 6 elements");
    free(z.p);

    t = (tspec){"x", "FloatStorage", "9", 1, 0, 1, {1}, {1}};
    z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "storage member 'arch/data/9' not found");
    free(z.p);

    t = (tspec){"x", "LongStorage", "0", 3, 0, 1, {3}, {1}};
    z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "tensor 'x': unsupported storage type torch.LongStorage");
    free(z.p);

    t = (tspec){"x", "FloatStorage", "0", 6, 0, 2, {INT64_C(1) << 40, INT64_C(1) << 40}, {INT64_C(1) << 40, 1}};
    z = synth_ckpt(&t, 1, 0, 1);
    expect_torch_error(&z, "element count overflows");
    free(z.p);

    tspec dup[] = {{"x", "FloatStorage", "0", 6, 0, 1, {1}, {1}}, {"x", "FloatStorage", "0", 6, 0, 1, {1}, {1}}};
    z = synth_ckpt(dup, 2, 0, 1);
    expect_torch_error(&z, "duplicate tensor name 'x'");
    free(z.p);
}

static void test_torch_compressed_member(void **state) {
    (void)state;
    tu_buf pkl = pk_state_dict(g_specs, N_SPECS, 1);
    tu_buf z = synth_zip(&pkl, 0, "arch/data/1");
    expect_torch_error(&z, "zip member 'arch/data/1' is compressed (method 8)");
    free(z.p);
    z = synth_zip(&pkl, 1, "arch/data.pkl");
    expect_torch_error(&z, "zip member 'arch/data.pkl' is compressed");
    free(z.p);
    free(pkl.p);
}

static size_t find_sig_from(const tu_buf *z, size_t from, uint32_t sig, int nth) {
    for (size_t i = from; i + 4 <= z->n; i++) {
        uint32_t v = (uint32_t)z->p[i] | (uint32_t)z->p[i + 1] << 8 | (uint32_t)z->p[i + 2] << 16 |
                     (uint32_t)z->p[i + 3] << 24;
        if (v == sig && nth-- == 0) return i;
    }
    fail_msg("signature not found");
    return 0;
}

static size_t find_sig(const tu_buf *z, uint32_t sig, int nth) { return find_sig_from(z, 0, sig, nth); }

static void test_torch_corrupt_zip(void **state) {
    (void)state;
    tu_buf z = synth_ckpt(g_specs, N_SPECS, 0, 1);
    size_t e3 = find_sig(&z, 0x02014b50, 3);
    size_t eocd = find_sig(&z, 0x06054b50, 0);

    z.p[e3 + 42 + 3] = 0x7f; /* local header offset of entry 3 */
    expect_torch_error(&z, "zip central directory entry 3 ('arch/data/2') points past end of file");
    z.p[e3 + 42 + 3] = 0;
    z.p[e3] = 'X';
    expect_torch_error(&z, "zip central directory entry 3 is corrupt");
    z.p[e3] = 'P';
    z.p[eocd + 16 + 3] = 0x10; /* central directory offset */
    expect_torch_error(&z, "zip central directory (offset");
    z.p[eocd + 16 + 3] = 0;
    z.p[eocd + 10] = 200; /* entry count */
    expect_torch_error(&z, "claims 200 entries");
    z.p[eocd + 10] = 5;
    z.p[e3 + 30] = 0xff; /* extra length overruns the directory */
    expect_torch_error(&z, "entry 3 overruns the directory");
    z.p[e3 + 30] = 0;
    size_t local0 = find_sig(&z, 0x04034b50, 0);
    z.p[local0] = 'Q';
    expect_torch_error(&z, "zip member 'arch/data.pkl': bad local header signature at offset 0");
    z.p[local0] = 'P';
    expect_torch_error(&(tu_buf){z.p, 10, 0}, "not a zip file");
    free(z.p);

    /* zip64: broken locator target and short zip64 extra field */
    z = synth_ckpt(g_specs, N_SPECS, 1, 1);
    size_t rec = find_sig(&z, 0x06064b50, 0), loc = find_sig(&z, 0x07064b50, 0);
    z.p[rec] = 'X';
    expect_torch_error(&z, "bad zip64 end-of-central-directory signature");
    z.p[rec] = 'P';
    z.p[loc + 8 + 7] = 0x80;
    expect_torch_error(&z, "zip64 end-of-central-directory offset");
    z.p[loc + 8 + 7] = 0;
    e3 = find_sig(&z, 0x02014b50, 3);
    size_t name_len = (size_t)(z.p[e3 + 28] | z.p[e3 + 29] << 8);
    z.p[e3 + 46 + name_len + 2] = 8; /* zip64 record claims 8 bytes (needs 24) */
    expect_torch_error(&z, "zip64 extra field too short");
    free(z.p);

    /* no data.pkl */
    zmember only[] = {{"arch/version", "3\n", 2, 0}};
    z = zip_build(only, 1, 0);
    expect_torch_error(&z, "no data.pkl member");
    free(z.p);
}

/* Every prefix of a synthetic archive and every truncation of its pickle fails cleanly. */
static void test_torch_truncated_synthetic(void **state) {
    (void)state;
    tu_buf z = synth_ckpt(g_specs, N_SPECS, 1, 1);
    bee_ckpt *c;
    for (size_t n = 0; n < z.n; n++) assert_int_equal(open_torch_copy(z.p, n, &c), -1);
    assert_int_equal(open_torch_copy(z.p, z.n, &c), 0);
    free(z.p);
    tu_buf pkl = pk_state_dict(g_specs, N_SPECS, 1);
    for (size_t n = 0; n < pkl.n; n++) {
        tu_buf cut = {pkl.p, n, n};
        z = synth_zip(&cut, 0, NULL);
        expect_torch_error(&z, "arch/data.pkl offset");
        free(z.p);
    }
    free(pkl.p);
}

/* Opcodes outside the torch subset, exercised on the VM directly. */
static void test_pickle_opcodes(void **state) {
    (void)state;
    static const char prog[] =
        "\x80\x03"
        "(N\x88\x89"                         /* None True False */
        "\x8a\x01\xff"                       /* LONG1 -1 */
        "\x8a\x00"                           /* LONG1 0 */
        "G\x3f\xf8\x00\x00\x00\x00\x00\x00" /* 1.5 */
        "U\x02hi" "T\x03\x00\x00\x00" "abc" "C\x02xy"
        "\x8d\x01\x00\x00\x00\x00\x00\x00\x00z"
        "M\x34\x12"                          /* 0x1234 */
        "J\xfe\xff\xff\xff"                  /* -2 */
        "]q\x01" "K\x07" "a" "(K\x08K\x09" "e" /* [7, 8, 9] */
        "\x8f(K\x01\x90"                     /* set {1} */
        "(K\x01K\x02" "d"                    /* {1: 2} */
        "(K\x05l"                            /* [5] */
        "K\x00" "0"                          /* POP */
        "(K\x00K\x00" "1"                    /* POP_MARK */
        "(0"                                 /* POP of a mark */
        "2"                                  /* DUP of [5] */
        "j\x01\x00\x00\x00"                  /* LONG_BINGET 1 */
        "\x87"                               /* TUPLE3 */
        "ccollections\nOrderedDict\n)\x81"  /* NEWOBJ → dict */
        "l.";
    static const char *const allow[] = {"collections OrderedDict", NULL};
    bee_pkl *p;
    const bee_pkl_value *root;
    if (bee_pkl_load(prog, sizeof prog - 1, "prog", allow, &p, &root)) fail_msg("%s", bee_error_message());
    assert_int_equal(root->kind, BEE_PKL_LIST);
    assert_int_equal(root->n, 17);
    bee_pkl_value *const *v = root->items;
    assert_int_equal(v[0]->kind, BEE_PKL_NONE);
    assert_int_equal(v[1]->kind, BEE_PKL_BOOL);
    assert_int_equal(v[1]->i, 1);
    assert_int_equal(v[2]->i, 0);
    assert_int_equal(v[3]->i, -1);
    assert_int_equal(v[4]->i, 0);
    assert_true(v[5]->kind == BEE_PKL_FLOAT && v[5]->f == 1.5);
    assert_true(bee_pkl_is_str(v[6], "hi") && bee_pkl_is_str(v[7], "abc"));
    assert_true(v[8]->kind == BEE_PKL_BYTES && v[8]->len == 2 && memcmp(v[8]->s, "xy", 2) == 0);
    assert_true(bee_pkl_is_str(v[9], "z"));
    assert_int_equal(v[10]->i, 0x1234);
    assert_int_equal(v[11]->i, -2);
    assert_true(v[12]->kind == BEE_PKL_LIST && v[12]->n == 3 && v[12]->items[2]->i == 9);
    assert_true(v[13]->kind == BEE_PKL_LIST && v[13]->n == 1 && v[13]->items[0]->i == 1);
    assert_true(v[14]->kind == BEE_PKL_DICT && v[14]->n == 2 && v[14]->items[1]->i == 2);
    assert_null(bee_pkl_dict_get(v[14], "x"));
    const bee_pkl_value *t3 = v[15];
    assert_true(t3->kind == BEE_PKL_TUPLE && t3->n == 3);
    assert_true(t3->items[0] == t3->items[1] && t3->items[0]->n == 1 && t3->items[0]->items[0]->i == 5);
    assert_ptr_equal(t3->items[2], v[12]); /* memo keeps identity */
    assert_true(v[16]->kind == BEE_PKL_DICT && v[16]->n == 0);
    bee_pkl_free(p);
}

/* ================================================================== safetensors */

typedef struct {
    const char *name, *dtype;
    const char *shape;   /* JSON array text */
    uint64_t begin, end; /* relative to the data section */
} st_spec;

static tu_buf st_build(const st_spec *s, size_t n, const void *data, size_t data_len, const char *extra) {
    char header[4096];
    size_t h = (size_t)snprintf(header, sizeof header, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++)
        h += (size_t)snprintf(header + h, sizeof header - h,
                              ",\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%llu,%llu]}", s[i].name,
                              s[i].dtype, s[i].shape, (unsigned long long)s[i].begin, (unsigned long long)s[i].end);
    h += (size_t)snprintf(header + h, sizeof header - h, "%s}", extra ? extra : "");
    while (h % 8) header[h++] = ' ';
    tu_buf b = {0};
    tu_buf_le(&b, h, 8);
    tu_buf_put(&b, header, h);
    tu_buf_put(&b, data, data_len);
    return b;
}

static uint8_t g_st_data[24 + 6 + 2];

static tu_buf st_good(void) {
    memcpy(g_st_data, g_f32, 16);
    memcpy(g_st_data + 16, g_f16, 6);
    memcpy(g_st_data + 22, g_bf16, 2);
    /* listed out of file order: the reader returns tensors in file order */
    static const st_spec s[] = {
        {"half", "F16", "[3]", 16, 22},
        {"w", "F32", "[2,2]", 0, 16},
        {"bf", "BF16", "[]", 22, 24},
        {"empty", "F32", "[0,5]", 24, 24},
    };
    return st_build(s, 4, g_st_data, 24, NULL);
}

static void expect_st_error(const tu_buf *b, const char *substring) {
    bee_ckpt *c = NULL;
    bee_error_clear();
    void *copy = malloc(b->n ? b->n : 1);
    if (b->n) memcpy(copy, b->p, b->n);
    int rc = bee_ckpt_open_safetensors_buffer(copy, b->n, "m.safetensors", &c);
    free(copy);
    if (rc == 0) bee_ckpt_free(c);
    assert_int_equal(rc, -1);
    assert_null(c);
    assert_error_contains(substring);
}

static void test_safetensors_ok(void **state) {
    (void)state;
    tu_buf b = st_good();
    const char *path = tu_tmp("m.safetensors");
    tu_write(path, b.p, b.n);
    free(b.p);
    bee_ckpt *c = NULL;
    if (bee_ckpt_open(path, &c)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_ckpt_count(c), 4);
    assert_string_equal(bee_ckpt_get(c, 0)->name, "w");
    assert_string_equal(bee_ckpt_get(c, 1)->name, "half");
    const bee_ckpt_tensor *w = bee_ckpt_find(c, "w"), *h = bee_ckpt_find(c, "half");
    const bee_ckpt_tensor *bf = bee_ckpt_find(c, "bf"), *e = bee_ckpt_find(c, "empty");
    assert_true(w && h && bf && e);
    assert_null(bee_ckpt_find(c, "__metadata__"));
    assert_int_equal(w->type, BEE_TYPE_F32);
    assert_int_equal(w->n_dims, 2);
    assert_int_equal(w->shape[1], 2);
    assert_memory_equal(w->data, g_f32, 16);
    assert_int_equal(h->type, BEE_TYPE_F16);
    assert_int_equal(h->nbytes, 6);
    assert_memory_equal(h->data, g_f16, 6);
    assert_int_equal(bf->type, BEE_TYPE_BF16);
    assert_int_equal(bf->n_dims, 0);
    assert_memory_equal(bf->data, g_bf16, 2);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(e->shape[1], 5);
    bee_ckpt_free(c);
}

static void test_safetensors_errors(void **state) {
    (void)state;
    static const struct { st_spec s; const char *msg; } cases[] = {
        {{"x", "I64", "[2]", 0, 16}, "tensor 'x': unsupported dtype 'I64' (only F32, F16 and BF16)"},
        {{"x", "F32", "[2]", 0, 40}, "tensor 'x': data_offsets [0, 40] out of bounds (data section is 24 bytes)"},
        {{"x", "F32", "[2]", 9, 8}, "data_offsets [9, 8] out of bounds"},
        {{"x", "F32", "[3]", 0, 8}, "tensor 'x': shape needs 12 bytes but data_offsets [0, 8] span 8"},
        {{"x", "F32", "[-1]", 0, 8}, "shape[0] is not a non-negative int"},
        {{"x", "F32", "[1,2,3,4,5,6,7,8,9]", 0, 8}, "at most 8 ints"},
        {{"x", "F32", "[4294967296,4294967296]", 0, 8}, "element count overflows"},
        {{"x", "F32", "\"a\"", 0, 8}, "\"shape\" is not an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_buf b = st_build(&cases[i].s, 1, g_st_data, 24, NULL);
        expect_st_error(&b, cases[i].msg);
        free(b.p);
    }
    tu_buf b = st_build(NULL, 0, g_st_data, 24, ",\"y\":{\"shape\":[1],\"data_offsets\":[0,4]}");
    expect_st_error(&b, "tensor 'y': missing or non-string \"dtype\"");
    free(b.p);
    b = st_build(NULL, 0, g_st_data, 24, ",\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}");
    expect_st_error(&b, "\"data_offsets\" is not a pair");
    free(b.p);
    b = st_build(NULL, 0, g_st_data, 24, ",\"y\":3");
    expect_st_error(&b, "tensor 'y': header entry is not an object");
    free(b.p);
    b = st_build(NULL, 0, g_st_data, 24, ",\"__metadata__\":{}");
    expect_st_error(&b, "not valid JSON");
    free(b.p);

    /* header length: huge, past the end, not JSON */
    b = st_good();
    memcpy(b.p, "\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
    expect_st_error(&b, "safetensors header length 9223372036854775807 is too large");
    memcpy(b.p, "\x00\x00\x00\x05\x00\x00\x00\x00", 8);
    expect_st_error(&b, "header length 83886080 exceeds the file size");
    memcpy(b.p, "\x02\x00\x00\x00\x00\x00\x00\x00", 8);
    b.p[8] = '[';
    expect_st_error(&b, "not a safetensors file");
    free(b.p);
    expect_st_error(&(tu_buf){(uint8_t *)"abc", 3, 3}, "too small for a safetensors file (3 bytes)");
    expect_st_error(&(tu_buf){NULL, 0, 0}, "too small");
}

static void test_safetensors_truncated(void **state) {
    (void)state;
    tu_buf b = st_good();
    for (size_t n = 0; n < b.n; n++) {
        tu_buf cut = {b.p, n, n};
        expect_st_error(&cut, "m.safetensors: ");
    }
    free(b.p);
}

/* ================================================================== golden checkpoints */

static int golden_present(const char *rel) { return bee_file_exists(tu_shared(rel)); }

typedef struct {
    json_t *manifest;
    char *weights;
    size_t weights_len;
} golden_ref;

static int golden_ref_load(golden_ref *g) {
    if (!golden_present("cpmbee/golden/weights_tiny/manifest.json")) return -1;
    json_error_t err;
    g->manifest = json_load_file(tu_shared("cpmbee/golden/weights_tiny/manifest.json"), 0, &err);
    assert_non_null(g->manifest);
    assert_int_equal(bee_read_file(tu_shared("cpmbee/golden/weights_tiny/weights.bin"), &g->weights, &g->weights_len), 0);
    return 0;
}

static void golden_ref_free(golden_ref *g) {
    json_decref(g->manifest);
    free(g->weights);
}

static void golden_tensor_check(const golden_ref *g, const json_t *m, const bee_ckpt_tensor *t, uint32_t type) {
    const json_t *shape = json_object_get(m, "shape");
    size_t numel = 1, off = (size_t)json_integer_value(json_object_get(m, "offset_bytes"));
    assert_int_equal(t->n_dims, json_array_size(shape));
    for (int d = 0; d < t->n_dims; d++) {
        assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
        numel *= (size_t)t->shape[d];
    }
    assert_int_equal(t->type, type);
    assert_true(off + numel * 4 <= g->weights_len);
    const char *ref = g->weights + off;
    if (type == BEE_TYPE_F32) {
        assert_int_equal(t->nbytes, numel * 4);
        assert_memory_equal(t->data, ref, numel * 4);
        return;
    }
    assert_int_equal(t->nbytes, numel * 2);
    const uint8_t *got = t->data;
    for (size_t i = 0; i < numel; i++) {
        float f;
        memcpy(&f, ref + 4 * i, 4);
        uint16_t want = type == BEE_TYPE_F16 ? bee_f32_to_f16(f) : bee_f32_to_bf16(f);
        uint16_t have = (uint16_t)(got[2 * i] | got[2 * i + 1] << 8);
        if (want != have) fail_msg("%s[%zu]: 0x%04x != 0x%04x", t->name, i, have, want);
    }
}

static void golden_check(const char *rel, const char *prefix, uint32_t type) {
    golden_ref g = {0};
    if (!golden_present(rel) || golden_ref_load(&g)) {
        skip();
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_shared(rel));
    bee_ckpt *c = NULL;
    if (bee_ckpt_open(path, &c)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_ckpt_count(c), json_array_size(g.manifest));
    assert_int_equal(bee_ckpt_count(c), 21);
    for (size_t i = 0; i < json_array_size(g.manifest); i++) {
        const json_t *m = json_array_get(g.manifest, i);
        char name[512];
        snprintf(name, sizeof name, "%s%s", prefix, json_string_value(json_object_get(m, "name")));
        const bee_ckpt_tensor *t = bee_ckpt_find(c, name);
        if (!t) fail_msg("%s: tensor '%s' missing", rel, name);
        assert_ptr_equal(t, bee_ckpt_get(c, i)); /* state-dict order */
        golden_tensor_check(&g, m, t, type);
    }
    bee_ckpt_free(c);
    golden_ref_free(&g);
}

static void test_golden_fp32(void **state) {
    (void)state;
    golden_check("cpmbee/golden/checkpoints/cpmbee_tiny_fp32.pt", "", BEE_TYPE_F32);
}

static void test_golden_fp16(void **state) {
    (void)state;
    golden_check("cpmbee/golden/checkpoints/cpmbee_tiny_fp16.pt", "", BEE_TYPE_F16);
}

static void test_golden_bf16(void **state) {
    (void)state;
    golden_check("cpmbee/golden/checkpoints/cpmbee_tiny_bf16.pt", "", BEE_TYPE_BF16);
}

static void test_golden_hf(void **state) {
    (void)state;
    golden_check("cpmbee/golden/checkpoints/hf/pytorch_model.bin", "cpmbee.", BEE_TYPE_F16);
}

static int golden_read(const char *rel, char **buf, size_t *len) {
    if (!golden_present(rel)) return -1;
    assert_int_equal(bee_read_file(tu_shared(rel), buf, len), 0);
    return 0;
}

/* Truncations of the real fp16 file (header region byte by byte, then spread
 * over the middle and the end) fail cleanly; each run sees an exact-size copy. */
static void test_golden_truncated(void **state) {
    (void)state;
    char *buf;
    size_t len;
    if (golden_read("cpmbee/golden/checkpoints/cpmbee_tiny_fp16.pt", &buf, &len)) {
        skip();
        return;
    }
    bee_ckpt *c;
    for (size_t n = 0; n < 4096; n++) {
        assert_int_equal(open_torch_copy(buf, n, &c), -1);
        assert_error_contains("t.pt: ");
    }
    for (size_t k = 1; k < 40; k++) assert_int_equal(open_torch_copy(buf, len / 40 * k + k, &c), -1);
    for (size_t n = len - 3000; n < len; n += 13) {
        assert_int_equal(open_torch_copy(buf, n, &c), -1);
        assert_error_contains("t.pt: zip");
    }
    assert_int_equal(open_torch_copy(buf, len, &c), 0);
    free(buf);
}

/* Flipping each byte of the local header + pickle region, and of the central
 * directory, of the real HF file never crashes. */
static void test_golden_bitflips(void **state) {
    (void)state;
    char *buf;
    size_t len;
    if (golden_read("cpmbee/golden/checkpoints/hf/pytorch_model.bin", &buf, &len)) {
        skip();
        return;
    }
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    size_t fails = 0;
    for (size_t i = 0; i < 4096; i++) {
        bee_ckpt *c;
        copy[i] ^= 0xff;
        if (bee_ckpt_open_torch_buffer(copy, len, "hf.bin", &c) == 0) bee_ckpt_free(c);
        else fails++;
        copy[i] = (uint8_t)buf[i];
    }
    for (size_t i = len - 2600; i < len; i++) {
        bee_ckpt *c;
        copy[i] ^= 0xff;
        if (bee_ckpt_open_torch_buffer(copy, len, "hf.bin", &c) == 0) bee_ckpt_free(c);
        else fails++;
        copy[i] = (uint8_t)buf[i];
    }
    assert_true(fails > 1000);
    /* a corrupt central directory entry names the entry */
    tu_buf t = {copy, len, len};
    size_t e3 = find_sig_from(&t, len - 2600, 0x02014b50, 3);
    copy[e3 + 42 + 3] = 0x7f;
    bee_ckpt *c;
    assert_int_equal(bee_ckpt_open_torch_buffer(copy, len, "hf.bin", &c), -1);
    assert_error_contains("hf.bin: zip central directory entry 3 ('pytorch_model/data/10') points past end of file");
    free(copy);
    free(buf);
}

int main(void) {
    synth_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_synthetic),
        cmocka_unit_test(test_torch_open_path),
        cmocka_unit_test(test_torch_wrapper_and_proto4),
        cmocka_unit_test(test_torch_disallowed_global),
        cmocka_unit_test(test_torch_hostile_pickles),
        cmocka_unit_test(test_torch_resource_limits),
        cmocka_unit_test(test_torch_tensor_errors),
        cmocka_unit_test(test_torch_compressed_member),
        cmocka_unit_test(test_torch_corrupt_zip),
        cmocka_unit_test(test_torch_truncated_synthetic),
        cmocka_unit_test(test_pickle_opcodes),
        cmocka_unit_test(test_safetensors_ok),
        cmocka_unit_test(test_safetensors_errors),
        cmocka_unit_test(test_safetensors_truncated),
        cmocka_unit_test(test_golden_fp32),
        cmocka_unit_test(test_golden_fp16),
        cmocka_unit_test(test_golden_bf16),
        cmocka_unit_test(test_golden_hf),
        cmocka_unit_test(test_golden_truncated),
        cmocka_unit_test(test_golden_bitflips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
