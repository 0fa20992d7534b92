#include "check.h"

#include <stdarg.h>

int check_failures = 0;
int check_count = 0;

void check_report(const char *file, int line, const char *fmt, ...) {
    check_failures++;
    fprintf(stderr, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int check_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    if (check_count == 0) {
        printf("%s: no checks ran\n", name);
        return 1;
    }
    return check_failures == 0 ? 0 : 1;
}

int check_skip(const char *name, const char *why) {
    printf("%s: skipped: %s\n", name, why);
    return 77;
}
