#include "util/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int bee_ivec_push(bee_ivec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return bee_fail("out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

void bee_ivec_free(bee_ivec *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static int str_reserve(bee_str *s, size_t extra) {
    if (s->n + extra + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < s->n + extra + 1) cap *= 2;
    char *p = realloc(s->s, cap);
    if (!p) return bee_fail("out of memory");
    s->s = p;
    s->cap = cap;
    return 0;
}

int bee_str_append(bee_str *s, const char *data, size_t n) {
    if (str_reserve(s, n)) return -1;
    if (n) memcpy(s->s + s->n, data, n);
    s->n += n;
    s->s[s->n] = 0;
    return 0;
}

int bee_str_appendz(bee_str *s, const char *z) { return bee_str_append(s, z, strlen(z)); }

int bee_str_printf(bee_str *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || str_reserve(s, (size_t)k)) return -1;
    va_start(ap, fmt);
    vsnprintf(s->s + s->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    s->n += (size_t)k;
    return 0;
}

int bee_str_append_xml(bee_str *s, const char *t) {
    int rc = 0;
    for (; *t && rc == 0; t++) {
        const char *e = *t == '<' ? "&lt;" : *t == '>' ? "&gt;" : *t == '&' ? "&amp;" : *t == '"' ? "&quot;" : NULL;
        rc = e ? bee_str_appendz(s, e) : bee_str_append(s, t, 1);
    }
    return rc;
}

void bee_str_free(bee_str *s) {
    free(s->s);
    s->s = NULL;
    s->n = s->cap = 0;
}

char *bee_str_take(bee_str *s) {
    char *r = s->s ? s->s : calloc(1, 1);
    s->s = NULL;
    s->n = s->cap = 0;
    return r;
}

int bee_utf8_len(const unsigned char *p, size_t avail) {
    if (avail == 0) return 0;
    unsigned c = p[0];
    int n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)n > avail) return 0;
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

size_t bee_utf8_check(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int k = bee_utf8_len((const unsigned char *)s + i, n - i);
        if (!k) return i + 1;
        i += (size_t)k;
    }
    return 0;
}
