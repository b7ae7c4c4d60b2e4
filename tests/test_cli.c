/* The bee CLI end to end: --help and bad flags for every command, the demo
 * model, and (with golden data) convert on all four checkpoint variants,
 * forward/generate/tokenize parity and error paths on bad files and inputs. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "golden.h"
#include "testutil.h"
#include "util/file.h"
#include "util/npy.h"
#include "util/types.h"

static const char *k_cmds[] = {"convert", "info", "init", "tokenize", "forward", "generate", "chat", "perplexity", "quantize",
                                "safety check", "feedback export", "serve", "bench", "train", "index", "search", "ask",
                                "vocab build", "data", "lora merge", "eval", "plot"};


static void expect_run(int want_rc, const char *needle, const char *fmt, const char *arg) {
    char *out = NULL;
    int rc = tu_bee_run(&out, fmt, arg);
    if (rc != want_rc || (needle && !strstr(out, needle)))
        fail_msg("bee %s: exit %d (want %d), output:\n%s\n(expected to contain '%s')", arg, rc, want_rc, out,
                 needle ? needle : "");
    free(out);
}

/* ================================================================ no golden data needed */

static void test_help_and_bad_flags(void **s) {
    (void)s;
    char arg[64];
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) {
        snprintf(arg, sizeof arg, "%s --help", k_cmds[i]);
        expect_run(0, "usage: bee", "%s", arg);
        snprintf(arg, sizeof arg, "%s --no-such-flag", k_cmds[i]);
        expect_run(2, "unknown option '--no-such-flag'", "%s", arg);
    }
    expect_run(2, "unknown command", "%s", "frobnicate");
    expect_run(0, "convert", "%s", "--help");
    expect_run(2, "needs a value", "%s", "generate -m");
    expect_run(2, "expected an integer", "%s", "generate -m x.gguf -p hi --beam many");
}

static const char *demo_model(void) {
    static char path[4096];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", tu_tmp("demo.gguf"));
        char *out;
        if (tu_bee_run(&out, "init -o %s --seed 3", path)) fail_msg("init failed: %s", out);
        free(out);
    }
    return path;
}

static void test_demo_model(void **s) {
    (void)s;
    const char *m = demo_model();
    expect_run(0, "architecture:  cpmbee", "info %s", m);
    char *out;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "generate -m %s -p '今天天气' --max-length 5", m);
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    assert_true(strlen(out) > 1);
    free(out);
    snprintf(cmd, sizeof cmd, "generate -m %s --data '{\"q\":\"x\",\"<ans>\":{\"a\":\"\",\"b\":\"\"}}' --beam 2 --max-length 3 --json", m);
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    if (!j) fail_msg("not JSON: %s", out);
    assert_true(json_is_object(json_object_get(j, "<ans>")));
    json_decref(j);
    free(out);
    /* quantize, then run the quantized model; a bad type is refused */
    snprintf(cmd, sizeof cmd, "quantize %s %s --type q4_0", m, tu_tmp("demo_q4.gguf"));
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    free(out);
    expect_run(0, "q4_0 x", "info %s", tu_tmp("demo_q4.gguf"));
    snprintf(cmd, sizeof cmd, "generate -m %s -p '天气' --greedy -n 3", tu_tmp("demo_q4.gguf"));
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    free(out);
    snprintf(cmd, sizeof cmd, "quantize %s %s --type q3_k", m, tu_tmp("x.gguf"));
    expect_run(2, "--type", "%s", cmd);
    snprintf(cmd, sizeof cmd, "quantize %s %s --type q8_1", m, tu_tmp("x.gguf")); /* activation-only type */
    expect_run(2, "--type", "%s", cmd);
    /* perplexity of a file, as JSON */
    tu_write(tu_tmp("text.txt"), "今天天气真好。hello world", strlen("今天天气真好。hello world"));
    snprintf(cmd, sizeof cmd, "perplexity -m %s --ctx 8 --json %s", m, tu_tmp("text.txt"));
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    json_error_t perr;
    json_t *pj = json_loads(out, 0, &perr);
    if (!pj) fail_msg("perplexity printed %s", out);
    assert_true(json_integer_value(json_object_get(pj, "tokens")) > 5);
    assert_true(json_real_value(json_object_get(pj, "ppl")) > 1.0);
    json_decref(pj);
    free(out);
    /* chat from a pipe: two turns, then /exit */
    snprintf(cmd, sizeof cmd, "printf '你好\\n再见\\n/exit\\n' | %s chat -m %s --greedy -n 4", tu_bee(), m);
    assert_int_equal(tu_run(cmd, &out), 0);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    assert_true(lines >= 2);
    free(out);
}

/* bee bench: one JSON object per test with the documented fields and
 * consistent arithmetic; bad lists and KV types are refused. */
static void test_bench_cli(void **s) {
    (void)s;
    const char *m = demo_model();
    char cmd[4400], *out;
    snprintf(cmd, sizeof cmd, "bench -m %s -t 1,2 -p 16 -n 4 -r 2 --json --kv-type f16", m);
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    int n_pp = 0, n_tg = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j) fail_msg("bench line is not JSON: %s", line);
        const char *test = json_string_value(json_object_get(j, "test"));
        double tps = json_real_value(json_object_get(j, "tokens_per_s"));
        double bpt = json_number_value(json_object_get(j, "bytes_per_token"));
        double fpt = json_number_value(json_object_get(j, "flops_per_token"));
        double bw = json_number_value(json_object_get(j, "roofline_read_bw"));
        double pct = json_real_value(json_object_get(j, "pct_read_bw"));
        long size = (long)json_integer_value(json_object_get(j, "size_bytes"));
        assert_non_null(test);
        assert_string_equal(json_string_value(json_object_get(j, "type")), "f32");
        assert_string_equal(json_string_value(json_object_get(j, "kv_type")), "f16");
        assert_true(tps > 0 && fpt > 0 && bw > 0 && size > 0);
        /* the ratio is a median of per-repetition ratios against probes taken around each one */
        assert_true(pct > 0 && fabs(pct - 100 * tps * bpt / bw) < 0.6 * pct + 0.01);
        if (strcmp(test, "tg") == 0) { /* decode reads every weight once per token */
            n_tg++;
            assert_int_equal(json_integer_value(json_object_get(j, "n_tokens")), 4);
            assert_true(bpt > 0.9 * (double)size && bpt < 1.1 * (double)size);
        } else {
            n_pp++;
            assert_string_equal(test, "pp");
            assert_true(bpt < (double)size / 8); /* a prompt of 16 shares one pass over the weights */
        }
        json_decref(j);
    }
    assert_int_equal(n_pp, 2);
    assert_int_equal(n_tg, 2);
    free(out);
    snprintf(cmd, sizeof cmd, "bench -m %s -t 1,x", m);
    expect_run(2, "--threads", "%s", cmd);
    snprintf(cmd, sizeof cmd, "bench -m %s --kv-type q4_0", m);
    expect_run(2, "--kv-type", "%s", cmd);
    expect_run(2, "missing -m", "%s", "bench -p 8");
    snprintf(cmd, sizeof cmd, "info %s --ctx 1000", m);
    expect_run(0, "memory @ctx 1000", "%s", cmd);
    snprintf(cmd, sizeof cmd, "generate -m %s -p '天气' --greedy -n 3 --kv-type bf16", m);
    assert_int_equal(tu_bee_run(&out, "%s", cmd), 0);
    free(out);
}

static void test_bad_inputs(void **s) {
    (void)s;
    const char *m = demo_model();
    char a[4600];
    snprintf(a, sizeof a, "generate -m %s --data '{\"input\": \"x\"'", m);
    expect_run(1, "invalid JSON", "%s", a);
    snprintf(a, sizeof a, "generate -m %s --data '{\"input\": \"x\"}'", m);
    expect_run(1, "no \"<ans>\"", "%s", a);
    snprintf(a, sizeof a, "generate -m %s --data '{\"input\": \"a <b\", \"<ans>\": \"\"}'", m);
    expect_run(1, "unterminated", "%s", a);
    snprintf(a, sizeof a, "generate -m %s --data '{\"input\": 5, \"<ans>\": \"\"}'", m);
    expect_run(1, "field 'input'", "%s", a);
    snprintf(a, sizeof a, "tokenize -m %s 'x < y'", m);
    expect_run(1, "unterminated", "%s", a);
    expect_run(1, "cannot open", "info %s", tu_tmp("nope.gguf"));
    /* truncated and corrupt model files */
    FILE *f = fopen(m, "rb");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    tu_write(tu_tmp("trunc.gguf"), buf, n / 2);
    expect_run(1, "offset", "info %s", tu_tmp("trunc.gguf"));
    buf[0] = 'X';
    tu_write(tu_tmp("bad.gguf"), buf, 64);
    expect_run(1, "bad.gguf", "info %s", tu_tmp("bad.gguf"));
    tu_write(tu_tmp("garbage.pt"), "PK\3\4garbage", 11);
    snprintf(a, sizeof a, "convert %s -o %s --config x --vocab y", tu_tmp("garbage.pt"), tu_tmp("o.gguf"));
    expect_run(1, "config not found", "%s", a);
}

/* ================================================================ golden */

static const char *golden_dir(const char *rel) {
    static char b[4][4096];
    static int k;
    char *p = b[k++ % 4];
    snprintf(p, 4096, "%s", tu_shared(rel));
    return p;
}

static void convert(const char *src, const char *extra, const char *out) {
    char *o;
    if (tu_bee_run(&o, "convert %s -o %s %s", src, out, extra)) fail_msg("convert %s failed:\n%s", src, o);
    free(o);
}

/* Every tensor of a equals b's tensor converted to `type` (RNE). */
static void expect_tensors(const char *a_path, const char *ref_path, uint32_t type) {
    bee_gguf *a, *r;
    assert_int_equal(bee_gguf_open(a_path, &a), 0);
    assert_int_equal(bee_gguf_open(ref_path, &r), 0);
    assert_int_equal(bee_gguf_n_tensors(a), bee_gguf_n_tensors(r));
    for (size_t i = 0; i < bee_gguf_n_tensors(r); i++) {
        const bee_gguf_tensor *rt = bee_gguf_tensor_at(r, i), *at = bee_gguf_find_tensor(a, rt->name);
        if (!at) fail_msg("%s lacks %s", a_path, rt->name);
        assert_int_equal(at->type, type);
        assert_int_equal(at->n_elements, rt->n_elements);
        const float *ref = rt->data;
        for (uint64_t k = 0; k < rt->n_elements; k++) {
            uint32_t want, got;
            if (type == BEE_TYPE_F32) {
                memcpy(&want, &ref[k], 4), memcpy(&got, (const float *)at->data + k, 4);
            } else {
                want = type == BEE_TYPE_F16 ? bee_f32_to_f16(ref[k]) : bee_f32_to_bf16(ref[k]);
                got = ((const uint16_t *)at->data)[k];
            }
            if (want != got) fail_msg("%s: %s[%llu] differs", a_path, rt->name, (unsigned long long)k);
        }
    }
    bee_gguf_free(a);
    bee_gguf_free(r);
}

static const char *data_file(const char *ex) {
    json_t *rec = golden_record(ex);
    const char *p = tu_tmp(ex);
    static char path[8][4096];
    static int k;
    char *d = path[k++ % 8];
    snprintf(d, 4096, "%s.json", p);
    assert_int_equal(json_dump_file(json_object_get(rec, "data"), d, 0), 0);
    json_decref(rec);
    return d;
}

static double npy_diff(const char *a, const char *golden_rel) {
    bee_npy x, g;
    if (bee_npy_read(a, &x)) fail_msg("cannot read %s", a);
    if (bee_npy_read(tu_shared(golden_rel), &g)) fail_msg("cannot read %s", golden_rel);
    double d = golden_max_diff(x.data, x.count, &g);
    bee_npy_free(&x), bee_npy_free(&g);
    fprintf(stderr, "  %s vs %s: max abs diff %.3g\n", a, golden_rel, d);
    return d;
}

static void test_convert_variants(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    char extra[8400];
    snprintf(extra, sizeof extra, "--config %s --vocab %s", golden_dir("cpmbee/golden/weights_tiny/config.json"),
             golden_dir("cpmbee/vocab/bee.txt"));
    golden_write_tiny(tu_tmp("ref.gguf"), NULL, 0);
    convert(golden_dir("cpmbee/golden/checkpoints/cpmbee_tiny_fp32.pt"), extra, tu_tmp("fp32.gguf"));
    expect_tensors(tu_tmp("fp32.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_F32);
    convert(golden_dir("cpmbee/golden/checkpoints/cpmbee_tiny_fp16.pt"), extra, tu_tmp("fp16.gguf"));
    expect_tensors(tu_tmp("fp16.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_F16);
    convert(golden_dir("cpmbee/golden/checkpoints/cpmbee_tiny_bf16.pt"), extra, tu_tmp("bf16.gguf"));
    expect_tensors(tu_tmp("bf16.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_BF16);
    convert(golden_dir("cpmbee/golden/checkpoints/hf"), "", tu_tmp("hf.gguf"));
    expect_tensors(tu_tmp("hf.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_F16);
    /* --dtype converts: f32 → bf16 equals the bf16 checkpoint */
    char ex2[8500];
    snprintf(ex2, sizeof ex2, "%s --dtype bf16", extra);
    convert(golden_dir("cpmbee/golden/checkpoints/cpmbee_tiny_fp32.pt"), ex2, tu_tmp("fp32_to_bf16.gguf"));
    expect_tensors(tu_tmp("fp32_to_bf16.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_BF16);
    /* the fp16 checkpoint computes in fp32 like upstream's .float() load */
    const char *fp16_models[] = {tu_tmp("fp16.gguf"), tu_tmp("hf.gguf")};
    for (int i = 0; i < 2; i++) {
        char *o;
        const char *dir = tu_tmp(i ? "out_hf" : "out_fp16");
        if (tu_bee_run(&o, "forward -m %s --data %s --out %s --steps 1", fp16_models[i], data_file("zh"), dir))
            fail_msg("forward: %s", o);
        free(o);
        char p[4200];
        snprintf(p, sizeof p, "%s/prefill_logits_lastpos.npy", dir);
        assert_true(npy_diff(p, "cpmbee/golden/checkpoints/zh_prefill_logits_lastpos_from_fp16.npy") <= 1e-4);
    }
}

/* An HF-style folder holding model.safetensors (upstream names, f32). */
static void write_safetensors_folder(const char *dir, json_t *config) {
    char p[4200];
    snprintf(p, sizeof p, "mkdir -p %s && ln -sf %s %s/vocab.txt", dir, tu_shared("cpmbee/vocab/bee.txt"), dir);
    assert_int_equal(tu_run(p, NULL), 0);
    snprintf(p, sizeof p, "%s/config.json", dir);
    assert_int_equal(json_dump_file(config, p, 0), 0);
    json_error_t err;
    json_t *man = json_load_file(tu_shared("cpmbee/golden/weights_tiny/manifest.json"), 0, &err), *hdr = json_object();
    size_t i;
    json_t *e;
    json_array_foreach(man, i, e) {
        json_int_t off = json_integer_value(json_object_get(e, "offset_bytes"));
        json_int_t nb = json_integer_value(json_object_get(e, "nbytes"));
        json_object_set_new(hdr, json_string_value(json_object_get(e, "name")),
                            json_pack("{s:s, s:O, s:[I, I]}", "dtype", "F32", "shape", json_object_get(e, "shape"),
                                      "data_offsets", off, off + nb));
    }
    char *h = json_dumps(hdr, JSON_COMPACT);
    char *w;
    size_t wn;
    assert_int_equal(bee_read_file(tu_shared("cpmbee/golden/weights_tiny/weights.bin"), &w, &wn), 0);
    uint64_t hl = strlen(h);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    fwrite(&hl, 8, 1, f), fwrite(h, 1, hl, f), fwrite(w, 1, wn, f);
    fclose(f);
    free(h), free(w);
    json_decref(hdr), json_decref(man);
}

static void test_convert_safetensors_and_mask(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    json_error_t err;
    json_t *cfg = json_load_file(tu_shared("cpmbee/golden/weights_tiny/config.json"), 0, &err);
    write_safetensors_folder(tu_tmp("st"), cfg);
    golden_write_tiny(tu_tmp("ref.gguf"), NULL, 0);
    convert(tu_tmp("st"), "", tu_tmp("st.gguf"));
    expect_tensors(tu_tmp("st.gguf"), tu_tmp("ref.gguf"), BEE_TYPE_F32);
    /* the same weights with mask_modules: pruned tensors are dropped, logits match upstream's pruned model */
    json_object_set_new(cfg, "mask_modules", json_pack("[[b,b],[b,b]]", 1, 0, 0, 1));
    write_safetensors_folder(tu_tmp("st_masked"), cfg);
    convert(tu_tmp("st_masked"), "", tu_tmp("masked.gguf"));
    bee_gguf *g;
    assert_int_equal(bee_gguf_open(tu_tmp("masked.gguf"), &g), 0);
    assert_null(bee_gguf_find_tensor(g, "blk.0.attn_q.weight"));
    assert_null(bee_gguf_find_tensor(g, "blk.1.ffn_up.weight"));
    assert_non_null(bee_gguf_find_tensor(g, "blk.1.attn_q.weight"));
    bee_gguf_free(g);
    char *o;
    if (tu_bee_run(&o, "forward -m %s --data %s --out %s --steps 0", tu_tmp("masked.gguf"), data_file("zh"), tu_tmp("out_m")))
        fail_msg("forward: %s", o);
    free(o);
    char p[4200];
    snprintf(p, sizeof p, "%s/prefill_logits_lastpos.npy", tu_tmp("out_m"));
    assert_true(npy_diff(p, "cpmbee/golden/zh/prefill_logits_lastpos_masked_model.npy") <= 1e-3);
    /* a config whose shapes disagree with the checkpoint is refused, naming the tensor */
    json_object_set_new(cfg, "dim_ff", json_integer(64));
    json_object_del(cfg, "mask_modules");
    write_safetensors_folder(tu_tmp("st_bad"), cfg);
    char a[8400];
    snprintf(a, sizeof a, "convert %s -o %s", tu_tmp("st_bad"), tu_tmp("bad_out.gguf"));
    expect_run(1, "config says [64, 64]", "%s", a);
    json_decref(cfg);
}

static void test_forward_cli(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    golden_write_tiny(tu_tmp("ref.gguf"), NULL, 0);
    const char *ex[] = {"zh", "en", "mixed"};
    for (int i = 0; i < 3; i++) {
        const char *dir = tu_tmp(ex[i]);
        char *o;
        if (tu_bee_run(&o, "forward -m %s --data %s --out %s_out --steps 6", tu_tmp("ref.gguf"), data_file(ex[i]), dir))
            fail_msg("forward: %s", o);
        free(o);
        char p[4300], g[256];
        snprintf(p, sizeof p, "%s_out/prefill_logits_lastpos.npy", dir);
        snprintf(g, sizeof g, "cpmbee/golden/%s/prefill_logits_lastpos.npy", ex[i]);
        assert_true(npy_diff(p, g) <= 1e-3);
        snprintf(p, sizeof p, "%s_out/incremental_logits.npy", dir);
        snprintf(g, sizeof g, "cpmbee/golden/%s/incremental_logits.npy", ex[i]);
        assert_true(npy_diff(p, g) <= 1e-3);
    }
}

static void test_generate_cli(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    golden_write_tiny(tu_tmp("ref.gguf"), NULL, 0);
    const char *ex[] = {"zh", "en", "mixed"};
    for (int i = 0; i < 3; i++) {
        char *o;
        if (tu_bee_run(&o, "generate -m %s --data %s --beam 3 --max-length 8 --repetition-penalty 1.1 --json 2>/dev/null",
                tu_tmp("ref.gguf"), data_file(ex[i])))
            fail_msg("generate: %s", o);
        json_error_t err;
        json_t *got = json_loads(o, 0, &err), *rec = golden_record(ex[i]);
        if (!got || !json_equal(got, json_object_get(rec, "beam_search_result")))
            fail_msg("%s: generate --json printed %s", ex[i], o);
        json_decref(got), json_decref(rec);
        free(o);
    }
}

static void test_tokenize_cli(void **s) {
    (void)s;
    if (!bee_file_present_golden()) skip();
    golden_write_tiny(tu_tmp("ref.gguf"), NULL, 0);
    FILE *f = fopen(tu_shared("cpmbee/golden/tokenizer_cases.jsonl"), "r");
    char *line = NULL;
    size_t cap = 0;
    int checked = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t err;
        json_t *c = json_loads(line, 0, &err);
        const char *text = json_string_value(json_object_get(c, "text"));
        if (strchr(text, '\'') || strchr(text, '\n') || strchr(text, '\r') || strchr(text, '\t')) {
            json_decref(c);
            continue; /* not expressible in a simple quoted shell argument */
        }
        char *o;
        int rc = tu_bee_run(&o, "tokenize -m %s --json -- '%s' 2>&1", tu_tmp("ref.gguf"), text);
        if (json_object_get(c, "error")) {
            assert_int_equal(rc, 1);
        } else {
            json_t *got = json_loads(o, 0, &err);
            json_t *want = json_pack("{s:O, s:O}", "ids", json_object_get(c, "ids"), "ext_table",
                                     json_object_get(c, "ext_table"));
            if (rc || !got || !json_equal(got, want)) fail_msg("tokenize '%s' printed %s", text, o);
            json_decref(got), json_decref(want);
        }
        checked++;
        free(o);
        json_decref(c);
    }
    free(line);
    fclose(f);
    assert_true(checked > 30);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_bad_flags), cmocka_unit_test(test_demo_model),
        cmocka_unit_test(test_bad_inputs),         cmocka_unit_test(test_convert_variants),
        cmocka_unit_test(test_bench_cli),
        cmocka_unit_test(test_forward_cli),        cmocka_unit_test(test_generate_cli),
        cmocka_unit_test(test_tokenize_cli),       cmocka_unit_test(test_convert_safetensors_and_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
