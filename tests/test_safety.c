/* Content-safety policy: normalisation, the Aho-Corasick automaton against a
 * naive matcher, whole-pipeline matches against a brute-force search of the
 * normalised text, masking, streaming with every chunk split, policy-file
 * errors, the audit table, and (with ../shared) the Chinese lexicons. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "safety/ac.h"
#include "safety/internal.h"
#include "safety/normalize.h"
#include "safety/safety.h"
#include "testutil.h"
#include "util/error.h"

#ifdef BEE_HAVE_SQLITE
#include <sqlite3.h>
#endif

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static char *norm(const char *s, unsigned flags) {
    size_t n;
    char *r = bee_norm_string(s, strlen(s), flags, &n);
    assert_non_null(r);
    assert_int_equal(strlen(r), n);
    return r;
}

static void expect_norm(const char *in, unsigned flags, const char *want) {
    char *got = norm(in, flags);
    if (strcmp(got, want) != 0) fail_msg("normalise '%s' (flags %u): got '%s', want '%s'", in, flags, got, want);
    free(got);
}

/* ================================================================ normalisation */

static void test_utf8_decode(void **st) {
    (void)st;
    uint32_t cp;
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xE4\xB8\xAD", 3, &cp), 3);
    assert_int_equal(cp, 0x4E2D);
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xE4\xB8", 2, &cp), 0);     /* incomplete */
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xE4\x41", 2, &cp), -1);    /* broken */
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xC0\x80", 2, &cp), -1);    /* overlong */
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xED\xA0\x80", 3, &cp), -1); /* surrogate */
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xF4\x90\x80\x80", 4, &cp), -1);
    assert_int_equal(bee_utf8_decode((const unsigned char *)"\xF0\x9F\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
}

static void test_normalize_cases(void **st) {
    (void)st;
    const unsigned D = BEE_NORM_DEFAULT;
    expect_norm("\xEF\xBC\xA8\xEF\xBD\x85\xEF\xBD\x8C\xEF\xBD\x8C\xEF\xBD\x8F", D, "hello"); /* ＨｅｌｌＯ */
    expect_norm("HeLLo", D, "hello");
    expect_norm("Hello, World!", D, "helloworld");
    expect_norm("Hello, World!", 0, "hello, world!");
    expect_norm("\xEF\xBC\x91\xEF\xBC\x92\xE3\x80\x80\xEF\xBC\x81", 0, "12 !"); /* １２　！ */
    expect_norm("炸\xE2\x80\x8B藥", D, "炸药");                                  /* zero-width space, traditional */
    expect_norm("炸\xE2\x80\x8B藥", 0, "炸藥");
    expect_norm("國家 說話", D, "国家说话");
    expect_norm("中\xEF\xBB\xBF文\xC2\xAD字", 0, "中文字"); /* BOM and soft hyphen inside */
    expect_norm("炸。药·包", D, "炸药包");
    expect_norm("炸\xF0\x9F\x92\xA3药★包", D, "炸药包"); /* emoji and symbols between characters */
    expect_norm("a\xFF" "b\xE4\xB8", D, "ab"); /* invalid and truncated bytes dropped */
    expect_norm("", D, "");
}

static void test_normalize_offsets(void **st) {
    (void)st;
    const char *in = "\xEF\xBD\x81-B 國"; /* ａ-B 國 */
    bee_norm_text t;
    assert_int_equal(bee_norm_text_init(&t, in, strlen(in), BEE_NORM_DEFAULT), 0);
    assert_int_equal(t.len, 5);
    assert_memory_equal(t.text, "ab\xE5\x9B\xBD", 5);
    size_t want_start[] = {0, 4, 6, 6, 6}, want_end[] = {3, 5, 9, 9, 9};
    uint8_t want_bnd[] = {1, 1, 1, 0, 0}; /* 'b' follows a removed '-': a word boundary */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(t.src_start[i], want_start[i]);
        assert_int_equal(t.src_end[i], want_end[i]);
        assert_int_equal(t.bnd[i], want_bnd[i]);
    }
    bee_norm_text_free(&t);
    assert_int_equal(bee_norm_text_init(&t, "ab", 2, BEE_NORM_DEFAULT), 0);
    assert_int_equal(t.bnd[1], 0);
    bee_norm_text_free(&t);
}

/* Every traditional form maps to something that maps to itself, so checked
 * text and lexicon entries meet in one form whatever mix they use. */
static void test_normalize_idempotent(void **st) {
    (void)st;
    static const char *samples[] = {"萬與專業東絲兩嚴個豐臨為麗舉", "後來發現說話", "槍彈藥殺賭騙黃錢網", "ＡＢＣａｂｃ！？",
                                    "mixed 國語 ＴＥＸＴ with ​ zero width"};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        char *a = norm(samples[i], BEE_NORM_DEFAULT), *b = norm(a, BEE_NORM_DEFAULT);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    for (uint32_t cp = 0x4E00; cp < 0xA000; cp++) {
        uint32_t m, m2;
        bee_norm_cp(cp, BEE_NORM_T2S, &m);
        bee_norm_cp(m, BEE_NORM_T2S, &m2);
        if (m != m2) fail_msg("U+%04X -> U+%04X -> U+%04X", cp, m, m2);
    }
}

/* ================================================================ Aho-Corasick */

typedef struct {
    size_t end; /* index one past the last byte */
    uint32_t id;
} hit;

static int hit_cmp(const void *x, const void *y) {
    const hit *a = x, *b = y;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void check_ac_against_naive(const char *alphabet, size_t n_alpha, int n_pats, size_t text_len) {
    char (*pats)[12] = malloc((size_t)n_pats * sizeof *pats);
    size_t *plen = malloc((size_t)n_pats * sizeof *plen);
    size_t max_len = n_pats > 64 ? 11 : 5;
    bee_ac *ac;
    assert_int_equal(bee_ac_init(&ac), 0);
    for (int i = 0; i < n_pats; i++) {
        plen[i] = 1 + rnd((uint32_t)max_len);
        for (size_t j = 0; j < plen[i]; j++) pats[i][j] = alphabet[rnd((uint32_t)n_alpha)];
        assert_int_equal(bee_ac_add(ac, pats[i], plen[i], (uint32_t)i), 0);
    }
    assert_int_equal(bee_ac_build(ac), 0);
    if (n_pats > 64 && bee_ac_n_states(ac) < 4096 + 2000) fail_msg("only %zu states", bee_ac_n_states(ac));
    char *text = malloc(text_len);
    for (size_t i = 0; i < text_len; i++) text[i] = alphabet[rnd((uint32_t)n_alpha)];
    size_t cap = text_len * (size_t)n_pats + 1, na = 0, nb = 0;
    hit *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    uint32_t s = 0;
    for (size_t i = 0; i < text_len; i++) {
        s = bee_ac_step(ac, s, (uint8_t)text[i]);
        bee_ac_iter it;
        uint32_t id, len;
        bee_ac_iter_init(ac, s, &it);
        while (bee_ac_iter_next(ac, &it, &id, &len)) {
            assert_int_equal(len, plen[id]);
            a[na++] = (hit){i + 1, id};
        }
        /* depth: the longest suffix that is a prefix of some pattern;
         * hold: the longest that is a proper prefix (can still grow) */
        uint32_t want_depth = 0, want_hold = 0;
        for (int p = 0; p < n_pats; p++)
            for (size_t d = plen[p]; d > want_hold; d--)
                if (d <= i + 1 && memcmp(text + i + 1 - d, pats[p], d) == 0) {
                    if (d > want_depth) want_depth = (uint32_t)d;
                    if (d < plen[p] && d > want_hold) want_hold = (uint32_t)d;
                }
        assert_int_equal(bee_ac_depth(ac, s), want_depth);
        assert_int_equal(bee_ac_hold(ac, s), want_hold);
    }
    for (size_t i = 0; i < text_len; i++)
        for (int p = 0; p < n_pats; p++)
            if (i + plen[p] <= text_len && memcmp(text + i, pats[p], plen[p]) == 0) b[nb++] = (hit){i + plen[p], (uint32_t)p};
    qsort(a, na, sizeof *a, hit_cmp);
    qsort(b, nb, sizeof *b, hit_cmp);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(a[i].end, b[i].end);
        assert_int_equal(a[i].id, b[i].id);
    }
    free(a);
    free(b);
    free(text);
    free(pats);
    free(plen);
    bee_ac_free(ac);
}

static void test_ac_random_vs_naive(void **st) {
    (void)st;
    static const char small[] = "ab", mid[] = "abcd";
    static const char bytes[] = {'a', 'b', (char)0xE4, (char)0xB8, (char)0xAD, (char)0x00, (char)0xFF};
    for (int round = 0; round < 60; round++) {
        check_ac_against_naive(small, 2, 1 + rnd(12), 300);
        check_ac_against_naive(mid, 4, 1 + rnd(40), 400);
        check_ac_against_naive(bytes, sizeof bytes, 1 + rnd(64), 400);
    }
    /* enough states that only the shallowest get full transition rows and the
     * rest use edge arrays and failure links */
    check_ac_against_naive(mid, 4, 3000, 1500);
    check_ac_against_naive(bytes, sizeof bytes, 3000, 1500);
}

static void test_ac_overlapping(void **st) {
    (void)st;
    static const char *pats[] = {"he", "she", "his", "hers", "s"};
    bee_ac *ac;
    assert_int_equal(bee_ac_init(&ac), 0);
    for (uint32_t i = 0; i < 5; i++) assert_int_equal(bee_ac_add(ac, pats[i], strlen(pats[i]), i), 0);
    assert_int_equal(bee_ac_add(ac, "", 0, 9), -1);
    assert_int_equal(bee_ac_build(ac), 0);
    assert_int_equal(bee_ac_add(ac, "x", 1, 9), -1);
    const char *text = "ushers";
    char got[128] = "";
    uint32_t s = 0;
    for (size_t i = 0; text[i]; i++) {
        s = bee_ac_step(ac, s, (uint8_t)text[i]);
        bee_ac_iter it;
        uint32_t id, len;
        bee_ac_iter_init(ac, s, &it);
        while (bee_ac_iter_next(ac, &it, &id, &len))
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s@%zu ", pats[id], i + 1 - len);
    }
    /* longest first at each end position */
    assert_string_equal(got, "s@1 she@1 he@2 hers@2 s@5 ");
    bee_ac_free(ac);
}

/* ================================================================ policies built in code */

static bee_safety_policy *make_policy(unsigned flags, const char *const *terms, const int *cats, size_t n,
                                      const bee_safety_action *actions, size_t n_cats) {
    bee_safety_policy *p;
    assert_int_equal(bee_safety_policy_new(flags, &p), 0);
    for (size_t c = 0; c < n_cats; c++) {
        char name[32];
        snprintf(name, sizeof name, "cat%zu", c);
        assert_int_equal(bee_safety_policy_add_category(p, name, actions[c]), (int)c);
    }
    for (size_t i = 0; i < n; i++) assert_int_equal(bee_safety_policy_add_term(p, cats[i], terms[i], strlen(terms[i])), 0);
    assert_int_equal(bee_safety_policy_compile(p), 0);
    return p;
}

static void test_policy_masking(void **st) {
    (void)st;
    static const char *terms[] = {"炸药", "ass", "賭博"};
    static const int cats[] = {0, 0, 1};
    static const bee_safety_action acts[] = {BEE_SAFETY_MASK, BEE_SAFETY_LOG};
    bee_safety_policy *p = make_policy(BEE_NORM_DEFAULT, terms, cats, 3, acts, 2);
    const char *in = "abc 炸 药 xyz\xFF 炸藥! class A.S.S 赌博 pass";
    bee_safety_result r;
    assert_int_equal(bee_safety_check(p, in, strlen(in), &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_MASK);
    /* 'class' and 'pass' contain "ass" but not as a word; A.S.S is one */
    assert_string_equal(r.text, "abc ＊＊＊ xyz\xFF ＊＊! class ＊＊＊＊＊ 赌博 pass");
    assert_int_equal(r.n_matches, 4);
    assert_string_equal(r.matches[0].term, "炸药");
    assert_int_equal(r.matches[0].start, 4);
    assert_int_equal(r.matches[0].end, 11);
    assert_string_equal(r.matches[3].category_name, "cat1");
    assert_string_equal(r.matches[3].term, "賭博");
    assert_int_equal(r.matches[3].action, BEE_SAFETY_LOG);
    bee_safety_result_free(&r);
    /* a custom mask, and no matches at all */
    assert_int_equal(bee_safety_check(p, "hello", 5, &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_ALLOW);
    assert_string_equal(r.text, "hello");
    bee_safety_result_free(&r);
    bee_safety_policy_free(p);
}

/* Masking changes nothing outside the reported mask spans, and each masked
 * character becomes exactly one mask string. */
static void test_masking_preserves_bytes(void **st) {
    (void)st;
    static const char *terms[] = {"ab", "bca", "中文", "x"};
    static const int cats[] = {0, 0, 0, 1};
    static const bee_safety_action acts[] = {BEE_SAFETY_MASK, BEE_SAFETY_LOG};
    bee_safety_policy *p = make_policy(BEE_NORM_DEFAULT, terms, cats, 4, acts, 2);
    assert_int_equal(bee_safety_policy_set_mask(p, "*"), 0);
    static const char *pieces[] = {"a", "b", "c", "x", " ", "中", "文", "\xFF", "Ａ", "\xE2\x80\x8B", "-"};
    for (int round = 0; round < 300; round++) {
        char text[256] = "";
        size_t n = 0;
        for (int k = rnd(30); k >= 0; k--) {
            const char *pc = pieces[rnd(11)];
            memcpy(text + n, pc, strlen(pc));
            n += strlen(pc);
        }
        bee_safety_result r;
        assert_int_equal(bee_safety_check(p, text, n, &r), 0);
        uint8_t masked[256] = {0};
        for (size_t i = 0; i < r.n_matches; i++)
            if (r.matches[i].action == BEE_SAFETY_MASK)
                for (uint64_t b = r.matches[i].start; b < r.matches[i].end; b++) masked[b] = 1;
        bee_str want = {0};
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int k = bee_utf8_decode((const unsigned char *)text + i, n - i, &cp);
            size_t len = k > 0 ? (size_t)k : 1;
            if (masked[i]) bee_str_append(&want, "*", 1);
            else bee_str_append(&want, text + i, len);
            i += len;
        }
        assert_int_equal(r.len, want.n);
        assert_memory_equal(r.text, want.n ? want.s : "", want.n);
        bee_str_free(&want);
        bee_safety_result_free(&r);
    }
    bee_safety_policy_free(p);
}

/* ================================================================ whole pipeline vs brute force */

typedef struct {
    int cat;
    uint64_t start, end;
    const char *term;
} flat_match;

static int flat_cmp(const void *x, const void *y) {
    const flat_match *a = x, *b = y;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    if (a->cat != b->cat) return a->cat < b->cat ? -1 : 1;
    return strcmp(a->term, b->term);
}

/* Searches every pattern at every position of the normalised text. */
static size_t naive_matches(const bee_safety_policy *p, const char *text, size_t n, flat_match *out) {
    bee_norm_text t;
    assert_int_equal(bee_norm_text_init(&t, text, n, p->flags), 0);
    size_t k = 0;
    for (size_t i = 0; i < p->n_pats; i++) {
        const safety_pattern *sp = &p->pats[i];
        for (size_t j = 0; j + sp->len <= t.len; j++) {
            if (memcmp(t.text + j, sp->norm, sp->len) != 0) continue;
            if (sp->need_left && !t.bnd[j]) continue;
            if (sp->need_right && j + sp->len < t.len && !t.bnd[j + sp->len]) continue;
            out[k++] = (flat_match){sp->cat, t.src_start[j], t.src_end[j + sp->len - 1], sp->term};
        }
    }
    bee_norm_text_free(&t);
    qsort(out, k, sizeof *out, flat_cmp);
    return k;
}

static size_t flatten(const bee_safety_match *m, size_t n, flat_match *out) {
    for (size_t i = 0; i < n; i++) out[i] = (flat_match){m[i].category, m[i].start, m[i].end, m[i].term};
    qsort(out, n, sizeof *out, flat_cmp);
    return n;
}

static void expect_same_matches(const flat_match *a, size_t na, const flat_match *b, size_t nb, const char *what) {
    if (na != nb) fail_msg("%s: %zu matches vs %zu", what, na, nb);
    for (size_t i = 0; i < na; i++)
        if (flat_cmp(&a[i], &b[i]) != 0)
            fail_msg("%s: match %zu differs: [%llu,%llu) %s vs [%llu,%llu) %s", what, i, (unsigned long long)a[i].start,
                     (unsigned long long)a[i].end, a[i].term, (unsigned long long)b[i].start,
                     (unsigned long long)b[i].end, b[i].term);
}

static const char *k_pieces[] = {"a", "b", "ab", "Ｂ", " ", ".", "中", "國", "国", "文", "\xE2\x80\x8D", "\xFF", "\xE4", "1", "！"};
static const char *k_terms[] = {"ab", "ba", "a", "b1", "中国", "国文", "中 國文", "b.a.b", "中", "1"};

static void random_text(char *text, size_t *n, int max_pieces) {
    *n = 0;
    for (int k = rnd((uint32_t)max_pieces); k >= 0; k--) {
        const char *pc = k_pieces[rnd(sizeof k_pieces / sizeof *k_pieces)];
        memcpy(text + *n, pc, strlen(pc));
        *n += strlen(pc);
    }
}

static void test_pipeline_vs_naive(void **st) {
    (void)st;
    static const bee_safety_action acts[] = {BEE_SAFETY_LOG, BEE_SAFETY_MASK, BEE_SAFETY_LOG};
    for (unsigned flags = 0; flags < 4; flags++) {
        for (int round = 0; round < 40; round++) {
            const char *terms[6];
            int cats[6];
            size_t nt = 1 + rnd(6);
            for (size_t i = 0; i < nt; i++) {
                terms[i] = k_terms[rnd(sizeof k_terms / sizeof *k_terms)];
                cats[i] = (int)rnd(3);
            }
            bee_safety_policy *p = make_policy(flags, terms, cats, nt, acts, 3);
            for (int t = 0; t < 20; t++) {
                char text[1024];
                size_t n;
                random_text(text, &n, 60);
                flat_match a[4096], b[4096];
                bee_safety_result r;
                assert_int_equal(bee_safety_check(p, text, n, &r), 0);
                size_t na = flatten(r.matches, r.n_matches, a), nb = naive_matches(p, text, n, b);
                expect_same_matches(a, na, b, nb, "automaton vs brute force");
                bee_safety_result_free(&r);
            }
            bee_safety_policy_free(p);
        }
    }
}

/* ================================================================ streaming */

typedef struct {
    bee_safety_action action;
    flat_match m[512];
    size_t n;
    bee_str out;
} stream_run;

static void run_stream(const bee_safety_policy *p, const char *text, size_t n, const size_t *cuts, size_t n_cuts,
                       stream_run *r) {
    bee_safety_stream *s;
    assert_int_equal(bee_safety_stream_init(&s, p), 0);
    memset(&r->out, 0, sizeof r->out);
    size_t prev = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t to = i < n_cuts ? cuts[i] : n;
        assert_int_equal(bee_safety_stream_push(s, text + prev, to - prev, &r->out), 0);
        prev = to;
    }
    assert_int_equal(bee_safety_stream_finish(s, &r->out), 0);
    assert_int_equal(bee_safety_stream_held(s), 0);
    assert_int_equal(bee_safety_stream_push(s, "x", 1, &r->out), -1);
    size_t nm;
    const bee_safety_match *m = bee_safety_stream_matches(s, &nm);
    assert_true(nm <= 512);
    r->n = flatten(m, nm, r->m);
    r->action = bee_safety_stream_action(s);
    bee_safety_stream_free(s);
}

static void expect_same_run(const stream_run *a, const stream_run *b, const char *what) {
    assert_int_equal(a->action, b->action);
    expect_same_matches(a->m, a->n, b->m, b->n, what);
    if (a->action != BEE_SAFETY_BLOCK) {
        assert_int_equal(a->out.n, b->out.n);
        assert_memory_equal(a->out.n ? a->out.s : "", b->out.n ? b->out.s : "", a->out.n);
    }
}

static void check_all_splits(const bee_safety_policy *p, const char *text, size_t n) {
    stream_run whole, part;
    run_stream(p, text, n, NULL, 0, &whole);
    bee_safety_result r;
    assert_int_equal(bee_safety_check(p, text, n, &r), 0);
    assert_int_equal(r.action, whole.action);
    bee_safety_result_free(&r);
    for (size_t i = 0; i <= n; i++) { /* every two-chunk split */
        run_stream(p, text, n, &i, 1, &part);
        expect_same_run(&whole, &part, "two chunks");
        bee_str_free(&part.out);
    }
    for (size_t i = 0; i <= n; i++) /* every three-chunk split with a one-byte middle */
        if (i + 1 <= n) {
            size_t cuts[2] = {i, i + 1};
            run_stream(p, text, n, cuts, 2, &part);
            expect_same_run(&whole, &part, "three chunks");
            bee_str_free(&part.out);
        }
    size_t *cuts = malloc((n + 1) * sizeof *cuts); /* byte by byte */
    for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
    run_stream(p, text, n, cuts, n, &part);
    expect_same_run(&whole, &part, "byte by byte");
    bee_str_free(&part.out);
    free(cuts);
    bee_str_free(&whole.out);
}

static void test_stream_every_split(void **st) {
    (void)st;
    static const char *terms[] = {"炸药", "炸药包", "ass", "賭博", "b.a", "中國"};
    static const int cats[] = {0, 0, 1, 2, 1, 0};
    static const bee_safety_action acts[] = {BEE_SAFETY_MASK, BEE_SAFETY_LOG, BEE_SAFETY_BLOCK};
    bee_safety_policy *p = make_policy(BEE_NORM_DEFAULT, terms, cats, 6, acts, 3);
    const char *texts[] = {
        "前面 炸\xE2\x80\x8B藥包 中間 A S S ba 中 国 尾巴",
        "class ass\xFF 炸 药",
        "赌 博 then more text after the blocked word 炸药",
        "\xE4\xB8\xAD\xE5\x9C\x8B\xE4\xB8",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) check_all_splits(p, texts[i], strlen(texts[i]));
    for (int round = 0; round < 30; round++) {
        char text[1024];
        size_t n;
        random_text(text, &n, 25);
        check_all_splits(p, text, n);
    }
    bee_safety_policy_free(p);
}

static void test_stream_holds_minimal_tail(void **st) {
    (void)st;
    static const char *terms[] = {"炸药", "abc"};
    static const int cats[] = {0, 1};
    static const bee_safety_action acts[] = {BEE_SAFETY_BLOCK, BEE_SAFETY_MASK};
    bee_safety_policy *p = make_policy(BEE_NORM_DEFAULT, terms, cats, 2, acts, 2);
    bee_safety_stream *s;
    bee_str out = {0};
    assert_int_equal(bee_safety_stream_init(&s, p), 0);
    assert_int_equal(bee_safety_stream_push(s, "hello ", 6, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 0);
    assert_int_equal(out.n, 6);
    assert_int_equal(bee_safety_stream_push(s, "ab", 2, &out), 0); /* could become "abc" */
    assert_int_equal(bee_safety_stream_held(s), 2);
    assert_int_equal(bee_safety_stream_push(s, "c", 1, &out), 0); /* "abc" needs a boundary after it */
    assert_int_equal(bee_safety_stream_held(s), 3);
    assert_int_equal(bee_safety_stream_push(s, " 好\xE7\x82", 6, &out), 0); /* half of 炸 */
    assert_int_equal(bee_safety_stream_held(s), 2);
    assert_string_equal(out.s, "hello ＊＊＊ 好");
    assert_int_equal(bee_safety_stream_push(s, "\xB8", 1, &out), 0); /* 炸: a prefix of 炸药 */
    assert_int_equal(bee_safety_stream_held(s), 3);
    assert_int_equal(bee_safety_stream_push(s, "药 and more", 13, &out), 0);
    assert_int_equal(bee_safety_stream_action(s), BEE_SAFETY_BLOCK);
    assert_int_equal(bee_safety_stream_finish(s, &out), 0);
    assert_null(strstr(out.s, "\xE7\x82\xB8")); /* the blocked term was never emitted */
    assert_string_equal(out.s, "hello ＊＊＊ 好");
    bee_str_free(&out);
    bee_safety_stream_free(s);
    bee_safety_policy_free(p);

    /* a complete term that cannot grow is decided at once; a word waits only
     * for the boundary after it, unless it may still grow into a longer term */
    static const char *terms2[] = {"赌博", "ass", "butt", "butthead"};
    static const int cats2[] = {0, 0, 0, 0};
    static const bee_safety_action acts2[] = {BEE_SAFETY_MASK};
    p = make_policy(BEE_NORM_DEFAULT, terms2, cats2, 4, acts2, 1);
    assert_int_equal(bee_safety_stream_init(&s, p), 0);
    assert_int_equal(bee_safety_stream_push(s, "赌博", 6, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 0);
    assert_int_equal(bee_safety_stream_push(s, " ass", 4, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 3); /* "assx" would not match */
    assert_int_equal(bee_safety_stream_push(s, " ", 1, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 0);
    assert_string_equal(out.s, "＊＊ ＊＊＊ ");
    assert_int_equal(bee_safety_stream_push(s, "butt ", 5, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 5); /* "butt head" would be "butthead" */
    assert_int_equal(bee_safety_stream_push(s, "head!", 5, &out), 0);
    assert_int_equal(bee_safety_stream_held(s), 0);
    assert_string_equal(out.s, "＊＊ ＊＊＊ ＊＊＊＊＊＊＊＊＊!");
    assert_int_equal(bee_safety_stream_finish(s, &out), 0);
    bee_str_free(&out);
    bee_safety_stream_free(s);
    bee_safety_policy_free(p);
}

/* ================================================================ policy files */

static void expect_policy_error(const char *json, const char *needle) {
    bee_safety_policy *p = NULL;
    bee_error_clear();
    if (bee_safety_policy_parse(json, strlen(json), "pol.json", tu_tmpdir(), &p) == 0) {
        bee_safety_policy_free(p);
        fail_msg("policy accepted: %s", json);
    }
    if (!strstr(bee_error_message(), needle))
        fail_msg("policy %s: error '%s' lacks '%s'", json, bee_error_message(), needle);
    if (!strstr(bee_error_message(), "pol.json")) fail_msg("error '%s' does not name the file", bee_error_message());
}

static void test_policy_file_errors(void **st) {
    (void)st;
    expect_policy_error("{\"categories\": ", "invalid JSON");
    expect_policy_error("[]", "expected a JSON object");
    expect_policy_error("{\"categories\": {}}", "categories: expected a non-empty object");
    expect_policy_error("{\"categoriez\": {}}", "categoriez: unknown field");
    expect_policy_error("{\"categories\": {\"x\": {\"action\": \"blok\", \"terms\": [\"a\"]}}}",
                        "categories.x.action: expected \"log\", \"mask\" or \"block\", got \"blok\"");
    expect_policy_error("{\"default_action\": 3, \"categories\": {\"x\": {\"terms\": [\"a\"]}}}", "default_action");
    expect_policy_error("{\"categories\": {\"x\": {\"action\": \"log\"}}}", "categories.x: needs");
    expect_policy_error("{\"categories\": {\"x\": {\"terms\": \"a\"}}}", "categories.x.terms: expected an array");
    expect_policy_error("{\"categories\": {\"x\": {\"terms\": [1]}}}", "categories.x.terms[0]");
    expect_policy_error("{\"categories\": {\"x\": {\"lexicons\": [\"nope.txt\"]}}}", "categories.x.lexicons[0]");
    expect_policy_error("{\"categories\": {\"x\": {\"lexicons\": [\"nope.txt\"]}}}", "nope.txt: cannot open");
    expect_policy_error("{\"categories\": {\"x\": {\"terms\": [\"a\"], \"colour\": 1}}}", "categories.x.colour: unknown");
    expect_policy_error("{\"normalize\": {\"skip_separators\": 1}, \"categories\": {\"x\": {\"terms\": [\"a\"]}}}",
                        "normalize.skip_separators: expected true or false");
    expect_policy_error("{\"mask\": \"\", \"categories\": {\"x\": {\"terms\": [\"a\"]}}}", "mask");
    expect_policy_error("{\"categories\": {\"x\": {\"terms\": [\"a\"]}, \"x\": {\"terms\": [\"b\"]}}}", "duplicate");
}

static void test_policy_file_ok(void **st) {
    (void)st;
    tu_write(tu_tmp("words.txt"), "# comment\n\xEF\xBB\xBF" "first\r\n\n  second term  \n...\n", 41);
    const char *json = "{\"default_action\": \"mask\", \"mask\": \"#\", \"normalize\": {\"skip_separators\": false},"
                       " \"categories\": {\"w\": {\"lexicons\": [\"words.txt\"]}, \"b\": {\"action\": \"block\","
                       " \"terms\": [\"bad\", \"BAD\"]}}}";
    tu_write(tu_tmp("pol.json"), json, strlen(json));
    bee_safety_policy *p;
    if (bee_safety_policy_load(tu_tmp("pol.json"), &p)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_safety_policy_n_categories(p), 2);
    bee_safety_action a;
    assert_string_equal(bee_safety_policy_category(p, 0, &a), "w");
    assert_int_equal(a, BEE_SAFETY_MASK);
    assert_string_equal(bee_safety_policy_category(p, 1, &a), "b");
    assert_int_equal(a, BEE_SAFETY_BLOCK);
    assert_int_equal(bee_safety_policy_n_terms(p), 4); /* "..." kept (separators not skipped), BAD = bad */
    bee_safety_result r;
    const char *text = "First, then SECOND TERM; not secondterm";
    assert_int_equal(bee_safety_check(p, text, strlen(text), &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_MASK);
    assert_string_equal(r.text, "#####, then ###########; not secondterm");
    bee_safety_result_free(&r);
    assert_int_equal(bee_safety_check(p, "Bad!", 4, &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_BLOCK);
    assert_null(r.text);
    bee_safety_result_free(&r);
    bee_safety_policy_free(p);
}

/* ================================================================ audit */

static void test_audit_rows(void **st) {
    (void)st;
#ifndef BEE_HAVE_SQLITE
    fprintf(stderr, "SKIP: built without SQLite\n");
    skip();
#else
    static const char *terms[] = {"炸药", "spam"};
    static const int cats[] = {0, 1};
    static const bee_safety_action acts[] = {BEE_SAFETY_BLOCK, BEE_SAFETY_LOG};
    bee_safety_policy *p = make_policy(BEE_NORM_DEFAULT, terms, cats, 2, acts, 2);
    bee_safety_result r;
    const char *text = "SPAM 炸藥";
    assert_int_equal(bee_safety_check(p, text, strlen(text), &r), 0);
    assert_int_equal(r.n_matches, 2);
    const char *db = tu_tmp("audit.sqlite");
    bee_safety_audit *a;
    if (bee_safety_audit_open(db, &a)) fail_msg("%s", bee_error_message());
    assert_int_equal(bee_safety_audit_record(a, "req-1", BEE_SAFETY_STAGE_OUTPUT, r.matches, r.n_matches), 0);
    assert_int_equal(bee_safety_audit_record(a, "req-2", BEE_SAFETY_STAGE_PROMPT, r.matches, 1), 0);
    assert_int_equal(bee_safety_audit_record(a, "req-3", (bee_safety_stage)7, r.matches, 1), -1);
    bee_safety_audit_close(a);
    bee_safety_result_free(&r);
    bee_safety_policy_free(p);

    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "SELECT request_id, stage, category, action, term, start, end, time"
                                        " FROM safety_audit ORDER BY id",
                                        -1, &q, NULL),
                     SQLITE_OK);
    static const char *want[3][5] = {{"req-1", "output", "cat1", "log", "spam"},
                                     {"req-1", "output", "cat0", "block", "炸药"},
                                     {"req-2", "prompt", "cat1", "log", "spam"}};
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        assert_true(rows < 3);
        for (int c = 0; c < 5; c++) assert_string_equal((const char *)sqlite3_column_text(q, c), want[rows][c]);
        assert_int_equal(sqlite3_column_int64(q, 6) - sqlite3_column_int64(q, 5), rows == 1 ? 6 : 4);
        assert_int_equal(strlen((const char *)sqlite3_column_text(q, 7)), 24); /* 2026-01-01T00:00:00.000Z */
        rows++;
    }
    assert_int_equal(rows, 3);
    sqlite3_finalize(q);
    sqlite3_close(h);
#endif
}

/* ================================================================ CLI */

static void expect_cli(int want_rc, const char *needle, const char *args) {
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s safety check %s", tu_bee(), args);
    int rc = tu_run(cmd, &out);
    if (rc != want_rc || !strstr(out, needle)) fail_msg("%s: exit %d (want %d), output:\n%s\n(want '%s')", cmd, rc, want_rc, out, needle);
    free(out);
}

static void test_cli_check(void **st) {
    (void)st;
    const char *json = "{\"categories\": {\"m\": {\"action\": \"mask\", \"terms\": [\"炸药\"]},"
                       " \"b\": {\"action\": \"block\", \"terms\": [\"赌博\"]}}}";
    const char *pol = tu_tmp("cli-policy.json"), *ok = tu_tmp("ok.txt"), *bad = tu_tmp("bad.txt");
    tu_write(pol, json, strlen(json));
    tu_write(ok, "买 炸藥 吗", 14);
    tu_write(bad, "一起賭博", 12);
    char args[4096];
    snprintf(args, sizeof args, "--policy %s %s", pol, ok);
    expect_cli(0, "decision: mask\nmatch: m mask 4-10 炸药\n---\n买 ＊＊ 吗", args);
    snprintf(args, sizeof args, "--policy %s --chunk 1 --json < %s", pol, ok);
    expect_cli(0, "\"text\": \"买 ＊＊ 吗\"", args);
    snprintf(args, sizeof args, "--policy %s --json %s", pol, bad);
    expect_cli(1, "{\"decision\": \"block\", \"matches\": [{\"category\": \"b\"", args);
    snprintf(args, sizeof args, "--policy %s --stage sideways %s", pol, ok);
    expect_cli(2, "--stage: expected prompt or output", args);
    snprintf(args, sizeof args, "--policy %s %s", tu_tmp("no-policy.json"), ok);
    expect_cli(2, "no-policy.json: cannot open", args);
    expect_cli(2, "missing --policy", ok);
#ifdef BEE_HAVE_SQLITE
    const char *db = tu_tmp("cli-audit.sqlite");
    snprintf(args, sizeof args, "--policy %s --audit %s --request-id abc --stage prompt %s", pol, db, bad);
    expect_cli(1, "decision: block", args);
    sqlite3 *h;
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT request_id || ' ' || stage || ' ' || term FROM safety_audit", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "abc prompt 赌博");
    assert_int_equal(sqlite3_step(q), SQLITE_DONE);
    sqlite3_finalize(q);
    sqlite3_close(h);
#endif
}

/* The shipped example policy parses and works once scripts/fetch-lexicons.sh
 * has fetched its lexicons (skipped before that). */
static void test_example_policy(void **st) {
    (void)st;
    char root[4096], path[4200];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *slash = strrchr(root, '/');
    if (!slash) skip();
    *slash = 0;
    snprintf(path, sizeof path, "%s/../.cache/lexicons/naughty-words-en.txt", root);
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "SKIP: %s not fetched (run scripts/fetch-lexicons.sh)\n", path);
        skip();
    }
    snprintf(path, sizeof path, "%s/../deploy/policy.example.json", root);
    bee_safety_policy *p;
    if (bee_safety_policy_load(path, &p)) fail_msg("%s", bee_error_message());
    assert_true(bee_safety_policy_n_terms(p) > 500);
    const char *text = "What the Ｆｕｃｋ, 出售 炸藥";
    bee_safety_result r;
    assert_int_equal(bee_safety_check(p, text, strlen(text), &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_BLOCK);
    assert_int_equal(r.n_matches, 2);
    bee_safety_result_free(&r);
    bee_safety_policy_free(p);
}

/* ================================================================ shared Chinese lexicons */

static const char *k_lexicons[] = {"advertising", "illegal-urls", "sexual-1", "sexual-2", "violence-terror",
                                   "weapons-explosives"};

static void test_shared_lexicons(void **st) {
    (void)st;
    struct stat sb;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_shared("data/lexicon-zh"));
    if (stat(dir, &sb) != 0) {
        fprintf(stderr, "SKIP: %s not found (set BEE_SHARED_DIR; it sits beside the clone)\n", dir);
        skip();
    }
    bee_str json = {0};
    bee_str_appendz(&json, "{\"categories\": {");
    for (size_t i = 0; i < 6; i++)
        bee_str_printf(&json, "%s\"%s\": {\"action\": \"%s\", \"lexicons\": [\"%s/%s.txt\"]}", i ? ", " : "",
                       k_lexicons[i], i == 5 ? "block" : "mask", dir, k_lexicons[i]);
    bee_str_appendz(&json, "}}");
    bee_safety_policy *p;
    clock_t t0 = clock();
    if (bee_safety_policy_parse(json.s, json.n, "lexicon-zh", NULL, &p)) fail_msg("%s", bee_error_message());
    double build_s = (double)(clock() - t0) / CLOCKS_PER_SEC;
    bee_str_free(&json);
    assert_true(bee_safety_policy_n_terms(p) > 10000);
    fprintf(stderr, "lexicon-zh: %zu terms, %zu states, built in %.3f s\n", bee_safety_policy_n_terms(p),
            bee_ac_n_states(p->ac), build_s);
    /* 出售炸药 is an entry of weapons-explosives; written traditional with a space */
    const char *text = "今天天气很好，出售 炸藥，联系我。";
    bee_safety_result r;
    assert_int_equal(bee_safety_check(p, text, strlen(text), &r), 0);
    assert_int_equal(r.action, BEE_SAFETY_BLOCK);
    int found = 0;
    for (size_t i = 0; i < r.n_matches; i++)
        found |= strcmp(r.matches[i].category_name, "weapons-explosives") == 0 && strcmp(r.matches[i].term, "出售炸药") == 0;
    assert_true(found);
    bee_safety_result_free(&r);
    /* the whole pipeline against brute force on text made of lexicon fragments */
    for (int round = 0; round < 5; round++) {
        bee_str t = {0};
        for (int k = 0; k < 40; k++) {
            const safety_pattern *sp = &p->pats[rnd((uint32_t)p->n_pats)];
            size_t cut = sp->len > 3 ? 3 * (1 + rnd((uint32_t)(sp->len / 3))) : sp->len;
            bee_str_append(&t, sp->term, rnd(2) ? strlen(sp->term) : (cut < strlen(sp->term) ? cut : strlen(sp->term)));
            bee_str_appendz(&t, rnd(3) ? "的" : " ");
        }
        static flat_match a[8192], b[8192];
        assert_int_equal(bee_safety_check(p, t.s, t.n, &r), 0);
        size_t na = flatten(r.matches, r.n_matches, a), nb = naive_matches(p, t.s, t.n, b);
        expect_same_matches(a, na, b, nb, "lexicon-zh automaton vs brute force");
        bee_safety_result_free(&r);
        bee_str_free(&t);
    }
    bee_safety_policy_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_decode),
        cmocka_unit_test(test_normalize_cases),
        cmocka_unit_test(test_normalize_offsets),
        cmocka_unit_test(test_normalize_idempotent),
        cmocka_unit_test(test_ac_random_vs_naive),
        cmocka_unit_test(test_ac_overlapping),
        cmocka_unit_test(test_policy_masking),
        cmocka_unit_test(test_masking_preserves_bytes),
        cmocka_unit_test(test_pipeline_vs_naive),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_holds_minimal_tail),
        cmocka_unit_test(test_policy_file_errors),
        cmocka_unit_test(test_policy_file_ok),
        cmocka_unit_test(test_audit_rows),
        cmocka_unit_test(test_cli_check),
        cmocka_unit_test(test_example_policy),
        cmocka_unit_test(test_shared_lexicons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
