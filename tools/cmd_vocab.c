/* bee vocab build: a CPM-Bee-format vocabulary from a plain-text corpus, with
 * its coverage and characters per token measured on the corpus (and
 * optionally on a held-out file). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tokenizer/vocab_build.h"
#include "util/error.h"
#include "util/file.h"

static void print_stats(const char *what, const bee_vocab_stats *s) {
    double cov = s->chars ? 1.0 - (double)s->unknown_chars / (double)s->chars : 1.0;
    double cpt = s->tokens ? (double)s->chars / (double)s->tokens : 0.0;
    fprintf(stderr, "vocab: %s: %llu lines, %llu chars, %llu tokens; coverage %.4f%% (%llu unknown chars), %.3f chars/token\n",
            what, (unsigned long long)s->lines, (unsigned long long)s->chars, (unsigned long long)s->tokens, 100.0 * cov,
            (unsigned long long)s->unknown_chars, cpt);
}

static int measure_file(const bee_tokenizer *t, const char *path, const char *text, size_t len) {
    bee_vocab_stats s;
    if (bee_vocab_measure(t, text, len, &s)) return bee_fail_prefix("%s: ", path);
    print_stats(path, &s);
    return 0;
}

static int parse_u32(const cli_args *a, const char *name, long lo, long hi, uint32_t *out) {
    long v = (long)*out;
    if (cli_int(a, name, lo, hi, &v)) return -1;
    *out = (uint32_t)v;
    return 0;
}

static int build_run(const cli_args *a, const bee_vocab_opts *o) {
    const char *corpus = cli_get(a, "corpus"), *out = cli_get(a, "out"), *eval = cli_get(a, "eval");
    char *text = NULL, *etext = NULL;
    size_t len = 0, elen = 0;
    bee_vocab v = {0};
    bee_tokenizer *t = NULL;
    int rc = bee_read_file(corpus, &text, &len);
    if (rc == 0 && (rc = bee_vocab_build(text, len, o, &v))) bee_fail_prefix("%s: ", corpus);
    if (rc == 0) rc = bee_vocab_write(&v, out);
    if (rc == 0) {
        fprintf(stderr, "vocab: %s: %u tokens (%u special, %u characters, %u Chinese words, %u English pieces; %u characters left out)\n",
                out, v.n, v.n_special, v.n_chars, v.n_cjk, v.n_en, v.n_chars_dropped);
        rc = bee_tokenizer_load_txt(out, &t); /* measure what was written, as bee init will read it */
    }
    if (rc == 0) rc = measure_file(t, corpus, text, len);
    if (rc == 0 && eval && (rc = bee_read_file(eval, &etext, &elen)) == 0) rc = measure_file(t, eval, etext, elen);
    bee_tokenizer_free(t);
    bee_vocab_free(&v);
    free(text);
    free(etext);
    return rc;
}

static int vocab_build(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"corpus", 0, "FILE", "UTF-8 text, one document per line (e.g. .cache/corpus/train.txt)", "BEE_CORPUS", 0},
        {"out", 'o', "VOCAB.txt", "output vocabulary, bee.txt format (written atomically)", NULL, 0},
        {"size", 0, "N", "total tokens including the special tokens (default 8000)", "BEE_VOCAB_SIZE", 0},
        {"min-count", 0, "N", "occurrences a character needs to get a token (default 2)", NULL, 0},
        {"min-piece-count", 0, "N", "occurrences a multi-character piece needs (default 5)", NULL, 0},
        {"max-cjk", 0, "N", "longest Chinese word considered, in characters (2..8, default 4)", NULL, 0},
        {"eval", 0, "FILE", "also report coverage and characters per token on this file (e.g. heldout.txt)", NULL, 0},
        {0},
    };
    cli_args a = {"vocab build", "--corpus FILE -o VOCAB.txt [--size N] [--eval FILE]",
                  "Builds a CPM-Bee vocabulary: the special tokens at their fixed ids, every character seen\n"
                  "--min-count times, then frequent Chinese words and English pieces best first by\n"
                  "occurrences x (characters - 1). Reports coverage (share of characters not left unknown)\n"
                  "and characters per token.",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    bee_vocab_opts o;
    bee_vocab_opts_default(&o);
    if (parse_u32(&a, "size", 1, 10000000, &o.size) || parse_u32(&a, "min-count", 1, 1L << 30, &o.min_char_count) ||
        parse_u32(&a, "min-piece-count", 1, 1L << 30, &o.min_piece_count) ||
        parse_u32(&a, "max-cjk", 2, 8, &o.max_cjk_chars))
        rc = 2;
    else if (!cli_get(&a, "corpus")) rc = cli_error(a.cmd, "missing --corpus FILE") + 1;
    else if (!cli_get(&a, "out")) rc = cli_error(a.cmd, "missing -o VOCAB.txt") + 1;
    else if (build_run(&a, &o)) rc = cli_fail(a.cmd);
    cli_free(&a);
    return rc;
}

int cmd_vocab(int argc, char **argv) {
    static const cli_subcommand subs[] = {
        {"build", vocab_build, "build a vocabulary from a text corpus; report coverage and chars/token"},
    };
    return cli_dispatch("vocab", subs, sizeof subs / sizeof *subs, argc, argv);
}
