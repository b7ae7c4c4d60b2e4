/* Training log (JSONL) and loss-curve SVG; see trainlog.h. */
#include "train/trainlog.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"

#define MAX_DRAWN 2000

int bee_train_log_push(bee_train_log *l, const bee_log_point *p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        bee_log_point *v = realloc(l->v, cap * sizeof *v);
        if (!v) return bee_fail("out of memory");
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = *p;
    return 0;
}

void bee_train_log_free(bee_train_log *l) {
    free(l->v);
    memset(l, 0, sizeof *l);
}

void bee_train_log_truncate(bee_train_log *l, uint64_t step) {
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].step <= step) l->v[k++] = l->v[i];
    l->n = k;
}

/* ================================================================ JSONL */

static int field(bee_str *out, const char *name, const char *fmt, double x) {
    if (!isfinite(x)) return 0;
    char num[64];
    snprintf(num, sizeof num, fmt, x);
    return bee_str_printf(out, ",\"%s\":%s", name, num);
}

int bee_log_point_jsonl(const bee_log_point *p, bee_str *out) {
    if (bee_str_printf(out, "{\"step\":%llu", (unsigned long long)p->step) || field(out, "loss", "%.9g", p->loss) ||
        field(out, "lr", "%.6g", p->lr) || field(out, "gnorm", "%.6g", p->gnorm) ||
        field(out, "tok_s", "%.1f", p->tok_s) || field(out, "eval_loss", "%.9g", p->eval_loss))
        return -1;
    return bee_str_appendz(out, "}\n");
}

int bee_train_log_jsonl(const bee_train_log *l, bee_str *out) {
    for (size_t i = 0; i < l->n; i++)
        if (bee_log_point_jsonl(&l->v[i], out)) return -1;
    return 0;
}

static int get_num(json_t *o, const char *name, double *x, const char *path, size_t line) {
    json_t *v = json_object_get(o, name);
    *x = NAN;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bee_fail("%s:%zu: field '%s' is not a number", path, line, name);
    *x = json_number_value(v);
    return 0;
}

static int parse_line(const char *s, size_t n, const char *path, size_t line, bee_log_point *p) {
    json_error_t err;
    json_t *o = json_loadb(s, n, 0, &err);
    if (!o) return bee_fail("%s:%zu: invalid JSON: %s", path, line, err.text);
    int rc = 0;
    json_t *st = json_object_get(o, "step");
    if (!json_is_object(o)) rc = bee_fail("%s:%zu: not a JSON object", path, line);
    else if (!json_is_integer(st) || json_integer_value(st) < 0)
        rc = bee_fail("%s:%zu: field 'step' missing or not a non-negative integer", path, line);
    else {
        p->step = (uint64_t)json_integer_value(st);
        rc = get_num(o, "loss", &p->loss, path, line) || get_num(o, "lr", &p->lr, path, line) ||
             get_num(o, "gnorm", &p->gnorm, path, line) || get_num(o, "tok_s", &p->tok_s, path, line) ||
             get_num(o, "eval_loss", &p->eval_loss, path, line) ? -1 : 0;
    }
    json_decref(o);
    return rc;
}

int bee_train_log_read(const char *path, bee_train_log *l) {
    char *buf;
    size_t len;
    if (bee_read_file(path, &buf, &len)) return -1;
    int rc = 0;
    size_t line = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - buf) : len;
        line++;
        size_t a = i;
        while (a < end && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\r')) a++;
        if (a < end) {
            bee_log_point p;
            if (parse_line(buf + a, end - a, path, line, &p) == 0) rc = bee_train_log_push(l, &p);
            else if (nl) rc = -1;
            /* else: an unfinished last line, skipped */
        }
        i = end + 1;
    }
    free(buf);
    return rc;
}

/* ================================================================ SVG */

size_t bee_curve_train_points(size_t n) { return n > MAX_DRAWN ? MAX_DRAWN : n; }

typedef struct {
    double lo, hi, step;
} axis;

/* Tick spacing 1, 2 or 5 x 10^k giving about `want` intervals; the range is
 * widened to whole ticks. */
static axis nice_axis(double lo, double hi, int want, int integer) {
    if (!(hi > lo)) lo -= 0.5, hi += 0.5;
    double raw = (hi - lo) / want, p = pow(10, floor(log10(raw))), f = raw / p;
    double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
    if (integer && step < 1) step = 1;
    axis a = {floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
    if (!(a.hi > a.lo)) a.hi = a.lo + step;
    return a;
}

enum { W = 720, H = 440, ML = 72, MR = 24, MT = 48, MB = 56 };

static double px(const axis *a, double x) { return ML + (x - a->lo) / (a->hi - a->lo) * (W - ML - MR); }
static double py(const axis *a, double y) { return H - MB - (y - a->lo) / (a->hi - a->lo) * (H - MT - MB); }

static void tick_label(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    snprintf(buf, n, "%.6g", v);
}

/* The training points to draw: finite losses, averaged in runs when there
 * are more than MAX_DRAWN. */
static size_t train_points(const bee_train_log *l, double *xs, double *ys) {
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (isfinite(l->v[i].loss)) xs[n] = (double)l->v[i].step, ys[n] = l->v[i].loss, n++;
    if (n <= MAX_DRAWN) return n;
    for (size_t b = 0; b < MAX_DRAWN; b++) {
        size_t s = b * n / MAX_DRAWN, e = (b + 1) * n / MAX_DRAWN;
        double sx = 0, sy = 0;
        for (size_t i = s; i < e; i++) sx += xs[i], sy += ys[i];
        xs[b] = sx / (double)(e - s), ys[b] = sy / (double)(e - s);
    }
    return MAX_DRAWN;
}

int bee_curve_svg(const bee_train_log *l, const char *title, bee_str *s) {
    double *xs = malloc((l->n + 1) * sizeof *xs), *ys = malloc((l->n + 1) * sizeof *ys);
    if (!xs || !ys) {
        free(xs), free(ys);
        return bee_fail("out of memory");
    }
    size_t nt = train_points(l, xs, ys), ne = 0;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (size_t i = 0; i < nt; i++)
        x0 = fmin(x0, xs[i]), x1 = fmax(x1, xs[i]), y0 = fmin(y0, ys[i]), y1 = fmax(y1, ys[i]);
    for (size_t i = 0; i < l->n; i++) {
        double e = l->v[i].eval_loss, x = (double)l->v[i].step;
        if (!isfinite(e)) continue;
        ne++;
        x0 = fmin(x0, x), x1 = fmax(x1, x), y0 = fmin(y0, e), y1 = fmax(y1, e);
    }
    if (nt + ne == 0) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    axis ax = nice_axis(x0, x1, 8, 1), ay = nice_axis(y0, y1, 6, 0);
    char lab[64];

    bee_str_printf(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                      "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    bee_str_printf(s, "<!-- %zu training points drawn, %zu evaluations -->\n", nt, ne);
    bee_str_appendz(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"360\" y=\"28\" "
                       "text-anchor=\"middle\" font-size=\"16\">");
    bee_str_append_xml(s, title ? title : "training loss");
    bee_str_appendz(s, "</text>\n<g class=\"grid\" stroke=\"#e4e4e4\">\n");
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step)
        bee_str_printf(s, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", ML, py(&ay, v), W - MR, py(&ay, v));
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step)
        bee_str_printf(s, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", px(&ax, v), MT, px(&ax, v), H - MB);
    bee_str_appendz(s, "</g>\n<g class=\"ticks\" fill=\"#444\">\n");
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step) {
        tick_label(lab, sizeof lab, v, ay.step);
        bee_str_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML - 6, py(&ay, v) + 4, lab);
    }
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step) {
        tick_label(lab, sizeof lab, v, ax.step);
        bee_str_printf(s, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px(&ax, v), H - MB + 16, lab);
    }
    bee_str_printf(s, "</g>\n<g class=\"axes\" stroke=\"#000\">\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n"
                      "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/>\n</g>\n",
                   ML, MT, ML, H - MB, ML, H - MB, W - MR, H - MB);
    bee_str_printf(s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">step</text>\n", (ML + W - MR) / 2, H - 14);
    bee_str_printf(s, "<text x=\"18\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 18 %d)\">"
                      "loss (nats per token)</text>\n", (MT + H - MB) / 2, (MT + H - MB) / 2);
    if (nt) {
        bee_str_appendz(s, "<polyline class=\"train\" fill=\"none\" stroke=\"#2f6fd0\" stroke-width=\"1.5\" points=\"");
        for (size_t i = 0; i < nt; i++)
            bee_str_printf(s, "%s%.1f,%.1f", i ? " " : "", px(&ax, xs[i]), py(&ay, ys[i]));
        bee_str_appendz(s, "\"/>\n");
    }
    if (ne) {
        bee_str_appendz(s, "<polyline class=\"eval-line\" fill=\"none\" stroke=\"#d04a2f\" stroke-dasharray=\"4 3\" points=\"");
        size_t k = 0;
        for (size_t i = 0; i < l->n; i++)
            if (isfinite(l->v[i].eval_loss))
                bee_str_printf(s, "%s%.1f,%.1f", k++ ? " " : "", px(&ax, (double)l->v[i].step), py(&ay, l->v[i].eval_loss));
        bee_str_appendz(s, "\"/>\n");
        for (size_t i = 0; i < l->n; i++)
            if (isfinite(l->v[i].eval_loss))
                bee_str_printf(s, "<circle class=\"eval\" cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"#d04a2f\">"
                                  "<title>step %llu: held-out loss %.4f</title></circle>\n",
                               px(&ax, (double)l->v[i].step), py(&ay, l->v[i].eval_loss),
                               (unsigned long long)l->v[i].step, l->v[i].eval_loss);
    }
    /* legend, top right */
    int lx = W - MR - 150, ly = MT + 14;
    bee_str_printf(s, "<g class=\"legend\">\n<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#2f6fd0\" "
                      "stroke-width=\"1.5\"/><text x=\"%d\" y=\"%d\">training loss</text>\n",
                   lx, ly, lx + 22, ly, lx + 28, ly + 4);
    if (ne)
        bee_str_printf(s, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#d04a2f\" stroke-dasharray=\"4 3\"/>"
                          "<circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"#d04a2f\"/><text x=\"%d\" y=\"%d\">held-out loss</text>\n",
                       lx, ly + 18, lx + 22, ly + 18, lx + 11, ly + 18, lx + 28, ly + 22);
    int rc = bee_str_appendz(s, "</g>\n</svg>\n");
    free(xs), free(ys);
    return rc;
}

int bee_curve_write(const char *path, const bee_train_log *l, const char *title) {
    bee_str s = {0};
    int rc = bee_curve_svg(l, title, &s);
    if (rc == 0) rc = bee_write_file_atomic(path, s.s, s.n);
    bee_str_free(&s);
    return rc;
}
