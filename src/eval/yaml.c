/* YAML model lists (libyaml): a document becomes the JSON value the JSON
 * form would give. Mappings → objects (keys are scalars), sequences →
 * arrays; plain scalars that read as integers, reals, true/false or
 * null/~ become those, everything else (and every quoted scalar) a string.
 * Anchors and aliases are refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/error.h"
#include "util/file.h"

#ifndef BEE_HAVE_YAML

int bee_yaml_available(void) { return 0; }
json_t *bee_yaml_load_string(const char *text, size_t len, const char *name) {
    (void)text, (void)len;
    return bee_fail("%s: bee was built without libyaml (install libyaml-dev, rebuild; or give the model list as JSON)", name),
           NULL;
}
json_t *bee_yaml_load_file(const char *path) { return bee_yaml_load_string(NULL, 0, path); }

#else

#include <yaml.h>

int bee_yaml_available(void) { return 1; }

static json_t *scalar(const yaml_event_t *ev) {
    const char *v = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || strlen(v) != n) return json_stringn(v, n);
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE")) return json_true();
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE")) return json_false();
    if (!n || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL")) return json_null();
    char *end;
    errno = 0;
    long long i = strtoll(v, &end, 10);
    if (*v && !*end && !errno) return json_integer(i);
    double d = strtod(v, &end);
    if (*v && !*end && strspn(v, "+-0123456789.eE") == n) return json_real(d);
    return json_stringn(v, n);
}

/* Builds the value that starts with *ev (consumed); NULL + bee_fail on errors. */
static json_t *node(yaml_parser_t *p, yaml_event_t *ev, const char *path, int depth) {
    size_t line = ev->start_mark.line + 1;
    if (depth > 64) return bee_fail("%s:%zu: nested too deeply", path, line), NULL;
    if (ev->type == YAML_ALIAS_EVENT) return bee_fail("%s:%zu: aliases (*name) are not supported", path, line), NULL;
    if (ev->type == YAML_SCALAR_EVENT) return scalar(ev);
    if (ev->type != YAML_SEQUENCE_START_EVENT && ev->type != YAML_MAPPING_START_EVENT)
        return bee_fail("%s:%zu: unexpected YAML event", path, line), NULL;
    int map = ev->type == YAML_MAPPING_START_EVENT;
    json_t *out = map ? json_object() : json_array(), *key = NULL;
    for (;;) {
        yaml_event_t e;
        if (!yaml_parser_parse(p, &e)) {
            bee_fail("%s:%zu:%zu: %s", path, p->problem_mark.line + 1, p->problem_mark.column + 1,
                     p->problem ? p->problem : "YAML syntax error");
            break;
        }
        if (e.type == YAML_SEQUENCE_END_EVENT || e.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&e);
            json_decref(key);
            return out;
        }
        size_t el = e.start_mark.line + 1;
        if (map && !key) {
            if (e.type != YAML_SCALAR_EVENT) {
                bee_fail("%s:%zu: mapping keys must be plain scalars", path, el);
                yaml_event_delete(&e);
                break;
            }
            key = json_stringn((const char *)e.data.scalar.value, e.data.scalar.length);
            yaml_event_delete(&e);
            continue;
        }
        json_t *v = node(p, &e, path, depth + 1);
        yaml_event_delete(&e);
        if (!v) break;
        if (map) {
            if (json_object_get(out, json_string_value(key))) {
                bee_fail("%s:%zu: key '%s' given twice", path, el, json_string_value(key));
                json_decref(v);
                break;
            }
            json_object_set_new(out, json_string_value(key), v);
            json_decref(key);
            key = NULL;
        } else {
            json_array_append_new(out, v);
        }
    }
    json_decref(key);
    json_decref(out);
    return NULL;
}

json_t *bee_yaml_load_string(const char *text, size_t len, const char *path) {
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return bee_fail("out of memory"), NULL;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    json_t *root = NULL;
    int done = 0, failed = 0;
    while (!done && !failed) {
        yaml_event_t e;
        if (!yaml_parser_parse(&p, &e)) {
            bee_fail("%s:%zu:%zu: %s", path, p.problem_mark.line + 1, p.problem_mark.column + 1,
                     p.problem ? p.problem : "YAML syntax error");
            failed = 1;
            break;
        }
        switch (e.type) {
        case YAML_STREAM_END_EVENT: done = 1; break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
        case YAML_ALIAS_EVENT:
            if (root) {
                bee_fail("%s:%zu: one YAML document expected", path, (size_t)e.start_mark.line + 1);
                failed = 1;
            } else if (!(root = node(&p, &e, path, 0))) {
                failed = 1;
            }
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (root) {
                bee_fail("%s:%zu: one YAML document expected", path, (size_t)e.start_mark.line + 1);
                failed = 1;
            }
            break;
        default: break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&p);
    if (failed) {
        json_decref(root);
        return NULL;
    }
    if (!root) return bee_fail("%s: empty YAML document", path), NULL;
    return root;
}

json_t *bee_yaml_load_file(const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (bee_read_file(path, &text, &len)) return NULL;
    json_t *j = bee_yaml_load_string(text, len, path);
    free(text);
    return j;
}

#endif
