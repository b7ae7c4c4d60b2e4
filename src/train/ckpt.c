/* Training checkpoints: a small header, then weights and both AdamW moments
 * as raw little-endian fp32 in the model's storage order. */
#include <stdlib.h>
#include <string.h>

#include "train/train.h"
#include "util/error.h"
#include "util/file.h"

#define CKPT_MAGIC "BEETRN01"

typedef struct {
    char magic[8];
    uint64_t n_params, n_tensors;
    bee_train_state s;
} ckpt_header;

int bee_train_ckpt_save(const char *path, const bee_train_model *t, const bee_adamw *o, const bee_train_state *s) {
    ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.n_params = t->n_params, h.n_tensors = t->n_tensors, h.s = *s;
    h.s.step = o->step;
    if (bee_mkdir_parent(path)) return -1;
    bee_afile *f = bee_afile_open(path);
    if (!f) return bee_fail_prefix("%s: ", path);
    size_t nb = t->n_params * sizeof(float);
    if (bee_afile_write(f, &h, sizeof h) || bee_afile_write(f, t->w.mem, nb) || bee_afile_write(f, o->m.mem, nb) ||
        bee_afile_write(f, o->v.mem, nb)) {
        bee_afile_abort(f);
        return bee_fail_prefix("%s: ", path);
    }
    return bee_afile_commit(f) ? bee_fail_prefix("%s: ", path) : 0;
}

int bee_train_ckpt_load(const char *path, bee_train_model *t, bee_adamw *o, bee_train_state *s) {
    bee_mmap m;
    if (bee_mmap_open(path, &m)) return -1;
    ckpt_header h;
    size_t nb = t->n_params * sizeof(float);
    int rc = 0;
    if (m.size < sizeof h || memcmp(m.data, CKPT_MAGIC, 8) != 0) rc = bee_fail("%s: not a bee training checkpoint", path);
    if (rc == 0) {
        memcpy(&h, m.data, sizeof h);
        if (h.n_params != t->n_params || h.n_tensors != t->n_tensors)
            rc = bee_fail("%s: checkpoint holds %llu parameters in %llu tensors, the model %zu in %zu", path,
                          (unsigned long long)h.n_params, (unsigned long long)h.n_tensors, t->n_params, t->n_tensors);
        else if (m.size != sizeof h + 3 * nb)
            rc = bee_fail("%s: truncated checkpoint (%zu bytes, expected %zu)", path, m.size, sizeof h + 3 * nb);
    }
    if (rc == 0) {
        const uint8_t *p = m.data + sizeof h;
        memcpy(t->w.mem, p, nb), memcpy(o->m.mem, p + nb, nb), memcpy(o->v.mem, p + 2 * nb, nb);
        *s = h.s;
        o->step = h.s.step;
    }
    bee_mmap_close(&m);
    return rc;
}
