/* bee: one binary for the CPM-Bee stack. Dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef BEE_VERSION
#define BEE_VERSION "dev"
#endif

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command k_commands[] = {
    {"convert", cmd_convert, "convert an upstream checkpoint (torch .pt/.bin, safetensors, HF folder) to GGUF"},
    {"info", cmd_info, "show a model's architecture, sizes, parameter count and bytes"},
    {"quantize", cmd_quantize, "rewrite a model's weights as q8_0, q4_0, q4_1, f16, bf16 or f32"},
    {"init", cmd_init, "write a model with random weights (for tests and demos)"},
    {"tokenize", cmd_tokenize, "tokenize text with a model's vocabulary"},
    {"forward", cmd_forward, "run the forward pass and dump logits as .npy"},
    {"generate", cmd_generate, "fill the <ans> slots of a CPM-Bee dict (beam search or sampling)"},
    {"chat", cmd_chat, "multi-turn chat in the CPM-Bee dialogue form"},
    {"perplexity", cmd_perplexity, "rolling perplexity of a text file"},
    {"eval", cmd_eval, "evaluate models on tasks: results, leaderboard (md, csv, svg), resumable cache"},
    {"bench", cmd_bench, "prefill and decode speed against this machine's measured roofline"},
    {"safety", cmd_safety, "check text against a content-safety policy (bee safety check)"},
    {"feedback", cmd_feedback, "export collected feedback as fine-tuning data (bee feedback export)"},
    {"vocab", cmd_vocab, "build a CPM-Bee vocabulary from a text corpus (bee vocab build)"},
    {"data", cmd_data, "encode text or CPM-Bee JSONL into a binary token shard for bee train --shards"},
    {"train", cmd_train, "train or fine-tune on CPM-Bee dicts or plain text (AdamW, checkpoints, LoRA)"},
    {"plot", cmd_plot, "draw the loss curve of a bee train --log file as SVG"},
    {"lora", cmd_lora, "LoRA adapters: bee lora merge folds one into a model's weights"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server with continuous batching"},
    {"index", cmd_index, "add documents (txt, md, html, jsonl) to a search index, incrementally"},
    {"search", cmd_search, "BM25 passage search over an index (Chinese and English)"},
    {"ask", cmd_ask, "answer a question from retrieved passages, citing them"},
    {"digest", cmd_digest, "digest a question's answers into cited main viewpoints (extractive or map-reduce)"},
};

static void usage(FILE *f) {
    fprintf(f, "bee %s: CPM-Bee inference in C\n\nusage: bee COMMAND [options]   (bee COMMAND --help for details)\n\n",
            BEE_VERSION);
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bee %s\n", BEE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(argv[1], k_commands[i].name) == 0) return k_commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "bee: unknown command '%s' (see 'bee --help')\n", argv[1]);
    return 2;
}
