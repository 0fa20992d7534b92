/* `lact bench gemm|copy`: times lact_matmul_forward against one plain library
 * GEMM call, and device copies, so every other figure has a ceiling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "commands.h"
#include "core/base/context.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"

typedef struct bench_opts {
    int64_t size, iters, mib;
    cli_common c;
} bench_opts;

typedef struct gemm_args {
    lact_tensor a, b, c;
} gemm_args;

static lact_status run_matmul(lact_ctx *ctx, void *arg) {
    gemm_args *g = arg;
    return lact_matmul_forward(ctx, &g->c, &g->a, &g->b, false, false, 1.0f, 0.0f);
}

static lact_status run_reference(lact_ctx *ctx, void *arg) {
    gemm_args *g = arg;
    return lact_reference_gemm(ctx, &g->c, &g->a, &g->b);
}

/* One figure: a text line, or one JSON object with the same fields. */
static void print_figure(const bench_opts *o, lact_device dev, const char *bench, const char *impl,
                         const char *dtype, const char *size_key, int64_t size, double ms,
                         double rate, const char *unit, const char *unit_key, double ratio) {
    if (o->c.json) {
        printf("{\"bench\": \"%s\", \"impl\": \"%s\", \"device\": \"%s\", \"dtype\": \"%s\", "
               "\"%s\": %lld, \"ms\": %.4f, \"%s\": %.3f",
               bench, impl, lact_device_name(dev), dtype, size_key, (long long)size, ms, unit_key,
               rate);
        if (ratio > 0) printf(", \"ratio\": %.3f", ratio);
        printf("}\n");
    } else {
        printf("%-5s %-10s %-4s %-4s %s=%-6lld %9.3f ms %10.2f %s", bench, impl,
               lact_device_name(dev), dtype, size_key, (long long)size, ms, rate, unit);
        if (ratio > 0) printf("  (%.1f%% of reference)", 100 * ratio);
        printf("\n");
    }
}

static int bench_gemm(const cli_command *cmd, const bench_opts *o, lact_ctx *ctx) {
    int64_t n = o->size;
    lact_dtype dt = ctx->device == LACT_CUDA ? LACT_BF16 : LACT_F32;
    gemm_args g;
    memset(&g, 0, sizeof g);
    int64_t shape[2] = {n, n};
    int rc = 1;
    double ms_lact = 0, ms_ref = 0;
    if (lact_tensor_alloc(&g.a, dt, ctx->device, 2, shape) != LACT_OK ||
        lact_tensor_alloc(&g.b, dt, ctx->device, 2, shape) != LACT_OK ||
        lact_tensor_alloc(&g.c, dt, ctx->device, 2, shape) != LACT_OK ||
        lact_fill_normal(ctx, &g.a, (uint64_t)o->c.seed, 1, 0.0f, 1.0f) != LACT_OK ||
        lact_fill_normal(ctx, &g.b, (uint64_t)o->c.seed, 2, 0.0f, 1.0f) != LACT_OK) {
        cli_error(cmd, "gemm %lld: %s", (long long)n, lact_errmsg());
        goto done;
    }
    if (bench_time(ctx, run_matmul, &g, (int)o->iters, &ms_lact) != LACT_OK) {
        cli_error(cmd, "gemm: %s", lact_errmsg());
        goto done;
    }
    double flop = 2.0 * (double)n * (double)n * (double)n;
    double tf_lact = flop / (ms_lact * 1e-3) / 1e12;
    lact_status s = bench_time(ctx, run_reference, &g, (int)o->iters, &ms_ref);
    const char *dname = dt == LACT_BF16 ? "bf16" : "f32";
    if (s != LACT_OK) {
        if (!o->c.quiet)
            fprintf(stderr, "lact bench: reference gemm unavailable: %s\n", lact_errmsg());
        print_figure(o, ctx->device, "gemm", "lact", dname, "n", n, ms_lact, tf_lact, "TFLOP/s",
                     "tflops", 0);
    } else {
        double tf_ref = flop / (ms_ref * 1e-3) / 1e12;
        print_figure(o, ctx->device, "gemm", "reference", dname, "n", n, ms_ref, tf_ref, "TFLOP/s",
                     "tflops", 0);
        print_figure(o, ctx->device, "gemm", "lact", dname, "n", n, ms_lact, tf_lact, "TFLOP/s",
                     "tflops", tf_lact / tf_ref);
    }
    rc = 0;
done:
    lact_tensor_free(&g.a);
    lact_tensor_free(&g.b);
    lact_tensor_free(&g.c);
    return rc;
}

typedef struct copy_args {
    lact_tensor src, dst;
} copy_args;

static lact_status run_copy(lact_ctx *ctx, void *arg) {
    copy_args *c = arg;
    return lact_device_copy(ctx, &c->dst, &c->src);
}

static int bench_copy(const cli_command *cmd, const bench_opts *o, lact_ctx *ctx) {
    copy_args c;
    memset(&c, 0, sizeof c);
    int64_t n = o->mib * 1024 * 1024 / 4;
    int rc = 1;
    double ms = 0;
    if (lact_tensor_alloc(&c.src, LACT_F32, ctx->device, 1, &n) != LACT_OK ||
        lact_tensor_alloc(&c.dst, LACT_F32, ctx->device, 1, &n) != LACT_OK ||
        lact_fill_uniform(ctx, &c.src, (uint64_t)o->c.seed, 3, -1.0f, 1.0f) != LACT_OK) {
        cli_error(cmd, "copy %lld MiB: %s", (long long)o->mib, lact_errmsg());
        goto done;
    }
    if (bench_time(ctx, run_copy, &c, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "copy: %s", lact_errmsg());
        goto done;
    }
    /* Every byte is read once and written once. */
    double gbs = 2.0 * (double)n * 4.0 / (ms * 1e-3) / 1e9;
    print_figure(o, ctx->device, "copy", "device", "f32", "mib", o->mib, ms, gbs, "GB/s", "gbps",
                 0);
    rc = 0;
done:
    lact_tensor_free(&c.src);
    lact_tensor_free(&c.dst);
    return rc;
}

int cmd_bench_ttt(int argc, char **argv);       /* cmd_bench_ttt.c */
int cmd_bench_mesa(int argc, char **argv);      /* cmd_bench_mesa.c */
int cmd_bench_lm(int argc, char **argv);        /* cmd_bench_lm.c */
int cmd_bench_ew(int argc, char **argv);        /* cmd_bench_ew.c */
int cmd_bench_attention(int argc, char **argv); /* cmd_bench_attention.c */

int cmd_bench(int argc, char **argv) {
    if (argc > 0 && !strcmp(argv[0], "ttt")) return cmd_bench_ttt(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "mesa")) return cmd_bench_mesa(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "lm")) return cmd_bench_lm(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "ew")) return cmd_bench_ew(argc - 1, argv + 1);
    if (argc > 0 && !strcmp(argv[0], "attention")) return cmd_bench_attention(argc - 1, argv + 1);
    bench_opts o;
    const cli_opt opts[] = {
        {"--size", CLI_INT, "N", "gemm: N x N x N (0: 8192 on a GPU, 1024 on the CPU)", "0",
         &o.size},
        {"--mib", CLI_INT, "M", "copy: buffer size in MiB (0: 1024 on a GPU, 64 on the CPU)", "0",
         &o.mib},
        {"--iters", CLI_INT, "N", "timed runs after two warm-up runs; the median is shown", "10",
         &o.iters},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact bench",
        "gemm|copy|ttt|mesa|attention|lm|ew [options]",
        "Times lact_matmul_forward against one plain library GEMM (BF16 on a GPU, F32 on the\n"
        "CPU), or device-to-device copies (GB/s counting bytes read and written).",
        NULL,
        opts,
        1};
    const char *pos[1];
    int np = 0;
    cli_result r = cli_parse(&cmd, argc, argv, pos, &np);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (np == 0 || (strcmp(pos[0], "gemm") && strcmp(pos[0], "copy"))) {
        cli_error(&cmd,
                  np ? "unknown benchmark '%s' (gemm or copy)"
                     : "which benchmark%s? "
                       "(gemm or copy)",
                  np ? pos[0] : "");
        return 2;
    }
    if (o.iters < 1 || o.size < 0 || o.mib < 0) {
        cli_error(&cmd, "--iters must be at least 1 and --size, --mib not negative");
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    if (o.size == 0) o.size = dev == LACT_CUDA ? 8192 : 1024;
    if (o.mib == 0) o.mib = dev == LACT_CUDA ? 1024 : 64;
    if (dev == LACT_CPU && !o.c.quiet && !o.c.json)
        fprintf(stderr, "lact bench: running on the CPU (%s)\n",
                LACT_WITH_CUDA ? "no GPU visible" : "CPU-only build");
    lact_ctx ctx;
    if (lact_ctx_init(&ctx, dev, (int)o.c.threads) != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    int rc = !strcmp(pos[0], "gemm") ? bench_gemm(&cmd, &o, &ctx) : bench_copy(&cmd, &o, &ctx);
    lact_ctx_free(&ctx);
    return rc;
}
