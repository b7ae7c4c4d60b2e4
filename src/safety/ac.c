#include "safety/ac.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* Trie nodes keep their children as sibling lists while patterns are added;
 * bee_ac_build turns them into sorted edge arrays (compact and cache-friendly
 * for the tens of thousands of states a lexicon makes) and computes failure and
 * dictionary-suffix links. The root gets a dense 256-entry table because every
 * byte of text that matches nothing passes through it. */
typedef struct {
    uint32_t first, next; /* build-time child list (0 = none) */
    uint32_t fail, dict;  /* dict: nearest state on the fail chain with outputs */
    uint32_t depth;
    uint32_t hold; /* longest suffix here that is a proper prefix of some pattern */
    uint32_t edge_off;
    int32_t out;   /* head of this state's own output list, -1 if none */
    int32_t dense; /* row in the dense table, -1 if the state uses its edge array */
    uint16_t n_edges;
    uint8_t byte;
} ac_node;

struct bee_ac {
    ac_node *nodes;
    size_t n, cap;
    uint32_t *out_id;
    int32_t *out_next;
    size_t n_out, out_cap;
    uint8_t *ebyte;
    uint32_t *etarget;
    uint32_t root[256];
    uint32_t *dense; /* full transition rows (fail links resolved) for the shallowest states */
    uint32_t *bfs;   /* states in breadth-first order (build time only) */
    int built;
};

/* ================================================================ building */

int bee_ac_init(bee_ac **out) {
    bee_ac *ac = calloc(1, sizeof *ac);
    if (!ac) return bee_fail("aho-corasick: out of memory");
    ac->cap = 1024;
    ac->nodes = calloc(ac->cap, sizeof *ac->nodes);
    if (!ac->nodes) {
        free(ac);
        return bee_fail("aho-corasick: out of memory");
    }
    ac->n = 1;
    ac->nodes[0].out = -1;
    *out = ac;
    return 0;
}

void bee_ac_free(bee_ac *ac) {
    if (!ac) return;
    free(ac->nodes);
    free(ac->out_id);
    free(ac->out_next);
    free(ac->ebyte);
    free(ac->etarget);
    free(ac->dense);
    free(ac->bfs);
    free(ac);
}

static uint32_t child_of(const bee_ac *ac, uint32_t s, uint8_t c) {
    if (s == 0) return ac->root[c];
    for (uint32_t k = ac->nodes[s].first; k; k = ac->nodes[k].next)
        if (ac->nodes[k].byte == c) return k;
    return 0;
}

static int64_t new_child(bee_ac *ac, uint32_t s, uint8_t c) {
    if (ac->n == ac->cap) {
        if (ac->cap >= UINT32_MAX / 2) return bee_fail("aho-corasick: too many states");
        ac_node *nn = realloc(ac->nodes, ac->cap * 2 * sizeof *nn);
        if (!nn) return bee_fail("aho-corasick: out of memory");
        ac->nodes = nn;
        ac->cap *= 2;
    }
    uint32_t k = (uint32_t)ac->n++;
    ac_node *nd = &ac->nodes[k];
    memset(nd, 0, sizeof *nd);
    nd->out = -1;
    nd->byte = c;
    nd->depth = ac->nodes[s].depth + 1;
    if (s == 0) {
        ac->root[c] = k;
    } else {
        nd->next = ac->nodes[s].first;
        ac->nodes[s].first = k;
    }
    return k;
}

int bee_ac_add(bee_ac *ac, const void *pat, size_t len, uint32_t id) {
    if (ac->built) return bee_fail("aho-corasick: pattern added after build");
    if (len == 0) return bee_fail("aho-corasick: empty pattern");
    if (len >= UINT32_MAX / 2) return bee_fail("aho-corasick: pattern too long");
    const uint8_t *p = pat;
    uint32_t s = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t t = child_of(ac, s, p[i]);
        if (!t) {
            int64_t k = new_child(ac, s, p[i]);
            if (k < 0) return -1;
            t = (uint32_t)k;
        }
        s = t;
    }
    if (ac->n_out == ac->out_cap) {
        size_t c = ac->out_cap ? ac->out_cap * 2 : 256;
        uint32_t *ids = realloc(ac->out_id, c * sizeof *ids);
        if (ids) ac->out_id = ids;
        int32_t *nx = realloc(ac->out_next, c * sizeof *nx);
        if (nx) ac->out_next = nx;
        if (!ids || !nx) return bee_fail("aho-corasick: out of memory");
        if (c > INT32_MAX) return bee_fail("aho-corasick: too many patterns");
        ac->out_cap = c;
    }
    ac->out_id[ac->n_out] = id;
    ac->out_next[ac->n_out] = ac->nodes[s].out;
    ac->nodes[s].out = (int32_t)ac->n_out++;
    return 0;
}

/* Failure links in breadth-first order: a state's fail target is shallower,
 * so it is final by the time it is used. */
static int link_states(bee_ac *ac) {
    uint32_t *queue = malloc(ac->n * sizeof *queue);
    if (!queue) return bee_fail("aho-corasick: out of memory");
    size_t head = 0, tail = 0;
    for (int c = 0; c < 256; c++)
        if (ac->root[c]) {
            queue[tail++] = ac->root[c];
            ac->nodes[ac->root[c]].hold = ac->nodes[ac->root[c]].first ? 1 : 0;
        }
    while (head < tail) {
        uint32_t u = queue[head++];
        for (uint32_t v = ac->nodes[u].first; v; v = ac->nodes[v].next) {
            uint32_t f = ac->nodes[u].fail, t;
            while (!(t = child_of(ac, f, ac->nodes[v].byte)) && f) f = ac->nodes[f].fail;
            ac->nodes[v].fail = t;
            ac->nodes[v].dict = ac->nodes[t].out >= 0 ? t : ac->nodes[t].dict;
            /* the fail chain lists every suffix that is a pattern prefix; the
             * first with children is the longest that can still grow */
            ac->nodes[v].hold = ac->nodes[v].first ? ac->nodes[v].depth : ac->nodes[t].hold;
            queue[tail++] = v;
        }
    }
    ac->bfs = queue;
    return 0;
}

static int compact_edges(bee_ac *ac) {
    size_t n_edges = ac->n; /* every state but the root is somebody's child */
    ac->ebyte = malloc(n_edges);
    ac->etarget = malloc(n_edges * sizeof *ac->etarget);
    if (!ac->ebyte || !ac->etarget) return bee_fail("aho-corasick: out of memory");
    uint32_t off = 0;
    for (size_t s = 1; s < ac->n; s++) {
        ac_node *nd = &ac->nodes[s];
        nd->edge_off = off;
        for (uint32_t k = nd->first; k; k = ac->nodes[k].next) {
            /* insertion sort by byte: at most 256 children */
            uint32_t j = off + nd->n_edges;
            while (j > off && ac->ebyte[j - 1] > ac->nodes[k].byte) {
                ac->ebyte[j] = ac->ebyte[j - 1];
                ac->etarget[j] = ac->etarget[j - 1];
                j--;
            }
            ac->ebyte[j] = ac->nodes[k].byte;
            ac->etarget[j] = k;
            nd->n_edges++;
        }
        off += nd->n_edges;
    }
    return 0;
}

/* Text spends most of its time in shallow states (the first bytes of a CJK
 * character fan out to dozens of children), so the shallowest states with
 * children get a full 256-entry transition row with failure links already
 * followed: one load per byte there instead of a search plus a fail walk.
 * Bounded to DENSE_MAX rows (1 KiB each). */
enum { DENSE_MAX = 4096 };

static uint32_t step_slow(const bee_ac *ac, uint32_t s, uint8_t c);

static int make_dense(bee_ac *ac) {
    size_t rows = 0;
    for (size_t s = 0; s < ac->n; s++) ac->nodes[s].dense = -1;
    for (size_t i = 0; i + 1 < ac->n && rows < DENSE_MAX; i++)
        if (ac->nodes[ac->bfs[i]].n_edges) ac->nodes[ac->bfs[i]].dense = (int32_t)rows++;
    if (rows && !(ac->dense = malloc(rows * 256 * sizeof *ac->dense))) return bee_fail("aho-corasick: out of memory");
    /* breadth-first: a state's fail target is shallower, so its row (if any) is complete */
    for (size_t i = 0; i + 1 < ac->n; i++) {
        const ac_node *nd = &ac->nodes[ac->bfs[i]];
        if (nd->dense < 0) continue;
        uint32_t *row = ac->dense + (size_t)nd->dense * 256;
        for (int c = 0; c < 256; c++) row[c] = step_slow(ac, nd->fail, (uint8_t)c);
        for (uint32_t e = 0; e < nd->n_edges; e++) row[ac->ebyte[nd->edge_off + e]] = ac->etarget[nd->edge_off + e];
    }
    free(ac->bfs);
    ac->bfs = NULL;
    return 0;
}

int bee_ac_build(bee_ac *ac) {
    if (ac->built) return 0;
    if (link_states(ac) || compact_edges(ac) || make_dense(ac)) return -1;
    ac->built = 1;
    return 0;
}

size_t bee_ac_n_states(const bee_ac *ac) { return ac->n; }

/* ================================================================ matching */

static uint32_t edge(const bee_ac *ac, const ac_node *nd, uint8_t c) {
    const uint8_t *b = ac->ebyte + nd->edge_off;
    uint32_t n = nd->n_edges;
    if (n <= 8) {
        for (uint32_t i = 0; i < n; i++)
            if (b[i] == c) return ac->etarget[nd->edge_off + i];
        return 0;
    }
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (b[mid] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && b[lo] == c ? ac->etarget[nd->edge_off + lo] : 0;
}

static uint32_t step_slow(const bee_ac *ac, uint32_t s, uint8_t c) {
    for (;;) {
        if (s == 0) return ac->root[c];
        const ac_node *nd = &ac->nodes[s];
        if (nd->dense >= 0 && ac->dense) return ac->dense[(size_t)nd->dense * 256 + c];
        uint32_t t = edge(ac, nd, c);
        if (t) return t;
        s = nd->fail;
    }
}

uint32_t bee_ac_step(const bee_ac *ac, uint32_t s, uint8_t c) { return step_slow(ac, s, c); }

uint32_t bee_ac_depth(const bee_ac *ac, uint32_t s) { return ac->nodes[s].depth; }

uint32_t bee_ac_hold(const bee_ac *ac, uint32_t s) { return ac->nodes[s].hold; }

void bee_ac_iter_init(const bee_ac *ac, uint32_t state, bee_ac_iter *it) {
    it->node = state;
    it->item = ac->nodes[state].out;
}

int bee_ac_iter_next(const bee_ac *ac, bee_ac_iter *it, uint32_t *id, uint32_t *len) {
    while (it->item < 0) {
        if (it->node == 0) return 0;
        it->node = ac->nodes[it->node].dict;
        if (it->node == 0) return 0;
        it->item = ac->nodes[it->node].out;
    }
    *id = ac->out_id[it->item];
    *len = ac->nodes[it->node].depth;
    it->item = ac->out_next[it->item];
    return 1;
}

int bee_ac_scan(const bee_ac *ac, uint32_t *state, const uint8_t *p, size_t n, size_t pos, bee_ac_match_fn on_match,
                void *user) {
    uint32_t s = *state;
    for (size_t i = 0; i < n; i++) {
        s = bee_ac_step(ac, s, p[i]);
        const ac_node *nd = &ac->nodes[s];
        if (nd->out < 0 && nd->dict == 0) continue; /* the common case: nothing ends here */
        bee_ac_iter it;
        uint32_t id, len;
        bee_ac_iter_init(ac, s, &it);
        while (bee_ac_iter_next(ac, &it, &id, &len)) {
            int rc = on_match(user, pos + i, id, len);
            if (rc) {
                *state = s;
                return rc;
            }
        }
    }
    *state = s;
    return 0;
}
