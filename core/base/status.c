#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LACT_ERRMSG_MAX 1024

static _Thread_local char errmsg[LACT_ERRMSG_MAX];

lact_status lact_fail(lact_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    return code;
}

lact_status lact_fail_context(lact_status code, const char *fmt, ...) {
    char old[LACT_ERRMSG_MAX];
    memcpy(old, errmsg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    /* Append ": <old message>" after the prefix, truncating at the buffer end. */
    if (old[0] && n >= 0 && (size_t)n + 2 < sizeof errmsg) {
        errmsg[n] = ':';
        errmsg[n + 1] = ' ';
        size_t room = sizeof errmsg - (size_t)n - 2;
        size_t len = strnlen(old, room - 1);
        memcpy(errmsg + n + 2, old, len);
        errmsg[(size_t)n + 2 + len] = '\0';
    }
    return code;
}

const char *lact_errmsg(void) { return errmsg; }

void lact_clear_error(void) { errmsg[0] = '\0'; }

const char *lact_status_name(lact_status code) {
    static const char *const names[] = {
        "ok", "bad argument", "i/o error", "bad format", "out of memory",
        "cuda error", "unsupported", "not found",
    };
    _Static_assert(sizeof names / sizeof names[0] == LACT_STATUS_COUNT,
                   "one name per status code");
    if ((int)code < 0 || code >= LACT_STATUS_COUNT) return "unknown status";
    return names[code];
}
