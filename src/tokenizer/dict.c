#include "tokenizer/dict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* ================================================================ segments */

typedef struct {
    const char *text;
    size_t len;
    int32_t depth, parent;
    int need_predict;
    char *field; /* path for error messages */
} segment;

typedef struct {
    segment *v;
    int32_t n, cap;
} segment_list;

static int seg_push(segment_list *l, const char *text, size_t len, int32_t depth, int32_t parent, int need,
                    const char *field) {
    if (l->n >= BEE_DICT_MAX_SEGMENTS)
        return bee_fail("input has more than %d fields and values", BEE_DICT_MAX_SEGMENTS);
    if (l->n == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 16;
        segment *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return bee_fail("out of memory");
        l->v = v;
        l->cap = cap;
    }
    char *f = strdup(field);
    if (!f) return bee_fail("out of memory");
    l->v[l->n++] = (segment){text, len, depth, parent, need, f};
    return 0;
}

static void seg_list_free(segment_list *l) {
    for (int32_t i = 0; i < l->n; i++) free(l->v[i].field);
    free(l->v);
}

/* "a.b" + "c" → "a.b.c", truncated to fit (it only labels error messages). */
static void join_field(char *dst, size_t cap, const char *path, const char *key) {
    size_t n = 0;
    for (const char *p = path; *p && n + 1 < cap; p++) dst[n++] = *p;
    if (path[0] && n + 1 < cap) dst[n++] = '.';
    for (const char *p = key; *p && n + 1 < cap; p++) dst[n++] = *p;
    dst[n] = 0;
}

static int build_segments(json_t *obj, int32_t depth, int need, int32_t parent, const char *path, segment_list *l) {
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        char field[1024];
        join_field(field, sizeof field, path, key);
        int32_t id = l->n;
        if (seg_push(l, key, strlen(key), depth, parent, 0, field)) return -1;
        int child_need = need || (depth == 1 && strcmp(key, "<ans>") == 0);
        if (json_is_string(val)) {
            if (seg_push(l, json_string_value(val), json_string_length(val), depth + 1, id, child_need, field))
                return -1;
        } else if (json_is_object(val)) {
            if (build_segments(val, depth + 1, child_need, id, field, l)) return -1;
        } else {
            return bee_fail("field '%s': expected a string or an object, got %s", field,
                            json_is_array(val) ? "an array" : json_is_null(val) ? "null" : "a number or boolean");
        }
    }
    return 0;
}

static int32_t lca(const segment_list *l, int32_t a, int32_t b) {
    while (l->v[a].depth > l->v[b].depth) a = l->v[a].parent;
    while (l->v[b].depth > l->v[a].depth) b = l->v[b].parent;
    while (a != b) {
        a = l->v[a].parent;
        b = l->v[b].parent;
    }
    return a;
}

static int build_seg_rel(const segment_list *l, int32_t **out) {
    int32_t n = l->n;
    int32_t *rel = calloc((size_t)n * (size_t)n, sizeof *rel);
    if (!rel) return bee_fail("out of memory");
    for (int32_t a = 0; a < n; a++) {
        for (int32_t b = 0; b < n; b++) {
            if (a == b) continue;
            int32_t c = lca(l, a, b);
            int32_t up = l->v[a].depth - l->v[c].depth, down = l->v[b].depth - l->v[c].depth;
            if (up > BEE_DICT_MAX_DEPTH - 1) up = BEE_DICT_MAX_DEPTH - 1;
            if (down > BEE_DICT_MAX_DEPTH - 1) down = BEE_DICT_MAX_DEPTH - 1;
            rel[(size_t)a * (size_t)n + (size_t)b] = up * BEE_DICT_MAX_DEPTH + down + 1;
        }
    }
    *out = rel;
    return 0;
}

/* ================================================================ tokens */

/* "<mask_0>" → "<mask>"; an unknown string → "<unk>". */
static int32_t ext_base_id(const bee_tokenizer *t, const char *s, size_t len, const char *field) {
    char name[256];
    if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
        size_t k = 1;
        while (k < len - 1 && s[k] != '_') k++;
        if (k + 1 > sizeof name - 1) return bee_fail("field '%s': invalid token '%.*s'", field, (int)len, s);
        memcpy(name, s, k);
        name[k] = '>';
        name[k + 1] = 0;
    } else {
        strcpy(name, "<unk>");
    }
    int32_t id = bee_tokenizer_find(t, name, strlen(name));
    if (id < 0)
        return bee_fail("field '%s': invalid token '%.*s' (its base '%s' is not in the vocabulary)", field,
                        (int)(len > 200 ? 200 : len), s, name);
    return id;
}

static int32_t name_sub(bee_dict_enc *e, int32_t base, int32_t ext_index) {
    size_t i = 0;
    while (i < e->n_names && e->names[i].base_id != base) i++;
    if (i == e->n_names) {
        bee_dict_name *nv = realloc(e->names, (i + 1) * sizeof *nv);
        if (!nv) return bee_fail("out of memory");
        e->names = nv;
        e->names[i] = (bee_dict_name){base, {0}};
        e->n_names++;
    }
    bee_ivec *x = &e->names[i].ext;
    for (size_t k = 0; k < x->n; k++)
        if (x->v[k] == ext_index) return (int32_t)k;
    if (bee_ivec_push(x, ext_index)) return -1;
    return (int32_t)(x->n - 1);
}

static int push_token(bee_dict_enc *e, int32_t id, int32_t sub, int ctx, int32_t seg) {
    if (bee_ivec_push(&e->ids, id) || bee_ivec_push(&e->subs, sub) || bee_ivec_push(&e->ctx, ctx) ||
        bee_ivec_push(&e->segs, seg))
        return -1;
    return 0;
}

static int encode_segment(const bee_tokenizer *t, const segment *s, int32_t seg_id, bee_dict_enc *e) {
    const bee_special_ids *sp = bee_tokenizer_special(t);
    int ctx = !s->need_predict;
    bee_ivec raw = {0};
    if (bee_tokenizer_encode(t, s->text, s->len, &e->ext, &raw)) {
        bee_fail_prefix("field '%s': ", s->field);
        return -1;
    }
    int rc = push_token(e, sp->bos, 0, ctx, seg_id);
    int32_t nv = (int32_t)bee_tokenizer_n_vocab(t);
    for (size_t i = 0; i < raw.n && rc == 0; i++) {
        int32_t id = raw.v[i], sub = 0;
        if (id >= nv) {
            int32_t k = id - nv;
            id = ext_base_id(t, e->ext.str[k], e->ext.len[k], s->field);
            sub = id < 0 ? -1 : name_sub(e, id, k);
            if (sub < 0) rc = -1;
        }
        if (rc == 0) rc = push_token(e, id, sub, ctx, seg_id);
    }
    if (rc == 0 && !s->need_predict) rc = push_token(e, sp->eos, 0, ctx, seg_id);
    bee_ivec_free(&raw);
    return rc;
}

int bee_dict_encode(const bee_tokenizer *t, json_t *data, bee_dict_enc *e) {
    if (!json_is_object(data)) return bee_fail("input must be a JSON object");
    bee_ivec_free(&e->ids);
    bee_ivec_free(&e->subs);
    bee_ivec_free(&e->ctx);
    bee_ivec_free(&e->segs);
    free(e->seg_rel);
    e->seg_rel = NULL;
    segment_list l = {0};
    int rc = seg_push(&l, "<root>", 6, 0, -1, 0, "<root>");
    if (rc == 0) rc = build_segments(data, 1, 0, 0, "", &l);
    if (rc == 0) rc = build_seg_rel(&l, &e->seg_rel);
    for (int32_t i = 0; rc == 0 && i < l.n; i++) rc = encode_segment(t, &l.v[i], i, e);
    e->n_seg = l.n;
    seg_list_free(&l);
    return rc;
}

void bee_dict_enc_free(bee_dict_enc *e) {
    bee_ivec_free(&e->ids);
    bee_ivec_free(&e->subs);
    bee_ivec_free(&e->ctx);
    bee_ivec_free(&e->segs);
    free(e->seg_rel);
    bee_ext_table_free(&e->ext);
    for (size_t i = 0; i < e->n_names; i++) bee_ivec_free(&e->names[i].ext);
    free(e->names);
    memset(e, 0, sizeof *e);
}

/* ================================================================ generation */

static int add_placeholders(json_t *val, json_t *path, bee_gen_input *in, json_t *parent, const char *key) {
    if (json_is_object(val)) {
        const char *k;
        json_t *v;
        json_object_foreach(val, k, v) {
            json_t *p = json_copy(path);
            if (!p || json_array_append_new(p, json_string(k))) return bee_fail("out of memory");
            int rc = add_placeholders(v, p, in, val, k);
            json_decref(p);
            if (rc) return -1;
        }
        return 0;
    }
    if (!json_is_string(val)) return bee_fail("field '<ans>': answer templates must be strings or objects");
    json_t **np = realloc(in->paths, (in->n_answers + 1) * sizeof *np);
    if (!np) return bee_fail("out of memory");
    in->paths = np;
    in->paths[in->n_answers++] = json_incref(path);
    char tag[32];
    snprintf(tag, sizeof tag, "<ans_%zu>", in->n_answers);
    return json_object_set_new(parent, key, json_string(tag)) ? bee_fail("out of memory") : 0;
}

/* Answer number of the <ans> ext string with subscript `sub`. */
static int32_t answer_number(const bee_dict_enc *e, int32_t ans_id, int32_t sub) {
    for (size_t i = 0; i < e->n_names; i++) {
        if (e->names[i].base_id != ans_id || sub < 0 || (size_t)sub >= e->names[i].ext.n) continue;
        const char *s = e->ext.str[e->names[i].ext.v[sub]];
        if (strncmp(s, "<ans_", 5) == 0) return (int32_t)atoi(s + 5);
    }
    return -1;
}

static int collect_model_input(const bee_tokenizer *t, bee_gen_input *in) {
    const bee_special_ids *sp = bee_tokenizer_special(t);
    bee_dict_enc *e = &in->enc;
    for (size_t i = 0; i < e->ids.n; i++) {
        if (e->ctx.v[i]) {
            if (bee_ivec_push(&in->ids, e->ids.v[i]) || bee_ivec_push(&in->subs, e->subs.v[i]) ||
                bee_ivec_push(&in->segs, e->segs.v[i]))
                return -1;
        } else if (e->ids.v[i] == sp->ans) {
            int32_t n = answer_number(e, sp->ans, e->subs.v[i]);
            if (n < 1 || (size_t)n > in->n_answers) return bee_fail("internal: bad answer slot");
            bee_slot *ns = realloc(in->slots, (in->n_slots + 1) * sizeof *ns);
            if (!ns) return bee_fail("out of memory");
            in->slots = ns;
            in->slots[in->n_slots++] = (bee_slot){e->segs.v[i], n};
        }
    }
    if (in->n_slots == 0) return bee_fail("field '<ans>': no answer slot (it must hold \"\" or an object of \"\")");
    return 0;
}

static int collect_ext_pairs(const bee_tokenizer *t, bee_gen_input *in) {
    int32_t ans = bee_tokenizer_special(t)->ans;
    for (size_t i = 0; i < in->enc.n_names; i++) {
        const bee_dict_name *nm = &in->enc.names[i];
        if (nm->base_id == ans) continue;
        for (size_t s = 0; s < nm->ext.n; s++) {
            if (bee_ivec_push(&in->ext_base, nm->base_id) || bee_ivec_push(&in->ext_sub, (int32_t)s) ||
                bee_ivec_push(&in->ext_idx, nm->ext.v[s]))
                return -1;
        }
    }
    return 0;
}

int bee_gen_input_init(const bee_tokenizer *t, json_t *data, bee_gen_input *in) {
    memset(in, 0, sizeof *in);
    if (!json_is_object(data)) return bee_fail("input must be a JSON object");
    json_t *ans = json_object_get(data, "<ans>");
    if (!ans) return bee_fail("input has no \"<ans>\" field: nothing to generate");
    in->data = json_incref(data);
    in->placeholder = json_deep_copy(data);
    json_t *root = json_array();
    int rc = in->placeholder && root ? 0 : bee_fail("out of memory");
    if (rc == 0) rc = add_placeholders(json_object_get(in->placeholder, "<ans>"), root, in, in->placeholder, "<ans>");
    json_decref(root);
    if (rc == 0) rc = bee_dict_encode(t, in->placeholder, &in->enc);
    if (rc == 0) rc = collect_model_input(t, in);
    if (rc == 0) rc = collect_ext_pairs(t, in);
    if (rc) bee_gen_input_free(in);
    return rc;
}

void bee_gen_input_free(bee_gen_input *in) {
    json_decref(in->data);
    json_decref(in->placeholder);
    for (size_t i = 0; i < in->n_answers; i++) json_decref(in->paths[i]);
    free(in->paths);
    bee_dict_enc_free(&in->enc);
    bee_ivec_free(&in->ids);
    bee_ivec_free(&in->subs);
    bee_ivec_free(&in->segs);
    free(in->slots);
    bee_ivec_free(&in->ext_base);
    bee_ivec_free(&in->ext_sub);
    bee_ivec_free(&in->ext_idx);
    memset(in, 0, sizeof *in);
}

int bee_batch_ext_add(bee_batch_ext *b, const bee_tokenizer *t, const bee_gen_input *in, bee_decode_table *dt) {
    int32_t nv = (int32_t)bee_tokenizer_n_vocab(t);
    for (size_t i = 0; i < in->ext_base.n; i++) {
        int32_t base = in->ext_base.v[i], sub = in->ext_sub.v[i], out_id = base;
        if (sub > 0) {
            size_t j = 0;
            while (j < b->base.n && !(b->base.v[j] == base && b->sub.v[j] == sub)) j++;
            if (j == b->base.n && (bee_ivec_push(&b->base, base) || bee_ivec_push(&b->sub, sub))) return -1;
            out_id = nv + (int32_t)j;
        }
        int32_t k = in->ext_idx.v[i];
        if (bee_decode_table_set(dt, out_id, in->enc.ext.str[k], in->enc.ext.len[k])) return -1;
    }
    return 0;
}

void bee_batch_ext_free(bee_batch_ext *b) {
    bee_ivec_free(&b->base);
    bee_ivec_free(&b->sub);
}

json_t *bee_gen_fill_answers(const bee_gen_input *in, char *const *answers) {
    json_t *out = json_deep_copy(in->data);
    if (!out) return NULL;
    for (size_t n = 0; n < in->n_answers; n++) {
        json_t *val = answers[n] ? json_string(answers[n]) : json_null();
        json_t *path = in->paths[n];
        size_t depth = json_array_size(path);
        json_t *parent = out;
        const char *key = "<ans>";
        for (size_t i = 0; i < depth; i++) {
            parent = json_object_get(parent, key);
            key = json_string_value(json_array_get(path, i));
        }
        if (!val || json_object_set_new(parent, key, val)) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

json_t *bee_dict_from_text(const char *text) {
    return json_pack("{s:s, s:s}", "input", text, "<ans>", "");
}
