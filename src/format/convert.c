#include "format/convert.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "format/ckpt.h"
#include "format/gguf.h"
#include "model/arch.h"
#include "model/quantize.h"
#include "util/error.h"
#include "util/file.h"
#include "util/types.h"

/* ================================================================ config */

/* First present integer field among the aliases. */
static int cfg_u32(json_t *c, const char *path, const char *a, const char *b, int required, uint32_t dflt,
                   uint32_t *out) {
    json_t *v = json_object_get(c, a);
    if (!v && b) v = json_object_get(c, b);
    if (!v) {
        if (required) return bee_fail("%s: missing field '%s'%s%s", path, a, b ? " (or '" : "", b ? b : "");
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
        return bee_fail("%s: field '%s' must be a positive integer", path, json_object_get(c, a) ? a : b);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

static int cfg_mask(json_t *c, const char *path, uint32_t n_layers, uint8_t **mask) {
    *mask = NULL;
    json_t *m = json_object_get(c, "mask_modules");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_array(m) || json_array_size(m) != n_layers)
        return bee_fail("%s: mask_modules must be a list of %u [mask_att, mask_ffn] pairs", path, n_layers);
    uint8_t *v = calloc(2 * (size_t)n_layers, 1);
    if (!v) return bee_fail("out of memory");
    for (uint32_t i = 0; i < n_layers; i++) {
        json_t *pair = json_array_get(m, i);
        if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_boolean(json_array_get(pair, 0)) ||
            !json_is_boolean(json_array_get(pair, 1))) {
            free(v);
            return bee_fail("%s: mask_modules[%u] must be a pair of booleans", path, i);
        }
        v[2 * i] = json_is_true(json_array_get(pair, 0));
        v[2 * i + 1] = json_is_true(json_array_get(pair, 1));
    }
    *mask = v;
    return 0;
}

int bee_config_load(const char *path, bee_hparams *hp, uint8_t **mask) {
    json_error_t err;
    json_t *c = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!c) return bee_fail("%s:%d:%d: invalid JSON: %s", path, err.line, err.column, err.text);
    memset(hp, 0, sizeof *hp);
    int rc = json_is_object(c) ? 0 : bee_fail("%s: config must be a JSON object", path);
    if (rc == 0)
        rc = cfg_u32(c, path, "vocab_size", NULL, 1, 0, &hp->n_vocab) ||
             cfg_u32(c, path, "dim_model", "hidden_size", 1, 0, &hp->dim) ||
             cfg_u32(c, path, "num_heads", "num_attention_heads", 1, 0, &hp->n_heads) ||
             cfg_u32(c, path, "dim_head", NULL, 1, 0, &hp->dim_head) ||
             cfg_u32(c, path, "dim_ff", "intermediate_size", 1, 0, &hp->dim_ff) ||
             cfg_u32(c, path, "num_layers", "num_hidden_layers", 1, 0, &hp->n_layers) ||
             cfg_u32(c, path, "position_bias_num_buckets", NULL, 0, 256, &hp->n_buckets) ||
             cfg_u32(c, path, "position_bias_num_segment_buckets", NULL, 0, 256, &hp->n_seg_buckets) ||
             cfg_u32(c, path, "position_bias_max_distance", NULL, 0, 2048, &hp->max_distance);
    if (rc == 0) {
        json_t *eps = json_object_get(c, "eps");
        if (eps && !json_is_number(eps)) rc = bee_fail("%s: field 'eps' must be a number", path);
        hp->eps = eps ? (float)json_number_value(eps) : 1e-6f;
        json_t *half = json_object_get(c, "half");
        if (half && !json_is_boolean(half)) rc = bee_fail("%s: field 'half' must be true or false", path);
        hp->half = half ? json_is_true(half) : 1;
        hp->inv_freq_f16 = hp->half;
        json_t *ds = json_object_get(c, "distance_scale");
        hp->rope_scale = json_is_number(ds) ? (float)json_number_value(ds) : 16.0f;
        hp->rope_base = 10000.0f;
        hp->residual_scale = 1.05f;
    }
    if (rc == 0 && (rc = bee_hparams_check(hp)) != 0) bee_fail_prefix("%s: ", path);
    if (rc == 0) rc = cfg_mask(c, path, hp->n_layers, mask);
    json_decref(c);
    return rc;
}

/* ================================================================ writing */

int bee_model_write(const char *path, const char *name, const bee_hparams *hp, const uint8_t *mask,
                    const char *const *tokens, const uint64_t *token_lens, const bee_model_tensor *t, size_t n_t) {
    bee_gguf_writer *w = bee_gguf_writer_init();
    if (!w) return bee_fail("out of memory");
    int rc = bee_gguf_set_str(w, BEE_KEY_ARCH, BEE_ARCH) || bee_gguf_set_str(w, BEE_KEY_NAME, name) ||
             bee_gguf_set_u32(w, BEE_KEY_VOCAB_SIZE, hp->n_vocab) || bee_gguf_set_u32(w, BEE_KEY_DIM, hp->dim) ||
             bee_gguf_set_u32(w, BEE_KEY_LAYERS, hp->n_layers) || bee_gguf_set_u32(w, BEE_KEY_FF, hp->dim_ff) ||
             bee_gguf_set_u32(w, BEE_KEY_HEADS, hp->n_heads) || bee_gguf_set_u32(w, BEE_KEY_DIM_HEAD, hp->dim_head) ||
             bee_gguf_set_f32(w, BEE_KEY_EPS, hp->eps) || bee_gguf_set_u32(w, BEE_KEY_NB, hp->n_buckets) ||
             bee_gguf_set_u32(w, BEE_KEY_NSB, hp->n_seg_buckets) || bee_gguf_set_u32(w, BEE_KEY_MAXD, hp->max_distance) ||
             bee_gguf_set_f32(w, BEE_KEY_ROPE_BASE, hp->rope_base) ||
             bee_gguf_set_f32(w, BEE_KEY_ROPE_SCALE, hp->rope_scale) ||
             bee_gguf_set_f32(w, BEE_KEY_RESIDUAL, hp->residual_scale) ||
             bee_gguf_set_bool(w, BEE_KEY_ROPE_F16, hp->inv_freq_f16) || bee_gguf_set_bool(w, BEE_KEY_HALF, hp->half) ||
             bee_gguf_set_str(w, BEE_KEY_TOK_MODEL, BEE_ARCH) ||
             bee_gguf_set_arr_str(w, BEE_KEY_TOKENS, tokens, token_lens, hp->n_vocab);
    if (rc == 0 && mask) rc = bee_gguf_set_arr(w, BEE_KEY_MASK, BEE_GGUF_BOOL, mask, 2ull * hp->n_layers);
    for (size_t i = 0; rc == 0 && i < n_t; i++)
        rc = bee_gguf_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne, t[i].data, t[i].nbytes);
    if (rc == 0) rc = bee_gguf_writer_write(w, path);
    bee_gguf_writer_free(w);
    return rc;
}

/* ================================================================ tensors */

typedef struct {
    const char *upstream; /* printf pattern of the upstream key */
    const char *gguf;     /* printf pattern of the GGUF name */
    int rows, cols;       /* symbolic dims, see dim_of */
    int part;             /* 0 = global, 1 = attention, 2 = ffn */
} tensor_rule;

enum { D_ONE, D_VOCAB, D_DIM, D_ATT, D_FF, D_BUCKETS, D_HEADS };

static const tensor_rule k_rules[] = {
    {"input_embedding.weight", BEE_T_TOK_EMBD, D_VOCAB, D_DIM, 0},
    {"position_bias.relative_attention_bias", BEE_T_POS_BIAS, D_BUCKETS, D_HEADS, 0},
    {"encoder.output_layernorm.weight", BEE_T_OUT_NORM, D_ONE, D_DIM, 0},
    {"encoder.layers.%d.self_att.layernorm_before_attention.weight", BEE_T_ATTN_NORM, D_ONE, D_DIM, 1},
    {"encoder.layers.%d.self_att.self_attention.project_q.weight", BEE_T_ATTN_Q, D_ATT, D_DIM, 1},
    {"encoder.layers.%d.self_att.self_attention.project_k.weight", BEE_T_ATTN_K, D_ATT, D_DIM, 1},
    {"encoder.layers.%d.self_att.self_attention.project_v.weight", BEE_T_ATTN_V, D_ATT, D_DIM, 1},
    {"encoder.layers.%d.self_att.self_attention.attention_out.weight", BEE_T_ATTN_OUT, D_DIM, D_ATT, 1},
    {"encoder.layers.%d.ffn.layernorm_before_ffn.weight", BEE_T_FFN_NORM, D_ONE, D_DIM, 2},
    {"encoder.layers.%d.ffn.ffn.w_in.w_0.weight", BEE_T_FFN_GATE, D_FF, D_DIM, 2},
    {"encoder.layers.%d.ffn.ffn.w_in.w_1.weight", BEE_T_FFN_UP, D_FF, D_DIM, 2},
    {"encoder.layers.%d.ffn.ffn.w_out.weight", BEE_T_FFN_DOWN, D_DIM, D_FF, 2},
};

static uint64_t dim_of(const bee_hparams *hp, int sym) {
    switch (sym) {
    case D_VOCAB: return hp->n_vocab;
    case D_DIM: return hp->dim;
    case D_ATT: return (uint64_t)hp->n_heads * hp->dim_head;
    case D_FF: return hp->dim_ff;
    case D_BUCKETS: return (uint64_t)hp->n_buckets + hp->n_seg_buckets;
    case D_HEADS: return hp->n_heads;
    default: return 1;
    }
}

int bee_convert_tensor_name(const char *key, char *out, size_t n) {
    if (strncmp(key, "cpmbee.", 7) == 0) key += 7;
    for (size_t r = 0; r < sizeof k_rules / sizeof k_rules[0]; r++) {
        const tensor_rule *rule = &k_rules[r];
        if (!rule->part) {
            if (strcmp(key, rule->upstream) != 0) continue;
            snprintf(out, n, "%s", rule->gguf);
            return 0;
        }
        int layer, used = 0;
        char want[256];
        if (sscanf(key, "encoder.layers.%d.%n", &layer, &used) != 1 || layer < 0) continue;
        snprintf(want, sizeof want, rule->upstream, layer);
        if (strcmp(key, want) != 0) continue;
        snprintf(out, n, rule->gguf, layer);
        return 0;
    }
    return -1;
}

typedef struct {
    bee_ckpt **files;
    size_t n_files;
} ckpt_set;

static const bee_ckpt_tensor *ckpt_set_find(const ckpt_set *s, const char *key) {
    char pref[512];
    snprintf(pref, sizeof pref, "cpmbee.%s", key);
    for (size_t i = 0; i < s->n_files; i++) {
        const bee_ckpt_tensor *t = bee_ckpt_find(s->files[i], key);
        if (!t) t = bee_ckpt_find(s->files[i], pref);
        if (t) return t;
    }
    return NULL;
}

static int check_shape(const bee_ckpt_tensor *t, uint64_t rows, uint64_t cols, const char *key) {
    int ok = rows == 1 ? (t->n_dims == 1 && (uint64_t)t->shape[0] == cols)
                       : (t->n_dims == 2 && (uint64_t)t->shape[0] == rows && (uint64_t)t->shape[1] == cols);
    if (ok) return 0;
    char got[128] = "";
    size_t n = 0;
    for (int i = 0; i < t->n_dims && n < sizeof got - 24; i++)
        n += (size_t)snprintf(got + n, sizeof got - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (rows == 1) return bee_fail("tensor '%s' has shape [%s], config says [%llu]", key, got, (unsigned long long)cols);
    return bee_fail("tensor '%s' has shape [%s], config says [%llu, %llu]", key, got, (unsigned long long)rows,
                    (unsigned long long)cols);
}


typedef struct {
    bee_model_tensor *v;
    char **names;
    void **owned;
    size_t n, cap;
} tensor_list;

static int add_mapped(tensor_list *l, const bee_hparams *hp, const tensor_rule *r, int layer, const ckpt_set *cs,
                      int dtype) {
    char key[256], name[128];
    snprintf(key, sizeof key, r->upstream, layer);
    snprintf(name, sizeof name, r->gguf, layer);
    const bee_ckpt_tensor *t = ckpt_set_find(cs, key);
    if (!t) return bee_fail("checkpoint lacks tensor '%s' (also tried 'cpmbee.%s')", key, key);
    uint64_t rows = dim_of(hp, r->rows), cols = dim_of(hp, r->cols);
    if (check_shape(t, rows, cols, key)) return -1;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        bee_model_tensor *nv = realloc(l->v, l->cap * sizeof *nv);
        if (nv) l->v = nv;
        char **nn = realloc(l->names, l->cap * sizeof *nn);
        if (nn) l->names = nn;
        void **no = realloc(l->owned, l->cap * sizeof *no);
        if (no) l->owned = no;
        if (!nv || !nn || !no) return bee_fail("out of memory");
    }
    uint32_t type = dtype < 0 ? t->type : (uint32_t)dtype;
    if (bee_type_is_quant(type) && (rows == 1 || r->rows == D_BUCKETS)) type = t->type; /* norms, bias table */
    else if (bee_type_is_quant(type) && r->rows == D_VOCAB) type = bee_quantize_default_embd(type);
    if (cols % bee_type_block(type))
        return bee_fail("tensor '%s': rows of %llu are not a multiple of the %s block", key, (unsigned long long)cols,
                        bee_type_name(type));
    const void *data = t->data;
    void *owned = NULL;
    if (type != t->type && !(data = owned = bee_tensor_convert(t->data, t->type, type, rows * cols, cols)))
        return bee_fail("out of memory");
    l->names[l->n] = strdup(name);
    l->owned[l->n] = owned;
    l->v[l->n] = (bee_model_tensor){l->names[l->n], type, rows == 1 ? 1 : 2, {cols, rows}, data,
                                     bee_type_nbytes(type, rows * cols)};
    l->n++;
    return l->names[l->n - 1] ? 0 : bee_fail("out of memory");
}

static void tensor_list_free(tensor_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->names[i]), free(l->owned[i]);
    free(l->v), free(l->names), free(l->owned);
}

static int map_tensors(tensor_list *l, const bee_hparams *hp, const uint8_t *mask, const ckpt_set *cs, int dtype) {
    for (size_t r = 0; r < sizeof k_rules / sizeof k_rules[0]; r++) {
        const tensor_rule *rule = &k_rules[r];
        int layers = rule->part ? (int)hp->n_layers : 1;
        for (int i = 0; i < layers; i++) {
            if (rule->part && mask && mask[2 * i + (rule->part - 1)]) continue; /* pruned sub-block */
            if (add_mapped(l, hp, rule, i, cs, dtype)) return -1;
        }
    }
    return 0;
}

/* ================================================================ sources */

static char *path_join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
}

/* Weight files of an HF folder: a single file, or the shards of an index. */
static int folder_weights(const char *dir, char ***files, size_t *n) {
    static const char *singles[] = {"pytorch_model.bin", "model.safetensors", "pytorch_model.pt"};
    static const char *indexes[] = {"pytorch_model.bin.index.json", "model.safetensors.index.json"};
    for (size_t i = 0; i < 2; i++) {
        char *ip = path_join(dir, indexes[i]);
        if (ip && bee_file_exists(ip)) {
            json_error_t err;
            json_t *j = json_load_file(ip, 0, &err);
            json_t *map = json_object_get(j, "weight_map");
            if (!json_is_object(map)) {
                json_decref(j);
                bee_fail("%s: no weight_map object", ip);
                free(ip);
                return -1;
            }
            const char *k;
            json_t *v;
            char **fs = NULL;
            size_t nf = 0;
            json_object_foreach(map, k, v) {
                const char *f = json_string_value(v);
                int seen = !f;
                for (size_t s = 0; s < nf && !seen; s++) seen = strcmp(strrchr(fs[s], '/') + 1, f) == 0;
                if (seen) continue;
                char **nfs = realloc(fs, (nf + 1) * sizeof *nfs);
                if (!nfs) break;
                fs = nfs;
                fs[nf++] = path_join(dir, f);
            }
            json_decref(j);
            free(ip);
            *files = fs;
            *n = nf;
            return nf ? 0 : bee_fail("%s/%s lists no files", dir, indexes[i]);
        }
        free(ip);
    }
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) {
        char *p = path_join(dir, singles[i]);
        if (p && bee_file_exists(p)) {
            *files = malloc(sizeof **files);
            (*files)[0] = p;
            *n = 1;
            return 0;
        }
        free(p);
    }
    return bee_fail("%s: no pytorch_model.bin, model.safetensors or shard index found", dir);
}

typedef struct {
    char **weights;
    size_t n_weights;
    char *config, *vocab;
} sources;

static int resolve_sources(const bee_convert_opts *o, sources *s) {
    memset(s, 0, sizeof *s);
    char *dir;
    if (bee_is_dir(o->src)) {
        dir = strdup(o->src);
        if (folder_weights(o->src, &s->weights, &s->n_weights)) {
            free(dir);
            return -1;
        }
    } else {
        if (!bee_file_exists(o->src)) return bee_fail("%s: no such file or folder", o->src);
        dir = dir_of(o->src);
        s->weights = malloc(sizeof *s->weights);
        s->weights[0] = strdup(o->src);
        s->n_weights = 1;
    }
    s->config = o->config ? strdup(o->config) : path_join(dir, "config.json");
    s->vocab = o->vocab ? strdup(o->vocab) : path_join(dir, "vocab.txt");
    free(dir);
    if (!bee_file_exists(s->config))
        return bee_fail("%s: config not found (pass --config FILE: the upstream config.json)", s->config);
    if (!bee_file_exists(s->vocab))
        return bee_fail("%s: vocabulary not found (pass --vocab FILE: the upstream vocab.txt / bee.txt)", s->vocab);
    return 0;
}

static void sources_free(sources *s) {
    for (size_t i = 0; i < s->n_weights; i++) free(s->weights[i]);
    free(s->weights);
    free(s->config);
    free(s->vocab);
}

/* Vocabulary lines with the upstream renames, via the tokenizer loader. */
static int load_vocab(const char *path, uint32_t expect, bee_tokenizer **tok) {
    if (bee_tokenizer_load_txt(path, tok)) return -1;
    if (bee_tokenizer_n_vocab(*tok) != expect) {
        bee_fail("%s: vocabulary has %u tokens but the config says vocab_size %u", path, bee_tokenizer_n_vocab(*tok),
                 expect);
        bee_tokenizer_free(*tok);
        return -1;
    }
    return 0;
}

static void report_unused(const ckpt_set *cs, const tensor_list *l, FILE *log) {
    size_t unused = 0;
    for (size_t f = 0; f < cs->n_files; f++) unused += bee_ckpt_count(cs->files[f]);
    unused = unused > l->n ? unused - l->n : 0;
    if (log && unused)
        fprintf(log, "note: %zu checkpoint tensor(s) not used (lm_head, pruned sub-blocks or unknown keys)\n", unused);
}

int bee_convert(const bee_convert_opts *o, FILE *log) {
    sources s;
    bee_hparams hp;
    uint8_t *mask = NULL;
    bee_tokenizer *tok = NULL;
    ckpt_set cs = {0};
    tensor_list tl = {0};
    int rc = resolve_sources(o, &s);
    if (rc == 0) rc = bee_config_load(s.config, &hp, &mask);
    if (rc == 0) rc = load_vocab(s.vocab, hp.n_vocab, &tok);
    if (rc == 0 && !(cs.files = calloc(s.n_weights, sizeof *cs.files))) rc = bee_fail("out of memory");
    for (size_t i = 0; rc == 0 && i < s.n_weights; i++, cs.n_files++) rc = bee_ckpt_open(s.weights[i], &cs.files[i]);
    if (rc == 0 && (rc = map_tensors(&tl, &hp, mask, &cs, o->dtype)) != 0) bee_fail_prefix("%s: ", o->src);
    if (rc == 0) {
        report_unused(&cs, &tl, log);
        uint32_t n = bee_tokenizer_n_vocab(tok);
        const char **toks = malloc(n * sizeof *toks);
        uint64_t *lens = malloc(n * sizeof *lens);
        rc = toks && lens ? 0 : bee_fail("out of memory");
        for (uint32_t i = 0; rc == 0 && i < n; i++) {
            size_t len;
            toks[i] = bee_tokenizer_text(tok, (int32_t)i, &len);
            lens[i] = len;
        }
        const char *name = o->name ? o->name : o->src;
        if (rc == 0) rc = bee_model_write(o->out, name, &hp, mask, toks, lens, tl.v, tl.n);
        free(toks);
        free(lens);
    }
    if (rc == 0 && log)
        fprintf(log, "wrote %s: %zu tensors, dim %u, %u layers, vocab %u\n", o->out, tl.n, hp.dim, hp.n_layers,
                hp.n_vocab);
    tensor_list_free(&tl);
    for (size_t i = 0; i < cs.n_files; i++) bee_ckpt_free(cs.files[i]);
    free(cs.files);
    bee_tokenizer_free(tok);
    free(mask);
    sources_free(&s);
    return rc;
}
