/* Minimal NumPy .npy (format 1.0/2.0) reader and float32 writer, used for
 * golden parity tests and `bee forward` dumps. */
#ifndef BEE_UTIL_NPY_H
#define BEE_UTIL_NPY_H

#include <stddef.h>
#include <stdint.h>

typedef enum { BEE_NPY_F4, BEE_NPY_F8, BEE_NPY_I1, BEE_NPY_U1, BEE_NPY_I4, BEE_NPY_I8, BEE_NPY_B1 } bee_npy_dtype;

typedef struct {
    bee_npy_dtype dtype;
    int ndim;
    int64_t shape[8];
    size_t count; /* product of shape */
    void *data;   /* owned, little-endian, C order */
} bee_npy;

int bee_npy_read(const char *path, bee_npy *out);
void bee_npy_free(bee_npy *a);
/* Element i converted to double / int64, whatever the dtype. */
double bee_npy_get_f(const bee_npy *a, size_t i);
int64_t bee_npy_get_i(const bee_npy *a, size_t i);
/* Writes a float32 array atomically. */
int bee_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape);

#endif
