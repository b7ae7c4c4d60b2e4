/* Error reporting: every failing function records a message here and returns
 * -1 (or NULL); the caller that finally reports to the user prints it. */
#ifndef BEE_UTIL_ERROR_H
#define BEE_UTIL_ERROR_H

#include <stdarg.h>

#if defined(__GNUC__)
#define BEE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BEE_PRINTF(a, b)
#endif

/* Records a formatted message as the thread's last error; always returns -1. */
int bee_fail(const char *fmt, ...) BEE_PRINTF(1, 2);
/* Prepends context ("file.gguf: ") to the last error; returns -1. */
int bee_fail_prefix(const char *fmt, ...) BEE_PRINTF(1, 2);
const char *bee_error_message(void);
void bee_error_clear(void);

#endif
