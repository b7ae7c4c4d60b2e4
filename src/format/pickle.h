/* A small, non-executing pickle reader (protocols 2-5, binary opcodes only),
 * enough for PyTorch's data.pkl. It builds a tree of tagged values and never
 * calls anything: GLOBAL/STACK_GLOBAL are checked against a caller-supplied
 * allow-list, REDUCE/NEWOBJ produce an "object" node recording the callable
 * and its arguments (except collections.OrderedDict(), which yields a dict),
 * BUILD just attaches the state, BINPERSID wraps the persistent id.
 *
 * Hostile input: every read is bounds-checked; stack depth, mark depth, memo
 * size and total allocated bytes are capped; the reader is iterative (no
 * recursion), and values may form cycles through the memo, so consumers must
 * walk only the shapes they expect. */
#ifndef BEE_FORMAT_PICKLE_H
#define BEE_FORMAT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#define BEE_PKL_MAX_STACK (1u << 20)
#define BEE_PKL_MAX_MARKS (1u << 16)
#define BEE_PKL_MAX_MEMO (1u << 20)
#define BEE_PKL_MAX_BYTES ((size_t)256 << 20)

typedef enum {
    BEE_PKL_NONE,
    BEE_PKL_BOOL,
    BEE_PKL_INT,
    BEE_PKL_FLOAT,
    BEE_PKL_STR,    /* text, and py2 BINSTRING */
    BEE_PKL_BYTES,
    BEE_PKL_TUPLE,
    BEE_PKL_LIST,   /* also sets (EMPTY_SET/ADDITEMS/FROZENSET) */
    BEE_PKL_DICT,   /* also OrderedDict */
    BEE_PKL_GLOBAL, /* an allow-listed module attribute */
    BEE_PKL_PERSID, /* persistent_load(pid), pid in .arg */
    BEE_PKL_OBJECT, /* callable(*args), never evaluated */
} bee_pkl_kind;

typedef struct bee_pkl_value bee_pkl_value;
struct bee_pkl_value {
    bee_pkl_kind kind;
    int64_t i;              /* BOOL, INT */
    double f;               /* FLOAT */
    char *s;                /* STR/BYTES: NUL-terminated copy; GLOBAL: module */
    size_t len;             /* STR/BYTES: length without the terminator */
    char *name;             /* GLOBAL: attribute name */
    bee_pkl_value **items;  /* TUPLE/LIST: elements; DICT: key0, value0, key1, value1, ... */
    size_t n;               /* number of entries in items */
    size_t cap;
    bee_pkl_value *callable; /* OBJECT: a GLOBAL */
    bee_pkl_value *arg;      /* OBJECT: argument tuple; PERSID: the persistent id */
    bee_pkl_value *state;    /* DICT/OBJECT: last BUILD state, or NULL */
};

typedef struct bee_pkl bee_pkl;

/* Runs the pickle in data[0, size) up to STOP. ctx prefixes messages (e.g.
 * "model.pt: data.pkl"); allowed is a NULL-terminated list of "module name"
 * strings. On success *root is the unpickled value, owned by *out. */
int bee_pkl_load(const void *data, size_t size, const char *ctx, const char *const *allowed, bee_pkl **out,
                 const bee_pkl_value **root);
void bee_pkl_free(bee_pkl *p);

/* Helpers for consumers. */
int bee_pkl_is_global(const bee_pkl_value *v, const char *module, const char *name);
int bee_pkl_is_str(const bee_pkl_value *v, const char *s);
/* Value stored under the string key in a DICT, or NULL. */
const bee_pkl_value *bee_pkl_dict_get(const bee_pkl_value *d, const char *key);
const char *bee_pkl_kind_name(bee_pkl_kind k);

#endif
