#include "testutil.h"

#include "util/error.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_shared[4096];

static const char *shared_root(void) {
    const char *env = getenv("BEE_SHARED_DIR");
#ifdef BEE_DEFAULT_SHARED
    return env && *env ? env : BEE_DEFAULT_SHARED;
#else
    return env && *env ? env : "../shared";
#endif
}

int bee_file_present_golden(void) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/cpmbee/golden", shared_root());
    if (stat(p, &st) == 0) return 1;
    fprintf(stderr, "SKIP: golden data not found at %s (set BEE_SHARED_DIR; it sits beside the clone in CI)\n", p);
    return 0;
}

void tu_require_shared(void) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/cpmbee/golden", shared_root());
    if (stat(p, &st) != 0) {
        fprintf(stderr, "SKIP: golden data not found at %s (set BEE_SHARED_DIR; it sits beside the clone in CI)\n", p);
        exit(77);
    }
}

const char *tu_shared(const char *rel) {
    snprintf(g_shared, sizeof g_shared, "%s/%s", shared_root(), rel);
    return g_shared;
}

const char *tu_tmpdir(void) {
    static char dir[4096];
    if (!dir[0]) {
        const char *base = getenv("BEE_TMPDIR");
        char tmpl[4096];
        if (base && *base) {
            mkdir(base, 0755);
            snprintf(tmpl, sizeof tmpl, "%s/t.XXXXXX", base);
        } else {
            snprintf(tmpl, sizeof tmpl, "/tmp/beetest.XXXXXX");
        }
        if (!mkdtemp(tmpl)) {
            perror("mkdtemp");
            exit(1);
        }
        snprintf(dir, sizeof dir, "%s", tmpl);
    }
    return dir;
}

const char *tu_tmp(const char *name) {
    static char bufs[8][4096];
    static int slot;
    char *b = bufs[slot++ % 8];
    const char *dir = tu_tmpdir();
    size_t dl = strlen(dir), nl = strlen(name);
    if (dl + nl + 2 > sizeof bufs[0]) {
        fprintf(stderr, "tu_tmp: path too long\n");
        exit(1);
    }
    memcpy(b, dir, dl);
    b[dl] = '/';
    memcpy(b + dl + 1, name, nl + 1);
    return b;
}

void tu_write(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

int tu_run(const char *cmd, char **out) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    if (buf) buf[n] = 0;
    int st = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *tu_bee(void) {
    const char *b = getenv("BEE_BIN");
    return b && *b ? b : "./bee";
}

void tu_buf_put(tu_buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}

void tu_buf_le(tu_buf *b, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        tu_buf_put(b, &c, 1);
    }
}

int tu_bee_run(char **out, const char *fmt, ...) {
    char args[6000], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", tu_bee(), args);
    return tu_run(cmd, out);
}

double tu_train_loss(bee_train_model *t, const bee_train_batch *b) {
    bee_train_result res;
    if (bee_train_forward_backward(t, b, 0, 1.0f, &res, NULL)) fail_msg("%s", bee_error_message());
    return res.loss;
}

double tu_fd_grad(bee_train_model *t, const bee_train_batch *b, float *x, double h) {
    float x0 = *x;
    double f[4], s[4] = {-2, -1, 1, 2};
    for (int k = 0; k < 4; k++) {
        *x = (float)(x0 + s[k] * h);
        f[k] = tu_train_loss(t, b);
    }
    *x = x0;
    return (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
}

size_t tu_count(const char *s, const char *needle) {
    size_t n = 0, k = strlen(needle);
    for (const char *p = s; k && (p = strstr(p, needle)); p += k) n++;
    return n;
}

static int xml_name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.'; }

const char *tu_xml_problem(const char *s) {
    static char why[256];
    const char *stack[64];
    size_t nstack[64], depth = 0, roots = 0;
    const char *p = s;
    while (*p) {
        if (*p == '&') {
            const char *e = p + 1;
            while (*e && (isalnum((unsigned char)*e) || *e == '#')) e++;
            if (*e != ';' || e == p + 1) return snprintf(why, sizeof why, "bare '&' at offset %ld", (long)(p - s)), why;
            p = e + 1;
            continue;
        }
        if (*p != '<') {
            if (*p == '>') return snprintf(why, sizeof why, "bare '>' at offset %ld", (long)(p - s)), why;
            p++;
            continue;
        }
        if (strncmp(p, "<?", 2) == 0 || strncmp(p, "<!--", 4) == 0) {
            const char *e = strstr(p, p[1] == '?' ? "?>" : "-->");
            if (!e) return "unterminated declaration or comment";
            p = e + (p[1] == '?' ? 2 : 3);
            continue;
        }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing, *q = name;
        while (xml_name_char(*q)) q++;
        size_t nlen = (size_t)(q - name);
        if (nlen == 0) return snprintf(why, sizeof why, "bad tag at offset %ld", (long)(p - s)), why;
        /* attributes: name="value" pairs until '>' or '/>' */
        for (;;) {
            while (*q == ' ' || *q == '\n' || *q == '\t') q++;
            if (*q == '>' || (q[0] == '/' && q[1] == '>')) break;
            if (closing || !xml_name_char(*q))
                return snprintf(why, sizeof why, "bad attribute in <%.*s> at offset %ld", (int)nlen, name, (long)(q - s)), why;
            while (xml_name_char(*q)) q++;
            if (*q != '=' || (q[1] != '"' && q[1] != '\''))
                return snprintf(why, sizeof why, "unquoted attribute in <%.*s>", (int)nlen, name), why;
            char quote = q[1];
            const char *e = strchr(q + 2, quote);
            if (!e) return "unterminated attribute value";
            for (const char *c = q + 2; c < e; c++)
                if (*c == '<') return snprintf(why, sizeof why, "'<' in an attribute of <%.*s>", (int)nlen, name), why;
            q = e + 1;
        }
        int empty = *q == '/';
        p = q + (empty ? 2 : 1);
        if (closing) {
            if (depth == 0 || nstack[depth - 1] != nlen || strncmp(stack[depth - 1], name, nlen) != 0)
                return snprintf(why, sizeof why, "</%.*s> does not close the open element", (int)nlen, name), why;
            depth--;
        } else if (!empty) {
            if (depth == 0) roots++;
            if (depth == 64) return "nested too deep";
            stack[depth] = name, nstack[depth] = nlen, depth++;
        } else if (depth == 0) {
            roots++;
        }
    }
    if (depth) return snprintf(why, sizeof why, "<%.*s> is never closed", (int)nstack[depth - 1], stack[depth - 1]), why;
    if (roots != 1) return snprintf(why, sizeof why, "%zu root elements", roots), why;
    return NULL;
}

void tu_make_model(char *path, const char *name, const char *extra) {
    snprintf(path, 4096, "%s", tu_tmp(name));
    char cmd[8192], *out;
    snprintf(cmd, sizeof cmd, "%s init -o %s --seed 7 %s", tu_bee(), path, extra);
    if (tu_run(cmd, &out)) fail_msg("bee init failed: %s", out);
    free(out);
}
