/* `lact lm train`: trains the language model (core/nn/lm_model.h) on token
 * shards made by `lact lm prepare`, writing OUT/metrics.jsonl (one JSON
 * object per log step), OUT/config.json (the resolved config) and
 * OUT/ckpt.safetensors (weights, AdamW moments and the training state)
 * every checkpoint_every steps, at the end, and on Ctrl-C. --resume
 * continues the run from OUT/ckpt.safetensors. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/base/log.h"
#include "core/base/progress.h"
#include "core/io/file.h"
#include "core/train/lm_trainer.h"

typedef struct train_opts {
    const char *config, *data, *out;
    int64_t steps;
    bool resume;
    cli_list set;
    cli_common c;
} train_opts;

static volatile sig_atomic_t g_interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

static lact_status make_dir(const char *path) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return lact_fail(LACT_E_IO, "%s: cannot create: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return lact_fail(LACT_E_IO, "%s: not a directory", path);
    return LACT_OK;
}

/* Defaults ← the checkpoint's config (resume) or --config ← --set ← --steps. */
static lact_status resolve_config(const train_opts *o, const char *ckpt, lact_lm_run_cfg *cfg) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    *cfg = lact_lm_run_defaults();
    if (o->resume) {
        if (access(ckpt, R_OK) != 0)
            return lact_fail(LACT_E_NOT_FOUND, "%s: no checkpoint to resume from", ckpt);
        int64_t step;
        LACT_TRY(lact_lm_checkpoint_config(ckpt, cfg, &step));
    } else {
        LACT_TRY(lact_config_load(o->config, fields, nf, cfg));
    }
    for (int i = 0; i < o->set.n; i++)
        LACT_TRY(lact_config_set(o->set.items[i], fields, nf, cfg));
    if (o->steps > 0) cfg->steps = o->steps;
    return lact_lm_run_check(cfg);
}

static lact_status write_config(const char *out, const lact_lm_run_cfg *cfg) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    char *json = lact_config_to_json(fields, nf, cfg);
    if (!json) return lact_fail(LACT_E_NOMEM, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out);
    lact_status s = lact_file_write_atomic(path, json, strlen(json));
    free(json);
    return s;
}

typedef struct train_log {
    FILE *metrics;
    lact_progress bar;
    bool show;
    double loss_sum, norm_sum, seconds;
    int64_t n, tokens;
} train_log;

static lact_status log_line(train_log *lg, const char *path, int64_t step, double lr, double val) {
    double tok_s = lg->seconds > 0 ? (double)lg->tokens / lg->seconds : 0;
    fprintf(lg->metrics,
            "{\"step\": %lld, \"loss\": %.9g, \"lr\": %.6g, \"grad_norm\": %.6g, "
            "\"tokens_per_s\": %.1f",
            (long long)step, lg->loss_sum / (double)lg->n, lr, lg->norm_sum / (double)lg->n, tok_s);
    if (!isnan(val)) fprintf(lg->metrics, ", \"val_loss\": %.9g", val);
    fprintf(lg->metrics, "}\n");
    if (fflush(lg->metrics) != 0 || ferror(lg->metrics))
        return lact_fail(LACT_E_IO, "%s: cannot write: %s", path, strerror(errno));
    lg->loss_sum = lg->norm_sum = lg->seconds = 0;
    lg->n = lg->tokens = 0;
    return LACT_OK;
}

static lact_status train_loop(const train_opts *o, lact_lm_trainer *t, const char *ckpt,
                              const char *metrics_path, train_log *lg, int *rc) {
    const lact_lm_run_cfg *c = &t->cfg;
    double first_val = NAN, val = NAN;
    int64_t start = t->step;
    while (t->step < c->steps) {
        if (g_interrupted) {
            LACT_TRY(lact_lm_trainer_save(t, ckpt));
            if (lg->show && lg->bar.tty) fprintf(stderr, "\n");
            fprintf(stderr,
                    "lact lm train: interrupted at step %lld; checkpoint %s (continue "
                    "with --resume)\n",
                    (long long)t->step, ckpt);
            *rc = 130;
            return LACT_OK;
        }
        double t0 = lact_now();
        lact_lm_step_stats st;
        LACT_TRY(lact_lm_trainer_step(t, &st));
        lg->seconds += lact_now() - t0;
        lg->loss_sum += st.loss, lg->norm_sum += st.grad_norm;
        lg->n++, lg->tokens += st.tokens;
        int64_t step = t->step;
        val = NAN;
        if (c->eval_every > 0 && (step % c->eval_every == 0 || step == c->steps)) {
            LACT_TRY(lact_lm_trainer_eval(t, &val));
            if (isnan(first_val)) first_val = val;
        }
        if (step % c->log_every == 0 || step == c->steps || !isnan(val))
            LACT_TRY(log_line(lg, metrics_path, step, st.lr, val));
        if ((c->checkpoint_every > 0 && step % c->checkpoint_every == 0) || step == c->steps)
            LACT_TRY(lact_lm_trainer_save(t, ckpt));
        if (lg->show) {
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.3f", st.loss);
            lact_progress_update(&lg->bar, step, extra);
        }
    }
    if (lg->show) lact_progress_finish(&lg->bar);
    if (!o->c.quiet)
        printf("train: steps %lld..%lld, %lld tokens in all; checkpoint %s\n", (long long)start + 1,
               (long long)t->step, (long long)t->tokens, ckpt);
    if (!o->c.quiet && !isnan(val)) printf("val loss %.4f (ppl %.2f)\n", val, exp(val));
    return LACT_OK;
}

static lact_status train_main(const train_opts *o, lact_device dev, int *rc) {
    char ckpt[4096], metrics_path[4096];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.safetensors", o->out);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.jsonl", o->out);
    lact_lm_run_cfg cfg;
    LACT_TRY(resolve_config(o, ckpt, &cfg));
    LACT_TRY(make_dir(o->out));
    LACT_TRY(write_config(o->out, &cfg));
    lact_ctx ctx;
    LACT_TRY(lact_ctx_init(&ctx, dev, (int)o->c.threads));
    lact_lm_trainer t;
    lact_status s = lact_lm_trainer_init(&t, &ctx, &cfg, o->data);
    if (s != LACT_OK) {
        lact_ctx_free(&ctx);
        return s;
    }
    if (o->resume) s = lact_lm_trainer_restore(&t, ckpt);
    train_log lg;
    memset(&lg, 0, sizeof lg);
    if (s == LACT_OK) {
        lg.metrics = fopen(metrics_path, o->resume ? "a" : "w");
        if (!lg.metrics)
            s = lact_fail(LACT_E_IO, "%s: cannot open: %s", metrics_path, strerror(errno));
    }
    if (s == LACT_OK && !o->c.quiet) {
        printf("train: %lld parameters (%s), %lld layers [%s], on %s, %lld tokens a step, "
               "activations %.1f MiB%s\n",
               (long long)lact_lm_numel(&t.model), cfg.model.tie_embeddings ? "tied" : "untied",
               (long long)cfg.model.n_layers, cfg.model.mixers, lact_device_name(dev),
               (long long)(cfg.batch * cfg.seq_len * cfg.accum),
               (double)t.batch.arena.capacity / (1 << 20), o->resume ? "; resuming" : "");
        if (o->resume) printf("resume: from step %lld\n", (long long)t.step);
        fflush(stdout);
    }
    lg.show = !o->c.quiet;
    if (lg.show) lact_progress_init(&lg.bar, stderr, "train", "step", cfg.steps);
    if (lg.show) lg.bar.done = t.step;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    if (s == LACT_OK) s = train_loop(o, &t, ckpt, metrics_path, &lg, rc);
    sigaction(SIGINT, &old, NULL);
    if (lg.metrics) fclose(lg.metrics);
    lact_lm_trainer_free(&t);
    lact_ctx_free(&ctx);
    return s;
}

int cmd_lm_train(int argc, char **argv) {
    train_opts o;
    const cli_opt opts[] = {
        {"--config", CLI_STRING, "FILE", "run config (JSON; see configs/lm-tiny.json)", NULL,
         &o.config},
        {"--data", CLI_STRING, "DIR", "shards from lact lm prepare", NULL, &o.data},
        {"--out", CLI_STRING, "DIR", "run folder: metrics.jsonl, config.json, ckpt.safetensors",
         NULL, &o.out},
        {"--steps", CLI_INT, "N", "optimizer steps (overrides the config's steps)", "0", &o.steps},
        {"--resume", CLI_BOOL, NULL, "continue the run in --out from its checkpoint", NULL,
         &o.resume},
        {"--set", CLI_LIST, "KEY=VALUE", "override a config key (repeatable)", NULL, &o.set},
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm train",
        "--config FILE --data DIR --out DIR [options]",
        "Trains the language model on token shards. Metrics go to OUT/metrics.jsonl (one JSON\n"
        "object per log step), checkpoints to OUT/ckpt.safetensors (every checkpoint_every\n"
        "steps, at the end and on Ctrl-C). With --resume the config comes from the checkpoint\n"
        "(--set and --steps still apply) and the run continues exactly where it stopped.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (!o.data || !o.out || (!o.config && !o.resume) || o.steps < 0) {
        cli_error(&cmd, !o.data       ? "--data DIR is required"
                        : !o.out      ? "--out DIR is required"
                        : o.steps < 0 ? "--steps must be positive"
                                      : "--config FILE is required (or --resume)");
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    int rc = 0;
    lact_status s = train_main(&o, dev, &rc);
    if (s != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return rc;
}
