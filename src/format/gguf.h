/* GGUF v3 reader (mmap, zero-copy, fully validated) and writer (atomic).
 * Layout per the published GGUF spec: header, key/value metadata, tensor
 * infos, padding to general.alignment, tensor data. */
#ifndef BEE_FORMAT_GGUF_H
#define BEE_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum bee_gguf_vtype {
    BEE_GGUF_UINT8 = 0,
    BEE_GGUF_INT8 = 1,
    BEE_GGUF_UINT16 = 2,
    BEE_GGUF_INT16 = 3,
    BEE_GGUF_UINT32 = 4,
    BEE_GGUF_INT32 = 5,
    BEE_GGUF_FLOAT32 = 6,
    BEE_GGUF_BOOL = 7,
    BEE_GGUF_STRING = 8,
    BEE_GGUF_ARRAY = 9,
    BEE_GGUF_UINT64 = 10,
    BEE_GGUF_INT64 = 11,
    BEE_GGUF_FLOAT64 = 12,
};

#define BEE_GGUF_MAX_DIMS 4
#define BEE_GGUF_DEFAULT_ALIGNMENT 32

typedef struct {
    const char *name;              /* NUL-terminated copy */
    uint32_t type;                 /* enum bee_type */
    uint32_t n_dims;
    uint64_t ne[BEE_GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying dimension; unused = 1 */
    uint64_t n_elements;
    const void *data;              /* points into the mapping */
    size_t nbytes;
    uint64_t offset;               /* relative to the data section */
} bee_gguf_tensor;

typedef struct bee_gguf bee_gguf;

/* ---------------------------------------------------------------- reader */
/* Maps and validates the whole file: magic, version 3, every count, string
 * length, value type, array size, tensor dims/type/offset/alignment/overlap
 * and bounds. Errors name the file, the byte offset and the field. */
int bee_gguf_open(const char *path, bee_gguf **out);
/* Same, over a caller-owned buffer (used by the fuzzer); name is for messages. */
int bee_gguf_open_buffer(const void *data, size_t size, const char *name, bee_gguf **out);
void bee_gguf_free(bee_gguf *g);

uint32_t bee_gguf_version(const bee_gguf *g);
uint32_t bee_gguf_alignment(const bee_gguf *g);
size_t bee_gguf_file_size(const bee_gguf *g);

size_t bee_gguf_n_kv(const bee_gguf *g);
const char *bee_gguf_kv_key(const bee_gguf *g, size_t i);
uint32_t bee_gguf_kv_type(const bee_gguf *g, size_t i);
/* Index of key, or -1. */
long bee_gguf_find_key(const bee_gguf *g, const char *key);

/* Typed getters. Integer getters accept any integer value type whose value fits;
 * they fail (with a message naming the key) when the key is missing or of the
 * wrong type. */
int bee_gguf_get_u32(const bee_gguf *g, const char *key, uint32_t *out);
int bee_gguf_get_u64(const bee_gguf *g, const char *key, uint64_t *out);
int bee_gguf_get_f32(const bee_gguf *g, const char *key, float *out); /* FLOAT32 or FLOAT64 */
/* Any integer value type whose value fits in int64. */
int bee_gguf_get_i64(const bee_gguf *g, const char *key, int64_t *out);
/* FLOAT32 or FLOAT64, without narrowing. */
int bee_gguf_get_f64(const bee_gguf *g, const char *key, double *out);
int bee_gguf_get_bool(const bee_gguf *g, const char *key, int *out);
/* String value (not NUL-terminated in the file; *len gives its length). */
int bee_gguf_get_str(const bee_gguf *g, const char *key, const char **s, uint64_t *len);
/* Array metadata: element type and count. */
int bee_gguf_get_arr(const bee_gguf *g, const char *key, uint32_t *elem_type, uint64_t *count);
/* Pointer to the raw elements of a fixed-size-element array (not STRING). */
int bee_gguf_get_arr_data(const bee_gguf *g, const char *key, const void **data);
/* Element i of a string array. */
int bee_gguf_get_arr_str(const bee_gguf *g, const char *key, uint64_t i, const char **s, uint64_t *len);

size_t bee_gguf_n_tensors(const bee_gguf *g);
const bee_gguf_tensor *bee_gguf_tensor_at(const bee_gguf *g, size_t i);
const bee_gguf_tensor *bee_gguf_find_tensor(const bee_gguf *g, const char *name);

/* ---------------------------------------------------------------- writer */
typedef struct bee_gguf_writer bee_gguf_writer;

bee_gguf_writer *bee_gguf_writer_init(void);
void bee_gguf_writer_free(bee_gguf_writer *w);
/* Setting a key twice replaces the earlier value (keeps its position). */
int bee_gguf_set_u32(bee_gguf_writer *w, const char *key, uint32_t v);
int bee_gguf_set_i32(bee_gguf_writer *w, const char *key, int32_t v);
int bee_gguf_set_u64(bee_gguf_writer *w, const char *key, uint64_t v);
int bee_gguf_set_f32(bee_gguf_writer *w, const char *key, float v);
int bee_gguf_set_bool(bee_gguf_writer *w, const char *key, int v);
int bee_gguf_set_str(bee_gguf_writer *w, const char *key, const char *v);
/* Scalar of any fixed-size value type (UINT8..FLOAT64, BOOL); v points to a
 * host value of the matching C type (uint8_t, int16_t, float, double, ...). */
int bee_gguf_set_scalar(bee_gguf_writer *w, const char *key, uint32_t type, const void *v);
/* Array of fixed-size elements (copied). */
int bee_gguf_set_arr(bee_gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
/* Array of strings with explicit lengths (copied; may contain any bytes).
 * lens may be NULL: the strings are then NUL-terminated. */
int bee_gguf_set_arr_str(bee_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                         uint64_t n);
/* Adds a tensor; data is NOT copied and must stay valid until write. ne as in
 * bee_gguf_tensor (ne[0] fastest). */
int bee_gguf_add_tensor(bee_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                        const void *data, size_t nbytes);
/* Copies key/value i of a reader into the writer (same key, type and value). */
int bee_gguf_writer_copy_kv(bee_gguf_writer *w, const bee_gguf *g, size_t i);
/* Writes the file atomically (temp + fsync + rename). */
int bee_gguf_writer_write(bee_gguf_writer *w, const char *path);

#endif
