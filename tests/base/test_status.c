#include <string.h>

#include "core/base/log.h"
#include "core/base/status.h"
#include "core/base/threads.h"
#include "tests/support/check.h"

static lact_status open_thing(const char *path) {
    return lact_fail(LACT_E_IO, "%s: cannot open", path);
}

static void test_messages(void) {
    lact_clear_error();
    CHECK(lact_errmsg()[0] == '\0');
    CHECK(open_thing("a.bin") == LACT_E_IO);
    CHECK(strcmp(lact_errmsg(), "a.bin: cannot open") == 0);
    CHECK(lact_fail_context(LACT_E_IO, "loading %s", "model") == LACT_E_IO);
    CHECK(strcmp(lact_errmsg(), "loading model: a.bin: cannot open") == 0);
    lact_clear_error();
    lact_fail_context(LACT_E_ARG, "alone");
    CHECK(strcmp(lact_errmsg(), "alone") == 0);
    for (int i = 0; i < LACT_STATUS_COUNT; i++) {
        CHECK(lact_status_name((lact_status)i)[0] != '\0');
        for (int j = 0; j < i; j++)
            CHECK(strcmp(lact_status_name((lact_status)i), lact_status_name((lact_status)j)));
    }
    CHECK(strcmp(lact_status_name(LACT_STATUS_COUNT), "unknown status") == 0);
    CHECK(strcmp(lact_status_name(LACT_OK), "ok") == 0);
}

static void test_runtime(void) {
    lact_log_set_level(LACT_LOG_WARN);
    CHECK(lact_log_get_level() == LACT_LOG_WARN);
    LACT_INFO("this line is below the level and not printed");
    lact_log_set_level(LACT_LOG_INFO);
    double t0 = lact_now(), t1 = lact_now();
    CHECK(t0 > 0 && t1 >= t0);

    lact_threads_set(1);
    CHECK(lact_threads_get() == 1);
    lact_threads_set(0);
    CHECK(lact_threads_get() >= 1);
}

int main(void) {
    test_messages();
    test_runtime();
    return check_summary("base_status");
}
