#define _POSIX_C_SOURCE 200809L

#include "log.h"

#include <stdarg.h>
#include <time.h>

static lact_log_level log_level = LACT_LOG_INFO;

void lact_log_set_level(lact_log_level level) {
    log_level = level;
}

lact_log_level lact_log_get_level(void) {
    return log_level;
}

void lact_log(lact_log_level level, const char *fmt, ...) {
    static const char *const prefix[] = {"debug: ", "", "warn: ", "error: "};
    if (level < log_level || level >= LACT_LOG_SILENT) return;
    /* One buffered write per line so concurrent lines do not interleave. */
    char line[2048];
    int len = snprintf(line, sizeof line, "[lact] %s", prefix[level]);
    va_list ap;
    va_start(ap, fmt);
    if (len > 0 && (size_t)len < sizeof line)
        vsnprintf(line + len, sizeof line - (size_t)len, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}

double lact_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
