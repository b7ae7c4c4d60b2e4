/* GGUF reader/writer: round trips, byte-exact layout against a hand-built
 * file, and every validation error path (return code + message). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

/* ---------------------------------------------------------------- byte builder (independent of the writer) */


static void tb_u32(tu_buf *b, uint32_t v) { tu_buf_le(b, v, 4); }
static void tb_u64(tu_buf *b, uint64_t v) { tu_buf_le(b, v, 8); }

static void tb_strn(tu_buf *b, const char *s, size_t n) {
    tb_u64(b, n);
    tu_buf_put(b, s, n);
}

static void tb_str(tu_buf *b, const char *s) { tb_strn(b, s, strlen(s)); }

static void tb_pad(tu_buf *b, size_t align) {
    while (b->n % align) tu_buf_le(b, 0, 1);
}

static void tb_header(tu_buf *b, uint64_t n_t, uint64_t n_kv) {
    tu_buf_put(b, "GGUF", 4);
    tb_u32(b, 3);
    tb_u64(b, n_t);
    tb_u64(b, n_kv);
}

static void tb_kv_u32(tu_buf *b, const char *key, uint32_t v) {
    tb_str(b, key);
    tb_u32(b, BEE_GGUF_UINT32);
    tb_u32(b, v);
}

static void tb_tinfo(tu_buf *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    tb_str(b, name);
    tb_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) tb_u64(b, ne[i]);
    tb_u32(b, type);
    tb_u64(b, off);
}

static void tb_zeros(tu_buf *b, size_t n) {
    for (size_t i = 0; i < n; i++) tu_buf_le(b, 0, 1);
}

static void tb_free(tu_buf *b) { free(b->p); }

/* Opens b (from an exact-size heap copy, so ASan sees over-reads). */
static int open_tb(const tu_buf *b, const char *name, bee_gguf **g) {
    void *copy = b->n ? malloc(b->n) : NULL;
    if (b->n) memcpy(copy, b->p, b->n);
    int rc = bee_gguf_open_buffer(copy, b->n, name, g);
    if (rc == 0) {
        /* the caller's g points into copy: keep both alive by re-opening over b */
        bee_gguf_free(*g);
        rc = bee_gguf_open_buffer(b->p, b->n, name, g);
    }
    free(copy);
    return rc;
}

static void assert_msg_has(const char *sub) {
    const char *m = bee_error_message();
    if (!strstr(m, sub)) fail_msg("error message \"%s\" lacks \"%s\"", m, sub);
}

/* Asserts that b fails to open and the message names the file and both substrings. */
static void expect_fail(tu_buf *b, const char *sub1, const char *sub2) {
    bee_gguf *g = (bee_gguf *)&g;
    bee_error_clear();
    assert_int_equal(open_tb(b, "crafted.gguf", &g), -1);
    assert_null(g);
    assert_msg_has("crafted.gguf");
    assert_msg_has(sub1);
    if (sub2) assert_msg_has(sub2);
    tb_free(b);
}

static void expect_ok(tu_buf *b) {
    bee_gguf *g = NULL;
    if (open_tb(b, "crafted.gguf", &g)) fail_msg("valid twin failed: %s", bee_error_message());
    bee_gguf_free(g);
    tb_free(b);
}

/* ---------------------------------------------------------------- round trip */

static const char *k_strs[] = {"", "hello", "line1\nline2", "h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x90\x9d", "a\0b"};
static const uint64_t k_lens[] = {0, 5, 11, 18, 3};

static uint8_t g_f32_1d[7 * 4], g_f16_2d[3 * 5 * 2], g_bf16_3d[2 * 3 * 4 * 2], g_f32_4d[2 * 1 * 3 * 2 * 4];

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 31 + seed * 17 + 1);
}

static void add_all_scalars(bee_gguf_writer *w) {
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = INT64_MIN;
    double f64 = -1e300;
    assert_int_equal(bee_gguf_set_scalar(w, "s.u8", BEE_GGUF_UINT8, &u8), 0);
    assert_int_equal(bee_gguf_set_scalar(w, "s.i8", BEE_GGUF_INT8, &i8), 0);
    assert_int_equal(bee_gguf_set_scalar(w, "s.u16", BEE_GGUF_UINT16, &u16), 0);
    assert_int_equal(bee_gguf_set_scalar(w, "s.i16", BEE_GGUF_INT16, &i16), 0);
    assert_int_equal(bee_gguf_set_u32(w, "s.u32", 4000000000u), 0);
    assert_int_equal(bee_gguf_set_i32(w, "s.i32", -2000000000), 0);
    assert_int_equal(bee_gguf_set_f32(w, "s.f32", 3.25f), 0);
    assert_int_equal(bee_gguf_set_bool(w, "s.true", 1), 0);
    assert_int_equal(bee_gguf_set_bool(w, "s.false", 0), 0);
    assert_int_equal(bee_gguf_set_str(w, "s.str", k_strs[3]), 0);
    assert_int_equal(bee_gguf_set_str(w, "s.empty", ""), 0);
    assert_int_equal(bee_gguf_set_str(w, "s.nl", "a\nb"), 0);
    assert_int_equal(bee_gguf_set_u64(w, "s.u64", UINT64_MAX - 1), 0);
    assert_int_equal(bee_gguf_set_scalar(w, "s.i64", BEE_GGUF_INT64, &i64), 0);
    assert_int_equal(bee_gguf_set_scalar(w, "s.f64", BEE_GGUF_FLOAT64, &f64), 0);
}

static const uint8_t av_u8[] = {0, 1, 255};
static const int8_t av_i8[] = {-128, 0, 127};
static const uint16_t av_u16[] = {1, 65535};
static const int16_t av_i16[] = {-32768, 32767, -1};
static const uint32_t av_u32[] = {0, 4294967295u, 7};
static const int32_t av_i32[] = {-5, 2147483647, (-2147483647 - 1)};
static const float av_f32[] = {1.5f, -0.0f, 1e-30f};
static const uint8_t av_bool[] = {1, 0, 1, 1};
static const uint64_t av_u64[] = {UINT64_MAX, 0};
static const int64_t av_i64[] = {INT64_MIN, INT64_MAX, -1};
static const double av_f64[] = {3.141592653589793, -2e-300};

#define ARR(t, a) {"a." #a, t, av_##a, sizeof av_##a, sizeof av_##a / sizeof av_##a[0]}
static const struct {
    const char *key;
    uint32_t type;
    const void *data;
    size_t bytes;
    uint64_t n;
} k_arrs[] = {
    ARR(BEE_GGUF_UINT8, u8),   ARR(BEE_GGUF_INT8, i8),    ARR(BEE_GGUF_UINT16, u16),
    ARR(BEE_GGUF_INT16, i16),  ARR(BEE_GGUF_UINT32, u32), ARR(BEE_GGUF_INT32, i32),
    ARR(BEE_GGUF_FLOAT32, f32), ARR(BEE_GGUF_BOOL, bool), ARR(BEE_GGUF_UINT64, u64),
    ARR(BEE_GGUF_INT64, i64),  ARR(BEE_GGUF_FLOAT64, f64),
};
#define N_ARRS (sizeof k_arrs / sizeof k_arrs[0])

static const struct {
    const char *name;
    uint32_t type, nd;
    uint64_t ne[4];
    const uint8_t *data;
    size_t nbytes;
} k_tensors[] = {
    {"t.f32_1d", BEE_TYPE_F32, 1, {7}, g_f32_1d, sizeof g_f32_1d},
    {"t.f16_2d", BEE_TYPE_F16, 2, {3, 5}, g_f16_2d, sizeof g_f16_2d},
    {"t.bf16_3d", BEE_TYPE_BF16, 3, {2, 3, 4}, g_bf16_3d, sizeof g_bf16_3d},
    {"t.f32_4d", BEE_TYPE_F32, 4, {2, 1, 3, 2}, g_f32_4d, sizeof g_f32_4d},
};
#define N_TENSORS (sizeof k_tensors / sizeof k_tensors[0])

static void write_full(const char *path, int align) {
    bee_gguf_writer *w = bee_gguf_writer_init();
    assert_non_null(w);
    if (align) assert_int_equal(bee_gguf_set_u32(w, "general.alignment", (uint32_t)align), 0);
    add_all_scalars(w);
    for (size_t i = 0; i < N_ARRS; i++)
        assert_int_equal(bee_gguf_set_arr(w, k_arrs[i].key, k_arrs[i].type, k_arrs[i].data, k_arrs[i].n), 0);
    assert_int_equal(bee_gguf_set_arr(w, "a.empty", BEE_GGUF_INT32, NULL, 0), 0);
    assert_int_equal(bee_gguf_set_arr_str(w, "a.str", k_strs, k_lens, 5), 0);
    assert_int_equal(bee_gguf_set_arr_str(w, "a.str_empty", NULL, NULL, 0), 0);
    fill(g_f32_1d, sizeof g_f32_1d, 1);
    fill(g_f16_2d, sizeof g_f16_2d, 2);
    fill(g_bf16_3d, sizeof g_bf16_3d, 3);
    fill(g_f32_4d, sizeof g_f32_4d, 4);
    for (size_t i = 0; i < N_TENSORS; i++)
        assert_int_equal(bee_gguf_add_tensor(w, k_tensors[i].name, k_tensors[i].type, k_tensors[i].nd,
                                             k_tensors[i].ne, k_tensors[i].data, k_tensors[i].nbytes),
                         0);
    if (bee_gguf_writer_write(w, path)) fail_msg("write: %s", bee_error_message());
    bee_gguf_writer_free(w);
}

static void check_scalars(const bee_gguf *g) {
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    double f64;
    float f32;
    int b;
    assert_int_equal(bee_gguf_get_u32(g, "s.u8", &u32), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(bee_gguf_get_i64(g, "s.i8", &i64), 0);
    assert_int_equal(i64, -100);
    assert_int_equal(bee_gguf_get_u32(g, "s.u16", &u32), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(bee_gguf_get_i64(g, "s.i16", &i64), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(bee_gguf_get_u32(g, "s.u32", &u32), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(bee_gguf_get_i64(g, "s.i32", &i64), 0);
    assert_int_equal(i64, -2000000000);
    assert_int_equal(bee_gguf_get_f32(g, "s.f32", &f32), 0);
    assert_true(f32 == 3.25f);
    assert_int_equal(bee_gguf_get_bool(g, "s.true", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(bee_gguf_get_bool(g, "s.false", &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(bee_gguf_get_u64(g, "s.u64", &u64), 0);
    assert_true(u64 == UINT64_MAX - 1);
    assert_int_equal(bee_gguf_get_i64(g, "s.i64", &i64), 0);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(bee_gguf_get_f64(g, "s.f64", &f64), 0);
    assert_true(f64 == -1e300);
}

static void check_str(const bee_gguf *g, const char *key, const char *want, uint64_t want_len) {
    const char *s;
    uint64_t len;
    assert_int_equal(bee_gguf_get_str(g, key, &s, &len), 0);
    assert_int_equal(len, want_len);
    if (want_len) assert_memory_equal(s, want, want_len);
}

static void check_arrays(const bee_gguf *g) {
    uint32_t et;
    uint64_t n, len;
    const void *data;
    const char *s;
    for (size_t i = 0; i < N_ARRS; i++) {
        assert_int_equal(bee_gguf_get_arr(g, k_arrs[i].key, &et, &n), 0);
        assert_int_equal(et, k_arrs[i].type);
        assert_int_equal(n, k_arrs[i].n);
        assert_int_equal(bee_gguf_get_arr_data(g, k_arrs[i].key, &data), 0);
        assert_memory_equal(data, k_arrs[i].data, k_arrs[i].bytes); /* little-endian host */
    }
    assert_int_equal(bee_gguf_get_arr(g, "a.empty", &et, &n), 0);
    assert_int_equal(et, BEE_GGUF_INT32);
    assert_int_equal(n, 0);
    assert_int_equal(bee_gguf_get_arr(g, "a.str", &et, &n), 0);
    assert_int_equal(et, BEE_GGUF_STRING);
    assert_int_equal(n, 5);
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(bee_gguf_get_arr_str(g, "a.str", i, &s, &len), 0);
        assert_int_equal(len, k_lens[i]);
        if (len) assert_memory_equal(s, k_strs[i], len);
    }
    assert_int_equal(bee_gguf_get_arr_str(g, "a.str", 5, &s, &len), -1);
    assert_msg_has("out of range");
    assert_int_equal(bee_gguf_get_arr(g, "a.str_empty", &et, &n), 0);
    assert_int_equal(n, 0);
}

static void check_tensors(const bee_gguf *g, uint32_t align) {
    const uint8_t *section = NULL;
    assert_int_equal(bee_gguf_n_tensors(g), N_TENSORS);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const bee_gguf_tensor *t = bee_gguf_tensor_at(g, i);
        assert_non_null(t);
        assert_ptr_equal(bee_gguf_find_tensor(g, k_tensors[i].name), t);
        assert_string_equal(t->name, k_tensors[i].name);
        assert_int_equal(t->type, k_tensors[i].type);
        assert_int_equal(t->n_dims, k_tensors[i].nd);
        uint64_t n = 1;
        for (uint32_t j = 0; j < 4; j++) {
            assert_int_equal(t->ne[j], j < t->n_dims ? k_tensors[i].ne[j] : 1);
            n *= t->ne[j];
        }
        assert_int_equal(t->n_elements, n);
        assert_int_equal(t->nbytes, k_tensors[i].nbytes);
        assert_memory_equal(t->data, k_tensors[i].data, t->nbytes);
        assert_int_equal(t->offset % align, 0);
        assert_int_equal((uintptr_t)t->data % align, 0); /* mmap is page-aligned */
        if (!section) section = (const uint8_t *)t->data - t->offset;
        assert_ptr_equal((const uint8_t *)t->data - t->offset, section);
    }
    assert_int_equal((uintptr_t)section % align, 0);
    assert_null(bee_gguf_tensor_at(g, N_TENSORS));
    assert_null(bee_gguf_find_tensor(g, "nope"));
}

static void test_roundtrip(void **state) {
    (void)state;
    const char *path = tu_tmp("rt.gguf");
    bee_gguf *g;
    write_full(path, 64);
    if (bee_gguf_open(path, &g)) fail_msg("open: %s", bee_error_message());
    assert_int_equal(bee_gguf_version(g), 3);
    assert_int_equal(bee_gguf_alignment(g), 64);
    assert_int_equal(bee_gguf_n_kv(g), 1 + 15 + N_ARRS + 3);
    assert_string_equal(bee_gguf_kv_key(g, 0), "general.alignment");
    assert_int_equal(bee_gguf_kv_type(g, 0), BEE_GGUF_UINT32);
    assert_string_equal(bee_gguf_kv_key(g, 1), "s.u8");
    assert_int_equal(bee_gguf_kv_type(g, 1), BEE_GGUF_UINT8);
    assert_int_equal(bee_gguf_kv_type(g, 2), BEE_GGUF_INT8);
    assert_int_equal(bee_gguf_kv_type(g, 15), BEE_GGUF_FLOAT64);
    assert_int_equal(bee_gguf_kv_type(g, 16), BEE_GGUF_ARRAY);
    assert_null(bee_gguf_kv_key(g, bee_gguf_n_kv(g)));
    for (size_t i = 0; i < bee_gguf_n_kv(g); i++) assert_int_equal(bee_gguf_find_key(g, bee_gguf_kv_key(g, i)), i);
    assert_int_equal(bee_gguf_find_key(g, "missing"), -1);
    check_scalars(g);
    check_str(g, "s.str", k_strs[3], k_lens[3]);
    check_str(g, "s.empty", "", 0);
    check_str(g, "s.nl", "a\nb", 3);
    check_arrays(g);
    check_tensors(g, 64);
    bee_gguf_free(g);
}

static void test_default_alignment(void **state) {
    (void)state;
    const char *path = tu_tmp("rt32.gguf");
    bee_gguf *g;
    write_full(path, 0);
    if (bee_gguf_open(path, &g)) fail_msg("open: %s", bee_error_message());
    assert_int_equal(bee_gguf_alignment(g), 32);
    assert_int_equal(bee_gguf_find_key(g, "general.alignment"), -1);
    check_tensors(g, 32);
    bee_gguf_free(g);
}

/* The writer's bytes match a file built by hand from the spec. */
static void test_writer_layout(void **state) {
    (void)state;
    const char *path = tu_tmp("layout.gguf");
    const float data[2] = {1.0f, 2.0f};
    const uint64_t ne[1] = {2};
    bee_gguf_writer *w = bee_gguf_writer_init();
    assert_int_equal(bee_gguf_set_u32(w, "x", 7), 0);
    assert_int_equal(bee_gguf_set_str(w, "name", "bee"), 0);
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 1, ne, data, sizeof data), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), 0);
    bee_gguf_writer_free(w);
    tu_buf b = {0};
    tb_header(&b, 1, 2);
    tb_kv_u32(&b, "x", 7);
    tb_str(&b, "name");
    tb_u32(&b, BEE_GGUF_STRING);
    tb_str(&b, "bee");
    tb_tinfo(&b, "t", 1, ne, BEE_TYPE_F32, 0);
    tb_pad(&b, 32);
    tu_buf_put(&b, data, sizeof data);
    tb_pad(&b, 32);
    char *buf;
    size_t len;
    assert_int_equal(bee_read_file(path, &buf, &len), 0);
    assert_int_equal(len, b.n);
    assert_memory_equal(buf, b.p, b.n);
    free(buf);
    tb_free(&b);
}

/* A hand-built file (not from the writer) reads back correctly. */
static void test_read_handmade(void **state) {
    (void)state;
    tu_buf b = {0};
    const uint64_t ne[2] = {2, 2};
    tb_header(&b, 2, 3);
    tb_kv_u32(&b, "general.alignment", 16);
    tb_str(&b, "i16");
    tb_u32(&b, BEE_GGUF_INT16);
    tu_buf_le(&b, 0xfffe, 2); /* -2 */
    tb_str(&b, "strs");
    tb_u32(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, BEE_GGUF_STRING);
    tb_u64(&b, 2);
    tb_str(&b, "ab");
    tb_str(&b, "");
    tb_tinfo(&b, "w", 2, ne, BEE_TYPE_F16, 16);
    tb_tinfo(&b, "v", 1, ne, BEE_TYPE_BF16, 0);
    tb_pad(&b, 16);
    size_t start = b.n;
    tu_buf_le(&b, 0x1122, 2);
    tu_buf_le(&b, 0x3344, 2);
    tb_zeros(&b, 12);
    tu_buf_le(&b, 0xaabbccdd, 4);
    tu_buf_le(&b, 0x11111111, 4); /* 8 bytes of w */
    bee_gguf *g;
    assert_int_equal(bee_gguf_open_buffer(b.p, b.n, "hand.gguf", &g), 0);
    int64_t v;
    uint32_t u;
    assert_int_equal(bee_gguf_get_i64(g, "i16", &v), 0);
    assert_int_equal(v, -2);
    assert_int_equal(bee_gguf_get_u32(g, "i16", &u), -1);
    assert_msg_has("'i16'");
    assert_msg_has("does not fit");
    const char *s;
    uint64_t len;
    assert_int_equal(bee_gguf_get_arr_str(g, "strs", 0, &s, &len), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "ab", 2);
    assert_int_equal(bee_gguf_get_arr_str(g, "strs", 1, &s, &len), 0);
    assert_int_equal(len, 0);
    const bee_gguf_tensor *w = bee_gguf_find_tensor(g, "w"), *vv = bee_gguf_find_tensor(g, "v");
    assert_ptr_equal(w->data, b.p + start + 16);
    assert_ptr_equal(vv->data, b.p + start);
    assert_int_equal(vv->nbytes, 4);
    assert_int_equal(w->nbytes, 8);
    bee_gguf_free(g);
    tb_free(&b);
}

static void test_replace_key(void **state) {
    (void)state;
    const char *path = tu_tmp("replace.gguf");
    bee_gguf_writer *w = bee_gguf_writer_init();
    assert_int_equal(bee_gguf_set_u32(w, "a", 1), 0);
    assert_int_equal(bee_gguf_set_u32(w, "b", 2), 0);
    assert_int_equal(bee_gguf_set_str(w, "a", "now a string"), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), 0);
    bee_gguf_writer_free(w);
    bee_gguf *g;
    assert_int_equal(bee_gguf_open(path, &g), 0);
    assert_int_equal(bee_gguf_n_kv(g), 2);
    assert_string_equal(bee_gguf_kv_key(g, 0), "a");
    assert_int_equal(bee_gguf_kv_type(g, 0), BEE_GGUF_STRING);
    check_str(g, "a", "now a string", 12);
    bee_gguf_free(g);
}

static void test_getter_errors(void **state) {
    (void)state;
    const char *path = tu_tmp("getters.gguf");
    write_full(path, 0);
    bee_gguf *g;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    int b;
    const char *s;
    const void *d;
    assert_int_equal(bee_gguf_open(path, &g), 0);
    assert_int_equal(bee_gguf_get_u32(g, "no.such.key", &u32), -1);
    assert_msg_has("'no.such.key' not found");
    assert_msg_has("getters.gguf");
    assert_int_equal(bee_gguf_get_u32(g, "s.i8", &u32), -1); /* -100 */
    assert_msg_has("'s.i8'");
    assert_int_equal(bee_gguf_get_u32(g, "s.u64", &u32), -1);
    assert_msg_has("does not fit in uint32");
    assert_int_equal(bee_gguf_get_u64(g, "s.i64", &u64), -1);
    assert_int_equal(bee_gguf_get_i64(g, "s.u64", &i64), -1);
    assert_msg_has("does not fit in int64");
    assert_int_equal(bee_gguf_get_u64(g, "s.u16", &u64), 0);
    assert_int_equal(u64, 60000);
    assert_int_equal(bee_gguf_get_u32(g, "s.str", &u32), -1);
    assert_msg_has("has type string");
    assert_int_equal(bee_gguf_get_f32(g, "s.u32", &f), -1);
    assert_msg_has("'s.u32'");
    assert_int_equal(bee_gguf_get_f32(g, "s.f64", &f), -1); /* -1e300 */
    assert_msg_has("float32");
    assert_int_equal(bee_gguf_get_bool(g, "s.u8", &b), -1);
    assert_msg_has("expected bool");
    assert_int_equal(bee_gguf_get_str(g, "a.u8", &s, NULL), -1);
    assert_msg_has("array of uint8");
    assert_int_equal(bee_gguf_get_arr_data(g, "a.str", &d), -1);
    assert_msg_has("'a.str'");
    assert_int_equal(bee_gguf_get_arr_str(g, "a.u8", 0, &s, NULL), -1);
    assert_int_equal(bee_gguf_get_arr(g, "s.u8", NULL, NULL), -1);
    assert_msg_has("expected array");
    bee_gguf_free(g);
}

static void test_large_vocab(void **state) {
    (void)state;
    enum { N = 100000 };
    const char *path = tu_tmp("vocab.gguf");
    char **strs = malloc(N * sizeof *strs);
    for (int i = 0; i < N; i++) {
        strs[i] = malloc(16);
        snprintf(strs[i], 16, "tok%d", i * 7);
    }
    bee_gguf_writer *w = bee_gguf_writer_init();
    assert_int_equal(bee_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)strs, NULL, N), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), 0);
    bee_gguf_writer_free(w);
    bee_gguf *g;
    assert_int_equal(bee_gguf_open(path, &g), 0);
    for (int k = 0; k < N; k++) { /* scattered access; O(n) lookup would time out */
        uint64_t i = (uint64_t)k * 7919 % N, len;
        const char *s;
        assert_int_equal(bee_gguf_get_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len), 0);
        assert_int_equal(len, strlen(strs[i]));
        assert_memory_equal(s, strs[i], len);
    }
    bee_gguf_free(g);
    for (int i = 0; i < N; i++) free(strs[i]);
    free(strs);
}

/* ---------------------------------------------------------------- writer validation */

static void test_writer_errors(void **state) {
    (void)state;
    const float d[4] = {0};
    const uint64_t ne[5] = {2, 2, 1, 1, 1}, ne0[1] = {0};
    const uint8_t bad_bool[2] = {1, 2};
    bee_gguf_writer *w = bee_gguf_writer_init();
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 2, ne, d, 12), -1);
    assert_msg_has("nbytes");
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 5, ne, d, 16), -1);
    assert_msg_has("n_dims");
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 1, ne0, d, 0), -1);
    assert_int_equal(bee_gguf_add_tensor(w, "t", 1000, 2, ne, d, 16), -1);
    assert_msg_has("unknown type");
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 2, ne, d, 16), 0);
    assert_int_equal(bee_gguf_add_tensor(w, "t", BEE_TYPE_F32, 2, ne, d, 16), -1);
    assert_msg_has("duplicate tensor name 't'");
    assert_int_equal(bee_gguf_set_arr(w, "b", BEE_GGUF_BOOL, bad_bool, 2), -1);
    assert_int_equal(bee_gguf_set_arr(w, "s", BEE_GGUF_STRING, bad_bool, 2), -1);
    assert_int_equal(bee_gguf_set_u32(w, "", 1), -1);
    const char *path = tu_tmp("badalign.gguf");
    assert_int_equal(bee_gguf_set_u32(w, "general.alignment", 48), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), -1);
    assert_msg_has("power of two");
    assert_false(bee_file_exists(path));
    assert_int_equal(bee_gguf_set_u64(w, "general.alignment", 64), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), -1);
    assert_msg_has("must be uint32");
    assert_int_equal(bee_gguf_set_u32(w, "general.alignment", 128), 0);
    assert_int_equal(bee_gguf_writer_write(w, path), 0);
    bee_gguf_writer_free(w);
    bee_gguf *g;
    assert_int_equal(bee_gguf_open(path, &g), 0);
    assert_int_equal(bee_gguf_alignment(g), 128);
    assert_int_equal(bee_gguf_file_size(g), 256); /* metadata padded to 128, data padded to 128 */
    bee_gguf_free(g);
}

/* ---------------------------------------------------------------- reader error paths */

static void test_bad_magic(void **state) {
    (void)state;
    tu_buf b = {0};
    tu_buf_put(&b, "GGUX", 4);
    tb_u32(&b, 3);
    tb_u64(&b, 0);
    tb_u64(&b, 0);
    expect_fail(&b, "offset 0", "magic");
    b = (tu_buf){0};
    tb_header(&b, 0, 0);
    expect_ok(&b);
}

static void test_version(void **state) {
    (void)state;
    for (uint32_t v = 0; v < 5; v++) {
        if (v == 3) continue;
        tu_buf b = {0};
        char want[32];
        tu_buf_put(&b, "GGUF", 4);
        tb_u32(&b, v);
        tb_u64(&b, 0);
        tb_u64(&b, 0);
        snprintf(want, sizeof want, "version %u", v);
        expect_fail(&b, "offset 4", want);
    }
}

/* Truncating a valid file anywhere before its last data byte fails cleanly;
 * dropping only trailing padding is still valid. */
static void test_truncated(void **state) {
    (void)state;
    const char *path = tu_tmp("trunc.gguf");
    write_full(path, 64);
    char *buf;
    size_t size;
    assert_int_equal(bee_read_file(path, &buf, &size), 0);
    bee_gguf *g;
    size_t end = 0;
    assert_int_equal(bee_gguf_open_buffer(buf, size, "trunc.gguf", &g), 0);
    for (size_t i = 0; i < bee_gguf_n_tensors(g); i++) {
        const bee_gguf_tensor *t = bee_gguf_tensor_at(g, i);
        size_t e = (size_t)((const char *)t->data - buf) + t->nbytes;
        end = e > end ? e : end;
    }
    bee_gguf_free(g);
    assert_true(end > 500 && end <= size);
    for (size_t len = 0; len < size; len++) {
        char *copy = len ? malloc(len) : NULL;
        if (len) memcpy(copy, buf, len);
        bee_error_clear();
        g = (bee_gguf *)&g;
        int rc = bee_gguf_open_buffer(copy, len, "trunc.gguf", &g);
        if (len < end) {
            if (rc != -1) fail_msg("truncated to %zu of %zu bytes but opened", len, end);
            assert_null(g);
            assert_msg_has("trunc.gguf: ");
            assert_msg_has("offset ");
        } else {
            if (rc) fail_msg("len %zu: %s", len, bee_error_message());
            bee_gguf_free(g);
        }
        free(copy);
    }
    /* a few via real files through the mmap path */
    const size_t cuts[] = {0, 3, 23, 24, 100, end - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        const char *p = tu_tmp("cut.gguf");
        tu_write(p, buf, cuts[i]);
        assert_int_equal(bee_gguf_open(p, &g), -1);
        assert_msg_has("cut.gguf");
    }
    free(buf);
}

static void test_truncated_messages(void **state) {
    (void)state;
    tu_buf b = {0};
    tb_header(&b, 0, 1);
    tb_str(&b, "general.name");
    tb_u32(&b, BEE_GGUF_STRING);
    tu_buf_le(&b, 5, 4); /* the string length at offset 48 is cut after 4 of its 8 bytes */
    tb_zeros(&b, 10);
    b.n = 48 + 4;
    expect_fail(&b, "truncated at offset 48 while reading key #0 ('general.name') string length", NULL);
    b = (tu_buf){0};
    tu_buf_put(&b, "GGUF\3\0", 6);
    expect_fail(&b, "truncated at offset 4 while reading header version", NULL);
}

static void test_huge_counts(void **state) {
    (void)state;
    tu_buf b = {0};
    tb_header(&b, (uint64_t)1 << 62, 0);
    tb_zeros(&b, 100);
    expect_fail(&b, "offset 8", "tensor count");
    b = (tu_buf){0};
    tb_header(&b, 0, UINT64_MAX);
    tb_zeros(&b, 100);
    expect_fail(&b, "offset 16", "key/value count");
    b = (tu_buf){0}; /* array count larger than the file */
    tb_header(&b, 0, 1);
    tb_str(&b, "arr");
    tb_u32(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, BEE_GGUF_UINT64);
    tb_u64(&b, (uint64_t)1 << 61);
    tb_u64(&b, 1);
    expect_fail(&b, "offset 43", "array length");
}

/* One key "k" (value type at offset 33, value at 37) for the key-level tests. */
static void one_kv(tu_buf *b, uint32_t type) {
    tb_header(b, 0, 1);
    tb_str(b, "k");
    tb_u32(b, type);
}

static void test_huge_string(void **state) {
    (void)state;
    tu_buf b = {0};
    one_kv(&b, BEE_GGUF_STRING);
    tb_u64(&b, UINT64_MAX - 3);
    tu_buf_put(&b, "abc", 3);
    expect_fail(&b, "offset 37", "key #0 ('k') string length");
    b = (tu_buf){0};
    one_kv(&b, BEE_GGUF_STRING);
    tb_str(&b, "abc");
    expect_ok(&b);
    b = (tu_buf){0}; /* huge string inside a string array */
    one_kv(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, BEE_GGUF_STRING);
    tb_u64(&b, 2);
    tb_str(&b, "x");
    tb_u64(&b, 1ull << 40);
    expect_fail(&b, "array element #1 string length", "offset 58");
}

static void test_bad_bool(void **state) {
    (void)state;
    tu_buf b = {0};
    one_kv(&b, BEE_GGUF_BOOL);
    tu_buf_le(&b, 2, 1);
    expect_fail(&b, "offset 37", "bool");
    b = (tu_buf){0};
    one_kv(&b, BEE_GGUF_BOOL);
    tu_buf_le(&b, 1, 1);
    expect_ok(&b);
    b = (tu_buf){0};
    one_kv(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, BEE_GGUF_BOOL);
    tb_u64(&b, 3);
    tu_buf_put(&b, "\1\0\7", 3);
    expect_fail(&b, "offset 51", "array element #2");
}

static void test_unknown_value_type(void **state) {
    (void)state;
    tu_buf b = {0};
    one_kv(&b, 13);
    tb_u32(&b, 0);
    tb_zeros(&b, 8);
    expect_fail(&b, "offset 33", "unknown value type 13");
    b = (tu_buf){0};
    one_kv(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, 99);
    tb_u64(&b, 0);
    expect_fail(&b, "offset 37", "unknown value type 99");
    b = (tu_buf){0};
    one_kv(&b, BEE_GGUF_ARRAY);
    tb_u32(&b, BEE_GGUF_ARRAY);
    tb_u64(&b, 0);
    expect_fail(&b, "offset 37", "nested arrays");
}

static void test_duplicate_key(void **state) {
    (void)state;
    tu_buf b = {0};
    tb_header(&b, 0, 2);
    tb_kv_u32(&b, "k", 1);
    tb_kv_u32(&b, "k", 2);
    expect_fail(&b, "offset 41", "duplicate key");
    b = (tu_buf){0};
    tb_header(&b, 0, 2);
    tb_kv_u32(&b, "k", 1);
    tb_kv_u32(&b, "j", 2);
    expect_ok(&b);
}

static void test_bad_names(void **state) {
    (void)state;
    tu_buf b = {0};
    tb_header(&b, 0, 1);
    tb_strn(&b, "a\0b", 3);
    tb_u32(&b, BEE_GGUF_UINT8);
    tu_buf_le(&b, 0, 1);
    expect_fail(&b, "offset 33", "NUL");
    b = (tu_buf){0};
    tb_header(&b, 0, 1);
    tb_str(&b, "");
    tb_u32(&b, BEE_GGUF_UINT8);
    tb_zeros(&b, 8);
    expect_fail(&b, "offset 24", "empty name");
}

static void test_bad_alignment_kv(void **state) {
    (void)state;
    tu_buf b = {0};
    tb_header(&b, 0, 1);
    tb_kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, "power of two", "general.alignment");
    b = (tu_buf){0};
    tb_header(&b, 0, 1);
    tb_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, "power of two", NULL);
    b = (tu_buf){0};
    tb_header(&b, 0, 1);
    tb_str(&b, "general.alignment");
    tb_u32(&b, BEE_GGUF_UINT64);
    tb_u64(&b, 64);
    expect_fail(&b, "must be uint32", "offset 49");
}

/* One tensor "a": n_dims at 33, ne[j] at 37 + 8j, then type and data offset
 * (at 45 and 49 with one dim). */
static void one_tensor(tu_buf *b, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off, size_t data) {
    tb_header(b, 1, 0);
    tb_tinfo(b, "a", nd, ne, type, off);
    tb_pad(b, 32);
    tb_zeros(b, data);
}

static void test_unknown_tensor_type(void **state) {
    (void)state;
    const uint64_t ne[1] = {4};
    tu_buf b = {0};
    one_tensor(&b, 1, ne, 1000, 0, 16);
    expect_fail(&b, "offset 45", "unknown tensor type 1000");
    b = (tu_buf){0};
    one_tensor(&b, 1, ne, BEE_TYPE_F32, 0, 16);
    expect_ok(&b);
}

static void test_bad_dims(void **state) {
    (void)state;
    const uint64_t ne[5] = {1, 1, 1, 1, 1}, zero[2] = {4, 0}, big[4] = {1ull << 32, 1ull << 32, 1ull << 32, 1};
    tu_buf b = {0};
    one_tensor(&b, 5, ne, BEE_TYPE_F32, 0, 4);
    expect_fail(&b, "offset 33", "n_dims is 5");
    b = (tu_buf){0};
    one_tensor(&b, 0, ne, BEE_TYPE_F32, 0, 4);
    expect_fail(&b, "offset 33", "n_dims is 0");
    b = (tu_buf){0};
    one_tensor(&b, 2, zero, BEE_TYPE_F32, 0, 4);
    expect_fail(&b, "offset 45", "ne[1]");
    b = (tu_buf){0};
    one_tensor(&b, 3, big, BEE_TYPE_F32, 0, 4);
    expect_fail(&b, "offset 45", "overflow");
    b = (tu_buf){0};
    one_tensor(&b, 4, ne, BEE_TYPE_F32, 0, 4);
    expect_ok(&b);
}

static void test_misaligned_offset(void **state) {
    (void)state;
    const uint64_t ne[1] = {4};
    tu_buf b = {0};
    one_tensor(&b, 1, ne, BEE_TYPE_F32, 4, 64);
    expect_fail(&b, "offset 49", "alignment 32");
    b = (tu_buf){0};
    one_tensor(&b, 1, ne, BEE_TYPE_F32, 32, 64);
    expect_ok(&b);
}

static void test_out_of_bounds(void **state) {
    (void)state;
    const uint64_t ne[1] = {4};
    tu_buf b = {0};
    one_tensor(&b, 1, ne, BEE_TYPE_F32, 0, 15);
    expect_fail(&b, "offset 49", "past the end");
    b = (tu_buf){0};
    one_tensor(&b, 1, ne, BEE_TYPE_F32, (uint64_t)-32, 16);
    expect_fail(&b, "offset 49", "past the end");
    b = (tu_buf){0};
    tb_header(&b, 1, 0);
    tb_tinfo(&b, "a", 1, ne, BEE_TYPE_F32, 0); /* data section start itself past the end */
    expect_fail(&b, "past the end", "tensor #0 ('a')");
}

static void two_tensors(tu_buf *b, const char *n1, uint64_t off1, const char *n2, uint64_t off2) {
    const uint64_t ne1[1] = {16}, ne2[1] = {24}; /* 64 and 96 bytes */
    tb_header(b, 2, 0);
    tb_tinfo(b, n1, 1, ne1, BEE_TYPE_F32, off1);
    tb_tinfo(b, n2, 1, ne2, BEE_TYPE_F32, off2);
    tb_pad(b, 32);
    tb_zeros(b, 160);
}

static void test_overlap(void **state) {
    (void)state;
    tu_buf b = {0};
    two_tensors(&b, "a", 0, "b", 32);
    expect_fail(&b, "overlaps tensor #0 ('a')", "offset 82");
    b = (tu_buf){0};
    two_tensors(&b, "a", 64, "b", 0); /* b sorts first: a overlaps b */
    expect_fail(&b, "tensor #0 ('a') data offset", "overlaps tensor #1 ('b')");
    b = (tu_buf){0};
    two_tensors(&b, "a", 0, "b", 64);
    expect_ok(&b);
}

static void test_duplicate_tensor(void **state) {
    (void)state;
    tu_buf b = {0};
    two_tensors(&b, "a", 0, "a", 64);
    expect_fail(&b, "offset 57", "duplicate tensor name");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_default_alignment),
        cmocka_unit_test(test_writer_layout),
        cmocka_unit_test(test_read_handmade),
        cmocka_unit_test(test_replace_key),
        cmocka_unit_test(test_getter_errors),
        cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_truncated_messages),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_huge_string),
        cmocka_unit_test(test_bad_bool),
        cmocka_unit_test(test_unknown_value_type),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_alignment_kv),
        cmocka_unit_test(test_unknown_tensor_type),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_misaligned_offset),
        cmocka_unit_test(test_out_of_bounds),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_duplicate_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
