/* bee lora merge: folds a LoRA adapter (bee train --lora) into a model's
 * weights and writes an fp32 model (quantize it afterwards with bee quantize). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/train.h"
#include "util/error.h"

static int merge_files(const char *base, const char *adapter, const char *out, const char *name) {
    bee_model *m = NULL;
    bee_train_model t;
    bee_lora lo;
    memset(&t, 0, sizeof t);
    memset(&lo, 0, sizeof lo);
    int rc = bee_model_load(base, &m);
    if (rc == 0) rc = bee_lora_read(adapter, &m->hp, NULL, &lo);
    if (rc == 0) rc = bee_train_model_from(m, &t);
    if (rc == 0) rc = bee_train_lora_merge(&t, &lo);
    if (rc == 0) {
        if (lo.base && *lo.base && m->name && strcmp(lo.base, m->name) != 0)
            fprintf(stderr, "lora merge: note: adapter was trained on '%s', merging into '%s'\n", lo.base, m->name);
        rc = bee_train_model_write(&t, out, name ? name : (m->name ? m->name : "merged"));
    }
    if (rc == 0)
        printf("merged %s (rank %u, alpha %g, %zu parameters) into %s -> %s\n", adapter, lo.rank, (double)lo.alpha,
               lo.n, base, out);
    bee_train_model_free(&t);
    bee_lora_free(&lo);
    bee_model_free(m);
    return rc;
}

static int lora_merge(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "BASE.gguf", "base model the adapter was trained on (any weight type)", "BEE_MODEL", 0},
        {"lora", 0, "ADAPTER.gguf", "adapter written by bee train --lora", NULL, 0},
        {"out", 'o', "OUT.gguf", "merged model (fp32)", NULL, 0},
        {"name", 0, "NAME", "general.name of the merged model (default: the base's)", NULL, 0},
        {0},
    };
    cli_args a = {"lora merge", "-m BASE.gguf --lora ADAPTER.gguf -o OUT.gguf",
                  "Folds W += sqrt(dim) * (alpha / r) * B A into project_q and project_v of every attention\n"
                  "block and writes the merged model in fp32 (bee quantize can then shrink it).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *base = cli_get(&a, "model"), *ad = cli_get(&a, "lora"), *out = cli_get(&a, "out");
    if (a.n_pos) rc = cli_error(a.cmd, "unexpected argument '%s'", a.pos[0]) + 1;
    else if (!base) rc = cli_error(a.cmd, "missing -m BASE.gguf") + 1;
    else if (!ad) rc = cli_error(a.cmd, "missing --lora ADAPTER.gguf") + 1;
    else if (!out) rc = cli_error(a.cmd, "missing -o OUT.gguf") + 1;
    else if (merge_files(base, ad, out, cli_get(&a, "name"))) rc = cli_fail(a.cmd);
    cli_free(&a);
    return rc;
}

int cmd_lora(int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: bee lora SUBCOMMAND [options]\n\n  merge      fold an adapter into a model's weights\n");
        return 0;
    }
    if (argc < 1) return cli_error("lora", "missing subcommand (see 'bee lora --help')") + 1;
    if (strcmp(argv[0], "merge") == 0) return lora_merge(argc - 1, argv + 1);
    return cli_error("lora", "unknown subcommand '%s' (see 'bee lora --help')", argv[0]) + 1;
}
