/* An activation arena: one allocation, bump-pointer sub-allocations, reset per
 * step. Size it before the first step with a measuring pass: an arena made by
 * lact_arena_init_measure hands out no memory but records the peak, which is
 * then the capacity of the real one. */
#ifndef LACT_ARENA_H
#define LACT_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_arena {
    lact_device device;
    char *base;      /* NULL in measuring mode */
    size_t capacity; /* bytes; SIZE_MAX in measuring mode */
    size_t used;
    size_t peak;
    bool measuring;
} lact_arena;

lact_status lact_arena_init(lact_arena *a, lact_device dev, size_t capacity);
void lact_arena_init_measure(lact_arena *a, lact_device dev);
void lact_arena_free(lact_arena *a);
/* 256-byte aligned; fails with LACT_E_NOMEM naming the shortfall when full.
 * In measuring mode *out is NULL. */
lact_status lact_arena_alloc(lact_arena *a, size_t bytes, void **out);
/* A contiguous tensor view carved from the arena (contents undefined). */
lact_status lact_arena_tensor(lact_arena *a, lact_tensor *t, lact_dtype dt, int ndim,
                              const int64_t *shape);
size_t lact_arena_mark(const lact_arena *a);
void lact_arena_release(lact_arena *a, size_t mark); /* back to a mark */
void lact_arena_reset(lact_arena *a);

#ifdef __cplusplus
}
#endif
#endif
