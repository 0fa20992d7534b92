/* A trainer made without data (lact_lm_trainer_init with no data folder)
 * stepping on windows a caller supplies (lact_lm_trainer_step_from, how
 * `lact bench lm` feeds random ids): given the loader's own windows it
 * takes exactly the steps of a trainer over that loader; a short
 * micro-batch counts only its rows; its plain step and eval have no data. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/train/lm_trainer.h"
#include "modalities/text/shard.h"
#include "tests/support/check.h"

static char g_dir[256];

static lact_status write_shard(void) {
    enum { N = 6000 };
    static int32_t ids[N];
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)((i * 7 + (i / 13) * 5) % 257);
    char path[512];
    snprintf(path, sizeof path, "%s/r_train_000000.bin", g_dir);
    lact_shard_writer w;
    LACT_TRY(lact_shard_writer_open(&w, path, 1));
    lact_status s = lact_shard_writer_put(&w, ids, N);
    if (s == LACT_OK) return lact_shard_writer_commit(&w);
    lact_shard_writer_abort(&w);
    return s;
}

static lact_lm_run_cfg cfg(void) {
    lact_lm_run_cfg c = lact_lm_run_defaults();
    c.model.d_model = 16, c.model.n_heads = 2, c.model.n_layers = 2;
    snprintf(c.model.mixers, sizeof c.model.mixers, "lact,attention");
    c.model.chunk = 8, c.model.window = 8;
    c.seq_len = 32, c.batch = 3, c.accum = 2;
    c.steps = 10, c.warmup = 2;
    return c;
}

static lact_status from_loader(void *arg, int32_t *window, int64_t *rows) {
    return lact_loader_next(arg, window, rows);
}

/* One row of ids 1, 2, 3, ... */
static lact_status one_row(void *arg, int32_t *window, int64_t *rows) {
    const lact_lm_run_cfg *c = arg;
    for (int64_t i = 0; i <= c->seq_len; i++)
        window[i] = (int32_t)(1 + i % 200);
    *rows = 1;
    return LACT_OK;
}

static void test_same_steps(lact_ctx *ctx) {
    lact_lm_run_cfg c = cfg();
    lact_lm_trainer a, b;
    lact_status sa = lact_lm_trainer_init(&a, ctx, &c, g_dir);
    lact_status sb = lact_lm_trainer_init(&b, ctx, &c, NULL);
    CHECK_OK(sa);
    CHECK_OK(sb);
    if (sa != LACT_OK || sb != LACT_OK) {
        if (sa == LACT_OK) lact_lm_trainer_free(&a);
        if (sb == LACT_OK) lact_lm_trainer_free(&b);
        return;
    }
    /* The same loader the trainer makes: same shards, shape, seed, order. */
    char pattern[512];
    snprintf(pattern, sizeof pattern, "%s/*_train_*.bin", g_dir);
    const char *paths[1] = {pattern};
    lact_loader l;
    CHECK_OK(lact_loader_init(&l, paths, 1, c.batch, c.seq_len, (uint64_t)c.seed, true, true));
    for (int i = 0; i < 3; i++) {
        lact_lm_step_stats x, y;
        CHECK_OK(lact_lm_trainer_step(&a, &x));
        CHECK_OK(lact_lm_trainer_step_from(&b, from_loader, &l, &y));
        CHECK_MSG(x.loss == y.loss && x.grad_norm == y.grad_norm && x.lr == y.lr,
                  "step %d: loss %.9g vs %.9g, grad norm %.9g vs %.9g", i + 1, x.loss, y.loss,
                  x.grad_norm, y.grad_norm);
        CHECK(y.tokens == c.batch * c.seq_len * c.accum);
    }
    CHECK(b.step == 3 && b.tokens == 3 * c.batch * c.seq_len * c.accum);
    lact_lm_step_stats z;
    CHECK_OK(lact_lm_trainer_step_from(&b, one_row, &c, &z));
    CHECK(z.tokens == c.seq_len * c.accum);
    CHECK(isfinite(z.loss) && z.loss > 0);
    CHECK_FAILS(lact_lm_trainer_step(&b, &z), LACT_E_ARG);
    double val = 0;
    CHECK_OK(lact_lm_trainer_eval(&b, &val));
    CHECK(isnan(val));
    lact_loader_free(&l);
    lact_lm_trainer_free(&a);
    lact_lm_trainer_free(&b);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lact_step_from_XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return check_summary("train_lm_step_from");
    }
    lact_ctx ctx;
    CHECK_OK(write_shard());
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 2));
    test_same_steps(&ctx);
    lact_ctx_free(&ctx);
    char path[512];
    snprintf(path, sizeof path, "%s/r_train_000000.bin", g_dir);
    remove(path);
    if (remove(g_dir) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("train_lm_step_from");
}
