/* `lact bench ew`: times the memory-bound ops of a language-model training
 * step (rotary embedding, rmsnorm, l2norm, silu, swiglu, add/mul with and
 * without a broadcast operand, their backwards, the column sum behind every
 * bias gradient, the head permute) at the model's shapes, and prints µs per
 * call, GB/s of the bytes the op must move (every input read once, every
 * output written once) and the ratio to a device copy timed in the same run.
 * An op at the ratio 1 runs at the copy rate: nothing left to win. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "core/base/context.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"

int cmd_bench_ew(int argc, char **argv);

typedef struct ew_opts {
    int64_t rows, dim, ffn, batch, heads, iters, reps, copy_mib;
    const char *dtype;
    cli_common c;
} ew_opts;

/* The tensors of one dtype. act: [rows, dim]; ffn: [rows, ffn]; the rope,
 * l2norm and permute views read act as [batch, rows/batch, heads, dim/heads]. */
typedef struct ew_bench {
    lact_tensor x, y, g, dx, w, dw, rstd, fa, fb, fg, fda, fdb;
    lact_tensor x4, y4, yp, xh, yh, gh, dxh; /* views of x, y, g, dx */
    int64_t reps;
} ew_bench;

typedef lact_status (*ew_fn)(lact_ctx *ctx, ew_bench *b);

static lact_status ew_copy(lact_ctx *ctx, ew_bench *b) {
    return lact_device_copy(ctx, &b->y, &b->x);
}
static lact_status ew_rope_fwd(lact_ctx *ctx, ew_bench *b) {
    return lact_rope_forward(ctx, &b->y4, &b->x4, 0, 10000.0f);
}
static lact_status ew_rope_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_rope_backward(ctx, &b->y4, &b->x4, 0, 10000.0f);
}
static lact_status ew_rms_fwd(lact_ctx *ctx, ew_bench *b) {
    return lact_rmsnorm_forward(ctx, &b->y, &b->rstd, &b->x, &b->w, 1e-6f);
}
static lact_status ew_rms_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_rmsnorm_backward(ctx, &b->dx, &b->dw, &b->g, &b->x, &b->w, &b->rstd);
}
static lact_status ew_rms_bwd_res(lact_ctx *ctx, ew_bench *b) {
    return lact_rmsnorm_backward_add(ctx, &b->dx, &b->dw, &b->g, &b->x, &b->w, &b->rstd, &b->y);
}
static lact_status ew_l2_fwd(lact_ctx *ctx, ew_bench *b) {
    return lact_l2norm_forward(ctx, &b->yh, &b->xh, 1e-5f);
}
static lact_status ew_l2_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_l2norm_backward(ctx, &b->dxh, &b->gh, &b->xh, 1e-5f);
}
static lact_status ew_silu_fwd(lact_ctx *ctx, ew_bench *b) {
    return lact_silu_forward(ctx, &b->y, &b->x);
}
static lact_status ew_silu_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_silu_backward(ctx, &b->dx, &b->g, &b->x);
}
static lact_status ew_swiglu_fwd(lact_ctx *ctx, ew_bench *b) {
    return lact_swiglu_forward(ctx, &b->fda, &b->fa, &b->fb);
}
static lact_status ew_swiglu_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_swiglu_backward(ctx, &b->fda, &b->fdb, &b->fg, &b->fa, &b->fb);
}
static lact_status ew_add(lact_ctx *ctx, ew_bench *b) {
    return lact_add_forward(ctx, &b->y, &b->x, &b->g);
}
static lact_status ew_add_bias(lact_ctx *ctx, ew_bench *b) {
    return lact_add_forward(ctx, &b->y, &b->x, &b->w);
}
static lact_status ew_mul_scale(lact_ctx *ctx, ew_bench *b) {
    return lact_mul_forward(ctx, &b->y, &b->x, &b->w);
}
static lact_status ew_mul_bwd(lact_ctx *ctx, ew_bench *b) {
    return lact_mul_backward(ctx, &b->dx, &b->dw, &b->g, &b->x, &b->w);
}
static lact_status ew_colsum(lact_ctx *ctx, ew_bench *b) {
    return lact_add_backward(ctx, NULL, &b->dw, &b->g);
}
static lact_status ew_permute(lact_ctx *ctx, ew_bench *b) {
    return lact_permute_forward(ctx, &b->yp, &b->x4);
}

/* One op: its name, the shape it runs at, and the bytes it must move as a
 * count of full tensors (act or ffn sized) plus per-row F32 statistics. */
typedef struct ew_case {
    const char *name;
    ew_fn fn;
    int tensors;
    bool ffn;
    int row_stats;
    const char *what;
} ew_case;

static const ew_case ew_cases[] = {
    {"copy", ew_copy, 2, false, 0, "act"},
    {"rope_fwd", ew_rope_fwd, 2, false, 0, "[B, L, H, d]"},
    {"rope_bwd", ew_rope_bwd, 2, false, 0, "[B, L, H, d]"},
    {"rmsnorm_fwd", ew_rms_fwd, 2, false, 1, "act, w"},
    {"rmsnorm_bwd", ew_rms_bwd, 3, false, 1, "dx and dw"},
    {"rmsnorm_bwd_res", ew_rms_bwd_res, 4, false, 1, "dx = res + ..., dw"},
    {"l2norm_fwd", ew_l2_fwd, 2, false, 0, "rows of d"},
    {"l2norm_bwd", ew_l2_bwd, 3, false, 0, "rows of d"},
    {"silu_fwd", ew_silu_fwd, 2, false, 0, "act"},
    {"silu_bwd", ew_silu_bwd, 3, false, 0, "act"},
    {"swiglu_fwd", ew_swiglu_fwd, 3, true, 0, "ffn"},
    {"swiglu_bwd", ew_swiglu_bwd, 5, true, 0, "ffn, da and db"},
    {"add", ew_add, 3, false, 0, "act + act"},
    {"add_bias", ew_add_bias, 2, false, 0, "act + f32 [dim]"},
    {"mul_scale", ew_mul_scale, 2, false, 0, "act * f32 [dim]"},
    {"mul_bwd", ew_mul_bwd, 3, false, 0, "da and db, f32 [dim]"},
    {"col_sum", ew_colsum, 1, false, 0, "add backward db"},
    {"permute", ew_permute, 2, false, 0, "[B, L, H, d] -> [B, H, L, d]"},
};

typedef struct ew_call {
    ew_fn fn;
    ew_bench *b;
} ew_call;

/* reps calls per timed run, so that the event overhead is spread. */
static lact_status ew_call_run(lact_ctx *ctx, void *arg) {
    ew_call *c = arg;
    for (int64_t i = 0; i < c->b->reps; i++)
        LACT_TRY(c->fn(ctx, c->b));
    return LACT_OK;
}

static void ew_free(ew_bench *b) {
    lact_tensor *owned[] = {&b->x,    &b->y,  &b->g,  &b->dx, &b->w,   &b->dw,
                            &b->rstd, &b->fa, &b->fb, &b->fg, &b->fda, &b->fdb};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        lact_tensor_free(owned[i]);
}

static lact_status ew_make(lact_ctx *ctx, const ew_opts *o, lact_dtype dt, ew_bench *b) {
    int64_t R = o->rows, D = o->dim, F = o->ffn, B = o->batch, H = o->heads;
    int64_t L = R / B, d = D / H;
    int64_t act[2] = {R, D}, ffn[2] = {R, F}, vec[1] = {D}, rows[1] = {R};
    uint64_t seed = (uint64_t)o->c.seed;
    lact_tensor *acts[] = {&b->x, &b->y, &b->g, &b->dx};
    for (int i = 0; i < 4; i++)
        LACT_TRY(lact_tensor_alloc(acts[i], dt, LACT_CUDA, 2, act));
    lact_tensor *ffns[] = {&b->fa, &b->fb, &b->fg, &b->fda, &b->fdb};
    for (int i = 0; i < 5; i++)
        LACT_TRY(lact_tensor_alloc(ffns[i], dt, LACT_CUDA, 2, ffn));
    LACT_TRY(lact_tensor_alloc(&b->w, LACT_F32, LACT_CUDA, 1, vec));
    LACT_TRY(lact_tensor_alloc(&b->dw, LACT_F32, LACT_CUDA, 1, vec));
    LACT_TRY(lact_tensor_alloc(&b->rstd, LACT_F32, LACT_CUDA, 1, rows));
    LACT_TRY(lact_fill_normal(ctx, &b->x, seed, 1, 0.0f, 1.0f));
    LACT_TRY(lact_fill_normal(ctx, &b->g, seed, 2, 0.0f, 1.0f));
    LACT_TRY(lact_fill_normal(ctx, &b->fa, seed, 3, 0.0f, 1.0f));
    LACT_TRY(lact_fill_normal(ctx, &b->fb, seed, 4, 0.0f, 1.0f));
    LACT_TRY(lact_fill_normal(ctx, &b->fg, seed, 5, 0.0f, 1.0f));
    LACT_TRY(lact_fill_normal(ctx, &b->w, seed, 6, 1.0f, 0.1f));
    int64_t s4[4] = {B, L, H, d}, sp[4] = {B, H, L, d}, sh[2] = {R * H, d};
    b->x4 = lact_tensor_view(b->x.data, dt, LACT_CUDA, 4, s4);
    b->y4 = lact_tensor_view(b->y.data, dt, LACT_CUDA, 4, s4);
    b->yp = lact_tensor_view(b->y.data, dt, LACT_CUDA, 4, sp);
    b->xh = lact_tensor_view(b->x.data, dt, LACT_CUDA, 2, sh);
    b->yh = lact_tensor_view(b->y.data, dt, LACT_CUDA, 2, sh);
    b->gh = lact_tensor_view(b->g.data, dt, LACT_CUDA, 2, sh);
    b->dxh = lact_tensor_view(b->dx.data, dt, LACT_CUDA, 2, sh);
    b->reps = o->reps;
    /* The saved statistic of the backward. */
    LACT_TRY(ew_rms_fwd(ctx, b));
    return lact_ctx_sync(ctx);
}

static void ew_print(const ew_opts *o, const char *dtype, const ew_case *c, double us, double gbs,
                     double copy_gbs) {
    if (o->c.json) {
        printf("{\"bench\": \"ew\", \"op\": \"%s\", \"dtype\": \"%s\", \"us\": %.2f, \"gbps\": "
               "%.1f, \"ratio_copy\": %.3f}\n",
               c->name, dtype, us, gbs, copy_gbs > 0 ? gbs / copy_gbs : 0.0);
    } else {
        printf("ew %-12s %-4s %-30s %9.1f us %8.0f GB/s", c->name, dtype, c->what, us, gbs);
        if (copy_gbs > 0) printf("  %5.2f of copy", gbs / copy_gbs);
        printf("\n");
    }
}

/* The copy rate of a buffer well beyond the L2 cache. */
static lact_status ew_copy_rate(lact_ctx *ctx, const ew_opts *o, double *gbs) {
    int64_t n = o->copy_mib * 1024 * 1024 / 4;
    ew_bench b;
    memset(&b, 0, sizeof b);
    b.reps = 1;
    lact_status s = lact_tensor_alloc(&b.x, LACT_F32, LACT_CUDA, 1, &n);
    if (s == LACT_OK) s = lact_tensor_alloc(&b.y, LACT_F32, LACT_CUDA, 1, &n);
    if (s == LACT_OK) s = lact_fill_uniform(ctx, &b.x, 1, 1, -1.0f, 1.0f);
    ew_call call = {ew_copy, &b};
    double ms = 0;
    if (s == LACT_OK) s = bench_time(ctx, ew_call_run, &call, (int)o->iters, &ms);
    if (s == LACT_OK) *gbs = 2.0 * (double)n * 4.0 / (ms * 1e-3) / 1e9;
    ew_free(&b);
    return s;
}

static int ew_run_dtype(const cli_command *cmd, const ew_opts *o, lact_ctx *ctx, lact_dtype dt,
                        double copy_gbs) {
    ew_bench b;
    memset(&b, 0, sizeof b);
    int rc = 1;
    const char *dname = lact_dtype_name(dt);
    if (ew_make(ctx, o, dt, &b) != LACT_OK) {
        cli_error(cmd, "%s tensors: %s", dname, lact_errmsg());
        goto done;
    }
    double es = (double)lact_dtype_size(dt);
    for (size_t i = 0; i < sizeof ew_cases / sizeof ew_cases[0]; i++) {
        const ew_case *c = &ew_cases[i];
        ew_call call = {c->fn, &b};
        double ms = 0;
        if (bench_time(ctx, ew_call_run, &call, (int)o->iters, &ms) != LACT_OK) {
            cli_error(cmd, "%s %s: %s", c->name, dname, lact_errmsg());
            goto done;
        }
        double us = ms * 1e3 / (double)o->reps;
        double numel = (double)o->rows * (double)(c->ffn ? o->ffn : o->dim);
        double bytes = c->tensors * numel * es + c->row_stats * (double)o->rows * 4.0;
        ew_print(o, dname, c, us, bytes / (us * 1e-6) / 1e9, copy_gbs);
    }
    rc = 0;
done:
    ew_free(&b);
    return rc;
}

int cmd_bench_ew(int argc, char **argv) {
    ew_opts o;
    const cli_opt opts[] = {
        {"--rows", CLI_INT, "N", "tokens per step (rows of the activations)", "32768", &o.rows},
        {"--dim", CLI_INT, "D", "model width", "768", &o.dim},
        {"--ffn", CLI_INT, "F", "swiglu width", "2064", &o.ffn},
        {"--batch", CLI_INT, "B", "sequences (rope, permute: [B, rows/B, H, D/H])", "8", &o.batch},
        {"--heads", CLI_INT, "H", "heads (rope, l2norm, permute)", "6", &o.heads},
        {"--dtype", CLI_STRING, "bf16|f32|both", "activation dtype", "both", &o.dtype},
        {"--reps", CLI_INT, "N", "calls per timed run", "10", &o.reps},
        {"--copy-mib", CLI_INT, "M", "size of the reference copy in MiB", "1024", &o.copy_mib},
        {"--iters", CLI_INT, "N", "timed runs after two warm-up runs; the median is shown", "10",
         &o.iters},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {"lact bench ew",
                             "[options]",
                             "Times the memory-bound ops of a training step at the language "
                             "model's shapes against a device copy.",
                             NULL,
                             opts,
                             0};
    cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    bool bf16 = !strcmp(o.dtype, "bf16") || !strcmp(o.dtype, "both");
    bool f32 = !strcmp(o.dtype, "f32") || !strcmp(o.dtype, "both");
    if (!bf16 && !f32) {
        cli_error(&cmd, "--dtype must be bf16, f32 or both (got '%s')", o.dtype);
        return 2;
    }
    if (o.rows < 1 || o.dim < 1 || o.ffn < 1 || o.batch < 1 || o.heads < 1 || o.iters < 1 ||
        o.reps < 1 || o.copy_mib < 1 || o.rows % o.batch || o.dim % o.heads ||
        (o.dim / o.heads) % 2) {
        cli_error(&cmd, "sizes must be positive, --batch must divide --rows and --heads --dim "
                        "into an even head dim");
        return 2;
    }
    lact_ctx ctx;
    const int open_rc = bench_open_gpu(&cmd, &o.c, &ctx);
    if (open_rc) return open_rc;
    double copy_gbs = 0;
    int rc = 1;
    if (ew_copy_rate(&ctx, &o, &copy_gbs) != LACT_OK) {
        cli_error(&cmd, "copy: %s", lact_errmsg());
        goto done;
    }
    if (!o.c.json)
        printf("ew rows=%lld dim=%lld ffn=%lld rope/permute [%lld, %lld, %lld, %lld], l2norm rows "
               "of %lld; copy %lld MiB: %.0f GB/s (bytes read + written)\n",
               (long long)o.rows, (long long)o.dim, (long long)o.ffn, (long long)o.batch,
               (long long)(o.rows / o.batch), (long long)o.heads, (long long)(o.dim / o.heads),
               (long long)(o.dim / o.heads), (long long)o.copy_mib, copy_gbs);
    rc = 0;
    if (bf16 && rc == 0) rc = ew_run_dtype(&cmd, &o, &ctx, LACT_BF16, copy_gbs);
    if (f32 && rc == 0) rc = ew_run_dtype(&cmd, &o, &ctx, LACT_F32, copy_gbs);
done:
    lact_ctx_free(&ctx);
    return rc;
}
