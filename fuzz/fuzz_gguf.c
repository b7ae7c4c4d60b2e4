/* libFuzzer harness for the GGUF reader: open arbitrary bytes and, when that
 * succeeds, read every key/value and every tensor byte through the getters so
 * the sanitizers see any pointer the reader hands out that is out of bounds.
 *
 * Build with cmake -DBEE_FUZZ=ON (clang), or directly:
 *   clang -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_gguf.c
 *       src/format/gguf.c src/util/[all .c files] -o /tmp/fuzz_gguf
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t g_sink;

static void touch(const void *p, uint64_t n) {
    const volatile uint8_t *b = p;
    uint64_t s = 0;
    for (uint64_t i = 0; i < n; i++) s += b[i];
    g_sink += s;
}

static uint64_t elem_size(uint32_t t) {
    switch (t) {
    case BEE_GGUF_UINT8: case BEE_GGUF_INT8: case BEE_GGUF_BOOL: return 1;
    case BEE_GGUF_UINT16: case BEE_GGUF_INT16: return 2;
    case BEE_GGUF_UINT32: case BEE_GGUF_INT32: case BEE_GGUF_FLOAT32: return 4;
    case BEE_GGUF_UINT64: case BEE_GGUF_INT64: case BEE_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void touch_array(const bee_gguf *g, const char *key) {
    uint32_t et;
    uint64_t n, len;
    const void *d;
    const char *s;
    if (bee_gguf_get_arr(g, key, &et, &n)) abort();
    if (et == BEE_GGUF_STRING) {
        for (uint64_t i = 0; i < n; i++) {
            if (bee_gguf_get_arr_str(g, key, i, &s, &len)) abort();
            touch(s, len);
        }
        if (bee_gguf_get_arr_str(g, key, n, &s, &len) == 0) abort();
        return;
    }
    if (bee_gguf_get_arr_data(g, key, &d)) abort();
    touch(d, n * elem_size(et));
    if (et == BEE_GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)d)[i] > 1) abort();
}

static void touch_kv(const bee_gguf *g, size_t i) {
    const char *key = bee_gguf_kv_key(g, i), *s;
    uint32_t type = bee_gguf_kv_type(g, i), u32;
    uint64_t u64, len;
    int64_t i64;
    double f64;
    float f32;
    int b;
    if (!key || bee_gguf_find_key(g, key) != (long)i) abort();
    touch(key, strlen(key) + 1);
    if (bee_gguf_get_u32(g, key, &u32) == 0) g_sink += u32;
    if (bee_gguf_get_u64(g, key, &u64) == 0) g_sink += u64;
    if (bee_gguf_get_i64(g, key, &i64) == 0) g_sink += (uint64_t)i64;
    if (bee_gguf_get_f32(g, key, &f32) == 0) g_sink += f32 == f32;
    if (bee_gguf_get_f64(g, key, &f64) == 0) g_sink += f64 == f64;
    if (bee_gguf_get_bool(g, key, &b) == 0 && b != 0 && b != 1) abort();
    if (bee_gguf_get_str(g, key, &s, &len) == 0) touch(s, len);
    if (type == BEE_GGUF_ARRAY) touch_array(g, key);
}

static void touch_tensor(const bee_gguf *g, size_t i) {
    const bee_gguf_tensor *t = bee_gguf_tensor_at(g, i);
    uint64_t n = 1;
    if (!t || bee_gguf_find_tensor(g, t->name) != t) abort();
    if (t->n_dims < 1 || t->n_dims > BEE_GGUF_MAX_DIMS || t->nbytes == 0) abort();
    for (int j = 0; j < BEE_GGUF_MAX_DIMS; j++) n *= t->ne[j];
    if (n != t->n_elements || t->offset % bee_gguf_alignment(g) != 0) abort();
    touch(t->name, strlen(t->name) + 1);
    touch(t->data, t->nbytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    bee_gguf *g;
    if (bee_gguf_open_buffer(data, size, "fuzz.gguf", &g)) return 0;
    if (bee_gguf_version(g) != 3 || bee_gguf_file_size(g) != size) abort();
    for (size_t i = 0; i < bee_gguf_n_kv(g); i++) touch_kv(g, i);
    for (size_t i = 0; i < bee_gguf_n_tensors(g); i++) touch_tensor(g, i);
    if (bee_gguf_kv_key(g, bee_gguf_n_kv(g)) || bee_gguf_tensor_at(g, bee_gguf_n_tensors(g))) abort();
    bee_gguf_free(g);
    return 0;
}
