/* Status codes and the last error message.
 * Every fallible call returns a lact_status; on failure the callee records one
 * human-readable line (thread-local) that the CLI prints as is. */
#ifndef LACT_STATUS_H
#define LACT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_status {
    LACT_OK = 0,
    LACT_E_ARG,         /* bad argument, flag, shape or dtype */
    LACT_E_IO,          /* open/read/write/rename failed */
    LACT_E_FORMAT,      /* malformed file content */
    LACT_E_NOMEM,       /* allocation failed (host or device) */
    LACT_E_CUDA,        /* CUDA runtime, cuBLAS or cuBLASLt error */
    LACT_E_UNSUPPORTED, /* valid request this build or device cannot serve */
    LACT_E_NOT_FOUND,   /* named tensor, op, key or file missing */
    LACT_STATUS_COUNT
} lact_status;

/* Records "fmt ..." as the last error of this thread and returns code. */
lact_status lact_fail(lact_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to the recorded message (adds context on the way up). */
lact_status lact_fail_context(lact_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last recorded message of this thread ("" if none). */
const char *lact_errmsg(void);
void lact_clear_error(void);
const char *lact_status_name(lact_status code);

#define LACT_TRY(expr)                                                         \
    do {                                                                       \
        lact_status lact_try_s_ = (expr);                                      \
        if (lact_try_s_ != LACT_OK) return lact_try_s_;                        \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
