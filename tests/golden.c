#include "golden.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/convert.h"
#include "testutil.h"
#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

void golden_write_tiny(const char *path, const uint8_t *mask, int inv_freq_f16) {
    bee_hparams hp;
    uint8_t *cfg_mask = NULL;
    if (bee_config_load(tu_shared("cpmbee/golden/weights_tiny/config.json"), &hp, &cfg_mask))
        fail_msg("config: %s", bee_error_message());
    free(cfg_mask);
    hp.inv_freq_f16 = inv_freq_f16;
    json_error_t err;
    json_t *man = json_load_file(tu_shared("cpmbee/golden/weights_tiny/manifest.json"), 0, &err);
    assert_non_null(man);
    bee_mmap w;
    if (bee_mmap_open(tu_shared("cpmbee/golden/weights_tiny/weights.bin"), &w)) fail_msg("%s", bee_error_message());
    size_t n = json_array_size(man);
    bee_model_tensor *t = calloc(n, sizeof *t);
    char (*names)[96] = calloc(n, sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(man, i);
        const char *key = json_string_value(json_object_get(e, "name"));
        json_t *shape = json_object_get(e, "shape");
        int layer = -1;
        sscanf(key, "encoder.layers.%d.", &layer);
        int att = strstr(key, ".self_att.") != NULL;
        if (mask && layer >= 0 && mask[2 * layer + (att ? 0 : 1)]) continue; /* pruned: leave it out */
        assert_int_equal(bee_convert_tensor_name(key, names[k], sizeof names[k]), 0);
        size_t nd = json_array_size(shape);
        uint64_t rows = nd == 2 ? (uint64_t)json_integer_value(json_array_get(shape, 0)) : 1;
        uint64_t cols = (uint64_t)json_integer_value(json_array_get(shape, nd - 1));
        t[k] = (bee_model_tensor){names[k], BEE_TYPE_F32, (uint32_t)nd, {cols, rows},
                                  w.data + json_integer_value(json_object_get(e, "offset_bytes")),
                                  (size_t)json_integer_value(json_object_get(e, "nbytes"))};
        k++;
    }
    bee_tokenizer *tok;
    if (bee_tokenizer_load_txt(tu_shared("cpmbee/vocab/bee.txt"), &tok)) fail_msg("%s", bee_error_message());
    uint32_t nv = bee_tokenizer_n_vocab(tok);
    const char **toks = malloc(nv * sizeof *toks);
    uint64_t *lens = malloc(nv * sizeof *lens);
    for (uint32_t i = 0; i < nv; i++) {
        size_t len;
        toks[i] = bee_tokenizer_text(tok, (int32_t)i, &len);
        lens[i] = len;
    }
    if (bee_model_write(path, "golden-tiny", &hp, mask, toks, lens, t, k)) fail_msg("write: %s", bee_error_message());
    free(toks);
    free(lens);
    bee_tokenizer_free(tok);
    free(t);
    free(names);
    bee_mmap_close(&w);
    json_decref(man);
}

bee_model *golden_load_tiny(void) {
    if (!bee_file_present_golden()) return NULL;
    golden_write_tiny(tu_tmp("tiny.gguf"), NULL, 0);
    bee_model *m;
    if (bee_model_load(tu_tmp("tiny.gguf"), &m)) fail_msg("%s", bee_error_message());
    return m;
}

bee_tokenizer *golden_builtin_tokenizer(void) {
    char **toks;
    uint32_t n;
    assert_int_equal(bee_vocab_builtin(&toks, &n), 0);
    uint64_t *lens = malloc(n * sizeof *lens);
    for (uint32_t i = 0; i < n; i++) lens[i] = strlen(toks[i]);
    bee_tokenizer *t;
    assert_int_equal(bee_tokenizer_init(&t, (const char *const *)toks, lens, n), 0);
    for (uint32_t i = 0; i < n; i++) free(toks[i]);
    free(toks);
    free(lens);
    return t;
}

void golden_npy(const char *example, const char *name, bee_npy *out) {
    char rel[512];
    snprintf(rel, sizeof rel, "cpmbee/golden/%s/%s.npy", example, name);
    if (bee_npy_read(tu_shared(rel), out)) fail_msg("%s", bee_error_message());
}

json_t *golden_record(const char *example) {
    char rel[512];
    snprintf(rel, sizeof rel, "cpmbee/golden/%s/record.json", example);
    json_error_t err;
    json_t *r = json_load_file(tu_shared(rel), 0, &err);
    if (!r) fail_msg("%s: %s", rel, err.text);
    return r;
}

double golden_max_diff(const float *a, size_t n, const bee_npy *g) {
    if (g->count != n) fail_msg("size %zu, golden has %zu", n, g->count);
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = a[i] - bee_npy_get_f(g, i);
        if (d < 0) d = -d;
        if (!(d <= mx)) mx = d; /* NaN propagates as a failure */
    }
    return mx;
}

bee_model *golden_tiny;

int golden_tiny_setup(void **state) {
    (void)state;
    golden_tiny = golden_load_tiny();
    return 0;
}

int golden_tiny_teardown(void **state) {
    (void)state;
    bee_model_free(golden_tiny);
    golden_tiny = NULL;
    return 0;
}
