#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "bench_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/tensor.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

lact_status bench_time(lact_ctx *ctx, bench_fn fn, void *arg, int iters, double *ms) {
    double *t = malloc(sizeof(double) * (size_t)iters);
    if (!t) return lact_fail(LACT_E_NOMEM, "bench: out of host memory");
    lact_timer timer;
    lact_status s = lact_timer_init(&timer, ctx);
    if (s != LACT_OK) {
        free(t);
        return s;
    }
    for (int i = 0; i < 2 && s == LACT_OK; i++)
        s = fn(ctx, arg);
    if (s == LACT_OK) s = lact_ctx_sync(ctx);
    for (int i = 0; i < iters && s == LACT_OK; i++) {
        s = lact_timer_start(&timer);
        if (s == LACT_OK) s = fn(ctx, arg);
        if (s == LACT_OK) s = lact_timer_stop(&timer, &t[i]);
    }
    if (s == LACT_OK) *ms = bench_median(t, iters);
    lact_timer_free(&timer);
    free(t);
    return s;
}

typedef struct gemm_operands {
    lact_tensor a, b, c;
} gemm_operands;

static lact_status run_reference(lact_ctx *ctx, void *arg) {
    gemm_operands *g = arg;
    return lact_reference_gemm(ctx, &g->c, &g->a, &g->b);
}

lact_status bench_gemm_rate(lact_ctx *ctx, int64_t n, int iters, double warm, double *tflops) {
    lact_dtype dt = ctx->device == LACT_CUDA ? LACT_BF16 : LACT_F32;
    int64_t shape[2] = {n, n};
    gemm_operands g = {{0}, {0}, {0}};
    lact_status s = lact_tensor_alloc(&g.a, dt, ctx->device, 2, shape);
    if (s == LACT_OK) s = lact_tensor_alloc(&g.b, dt, ctx->device, 2, shape);
    if (s == LACT_OK) s = lact_tensor_alloc(&g.c, dt, ctx->device, 2, shape);
    if (s == LACT_OK) s = lact_fill_normal(ctx, &g.a, 1, 1, 0.0f, 1.0f);
    if (s == LACT_OK) s = lact_fill_normal(ctx, &g.b, 1, 2, 0.0f, 1.0f);
    double ms = 0;
    if (s == LACT_OK) s = bench_warm(ctx, run_reference, &g, warm);
    if (s == LACT_OK) s = bench_time(ctx, run_reference, &g, iters, &ms);
    if (s == LACT_OK) *tflops = 2.0 * (double)n * (double)n * (double)n / (ms * 1e-3) / 1e12;
    lact_tensor_free(&g.a);
    lact_tensor_free(&g.b);
    lact_tensor_free(&g.c);
    return s;
}

static int open_ctx(const cli_command *cmd, const cli_common *c, lact_device dev, lact_ctx *ctx) {
    if (lact_ctx_init(ctx, dev, (int)c->threads) != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}

int bench_open(const cli_command *cmd, const cli_common *c, const char *dtype, lact_dtype *dt,
               lact_ctx *ctx) {
    if (!strcmp(dtype, "bf16"))
        *dt = LACT_BF16;
    else if (!strcmp(dtype, "f32"))
        *dt = LACT_F32;
    else {
        cli_error(cmd, "--dtype must be bf16 or f32, not '%s'", dtype);
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(cmd, c, &dev)) return 2;
    if (dev != LACT_CUDA && *dt == LACT_BF16) {
        cli_error(cmd, "bf16 needs a GPU (none is visible); use --dtype f32 on the CPU");
        return 1;
    }
    return open_ctx(cmd, c, dev, ctx);
}

int bench_open_gpu(const cli_command *cmd, const cli_common *c, lact_ctx *ctx) {
    lact_device dev;
    if (!cli_resolve_device(cmd, c, &dev)) return 2;
    if (dev != LACT_CUDA) {
        cli_error(cmd, "needs a GPU (BF16 activations); none is visible");
        return 1;
    }
    return open_ctx(cmd, c, dev, ctx);
}

lact_status bench_idle(lact_ctx *ctx, double seconds) {
    LACT_TRY(lact_ctx_sync(ctx));
    if (!(seconds > 0.0)) return LACT_OK;
    struct timespec t = {(time_t)seconds, (long)(fmod(seconds, 1.0) * 1e9)};
    while (nanosleep(&t, &t) != 0)
        if (errno != EINTR) /* else resume after the signal */
            return lact_fail(LACT_E_ARG, "bench: nanosleep: %s", strerror(errno));
    return LACT_OK;
}

double bench_now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

lact_status bench_warm(lact_ctx *ctx, bench_fn fn, void *arg, double seconds) {
    if (!(seconds > 0.0)) return LACT_OK;
    const double end = bench_now_s() + seconds;
    do {
        LACT_TRY(fn(ctx, arg));
        LACT_TRY(lact_ctx_sync(ctx));
    } while (bench_now_s() < end);
    return LACT_OK;
}
