#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "safety/internal.h"
#include "safety/normalize.h"
#include "util/error.h"
#include "util/file.h"

/* ================================================================ names */

static const char *const k_actions[] = {"allow", "log", "mask", "block"};

const char *bee_safety_action_name(bee_safety_action a) {
    return (unsigned)a < 4 ? k_actions[a] : "?";
}

int bee_safety_action_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, k_actions[i]) == 0) return i;
    return -1;
}

const char *bee_safety_stage_name(bee_safety_stage s) {
    return s == BEE_SAFETY_STAGE_PROMPT ? "prompt" : s == BEE_SAFETY_STAGE_OUTPUT ? "output" : "?";
}

/* ================================================================ building */

int bee_safety_policy_new(unsigned norm_flags, bee_safety_policy **out) {
    bee_safety_policy *p = calloc(1, sizeof *p);
    if (!p || bee_safety_policy_set_mask(p, "\xEF\xBC\x8A")) { /* U+FF0A FULLWIDTH ASTERISK */
        free(p);
        return bee_fail("safety policy: out of memory");
    }
    p->flags = norm_flags;
    *out = p;
    return 0;
}

void bee_safety_policy_free(bee_safety_policy *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_cats; i++) free(p->cats[i].name);
    for (size_t i = 0; i < p->n_pats; i++) {
        free(p->pats[i].norm);
        free(p->pats[i].term);
    }
    free(p->cats);
    free(p->pats);
    free(p->mask);
    bee_ac_free(p->ac);
    free(p);
}

int bee_safety_policy_set_mask(bee_safety_policy *p, const char *mask) {
    size_t n = strlen(mask);
    if (n == 0 || bee_utf8_check(mask, n)) return bee_fail("mask: must be non-empty UTF-8");
    char *m = strdup(mask);
    if (!m) return bee_fail("out of memory");
    free(p->mask);
    p->mask = m;
    p->mask_len = n;
    return 0;
}

int bee_safety_policy_add_category(bee_safety_policy *p, const char *name, bee_safety_action action) {
    if (p->compiled) return bee_fail("safety policy: category added after compile");
    if ((unsigned)action > BEE_SAFETY_BLOCK) return bee_fail("category '%s': bad action", name);
    for (size_t i = 0; i < p->n_cats; i++)
        if (strcmp(p->cats[i].name, name) == 0) return bee_fail("category '%s' defined twice", name);
    safety_category *c = realloc(p->cats, (p->n_cats + 1) * sizeof *c);
    if (!c) return bee_fail("out of memory");
    p->cats = c;
    if (!(c[p->n_cats].name = strdup(name))) return bee_fail("out of memory");
    c[p->n_cats].action = action;
    return (int)p->n_cats++;
}

int bee_safety_policy_add_term(bee_safety_policy *p, int category, const char *term, size_t len) {
    if (p->compiled) return bee_fail("safety policy: term added after compile");
    if (category < 0 || (size_t)category >= p->n_cats) return bee_fail("safety policy: bad category %d", category);
    size_t nlen;
    char *norm = bee_norm_string(term, len, p->flags, &nlen);
    if (!norm) return -1;
    if (nlen == 0) { /* only punctuation or invisible characters: matches nothing */
        free(norm);
        return 0;
    }
    if (p->n_pats == p->cap_pats) {
        size_t c = p->cap_pats ? p->cap_pats * 2 : 64;
        safety_pattern *np = realloc(p->pats, c * sizeof *np);
        if (!np) {
            free(norm);
            return bee_fail("out of memory");
        }
        p->pats = np;
        p->cap_pats = c;
    }
    safety_pattern *sp = &p->pats[p->n_pats];
    sp->term = malloc(len + 1);
    if (!sp->term) {
        free(norm);
        return bee_fail("out of memory");
    }
    memcpy(sp->term, term, len);
    sp->term[len] = 0;
    sp->norm = norm;
    sp->len = (uint32_t)nlen;
    sp->cat = category;
    sp->need_left = bee_norm_is_word((unsigned char)norm[0]);
    sp->need_right = bee_norm_is_word((unsigned char)norm[nlen - 1]);
    p->n_pats++;
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

int bee_safety_policy_add_lexicon(bee_safety_policy *p, int category, const char *path) {
    char *buf;
    size_t len;
    if (bee_read_file(path, &buf, &len)) return -1;
    size_t i = 0, line = 0;
    while (i < len) {
        size_t e = i;
        while (e < len && buf[e] != '\n') e++;
        size_t a = i, b = e;
        line++;
        while (a < b && is_space(buf[a])) a++;
        while (b > a && is_space(buf[b - 1])) b--;
        if (line == 1 && b - a >= 3 && memcmp(buf + a, "\xEF\xBB\xBF", 3) == 0) a += 3; /* BOM */
        if (b > a && buf[a] != '#' && bee_safety_policy_add_term(p, category, buf + a, b - a)) {
            free(buf);
            return bee_fail_prefix("%s:%zu: ", path, line);
        }
        i = e + 1;
    }
    free(buf);
    return 0;
}

static int pattern_cmp(const void *x, const void *y) {
    const safety_pattern *a = x, *b = y;
    if (a->cat != b->cat) return a->cat < b->cat ? -1 : 1;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return memcmp(a->norm, b->norm, a->len);
}

/* Sorting puts duplicates (same category, same normalised form — lexicons
 * repeat entries, and variants such as 炸藥/炸药 collapse) next to each other. */
static void dedupe(bee_safety_policy *p) {
    if (p->n_pats == 0) return;
    qsort(p->pats, p->n_pats, sizeof *p->pats, pattern_cmp);
    size_t w = 1;
    for (size_t r = 1; r < p->n_pats; r++) {
        if (pattern_cmp(&p->pats[r], &p->pats[w - 1]) == 0) {
            free(p->pats[r].norm);
            free(p->pats[r].term);
        } else {
            p->pats[w++] = p->pats[r];
        }
    }
    p->n_pats = w;
}

int bee_safety_policy_compile(bee_safety_policy *p) {
    if (p->compiled) return 0;
    dedupe(p);
    if (bee_ac_init(&p->ac)) return -1;
    for (size_t i = 0; i < p->n_pats; i++)
        if (bee_ac_add(p->ac, p->pats[i].norm, p->pats[i].len, (uint32_t)i)) return -1;
    if (bee_ac_build(p->ac)) return -1;
    p->compiled = 1;
    return 0;
}

size_t bee_safety_policy_n_categories(const bee_safety_policy *p) { return p->n_cats; }

const char *bee_safety_policy_category(const bee_safety_policy *p, int category, bee_safety_action *action) {
    if (category < 0 || (size_t)category >= p->n_cats) return NULL;
    if (action) *action = p->cats[category].action;
    return p->cats[category].name;
}

size_t bee_safety_policy_n_terms(const bee_safety_policy *p) { return p->n_pats; }

unsigned bee_safety_policy_norm_flags(const bee_safety_policy *p) { return p->flags; }

/* ================================================================ JSON policy files */

typedef struct {
    const char *name;     /* file name for messages */
    const char *base_dir; /* for relative lexicon paths */
} policy_ctx;

static int check_keys(const policy_ctx *cx, json_t *obj, const char *where, const char *const *allowed) {
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++) ok |= strcmp(key, allowed[i]) == 0;
        if (!ok) return bee_fail("%s: %s%s: unknown field", cx->name, where, key);
    }
    return 0;
}

static int parse_action(const policy_ctx *cx, json_t *v, const char *where, bee_safety_action *out) {
    int a = json_is_string(v) ? bee_safety_action_parse(json_string_value(v)) : -1;
    if (a <= BEE_SAFETY_ALLOW)
        return bee_fail("%s: %s: expected \"log\", \"mask\" or \"block\"%s%s%s", cx->name, where,
                        json_is_string(v) ? ", got \"" : "", json_is_string(v) ? json_string_value(v) : "",
                        json_is_string(v) ? "\"" : "");
    *out = (bee_safety_action)a;
    return 0;
}

static int parse_normalize(const policy_ctx *cx, json_t *v, unsigned *flags) {
    static const char *const keys[] = {"skip_separators", "traditional_to_simplified", NULL};
    if (!json_is_object(v)) return bee_fail("%s: normalize: expected an object", cx->name);
    if (check_keys(cx, v, "normalize.", keys)) return -1;
    const unsigned bits[] = {BEE_NORM_SKIP_SEP, BEE_NORM_T2S};
    for (int i = 0; i < 2; i++) {
        json_t *b = json_object_get(v, keys[i]);
        if (!b) continue;
        if (!json_is_boolean(b)) return bee_fail("%s: normalize.%s: expected true or false", cx->name, keys[i]);
        *flags = json_is_true(b) ? (*flags | bits[i]) : (*flags & ~bits[i]);
    }
    return 0;
}

static int add_lexicons(const policy_ctx *cx, bee_safety_policy *p, int cat, const char *cname, json_t *list) {
    if (!json_is_array(list)) return bee_fail("%s: categories.%s.lexicons: expected an array of paths", cx->name, cname);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v) || !*json_string_value(v))
            return bee_fail("%s: categories.%s.lexicons[%zu]: expected a path", cx->name, cname, i);
        const char *rel = json_string_value(v);
        bee_str path = {0};
        if (rel[0] != '/' && cx->base_dir && *cx->base_dir) bee_str_printf(&path, "%s/", cx->base_dir);
        if (bee_str_appendz(&path, rel)) return bee_fail("out of memory");
        int rc = bee_safety_policy_add_lexicon(p, cat, path.s);
        bee_str_free(&path);
        if (rc) return bee_fail_prefix("%s: categories.%s.lexicons[%zu]: ", cx->name, cname, i);
    }
    return 0;
}

static int add_terms(const policy_ctx *cx, bee_safety_policy *p, int cat, const char *cname, json_t *list) {
    if (!json_is_array(list)) return bee_fail("%s: categories.%s.terms: expected an array of strings", cx->name, cname);
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (!json_is_string(v)) return bee_fail("%s: categories.%s.terms[%zu]: expected a string", cx->name, cname, i);
        if (bee_safety_policy_add_term(p, cat, json_string_value(v), json_string_length(v)))
            return bee_fail_prefix("%s: categories.%s.terms[%zu]: ", cx->name, cname, i);
    }
    return 0;
}

static int parse_category(const policy_ctx *cx, bee_safety_policy *p, const char *cname, json_t *c,
                          bee_safety_action dflt) {
    static const char *const keys[] = {"action", "lexicons", "terms", NULL};
    char where[300];
    snprintf(where, sizeof where, "categories.%s.", cname);
    if (!json_is_object(c)) return bee_fail("%s: categories.%s: expected an object", cx->name, cname);
    if (check_keys(cx, c, where, keys)) return -1;
    bee_safety_action act = dflt;
    json_t *a = json_object_get(c, "action"), *lex = json_object_get(c, "lexicons"), *terms = json_object_get(c, "terms");
    snprintf(where, sizeof where, "categories.%s.action", cname);
    if (a && parse_action(cx, a, where, &act)) return -1;
    if (!lex && !terms) return bee_fail("%s: categories.%s: needs \"lexicons\" or \"terms\"", cx->name, cname);
    int cat = bee_safety_policy_add_category(p, cname, act);
    if (cat < 0) return bee_fail_prefix("%s: ", cx->name);
    if (lex && add_lexicons(cx, p, cat, cname, lex)) return -1;
    if (terms && add_terms(cx, p, cat, cname, terms)) return -1;
    return 0;
}

static int parse_policy(const policy_ctx *cx, json_t *root, bee_safety_policy **out) {
    static const char *const keys[] = {"default_action", "mask", "normalize", "categories", "comment", NULL};
    if (!json_is_object(root)) return bee_fail("%s: expected a JSON object", cx->name);
    if (check_keys(cx, root, "", keys)) return -1;
    unsigned flags = BEE_NORM_DEFAULT;
    bee_safety_action dflt = BEE_SAFETY_LOG;
    json_t *v;
    if ((v = json_object_get(root, "default_action")) && parse_action(cx, v, "default_action", &dflt)) return -1;
    if ((v = json_object_get(root, "normalize")) && parse_normalize(cx, v, &flags)) return -1;
    json_t *cats = json_object_get(root, "categories");
    if (!json_is_object(cats) || json_object_size(cats) == 0)
        return bee_fail("%s: categories: expected a non-empty object of categories", cx->name);
    bee_safety_policy *p;
    if (bee_safety_policy_new(flags, &p)) return -1;
    if ((v = json_object_get(root, "mask")) &&
        (!json_is_string(v) || bee_safety_policy_set_mask(p, json_string_value(v)))) {
        bee_safety_policy_free(p);
        return bee_fail("%s: mask: expected a non-empty string", cx->name);
    }
    const char *cname;
    json_t *c;
    json_object_foreach(cats, cname, c) {
        if (parse_category(cx, p, cname, c, dflt)) {
            bee_safety_policy_free(p);
            return -1;
        }
    }
    if (bee_safety_policy_compile(p)) {
        bee_safety_policy_free(p);
        return bee_fail_prefix("%s: ", cx->name);
    }
    *out = p;
    return 0;
}

int bee_safety_policy_parse(const char *json, size_t len, const char *name, const char *base_dir,
                            bee_safety_policy **out) {
    json_error_t err;
    policy_ctx cx = {name ? name : "policy", base_dir};
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) return bee_fail("%s:%d:%d: invalid JSON: %s", cx.name, err.line, err.column, err.text);
    int rc = parse_policy(&cx, root, out);
    json_decref(root);
    return rc;
}

int bee_safety_policy_load(const char *path, bee_safety_policy **out) {
    char *buf;
    size_t len;
    if (bee_read_file(path, &buf, &len)) return -1;
    bee_str dir = {0};
    const char *slash = strrchr(path, '/');
    if (slash) bee_str_append(&dir, path, (size_t)(slash - path) + (slash == path));
    int rc = bee_safety_policy_parse(buf, len, path, dir.s ? dir.s : ".", out);
    bee_str_free(&dir);
    free(buf);
    return rc;
}
