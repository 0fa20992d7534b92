/* What the benchmark commands share: timing a call as the median of timed
 * runs after two warm-up runs, and the plain-library GEMM rate every figure
 * is compared with. */
#ifndef LACT_APPS_BENCH_UTIL_H
#define LACT_APPS_BENCH_UTIL_H

#include <stdint.h>

#include "cli.h"
#include "core/base/context.h"
#include "core/base/status.h"

typedef lact_status (*bench_fn)(lact_ctx *ctx, void *arg);

/* Median of n values (sorts t in place). */
double bench_median(double *t, int n);

/* Runs fn twice to warm up, then iters timed runs (CUDA events on a GPU,
 * the wall clock on the CPU); *ms is the median. */
lact_status bench_time(lact_ctx *ctx, bench_fn fn, void *arg, int iters, double *ms);

/* Waits for the queued work, then lets the device idle for `seconds`, so
 * that each benchmark case starts from an idle card (one that has just run
 * another case can hold lower clocks for a while). */
lact_status bench_idle(lact_ctx *ctx, double seconds);

/* Seconds on a monotonic clock. */
double bench_now_s(void);

/* Runs fn again and again until `seconds` of wall time have passed (at
 * least once when seconds > 0), waiting for each run: the clocks that a
 * card holds in the first few hundred milliseconds of heavy work after an
 * idle spell are not the ones it holds after that. */
lact_status bench_warm(lact_ctx *ctx, bench_fn fn, void *arg, double seconds);

/* The dense GEMM rate of this device, measured now: one plain library call
 * (lact_reference_gemm) on n×n×n, BF16 on a GPU, F32 on the CPU; the
 * median of iters timed runs after `warm` seconds of back-to-back runs (0:
 * none). A GPU at its power limit settles well below the rate of its
 * first runs, so a long workload compares with the warmed rate too. */
lact_status bench_gemm_rate(lact_ctx *ctx, int64_t n, int iters, double warm, double *tflops);

/* For the op benchmarks: parses --dtype (bf16 or f32), resolves --device
 * (bf16 needs a GPU) and opens the context. Returns 0, or the exit status
 * after printing one line. */
int bench_open(const cli_command *cmd, const cli_common *c, const char *dtype, lact_dtype *dt,
               lact_ctx *ctx);
/* The same for the benchmarks that run on a GPU only (BF16 activations). */
int bench_open_gpu(const cli_command *cmd, const cli_common *c, lact_ctx *ctx);

#endif
