#include <stdint.h>
#include <string.h>

#include "core/base/arena.h"
#include "tests/support/check.h"

/* One "step" of allocations, as a model would make them. */
static lact_status run_step(lact_arena *a, void **ptrs) {
    int64_t shape[2] = {7, 33};
    lact_tensor t;
    LACT_TRY(lact_arena_alloc(a, 100, &ptrs[0]));
    size_t mark = lact_arena_mark(a);
    LACT_TRY(lact_arena_alloc(a, 3000, &ptrs[1]));
    LACT_TRY(lact_arena_tensor(a, &t, LACT_F32, 2, shape));
    ptrs[2] = t.data;
    lact_arena_release(a, mark);
    LACT_TRY(lact_arena_alloc(a, 1, &ptrs[3]));
    LACT_TRY(lact_arena_alloc(a, 0, &ptrs[4]));
    return LACT_OK;
}

int main(void) {
    lact_arena m;
    void *ptrs[5];
    lact_arena_init_measure(&m, LACT_CPU);
    CHECK_OK(run_step(&m, ptrs));
    CHECK(ptrs[0] == NULL && ptrs[2] == NULL);
    /* 100 -> 256, +3000 -> 3256, pad to 3328, +924 -> 4252 */
    CHECK(m.peak == 4252);
    lact_arena_reset(&m);
    CHECK(m.used == 0 && m.peak == 4252);

    lact_arena a;
    CHECK_OK(lact_arena_init(&a, LACT_CPU, m.peak));
    for (int step = 0; step < 3; step++) {
        CHECK_OK(run_step(&a, ptrs));
        lact_arena_reset(&a);
    }
    CHECK(a.peak == m.peak);
    for (int i = 0; i < 5; i++)
        CHECK(ptrs[i] != NULL && (uintptr_t)ptrs[i] % 256 == 0);
    CHECK((char *)ptrs[1] - (char *)ptrs[0] == 256);
    CHECK(ptrs[3] == ptrs[1]);         /* released back to the mark */
    memset(ptrs[2], 0xab, 7 * 33 * 4); /* the memory is really there (ASan checks) */

    CHECK_OK(run_step(&a, ptrs));
    void *p = NULL;
    CHECK_FAILS(lact_arena_alloc(&a, 1000000, &p), LACT_E_NOMEM);
    CHECK(p == NULL && strstr(lact_errmsg(), "short by") != NULL);
    CHECK(a.used <= a.capacity);
    int64_t bad[1] = {-4};
    lact_tensor t;
    CHECK_FAILS(lact_arena_tensor(&a, &t, LACT_F32, 1, bad), LACT_E_ARG);
    lact_arena_free(&a);
    lact_arena_free(&a); /* safe twice */
    lact_arena_free(&m);
    return check_summary("base_arena");
}
