#include "cli.h"

#include "model/lora.h"
#include "model/model.h"
#include "util/types.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "util/error.h"

static void print_help(const cli_args *a) {
    printf("usage: bee %s %s\n\n%s\n\noptions:\n", a->cmd, a->usage, a->summary);
    for (const cli_opt *o = a->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%c%s--%s%s%s", o->short_name ? "-" : "", o->short_name ? o->short_name : ' ',
                 o->short_name ? ", " : "  ", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-30s %s", left[1] == ' ' ? left + 1 : left, o->help);
        if (o->env) printf(" [env %s]", o->env);
        printf("\n");
    }
    printf("  %-30s %s\n", "-h, --help", "show this help");
}

static const cli_opt *find_opt(const cli_args *a, const char *arg, size_t *idx) {
    for (size_t i = 0; a->opts[i].name; i++) {
        const cli_opt *o = &a->opts[i];
        int hit = (arg[1] == '-' && strcmp(arg + 2, o->name) == 0) ||
                  (arg[1] != '-' && o->short_name && arg[1] == o->short_name && arg[2] == 0);
        if (hit) {
            *idx = i;
            return o;
        }
    }
    return NULL;
}

int cli_parse(cli_args *a, int argc, char **argv) {
    size_t n = 0;
    while (a->opts[n].name) n++;
    a->values = calloc(n + 1, sizeof *a->values);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    a->n_pos = 0;
    a->multi = calloc((size_t)argc + 1, sizeof *a->multi);
    a->multi_opt = calloc((size_t)argc + 1, sizeof *a->multi_opt);
    a->n_multi = 0;
    if (!a->values || !a->pos || !a->multi || !a->multi_opt) return cli_error(a->cmd, "out of memory") ? 2 : 2;
    for (size_t i = 0; i < n; i++)
        if (a->opts[i].env && getenv(a->opts[i].env)) a->values[i] = getenv(a->opts[i].env);
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (only_pos || arg[0] != '-' || arg[1] == 0) {
            a->pos[a->n_pos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            print_help(a);
            return 1;
        }
        char name[128];
        const char *eq = strchr(arg, '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq ? eq - arg : (long)strlen(arg)), arg);
        size_t idx;
        const cli_opt *o = find_opt(a, name, &idx);
        if (!o) {
            cli_error(a->cmd, "unknown option '%s' (see 'bee %s --help')", name, a->cmd);
            return 2;
        }
        if (!o->arg) {
            if (eq) {
                cli_error(a->cmd, "option '%s' takes no value", name);
                return 2;
            }
            a->values[idx] = "1";
        } else if (eq) {
            a->values[idx] = eq + 1;
        } else if (i + 1 < argc) {
            a->values[idx] = argv[++i];
        } else {
            cli_error(a->cmd, "option '%s' needs a value (%s)", name, o->arg);
            return 2;
        }
        if (o->multi && o->arg) {
            a->multi[a->n_multi] = a->values[idx];
            a->multi_opt[a->n_multi++] = (int)idx;
        }
    }
    return 0;
}

int cli_begin(cli_args *a, int argc, char **argv, int *rc) {
    int pr = cli_parse(a, argc, argv);
    if (!pr) return 0;
    cli_free(a);
    *rc = pr == 1 ? 0 : 2;
    return 1;
}

const char *cli_get(const cli_args *a, const char *name) {
    for (size_t i = 0; a->opts[i].name; i++)
        if (strcmp(a->opts[i].name, name) == 0) return a->values[i];
    return NULL;
}

int cli_int(const cli_args *a, const char *name, long lo, long hi, long *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return cli_error(a->cmd, "--%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi, v) ? -1 : -1;
    *out = x;
    return 0;
}

/* Power of 1024 of a size suffix ("", "K", "MiB", "gb", ...), or -1. */
static int size_shift(const char *u) {
    static const char units[] = "KMGT";
    if (!*u || strcasecmp(u, "B") == 0) return 0;
    const char *p = strchr(units, toupper((unsigned char)u[0]));
    if (!p) return -1;
    const char *rest = u + 1;
    if (*rest && strcasecmp(rest, "B") && strcasecmp(rest, "iB")) return -1;
    return 10 * (int)(p - units + 1);
}

int cli_size(const cli_args *a, const char *name, size_t *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    unsigned long long x = isdigit((unsigned char)v[0]) ? strtoull(v, &end, 10) : 0;
    int sh = isdigit((unsigned char)v[0]) && !errno ? size_shift(end) : -1;
    if (sh < 0 || x == 0 || x > (SIZE_MAX >> sh))
        return cli_error(a->cmd, "--%s: expected a size such as 512M or 2G (at least 1 byte), got '%s'", name, v) ? -1 : -1;
    *out = (size_t)x << sh;
    return 0;
}

int cli_u64(const cli_args *a, const char *name, unsigned long long *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return cli_error(a->cmd, "--%s: expected a non-negative integer, got '%s'", name, v) ? -1 : -1;
    *out = x;
    return 0;
}

int cli_float(const cli_args *a, const char *name, double lo, double hi, double *out) {
    const char *v = cli_get(a, name);
    if (!v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return cli_error(a->cmd, "--%s: expected a number in [%g, %g], got '%s'", name, lo, hi, v) ? -1 : -1;
    *out = x;
    return 0;
}

const char **cli_list(const cli_args *a, const char *name) {
    const char **out = calloc((size_t)a->n_multi + 1, sizeof *out);
    int n = 0;
    for (int i = 0; out && i < a->n_multi; i++)
        if (strcmp(a->opts[a->multi_opt[i]].name, name) == 0) out[n++] = a->multi[i];
    return out;
}

void cli_free(cli_args *a) {
    free(a->values);
    free(a->pos);
    free(a->multi);
    free(a->multi_opt);
}

int cli_fail(const char *cmd) {
    fprintf(stderr, "bee %s: %s\n", cmd, bee_error_message());
    return 1;
}

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "bee %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* ================================================================ model loading */

int cli_kv_type(const char *cmd, const cli_args *a, uint32_t *out) {
    const char *kv = cli_get(a, "kv-type");
    int kvt = kv ? bee_type_from_name(kv) : BEE_TYPE_F32;
    if (kvt != BEE_TYPE_F32 && kvt != BEE_TYPE_F16 && kvt != BEE_TYPE_BF16)
        return cli_error(cmd, "--kv-type: '%s' is not f32, f16 or bf16", kv);
    *out = (uint32_t)kvt;
    return 0;
}

int cli_model_load(const char *cmd, const cli_args *a, bee_model **m) {
    const char *path = cli_get(a, "model");
    long threads = 0;
    uint32_t kvt = BEE_TYPE_F32; /* set by cli_kv_type; initialised for -Wmaybe-uninitialized */
    *m = NULL;
    if (!path) return cli_error(cmd, "missing -m MODEL.gguf");
    if (cli_int(a, "threads", 0, 1024, &threads) || cli_kv_type(cmd, a, &kvt)) return 1;
    const char *lora = cli_get(a, "lora");
    if (bee_model_load(path, m) || bee_model_set_threads(*m, (int)threads) || bee_model_set_kv_type(*m, kvt) ||
        (lora && bee_model_apply_lora(*m, lora))) {
        bee_model_free(*m);
        *m = NULL;
        return cli_fail(cmd);
    }
    return 0;
}

int cli_dispatch(const char *cmd, const cli_subcommand *subs, size_t n, int argc, char **argv) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: bee %s SUBCOMMAND [options]   (bee %s SUBCOMMAND --help for details)\n\n", cmd, cmd);
        for (size_t i = 0; i < n; i++) printf("  %-10s %s\n", subs[i].name, subs[i].summary);
        return 0;
    }
    if (argc < 1) return cli_error(cmd, "missing subcommand (see 'bee %s --help')", cmd) + 1;
    for (size_t i = 0; i < n; i++)
        if (strcmp(argv[0], subs[i].name) == 0) return subs[i].fn(argc - 1, argv + 1);
    if (argv[0][0] == '-') return cli_error(cmd, "unknown option '%s' (see 'bee %s --help')", argv[0], cmd) + 1;
    return cli_error(cmd, "unknown subcommand '%s' (see 'bee %s --help')", argv[0], cmd) + 1;
}
