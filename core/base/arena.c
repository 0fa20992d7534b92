#include "arena.h"

#include <stdint.h>
#include <string.h>

#include "device.h"

#define ARENA_ALIGN ((size_t)256)

lact_status lact_arena_init(lact_arena *a, lact_device dev, size_t capacity) {
    memset(a, 0, sizeof *a);
    a->device = dev;
    void *p = NULL;
    LACT_TRY(lact_mem_alloc(dev, capacity ? capacity : 1, &p));
    a->base = p;
    a->capacity = capacity;
    return LACT_OK;
}

void lact_arena_init_measure(lact_arena *a, lact_device dev) {
    memset(a, 0, sizeof *a);
    a->device = dev;
    a->capacity = SIZE_MAX;
    a->measuring = true;
}

void lact_arena_free(lact_arena *a) {
    if (!a) return;
    lact_mem_free(a->device, a->base);
    memset(a, 0, sizeof *a);
}

lact_status lact_arena_alloc(lact_arena *a, size_t bytes, void **out) {
    *out = NULL;
    /* Every block starts on a 256-byte boundary, so the offsets (and the peak a
     * measuring pass records) are the same in both modes. */
    size_t start = (a->used + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (start < a->used || bytes > SIZE_MAX - start)
        return lact_fail(LACT_E_NOMEM, "arena request of %zu bytes overflows", bytes);
    size_t end = start + bytes;
    if (end > a->capacity)
        return lact_fail(LACT_E_NOMEM,
                         "%s arena full: %zu bytes requested with %zu of %zu in use "
                         "(short by %zu bytes)",
                         lact_device_name(a->device), bytes, a->used, a->capacity,
                         end - a->capacity);
    a->used = end;
    if (end > a->peak) a->peak = end;
    if (!a->measuring) *out = a->base + start;
    return LACT_OK;
}

lact_status lact_arena_tensor(lact_arena *a, lact_tensor *t, lact_dtype dt, int ndim,
                              const int64_t *shape) {
    if (ndim < 0 || ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_ARG, "arena tensor has %d dims (at most %d)", ndim, LACT_MAX_DIMS);
    lact_tensor v = lact_tensor_view(NULL, dt, a->device, ndim, shape);
    if (lact_tensor_numel(&v) < 0) return lact_fail(LACT_E_ARG, "arena tensor has a negative dim");
    void *p = NULL;
    LACT_TRY(lact_arena_alloc(a, lact_tensor_nbytes(&v), &p));
    v.data = p;
    *t = v;
    return LACT_OK;
}

size_t lact_arena_mark(const lact_arena *a) {
    return a->used;
}

void lact_arena_release(lact_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}

void lact_arena_reset(lact_arena *a) {
    a->used = 0;
}
