/* A small test harness: CHECK-style assertions that report file:line and
 * keep going, and a summary at the end. A test program returns
 * check_summary() from main (77 = skipped, for ctest). */
#ifndef LACT_TEST_CHECK_H
#define LACT_TEST_CHECK_H

#include <stdio.h>

#include "core/base/status.h"

extern int check_failures;
extern int check_count;

void check_report(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                            \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond)) check_report(__FILE__, __LINE__, "CHECK(%s) failed", #cond); \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        check_count++;                                                         \
        if (!(cond)) check_report(__FILE__, __LINE__, __VA_ARGS__);            \
    } while (0)

/* Asserts a call returns LACT_OK, printing the error message otherwise. */
#define CHECK_OK(expr)                                                         \
    do {                                                                       \
        check_count++;                                                         \
        lact_status check_s_ = (expr);                                         \
        if (check_s_ != LACT_OK)                                               \
            check_report(__FILE__, __LINE__, "%s -> %s: %s", #expr,            \
                         lact_status_name(check_s_), lact_errmsg());           \
    } while (0)

/* Asserts a call fails with the given status and a non-empty message. */
#define CHECK_FAILS(expr, code)                                                \
    do {                                                                       \
        check_count++;                                                         \
        lact_clear_error();                                                    \
        lact_status check_s_ = (expr);                                         \
        if (check_s_ != (code) || lact_errmsg()[0] == '\0')                    \
            check_report(__FILE__, __LINE__, "%s -> %s (\"%s\"), expected %s", #expr, \
                         lact_status_name(check_s_), lact_errmsg(),            \
                         lact_status_name(code));                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                  \
    do {                                                                       \
        check_count++;                                                         \
        double check_a_ = (a), check_b_ = (b);                                 \
        if (!(check_a_ - check_b_ <= (tol) && check_b_ - check_a_ <= (tol)))   \
            check_report(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| > %g", #a, \
                         check_a_, #b, check_b_, (double)(tol));               \
    } while (0)

/* Prints "N checks, M failed" and returns the exit code. */
int check_summary(const char *name);
/* Prints a skip reason and returns 77. */
int check_skip(const char *name, const char *why);

#endif
