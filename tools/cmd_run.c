/* bee tokenize / forward / generate / chat */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "generate/generate.h"
#include "model/model.h"
#include "tokenizer/dict.h"
#include "util/error.h"
#include "util/file.h"
#include "util/npy.h"

/* ================================================================ helpers */

/* --data: inline JSON (starts with '{' or '[') or a file holding it. */
static int load_data(const char *cmd, const char *arg, json_t **out) {
    const char *p = arg;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    json_error_t err;
    if (*p == '{' || *p == '[') {
        *out = json_loads(arg, JSON_REJECT_DUPLICATES, &err);
        if (!*out) return cli_error(cmd, "--data: invalid JSON at line %d column %d: %s", err.line, err.column, err.text);
    } else {
        if (!bee_file_exists(arg)) return cli_error(cmd, "--data: '%s' is neither JSON nor an existing file", arg);
        *out = json_load_file(arg, JSON_REJECT_DUPLICATES, &err);
        if (!*out) return cli_error(cmd, "%s:%d:%d: invalid JSON: %s", arg, err.line, err.column, err.text);
    }
    return 0;
}

static int load_model(const char *cmd, const cli_args *a, bee_model **m) { return cli_model_load(cmd, a, m); }

/* "<<" → "<" for display (decoded text is in the tokenizer's escaped form). */
static void print_unescaped(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '<' && i + 1 < n && s[i + 1] == '<') i++;
        fputc(s[i], f);
    }
}

/* ================================================================ tokenize */

static int print_tokens(const bee_model *m, const char *text, int as_json) {
    bee_ext_table ext = {0};
    bee_ivec ids = {0};
    if (bee_tokenizer_encode(m->tok, text, strlen(text), &ext, &ids)) return -1;
    uint32_t nv = bee_tokenizer_n_vocab(m->tok);
    if (as_json) {
        json_t *o = json_object(), *arr = json_array(), *tab = json_object();
        for (size_t i = 0; i < ids.n; i++) json_array_append_new(arr, json_integer(ids.v[i]));
        for (size_t k = 0; k < ext.n; k++) {
            char key[32];
            snprintf(key, sizeof key, "%zu", nv + k);
            json_object_set_new(tab, key, json_stringn(ext.str[k], ext.len[k]));
        }
        json_object_set_new(o, "ids", arr);
        json_object_set_new(o, "ext_table", tab);
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        for (size_t i = 0; i < ids.n; i++) {
            size_t len = 0;
            const char *t = ids.v[i] < (int32_t)nv ? bee_tokenizer_text(m->tok, ids.v[i], &len) : NULL;
            if (!t) t = ext.str[ids.v[i] - (int32_t)nv], len = ext.len[ids.v[i] - (int32_t)nv];
            printf("%6d  '%.*s'%s\n", ids.v[i], (int)len, t, ids.v[i] >= (int32_t)nv ? "  (ext)" : "");
        }
    }
    bee_ivec_free(&ids);
    bee_ext_table_free(&ext);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model whose vocabulary to use", "BEE_MODEL", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        {"json", 0, NULL, "print {\"ids\": [...], \"ext_table\": {...}}", NULL, 0},
        {0},
    };
    cli_args a = {"tokenize", "-m MODEL.gguf [--json] TEXT",
                  "Tokenizes TEXT exactly like upstream CPM-Bee: '<<' is a literal '<', <tag> is a special token,\n"
                  "characters outside the vocabulary become ext ids (vocab_size + k).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_model *m = NULL;
    if (a.n_pos != 1) rc = cli_error("tokenize", "expected one TEXT argument (quote it)") + 1;
    else if (load_model("tokenize", &a, &m)) rc = 1;
    else if (print_tokens(m, a.pos[0], cli_get(&a, "json") != NULL)) rc = cli_fail("tokenize");
    bee_model_free(m);
    cli_free(&a);
    return rc;
}

/* ================================================================ forward */

static int dump_trace(const char *dir, const bee_model *m, const bee_trace *t) {
    char p[4096];
    int64_t L = (int64_t)t->n_q, K = (int64_t)t->n_k, d = m->hp.dim, H = m->hp.n_heads;
    int64_t s2[3] = {1, L, d}, sb[4] = {1, H, L, K}, skv[4] = {1, H, K, m->hp.dim_head};
#define W(name, data, nd, shape) (snprintf(p, sizeof p, "%s/" name, dir), bee_npy_write_f32(p, data, nd, shape))
    if (W("prefill_embedding.npy", t->embedding, 3, s2) || W("prefill_hidden.npy", t->hidden, 3, s2) ||
        W("prefill_position_bias.npy", t->pos_bias, 4, sb))
        return -1;
    if (m->layers[0].has_att && (W("prefill_kv_layer0_k.npy", t->k0, 4, skv) || W("prefill_kv_layer0_v.npy", t->v0, 4, skv)))
        return -1;
#undef W
    for (uint32_t l = 0; l < m->hp.n_layers; l++) {
        snprintf(p, sizeof p, "%s/prefill_layer%u_out.npy", dir, l);
        if (bee_npy_write_f32(p, t->layer_out[l], 3, s2)) return -1;
    }
    return 0;
}

typedef struct {
    const bee_model *m;
    bee_gen_batch b;
    bee_seq seq;
    float *logits;
} fwd_run;

static int forward_prefill(fwd_run *r, const char *dir, int dump) {
    const bee_gen_input *in = &r->b.ins[0];
    size_t n = in->ids.n;
    int32_t nseg = in->enc.n_seg;
    if (bee_seq_init(&r->seq, r->m, (uint32_t)n + 64, in->enc.seg_rel, (size_t)nseg * (size_t)nseg)) return -1;
    bee_token *toks = malloc((n ? n : 1) * sizeof *toks);
    if (!toks) return bee_fail("out of memory");
    for (size_t t = 0; t < n; t++)
        toks[t] = (bee_token){in->ids.v[t], in->subs.v[t], (int32_t)t, in->segs.v[t], 0, nseg, 0, 1};
    bee_seq *sp[1] = {&r->seq};
    const bee_token *tp[1] = {toks};
    bee_trace tr = {0};
    tr.enabled = dump;
    int rc = bee_forward(r->m, sp, tp, &n, 1, &r->b.ext, BEE_LOGITS_LAST, r->logits, &tr);
    free(toks);
    char p[4096];
    int64_t w = (int64_t)r->b.width;
    snprintf(p, sizeof p, "%s/prefill_logits_lastpos.npy", dir);
    if (rc == 0) rc = bee_npy_write_f32(p, r->logits, 1, &w);
    if (rc == 0 && dump) rc = dump_trace(dir, r->m, &tr);
    bee_trace_free(&tr, r->m->hp.n_layers);
    return rc;
}

/* Greedy cached steps as golden/README defines: feed <s>, then the argmax
 * (no logit masking), context 1, positions 0,1,2…, first answer segment. */
static int forward_steps(fwd_run *r, const char *dir, long steps) {
    const bee_gen_input *in = &r->b.ins[0];
    size_t W = r->b.width;
    float *all = malloc((size_t)(steps ? steps : 1) * W * sizeof *all);
    if (!all) return bee_fail("out of memory");
    int32_t nv = (int32_t)r->m->hp.n_vocab;
    bee_token tok = {bee_tokenizer_special(r->m->tok)->bos, 0, 0, in->slots[0].segment, 0, in->enc.n_seg, 0, 1};
    int rc = 0;
    for (long s = 0; rc == 0 && s < steps; s++) {
        bee_seq *sp[1] = {&r->seq};
        const bee_token *tp[1] = {&tok};
        size_t one = 1;
        rc = bee_forward(r->m, sp, tp, &one, 1, &r->b.ext, BEE_LOGITS_LAST, all + (size_t)s * W, NULL);
        size_t best = 0;
        for (size_t v = 1; v < W; v++)
            if (all[(size_t)s * W + v] > all[(size_t)s * W + best]) best = v;
        int32_t w = (int32_t)best;
        tok.id = w >= nv ? r->b.ext.ids[w - nv] : w;
        tok.sub = w >= nv ? r->b.ext.subs[w - nv] : 0;
        tok.pos++;
    }
    char p[4096];
    int64_t shape[2] = {steps, (int64_t)W};
    snprintf(p, sizeof p, "%s/incremental_logits.npy", dir);
    if (rc == 0) rc = bee_npy_write_f32(p, all, 2, shape);
    free(all);
    return rc;
}

static int run_forward(const bee_model *m, json_t *data, const char *dir, long steps, int dump) {
    bee_gen_input in;
    if (bee_gen_input_init(m->tok, data, &in)) return -1;
    fwd_run r = {m, {0}, {0}, NULL};
    int rc = bee_gen_batch_init(&r.b, m, &in, 1);
    if (rc == 0 && !(r.logits = malloc(r.b.width * sizeof *r.logits))) rc = bee_fail("out of memory");
    if (rc == 0) rc = bee_mkdir_p(dir);
    if (rc == 0) rc = forward_prefill(&r, dir, dump);
    if (rc == 0) rc = forward_steps(&r, dir, steps);
    free(r.logits);
    bee_seq_free(&r.seq);
    bee_gen_batch_free(&r.b);
    bee_gen_input_free(&in);
    return rc;
}

int cmd_forward(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        CLI_OPT_KV_TYPE,
        CLI_OPT_LORA,
        {"data", 0, "JSON|FILE", "input dict (inline JSON or a file)", NULL, 0},
        {"prompt", 'p', "TEXT", "plain text, wrapped as {\"input\": TEXT, \"<ans>\": \"\"}", NULL, 0},
        {"out", 'o', "DIR", "output folder (created if needed)", NULL, 0},
        {"steps", 0, "N", "greedy cached decode steps (default 6)", NULL, 0},
        {"dump", 0, NULL, "also write embeddings, per-layer outputs, hidden states, bias and layer-0 KV", NULL, 0},
        {0},
    };
    cli_args a = {"forward", "-m MODEL.gguf --data JSON_OR_FILE --out DIR [--steps N] [--dump]",
                  "Runs the prefill over the dict's context and N greedy KV-cache steps, writing\n"
                  "prefill_logits_lastpos.npy (V+E,) and incremental_logits.npy (N, V+E) as float32.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    long steps = 6;
    json_t *data = NULL;
    bee_model *m = NULL;
    const char *dir = cli_get(&a, "out"), *d = cli_get(&a, "data"), *p = cli_get(&a, "prompt");
    if (!dir) rc = cli_error("forward", "missing --out DIR") + 1;
    else if (!d == !p) rc = cli_error("forward", "give exactly one of --data or -p") + 1;
    else if (a.n_pos) rc = cli_error("forward", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (cli_int(&a, "steps", 0, 100000, &steps)) rc = 2;
    else if (d ? load_data("forward", d, &data) : !(data = bee_dict_from_text(p))) rc = 1;
    else if (load_model("forward", &a, &m)) rc = 1;
    else if (run_forward(m, data, dir, steps, cli_get(&a, "dump") != NULL)) rc = cli_fail("forward");
    json_decref(data);
    bee_model_free(m);
    cli_free(&a);
    return rc;
}

/* ================================================================ generate */

static const cli_opt k_gen_opts[] = {
    {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
    {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
    CLI_OPT_KV_TYPE,
    CLI_OPT_LORA,
    {"data", 0, "JSON|FILE", "input dict, or an array of dicts (one batch), inline or in a file", NULL, 0},
    {"prompt", 'p', "TEXT", "plain text, wrapped as {\"input\": TEXT, \"<ans>\": \"\"}", NULL, 0},
    {"beam", 0, "K", "beam search with K beams (default 3; the upstream decoder)", NULL, 0},
    {"max-length", 0, "N", "beam search length limit (default 100; upstream semantics)", NULL, 0},
    {"repetition-penalty", 0, "R", "CTRL repetition penalty (default 1.0)", NULL, 0},
    {"temp", 0, "T", "sample with temperature T (0 = greedy); selects sampling", NULL, 0},
    {"top-k", 0, "K", "sampling: keep the K most likely tokens", NULL, 0},
    {"top-p", 0, "P", "sampling: nucleus probability mass (default 1)", NULL, 0},
    {"min-p", 0, "P", "sampling: drop tokens below P x the top probability", NULL, 0},
    {"presence-penalty", 0, "X", "sampling: subtract X once per generated token id", NULL, 0},
    {"frequency-penalty", 0, "X", "sampling: subtract X per occurrence", NULL, 0},
    {"seed", 0, "S", "sampling seed (default 0)", NULL, 0},
    {"greedy", 0, NULL, "greedy decoding (same as --temp 0)", NULL, 0},
    {"max-tokens", 'n', "N", "sampling: generated-token limit over all slots (default 100)", NULL, 0},
    {"stop", 0, "TEXT", "sampling: stop the slot at TEXT (repeatable; \\n and \\t escapes)", NULL, 1},
    {"json", 0, NULL, "print the filled dict as upstream returns it", NULL, 0},
    {0},
};

static int sampling_requested(const cli_args *a) {
    static const char *k[] = {"temp", "top-k", "top-p", "min-p", "presence-penalty", "frequency-penalty",
                              "seed", "greedy", "max-tokens", "stop"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (cli_get(a, k[i])) return 1;
    return 0;
}

static char *unescape_arg(const char *s) {
    char *o = malloc(strlen(s) + 1), *q = o;
    for (; o && *s; s++) {
        if (*s == '\\' && s[1]) {
            s++;
            *q++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
        } else {
            *q++ = *s;
        }
    }
    if (q) *q = 0;
    return o;
}

static int read_sample_params(cli_args *a, bee_sample_params *p, char ***stops) {
    double t = 0, tp = 1, mp = 0, pp = 0, fp = 0, rp = 1;
    long k = 0, n = 100;
    unsigned long long seed = 0;
    if (cli_float(a, "temp", 0, 100, &t) || cli_float(a, "top-p", 1e-9, 1, &tp) || cli_float(a, "min-p", 0, 0.999999, &mp) ||
        cli_float(a, "presence-penalty", -100, 100, &pp) || cli_float(a, "frequency-penalty", -100, 100, &fp) ||
        cli_float(a, "repetition-penalty", 1e-6, 100, &rp) || cli_int(a, "top-k", 0, 1 << 30, &k) ||
        cli_int(a, "max-tokens", 0, 1 << 24, &n) || cli_u64(a, "seed", &seed))
        return -1;
    if (!cli_get(a, "max-tokens") && cli_get(a, "max-length") && cli_int(a, "max-length", 0, 1 << 24, &n)) return -1;
    bee_sample_params_default(p);
    p->temperature = cli_get(a, "greedy") ? 0.0f : (float)t;
    p->top_p = (float)tp, p->min_p = (float)mp, p->presence_penalty = (float)pp, p->frequency_penalty = (float)fp;
    p->repetition_penalty = (float)rp, p->top_k = (int)k, p->max_tokens = (int)n, p->seed = seed;
    const char **raw = cli_list(a, "stop");
    size_t ns = 0;
    while (raw && raw[ns]) ns++;
    *stops = calloc(ns + 1, sizeof **stops);
    for (size_t i = 0; *stops && i < ns; i++) (*stops)[i] = unescape_arg(raw[i]);
    free(raw);
    p->stop = (const char *const *)*stops;
    return 0;
}

static void stream_stdout(void *user, size_t slot, const char *text, size_t len) {
    (void)user, (void)slot;
    print_unescaped(stdout, text, len);
    fflush(stdout);
}

/* Prints a result: the dict as JSON, or the answer text when there is one slot. */
static void print_result(json_t *out, const bee_gen_input *in, int as_json) {
    if (!as_json && in->n_answers == 1 && json_array_size(in->paths[0]) == 0) {
        const char *s = json_string_value(json_object_get(out, "<ans>"));
        if (s) print_unescaped(stdout, s, strlen(s));
        printf("\n");
        return;
    }
    char *s = json_dumps(out, JSON_COMPACT | (as_json ? 0 : JSON_INDENT(2)));
    if (s) printf("%s\n", s);
    free(s);
}

typedef struct {
    bee_gen_input *ins;
    size_t n;
    int is_array;
} input_batch;

static int make_inputs(const bee_model *m, json_t *data, input_batch *b) {
    b->is_array = json_is_array(data);
    size_t n = b->is_array ? json_array_size(data) : 1;
    if (n == 0) return bee_fail("--data: empty array");
    b->ins = calloc(n, sizeof *b->ins);
    if (!b->ins) return bee_fail("out of memory");
    for (size_t i = 0; i < n; i++, b->n++) {
        if (bee_gen_input_init(m->tok, b->is_array ? json_array_get(data, i) : data, &b->ins[i])) {
            if (b->is_array) bee_fail_prefix("--data[%zu]: ", i);
            return -1;
        }
    }
    return 0;
}

static void free_inputs(input_batch *b) {
    for (size_t i = 0; i < b->n; i++) bee_gen_input_free(&b->ins[i]);
    free(b->ins);
}

static int read_beam_params(cli_args *a, bee_beam_params *p) {
    bee_beam_params_default(p);
    long beam = p->beam_size, maxlen = p->max_length;
    double rp = 1.0;
    if (cli_int(a, "beam", 1, 64, &beam) || cli_int(a, "max-length", 0, 1 << 20, &maxlen) ||
        cli_float(a, "repetition-penalty", 1e-6, 100, &rp))
        return -1;
    p->beam_size = (int)beam, p->max_length = (int)maxlen, p->repetition_penalty = (float)rp;
    return 0;
}

static int run_beam(const bee_beam_params *bp, const bee_model *m, input_batch *b, int as_json) {
    bee_beam_params p = *bp;
    json_t **outs = calloc(b->n, sizeof *outs);
    if (!outs || bee_beam_search(m, b->ins, b->n, &p, outs)) {
        free(outs);
        return cli_fail("generate");
    }
    if (b->is_array && as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < b->n; i++) json_array_append(arr, outs[i]);
        char *s = json_dumps(arr, JSON_COMPACT);
        if (s) printf("%s\n", s);
        free(s);
        json_decref(arr);
    } else {
        for (size_t i = 0; i < b->n; i++) print_result(outs[i], &b->ins[i], as_json);
    }
    for (size_t i = 0; i < b->n; i++) json_decref(outs[i]);
    free(outs);
    return 0;
}

static int run_sampling(const bee_sample_params *sp, const bee_model *m, input_batch *b, int as_json) {
    bee_sample_params p = *sp;
    int rc = 0;
    int stream = !as_json && !b->is_array && b->ins[0].n_answers == 1 && json_array_size(b->ins[0].paths[0]) == 0;
    if (stream) p.stream = stream_stdout;
    for (size_t i = 0; rc == 0 && i < b->n; i++) {
        json_t *out;
        if (bee_sample_generate(m, &b->ins[i], &p, &out, NULL)) {
            rc = cli_fail("generate");
            break;
        }
        if (stream) printf("\n");
        else print_result(out, &b->ins[i], as_json);
        json_decref(out);
    }
    return rc;
}

int cmd_generate(int argc, char **argv) {
    cli_args a = {"generate", "-m MODEL.gguf (--data JSON | -p TEXT) [--beam K] [--max-length N] "
                              "[--repetition-penalty R] [--temp T --top-p P --seed S] [--json]",
                  "Fills the <ans> slots of a CPM-Bee dict. By default it runs the upstream beam search\n"
                  "(beam 3, max length 100); any sampling option (--temp, --top-p, --greedy, ...) switches to\n"
                  "sampling, which streams text as it is produced.",
                  k_gen_opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    json_t *data = NULL;
    bee_model *m = NULL;
    input_batch b = {0};
    bee_beam_params bp;
    bee_sample_params sp;
    char **stops = NULL;
    const char *d = cli_get(&a, "data"), *p = cli_get(&a, "prompt");
    int sampling = sampling_requested(&a), as_json = cli_get(&a, "json") != NULL;
    if (!d == !p) rc = cli_error("generate", "give exactly one of --data or -p") + 1;
    else if (a.n_pos) rc = cli_error("generate", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (sampling && cli_get(&a, "beam")) rc = cli_error("generate", "--beam cannot be combined with sampling options") + 1;
    else if (read_beam_params(&a, &bp) || read_sample_params(&a, &sp, &stops)) rc = 2;
    else if (d ? load_data("generate", d, &data) : !(data = bee_dict_from_text(p))) rc = 1;
    else if (load_model("generate", &a, &m)) rc = 1;
    else if (make_inputs(m, data, &b)) rc = cli_fail("generate");
    else rc = sampling ? run_sampling(&sp, m, &b, as_json) : run_beam(&bp, m, &b, as_json);
    for (size_t i = 0; stops && stops[i]; i++) free(stops[i]);
    free(stops);
    free_inputs(&b);
    json_decref(data);
    bee_model_free(m);
    cli_free(&a);
    return rc;
}

/* ================================================================ chat */

typedef struct {
    bee_str history; /* escaped dialogue text: 用户：…<sep>AI：…<sep> */
} chat_state;

static int chat_turn(const bee_model *m, chat_state *c, const char *line, const bee_sample_params *p, long beam,
                     long max_ctx) {
    bee_str input = {0};
    bee_str_append(&input, c->history.s ? c->history.s : "", c->history.n);
    bee_str_appendz(&input, "用户：");
    bee_text_escape(line, strlen(line), &input);
    bee_str_appendz(&input, "<sep>AI：");
    json_t *d = bee_dict_from_text(input.s);
    bee_gen_input in;
    int rc = d ? bee_gen_input_init(m->tok, d, &in) : bee_fail("out of memory");
    if (rc == 0 && (long)in.ids.n > max_ctx) {
        bee_gen_input_free(&in);
        rc = bee_fail("the conversation is longer than --ctx %ld tokens; type /reset to start over", max_ctx);
    }
    json_t *out = NULL;
    if (rc == 0) {
        bee_beam_params bp;
        bee_beam_params_default(&bp);
        bp.beam_size = (int)beam, bp.max_length = p->max_tokens, bp.repetition_penalty = p->repetition_penalty;
        rc = beam > 0 ? bee_beam_search(m, &in, 1, &bp, &out) : bee_sample_generate(m, &in, p, &out, NULL);
        bee_gen_input_free(&in);
    }
    const char *ans = out ? json_string_value(json_object_get(out, "<ans>")) : NULL;
    if (rc == 0 && beam > 0 && ans) print_unescaped(stdout, ans, strlen(ans));
    if (rc == 0) {
        printf("\n");
        bee_str_free(&c->history);
        bee_str_append(&c->history, input.s, input.n);
        bee_str_appendz(&c->history, ans ? ans : "");
        bee_str_appendz(&c->history, "<sep>");
    }
    json_decref(out);
    json_decref(d);
    bee_str_free(&input);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        CLI_OPT_KV_TYPE,
        CLI_OPT_LORA,
        {"temp", 0, "T", "temperature (default 0.7; 0 = greedy)", NULL, 0},
        {"top-p", 0, "P", "nucleus sampling mass (default 0.9)", NULL, 0},
        {"top-k", 0, "K", "keep the K most likely tokens", NULL, 0},
        {"min-p", 0, "P", "min-p filter", NULL, 0},
        {"repetition-penalty", 0, "R", "CTRL repetition penalty (default 1.1)", NULL, 0},
        {"presence-penalty", 0, "X", "presence penalty", NULL, 0},
        {"frequency-penalty", 0, "X", "frequency penalty", NULL, 0},
        {"seed", 0, "S", "sampling seed", NULL, 0},
        {"greedy", 0, NULL, "greedy decoding", NULL, 0},
        {"max-tokens", 'n', "N", "tokens per answer (default 128)", NULL, 0},
        {"max-length", 0, "N", "alias of --max-tokens", NULL, 0},
        {"stop", 0, "TEXT", "stop string (repeatable)", NULL, 1},
        {"beam", 0, "K", "use upstream beam search with K beams instead of sampling", NULL, 0},
        {"ctx", 0, "N", "refuse turns whose prompt exceeds N tokens (default 4096)", NULL, 0},
        {0},
    };
    cli_args a = {"chat", "-m MODEL.gguf [sampling options] [--beam K]",
                  "Multi-turn chat. Each line read from standard input is one user turn; the history is kept\n"
                  "in the CPM-Bee dialogue form 用户：…<sep>AI：… . Commands: /reset, /exit.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_model *m = NULL;
    bee_sample_params p;
    char **stops = NULL;
    long beam = 0, ctx = 4096;
    if (a.n_pos) rc = cli_error("chat", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (read_sample_params(&a, &p, &stops) || cli_int(&a, "beam", 1, 64, &beam) || cli_int(&a, "ctx", 16, 1 << 24, &ctx)) rc = 2;
    else if (load_model("chat", &a, &m)) rc = 1;
    if (rc == 0) {
        if (!cli_get(&a, "temp") && !cli_get(&a, "greedy")) p.temperature = 0.7f;
        if (!cli_get(&a, "top-p")) p.top_p = 0.9f;
        if (!cli_get(&a, "repetition-penalty")) p.repetition_penalty = 1.1f;
        if (!cli_get(&a, "max-tokens") && !cli_get(&a, "max-length")) p.max_tokens = 128;
        p.stream = stream_stdout;
        int tty = isatty(0);
        chat_state c = {{0}};
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        for (;;) {
            if (tty) printf("> "), fflush(stdout);
            if ((n = getline(&line, &cap, stdin)) < 0) break;
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
            if (n == 0) continue;
            if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0) break;
            if (strcmp(line, "/reset") == 0) {
                bee_str_free(&c.history);
                continue;
            }
            if (chat_turn(m, &c, line, &p, beam, ctx)) fprintf(stderr, "bee chat: %s\n", bee_error_message());
        }
        free(line);
        bee_str_free(&c.history);
    }
    for (size_t i = 0; stops && stops[i]; i++) free(stops[i]);
    free(stops);
    bee_model_free(m);
    cli_free(&a);
    return rc;
}
