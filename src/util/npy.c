#include "util/npy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"

static int dtype_of(const char *descr, bee_npy_dtype *dt, size_t *size) {
    static const struct { const char *name; bee_npy_dtype dt; size_t size; } known[] = {
        {"<f4", BEE_NPY_F4, 4}, {"<f8", BEE_NPY_F8, 8}, {"|i1", BEE_NPY_I1, 1}, {"|u1", BEE_NPY_U1, 1},
        {"<i4", BEE_NPY_I4, 4}, {"<i8", BEE_NPY_I8, 8}, {"|b1", BEE_NPY_B1, 1},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(descr, known[i].name) == 0) {
            *dt = known[i].dt;
            *size = known[i].size;
            return 0;
        }
    }
    return -1;
}

static int parse_header(const char *path, const char *h, bee_npy *a, size_t *esize) {
    const char *d = strstr(h, "'descr':");
    const char *f = strstr(h, "'fortran_order':");
    const char *s = strstr(h, "'shape':");
    if (!d || !f || !s) return bee_fail("%s: npy header lacks descr/fortran_order/shape", path);
    char descr[8] = {0};
    if (sscanf(d, "'descr': '%7[^']'", descr) != 1 || dtype_of(descr, &a->dtype, esize))
        return bee_fail("%s: unsupported npy dtype '%s'", path, descr);
    if (strncmp(f, "'fortran_order': False", 22) != 0) return bee_fail("%s: fortran-order npy not supported", path);
    const char *p = strchr(s, '(');
    if (!p) return bee_fail("%s: bad npy shape", path);
    p++;
    a->ndim = 0;
    a->count = 1;
    while (*p && *p != ')') {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        if (a->ndim == 8 || v < 0) return bee_fail("%s: bad npy shape", path);
        a->shape[a->ndim++] = v;
        a->count *= (size_t)v;
        p = end;
    }
    return 0;
}

int bee_npy_read(const char *path, bee_npy *a) {
    memset(a, 0, sizeof *a);
    char *buf;
    size_t len;
    if (bee_read_file(path, &buf, &len)) return -1;
    int rc = -1;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        bee_fail("%s: not a .npy file", path);
        goto done;
    }
    size_t hlen, hoff;
    if (buf[6] == 1) {
        hlen = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8;
        hoff = 10;
    } else {
        if (len < 12) goto trunc;
        hlen = (uint8_t)buf[8] | (size_t)(uint8_t)buf[9] << 8 | (size_t)(uint8_t)buf[10] << 16 |
               (size_t)(uint8_t)buf[11] << 24;
        hoff = 12;
    }
    if (hoff + hlen > len) goto trunc;
    char *hdr = strndup(buf + hoff, hlen);
    size_t esize = 0;
    int hr = hdr ? parse_header(path, hdr, a, &esize) : bee_fail("out of memory");
    free(hdr);
    if (hr) goto done;
    if (len - hoff - hlen < a->count * esize) goto trunc;
    a->data = malloc(a->count * esize + 1);
    if (!a->data) {
        bee_fail("%s: out of memory", path);
        goto done;
    }
    memcpy(a->data, buf + hoff + hlen, a->count * esize);
    rc = 0;
    goto done;
trunc:
    bee_fail("%s: truncated .npy file", path);
done:
    free(buf);
    return rc;
}

void bee_npy_free(bee_npy *a) {
    free(a->data);
    a->data = NULL;
}

double bee_npy_get_f(const bee_npy *a, size_t i) {
    switch (a->dtype) {
    case BEE_NPY_F4: return ((const float *)a->data)[i];
    case BEE_NPY_F8: return ((const double *)a->data)[i];
    default: return (double)bee_npy_get_i(a, i);
    }
}

int64_t bee_npy_get_i(const bee_npy *a, size_t i) {
    switch (a->dtype) {
    case BEE_NPY_I1: return ((const int8_t *)a->data)[i];
    case BEE_NPY_U1:
    case BEE_NPY_B1: return ((const uint8_t *)a->data)[i];
    case BEE_NPY_I4: return ((const int32_t *)a->data)[i];
    case BEE_NPY_I8: return ((const int64_t *)a->data)[i];
    default: return (int64_t)bee_npy_get_f(a, i);
    }
}

int bee_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char shp[256] = "", hdr[512];
    size_t count = 1, n = 0;
    for (int i = 0; i < ndim; i++) {
        n += (size_t)snprintf(shp + n, sizeof shp - n, "%lld,%s", (long long)shape[i],
                              (ndim > 1 && i + 1 < ndim) ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1) shp[n - 1] = 0; /* drop trailing comma */
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shp);
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)hl + pad + 1;
    memset(hdr + hl, ' ', pad);
    hdr[hl + pad] = '\n';
    uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    bee_afile *f = bee_afile_open(path);
    if (!f) return -1;
    if (bee_afile_write(f, pre, 10) || bee_afile_write(f, hdr, hlen) ||
        bee_afile_write(f, data, count * sizeof(float))) {
        bee_afile_abort(f);
        return -1;
    }
    return bee_afile_commit(f);
}
