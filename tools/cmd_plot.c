/* bee plot: redraws the loss curve of a `bee train --log` JSONL file as SVG. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "train/trainlog.h"

int cmd_plot(int argc, char **argv) {
    static const cli_opt opts[] = {
        {"log", 0, "FILE.jsonl", "training log written by bee train --log", NULL, 0},
        {"out", 'o', "FILE.svg", "chart to write (atomically)", NULL, 0},
        {"title", 0, "TEXT", "chart title (default: the log's file name)", NULL, 0},
        {0},
    };
    cli_args a = {"plot", "--log FILE.jsonl -o FILE.svg [--title TEXT]",
                  "Draws training loss against step, with the held-out evaluations as points, from a\n"
                  "bee train --log file (the chart bee train --curve writes while training).",
                  opts};
    int rc = 0;
    if (cli_begin(&a, argc, argv, &rc)) return rc;
    const char *log = cli_get(&a, "log"), *out = cli_get(&a, "out"), *title = cli_get(&a, "title");
    if (!log || !out) {
        rc = cli_error("plot", "%s", !log ? "missing --log FILE.jsonl" : "missing -o FILE.svg") + 1;
        cli_free(&a);
        return rc;
    }
    char deftitle[512];
    if (!title) {
        const char *base = strrchr(log, '/');
        snprintf(deftitle, sizeof deftitle, "bee train: %s", base ? base + 1 : log);
        title = deftitle;
    }
    bee_train_log l = {0};
    if (bee_train_log_read(log, &l) || bee_curve_write(out, &l, title)) rc = cli_fail("plot");
    else {
        size_t ne = 0, nt = 0;
        for (size_t i = 0; i < l.n; i++) ne += isfinite(l.v[i].eval_loss) != 0, nt += isfinite(l.v[i].loss) != 0;
        printf("wrote %s: %zu training points, %zu evaluations\n", out, nt, ne);
    }
    bee_train_log_free(&l);
    cli_free(&a);
    return rc;
}
