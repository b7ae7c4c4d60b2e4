/* bee convert / info / init */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "format/convert.h"
#include "kernels/dot.h"
#include "format/gguf.h"
#include "model/init.h"
#include "model/model.h"
#include "model/quantize.h"
#include "util/types.h"

/* A weight type name the forward pass can compute with (q8_1 is an
 * activation-only type and has no dot kernel); -1 otherwise. */
static int weight_type(const char *name) {
    int t = bee_type_from_name(name);
    return t >= 0 && bee_dot_kernel_get((uint32_t)t) ? t : -1;
}

/* ================================================================ convert */

int cmd_convert(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"out", 'o', "OUT.gguf", "output file (required)", NULL, 0},
        {"config", 0, "FILE", "upstream or HF config.json (default: beside SRC)", NULL, 0},
        {"vocab", 0, "FILE", "vocab.txt / bee.txt (default: beside SRC)", NULL, 0},
        {"dtype", 0, "TYPE", "f32, f16, bf16, q8_0, q4_0 or q4_1 (default: keep the checkpoint's types)", NULL, 0},
        {"name", 0, "NAME", "model name stored in the file", NULL, 0},
        {0},
    };
    cli_args a = {"convert", "SRC -o OUT.gguf [--config F] [--vocab F] [--dtype f32|f16|bf16]",
                  "Converts an upstream CPM-Bee checkpoint to a self-contained GGUF file. SRC is a torch zip\n"
                  "checkpoint (.pt, pytorch_model.bin), a .safetensors file, or an HF folder holding\n"
                  "config.json, vocab.txt and pytorch_model.bin / model.safetensors (or a shard index).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_convert_opts o = {0};
    o.src = a.n_pos == 1 ? a.pos[0] : NULL;
    o.out = cli_get(&a, "out");
    o.config = cli_get(&a, "config");
    o.vocab = cli_get(&a, "vocab");
    o.name = cli_get(&a, "name");
    o.dtype = -1;
    const char *dt = cli_get(&a, "dtype");
    if (!o.src) rc = cli_error("convert", "expected exactly one SRC argument (see 'bee convert --help')") + 1;
    else if (!o.out) rc = cli_error("convert", "missing -o OUT.gguf") + 1;
    else if (dt && (o.dtype = weight_type(dt)) < 0)
        rc = cli_error("convert", "--dtype: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_1)", dt) + 1;
    if (rc == 0 && bee_convert(&o, stderr)) rc = cli_fail("convert");
    cli_free(&a);
    return rc;
}

/* ================================================================ info */

static void print_type_counts(const bee_gguf *g) {
    uint64_t bytes[64] = {0}, count[64] = {0};
    for (size_t i = 0; i < bee_gguf_n_tensors(g); i++) {
        const bee_gguf_tensor *t = bee_gguf_tensor_at(g, i);
        bytes[t->type % 64] += t->nbytes;
        count[t->type % 64]++;
    }
    printf("tensor types:");
    for (int k = 0; k < 64; k++)
        if (count[k]) printf(" %s x%llu (%.2f MiB)", bee_type_name((uint32_t)k), (unsigned long long)count[k],
                             (double)bytes[k] / (1 << 20));
    printf("\n");
}

/* Expected resident memory: the weights (repacked into anonymous memory or
 * left mapped) plus the KV cache of one sequence of ctx tokens. */
static void print_memory(const bee_model *m, long ctx) {
    size_t per_tok[3];
    static const uint32_t kv[3] = {BEE_TYPE_F32, BEE_TYPE_F16, BEE_TYPE_BF16};
    bee_model *mm = (bee_model *)m;
    uint32_t saved = m->kv_type;
    for (int i = 0; i < 3; i++) mm->kv_type = kv[i], per_tok[i] = bee_seq_bytes(m, 1);
    mm->kv_type = saved;
    double w = (double)bee_gguf_file_size(m->gguf) / (1 << 20);
    printf("weights:       %.1f MiB file; %.1f MiB repacked into the panel layout (%s)\n", w,
           (double)m->panel_bytes / (1 << 20), m->panel_bytes ? "file pages released" : "BEE_REPACK=0 or no panel kernels");
    printf("KV cache:      %zu bytes per token (f32), %zu (f16/bf16)\n", per_tok[0], per_tok[1]);
    /* scratch of one forward pass: per token 6 rows of dim or attention width, 2 of dim_ff */
    double big = m->hp.dim > m->hp.n_heads * m->hp.dim_head ? m->hp.dim : (double)m->hp.n_heads * m->hp.dim_head;
    double chunk = ctx < 512 ? (double)ctx : 512, scratch = chunk * (6 * big + 2.0 * m->hp.dim_ff) * 4 / (1 << 20);
    double kv32 = (double)per_tok[0] * (double)ctx / (1 << 20), kv16 = (double)per_tok[1] * (double)ctx / (1 << 20);
    printf("memory @ctx %ld: KV %.1f MiB (f32) / %.1f MiB (f16); scratch of a %.0f-token prefill %.1f MiB;\n"
           "               expected peak RSS about %.0f MiB (f32 KV) / %.0f MiB (f16 KV)\n",
           ctx, kv32, kv16, chunk, scratch, w + kv32 + scratch + 8, w + kv16 + scratch + 8);
}

int cmd_info(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"ctx", 'c', "N", "context length for the memory estimate (default 4096)", NULL, 0},
        {0},
    };
    cli_args a = {"info", "MODEL.gguf [--ctx N]",
                  "Shows a model's architecture, sizes, parameter count, bytes and expected memory.", opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    if (a.n_pos != 1) {
        cli_free(&a);
        return cli_error("info", "expected one MODEL.gguf argument") + 1;
    }
    long ctx = 4096;
    if (cli_int(&a, "ctx", 1, 1 << 24, &ctx)) {
        cli_free(&a);
        return 2;
    }
    bee_model *m;
    if (bee_model_load(a.pos[0], &m)) {
        cli_free(&a);
        return cli_fail("info");
    }
    const bee_hparams *hp = &m->hp;
    uint32_t n_att = 0, n_ffn = 0;
    for (uint32_t i = 0; i < hp->n_layers; i++) n_att += m->layers[i].has_att, n_ffn += m->layers[i].has_ffn;
    printf("file:          %s (GGUF v%u, %zu tensors, %.2f MiB)\n", a.pos[0], bee_gguf_version(m->gguf),
           bee_gguf_n_tensors(m->gguf), (double)bee_gguf_file_size(m->gguf) / (1 << 20));
    printf("name:          %s\n", m->name ? m->name : "(none)");
    printf("architecture:  cpmbee\n");
    printf("vocab:         %u\n", hp->n_vocab);
    printf("dim_model:     %u\n", hp->dim);
    printf("heads:         %u x %u (attention width %u)\n", hp->n_heads, hp->dim_head, hp->n_heads * hp->dim_head);
    printf("dim_ff:        %u\n", hp->dim_ff);
    printf("layers:        %u (attention kept in %u, FFN kept in %u)\n", hp->n_layers, n_att, n_ffn);
    printf("position bias: %u buckets + %u segment buckets, max distance %u\n", hp->n_buckets, hp->n_seg_buckets,
           hp->max_distance);
    printf("eps:           %g\n", (double)hp->eps);
    printf("rotary:        base %g, distance scale %g, inv_freq %s\n", (double)hp->rope_base, (double)hp->rope_scale,
           hp->inv_freq_f16 ? "fp16-rounded (upstream half=true)" : "fp32");
    printf("parameters:    %llu (%.3f B)\n", (unsigned long long)bee_model_n_params(m),
           (double)bee_model_n_params(m) / 1e9);
    printf("weight bytes:  %llu (%.2f MiB)\n", (unsigned long long)bee_model_n_bytes(m),
           (double)bee_model_n_bytes(m) / (1 << 20));
    print_memory(m, ctx);
    print_type_counts(m->gguf);
    bee_model_free(m);
    cli_free(&a);
    return 0;
}

/* ================================================================ init */

static int apply_dims(cli_args *a, bee_hparams *hp) {
    static const char *names[] = {"dim", "layers", "heads", "dim-head", "ff"};
    uint32_t *fields[] = {&hp->dim, &hp->n_layers, &hp->n_heads, &hp->dim_head, &hp->dim_ff};
    for (size_t i = 0; i < 5; i++) {
        long v;
        if (!cli_get(a, names[i])) continue;
        if (cli_int(a, names[i], 1, 65536, &v)) return -1;
        *fields[i] = (uint32_t)v;
    }
    return 0;
}

int cmd_init(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"out", 'o', "OUT.gguf", "output file (required)", NULL, 0},
        {"shape", 0, "NAME", "tiny (default), small, cpm-bee-1b, cpm-bee-2b, cpm-bee-5b, cpm-bee-10b", NULL, 0},
        {"dim", 0, "N", "override dim_model", NULL, 0},
        {"layers", 0, "N", "override the layer count (drops mask_modules)", NULL, 0},
        {"heads", 0, "N", "override the head count", NULL, 0},
        {"dim-head", 0, "N", "override the head width", NULL, 0},
        {"ff", 0, "N", "override dim_ff", NULL, 0},
        {"vocab", 0, "FILE", "vocab.txt to embed (default: a builtin ASCII + CJK vocabulary)", NULL, 0},
        {"type", 0, "TYPE", "weight type: f32 (default), f16, bf16, q8_0, q4_0, q4_1", NULL, 0},
        {"seed", 0, "N", "random seed (default 42)", NULL, 0},
        {"name", 0, "NAME", "model name stored in the file", NULL, 0},
        {0},
    };
    cli_args a = {"init", "-o OUT.gguf [--shape NAME] [--vocab FILE] [--type f32|f16|bf16] [--seed N]",
                  "Writes a CPM-Bee model with random weights. Its output is meaningless text: it exists for\n"
                  "tests, demos and benchmarks until trained weights are available.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_init_opts o = {0};
    o.vocab = cli_get(&a, "vocab");
    o.name = cli_get(&a, "name");
    o.seed = 42;
    o.type = BEE_TYPE_F32;
    const char *out = cli_get(&a, "out"), *shape = cli_get(&a, "shape"), *ty = cli_get(&a, "type");
    unsigned long long seed = 42;
    if (!out) rc = cli_error("init", "missing -o OUT.gguf") + 1;
    else if (a.n_pos) rc = cli_error("init", "unexpected argument '%s'", a.pos[0]) + 1;
    else if (ty && weight_type(ty) < 0) rc = cli_error("init", "--type: unknown type '%s'", ty) + 1;
    else if (cli_u64(&a, "seed", &seed)) rc = 2;
    else if (bee_init_preset(shape ? shape : "tiny", &o.hp, &o.mask)) rc = cli_fail("init") + 1;
    else if (apply_dims(&a, &o.hp)) rc = 2;
    if (rc == 0) {
        if (ty) o.type = (uint32_t)weight_type(ty);
        o.seed = seed;
        if (cli_get(&a, "layers") && o.mask) free(o.mask), o.mask = NULL;
        if (bee_model_init_random(out, &o)) rc = cli_fail("init");
        else fprintf(stderr, "wrote %s (random weights)\n", out);
    }
    free(o.mask);
    cli_free(&a);
    return rc;
}

/* ================================================================ quantize */

int cmd_quantize(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"type", 0, "TYPE", "weight type: q8_0, q4_0, q4_1, f16, bf16 or f32 (required)", NULL, 0},
        {"embd-type", 0, "TYPE", "token embedding / output matrix type (default: q8_0 for 4-bit, else TYPE)", NULL, 0},
        {0},
    };
    cli_args a = {"quantize", "IN.gguf OUT.gguf --type q8_0|q4_0|q4_1|f16|bf16|f32 [--embd-type TYPE]",
                  "Rewrites a model's weight matrices in another type. Norms and the position bias table keep\n"
                  "their type; the tied embedding / output matrix may keep a higher precision.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *ty = cli_get(&a, "type"), *et = cli_get(&a, "embd-type");
    bee_quantize_opts o = {0, -1};
    if (a.n_pos != 2) rc = cli_error("quantize", "expected IN.gguf OUT.gguf") + 1;
    else if (!ty || weight_type(ty) < 0) rc = cli_error("quantize", "--type: expected q8_0, q4_0, q4_1, f16, bf16 or f32") + 1;
    else if (et && weight_type(et) < 0) rc = cli_error("quantize", "--embd-type: unknown type '%s'", et) + 1;
    if (rc == 0) {
        o.type = (uint32_t)weight_type(ty);
        o.embd_type = et ? weight_type(et) : -1;
        if (bee_model_quantize(a.pos[0], a.pos[1], &o, stderr)) rc = cli_fail("quantize");
    }
    cli_free(&a);
    return rc;
}
