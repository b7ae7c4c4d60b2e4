/* bee data: plain text or CPM-Bee JSONL → a binary token shard for
 * `bee train --shards` (format in src/train/shard.h). Encoding is the same
 * as `bee train --text/--data` does it, done once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "model/model.h"
#include "train/data.h"
#include "train/shard.h"
#include "util/error.h"

/* The tokenizer of --vocab FILE or of -m MODEL (which owns it then). */
static int data_tokenizer(const cli_args *a, bee_model **m, bee_tokenizer **own, const bee_tokenizer **t) {
    const char *vocab = cli_get(a, "vocab"), *model = cli_get(a, "model");
    if (vocab) {
        if (bee_tokenizer_load_txt(vocab, own)) return -1;
        *t = *own;
        return 0;
    }
    if (bee_model_load(model, m)) return -1;
    *t = (*m)->tok;
    return 0;
}

static int data_run(const cli_args *a) {
    const char *text = cli_get(a, "text"), *jsonl = cli_get(a, "jsonl"), *out = cli_get(a, "out");
    bee_model *m = NULL;
    bee_tokenizer *own = NULL;
    const bee_tokenizer *t = NULL;
    bee_train_data d;
    int rc = data_tokenizer(a, &m, &own, &t);
    /* stored whole; bee train cuts instances to its --ctx when it reads them */
    if (rc == 0 && (rc = bee_train_data_load(t, text ? text : jsonl, text != NULL, UINT32_MAX, &d)) == 0) {
        rc = bee_shard_write(out, t, &d);
        if (rc == 0)
            fprintf(stderr, "data: %s: %zu instances, %zu tokens (%u-token vocabulary)\n", out, d.n, d.n_tokens,
                    bee_tokenizer_n_vocab(t));
        bee_train_data_free(&d);
    }
    bee_tokenizer_free(own);
    bee_model_free(m);
    return rc;
}

int cmd_data(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"vocab", 0, "VOCAB.txt", "vocabulary in bee.txt form (e.g. from bee vocab build)", "BEE_VOCAB", 0},
        {"model", 'm', "MODEL.gguf", "take the vocabulary from this model instead", "BEE_MODEL", 0},
        {"text", 0, "FILE", "plain text: every non-empty line is one example, all of it predicted", NULL, 0},
        {"jsonl", 0, "FILE.jsonl", "one CPM-Bee dict per line, training form: {\"input\": ..., \"<ans>\": \"answer\"}",
         NULL, 0},
        {"out", 'o', "SHARD.bin", "output token shard (written atomically)", NULL, 0},
        {0},
    };
    cli_args a = {"data", "(--vocab VOCAB.txt | -m MODEL.gguf) (--text FILE | --jsonl FILE) -o SHARD.bin",
                  "Encodes training examples once into a binary token shard that bee train reads with --shards\n"
                  "(same instances as --text / --data would give; the shard records its vocabulary).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    if (!cli_get(&a, "vocab") == !cli_get(&a, "model"))
        rc = cli_error(a.cmd, "give exactly one of --vocab VOCAB.txt and -m MODEL.gguf") + 1;
    else if (!cli_get(&a, "text") == !cli_get(&a, "jsonl"))
        rc = cli_error(a.cmd, "give exactly one of --text FILE and --jsonl FILE") + 1;
    else if (!cli_get(&a, "out")) rc = cli_error(a.cmd, "missing -o SHARD.bin") + 1;
    else if (data_run(&a)) rc = cli_fail(a.cmd);
    cli_free(&a);
    return rc;
}
