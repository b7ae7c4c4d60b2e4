/* Small jansson helpers shared by the commands and stores. */
#ifndef BEE_UTIL_JSON_H
#define BEE_UTIL_JSON_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string of s[0..n): JSON strings must be UTF-8, and text read from
 * elsewhere may not be, so invalid bytes become U+FFFD. */
json_t *bee_json_string_lossy(const char *s, size_t n);

#endif
