/* digest_bench: ROUGE-L (src/eval: Chinese per character, English per word)
 * of the extractive digest against references, next to simple baselines.
 *
 * Input: JSONL, one item per line {"question", "answers": [...], "reference"}
 * in the `bee digest` input form. For each item it scores
 *   digest@1   the first point of the extractive digest
 *   digest@K   the first K points joined
 *   lead       the first sentence of the first answer
 *   random     a seeded random sentence of the item
 *   oracle     the single input sentence with the best ROUGE-L (an upper bound for one sentence)
 * and prints mean ± standard error for each, plus the digest time per item.
 * With -m MODEL.gguf the digest is the model (map-reduce) digest instead,
 * and the raw model outputs' citation marks are counted: [x] marks naming an
 * id given in that prompt (kept) and the others (dropped by the digest's
 * repair); every final cite is checked to be an input answer.
 * usage: digest_bench --items FILE.jsonl [-k K] [--name NAME] [--json]
 *        [-m MODEL.gguf [--max-length N] [--beam K] [--ctx N] [--threads N] [--raw]] [--limit N]
 * --raw keeps the model's text even when it has no content (no extractive
 * fallback: the model's own score). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/digest.h"
#include "generate/generate.h"
#include "model/model.h"
#include "tokenizer/dict.h"
#include "eval/eval.h"
#include "util/buf.h"
#include "util/error.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* model calls: beam search like the digest's own generator, counting the citation marks it writes */
typedef struct {
    const bee_model *m;
    int beam;
    size_t calls, marks, marks_kept, marks_dropped, empty;
} gen_count;

static int counting_gen(void *user, json_t *dict, int max_length, char **answer) {
    gen_count *g = user;
    bee_gen_input gi;
    if (bee_gen_input_init(g->m->tok, dict, &gi)) return -1;
    bee_beam_params bp;
    bee_beam_params_default(&bp);
    bp.beam_size = g->beam;
    bp.max_length = max_length;
    json_t *out = NULL;
    int rc = bee_beam_search(g->m, &gi, 1, &bp, &out);
    bee_gen_input_free(&gi);
    const char *a = rc == 0 ? json_string_value(json_object_get(out, "<ans>")) : NULL;
    if (rc == 0 && !a) rc = bee_fail("model output has no <ans> string");
    if (rc == 0) {
        g->calls++;
        g->empty += a[0] == 0;
        const char *input = json_string_value(json_object_get(dict, "input"));
        for (const char *p = strchr(a, '['); p; p = strchr(p + 1, '[')) {
            const char *e = strchr(p + 1, ']');
            if (!e || e - p - 1 > 64 || memchr(p + 1, '[', (size_t)(e - p - 1))) continue;
            g->marks++;
            /* kept when "[id]" starts a line of this prompt's input (the digest's own rule is the same: ids of the chunk) */
            char mark[80];
            snprintf(mark, sizeof mark, "%.*s", (int)(e - p + 1), p);
            int ok = 0;
            for (const char *q = input ? strstr(input, mark) : NULL; q && !ok; q = strstr(q + 1, mark))
                ok = q == input || q[-1] == '\n';
            if (ok) g->marks_kept++;
            else g->marks_dropped++;
        }
        if (!(*answer = strdup(a))) rc = bee_fail("out of memory");
    }
    json_decref(out);
    return rc;
}

enum { S_D1, S_DK, S_LEAD, S_RAND, S_ORACLE, S_N };
static const char *k_names[S_N] = {"digest@1", "digest@K", "lead", "random", "oracle"};

int main(int argc, char **argv) {
    const char *items = NULL, *name = "items", *model = NULL;
    int raw = 0, k = 3, as_json = 0, max_length = 64, beam = 3, ctx = 2048, threads = 0, limit = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--items") && i + 1 < argc) items = argv[++i];
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--name") && i + 1 < argc) name = argv[++i];
        else if (!strcmp(argv[i], "--json")) as_json = 1;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--max-length") && i + 1 < argc) max_length = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--beam") && i + 1 < argc) beam = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--raw")) raw = 1;
        else {
            fprintf(stderr, "usage: digest_bench --items FILE.jsonl [-k K] [--name NAME] [--json] [-m MODEL.gguf "
                            "[--max-length N] [--beam K] [--ctx N] [--threads N] [--raw]] [--limit N]\n");
            return 2;
        }
    }
    if (!items || k < 1) {
        fprintf(stderr, "digest_bench: missing --items FILE.jsonl (or bad -k)\n");
        return 2;
    }
    FILE *f = fopen(items, "r");
    if (!f) {
        perror(items);
        return 1;
    }
    bee_model *m = NULL;
    if (model && (bee_model_load(model, &m) || bee_model_set_threads(m, threads))) {
        fprintf(stderr, "digest_bench: %s\n", bee_error_message());
        return 1;
    }
    gen_count gc = {m, beam > 0 ? beam : 3, 0, 0, 0, 0, 0};
    size_t bad_cites = 0, uncited = 0, n_points = 0, chunks = 0, fallbacks = 0, fb_items = 0;
    bee_stat st[S_N] = {{0}};
    double t_digest = 0;
    size_t n_items = 0, n_sent = 0, n_ans = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    while ((len = getline(&line, &cap, f)) > 0 && (limit <= 0 || lineno < limit)) {
        lineno++;
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)len, 0, &err);
        const char *ref = json_string_value(json_object_get(j, "reference"));
        char where[64];
        snprintf(where, sizeof where, "%s:%d", items, lineno);
        bee_digest_input in;
        if (!j || !ref) {
            fprintf(stderr, "%s: bad item (%s)\n", where, j ? "no \"reference\" string" : err.text);
            return 1;
        }
        if (bee_digest_from_json(j, where, &in)) {
            fprintf(stderr, "%s\n", bee_error_message());
            return 1;
        }
        bee_digest_opts o;
        bee_digest_opts_default(&o);
        o.extractive = m == NULL;
        o.max_points = k;
        if (m) {
            o.model = m;
            o.max_length = max_length;
            o.beam_size = gc.beam;
            o.ctx = ctx;
            o.gen = counting_gen;
            o.gen_user = &gc;
            o.keep_contentless = raw;
        }
        bee_digest_result r;
        double t0 = now();
        if (bee_digest_run(&in, &o, &r)) {
            fprintf(stderr, "%s: %s\n", where, bee_error_message());
            return 1;
        }
        t_digest += now() - t0;
        chunks += (size_t)r.chunks;
        fallbacks += (size_t)r.fallbacks;
        fb_items += r.fallbacks > 0;
        for (size_t i = 0; i < r.n; i++) {
            n_points++;
            uncited += r.points[i].n_cites == 0;
            for (size_t c = 0; c < r.points[i].n_cites; c++) bad_cites += r.points[i].cites[c] >= in.n;
        }
        bee_str joined = {0};
        bee_str_append(&joined, "", 0);
        for (size_t i = 0; i < r.n; i++) bee_str_printf(&joined, "%s%s", i ? " " : "", r.points[i].text);
        bee_stat_add(&st[S_D1], r.n ? bee_metric_rouge_l(r.points[0].text, ref) : 0);
        bee_stat_add(&st[S_DK], bee_metric_rouge_l(joined.s, ref));
        bee_str_free(&joined);
        /* baselines over the same sentence split */
        double best = 0, rnd = 0, lead = 0;
        size_t total = 0;
        for (size_t a = 0; a < in.n; a++) {
            size_t *sp = NULL;
            long ns = bee_digest_split(in.answers[a].text, &sp);
            total += ns > 0 ? (size_t)ns : 0;
            free(sp);
        }
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t pick = total ? (size_t)(rng >> 33) % total : 0, idx = 0;
        for (size_t a = 0; a < in.n; a++) {
            size_t *sp = NULL;
            long ns = bee_digest_split(in.answers[a].text, &sp);
            for (long s = 0; s < ns; s++, idx++) {
                char *t = strndup(in.answers[a].text + sp[2 * s], sp[2 * s + 1] - sp[2 * s]);
                double v = bee_metric_rouge_l(t, ref);
                if (idx == 0) lead = v;
                if (idx == pick) rnd = v;
                if (v > best) best = v;
                free(t);
            }
            free(sp);
        }
        bee_stat_add(&st[S_LEAD], lead);
        bee_stat_add(&st[S_RAND], rnd);
        bee_stat_add(&st[S_ORACLE], best);
        n_items++, n_sent += total, n_ans += in.n;
        bee_digest_result_free(&r);
        bee_digest_input_free(&in);
        json_decref(j);
    }
    free(line);
    fclose(f);
    if (!n_items) {
        fprintf(stderr, "digest_bench: %s has no items\n", items);
        return 1;
    }
    const char *mode = m ? "model" : "extractive";
    if (m)
        fprintf(stderr,
                "%s: model digest: %zu model calls (%zu empty), %zu map chunks; citation marks in model text: %zu, "
                "%zu naming an id of the prompt (kept), %zu not (dropped); final points %zu, cites outside the "
                "input %zu, points citing nothing %zu; contentless model texts replaced by extractive text %zu (in %zu of "
                "%zu items)\n",
                name, gc.calls, gc.empty, chunks, gc.marks, gc.marks_kept, gc.marks_dropped, n_points, bad_cites, uncited,
                fallbacks, fb_items, n_items);
    bee_model_free(m);
    if (as_json) {
        json_t *o = json_pack("{s:s, s:I, s:i, s:f, s:f, s:f}", "name", name, "items", (json_int_t)n_items, "k", k,
                              "answers_per_item", (double)n_ans / (double)n_items, "sentences_per_item",
                              (double)n_sent / (double)n_items, "ms_per_item", 1e3 * t_digest / (double)n_items);
        json_object_set_new(o, "mode", json_string(mode));
        for (int i = 0; i < S_N; i++)
            json_object_set_new(o, k_names[i], json_pack("{s:f, s:f}", "rouge_l", st[i].mean, "se", bee_stat_se(&st[i])));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        printf("%s: %zu items, %.1f answers and %.1f sentences per item, %s digest %.2f ms per item\n", name,
               n_items, (double)n_ans / (double)n_items, (double)n_sent / (double)n_items, mode, 1e3 * t_digest / (double)n_items);
        for (int i = 0; i < S_N; i++)
            printf("  %-9s ROUGE-L F %.4f ± %.4f%s\n", i == S_DK ? (k == 1 ? "digest@1" : "digest@K") : k_names[i],
                   st[i].mean, bee_stat_se(&st[i]), i == S_DK ? "  (K points joined)" : "");
    }
    return 0;
}
