/* The public API (include/bee.h) over the internal modules. */
#include "bee.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate/generate.h"
#include "model/model.h"
#include "tokenizer/dict.h"
#include "util/error.h"

#ifndef BEE_VERSION
#define BEE_VERSION "dev"
#endif

const char *bee_version(void) { return BEE_VERSION; }

const char *bee_last_error(void) { return bee_error_message(); }

int bee_tokenize_json(const bee_model *m, const char *text, char **json_out) {
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    if (bee_tokenizer_encode(m->tok, text, strlen(text), &ext, &ids)) return -1;
    json_t *o = json_object(), *arr = json_array(), *tab = json_object();
    for (size_t i = 0; i < ids.n; i++) json_array_append_new(arr, json_integer(ids.v[i]));
    for (size_t k = 0; k < ext.n; k++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", (size_t)m->hp.n_vocab + k);
        json_object_set_new(tab, key, json_stringn(ext.str[k], ext.len[k]));
    }
    json_object_set_new(o, "ids", arr);
    json_object_set_new(o, "ext_table", tab);
    *json_out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    bee_ivec_free(&ids);
    bee_ext_table_free(&ext);
    return *json_out ? 0 : bee_fail("out of memory");
}

void bee_generate_params_default(bee_generate_params *p) {
    memset(p, 0, sizeof *p);
    p->mode = BEE_DECODE_BEAM;
    p->beam_size = 3;
    p->max_length = 100;
    p->repetition_penalty = 1.0f;
    p->top_p = 1.0f;
}

static int run_generate(const bee_model *m, bee_gen_input *in, const bee_generate_params *p, json_t **out) {
    if (p->mode == BEE_DECODE_BEAM) {
        bee_beam_params bp = {p->beam_size, p->max_length, p->repetition_penalty, 0};
        return bee_beam_search(m, in, 1, &bp, out);
    }
    bee_sample_params sp;
    bee_sample_params_default(&sp);
    sp.max_tokens = p->max_length;
    sp.temperature = p->temperature;
    sp.top_p = p->top_p;
    sp.top_k = p->top_k;
    sp.min_p = p->min_p;
    sp.repetition_penalty = p->repetition_penalty;
    sp.seed = p->seed;
    return bee_sample_generate(m, in, &sp, out, NULL);
}

int bee_generate_json(const bee_model *m, const char *json_in, const bee_generate_params *p, char **json_out) {
    json_error_t err;
    json_t *d = json_loads(json_in, JSON_REJECT_DUPLICATES, &err);
    if (!d) return bee_fail("invalid JSON at line %d column %d: %s", err.line, err.column, err.text);
    bee_gen_input in;
    int rc = bee_gen_input_init(m->tok, d, &in);
    json_t *out = NULL;
    if (rc == 0) {
        rc = run_generate(m, &in, p, &out);
        bee_gen_input_free(&in);
    }
    if (rc == 0 && !(*json_out = json_dumps(out, JSON_COMPACT))) rc = bee_fail("out of memory");
    json_decref(out);
    json_decref(d);
    return rc;
}
