/* Learning-rate schedules: linear warm-up to the peak, then cosine decay to
 * the floor, or WSD (warm-up, stable at the peak, then a linear decay to the
 * floor over the last decay_frac of the steps). */
#ifndef LACT_TRAIN_SCHEDULE_H
#define LACT_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_schedule_kind { LACT_SCHEDULE_COSINE = 0, LACT_SCHEDULE_WSD = 1 } lact_schedule_kind;

typedef struct lact_schedule {
    lact_schedule_kind kind;
    int64_t steps, warmup;
    double peak, floor; /* floor: the final rate, absolute */
    double decay_frac;  /* wsd */
} lact_schedule;

/* "cosine" or "wsd". */
lact_status lact_schedule_parse(const char *name, lact_schedule_kind *out);
/* The rate of 1-based step (steps past the end keep the final rate). */
double lact_schedule_lr(const lact_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
