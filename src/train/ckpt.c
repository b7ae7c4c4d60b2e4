/* Training checkpoints: a small header, then weights and both AdamW moments
 * as raw little-endian fp32 in the model's storage order. */
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "train/train.h"
#include "util/error.h"
#include "util/file.h"

#define CKPT_MAGIC "BEETRN01"
#define CKPT_MAGIC_LORA "BEELRA01" /* adapter + its moments (the base is frozen) */

/* What the optimizer trains: every weight, or only the LoRA adapter. */
static float *trainable(const bee_train_model *t, size_t *n, size_t *n_tensors, const char **magic) {
    if (t->lora) {
        *n = t->lora->n, *n_tensors = 0, *magic = CKPT_MAGIC_LORA;
        return t->lora->mem;
    }
    *n = t->n_params, *n_tensors = t->n_tensors, *magic = CKPT_MAGIC;
    return t->w.mem;
}

typedef struct {
    char magic[8];
    uint64_t n_params, n_tensors;
    bee_train_state s;
} ckpt_header;

int bee_train_ckpt_save(const char *path, const bee_train_model *t, const bee_adamw *o, const bee_train_state *s) {
    ckpt_header h;
    memset(&h, 0, sizeof h);
    size_t n, nt;
    const char *magic;
    const float *w = trainable(t, &n, &nt, &magic);
    memcpy(h.magic, magic, 8);
    h.n_params = n, h.n_tensors = nt, h.s = *s;
    h.s.step = o->step;
    if (bee_mkdir_parent(path)) return -1;
    bee_afile *f = bee_afile_open(path);
    if (!f) return bee_fail_prefix("%s: ", path);
    size_t nb = n * sizeof(float);
    if (bee_afile_write(f, &h, sizeof h) || bee_afile_write(f, w, nb) || bee_afile_write(f, o->m.mem, nb) ||
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
    size_t n, nt;
    const char *magic;
    float *w = trainable(t, &n, &nt, &magic);
    size_t nb = n * sizeof(float);
    int rc = 0;
    if (m.size < sizeof h || (memcmp(m.data, CKPT_MAGIC, 8) != 0 && memcmp(m.data, CKPT_MAGIC_LORA, 8) != 0))
        rc = bee_fail("%s: not a bee training checkpoint", path);
    else if (memcmp(m.data, magic, 8) != 0)
        rc = bee_fail("%s: checkpoint of a %s run, this run %s", path, t->lora ? "full" : "LoRA",
                      t->lora ? "trains a LoRA adapter" : "trains every weight");
    if (rc == 0) {
        memcpy(&h, m.data, sizeof h);
        if (h.n_params != n || h.n_tensors != nt)
            rc = bee_fail("%s: checkpoint holds %llu parameters in %llu tensors, the model %zu in %zu", path,
                          (unsigned long long)h.n_params, (unsigned long long)h.n_tensors, n, nt);
        else if (m.size != sizeof h + 3 * nb)
            rc = bee_fail("%s: truncated checkpoint (%zu bytes, expected %zu)", path, m.size, sizeof h + 3 * nb);
    }
    if (rc == 0) {
        const uint8_t *p = m.data + sizeof h;
        memcpy(w, p, nb), memcpy(o->m.mem, p + nb, nb), memcpy(o->v.mem, p + 2 * nb, nb);
        *s = h.s;
        o->step = h.s.step;
    }
    bee_mmap_close(&m);
    return rc;
}
