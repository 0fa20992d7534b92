/* `lact bench lm`: training throughput of the language model. Builds the
 * run of a config as `lact lm train` does (lact_lm_trainer: forward +
 * backward over `accum` micro-batches, clipping, AdamW), feeds it seeded
 * random ids instead of shards, and prints tokens/s, ms a step, peak device
 * memory, the FLOPs per token by term (core/train/lm_flops.h) and the MFU
 * against a dense GEMM measured in the same run (and, on a GPU, against the
 * H100 datasheet's dense bf16 peak). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "core/train/lm_flops.h"
#include "core/train/lm_trainer.h"
#include "kernels/kernels.h"
#include "kernels/timer.h"

int cmd_bench_lm(int argc, char **argv);

/* The H100 SXM datasheet's dense (no sparsity) bf16 tensor-core rate. */
#define H100_BF16_DENSE_TFLOPS 989.0

typedef struct lm_bench_opts {
    const char *config;
    cli_list set;
    int64_t steps, warmup, gemm_size;
    double peak_tflops, gemm_warm;
    cli_common c;
} lm_bench_opts;

typedef struct lm_bench_result {
    int64_t params, tokens_per_step;
    double ms_mean, ms_median, tokens_per_s, peak_mib, loss;
    char act_dtype[16]; /* the residual stream's dtype, lower case */
    lact_lm_flops flops;
    const char *gemm_dtype;
    int64_t gemm_n;
    double gemm_tflops, achieved_tflops, peak_tflops;
    double gemm_warm_tflops; /* after gemm_warm s of runs; 0: not measured */
} lm_bench_result;

/* Seeded uniform ids in [0, vocab): a fresh draw for every micro-batch. */
typedef struct random_ids {
    lact_rng rng;
    int64_t vocab, n; /* n = batch · (seq_len + 1) */
    int64_t batch;
} random_ids;

static lact_status next_random(void *arg, int32_t *window, int64_t *rows) {
    random_ids *r = arg;
    for (int64_t i = 0; i < r->n; i++)
        window[i] = (int32_t)(lact_rng_u32(&r->rng) % (uint32_t)r->vocab);
    *rows = r->batch;
    return LACT_OK;
}

/* Defaults ← --config ← --set, as `lact lm train` resolves them. */
static lact_status resolve_config(const lm_bench_opts *o, lact_lm_run_cfg *cfg) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    *cfg = lact_lm_run_defaults();
    LACT_TRY(lact_config_load(o->config, fields, nf, cfg));
    for (int i = 0; i < o->set.n; i++)
        LACT_TRY(lact_config_set(o->set.items[i], fields, nf, cfg));
    return lact_lm_run_check(cfg);
}

static void lower(char *buf, size_t n, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);
    buf[i] = '\0';
}

/* Warm-up steps, then timed steps, each timed alone (CUDA events on the
 * context's stream, the host clock on the CPU; a step ends synchronised,
 * since it reads the loss and the gradient norm back). */
static lact_status run_steps(const lm_bench_opts *o, lact_lm_trainer *t, lm_bench_result *r) {
    const lact_lm_run_cfg *c = &t->cfg;
    random_ids ids = {lact_rng_make((uint64_t)o->c.seed, 0x6c6d), c->model.vocab,
                      c->batch * (c->seq_len + 1), c->batch};
    lact_lm_step_stats st;
    for (int64_t i = 0; i < o->warmup; i++)
        LACT_TRY(lact_lm_trainer_step_from(t, next_random, &ids, &st));
    LACT_TRY(lact_ctx_sync(t->ctx));
    double *ms = malloc(sizeof(double) * (size_t)o->steps);
    if (!ms) return lact_fail(LACT_E_NOMEM, "bench lm: out of host memory");
    lact_timer timer;
    lact_status s = lact_timer_init(&timer, t->ctx);
    if (s != LACT_OK) {
        free(ms);
        return s;
    }
    double sum = 0, loss = 0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < o->steps && s == LACT_OK; i++) {
        s = lact_timer_start(&timer);
        if (s == LACT_OK) s = lact_lm_trainer_step_from(t, next_random, &ids, &st);
        if (s == LACT_OK) s = lact_timer_stop(&timer, &ms[i]);
        if (s == LACT_OK) sum += ms[i], tokens += st.tokens, loss = st.loss;
    }
    lact_timer_free(&timer);
    if (s == LACT_OK) {
        r->tokens_per_step = tokens / o->steps;
        r->ms_mean = sum / (double)o->steps;
        r->ms_median = bench_median(ms, (int)o->steps);
        r->tokens_per_s = (double)tokens / (sum * 1e-3);
        r->loss = loss;
    }
    free(ms);
    return s;
}

static const char *plural(int64_t n) {
    return n == 1 ? "" : "s";
}

static void print_text(const lm_bench_opts *o, const lact_lm_run_cfg *c, lact_device dev,
                       const lm_bench_result *r) {
    const lact_lm_flops *f = &r->flops;
    const lact_lm_cfg *m = &c->model;
    int64_t d = m->d_model / m->n_heads;
    int64_t n_attn = f->layers[LACT_MIXER_ATTENTION], n_lact = f->layers[LACT_MIXER_LACT];
    int64_t n_win = m->window > 0 ? n_lact : 0, n_mesa = f->layers[LACT_MIXER_MESA];
    printf("bench lm: %s, %lld layers [%s], D %lld, %lld heads, vocab %lld (%s), %lld "
           "parameters\n",
           o->config, (long long)m->n_layers, m->mixers, (long long)m->d_model,
           (long long)m->n_heads, (long long)m->vocab, m->tie_embeddings ? "tied" : "untied",
           (long long)r->params);
    printf("  seq_len %lld x batch %lld x accum %lld = %lld tokens a step, random ids (seed "
           "%lld); on %s, activations %s, parameters, gradients and AdamW state f32%s\n",
           (long long)c->seq_len, (long long)c->batch, (long long)c->accum,
           (long long)r->tokens_per_step, (long long)o->c.seed, lact_device_name(dev), r->act_dtype,
           strcmp(r->act_dtype, "f32") ? "" : " (the model computes in F32 on this device)");
    printf("FLOPs per token = 6*N + attention + window + ttt = %.4e (training counted as 3x "
           "forward)\n",
           f->total);
    printf("  6*N        %.4e  N = %lld weights in matmuls: the head V*D once (tied or not), "
           "the mixers' projections, the MLPs; not the embedding lookup, norms, scales, biases "
           "or fast-weight initial values\n",
           f->matmul, (long long)f->n_matmul);
    printf("  attention  %.4e  %lld causal attention layer%s x 12*D*K (4*d*K per head forward "
           "for QK^T and PV, x3), K = (L+1)/2 = %.2f keys per query\n",
           f->attention, (long long)n_attn, plural(n_attn), f->keys_causal);
    printf("  window     %.4e  %lld LaCT window branch%s x 12*D*K, K = %.2f keys per query "
           "(window %lld)\n",
           f->window, (long long)n_win, n_win == 1 ? "" : "es", f->keys_window,
           (long long)m->window);
    printf("  ttt        %.4e  %lld LaCT layer%s x 54*D*dh (18*d*dh per head forward, x3), d "
           "%lld, dh %lld; Newton-Schulz not counted\n",
           f->ttt, (long long)n_lact, plural(n_lact), (long long)d,
           (long long)(d * m->inter_multi));
    if (n_mesa > 0)
        printf("  mesa       %lld Mesa layer%s: projections in N; the Mesa op (state updates, "
               "CG solves) not counted\n",
               (long long)n_mesa, plural(n_mesa));
    printf("gemm reference: %s %s %lld^3, %.4g TFLOP/s (one plain library call, this run)",
           lact_device_name(dev), r->gemm_dtype, (long long)r->gemm_n, r->gemm_tflops);
    if (r->gemm_warm_tflops > 0)
        printf("; %.4g TFLOP/s after %g s of back-to-back calls (after the steps)",
               r->gemm_warm_tflops, o->gemm_warm);
    printf("\n");
    printf("steps: %lld warm-up, %lld timed: %.3f ms a step (median %.3f), %.1f tokens/s, peak "
           "%.1f MiB, loss %.4f\n",
           (long long)o->warmup, (long long)o->steps, r->ms_mean, r->ms_median, r->tokens_per_s,
           r->peak_mib, r->loss);
    printf("achieved %.4g TFLOP/s; MFU %.2f%% of the %s %s GEMM measured in this run",
           r->achieved_tflops, 100 * r->achieved_tflops / r->gemm_tflops, lact_device_name(dev),
           r->gemm_dtype);
    if (r->gemm_warm_tflops > 0)
        printf(" (%.2f%% of its rate after %g s of calls)",
               100 * r->achieved_tflops / r->gemm_warm_tflops, o->gemm_warm);
    if (r->peak_tflops > 0)
        printf("; MFU %.2f%% of %s %.0f TFLOP/s", 100 * r->achieved_tflops / r->peak_tflops,
               o->peak_tflops > 0 ? "the given peak" : "the H100 datasheet dense bf16 peak",
               r->peak_tflops);
    printf("\n");
}

/* A JSON string: the config path may hold any byte. */
static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_json(const lm_bench_opts *o, const lact_lm_run_cfg *c, lact_device dev,
                       const lm_bench_result *r) {
    const lact_lm_flops *f = &r->flops;
    printf("{\"bench\": \"lm\", \"config\": ");
    print_json_string(o->config);
    printf(", \"mixers\": ");
    print_json_string(c->model.mixers);
    printf(", \"device\": \"%s\", \"act_dtype\": \"%s\", \"param_dtype\": \"f32\", "
           "\"params\": %lld, \"seq_len\": %lld, \"batch\": %lld, \"accum\": %lld, "
           "\"tokens_per_step\": %lld, \"warmup\": %lld, \"steps\": %lld, \"ms_per_step\": %.4f, "
           "\"ms_per_step_median\": %.4f, \"tokens_per_s\": %.2f, \"peak_mib\": %.2f, "
           "\"loss\": %.6f, ",
           lact_device_name(dev), r->act_dtype, (long long)r->params, (long long)c->seq_len,
           (long long)c->batch, (long long)c->accum, (long long)r->tokens_per_step,
           (long long)o->warmup, (long long)o->steps, r->ms_mean, r->ms_median, r->tokens_per_s,
           r->peak_mib, r->loss);
    printf("\"flops_formula\": \"6*N + n_attention*12*D*K_causal + n_lact_window*12*D*K_window + "
           "n_lact*54*D*dh\", \"n_matmul\": %lld, \"flops_per_token\": %.12g, "
           "\"flops_matmul\": %.12g, \"flops_attention\": %.12g, \"flops_window\": %.12g, "
           "\"flops_ttt\": %.12g, \"keys_causal\": %.4f, \"keys_window\": %.4f, ",
           (long long)f->n_matmul, f->total, f->matmul, f->attention, f->window, f->ttt,
           f->keys_causal, f->keys_window);
    printf("\"achieved_tflops\": %.6g, \"gemm_dtype\": \"%s\", \"gemm_n\": %lld, "
           "\"gemm_tflops\": %.6g, \"mfu_gemm\": %.6g",
           r->achieved_tflops, r->gemm_dtype, (long long)r->gemm_n, r->gemm_tflops,
           r->achieved_tflops / r->gemm_tflops);
    if (r->gemm_warm_tflops > 0)
        printf(", \"gemm_warm_s\": %g, \"gemm_warm_tflops\": %.6g, \"mfu_gemm_warm\": %.6g",
               o->gemm_warm, r->gemm_warm_tflops, r->achieved_tflops / r->gemm_warm_tflops);
    if (r->peak_tflops > 0)
        printf(", \"peak_tflops\": %.6g, \"peak_source\": \"%s\", \"mfu_peak\": %.6g",
               r->peak_tflops, o->peak_tflops > 0 ? "--peak-tflops" : "H100 datasheet dense bf16",
               r->achieved_tflops / r->peak_tflops);
    printf("}\n");
}

static lact_status bench_main(const lm_bench_opts *o, lact_device dev, lm_bench_result *r,
                              lact_lm_run_cfg *cfg) {
    memset(r, 0, sizeof *r);
    LACT_TRY(resolve_config(o, cfg));
    LACT_TRY(lact_lm_flops_per_token(&cfg->model, cfg->seq_len, &r->flops));
    lact_ctx ctx;
    LACT_TRY(lact_ctx_init(&ctx, dev, (int)o->c.threads));
    r->gemm_n = o->gemm_size > 0 ? o->gemm_size : dev == LACT_CUDA ? 8192 : 1024;
    r->gemm_dtype = dev == LACT_CUDA ? "bf16" : "f32";
    r->peak_tflops = o->peak_tflops > 0 ? o->peak_tflops
                     : dev == LACT_CUDA ? H100_BF16_DENSE_TFLOPS
                                        : 0;
    const int gemm_iters = dev == LACT_CUDA ? 10 : 5;
    lact_status s = bench_gemm_rate(&ctx, r->gemm_n, gemm_iters, 0.0, &r->gemm_tflops);
    /* The peak covers the run alone: weights, gradients, moments, arena. */
    lact_mem_reset_peak(dev);
    lact_lm_trainer t;
    bool made = false;
    if (s == LACT_OK) s = lact_lm_trainer_init(&t, &ctx, cfg, NULL);
    made = s == LACT_OK;
    if (s == LACT_OK) s = run_steps(o, &t, r);
    if (s == LACT_OK) {
        r->params = lact_lm_numel(&t.model);
        lower(r->act_dtype, sizeof r->act_dtype, lact_dtype_name(t.model.xs[0].dtype));
        r->peak_mib = (double)lact_mem_peak(dev) / (1024.0 * 1024.0);
        r->achieved_tflops = r->flops.total * r->tokens_per_s / 1e12;
    }
    if (made) lact_lm_trainer_free(&t);
    if (s == LACT_OK && dev == LACT_CUDA && o->gemm_warm > 0)
        s = bench_gemm_rate(&ctx, r->gemm_n, gemm_iters, o->gemm_warm, &r->gemm_warm_tflops);
    lact_ctx_free(&ctx);
    return s;
}

int cmd_bench_lm(int argc, char **argv) {
    lm_bench_opts o;
    const cli_opt opts[] = {
        {"--config", CLI_STRING, "FILE", "run config (JSON; see configs/lm-small.json)", NULL,
         &o.config},
        {"--set", CLI_LIST, "KEY=VALUE", "override a config key (repeatable)", NULL, &o.set},
        {"--steps", CLI_INT, "N", "timed optimizer steps", "10", &o.steps},
        {"--warmup", CLI_INT, "N",
         "untimed steps first (not the config's lr warm-up; on a GPU the second one records the "
         "step as a CUDA graph, so keep 2 or more)",
         "2", &o.warmup},
        {"--gemm-size", CLI_INT, "N",
         "reference GEMM N x N x N (0: 8192 on a GPU, 1024 on the CPU)", "0", &o.gemm_size},
        {"--gemm-warm", CLI_FLOAT, "S",
         "GPU: after the steps, time the reference GEMM again after S seconds of back-to-back "
         "calls and quote MFU against that rate too: a card at its power limit settles below "
         "the rate of its first calls (0: skip)",
         "2", &o.gemm_warm},
        {"--peak-tflops", CLI_FLOAT, "T",
         "a peak rate to quote MFU against as well (0: 989, the H100 dense bf16 datasheet "
         "figure, on a GPU; none on the CPU)",
         "0", &o.peak_tflops},
        CLI_OPT_COMMON(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact bench lm",
        "--config FILE [options]",
        "Times training steps of the language model (the step of lact lm train: forward and\n"
        "backward over accum micro-batches, clipping, AdamW) on random token ids; prints\n"
        "tokens/s, ms a step, peak device memory, FLOPs per token by term and the MFU against\n"
        "a dense GEMM measured in the same run (bf16 8192^3 on a GPU, f32 1024^3 on the CPU).",
        "FLOPs per token (training = 3x forward): 6*N, N the weights used in matmuls (the head\n"
        "V*D once, tied or not; not the embedding lookup, norms, scales, biases or the fast\n"
        "weights' initial values) + 12*D*K per causal attention layer and per LaCT window\n"
        "branch (K = mean keys a query attends) + 54*D*dh per LaCT layer (18*d*dh per head\n"
        "forward). Newton-Schulz and the Mesa op are not counted. docs/lm.md has the details.",
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (!o.config) {
        cli_error(&cmd, "--config FILE is required");
        return 2;
    }
    if (o.steps < 1 || o.warmup < 0 || o.gemm_size < 0 || !(o.peak_tflops >= 0) ||
        !(o.gemm_warm >= 0 && o.gemm_warm <= 600)) {
        cli_error(&cmd, "--steps must be at least 1, --warmup, --gemm-size, --peak-tflops "
                        "not negative and --gemm-warm from 0 to 600 seconds");
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    lm_bench_result r;
    lact_lm_run_cfg cfg;
    if (bench_main(&o, dev, &r, &cfg) != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    if (o.c.json)
        print_json(&o, &cfg, dev, &r);
    else if (!o.c.quiet)
        print_text(&o, &cfg, dev, &r);
    return 0;
}
