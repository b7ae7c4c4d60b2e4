/* Dataset readers: each returns a JSON array of flat sample objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

static json_t *fail_null(void) { return NULL; }

static char *read_text(const char *path, size_t *len) {
    char *buf;
    if (bee_read_file(path, &buf, len)) return NULL;
    size_t bad = bee_utf8_check(buf, *len);
    if (bad) {
        bee_fail("%s: not valid UTF-8 (byte %zu)", path, bad - 1);
        free(buf);
        return NULL;
    }
    return buf;
}

/* ---------------------------------------------------------------- CSV (RFC 4180) */

/* Parses one record starting at *pos into an array of strings; *line counts
 * newlines for messages. Returns NULL at end of input (with *pos == len). */
static json_t *csv_record(const char *s, size_t len, size_t *pos, size_t *line, const char *path, int *err) {
    json_t *rec = json_array();
    bee_str f = {0};
    size_t i = *pos, start_line = *line;
    int quoted = 0, done = 0;
    while (!done) {
        if (i >= len) done = 1;
        else if (quoted) {
            if (s[i] == '"' && i + 1 < len && s[i + 1] == '"') bee_str_append(&f, "\"", 1), i += 2;
            else if (s[i] == '"') quoted = 0, i++;
            else {
                if (s[i] == '\n') (*line)++;
                bee_str_append(&f, s + i++, 1);
            }
            continue;
        } else if (s[i] == '"' && f.n == 0) quoted = 1, i++;
        else if (s[i] == ',') {
            json_array_append_new(rec, json_stringn(f.s ? f.s : "", f.n));
            f.n = 0;
            i++;
        } else if (s[i] == '\n' || s[i] == '\r') {
            i += (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
            (*line)++;
            done = 1;
        } else bee_str_append(&f, s + i++, 1);
        if (done) json_array_append_new(rec, json_stringn(f.s ? f.s : "", f.n));
    }
    if (quoted) {
        bee_fail("%s:%zu: unterminated quoted field", path, start_line);
        *err = 1;
    }
    bee_str_free(&f);
    *pos = i;
    return rec;
}

json_t *bee_read_csv(const char *path) {
    size_t len, pos = 0, line = 1;
    char *s = read_text(path, &len);
    if (!s) return fail_null();
    if (len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) pos = 3;
    int err = 0;
    json_t *head = csv_record(s, len, &pos, &line, path, &err), *out = json_array();
    size_t nf = json_array_size(head);
    while (!err && pos < len) {
        size_t at = line;
        json_t *rec = csv_record(s, len, &pos, &line, path, &err);
        size_t n = json_array_size(rec);
        if (!err && n == 1 && json_string_length(json_array_get(rec, 0)) == 0) { /* blank line */
            json_decref(rec);
            continue;
        }
        if (!err && n != nf) {
            bee_fail("%s:%zu: %zu fields, the header has %zu", path, at, n, nf);
            err = 1;
        }
        json_t *o = json_object();
        for (size_t k = 0; !err && k < n; k++) {
            const char *name = json_string_value(json_array_get(head, k));
            json_object_set(o, *name ? name : "id", json_array_get(rec, k));
        }
        json_array_append_new(out, o);
        json_decref(rec);
    }
    if (!err && nf < 2) err = bee_fail("%s: no header row", path) ? 1 : 1;
    json_decref(head);
    free(s);
    if (err) json_decref(out);
    return err ? NULL : out;
}

/* ---------------------------------------------------------------- TSV */

json_t *bee_read_tsv(const char *path, json_t *columns) {
    size_t len, nc = json_array_size(columns);
    if (nc == 0) return bee_fail("%s: the task gives no \"columns\" for the TSV reader", path) ? NULL : NULL;
    char *s = read_text(path, &len);
    if (!s) return NULL;
    json_t *out = json_array();
    size_t line = 0;
    char *save = NULL;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line++;
        size_t ll = strlen(l);
        if (ll && l[ll - 1] == '\r') l[--ll] = 0;
        if (!ll) continue;
        json_t *o = json_object();
        char *p = l;
        for (size_t k = 0; k < nc; k++) {
            char *tab = k + 1 < nc ? strchr(p, '\t') : NULL;
            if (k + 1 < nc && !tab) {
                bee_fail("%s:%zu: %zu columns, expected %zu", path, line, k + 1, nc);
                json_decref(o);
                json_decref(out);
                free(s);
                return NULL;
            }
            json_object_set_new(o, json_string_value(json_array_get(columns, k)),
                                json_stringn(p, tab ? (size_t)(tab - p) : strlen(p)));
            p = tab ? tab + 1 : p;
        }
        json_array_append_new(out, o);
    }
    free(s);
    return out;
}

/* ---------------------------------------------------------------- JSONL */

json_t *bee_read_jsonl(const char *path) {
    size_t len;
    char *s = read_text(path, &len);
    if (!s) return NULL;
    json_t *out = json_array();
    size_t line = 0;
    char *p = s;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k < n) {
            json_error_t je;
            json_t *o = json_loadb(p, n, 0, &je);
            if (!json_is_object(o)) {
                bee_fail("%s:%zu: %s", path, line, o ? "not a JSON object" : je.text);
                json_decref(o);
                json_decref(out);
                free(s);
                return NULL;
            }
            json_array_append_new(out, o);
        }
        p = nl ? nl + 1 : p + n;
    }
    free(s);
    return out;
}

/* ---------------------------------------------------------------- SQuAD */

static int squad_paragraph(json_t *para, json_t *out, const char *path) {
    json_t *ctx = json_object_get(para, "context"), *qas = json_object_get(para, "qas"), *qa;
    size_t i;
    if (!json_is_string(ctx) || !json_is_array(qas)) return bee_fail("%s: a paragraph lacks \"context\" or \"qas\"", path);
    json_array_foreach(qas, i, qa) {
        json_t *q = json_object_get(qa, "question"), *ans = json_object_get(qa, "answers"), *a;
        if (!json_is_string(q) || !json_is_array(ans)) return bee_fail("%s: qas[%zu] lacks \"question\" or \"answers\"", path, i);
        json_t *texts = json_array(), *o = json_object();
        size_t k;
        json_array_foreach(ans, k, a) {
            json_t *t = json_object_get(a, "text");
            if (json_is_string(t)) json_array_append(texts, t);
        }
        json_t *id = json_object_get(qa, "id");
        json_object_set_new(o, "id", json_string(json_is_string(id) ? json_string_value(id) : ""));
        json_object_set(o, "context", ctx);
        json_object_set(o, "question", q);
        json_object_set(o, "answer", json_array_size(texts) ? json_array_get(texts, 0) : json_string(""));
        json_object_set_new(o, "answers", texts);
        json_array_append_new(out, o);
    }
    return 0;
}

json_t *bee_read_squad(const char *path) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *data = json_object_get(root, "data"), *art;
    if (!root) return bee_fail("%s:%d: %s", path, je.line, je.text) ? NULL : NULL;
    json_t *out = json_array();
    int rc = json_is_array(data) ? 0 : bee_fail("%s: no \"data\" array", path);
    size_t i;
    json_array_foreach(data, i, art) {
        json_t *paras = json_object_get(art, "paragraphs"), *p;
        size_t k;
        if (rc == 0 && !json_is_array(paras)) rc = bee_fail("%s: data[%zu] has no \"paragraphs\" array", path, i);
        json_array_foreach(paras, k, p) if (rc == 0) rc = squad_paragraph(p, out, path);
    }
    json_decref(root);
    if (rc) json_decref(out);
    return rc ? NULL : out;
}

/* ---------------------------------------------------------------- GAOKAO-Bench */

/* Option markers from the most to the least specific: the full-width stop
 * GAOKAO-Bench uses, then "、", then an ASCII "." (which stems also contain,
 * as in "A.B 型"). */
static const char *const k_marks[] = {"\xEF\xBC\x8E", "\xE3\x80\x81", "."};

static const char *find_marker(const char *from, char letter, int kind, size_t *mlen) {
    size_t n = strlen(k_marks[kind]);
    for (const char *p = from; *p; p++)
        if (*p == letter && !strncmp(p + 1, k_marks[kind], n)) return *mlen = n + 1, p;
    return NULL;
}

static json_t *trimmed(const char *b, const char *e) {
    for (;;) {
        if (b < e && (*b == ' ' || *b == '\n' || *b == '\r' || *b == '\t')) b++;
        else if (e - b >= 3 && !memcmp(b, "\xE3\x80\x80", 3)) b += 3; /* ideographic space */
        else break;
    }
    for (;;) {
        if (e > b && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t')) e--;
        else if (e - b >= 3 && !memcmp(e - 3, "\xE3\x80\x80", 3)) e -= 3;
        else break;
    }
    return json_stringn(b, (size_t)(e - b));
}

/* Splits the stem from options A–D: the first "A" marker followed by B, C, D markers. */
static json_t *gaokao_item(json_t *ex) {
    const char *q = json_string_value(json_object_get(ex, "question"));
    json_t *ans = json_object_get(ex, "answer");
    const char *a = json_string_value(json_array_get(ans, 0));
    if (!q || json_array_size(ans) != 1 || !a || strlen(a) != 1 || a[0] < 'A' || a[0] > 'D') return NULL;
    for (int kind = 0; kind < 3; kind++) {
        const char *m[5];
        size_t ml[4];
        int ok = (m[0] = find_marker(q, 'A', kind, &ml[0])) != NULL;
        for (int k = 1; k < 4 && ok; k++) ok = (m[k] = find_marker(m[k - 1] + ml[k - 1], (char)('A' + k), kind, &ml[k])) != NULL;
        if (!ok) continue;
        m[4] = q + strlen(q);
        json_t *o = json_object();
        json_object_set_new(o, "question", trimmed(q, m[0]));
        for (int k = 0; k < 4; k++) {
            char key[2] = {(char)('A' + k), 0};
            json_object_set_new(o, key, trimmed(m[k] + ml[k], m[k + 1]));
        }
        json_object_set_new(o, "answer", json_string(a));
        json_object_set_new(o, "id", json_sprintf("%lld", (long long)json_integer_value(json_object_get(ex, "index"))));
        json_t *yr = json_object_get(ex, "year");
        if (json_is_string(yr)) json_object_set(o, "year", yr);
        return o;
    }
    return NULL;
}

json_t *bee_read_gaokao(const char *path) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je), *ex;
    if (!root) return bee_fail("%s:%d: %s", path, je.line, je.text) ? NULL : NULL;
    json_t *list = json_object_get(root, "example");
    if (!json_is_array(list)) {
        json_decref(root);
        return bee_fail("%s: no \"example\" array", path) ? NULL : NULL;
    }
    json_t *out = json_array();
    size_t i;
    /* multi-answer items and items whose options cannot be split are skipped:
     * they are not single-choice A–D questions */
    json_array_foreach(list, i, ex) {
        json_t *o = gaokao_item(ex);
        if (o) json_array_append_new(out, o);
    }
    json_decref(root);
    return out;
}

/* ---------------------------------------------------------------- next line */

static uint64_t mix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Units of lines: the "lines" arrays of a poems JSONL, or one unit holding
 * every non-empty line of a text file. */
static json_t *nextline_units(const char *path, const bee_nextline_opts *o) {
    if (o->poems) {
        json_t *rows = bee_read_jsonl(path), *row, *units = json_array();
        size_t i;
        if (!rows) return json_decref(units), NULL;
        json_array_foreach(rows, i, row) {
            json_t *lines = json_object_get(row, "lines"), *l;
            size_t k;
            int ok = json_is_array(lines);
            json_array_foreach(lines, k, l) ok &= json_is_string(l);
            if (!ok) {
                bee_fail("%s:%zu: \"lines\" must be an array of strings", path, i + 1);
                json_decref(rows), json_decref(units);
                return NULL;
            }
            json_array_append(units, row);
        }
        json_decref(rows);
        return units;
    }
    size_t len;
    char *s = read_text(path, &len);
    if (!s) return NULL;
    json_t *lines = json_array();
    for (char *p = s, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
        if (n) json_array_append_new(lines, json_stringn(p, n));
    }
    free(s);
    return json_pack("[{s:s,s:s,s:o}]", "title", "", "author", "", "lines", lines);
}

/* An item: the context before line k of unit u, the true line and distractor
 * lines from other units (of the same length in characters when asked). */
json_t *bee_read_nextline(const char *path, const bee_nextline_opts *o) {
    json_t *units = nextline_units(path, o);
    if (!units) return NULL;
    size_t n_units = json_array_size(units), n_lines = 0;
    for (size_t u = 0; u < n_units; u++) n_lines += json_array_size(json_object_get(json_array_get(units, u), "lines"));
    /* every line as (unit, index), to draw distractors from */
    size_t *lu = malloc((n_lines + 1) * sizeof *lu), *li = malloc((n_lines + 1) * sizeof *li), m = 0;
    json_t *out = json_array();
    if (!lu || !li) {
        free(lu), free(li), json_decref(units), json_decref(out);
        return bee_fail("out of memory"), NULL;
    }
    for (size_t u = 0; u < n_units; u++)
        for (size_t k = 0; k < json_array_size(json_object_get(json_array_get(units, u), "lines")); k++) lu[m] = u, li[m++] = k;
    uint64_t st = o->seed * 0x100000001B3ull + 7;
    for (size_t u = 0; u < n_units; u++) {
        json_t *unit = json_array_get(units, u), *lines = json_object_get(unit, "lines");
        size_t nl = json_array_size(lines);
        if (nl < 2) continue;
        /* poems: one item per poem at a drawn line; a text file: every line after the first */
        size_t k0 = o->poems ? 1 + (size_t)(mix64(&st) % (nl - 1)) : 1, k1 = o->poems ? k0 + 1 : nl;
        for (size_t k = k0; k < k1; k++) {
            const char *gold = json_string_value(json_array_get(lines, k));
            size_t glen = utf8_chars(gold), first = k > (size_t)o->context_lines ? k - (size_t)o->context_lines : 0;
            const char *opts[16] = {gold};
            int n_opt = 1;
            for (int tries = 0; tries < 4000 && n_opt <= o->distractors; tries++) {
                size_t r = (size_t)(mix64(&st) % m);
                const char *cand = json_string_value(json_array_get(json_object_get(json_array_get(units, lu[r]), "lines"), li[r]));
                int dup = (o->poems && lu[r] == u) || (!o->poems && li[r] == k);
                for (int q = 0; q < n_opt; q++) dup |= !strcmp(opts[q], cand);
                if (!dup && (!o->same_length || utf8_chars(cand) == glen)) opts[n_opt++] = cand;
            }
            if (n_opt <= o->distractors) continue; /* too few lines of that length: no item */
            int gpos = (int)(mix64(&st) % (uint64_t)n_opt);
            const char *tmp = opts[gpos];
            opts[gpos] = opts[0], opts[0] = tmp;
            bee_str ctx = {0};
            for (size_t c = first; c < k; c++)
                bee_str_printf(&ctx, "%s%s", c > first ? (o->joiner ? o->joiner : "\n") : "",
                               json_string_value(json_array_get(lines, c)));
            json_t *title = json_object_get(unit, "title"), *author = json_object_get(unit, "author");
            json_t *item = json_pack("{s:O,s:O,s:s%,s:s,s:I}", "title", title ? title : json_null(), "author",
                                     author ? author : json_null(), "context", ctx.s ? ctx.s : "", ctx.n, "next", gold, "line",
                                     (json_int_t)k);
            if (item && !title) json_object_set_new(item, "title", json_string(""));
            if (item && !author) json_object_set_new(item, "author", json_string(""));
            bee_str_free(&ctx);
            for (int q = 0; item && q < n_opt; q++) {
                char key[2] = {(char)('A' + q), 0};
                json_object_set_new(item, key, json_string(opts[q]));
            }
            char ans[2] = {(char)('A' + gpos), 0};
            if (item) json_object_set_new(item, "answer", json_string(ans));
            if (item) json_array_append_new(out, item);
        }
    }
    free(lu), free(li);
    json_decref(units);
    return out;
}

/* ---------------------------------------------------------------- chunks */

json_t *bee_read_chunks(const char *path, size_t chunk_chars) {
    size_t len;
    char *s = read_text(path, &len);
    if (!s) return NULL;
    json_t *out = json_array();
    bee_str cur = {0};
    size_t chars = 0;
    for (char *p = s, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
        nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        while (n && p[n - 1] == '\r') n--;
        if (!n) continue;
        if (cur.n) bee_str_append(&cur, "\n", 1);
        bee_str_append(&cur, p, n);
        char save = p[n];
        p[n] = 0;
        chars += utf8_chars(p) + 1;
        p[n] = save;
        if (chars >= chunk_chars) {
            json_array_append_new(out, json_pack("{s:s%}", "text", cur.s, cur.n));
            cur.n = 0, chars = 0;
        }
    }
    if (cur.n) json_array_append_new(out, json_pack("{s:s%}", "text", cur.s, cur.n));
    bee_str_free(&cur);
    free(s);
    return out;
}
