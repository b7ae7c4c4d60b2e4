/* bee perplexity */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model/model.h"
#include "model/perplexity.h"
#include "util/file.h"

static void show_progress(void *user, size_t done, size_t total) {
    (void)user;
    if (isatty(2)) fprintf(stderr, "\rperplexity: %zu/%zu tokens", done, total);
}

int cmd_perplexity(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"model", 'm', "MODEL.gguf", "model file", "BEE_MODEL", 0},
        {"threads", 't', "N", "worker threads (default: all cores)", "BEE_THREADS", 0},
        CLI_OPT_KV_TYPE,
        CLI_OPT_LORA,
        {"ctx", 'c', "N", "window of answer tokens (default 512); windows advance by N/2", NULL, 0},
        {"json", 0, NULL, "print {\"tokens\": N, \"ppl\": X}", NULL, 0},
        {0},
    };
    cli_args a = {"perplexity", "-m MODEL.gguf FILE [--ctx N] [--json]",
                  "Rolling perplexity of a UTF-8 text file, scored as CPM-Bee answer tokens.", opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    long ctx = 512;
    char *text = NULL;
    size_t len = 0;
    bee_model *m = NULL;
    const char *path = cli_get(&a, "model");
    if (a.n_pos != 1) rc = cli_error("perplexity", "expected one FILE argument") + 1;
    else if (!path) rc = cli_error("perplexity", "missing -m MODEL.gguf") + 1;
    else if (cli_int(&a, "ctx", 8, 1 << 20, &ctx)) rc = 2;
    else if (bee_read_file(a.pos[0], &text, &len)) rc = cli_fail("perplexity");
    else if (cli_model_load("perplexity", &a, &m)) rc = 1;
    if (rc == 0) {
        bee_ppl_result r;
        if (bee_perplexity(m, text, len, (size_t)ctx, &r, show_progress, NULL)) {
            rc = cli_fail("perplexity");
        } else {
            if (isatty(2)) fprintf(stderr, "\n");
            if (cli_get(&a, "json")) printf("{\"tokens\": %zu, \"ppl\": %.6f}\n", r.n_tokens, r.ppl);
            else printf("tokens: %zu\nperplexity: %.4f\nmean nll: %.6f nats\n", r.n_tokens, r.ppl, r.nll / (double)r.n_tokens);
        }
    }
    free(text);
    bee_model_free(m);
    cli_free(&a);
    return rc;
}
