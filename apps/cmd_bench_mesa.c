/* `lact bench mesa`: times the Mesa op (kernels/mesa.h) forward, forward +
 * backward as a training step runs it (the forward keeps the solutions x,
 * the backward takes them), and forward + backward with the backward
 * solving for x again; reports the CG steps, the residual the forward
 * reaches and the peak device memory, and with --dump writes the
 * inputs, the output and every gradient to a safetensors file
 * (scripts/ref/mesa_reference.py runs the flash-linear-attention kernel on
 * the same inputs and compares). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/io/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/mesa.h"
#include "kernels/timer.h"

int cmd_bench_mesa(int argc, char **argv);

typedef struct mesa_bench_opts {
    int64_t batch, heads, len, dim, chunk, steps, iters;
    const char *dtype, *dump;
    cli_common c;
} mesa_bench_opts;

enum { MB_IN = 6 }; /* q k v g beta lambda */

/* Everything one configuration holds on the device. */
typedef struct mesa_bench {
    lact_tensor in[MB_IN], grad[MB_IN], o, x, d_o;
    lact_mesa_args args;
} mesa_bench;

enum { MB_FWD, MB_TRAIN, MB_RESOLVE }; /* what one timed run does */

static lact_status mb_forward(lact_ctx *ctx, mesa_bench *b, float *residual) {
    lact_tensor *x = b->in;
    return lact_mesa_forward(ctx, &b->o, NULL, NULL, residual, &x[0], &x[1], &x[2], &x[3], &x[4],
                             &x[5], &b->args);
}

static lact_status mb_run(lact_ctx *ctx, mesa_bench *b, int mode) {
    lact_tensor *x = b->in, *g = b->grad;
    if (mode == MB_FWD) return mb_forward(ctx, b, NULL);
    if (mode == MB_RESOLVE) {
        LACT_TRY(mb_forward(ctx, b, NULL));
        return lact_mesa_backward(ctx, &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], &b->d_o, &x[0],
                                  &x[1], &x[2], &x[3], &x[4], &x[5], &b->args);
    }
    LACT_TRY(lact_mesa_forward_x(ctx, &b->o, &b->x, NULL, NULL, NULL, &x[0], &x[1], &x[2], &x[3],
                                 &x[4], &x[5], &b->args));
    return lact_mesa_backward_x(ctx, &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], &b->d_o, &b->x,
                                &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &b->args);
}

typedef struct mb_call {
    mesa_bench *b;
    int mode;
} mb_call;

static lact_status mb_call_run(lact_ctx *ctx, void *arg) {
    mb_call *c = arg;
    return mb_run(ctx, c->b, c->mode);
}

/* Median of iters timed runs after two warm-up runs. */
static lact_status mb_time(lact_ctx *ctx, mesa_bench *b, int mode, int iters, double *ms) {
    mb_call c = {b, mode};
    return bench_time(ctx, mb_call_run, &c, iters, ms);
}

static void mb_free(mesa_bench *b) {
    for (int i = 0; i < MB_IN; i++) {
        lact_tensor_free(&b->in[i]);
        lact_tensor_free(&b->grad[i]);
    }
    lact_tensor_free(&b->o);
    lact_tensor_free(&b->x);
    lact_tensor_free(&b->d_o);
}

/* A host F32 tensor of the given shape filled by fn, then cloned to dev. */
static lact_status mb_host_fill(lact_tensor *out, lact_dtype dt, lact_device dev, int ndim,
                                const int64_t *shape, lact_rng *rng, int kind) {
    lact_tensor h = {0};
    LACT_TRY(lact_tensor_alloc(&h, LACT_F32, LACT_CPU, ndim, shape));
    float *p = h.data;
    for (int64_t i = 0; i < lact_tensor_numel(&h); i++) {
        float n = lact_rng_normal(rng), u = lact_rng_uniform(rng);
        /* 0: g = logsigmoid(n); 1: beta = sigmoid(u); 2: lambda = softplus(u) + 0.25 */
        p[i] = kind == 0   ? -log1pf(expf(-n))
               : kind == 1 ? 1.0f / (1.0f + expf(-u))
                           : log1pf(expf(u)) + 0.25f;
    }
    lact_status s = lact_tensor_clone(out, &h, dt, dev);
    lact_tensor_free(&h);
    return s;
}

/* Inputs like flash-linear-attention's MesaNet example: q, k = l2norm(normal),
 * v normal, g = logsigmoid(normal), beta = sigmoid(U(0, 1)), lambda =
 * softplus(U(0, 1)) + 0.25; d_o normal. */
static lact_status mb_make(lact_ctx *ctx, const mesa_bench_opts *o, lact_dtype dt, mesa_bench *b) {
    int64_t act[4] = {o->batch, o->heads, o->len, o->dim}, tok[3] = {o->batch, o->heads, o->len};
    int64_t hd[2] = {o->heads, o->dim};
    uint64_t seed = (uint64_t)o->c.seed;
    lact_device dev = ctx->device;
    for (int i = 0; i < 3; i++) {
        LACT_TRY(lact_tensor_alloc(&b->in[i], dt, dev, 4, act));
        LACT_TRY(lact_fill_normal(ctx, &b->in[i], seed, 10 + (uint64_t)i, 0.0f, 1.0f));
    }
    lact_tensor tmp = {0};
    lact_status s = lact_tensor_alloc(&tmp, dt, dev, 4, act);
    for (int i = 0; i < 2 && s == LACT_OK; i++) {
        s = lact_l2norm_forward(ctx, &tmp, &b->in[i], 1e-6f);
        if (s == LACT_OK) s = lact_device_copy(ctx, &b->in[i], &tmp);
    }
    if (s == LACT_OK) s = lact_ctx_sync(ctx);
    lact_tensor_free(&tmp);
    LACT_TRY(s);
    lact_rng rng = lact_rng_make(seed, 20);
    LACT_TRY(mb_host_fill(&b->in[3], dt, dev, 3, tok, &rng, 0));
    LACT_TRY(mb_host_fill(&b->in[4], dt, dev, 3, tok, &rng, 1));
    LACT_TRY(mb_host_fill(&b->in[5], LACT_F32, dev, 2, hd, &rng, 2));
    LACT_TRY(lact_tensor_alloc(&b->o, dt, dev, 4, act));
    LACT_TRY(lact_tensor_alloc(&b->x, dt, dev, 4, act));
    LACT_TRY(lact_tensor_alloc(&b->d_o, dt, dev, 4, act));
    LACT_TRY(lact_fill_normal(ctx, &b->d_o, seed, 40, 0.0f, 1.0f));
    for (int i = 0; i < MB_IN; i++)
        LACT_TRY(
            lact_tensor_alloc(&b->grad[i], b->in[i].dtype, dev, b->in[i].ndim, b->in[i].shape));
    return lact_ctx_sync(ctx);
}

static lact_status mb_dump(const char *path, const mesa_bench_opts *o, mesa_bench *b) {
    static const char *const names[14] = {"q", "k",   "v",   "g",   "beta", "lambda", "d_o",
                                          "o", "d_q", "d_k", "d_v", "d_g",  "d_beta", "d_lambda"};
    lact_tensor ts[14];
    for (int i = 0; i < MB_IN; i++)
        ts[i] = b->in[i], ts[8 + i] = b->grad[i];
    ts[6] = b->d_o, ts[7] = b->o;
    char chunk[32], steps[32];
    snprintf(chunk, sizeof chunk, "%lld", (long long)o->chunk);
    snprintf(steps, sizeof steps, "%lld", (long long)o->steps);
    const char *keys[2] = {"chunk", "cg_steps"}, *vals[2] = {chunk, steps};
    return lact_st_write(path, 14, names, ts, 2, keys, vals);
}

static void mb_print(const mesa_bench_opts *o, const char *mode, double ms, double peak_gib) {
    if (o->c.json)
        printf("{\"bench\": \"mesa\", \"mode\": \"%s\", \"batch\": %lld, \"heads\": %lld, "
               "\"len\": %lld, \"dim\": %lld, \"chunk\": %lld, \"cg_steps\": %lld, "
               "\"dtype\": \"%s\", \"ms\": %.4f, \"peak_gib\": %.3f}\n",
               mode, (long long)o->batch, (long long)o->heads, (long long)o->len, (long long)o->dim,
               (long long)o->chunk, (long long)o->steps, o->dtype, ms, peak_gib);
    else
        printf("mesa %-20s %9.3f ms  peak %6.2f GiB\n", mode, ms, peak_gib);
}

static int mb_main(const cli_command *cmd, const mesa_bench_opts *o, lact_ctx *ctx, lact_dtype dt) {
    mesa_bench b;
    memset(&b, 0, sizeof b);
    b.args = (lact_mesa_args){o->chunk, (int)o->steps};
    int rc = 1;
    double gib = 1024.0 * 1024.0 * 1024.0, ms = 0;
    if (!o->c.json)
        printf("mesa B=%lld H=%lld L=%lld d=%lld chunk=%lld cg_steps=%lld %s (medians of %lld "
               "runs after 2 warm-ups)\n",
               (long long)o->batch, (long long)o->heads, (long long)o->len, (long long)o->dim,
               (long long)o->chunk, (long long)o->steps, o->dtype, (long long)o->iters);
    lact_mem_reset_peak(ctx->device);
    if (mb_make(ctx, o, dt, &b) != LACT_OK) {
        cli_error(cmd, "inputs: %s", lact_errmsg());
        goto done;
    }
    if (mb_time(ctx, &b, MB_FWD, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward: %s", lact_errmsg());
        goto done;
    }
    mb_print(o, "forward", ms, (double)lact_mem_peak(ctx->device) / gib);
    if (mb_time(ctx, &b, MB_TRAIN, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward+backward: %s", lact_errmsg());
        goto done;
    }
    mb_print(o, "fwd+bwd", ms, (double)lact_mem_peak(ctx->device) / gib);
    if (mb_time(ctx, &b, MB_RESOLVE, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward+backward solving again: %s", lact_errmsg());
        goto done;
    }
    mb_print(o, "fwd+bwd-solve-again", ms, (double)lact_mem_peak(ctx->device) / gib);
    float residual = 0;
    if (mb_forward(ctx, &b, &residual) != LACT_OK) {
        cli_error(cmd, "forward with residual: %s", lact_errmsg());
        goto done;
    }
    if (o->c.json)
        printf("{\"bench\": \"mesa\", \"mode\": \"residual\", \"cg_steps\": %lld, "
               "\"residual\": %.4e}\n",
               (long long)o->steps, (double)residual);
    else
        printf("mesa CG steps %lld, residual max_t |q_t - A_t x_t| / |q_t| = %.3e\n",
               (long long)o->steps, (double)residual);
    if (o->dump) {
        /* o and the gradients of the last timed run belong to these inputs */
        if (mb_run(ctx, &b, MB_TRAIN) != LACT_OK || lact_ctx_sync(ctx) != LACT_OK ||
            mb_dump(o->dump, o, &b) != LACT_OK) {
            cli_error(cmd, "dump %s: %s", o->dump, lact_errmsg());
            goto done;
        }
        if (!o->c.quiet && !o->c.json) printf("mesa wrote %s\n", o->dump);
    }
    rc = 0;
done:
    mb_free(&b);
    return rc;
}

int cmd_bench_mesa(int argc, char **argv) {
    mesa_bench_opts o;
    const cli_opt opts[] = {
        {"--batch", CLI_INT, "B", "sequences", "4", &o.batch},
        {"--heads", CLI_INT, "H", "heads per sequence", "16", &o.heads},
        {"--len", CLI_INT, "L", "tokens per sequence", "8192", &o.len},
        {"--dim", CLI_INT, "D", "head dim d", "128", &o.dim},
        {"--chunk", CLI_INT, "C", "tokens per chunk", "64", &o.chunk},
        {"--steps", CLI_INT, "N", "conjugate-gradient steps per solve", "30", &o.steps},
        {"--dtype", CLI_STRING, "bf16|f32", "activation dtype (f32 only on the CPU)", "bf16",
         &o.dtype},
        {"--iters", CLI_INT, "N", "timed runs after two warm-up runs; the median is shown", "10",
         &o.iters},
        {"--dump", CLI_STRING, "FILE", "write inputs, output and gradients to a safetensors file",
         NULL, &o.dump},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {"lact bench mesa",
                             "[options]",
                             "Times the Mesa op forward and forward + backward, and reports the "
                             "CG residual and peak memory.",
                             NULL,
                             opts,
                             0};
    cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (o.batch < 1 || o.heads < 1 || o.len < 1 || o.dim < 1 || o.chunk < 1 || o.steps < 1 ||
        o.iters < 1) {
        cli_error(&cmd, "--batch, --heads, --len, --dim, --chunk, --steps, --iters must be "
                        "positive");
        return 2;
    }
    lact_dtype dt;
    lact_ctx ctx;
    const int open_rc = bench_open(&cmd, &o.c, o.dtype, &dt, &ctx);
    if (open_rc) return open_rc;
    int rc = mb_main(&cmd, &o, &ctx, dt);
    lact_ctx_free(&ctx);
    return rc;
}
