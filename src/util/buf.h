/* Growable arrays and strings. */
#ifndef BEE_UTIL_BUF_H
#define BEE_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int32_t *v;
    size_t n, cap;
} bee_ivec;

typedef struct {
    char *s; /* always NUL-terminated once non-empty */
    size_t n, cap;
} bee_str;

int bee_ivec_push(bee_ivec *a, int32_t x);
void bee_ivec_free(bee_ivec *a);

int bee_str_append(bee_str *s, const char *data, size_t n);
int bee_str_appendz(bee_str *s, const char *z);
int bee_str_printf(bee_str *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Appends the NUL-terminated text t escaped for XML/SVG text and attributes
 * (&lt; &gt; &amp; &quot;). */
int bee_str_append_xml(bee_str *s, const char *t);
void bee_str_free(bee_str *s);
/* Returns the string (empty string, never NULL) and leaves s empty; caller frees. */
char *bee_str_take(bee_str *s);

/* UTF-8: length in bytes of the sequence starting at p (1..4), or 0 if invalid. */
int bee_utf8_len(const unsigned char *p, size_t avail);
/* 0 when the whole buffer is valid UTF-8, else the offset of the first bad byte + 1. */
size_t bee_utf8_check(const char *s, size_t n);

#endif
