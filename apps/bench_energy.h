/* The GPU's energy counter, for benchmarks that report joules per call: on
 * a card held at its power limit, the work done per joule sets the speed.
 * NVML is loaded at run time (the driver ships libnvidia-ml.so.1), so that
 * building needs neither its headers nor its library. */
#ifndef LACT_APPS_BENCH_ENERGY_H
#define LACT_APPS_BENCH_ENERGY_H

#include "bench_util.h"
#include "core/base/context.h"
#include "core/base/status.h"

typedef struct bench_energy {
    void *lib;    /* dlopen handle */
    void *device; /* nvmlDevice_t of CUDA device 0 */
    int (*total_mj)(void *device, unsigned long long *mj);
    int (*shutdown)(void);
} bench_energy;

/* Opens NVML on the device the context runs on (CUDA device 0). */
lact_status bench_energy_open(bench_energy *e);
void bench_energy_close(bench_energy *e);

/* Runs fn again and again for `seconds` (at least three runs), waiting for
 * the last, and reads the energy counter around the loop: *mj is the
 * energy per run in millijoules, *watts the mean power over the loop. */
lact_status bench_energy_per_run(lact_ctx *ctx, const bench_energy *e, bench_fn fn, void *arg,
                                 double seconds, double *mj, double *watts);

#endif
