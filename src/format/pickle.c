#include "format/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define PKL_MAX_GLOBAL_NAME 1024u

struct bee_pkl {
    const uint8_t *data;
    size_t size, pos;
    size_t op_pos; /* offset of the opcode being executed (for messages) */
    uint8_t op;
    int stopped;
    const char *ctx;
    const char *const *allowed;
    bee_pkl_value **stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack heights at each MARK */
    size_t n_marks, marks_cap;
    bee_pkl_value **memo;
    size_t memo_cap, memo_count;
    bee_pkl_value **all; /* every value created, for freeing */
    size_t n_all, all_cap;
    size_t bytes; /* allocation budget used so far */
    bee_pkl_value *root;
};

typedef int (*pkl_op_fn)(bee_pkl *vm);

static int pkl_fail(const bee_pkl *vm, const char *fmt, ...) BEE_PRINTF(2, 3);

static int pkl_fail(const bee_pkl *vm, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bee_fail("%s offset %zu: %s", vm->ctx, vm->op_pos, msg);
}

/* ------------------------------------------------------------------ memory */

static int pkl_charge(bee_pkl *vm, size_t n) {
    if (n > BEE_PKL_MAX_BYTES - vm->bytes)
        return pkl_fail(vm, "pickle needs more than %zu MiB of memory; refusing", BEE_PKL_MAX_BYTES >> 20);
    vm->bytes += n;
    return 0;
}

/* Grows arr to hold need elements (at most max); returns the array or NULL. */
static void *pkl_grow(bee_pkl *vm, void *arr, size_t *cap, size_t need, size_t elem, size_t max, const char *what) {
    if (need <= *cap) return arr;
    if (need > max) {
        pkl_fail(vm, "%s exceeds the limit of %zu entries", what, max);
        return NULL;
    }
    size_t n = *cap < 16 ? 16 : *cap * 2;
    if (n < need) n = need;
    if (n > max) n = max;
    if (pkl_charge(vm, (n - *cap) * elem)) return NULL;
    void *p = realloc(arr, n * elem);
    if (!p) {
        pkl_fail(vm, "out of memory");
        return NULL;
    }
    *cap = n;
    return p;
}

static bee_pkl_value *pkl_new(bee_pkl *vm, bee_pkl_kind kind) {
    void *all = pkl_grow(vm, vm->all, &vm->all_cap, vm->n_all + 1, sizeof *vm->all, SIZE_MAX / sizeof *vm->all, "values");
    if (!all) return NULL;
    vm->all = all;
    bee_pkl_value *v;
    if (pkl_charge(vm, sizeof *v)) return NULL;
    if (!(v = calloc(1, sizeof *v))) {
        pkl_fail(vm, "out of memory");
        return NULL;
    }
    v->kind = kind;
    vm->all[vm->n_all++] = v;
    return v;
}

static int pkl_items_add(bee_pkl *vm, bee_pkl_value *c, bee_pkl_value *const *src, size_t n) {
    size_t max = SIZE_MAX / sizeof *c->items;
    if (n == 0) return 0;
    if (n > max - c->n) return pkl_fail(vm, "container too large");
    void *items = pkl_grow(vm, c->items, &c->cap, c->n + n, sizeof *c->items, max, "container");
    if (!items) return -1;
    c->items = items;
    memcpy(c->items + c->n, src, n * sizeof *src);
    c->n += n;
    return 0;
}

static bee_pkl_value *pkl_seq_new(bee_pkl *vm, bee_pkl_kind kind, bee_pkl_value *const *src, size_t n) {
    bee_pkl_value *v = pkl_new(vm, kind);
    if (!v || pkl_items_add(vm, v, src, n)) return NULL;
    return v;
}

/* ------------------------------------------------------------------ stack */

static size_t pkl_floor(const bee_pkl *vm) { return vm->n_marks ? vm->marks[vm->n_marks - 1] : 0; }

static int pkl_push(bee_pkl *vm, bee_pkl_value *v) {
    if (!v) return -1;
    void *s = pkl_grow(vm, vm->stack, &vm->stack_cap, vm->sp + 1, sizeof *vm->stack, BEE_PKL_MAX_STACK, "stack depth");
    if (!s) return -1;
    vm->stack = s;
    vm->stack[vm->sp++] = v;
    return 0;
}

static int pkl_need(const bee_pkl *vm, size_t n) {
    if (vm->sp - pkl_floor(vm) < n) return pkl_fail(vm, "stack underflow at opcode 0x%02x", vm->op);
    return 0;
}

static bee_pkl_value *pkl_pop(bee_pkl *vm) { return pkl_need(vm, 1) ? NULL : vm->stack[--vm->sp]; }

static bee_pkl_value *pkl_top(bee_pkl *vm) { return pkl_need(vm, 1) ? NULL : vm->stack[vm->sp - 1]; }

/* Removes the topmost MARK; the marked items are stack[*start, sp). */
static int pkl_mark_pop(bee_pkl *vm, size_t *start) {
    if (!vm->n_marks) return pkl_fail(vm, "opcode 0x%02x without a preceding MARK", vm->op);
    *start = vm->marks[--vm->n_marks];
    return 0;
}

/* ------------------------------------------------------------------ input */

static int pkl_take(bee_pkl *vm, size_t n, const uint8_t **p) {
    if (n > vm->size - vm->pos)
        return pkl_fail(vm, "truncated: opcode 0x%02x needs %zu bytes, %zu left", vm->op, n, vm->size - vm->pos);
    *p = vm->data + vm->pos;
    vm->pos += n;
    return 0;
}

static uint64_t pkl_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

static int pkl_take_uint(bee_pkl *vm, size_t n, uint64_t *v) {
    const uint8_t *p = NULL;
    if (pkl_take(vm, n, &p)) return -1;
    *v = pkl_le(p, n);
    return 0;
}

/* A '\n'-terminated line (GLOBAL operands), without the newline. */
static int pkl_take_line(bee_pkl *vm, const char **s, size_t *len) {
    size_t left = vm->size - vm->pos;
    const uint8_t *start = vm->data + vm->pos;
    const uint8_t *nl = memchr(start, '\n', left < PKL_MAX_GLOBAL_NAME ? left : PKL_MAX_GLOBAL_NAME);
    if (!nl) return pkl_fail(vm, "GLOBAL operand not terminated by a newline within %u bytes", PKL_MAX_GLOBAL_NAME);
    *s = (const char *)start;
    *len = (size_t)(nl - start);
    vm->pos += *len + 1;
    return 0;
}

/* ------------------------------------------------------------------ opcodes: constants */

static int op_proto(bee_pkl *vm) {
    const uint8_t *p = NULL;
    if (pkl_take(vm, 1, &p)) return -1;
    if (*p > 5) return pkl_fail(vm, "unsupported pickle protocol %u", *p);
    return 0;
}

static int op_frame(bee_pkl *vm) {
    const uint8_t *p = NULL;
    return pkl_take(vm, 8, &p); /* frames are only a buffering hint */
}

static int op_stop(bee_pkl *vm) {
    if (!(vm->root = pkl_pop(vm))) return -1;
    vm->stopped = 1;
    return 0;
}

static int op_none(bee_pkl *vm) { return pkl_push(vm, pkl_new(vm, BEE_PKL_NONE)); }

static int op_bool(bee_pkl *vm) {
    bee_pkl_value *v = pkl_new(vm, BEE_PKL_BOOL);
    if (v) v->i = vm->op == 0x88;
    return pkl_push(vm, v);
}

static int pkl_push_int(bee_pkl *vm, int64_t i) {
    bee_pkl_value *v = pkl_new(vm, BEE_PKL_INT);
    if (v) v->i = i;
    return pkl_push(vm, v);
}

static int op_binint(bee_pkl *vm) {
    size_t n = vm->op == 'J' ? 4 : vm->op == 'M' ? 2 : 1;
    uint64_t u = 0;
    if (pkl_take_uint(vm, n, &u)) return -1;
    return pkl_push_int(vm, n == 4 ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u);
}

static int op_long(bee_pkl *vm) {
    uint64_t n = 0, u = 0;
    if (pkl_take_uint(vm, vm->op == 0x8a ? 1 : 4, &n)) return -1;
    if (n > 8) return pkl_fail(vm, "integer of %llu bytes is too large", (unsigned long long)n);
    if (pkl_take_uint(vm, (size_t)n, &u)) return -1;
    if (n > 0 && n < 8 && (u >> (8 * n - 1) & 1)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    return pkl_push_int(vm, (int64_t)u);
}

static int op_binfloat(bee_pkl *vm) {
    const uint8_t *p = NULL;
    if (pkl_take(vm, 8, &p)) return -1;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | p[i]; /* big-endian */
    bee_pkl_value *v = pkl_new(vm, BEE_PKL_FLOAT);
    if (v) memcpy(&v->f, &u, sizeof v->f);
    return pkl_push(vm, v);
}

static size_t str_len_bytes(uint8_t op) {
    switch (op) {
    case 0x8c: case 'U': case 'C': return 1;
    case 0x8d: case 0x8e: return 8;
    default: return 4; /* 'X', 'T', 'B' */
    }
}

static int op_string(bee_pkl *vm) {
    uint64_t len = 0;
    const uint8_t *p = NULL;
    if (pkl_take_uint(vm, str_len_bytes(vm->op), &len)) return -1;
    if (vm->op == 'T' && len > 0x7fffffffu) return pkl_fail(vm, "negative BINSTRING length");
    if (len > vm->size - vm->pos)
        return pkl_fail(vm, "string length %llu exceeds the %zu bytes left", (unsigned long long)len, vm->size - vm->pos);
    if (pkl_take(vm, (size_t)len, &p) || pkl_charge(vm, (size_t)len + 1)) return -1;
    int bytes = vm->op == 'B' || vm->op == 'C' || vm->op == 0x8e;
    bee_pkl_value *v = pkl_new(vm, bytes ? BEE_PKL_BYTES : BEE_PKL_STR);
    if (!v) return -1;
    if (!(v->s = malloc((size_t)len + 1))) return pkl_fail(vm, "out of memory");
    memcpy(v->s, p, (size_t)len);
    v->s[len] = 0;
    v->len = (size_t)len;
    return pkl_push(vm, v);
}

/* ------------------------------------------------------------------ opcodes: stack and memo */

static int op_mark(bee_pkl *vm) {
    void *m = pkl_grow(vm, vm->marks, &vm->marks_cap, vm->n_marks + 1, sizeof *vm->marks, BEE_PKL_MAX_MARKS, "MARK depth");
    if (!m) return -1;
    vm->marks = m;
    vm->marks[vm->n_marks++] = vm->sp;
    return 0;
}

static int op_pop(bee_pkl *vm) {
    if (vm->n_marks && vm->marks[vm->n_marks - 1] == vm->sp) { /* POP of a mark object */
        vm->n_marks--;
        return 0;
    }
    return pkl_pop(vm) ? 0 : -1;
}

static int op_pop_mark(bee_pkl *vm) {
    size_t start = 0;
    if (pkl_mark_pop(vm, &start)) return -1;
    vm->sp = start;
    return 0;
}

static int op_dup(bee_pkl *vm) { return pkl_push(vm, pkl_top(vm)); }

static int pkl_memo_put(bee_pkl *vm, uint64_t idx) {
    bee_pkl_value *v = pkl_top(vm);
    if (!v) return -1;
    if (idx >= BEE_PKL_MAX_MEMO) return pkl_fail(vm, "memo index %llu too large", (unsigned long long)idx);
    size_t old = vm->memo_cap;
    void *m = pkl_grow(vm, vm->memo, &vm->memo_cap, (size_t)idx + 1, sizeof *vm->memo, BEE_PKL_MAX_MEMO, "memo");
    if (!m) return -1;
    vm->memo = m;
    if (vm->memo_cap > old) memset(vm->memo + old, 0, (vm->memo_cap - old) * sizeof *vm->memo);
    if (!vm->memo[idx]) vm->memo_count++;
    vm->memo[idx] = v;
    return 0;
}

static int op_put(bee_pkl *vm) {
    uint64_t idx = 0;
    if (pkl_take_uint(vm, vm->op == 'q' ? 1 : 4, &idx)) return -1;
    return pkl_memo_put(vm, idx);
}

static int op_memoize(bee_pkl *vm) { return pkl_memo_put(vm, vm->memo_count); }

static int op_get(bee_pkl *vm) {
    uint64_t idx = 0;
    if (pkl_take_uint(vm, vm->op == 'h' ? 1 : 4, &idx)) return -1;
    if (idx >= vm->memo_cap || !vm->memo[idx])
        return pkl_fail(vm, "memo index %llu not defined", (unsigned long long)idx);
    return pkl_push(vm, vm->memo[idx]);
}

/* ------------------------------------------------------------------ opcodes: containers */

static int op_empty(bee_pkl *vm) {
    bee_pkl_kind k = vm->op == ')' ? BEE_PKL_TUPLE : vm->op == '}' ? BEE_PKL_DICT : BEE_PKL_LIST;
    return pkl_push(vm, pkl_new(vm, k));
}

static int op_tuple_n(bee_pkl *vm) {
    size_t n = (size_t)(vm->op - 0x84); /* TUPLE1..TUPLE3 = 0x85..0x87 */
    if (pkl_need(vm, n)) return -1;
    vm->sp -= n;
    return pkl_push(vm, pkl_seq_new(vm, BEE_PKL_TUPLE, vm->stack + vm->sp, n));
}

static int op_seq_from_mark(bee_pkl *vm) {
    size_t start = 0;
    if (pkl_mark_pop(vm, &start)) return -1;
    bee_pkl_kind k = vm->op == 't' ? BEE_PKL_TUPLE : vm->op == 'd' ? BEE_PKL_DICT : BEE_PKL_LIST;
    if (k == BEE_PKL_DICT && (vm->sp - start) % 2) return pkl_fail(vm, "DICT with an odd number of items");
    size_t n = vm->sp - start;
    vm->sp = start;
    return pkl_push(vm, pkl_seq_new(vm, k, vm->stack + start, n));
}

static int pkl_expect(const bee_pkl *vm, const bee_pkl_value *v, bee_pkl_kind k) {
    if (v->kind != k)
        return pkl_fail(vm, "opcode 0x%02x applied to a %s, expected a %s", vm->op, bee_pkl_kind_name(v->kind),
                        bee_pkl_kind_name(k));
    return 0;
}

static int op_append(bee_pkl *vm) {
    if (pkl_need(vm, 2)) return -1;
    bee_pkl_value *list = vm->stack[vm->sp - 2];
    if (pkl_expect(vm, list, BEE_PKL_LIST)) return -1;
    vm->sp--;
    return pkl_items_add(vm, list, vm->stack + vm->sp, 1);
}

static int op_setitem(bee_pkl *vm) {
    if (pkl_need(vm, 3)) return -1;
    bee_pkl_value *dict = vm->stack[vm->sp - 3];
    if (pkl_expect(vm, dict, BEE_PKL_DICT)) return -1;
    vm->sp -= 2;
    return pkl_items_add(vm, dict, vm->stack + vm->sp, 2);
}

/* APPENDS, ADDITEMS, SETITEMS: add the marked items to the object below the mark. */
static int op_extend(bee_pkl *vm) {
    size_t start = 0;
    if (pkl_mark_pop(vm, &start)) return -1;
    if (start == 0 || start - 1 < pkl_floor(vm)) return pkl_fail(vm, "stack underflow at opcode 0x%02x", vm->op);
    bee_pkl_value *target = vm->stack[start - 1];
    int dict = vm->op == 'u';
    if (pkl_expect(vm, target, dict ? BEE_PKL_DICT : BEE_PKL_LIST)) return -1;
    size_t n = vm->sp - start;
    if (dict && n % 2) return pkl_fail(vm, "SETITEMS with an odd number of items");
    vm->sp = start;
    return pkl_items_add(vm, target, vm->stack + start, n);
}

/* ------------------------------------------------------------------ opcodes: globals and calls */

static int pkl_allowed(const bee_pkl *vm, const char *module, size_t ml, const char *name, size_t nl) {
    for (const char *const *a = vm->allowed; a && *a; a++)
        if (strlen(*a) == ml + 1 + nl && memcmp(*a, module, ml) == 0 && (*a)[ml] == ' ' &&
            memcmp(*a + ml + 1, name, nl) == 0)
            return 1;
    return 0;
}

static char *pkl_strndup(bee_pkl *vm, const char *s, size_t n) {
    if (pkl_charge(vm, n + 1)) return NULL;
    char *d = malloc(n + 1);
    if (!d) {
        pkl_fail(vm, "out of memory");
        return NULL;
    }
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* Copies at most 200 bytes of s for a message, replacing unprintable bytes with '?'. */
static const char *pkl_printable(char *dst, const char *s, size_t n) {
    if (n > 200) n = 200;
    for (size_t i = 0; i < n; i++) dst[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    dst[n] = 0;
    return dst;
}

static int pkl_push_global(bee_pkl *vm, const char *module, size_t ml, const char *name, size_t nl) {
    char pm[201], pn[201];
    if (!pkl_allowed(vm, module, ml, name, nl))
        return pkl_fail(vm, "disallowed global '%s %s'", pkl_printable(pm, module, ml), pkl_printable(pn, name, nl));
    bee_pkl_value *v = pkl_new(vm, BEE_PKL_GLOBAL);
    if (!v || !(v->s = pkl_strndup(vm, module, ml)) || !(v->name = pkl_strndup(vm, name, nl))) return -1;
    return pkl_push(vm, v);
}

static int op_global(bee_pkl *vm) {
    const char *module = NULL, *name = NULL;
    size_t ml = 0, nl = 0;
    if (pkl_take_line(vm, &module, &ml) || pkl_take_line(vm, &name, &nl)) return -1;
    return pkl_push_global(vm, module, ml, name, nl);
}

static int op_stack_global(bee_pkl *vm) {
    bee_pkl_value *name = pkl_pop(vm), *module = name ? pkl_pop(vm) : NULL;
    if (!module) return -1;
    if (module->kind != BEE_PKL_STR || name->kind != BEE_PKL_STR)
        return pkl_fail(vm, "STACK_GLOBAL operands are not strings");
    return pkl_push_global(vm, module->s, module->len, name->s, name->len);
}

static int op_persid(bee_pkl *vm) {
    bee_pkl_value *pid = pkl_pop(vm), *v = pid ? pkl_new(vm, BEE_PKL_PERSID) : NULL;
    if (!v) return -1;
    v->arg = pid;
    return pkl_push(vm, v);
}

/* callable(*args): OrderedDict() becomes an empty dict, anything else an OBJECT. */
static int pkl_push_call(bee_pkl *vm, bee_pkl_value *callable, bee_pkl_value *args) {
    if (callable->kind != BEE_PKL_GLOBAL)
        return pkl_fail(vm, "call of a %s; only globals can be called", bee_pkl_kind_name(callable->kind));
    if (pkl_expect(vm, args, BEE_PKL_TUPLE)) return -1;
    if (bee_pkl_is_global(callable, "collections", "OrderedDict")) {
        if (args->n) return pkl_fail(vm, "OrderedDict with constructor arguments is not supported");
        return pkl_push(vm, pkl_new(vm, BEE_PKL_DICT));
    }
    bee_pkl_value *v = pkl_new(vm, BEE_PKL_OBJECT);
    if (!v) return -1;
    v->callable = callable;
    v->arg = args;
    return pkl_push(vm, v);
}

/* REDUCE (callable, args) and NEWOBJ (cls, args). */
static int op_reduce(bee_pkl *vm) {
    if (pkl_need(vm, 2)) return -1;
    vm->sp -= 2;
    return pkl_push_call(vm, vm->stack[vm->sp], vm->stack[vm->sp + 1]);
}

/* NEWOBJ_EX (cls, args, kwargs): keyword arguments are ignored. */
static int op_newobj_ex(bee_pkl *vm) {
    if (pkl_need(vm, 3)) return -1;
    vm->sp -= 3;
    return pkl_push_call(vm, vm->stack[vm->sp], vm->stack[vm->sp + 1]);
}

static int op_build(bee_pkl *vm) {
    if (pkl_need(vm, 2)) return -1;
    bee_pkl_value *obj = vm->stack[vm->sp - 2], *state = vm->stack[vm->sp - 1];
    if (obj->kind != BEE_PKL_DICT && obj->kind != BEE_PKL_OBJECT)
        return pkl_fail(vm, "BUILD applied to a %s", bee_pkl_kind_name(obj->kind));
    obj->state = state;
    vm->sp--;
    return 0;
}

/* ------------------------------------------------------------------ driver */

static const pkl_op_fn pkl_ops[256] = {
    [0x80] = op_proto, [0x95] = op_frame, ['.'] = op_stop,
    ['N'] = op_none, [0x88] = op_bool, [0x89] = op_bool,
    ['J'] = op_binint, ['K'] = op_binint, ['M'] = op_binint, [0x8a] = op_long, [0x8b] = op_long,
    ['G'] = op_binfloat,
    ['X'] = op_string, [0x8c] = op_string, [0x8d] = op_string, ['T'] = op_string, ['U'] = op_string,
    ['B'] = op_string, ['C'] = op_string, [0x8e] = op_string,
    ['('] = op_mark, ['0'] = op_pop, ['1'] = op_pop_mark, ['2'] = op_dup,
    ['q'] = op_put, ['r'] = op_put, [0x94] = op_memoize, ['h'] = op_get, ['j'] = op_get,
    [')'] = op_empty, [']'] = op_empty, ['}'] = op_empty, [0x8f] = op_empty,
    [0x85] = op_tuple_n, [0x86] = op_tuple_n, [0x87] = op_tuple_n,
    ['t'] = op_seq_from_mark, ['l'] = op_seq_from_mark, ['d'] = op_seq_from_mark, [0x91] = op_seq_from_mark,
    ['a'] = op_append, ['e'] = op_extend, [0x90] = op_extend, ['s'] = op_setitem, ['u'] = op_extend,
    ['c'] = op_global, [0x93] = op_stack_global, ['Q'] = op_persid,
    ['R'] = op_reduce, [0x81] = op_reduce, [0x92] = op_newobj_ex, ['b'] = op_build,
};

static int pkl_run(bee_pkl *vm) {
    while (!vm->stopped) {
        vm->op_pos = vm->pos;
        if (vm->pos >= vm->size) return pkl_fail(vm, "truncated: pickle ends without STOP");
        vm->op = vm->data[vm->pos++];
        pkl_op_fn fn = pkl_ops[vm->op];
        if (!fn) return pkl_fail(vm, "unsupported pickle opcode 0x%02x", vm->op);
        if (fn(vm)) return -1;
    }
    return 0;
}

int bee_pkl_load(const void *data, size_t size, const char *ctx, const char *const *allowed, bee_pkl **out,
                 const bee_pkl_value **root) {
    *out = NULL;
    *root = NULL;
    bee_pkl *vm = calloc(1, sizeof *vm);
    if (!vm) return bee_fail("%s: out of memory", ctx);
    vm->data = data;
    vm->size = data ? size : 0;
    vm->ctx = ctx;
    vm->allowed = allowed;
    /* the stack always exists, so stack + i is valid even before the first push */
    vm->stack = pkl_grow(vm, NULL, &vm->stack_cap, 1, sizeof *vm->stack, BEE_PKL_MAX_STACK, "stack depth");
    if (!vm->stack || pkl_run(vm)) {
        bee_pkl_free(vm);
        return -1;
    }
    *out = vm;
    *root = vm->root;
    return 0;
}

void bee_pkl_free(bee_pkl *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_all; i++) {
        free(p->all[i]->s);
        free(p->all[i]->name);
        free(p->all[i]->items);
        free(p->all[i]);
    }
    free(p->all);
    free(p->stack);
    free(p->marks);
    free(p->memo);
    free(p);
}

/* ------------------------------------------------------------------ helpers */

int bee_pkl_is_global(const bee_pkl_value *v, const char *module, const char *name) {
    return v && v->kind == BEE_PKL_GLOBAL && strcmp(v->s, module) == 0 && strcmp(v->name, name) == 0;
}

int bee_pkl_is_str(const bee_pkl_value *v, const char *s) {
    return v && v->kind == BEE_PKL_STR && strlen(s) == v->len && memcmp(v->s, s, v->len) == 0;
}

const bee_pkl_value *bee_pkl_dict_get(const bee_pkl_value *d, const char *key) {
    if (!d || d->kind != BEE_PKL_DICT) return NULL;
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (bee_pkl_is_str(d->items[i], key)) return d->items[i + 1];
    return NULL;
}

const char *bee_pkl_kind_name(bee_pkl_kind k) {
    static const char *const names[] = {"None", "bool", "int", "float", "str", "bytes",
                                        "tuple", "list", "dict", "global", "persistent id", "object"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}
