/* `lact bench ttt`: times the LaCT op (causal order) forward without and
 * with saved state, and forward + backward, at the layer's shapes; prints
 * ms, TFLOP/s (18·d·dh·L per head forward, 3× that for forward + backward,
 * Newton–Schulz not counted), peak device memory, and the ratio to the
 * bf16 GEMM rate measured in the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/graph.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"
#include "kernels/ttt.h"

int cmd_bench_ttt(int argc, char **argv);

typedef struct ttt_bench_opts {
    int64_t batch, len, heads, dim, mult, chunk, muon, mom, save_every, keep, graph, iters;
    const char *state; /* "auto" | "bf16" | "f32": the snapshots' type */
    double gemm_warm;
    cli_common c;
} ttt_bench_opts;

/* Everything one configuration holds on the device. */
typedef struct ttt_bench {
    lact_tensor x[10], g[10], o, d_o, state, tmp;
    lact_ttt_op *ops;
    lact_ttt_args args;
    bool mom;
} ttt_bench;

enum { TB_INFER, TB_FWD, TB_FWDBWD };

static lact_status tb_forward(lact_ctx *ctx, ttt_bench *b, bool save) {
    lact_tensor *x = b->x;
    return lact_ttt_forward(ctx, &b->o, save ? &b->state : NULL, &x[0], &x[1], &x[2], &x[3], &x[4],
                            &x[5], b->mom ? &x[6] : NULL, &x[7], &x[8], &x[9], &b->args);
}

static lact_status tb_run(lact_ctx *ctx, ttt_bench *b, int mode) {
    if (mode == TB_INFER) return tb_forward(ctx, b, false);
    LACT_TRY(tb_forward(ctx, b, true));
    if (mode == TB_FWD) return LACT_OK;
    lact_tensor *x = b->x, *g = b->g;
    return lact_ttt_backward(ctx, &g[0], &g[1], &g[2], &g[3], &g[4], &g[5], b->mom ? &g[6] : NULL,
                             &g[7], &g[8], &g[9], &b->d_o, &b->state, &x[0], &x[1], &x[2], &x[3],
                             &x[4], &x[5], b->mom ? &x[6] : NULL, &x[7], &x[8], &x[9], &b->args);
}

typedef struct tb_call {
    ttt_bench *b;
    int mode;
} tb_call;

static lact_status tb_call_run(lact_ctx *ctx, void *arg) {
    tb_call *c = arg;
    return tb_run(ctx, c->b, c->mode);
}

/* Median of iters timed runs after two warm-up runs. */
static lact_status tb_time(lact_ctx *ctx, ttt_bench *b, int mode, int iters, double *ms) {
    tb_call c = {b, mode};
    return bench_time(ctx, tb_call_run, &c, iters, ms);
}

static lact_status tb_graph_run(lact_ctx *ctx, void *arg) {
    return lact_graph_launch(ctx, (const lact_graph *)arg);
}

/* The same, the mode's work recorded once as a CUDA graph and replayed
 * (as a training step that records its micro-step runs the op): no host
 * launches between the kernels. */
static lact_status tb_time_graph(lact_ctx *ctx, ttt_bench *b, int mode, int iters, double *ms) {
    lact_graph g = {0};
    LACT_TRY(lact_graph_begin(ctx));
    const lact_status s = tb_run(ctx, b, mode);
    LACT_TRY(lact_graph_end(ctx, &g, s == LACT_OK));
    LACT_TRY(s);
    const lact_status t = bench_time(ctx, tb_graph_run, &g, iters, ms);
    lact_graph_free(&g);
    return t;
}

static void tb_free(ttt_bench *b) {
    for (int i = 0; i < 10; i++) {
        lact_tensor_free(&b->x[i]);
        lact_tensor_free(&b->g[i]);
    }
    lact_tensor_free(&b->o);
    lact_tensor_free(&b->d_o);
    lact_tensor_free(&b->state);
    lact_tensor_free(&b->tmp);
    free(b->ops);
}

/* --state resolved: auto saves BF16 snapshots without Muon, as the layer. */
static bool tb_state_bf16(const ttt_bench_opts *o) {
    return !strcmp(o->state, "bf16") || (!strcmp(o->state, "auto") && o->muon == 0);
}

/* Inputs like the layer's: q, k = l2norm(silu(normal)), v = silu(normal)
 * in BF16; lrs U(5e-4, 5e-3); momentum U(0.3, 0.95); weights N(0, 1/fan_in). */
static lact_status tb_make(lact_ctx *ctx, const ttt_bench_opts *o, ttt_bench *b) {
    int64_t N = o->batch * o->heads, L = o->len, d = o->dim, dh = d * o->mult;
    uint64_t seed = (uint64_t)o->c.seed;
    int64_t act[3] = {N, L, d}, tok[2] = {N, L}, wa[3] = {N, dh, d}, wb[3] = {N, d, dh};
    int64_t n_ops = lact_ttt_order_causal(NULL, 0, L, o->chunk);
    b->ops = malloc((size_t)n_ops * sizeof *b->ops);
    if (!b->ops) return lact_fail(LACT_E_NOMEM, "bench ttt: out of host memory");
    lact_ttt_order_causal(b->ops, n_ops, L, o->chunk);
    b->args = (lact_ttt_args){.ops = b->ops,
                              .n_ops = n_ops,
                              .muon = (lact_ttt_muon)o->muon,
                              .save_every = (int)o->save_every,
                              .state_bf16 = tb_state_bf16(o),
                              .keep_ns = o->keep != 0};
    b->mom = o->mom != 0;
    LACT_TRY(lact_tensor_alloc(&b->tmp, LACT_BF16, ctx->device, 3, act));
    for (int i = 0; i < 3; i++) {
        LACT_TRY(lact_tensor_alloc(&b->x[i], LACT_BF16, ctx->device, 3, act));
        LACT_TRY(lact_fill_normal(ctx, &b->tmp, seed, 10 + (uint64_t)i, 0.0f, 1.0f));
        if (i == 2) {
            LACT_TRY(lact_silu_forward(ctx, &b->x[i], &b->tmp));
        } else {
            LACT_TRY(lact_silu_forward(ctx, &b->x[i], &b->tmp));
            LACT_TRY(lact_l2norm_forward(ctx, &b->tmp, &b->x[i], 1e-5f));
            LACT_TRY(lact_device_copy(ctx, &b->x[i], &b->tmp));
        }
    }
    for (int i = 3; i < 7; i++) {
        if (i == 6 && !b->mom) continue;
        LACT_TRY(lact_tensor_alloc(&b->x[i], LACT_F32, ctx->device, 2, tok));
        float lo = i == 6 ? 0.3f : 5e-4f, hi = i == 6 ? 0.95f : 5e-3f;
        LACT_TRY(lact_fill_uniform(ctx, &b->x[i], seed, 20 + (uint64_t)i, lo, hi));
    }
    for (int i = 7; i < 10; i++) {
        LACT_TRY(lact_tensor_alloc(&b->x[i], LACT_F32, ctx->device, 3, i == 8 ? wb : wa));
        float sd = 1.0f / sqrtf((float)(i == 8 ? dh : d));
        LACT_TRY(lact_fill_normal(ctx, &b->x[i], seed, 30 + (uint64_t)i, 0.0f, sd));
    }
    LACT_TRY(lact_tensor_alloc(&b->o, LACT_BF16, ctx->device, 3, act));
    LACT_TRY(lact_ctx_sync(ctx));
    /* The draw scratch is the bench's, not the op's: keep it out of the peak. */
    lact_tensor_free(&b->tmp);
    return LACT_OK;
}

/* State, output gradient and input gradients: only the training modes. */
static lact_status tb_make_train(lact_ctx *ctx, const ttt_bench_opts *o, ttt_bench *b) {
    int64_t N = o->batch * o->heads, d = o->dim, dh = d * o->mult;
    int64_t S = lact_ttt_state_numel(&b->args, b->mom, d, dh);
    LACT_TRY(lact_tensor_alloc(&b->state, LACT_F32, ctx->device, 2, (int64_t[]){N, S}));
    LACT_TRY(lact_tensor_alloc(&b->d_o, LACT_BF16, ctx->device, 3, b->x[0].shape));
    LACT_TRY(lact_fill_normal(ctx, &b->d_o, (uint64_t)o->c.seed, 40, 0.0f, 1.0f));
    for (int i = 0; i < 10; i++) {
        if (!b->x[i].data) continue;
        LACT_TRY(
            lact_tensor_alloc(&b->g[i], b->x[i].dtype, ctx->device, b->x[i].ndim, b->x[i].shape));
    }
    return lact_ctx_sync(ctx);
}

static void tb_print(const ttt_bench_opts *o, const char *what, double ms, double flop,
                     double peak_gib, double gemm) {
    double tf = flop / (ms * 1e-3) / 1e12;
    if (o->c.json) {
        printf("{\"bench\": \"ttt\", \"mode\": \"%s\", \"batch\": %lld, \"len\": %lld, "
               "\"heads\": %lld, \"dim\": %lld, \"inter_multi\": %lld, \"chunk\": %lld, "
               "\"muon\": %lld, \"momentum\": %lld, \"save_every\": %lld, \"state\": \"%s\", "
               "\"keep_iterates\": %lld, \"ms\": %.4f, "
               "\"tflops\": %.2f, "
               "\"peak_gib\": %.3f, \"gemm_tflops\": %.1f, \"ratio_gemm\": %.3f}\n",
               what, (long long)o->batch, (long long)o->len, (long long)o->heads, (long long)o->dim,
               (long long)o->mult, (long long)o->chunk, (long long)o->muon, (long long)o->mom,
               (long long)o->save_every, tb_state_bf16(o) ? "bf16" : "f32", (long long)o->keep, ms,
               tf, peak_gib, gemm, gemm > 0 ? tf / gemm : 0.0);
    } else {
        printf("ttt %-13s %9.3f ms %8.1f TFLOP/s  peak %6.2f GiB", what, ms, tf, peak_gib);
        if (gemm > 0) printf("  (%.1f%% of bf16 GEMM %.0f TFLOP/s)", 100 * tf / gemm, gemm);
        printf("\n");
    }
}

static int tb_main(const cli_command *cmd, const ttt_bench_opts *o, lact_ctx *ctx) {
    ttt_bench b;
    memset(&b, 0, sizeof b);
    int rc = 1;
    double gemm = 0, gib = 1024.0 * 1024.0 * 1024.0;
    if (ctx->device == LACT_CUDA &&
        bench_gemm_rate(ctx, 8192, (int)o->iters, 0.0, &gemm) != LACT_OK) {
        cli_error(cmd, "reference gemm: %s", lact_errmsg());
        return 1;
    }
    double flop = 18.0 * (double)o->dim * (double)(o->dim * o->mult) * (double)o->len *
                  (double)(o->batch * o->heads);
    if (!o->c.json)
        printf("ttt B=%lld L=%lld heads=%lld d=%lld dh=%lld chunk=%lld muon=%lld momentum=%lld "
               "save_every=%lld state=%s keep_iterates=%lld (FLOPs 18*d*dh*L per head = %.3e "
               "forward, x3 forward+backward, Muon not counted)\n",
               (long long)o->batch, (long long)o->len, (long long)o->heads, (long long)o->dim,
               (long long)(o->dim * o->mult), (long long)o->chunk, (long long)o->muon,
               (long long)o->mom, (long long)o->save_every, tb_state_bf16(o) ? "bf16" : "f32",
               (long long)o->keep, flop);
    double ms = 0;
    lact_status made = tb_make(ctx, o, &b);
    lact_mem_reset_peak(ctx->device);
    if (made != LACT_OK || tb_time(ctx, &b, TB_INFER, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward: %s", lact_errmsg());
        goto done;
    }
    tb_print(o, "inference", ms, flop, (double)lact_mem_peak(ctx->device) / gib, gemm);
    if (tb_make_train(ctx, o, &b) != LACT_OK ||
        tb_time(ctx, &b, TB_FWD, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward with state: %s", lact_errmsg());
        goto done;
    }
    tb_print(o, "forward", ms, flop, (double)lact_mem_peak(ctx->device) / gib, gemm);
    if (tb_time(ctx, &b, TB_FWDBWD, (int)o->iters, &ms) != LACT_OK) {
        cli_error(cmd, "forward+backward: %s", lact_errmsg());
        goto done;
    }
    tb_print(o, "fwd+bwd", ms, 3 * flop, (double)lact_mem_peak(ctx->device) / gib, gemm);
    if (o->graph) {
        double gms = 0;
        if (tb_time_graph(ctx, &b, TB_FWDBWD, (int)o->iters, &gms) != LACT_OK) {
            cli_error(cmd, "forward+backward as a graph: %s", lact_errmsg());
            goto done;
        }
        tb_print(o, "fwd+bwd-graph", gms, 3 * flop, (double)lact_mem_peak(ctx->device) / gib, gemm);
    }
    if (o->gemm_warm > 0) {
        /* The modes above ran back to back, so the card is near its
         * sustained state: the GEMM rate there is the fair ceiling too. */
        double warm = 0, tf = 3 * flop / (ms * 1e-3) / 1e12;
        if (bench_gemm_rate(ctx, 8192, (int)o->iters, o->gemm_warm, &warm) != LACT_OK) {
            cli_error(cmd, "reference gemm after warm-up: %s", lact_errmsg());
            goto done;
        }
        if (o->c.json)
            printf("{\"bench\": \"ttt\", \"mode\": \"gemm-warm\", \"gemm_warm_s\": %g, "
                   "\"gemm_warm_tflops\": %.1f, \"fwd_bwd_ratio_gemm_warm\": %.3f}\n",
                   o->gemm_warm, warm, tf / warm);
        else
            printf("bf16 GEMM after %g s of back-to-back calls: %.0f TFLOP/s; fwd+bwd %.1f%% of "
                   "it\n",
                   o->gemm_warm, warm, 100 * tf / warm);
    }
    rc = 0;
done:
    tb_free(&b);
    return rc;
}

int cmd_bench_ttt(int argc, char **argv) {
    ttt_bench_opts o;
    const cli_opt opts[] = {
        {"--batch", CLI_INT, "B", "sequences", "4", &o.batch},
        {"--len", CLI_INT, "L", "tokens per sequence", "32768", &o.len},
        {"--heads", CLI_INT, "H", "fast-weight heads per sequence", "4", &o.heads},
        {"--dim", CLI_INT, "D", "head dim d", "512", &o.dim},
        {"--inter", CLI_INT, "M", "inter_multi: dh = M * d", "1", &o.mult},
        {"--chunk", CLI_INT, "C", "tokens per update", "2048", &o.chunk},
        {"--muon", CLI_INT, "0|1|2", "Newton-Schulz: off, per-step table, fixed triple", "0",
         &o.muon},
        {"--momentum", CLI_INT, "0|1", "momentum on the updates", "1", &o.mom},
        {"--save-every", CLI_INT, "1|2",
         "save the weights after every update, or every second one (recomputing the others in "
         "the backward: less memory, more time)",
         "1", &o.save_every},
        {"--keep-iterates", CLI_INT, "0|1",
         "with Muon, keep each update's Newton-Schulz iterates in the state for the backward, "
         "as the layer does with BF16 activations (more memory; 0: the backward runs the "
         "iteration again)",
         "1", &o.keep},
        {"--graph", CLI_INT, "0|1",
         "also time forward + backward recorded once as a CUDA graph and replayed, as in a "
         "training step that records its micro-step (no host launches between the kernels)",
         "0", &o.graph},
        {"--state", CLI_STRING, "auto|bf16|f32",
         "the type of the weights saved for the backward (bf16: half the memory; auto: as the "
         "layer saves them, bf16 without Muon)",
         "auto", &o.state},
        {"--iters", CLI_INT, "N", "timed runs after two warm-up runs; the median is shown", "10",
         &o.iters},
        {"--gemm-warm", CLI_FLOAT, "S",
         "at the end, time the reference GEMM again after S seconds of back-to-back calls: a "
         "card at its power limit settles below the rate of its first calls (0: skip)",
         "2", &o.gemm_warm},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {"lact bench ttt",
                             "[options]",
                             "Times the LaCT op (causal order, BF16 activations) forward and "
                             "forward + backward.",
                             NULL,
                             opts,
                             0};
    cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (o.batch < 1 || o.len < 1 || o.heads < 1 || o.dim < 1 || o.mult < 1 || o.chunk < 1 ||
        o.iters < 1 || o.muon < 0 || o.muon > 2 || o.save_every < 1 || o.save_every > 2 ||
        o.keep < 0 || o.keep > 1 || o.graph < 0 || o.graph > 1 ||
        (strcmp(o.state, "auto") && strcmp(o.state, "bf16") && strcmp(o.state, "f32")) ||
        !(o.gemm_warm >= 0 && o.gemm_warm <= 600)) {
        cli_error(&cmd, "--batch, --len, --heads, --dim, --inter, --chunk, --iters must be "
                        "positive, --muon 0, 1 or 2, --save-every 1 or 2, --keep-iterates 0 or 1, "
                        "--graph 0 or 1, --state auto, bf16 or f32 and --gemm-warm from 0 to 600 "
                        "seconds");
        return 2;
    }
    lact_ctx ctx;
    const int open_rc = bench_open_gpu(&cmd, &o.c, &ctx);
    if (open_rc) return open_rc;
    int rc = tb_main(&cmd, &o, &ctx);
    lact_ctx_free(&ctx);
    return rc;
}
