/* Logging to stderr with a level; the CLI's --quiet/--verbose set it. */
#ifndef LACT_LOG_H
#define LACT_LOG_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_log_level {
    LACT_LOG_DEBUG = 0,
    LACT_LOG_INFO,
    LACT_LOG_WARN,
    LACT_LOG_ERROR,
    LACT_LOG_SILENT
} lact_log_level;

void lact_log_set_level(lact_log_level level);
lact_log_level lact_log_get_level(void);
void lact_log(lact_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LACT_DEBUG(...) lact_log(LACT_LOG_DEBUG, __VA_ARGS__)
#define LACT_INFO(...) lact_log(LACT_LOG_INFO, __VA_ARGS__)
#define LACT_WARN(...) lact_log(LACT_LOG_WARN, __VA_ARGS__)
#define LACT_ERROR(...) lact_log(LACT_LOG_ERROR, __VA_ARGS__)

/* Seconds on a monotonic clock. */
double lact_now(void);

#ifdef __cplusplus
}
#endif
#endif
