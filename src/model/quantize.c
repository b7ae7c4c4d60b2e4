#include "model/quantize.h"

#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "model/arch.h"
#include "util/error.h"
#include "util/types.h"

uint32_t bee_quantize_default_embd(uint32_t type) {
    return (type == BEE_TYPE_Q4_0 || type == BEE_TYPE_Q4_1) ? BEE_TYPE_Q8_0 : type;
}

void *bee_tensor_convert(const void *src, uint32_t from, uint32_t to, uint64_t n, size_t row_len) {
    size_t in_row = bee_type_nbytes(from, row_len), out_row = bee_type_nbytes(to, row_len);
    if (!in_row || !out_row || n % row_len) return NULL;
    uint8_t *dst = malloc(bee_type_nbytes(to, n) + 1);
    float *tmp = malloc(row_len * sizeof *tmp);
    if (!dst || !tmp) {
        free(dst), free(tmp);
        return NULL;
    }
    for (uint64_t r = 0; r < n / row_len; r++) {
        bee_dequantize_row(from, (const uint8_t *)src + r * in_row, tmp, row_len);
        bee_quantize_row(to, tmp, dst + r * out_row, row_len);
    }
    free(tmp);
    return dst;
}

/* 2-D weight matrices are converted; 1-D tensors (norms) and the bias table keep their type. */
static int target_type(const bee_gguf_tensor *t, const bee_quantize_opts *o, uint32_t *type) {
    if (t->n_dims != 2 || strcmp(t->name, BEE_T_POS_BIAS) == 0) {
        *type = t->type;
        return 0;
    }
    *type = strcmp(t->name, BEE_T_TOK_EMBD) == 0
                ? (o->embd_type >= 0 ? (uint32_t)o->embd_type : bee_quantize_default_embd(o->type))
                : o->type;
    if (t->ne[0] % bee_type_block(*type))
        return bee_fail("tensor '%s': rows of %llu elements are not a multiple of the %s block (%llu)", t->name,
                        (unsigned long long)t->ne[0], bee_type_name(*type), (unsigned long long)bee_type_block(*type));
    return 0;
}

int bee_model_quantize(const char *in, const char *out, const bee_quantize_opts *o, FILE *log) {
    bee_gguf *g;
    if (bee_gguf_open(in, &g)) return -1;
    bee_gguf_writer *w = bee_gguf_writer_init();
    size_t nt = bee_gguf_n_tensors(g);
    void **owned = calloc(nt + 1, sizeof *owned);
    int rc = w && owned ? 0 : bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && i < bee_gguf_n_kv(g); i++) rc = bee_gguf_writer_copy_kv(w, g, i);
    uint64_t before = 0, after = 0;
    for (size_t i = 0; rc == 0 && i < nt; i++) {
        const bee_gguf_tensor *t = bee_gguf_tensor_at(g, i);
        uint32_t type;
        if ((rc = target_type(t, o, &type)) != 0) break;
        const void *data = t->data;
        if (type != t->type && !(data = owned[i] = bee_tensor_convert(t->data, t->type, type, t->n_elements, t->ne[0])))
            rc = bee_fail("tensor '%s': cannot convert %s to %s", t->name, bee_type_name(t->type), bee_type_name(type));
        if (rc == 0) rc = bee_gguf_add_tensor(w, t->name, type, t->n_dims, t->ne, data, bee_type_nbytes(type, t->n_elements));
        before += t->nbytes;
        after += bee_type_nbytes(type, t->n_elements);
    }
    if (rc == 0) rc = bee_gguf_writer_write(w, out);
    if (rc == 0 && log)
        fprintf(log, "wrote %s: %s weights, %.2f MiB -> %.2f MiB\n", out, bee_type_name(o->type),
                (double)before / (1 << 20), (double)after / (1 << 20));
    for (size_t i = 0; owned && i < nt; i++) free(owned[i]);
    free(owned);
    bee_gguf_writer_free(w);
    bee_gguf_free(g);
    if (rc) bee_fail_prefix("%s: ", in);
    return rc;
}
