/* Shared pieces of the bee CLI: option parsing with clear errors and --help. */
#ifndef BEE_CLI_H
#define BEE_CLI_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;  /* long name without dashes, e.g. "max-length" */
    char short_name;   /* 0 if none */
    const char *arg;   /* argument placeholder, NULL for a flag */
    const char *help;
    const char *env;   /* environment variable giving a default, or NULL */
    int multi;         /* may be repeated: every value is kept (cli_list) */
} cli_opt;

typedef struct {
    const char *cmd;      /* "generate" */
    const char *usage;    /* "-m MODEL (--data JSON | -p TEXT) [options]" */
    const char *summary;  /* one line */
    const cli_opt *opts;  /* terminated by {0} */
    const char **values;  /* parsed values, parallel to opts (flags: "1") */
    const char **pos;     /* positional arguments */
    const char **multi;   /* values of repeatable options, in order */
    int *multi_opt;       /* option index of each multi value */
    int n_multi;
    int n_pos;
} cli_args;

/* Parses argv (after the subcommand). Returns 0 on success, 1 when --help was
 * printed, 2 on a bad flag (message printed). */
int cli_parse(cli_args *a, int argc, char **argv);
/* cli_parse for a command body: returns 1 (with *rc = the exit code, a freed)
 * when the command should stop — after --help or a bad flag — else 0. */
int cli_begin(cli_args *a, int argc, char **argv, int *rc);
const char *cli_get(const cli_args *a, const char *name);
/* Every value of a repeatable option (NULL-terminated, malloc'd array). */
const char **cli_list(const cli_args *a, const char *name);
/* Numeric getters: print "bee CMD: --NAME: ..." and return -1 on bad input. */
int cli_int(const cli_args *a, const char *name, long lo, long hi, long *out);
int cli_float(const cli_args *a, const char *name, double lo, double hi, double *out);
int cli_u64(const cli_args *a, const char *name, unsigned long long *out);
/* A byte size: digits with an optional K, M, G or T (powers of 1024, an
 * optional trailing B or iB), e.g. 512M, 2G, 1048576; at least 1. */
int cli_size(const cli_args *a, const char *name, size_t *out);
void cli_free(cli_args *a);
/* Prints "bee CMD: <last library error>" to stderr and returns 1. */
int cli_fail(const char *cmd);
int cli_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Commands with subcommands ("bee safety check"): runs the one named by
 * argv[0], or prints their list for --help. */
typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} cli_subcommand;
int cli_dispatch(const char *cmd, const cli_subcommand *subs, size_t n, int argc, char **argv);

/* Loads -m MODEL with the options -t/--threads, --kv-type and --lora (when the
 * command has them); prints the error and returns 1 on failure. */
struct bee_model;
int cli_model_load(const char *cmd, const cli_args *a, struct bee_model **m);
/* The --kv-type option as a bee type (F32 when absent); 1 after printing an error. */
int cli_kv_type(const char *cmd, const cli_args *a, uint32_t *out);
#define CLI_OPT_KV_TYPE {"kv-type", 0, "TYPE", "KV cache element type: f32 (default, exact), f16 or bf16 (half the memory)", "BEE_KV_TYPE", 0}

#define CLI_OPT_LORA {"lora", 0, "ADAPTER.gguf", "apply a LoRA adapter (bee train --lora) without merging it", "BEE_LORA", 0}

int cmd_convert(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_safety(int argc, char **argv);
int cmd_feedback(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_index(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_ask(int argc, char **argv);
int cmd_vocab(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_digest(int argc, char **argv);

#endif
