#include "core/train/schedule.h"

#include <math.h>
#include <string.h>

lact_status lact_schedule_parse(const char *name, lact_schedule_kind *out) {
    if (!strcmp(name, "cosine")) *out = LACT_SCHEDULE_COSINE;
    else if (!strcmp(name, "wsd")) *out = LACT_SCHEDULE_WSD;
    else return lact_fail(LACT_E_ARG, "schedule '%s': expected cosine or wsd", name);
    return LACT_OK;
}

double lact_schedule_lr(const lact_schedule *s, int64_t step) {
    if (step < 1) step = 1;
    if (step > s->steps) step = s->steps;
    if (step <= s->warmup) return s->peak * (double)step / (double)s->warmup;
    if (s->kind == LACT_SCHEDULE_COSINE) {
        int64_t span = s->steps - s->warmup;
        double t = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
        return s->floor + (s->peak - s->floor) * 0.5 * (1.0 + cos(3.14159265358979323846 * t));
    }
    int64_t decay = (int64_t)ceil(s->decay_frac * (double)s->steps);
    int64_t start = s->steps - decay; /* last step at the peak */
    if (start < s->warmup) start = s->warmup;
    if (step <= start || s->steps == start) return s->peak;
    double t = (double)(step - start) / (double)(s->steps - start);
    return s->peak + (s->floor - s->peak) * t;
}
