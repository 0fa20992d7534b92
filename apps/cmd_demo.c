/* `lact demo`: trains the byte-level demo model (apps/demo_model.h) on a small
 * text, evaluates on a held-out tail, and prints a sample. It exercises the
 * whole CPU/GPU op set end to end in about a minute on two cores. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "core/base/device.h"
#include "core/base/log.h"
#include "core/base/philox.h"
#include "core/base/progress.h"
#include "core/io/file.h"
#include "demo_model.h"

typedef struct demo_opts {
    const char *data, *prompt;
    int64_t steps, batch, dim, blocks, eval_every, sample;
    double lr, weight_decay, temperature;
    cli_common c;
} demo_opts;

/* The run's data and host-side staging buffers, allocated once. */
typedef struct demo_run {
    const uint8_t *text;    /* train blocks, then the held-out blocks */
    uint8_t *split;         /* owns text */
    int64_t n_train, n_val; /* train = text[0, n_train), val = the rest */
    int32_t *ids, *target;  /* [B*K], [B] */
    float *loss;            /* [B] */
    float *row;             /* [V] */
} demo_run;

/* The shipped text: --data, then $LACT_SOURCE_DIR, the working directory and
 * the source tree above the binary (BUILD/bin/lact). */
static char *demo_find_data(void) {
    const char *rel = "data/demo/tiny.txt";
    char buf[4096];
    const char *src = getenv("LACT_SOURCE_DIR");
    if (src) {
        snprintf(buf, sizeof buf, "%s/%s", src, rel);
        if (access(buf, R_OK) == 0) return strdup(buf);
    }
    if (access(rel, R_OK) == 0) return strdup(rel);
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        for (int up = 2; up <= 3; up++) {
            int len = snprintf(buf, sizeof buf, "%s", exe);
            for (int k = 0; k < up; k++)
                len += snprintf(buf + len, sizeof buf - (size_t)len, "/..");
            snprintf(buf + len, sizeof buf - (size_t)len, "/%s", rel);
            if (access(buf, R_OK) == 0) return strdup(buf);
        }
    }
    return NULL;
}

/* Every tenth block of the text (1 KiB, smaller for short texts) is held out,
 * so that the validation text is spread over the whole file rather than being
 * its last genre. */
#define DEMO_SPLIT_BLOCK 1024
#define DEMO_MIN_TEXT 2560

static void demo_split(demo_run *r, const uint8_t *text, int64_t size) {
    int64_t block = size / 40 < DEMO_SPLIT_BLOCK ? size / 40 : DEMO_SPLIT_BLOCK;
    int64_t nt = 0, nv = 0, n_blocks = (size + block - 1) / block;
    for (int64_t b = 0; b < n_blocks; b++) {
        int64_t lo = b * block, len = size - lo < block ? size - lo : block;
        if (b % 10 != 9) {
            memcpy(r->split + nt, text + lo, (size_t)len);
            nt += len;
        }
    }
    for (int64_t b = 9; b < n_blocks; b += 10) {
        int64_t lo = b * block, len = size - lo < block ? size - lo : block;
        memcpy(r->split + nt + nv, text + lo, (size_t)len);
        nv += len;
    }
    r->text = r->split;
    r->n_train = nt;
    r->n_val = nv;
}

/* B random windows from text[lo, hi): K context bytes and the next byte. */
static void demo_sample_batch(demo_run *r, const demo_config *c, lact_rng *rng, int64_t lo,
                              int64_t hi) {
    int64_t K = c->context, span = hi - lo - K;
    for (int64_t i = 0; i < c->batch; i++) {
        int64_t t = lo + K + (int64_t)(lact_rng_uniform(rng) * (float)span);
        if (t >= hi) t = hi - 1;
        for (int64_t k = 0; k < K; k++)
            r->ids[i * K + k] = r->text[t - K + k];
        r->target[i] = r->text[t];
    }
}

static lact_status demo_upload(const demo_run *r, demo_acts *a, lact_device dev) {
    LACT_TRY(lact_mem_copy(a->ids.data, dev, r->ids, LACT_CPU, lact_tensor_nbytes(&a->ids)));
    return lact_mem_copy(a->target.data, dev, r->target, LACT_CPU, lact_tensor_nbytes(&a->target));
}

/* Mean loss of the batch now in the activations. */
static lact_status demo_batch_loss(lact_ctx *ctx, const demo_model *md, demo_run *r, demo_acts *a,
                                   double *mean) {
    LACT_TRY(demo_forward(ctx, md, a));
    LACT_TRY(
        lact_mem_copy(r->loss, LACT_CPU, a->loss.data, ctx->device, lact_tensor_nbytes(&a->loss)));
    double s = 0;
    for (int64_t i = 0; i < md->cfg.batch; i++)
        s += r->loss[i];
    *mean = s / (double)md->cfg.batch;
    return LACT_OK;
}

/* The same fixed batches of the held-out text every time, so that val losses
 * are comparable across steps. */
static lact_status demo_eval(lact_ctx *ctx, const demo_model *md, demo_run *r, demo_acts *a,
                             uint64_t seed, double *val) {
    lact_rng rng = lact_rng_make(seed, 7);
    const int n_batches = 8;
    double sum = 0, one;
    for (int k = 0; k < n_batches; k++) {
        demo_sample_batch(r, &md->cfg, &rng, r->n_train, r->n_train + r->n_val);
        LACT_TRY(demo_upload(r, a, ctx->device));
        LACT_TRY(demo_batch_loss(ctx, md, r, a, &one));
        sum += one;
    }
    *val = sum / n_batches;
    return LACT_OK;
}

/* Linear warm-up, then cosine decay to a tenth of the peak. */
static float demo_lr(const demo_opts *o, int64_t step) {
    int64_t warm = o->steps / 20 < 100 ? o->steps / 20 : 100;
    if (warm < 1) warm = 1;
    if (step <= warm) return (float)(o->lr * (double)step / (double)warm);
    double t = (double)(step - warm) / (double)(o->steps - warm > 0 ? o->steps - warm : 1);
    return (float)(o->lr * (0.1 + 0.9 * 0.5 * (1.0 + cos(3.14159265358979 * t))));
}

/* Continues the prompt by n bytes: every row of the batch holds the same
 * context and row 0's logits are sampled (temperature 0 is greedy). */
static lact_status demo_generate(lact_ctx *ctx, const demo_model *md, demo_run *r, demo_acts *a,
                                 const demo_opts *o, FILE *out) {
    const demo_config *c = &md->cfg;
    int64_t K = c->context, V = c->vocab;
    uint8_t win[64];
    size_t plen = strlen(o->prompt);
    for (int64_t k = 0; k < K; k++) {
        int64_t from = (int64_t)plen - K + k;
        win[k] = from >= 0 ? (uint8_t)o->prompt[from] : ' ';
    }
    fprintf(out, "%s", o->prompt);
    lact_rng rng = lact_rng_make((uint64_t)o->c.seed, 9);
    for (int64_t step = 0; step < o->sample; step++) {
        for (int64_t i = 0; i < c->batch; i++) {
            for (int64_t k = 0; k < K; k++)
                r->ids[i * K + k] = win[k];
            r->target[i] = 0;
        }
        LACT_TRY(demo_upload(r, a, ctx->device));
        LACT_TRY(demo_forward(ctx, md, a));
        LACT_TRY(demo_logits(ctx, md, a));
        LACT_TRY(lact_mem_copy(r->row, LACT_CPU, a->logits.data, ctx->device,
                               (size_t)V * sizeof(float)));
        int best = 0;
        for (int v = 1; v < V; v++)
            if (r->row[v] > r->row[best]) best = v;
        int pick = best;
        if (o->temperature > 0) {
            double z = 0, u = lact_rng_uniform(&rng), acc = 0;
            for (int v = 0; v < V; v++)
                z += exp((r->row[v] - r->row[best]) / o->temperature);
            for (pick = 0; pick < V - 1; pick++) {
                acc += exp((r->row[pick] - r->row[best]) / o->temperature) / z;
                if (acc >= u) break;
            }
        }
        fputc(pick == '\n' || (pick >= 32 && pick < 127) ? pick : '?', out);
        memmove(win, win + 1, (size_t)(K - 1));
        win[K - 1] = (uint8_t)pick;
    }
    fputc('\n', out);
    return LACT_OK;
}

static void demo_report(const demo_opts *o, int64_t step, double loss, double val, double tok_s,
                        lact_progress *bar) {
    if (o->c.quiet) return;
    if (bar->tty) fprintf(bar->out, "\r\033[K");
    if (o->c.json)
        printf(
            "{\"step\": %lld, \"steps\": %lld, \"loss\": %.4f, \"val\": %.4f, \"tok_s\": %.0f}\n",
            (long long)step, (long long)o->steps, loss, val, tok_s);
    else
        printf("step %lld/%lld | loss %.3f | val %.3f | %.0f tok/s\n", (long long)step,
               (long long)o->steps, loss, val, tok_s);
    fflush(stdout);
}

static lact_status demo_train(lact_ctx *ctx, demo_model *md, demo_run *r, demo_acts *a,
                              const demo_opts *o) {
    const demo_config *c = &md->cfg;
    lact_rng rng = lact_rng_make((uint64_t)o->c.seed, 5);
    lact_progress bar;
    lact_progress_init(&bar, stderr, "train", "step", o->steps);
    if (o->c.quiet || o->c.json) bar.tty = false, bar.plain_every = 1e30;
    double sum = 0, t_train = 0, first_val = 0, val = 0;
    int64_t since = 0;
    LACT_TRY(demo_eval(ctx, md, r, a, (uint64_t)o->c.seed, &first_val));
    for (int64_t step = 1; step <= o->steps; step++) {
        double t0 = lact_now(), loss;
        demo_sample_batch(r, c, &rng, 0, r->n_train);
        LACT_TRY(demo_upload(r, a, ctx->device));
        LACT_TRY(demo_batch_loss(ctx, md, r, a, &loss));
        if (!isfinite(loss))
            return lact_fail(LACT_E_ARG, "demo: loss is %g at step %lld (try a smaller --lr)", loss,
                             (long long)step);
        LACT_TRY(demo_backward(ctx, md, a));
        LACT_TRY(demo_adamw(ctx, md, demo_lr(o, step), (float)o->weight_decay, step));
        t_train += lact_now() - t0;
        sum += loss;
        since++;
        char extra[48];
        snprintf(extra, sizeof extra, "loss %.3f", loss);
        lact_progress_update(&bar, step, extra);
        if (step % o->eval_every == 0 || step == o->steps) {
            LACT_TRY(demo_eval(ctx, md, r, a, (uint64_t)o->c.seed, &val));
            double tok_s = t_train > 0 ? (double)(since * c->batch) / t_train : 0;
            demo_report(o, step, sum / (double)since, val, tok_s, &bar);
            sum = 0;
            since = 0;
            t_train = 0;
        }
    }
    if (!o->c.quiet && !o->c.json) lact_progress_finish(&bar);
    if (!o->c.json)
        printf("val loss %.3f -> %.3f (%.2f bits per byte)\n", first_val, val, val / log(2.0));
    return LACT_OK;
}

static lact_status demo_main(const demo_opts *o, lact_device dev, const char *path) {
    char *text = NULL;
    size_t size = 0;
    demo_config cfg = {256, o->dim, 4 * o->dim, 8, o->blocks, o->batch};
    demo_run r;
    memset(&r, 0, sizeof r);
    lact_ctx ctx;
    demo_model md;
    demo_acts acts;
    lact_arena arena;
    bool ctx_ok = false, md_ok = false, arena_ok = false;
    lact_status s = lact_file_read(path, &text, &size);
    if (s != LACT_OK) return s;
    if ((int64_t)size < DEMO_MIN_TEXT) {
        s = lact_fail(LACT_E_ARG, "%s: %zu bytes is too little text (need at least %d)", path, size,
                      DEMO_MIN_TEXT);
        goto done;
    }
    if (!(r.split = malloc(size))) {
        s = lact_fail(LACT_E_NOMEM, "demo: out of host memory for %zu bytes of text", size);
        goto done;
    }
    demo_split(&r, (const uint8_t *)text, (int64_t)size);
    r.ids = malloc(sizeof(int32_t) * (size_t)(cfg.batch * cfg.context));
    r.target = malloc(sizeof(int32_t) * (size_t)cfg.batch);
    r.loss = malloc(sizeof(float) * (size_t)cfg.batch);
    r.row = malloc(sizeof(float) * (size_t)cfg.vocab);
    if (!r.ids || !r.target || !r.loss || !r.row) {
        s = lact_fail(LACT_E_NOMEM, "demo: out of host memory");
        goto done;
    }
    if ((s = lact_ctx_init(&ctx, dev, (int)o->c.threads)) != LACT_OK) goto done;
    ctx_ok = true;
    if ((s = demo_model_init(&md, &ctx, &cfg, (uint64_t)o->c.seed)) != LACT_OK) goto done;
    md_ok = true;
    /* Measure the activations once, then make the arena exactly that size. */
    lact_arena_init_measure(&arena, dev);
    s = demo_acts_plan(&acts, &arena, &cfg);
    size_t need = arena.peak;
    lact_arena_free(&arena);
    if (s != LACT_OK || (s = lact_arena_init(&arena, dev, need)) != LACT_OK) goto done;
    arena_ok = true;
    if ((s = demo_acts_plan(&acts, &arena, &cfg)) != LACT_OK) goto done;
    for (int64_t i = 0; i < cfg.batch; i++)
        r.loss[i] = 1.0f / (float)cfg.batch;
    s = lact_mem_copy(acts.dloss.data, dev, r.loss, LACT_CPU, lact_tensor_nbytes(&acts.dloss));
    if (s != LACT_OK) goto done;
    if (!o->c.quiet && !o->c.json) {
        printf("demo: %s, %lld train / %lld val bytes, on %s\n", path, (long long)r.n_train,
               (long long)r.n_val, lact_device_name(dev));
        printf("model: %lld params (%.1f KiB with grads and AdamW state), activations %.1f KiB, "
               "batch %lld x %lld bytes\n",
               (long long)md.n_values, (double)demo_model_bytes(&md) / 1024.0,
               (double)need / 1024.0, (long long)cfg.batch, (long long)cfg.context + 1);
    }
    if ((s = demo_train(&ctx, &md, &r, &acts, o)) != LACT_OK) goto done;
    if (o->sample > 0 && !o->c.json) {
        printf("sample:\n");
        s = demo_generate(&ctx, &md, &r, &acts, o, stdout);
    }
done:
    if (arena_ok) lact_arena_free(&arena);
    if (md_ok) demo_model_free(&md);
    if (ctx_ok) lact_ctx_free(&ctx);
    free(r.ids);
    free(r.target);
    free(r.loss);
    free(r.row);
    free(r.split);
    free(text);
    return s;
}

int cmd_demo(int argc, char **argv) {
    demo_opts o;
    const cli_opt opts[] = {
        {"--steps", CLI_INT, "N", "training steps", "1500", &o.steps},
        {"--data", CLI_STRING, "FILE", "text to train on (default: data/demo/tiny.txt)", NULL,
         &o.data},
        {"--batch", CLI_INT, "B", "windows per step", "128", &o.batch},
        {"--dim", CLI_INT, "C", "model width (the MLP is 4C wide)", "64", &o.dim},
        {"--blocks", CLI_INT, "L", "residual MLP blocks", "2", &o.blocks},
        {"--lr", CLI_FLOAT, "X", "peak AdamW learning rate", "0.005", &o.lr},
        {"--weight-decay", CLI_FLOAT, "X", "AdamW weight decay on matrices", "0.1",
         &o.weight_decay},
        {"--eval-every", CLI_INT, "N", "report train and val loss every N steps (0: steps/10)", "0",
         &o.eval_every},
        {"--sample", CLI_INT, "N", "bytes to generate at the end", "200", &o.sample},
        {"--temperature", CLI_FLOAT, "T", "sampling temperature (0: greedy)", "0.7",
         &o.temperature},
        {"--prompt", CLI_STRING, "TEXT", "text the sample continues", "The ", &o.prompt},
        CLI_OPT_SEED(&o.c),
        CLI_OPT_DEVICE(&o.c),
        /* The demo's matrices are small enough that extra threads cost more
         * in synchronisation than they give. */
        {"--threads", CLI_INT, "N", "CPU threads (0 = all cores)", "1", &o.c.threads},
        CLI_OPT_JSON(&o.c),
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact demo",
        "[options]",
        "Trains a small byte-level model built from the base ops on a short text and prints\n"
        "the falling train and held-out (every tenth KiB) loss, then a sample of generated text.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (o.steps < 1 || o.batch < 1 || o.dim < 1 || o.blocks < 1 || o.blocks > DEMO_MAX_BLOCKS ||
        o.sample < 0 || o.eval_every < 0 || !(o.lr > 0) || o.temperature < 0) {
        cli_error(&cmd,
                  "--steps, --batch, --dim must be positive, --blocks 1..%d, --lr > 0 "
                  "(see lact demo --help)",
                  DEMO_MAX_BLOCKS);
        return 2;
    }
    if (o.eval_every == 0) o.eval_every = o.steps >= 10 ? o.steps / 10 : 1;
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    char *found = NULL;
    if (!o.data) {
        found = demo_find_data();
        if (!found) {
            cli_error(&cmd, "cannot find data/demo/tiny.txt (run from the source tree or pass "
                            "--data FILE)");
            return 2;
        }
    }
    lact_status s = demo_main(&o, dev, o.data ? o.data : found);
    free(found);
    if (s != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
