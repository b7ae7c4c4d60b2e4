#include "util/json.h"

#include "util/buf.h"

json_t *bee_json_string_lossy(const char *s, size_t n) {
    if (!bee_utf8_check(s, n)) return json_stringn(s, n);
    bee_str t = {0};
    for (size_t i = 0; i < n;) {
        int k = bee_utf8_len((const unsigned char *)s + i, n - i);
        if (k > 0) bee_str_append(&t, s + i, (size_t)k);
        else bee_str_appendz(&t, "\xEF\xBF\xBD");
        i += k > 0 ? (size_t)k : 1;
    }
    json_t *j = json_stringn(t.s ? t.s : "", t.n);
    bee_str_free(&t);
    return j;
}
