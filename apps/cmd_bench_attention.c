/* `lact bench attention`: times the attention op (kernels/attention.h)
 * forward and forward + backward on [B, H, L, d] for each requested length
 * and mask, with the FLOP count of the masked area only (4·d per unmasked
 * (query, key) pair and head for the forward, forward + backward counted as
 * 3.5× the forward, the convention of the PyTorch figures that
 * scripts/ref/attention_reference.py prints for the same shapes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_energy.h"
#include "bench_util.h"
#include "cli.h"
#include "core/base/context.h"
#include "core/base/device.h"
#include "kernels/attention.h"
#include "kernels/kernels.h"

int cmd_bench_attention(int argc, char **argv);

enum { AB_MAX_LENS = 8, AB_MAX_MASKS = 8 };

/* The masks of --mask, parsed once. */
typedef struct ab_masks {
    lact_attn_args args[AB_MAX_MASKS];
    const char *names[AB_MAX_MASKS];
    int n;
} ab_masks;

typedef struct attn_bench_opts {
    int64_t batch, heads, kv_heads, dim, window, block, iters;
    double idle, warmup, energy;
    const char *lens, *masks, *dtype;
    cli_common c;
} attn_bench_opts;

/* The tensors of one length. */
typedef struct attn_bench {
    lact_tensor q, k, v, y, lse, dy, dq, dk, dv;
    lact_attn_args args;
    bool backward;
} attn_bench;

static lact_status ab_run(lact_ctx *ctx, void *arg) {
    attn_bench *b = arg;
    LACT_TRY(
        lact_attention_forward(ctx, &b->y, &b->lse, &b->q, &b->k, &b->v, NULL, NULL, &b->args));
    if (!b->backward) return LACT_OK;
    return lact_attention_backward(ctx, &b->dq, &b->dk, &b->dv, NULL, &b->dy, &b->q, &b->k, &b->v,
                                   NULL, NULL, &b->y, &b->lse, &b->args);
}

static void ab_free(attn_bench *b) {
    lact_tensor *ts[] = {&b->q, &b->k, &b->v, &b->y, &b->lse, &b->dy, &b->dq, &b->dk, &b->dv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        lact_tensor_free(ts[i]);
}

static lact_status ab_make(lact_ctx *ctx, const attn_bench_opts *o, lact_dtype dt, int64_t len,
                           attn_bench *b) {
    const int64_t sq[4] = {o->batch, o->heads, len, o->dim};
    const int64_t skv[4] = {o->batch, o->kv_heads, len, o->dim};
    const int64_t sl[3] = {o->batch, o->heads, len};
    const uint64_t seed = (uint64_t)o->c.seed;
    struct {
        lact_tensor *t;
        const int64_t *shape;
        int ndim;
        bool fill;
    } all[] = {{&b->q, sq, 4, true},   {&b->k, skv, 4, true},   {&b->v, skv, 4, true},
               {&b->y, sq, 4, false},  {&b->lse, sl, 3, false}, {&b->dy, sq, 4, true},
               {&b->dq, sq, 4, false}, {&b->dk, skv, 4, false}, {&b->dv, skv, 4, false}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const lact_dtype t = all[i].t == &b->lse ? LACT_F32 : dt;
        LACT_TRY(lact_tensor_alloc(all[i].t, t, ctx->device, all[i].ndim, all[i].shape));
        if (all[i].fill)
            LACT_TRY(lact_fill_normal(ctx, all[i].t, seed, 10 + (uint64_t)i, 0.0f, 1.0f));
    }
    return lact_ctx_sync(ctx);
}

/* "8192,32768" into lens[0..*n); false on a bad or non-positive item. */
static bool ab_parse_lens(const char *s, int64_t *lens, int *n) {
    *n = 0;
    while (*s) {
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end == s || v < 1 || *n == AB_MAX_LENS || (*end && *end != ',')) return false;
        lens[(*n)++] = v;
        s = *end ? end + 1 : end;
    }
    return *n > 0;
}

/* The mask named by the item [s, s + len) of --mask. */
static bool ab_parse_mask(const char *s, size_t len, const attn_bench_opts *o, lact_attn_args *a,
                          const char **name) {
    memset(a, 0, sizeof *a);
    if (len == 6 && !strncmp(s, "causal", len))
        a->mask = LACT_ATTN_CAUSAL, *name = "causal";
    else if (len == 6 && !strncmp(s, "window", len))
        a->mask = LACT_ATTN_WINDOW, a->window = o->window, *name = "window";
    else if (len == 5 && !strncmp(s, "block", len))
        a->mask = LACT_ATTN_BLOCK_CAUSAL, a->block = o->block, *name = "block-causal";
    else if (len == 4 && !strncmp(s, "full", len))
        a->mask = LACT_ATTN_FULL, *name = "full";
    else
        return false;
    return true;
}

/* Millijoules per forward and per forward + backward, and the mean watts
 * of the latter; mj_b < 0: energy not measured. */
typedef struct ab_energy {
    double mj_f, mj_b, watts;
} ab_energy;

static void ab_print(const attn_bench_opts *o, const char *mask, int64_t len, double flops,
                     double ms_f, double ms_b, double peak_gib, const ab_energy *e) {
    const double tf_f = flops / ms_f * 1e-9, tf_b = 3.5 * flops / ms_b * 1e-9;
    if (o->c.json) {
        printf(
            "{\"bench\": \"attention\", \"mask\": \"%s\", \"window\": %lld, \"block\": %lld, "
            "\"batch\": %lld, \"heads\": %lld, \"kv_heads\": %lld, \"len\": %lld, \"dim\": "
            "%lld, \"dtype\": \"%s\", \"fwd_flops\": %.6e, \"fwd_ms\": %.4f, \"fwd_tflops\": %.4g, "
            "\"fwd_bwd_ms\": %.4f, \"fwd_bwd_tflops\": %.4g, \"peak_gib\": %.3f",
            mask, (long long)o->window, (long long)o->block, (long long)o->batch,
            (long long)o->heads, (long long)o->kv_heads, (long long)len, (long long)o->dim,
            o->dtype, flops, ms_f, tf_f, ms_b, tf_b, peak_gib);
        if (e->mj_b >= 0.0)
            printf(", \"fwd_mj\": %.4g, \"fwd_bwd_mj\": %.4g, \"watts\": %.1f", e->mj_f, e->mj_b,
                   e->watts);
        printf("}\n");
    } else {
        printf("  %-13s %7lld %10.3f %9.4g %11.3f %9.4g %8.2f", mask, (long long)len, ms_f, tf_f,
               ms_b, tf_b, peak_gib);
        if (e->mj_b >= 0.0) printf(" %8.4g %9.4g %7.1f", e->mj_f, e->mj_b, e->watts);
        printf("\n");
    }
}

static int ab_main(const cli_command *cmd, const attn_bench_opts *o, lact_ctx *ctx, lact_dtype dt,
                   const int64_t *lens, int n_lens, const ab_masks *masks,
                   const bench_energy *meter) {
    const double gib = 1024.0 * 1024.0 * 1024.0;
    if (!o->c.json) {
        printf("attention B=%lld H=%lld Hkv=%lld d=%lld %s; FLOPs 4·d per unmasked (query, key) "
               "pair and head, fwd+bwd = 3.5x fwd; medians of %lld runs after 2 warm-ups "
               "and %g s of warm-up runs, %g s idle before each case\n",
               (long long)o->batch, (long long)o->heads, (long long)o->kv_heads, (long long)o->dim,
               o->dtype, (long long)o->iters, ctx->device == LACT_CUDA ? o->warmup : 0.0,
               ctx->device == LACT_CUDA ? o->idle : 0.0);
        if (meter)
            printf("energy: millijoules per forward and per forward + backward over %g s of "
                   "runs each after the timing, mean watts of the latter\n",
                   o->energy);
        printf("  %-13s %7s %10s %9s %11s %9s %8s", "mask", "L", "fwd ms", "TFLOP/s", "f+b ms",
               "TFLOP/s", "peak GiB");
        if (meter) printf(" %8s %9s %7s", "fwd mJ", "f+b mJ", "W");
        printf("\n");
    }
    for (int li = 0; li < n_lens; li++) {
        attn_bench b;
        memset(&b, 0, sizeof b);
        lact_mem_reset_peak(ctx->device);
        if (ab_make(ctx, o, dt, lens[li], &b) != LACT_OK) {
            cli_error(cmd, "inputs for L=%lld: %s", (long long)lens[li], lact_errmsg());
            ab_free(&b);
            return 1;
        }
        for (int mi = 0; mi < masks->n; mi++) {
            const char *name = masks->names[mi];
            b.args = masks->args[mi];
            double ms_f = 0.0, ms_b = 0.0;
            b.backward = false;
            const bool gpu = ctx->device == LACT_CUDA;
            lact_status s = bench_idle(ctx, gpu ? o->idle : 0.0);
            if (s == LACT_OK) s = bench_warm(ctx, ab_run, &b, gpu ? o->warmup : 0.0);
            if (s == LACT_OK) s = bench_time(ctx, ab_run, &b, (int)o->iters, &ms_f);
            b.backward = true;
            if (s == LACT_OK) s = bench_warm(ctx, ab_run, &b, gpu ? o->warmup : 0.0);
            if (s == LACT_OK) s = bench_time(ctx, ab_run, &b, (int)o->iters, &ms_b);
            ab_energy e = {-1.0, -1.0, 0.0};
            if (s == LACT_OK && meter)
                s = bench_energy_per_run(ctx, meter, ab_run, &b, o->energy, &e.mj_b, &e.watts);
            b.backward = false;
            double watts_f;
            if (s == LACT_OK && meter)
                s = bench_energy_per_run(ctx, meter, ab_run, &b, o->energy, &e.mj_f, &watts_f);
            if (s != LACT_OK) {
                cli_error(cmd, "%s L=%lld: %s", name, (long long)lens[li], lact_errmsg());
                ab_free(&b);
                return 1;
            }
            const double flops = 4.0 * (double)o->dim * lact_attention_pairs(&b.args, lens[li]) *
                                 (double)(o->batch * o->heads);
            ab_print(o, name, lens[li], flops, ms_f, ms_b, (double)lact_mem_peak(ctx->device) / gib,
                     &e);
        }
        ab_free(&b);
    }
    return 0;
}

int cmd_bench_attention(int argc, char **argv) {
    attn_bench_opts o;
    const cli_opt opts[] = {
        {"--batch", CLI_INT, "B", "sequences", "4", &o.batch},
        {"--heads", CLI_INT, "H", "query heads", "16", &o.heads},
        {"--kv-heads", CLI_INT, "H", "key/value heads (0: as many as query heads)", "0",
         &o.kv_heads},
        {"--len", CLI_STRING, "L[,L...]", "tokens per sequence, one run each", "8192,32768",
         &o.lens},
        {"--dim", CLI_INT, "D", "head dim d", "128", &o.dim},
        {"--mask", CLI_STRING, "M[,M...]", "masks: causal, window, block (block-causal), full",
         "causal,window,block", &o.masks},
        {"--window", CLI_INT, "W", "keys each query sees with the window mask", "2048", &o.window},
        {"--block", CLI_INT, "N", "block size of the block-causal mask", "4096", &o.block},
        {"--dtype", CLI_STRING, "bf16|f32", "activation dtype (f32 only on the CPU)", "bf16",
         &o.dtype},
        {"--iters", CLI_INT, "N", "timed runs after two warm-up runs; the median is shown", "5",
         &o.iters},
        {"--idle", CLI_FLOAT, "S",
         "seconds the GPU idles before each case, so each starts from the same state", "1",
         &o.idle},
        {"--warmup", CLI_FLOAT, "S",
         "seconds of warm-up runs (GPU) before each timing, past the clock dip that follows "
         "an idle spell",
         "0.5", &o.warmup},
        {"--energy", CLI_FLOAT, "S",
         "also run each forward + backward, then each forward, for S seconds after the "
         "timing and report the GPU's millijoules per run and mean watts (NVML; 0: off)",
         "0", &o.energy},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {"lact bench attention",
                             "[options]",
                             "Times the attention op forward and forward + backward for each "
                             "length and mask (TFLOP/s of the unmasked area).",
                             "Compare with: python3 scripts/ref/attention_reference.py (PyTorch "
                             "SDPA and flex_attention on the same shapes).",
                             opts,
                             0};
    cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (o.kv_heads == 0) o.kv_heads = o.heads;
    if (o.batch < 1 || o.heads < 1 || o.kv_heads < 1 || o.dim < 1 || o.window < 1 || o.block < 1 ||
        o.iters < 1) {
        cli_error(&cmd, "--batch, --heads, --kv-heads, --dim, --window, --block, --iters must be "
                        "positive");
        return 2;
    }
    if (!(o.idle >= 0.0 && o.idle <= 600.0)) {
        cli_error(&cmd, "--idle wants seconds from 0 to 600, not %g", o.idle);
        return 2;
    }
    if (!(o.warmup >= 0.0 && o.warmup <= 600.0)) {
        cli_error(&cmd, "--warmup wants seconds from 0 to 600, not %g", o.warmup);
        return 2;
    }
    if (!(o.energy >= 0.0 && o.energy <= 600.0)) {
        cli_error(&cmd, "--energy wants seconds from 0 to 600, not %g", o.energy);
        return 2;
    }
    if (o.heads % o.kv_heads) {
        cli_error(&cmd, "--heads (%lld) must be a multiple of --kv-heads (%lld)",
                  (long long)o.heads, (long long)o.kv_heads);
        return 2;
    }
    int64_t lens[AB_MAX_LENS];
    int n_lens = 0;
    if (!ab_parse_lens(o.lens, lens, &n_lens)) {
        cli_error(&cmd, "--len wants up to %d positive lengths separated by commas, not '%s'",
                  AB_MAX_LENS, o.lens);
        return 2;
    }
    ab_masks masks = {.n = 0};
    for (const char *m = o.masks;;) {
        const size_t len = strcspn(m, ",");
        if (masks.n == AB_MAX_MASKS) {
            cli_error(&cmd, "--mask: at most %d masks", AB_MAX_MASKS);
            return 2;
        }
        if (!ab_parse_mask(m, len, &o, &masks.args[masks.n], &masks.names[masks.n])) {
            cli_error(&cmd, "--mask: unknown mask '%.*s' (causal, window, block, full)", (int)len,
                      m);
            return 2;
        }
        masks.n++;
        if (!m[len]) break;
        m += len + 1;
    }
    lact_dtype dt;
    lact_ctx ctx;
    const int open_rc = bench_open(&cmd, &o.c, o.dtype, &dt, &ctx);
    if (open_rc) return open_rc;
    bench_energy meter = {0};
    if (o.energy > 0.0) {
        if (ctx.device != LACT_CUDA) {
            cli_error(&cmd, "--energy needs a GPU (it reads the GPU's energy counter)");
            lact_ctx_free(&ctx);
            return 1;
        }
        if (bench_energy_open(&meter) != LACT_OK) {
            cli_error(&cmd, "%s", lact_errmsg());
            lact_ctx_free(&ctx);
            return 1;
        }
    }
    int rc = ab_main(&cmd, &o, &ctx, dt, lens, n_lens, &masks, o.energy > 0.0 ? &meter : NULL);
    if (o.energy > 0.0) bench_energy_close(&meter);
    lact_ctx_free(&ctx);
    return rc;
}
