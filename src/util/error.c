#include "util/error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

int bee_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return -1;
}

int bee_fail_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof g_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(prefix);
    memcpy(g_msg, prefix, n);
    size_t rest = sizeof g_msg - n - 1, k = strlen(old);
    if (k > rest) k = rest;
    memcpy(g_msg + n, old, k);
    g_msg[n + k] = 0;
    return -1;
}

const char *bee_error_message(void) { return g_msg[0] ? g_msg : "unknown error"; }

void bee_error_clear(void) { g_msg[0] = 0; }
