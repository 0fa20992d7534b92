/* Training the language model on the CPU: the loss falls over 50 steps on
 * the demo text; a run interrupted by a checkpoint and resumed gives
 * bit-identical losses to an uninterrupted one; a checkpoint round trip
 * restores weights, moments, step and data position; the schedules. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/io/file.h"
#include "core/train/lm_trainer.h"
#include "modalities/text/shard.h"
#include "modalities/text/tokenizer.h"
#include "tests/support/check.h"

static char g_dir[256];

/* data/demo/tiny.txt as bytes: 90% train, the rest val, with a meta file. */
static lact_status prepare_data(void) {
    const char *src = getenv("LACT_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/data/demo/tiny.txt", src ? src : ".");
    char *text = NULL;
    size_t n = 0;
    LACT_TRY(lact_file_read(path, &text, &n));
    lact_tokenizer tok;
    lact_ids ids = {0};
    lact_status s = lact_tokenizer_load(&tok, "bytes");
    if (s == LACT_OK) s = lact_tokenizer_encode(&tok, text, n, &ids);
    size_t n_train = ids.n * 9 / 10;
    const char *split[2] = {"train", "val"};
    for (int k = 0; k < 2 && s == LACT_OK; k++) {
        lact_shard_writer w;
        snprintf(path, sizeof path, "%s/tiny_%s_000000.bin", g_dir, split[k]);
        s = lact_shard_writer_open(&w, path, 1);
        if (s == LACT_OK)
            s = lact_shard_writer_put(&w, ids.v + (k ? n_train : 0), k ? ids.n - n_train : n_train);
        if (s == LACT_OK) s = lact_shard_writer_commit(&w);
    }
    snprintf(path, sizeof path, "%s/tiny_meta.json", g_dir);
    const char *meta = "{\"vocab_size\": 257}\n";
    if (s == LACT_OK) s = lact_file_write_atomic(path, meta, strlen(meta));
    lact_ids_free(&ids);
    lact_tokenizer_free(&tok);
    free(text);
    return s;
}

static lact_lm_run_cfg small_cfg(void) {
    lact_lm_run_cfg c = lact_lm_run_defaults();
    c.model.d_model = 32, c.model.n_heads = 2, c.model.n_layers = 2;
    snprintf(c.model.mixers, sizeof c.model.mixers, "lact,attention");
    c.model.chunk = 16, c.model.window = 16;
    c.seq_len = 64, c.batch = 4, c.accum = 1;
    c.steps = 50, c.warmup = 5, c.lr = 1e-2;
    c.eval_batches = 4;
    return c;
}

static void test_loss_falls(lact_ctx *ctx) {
    lact_lm_run_cfg c = small_cfg();
    lact_lm_trainer t;
    lact_status st = lact_lm_trainer_init(&t, ctx, &c, g_dir);
    CHECK_OK(st);
    if (st != LACT_OK) return;
    double val0, val1, first = 0, last = 0;
    CHECK_OK(lact_lm_trainer_eval(&t, &val0));
    for (int i = 0; i < 50; i++) {
        lact_lm_step_stats s;
        CHECK_OK(lact_lm_trainer_step(&t, &s));
        if (i < 5) first += s.loss / 5;
        if (i >= 45) last += s.loss / 5;
        CHECK(s.grad_norm > 0 && s.lr > 0);
    }
    CHECK_OK(lact_lm_trainer_eval(&t, &val1));
    printf("loss: first 5 steps %.3f, last 5 %.3f; val %.3f -> %.3f\n", first, last, val0, val1);
    /* ln 257 = 5.55 at the start; bytes of English fall well below 3.5. */
    CHECK(first > 5.0);
    CHECK_MSG(last < first - 1.5, "train loss %.3f -> %.3f did not fall clearly", first, last);
    CHECK_MSG(val1 < val0 - 1.5, "val loss %.3f -> %.3f did not fall clearly", val0, val1);
    lact_lm_trainer_free(&t);
}

/* Steps [from, to) of a trainer, losses into out. */
static void run_steps(lact_lm_trainer *t, int from, int to, double *out) {
    for (int i = from; i < to; i++) {
        lact_lm_step_stats s;
        CHECK_OK(lact_lm_trainer_step(t, &s));
        out[i] = s.loss;
    }
}

static void test_resume(lact_ctx *ctx) {
    enum { N = 12, CUT = 5 };
    lact_lm_run_cfg c = small_cfg();
    c.steps = N;
    c.accum = 2; /* accumulation and the loader position across the cut */
    c.batch = 2;
    double full[N], split[N];
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/resume.safetensors", g_dir);
    lact_lm_trainer t;
    lact_status st = lact_lm_trainer_init(&t, ctx, &c, g_dir);
    CHECK_OK(st);
    if (st != LACT_OK) return;
    run_steps(&t, 0, N, full);
    lact_lm_trainer_free(&t);

    CHECK_OK(lact_lm_trainer_init(&t, ctx, &c, g_dir));
    run_steps(&t, 0, CUT, split);
    CHECK_OK(lact_lm_trainer_save(&t, ckpt));
    lact_lm_trainer_free(&t);

    CHECK_OK(lact_lm_trainer_init(&t, ctx, &c, g_dir));
    CHECK_OK(lact_lm_trainer_restore(&t, ckpt));
    CHECK(t.step == CUT);
    run_steps(&t, CUT, N, split);
    lact_lm_trainer_free(&t);
    for (int i = 0; i < N; i++)
        CHECK_MSG(full[i] == split[i], "step %d: uninterrupted %.9g, resumed %.9g", i + 1,
                  full[i], split[i]);
    CHECK(full[N - 1] != full[CUT]); /* the comparison covers changing values */
}

static void test_round_trip(lact_ctx *ctx) {
    lact_lm_run_cfg c = small_cfg();
    c.model.tie_embeddings = false;
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/rt.safetensors", g_dir);
    lact_lm_trainer a, b;
    lact_status st = lact_lm_trainer_init(&a, ctx, &c, g_dir);
    CHECK_OK(st);
    if (st != LACT_OK) return;
    double losses[3];
    run_steps(&a, 0, 3, losses);
    CHECK_OK(lact_lm_trainer_save(&a, ckpt));
    c.seed = 99; /* different initial weights: the restore must overwrite them all */
    CHECK_OK(lact_lm_trainer_init(&b, ctx, &c, g_dir));
    lact_params *pa = &a.model.params, *pb = &b.model.params;
    CHECK(memcmp(pa->weights, pb->weights, (size_t)pa->padded * 4) != 0);
    CHECK_OK(lact_lm_trainer_restore(&b, ckpt));
    CHECK(memcmp(pa->weights, pb->weights, (size_t)pa->padded * 4) == 0);
    CHECK(memcmp(pa->state, pb->state, (size_t)pa->padded * 4 * 2) == 0);
    CHECK(b.step == 3 && b.tokens == a.tokens);
    CHECK(memcmp(&a.train.pos, &b.train.pos, sizeof a.train.pos) == 0);
    lact_lm_run_cfg back;
    int64_t step;
    CHECK_OK(lact_lm_checkpoint_config(ckpt, &back, &step));
    CHECK(step == 3 && back.seed == 1234 && !back.model.tie_embeddings && back.lr == c.lr &&
          !strcmp(back.model.mixers, "lact,attention"));
    /* A checkpoint of another shape is refused by name. */
    lact_lm_trainer w;
    c.model.d_model = 48;
    CHECK_OK(lact_lm_trainer_init(&w, ctx, &c, g_dir));
    CHECK_FAILS(lact_lm_trainer_restore(&w, ckpt), LACT_E_FORMAT);
    lact_lm_trainer_free(&w);
    /* Files that are not checkpoints. */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/tiny_meta.json", g_dir);
    CHECK(lact_lm_checkpoint_config(bad, &back, &step) != LACT_OK);
    CHECK(lact_lm_trainer_restore(&b, bad) != LACT_OK);
    lact_lm_trainer_free(&a);
    lact_lm_trainer_free(&b);
}

static void test_errors(lact_ctx *ctx) {
    lact_lm_run_cfg c = small_cfg();
    lact_lm_trainer t;
    CHECK_FAILS(lact_lm_trainer_init(&t, ctx, &c, "/nonexistent/data"), LACT_E_NOT_FOUND);
    CHECK(strstr(lact_errmsg(), "/nonexistent/data") != NULL);
    c.model.vocab = 100; /* smaller than the shards' 257 ids */
    CHECK_FAILS(lact_lm_trainer_init(&t, ctx, &c, g_dir), LACT_E_ARG);
    c = small_cfg();
    snprintf(c.schedule, sizeof c.schedule, "linear");
    CHECK_FAILS(lact_lm_trainer_init(&t, ctx, &c, g_dir), LACT_E_ARG);
    int nf;
    const lact_cfg_field *f = lact_lm_run_fields(&nf);
    c = small_cfg();
    CHECK_FAILS(lact_config_parse("{\"d_modle\": 3}", "x.json", f, nf, &c), LACT_E_ARG);
    CHECK_OK(lact_config_set("mixers=attention", f, nf, &c));
    CHECK(!strcmp(c.model.mixers, "attention"));
}

static void test_schedule(void) {
    lact_schedule s = {LACT_SCHEDULE_COSINE, 100, 10, 1.0, 0.1, 0.2};
    CHECK_NEAR(lact_schedule_lr(&s, 5), 0.5, 1e-12);
    CHECK_NEAR(lact_schedule_lr(&s, 10), 1.0, 1e-12);
    CHECK_NEAR(lact_schedule_lr(&s, 55), 0.55, 1e-12); /* halfway: mean of peak and floor */
    CHECK_NEAR(lact_schedule_lr(&s, 100), 0.1, 1e-12);
    s.kind = LACT_SCHEDULE_WSD;
    CHECK_NEAR(lact_schedule_lr(&s, 80), 1.0, 1e-12);
    CHECK_NEAR(lact_schedule_lr(&s, 90), 0.55, 1e-12);
    CHECK_NEAR(lact_schedule_lr(&s, 100), 0.1, 1e-12);
}

/* The shipped configs parse, pass the checks and name valid mixers. */
static void test_configs(void) {
    const char *src = getenv("LACT_SOURCE_DIR");
    const char *names[3] = {"lm-tiny", "lm-small", "lm-760m"};
    int nf;
    const lact_cfg_field *f = lact_lm_run_fields(&nf);
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/configs/%s.json", src ? src : ".", names[i]);
        lact_lm_run_cfg c = lact_lm_run_defaults();
        CHECK_OK(lact_config_load(path, f, nf, &c));
        CHECK_OK(lact_lm_run_check(&c));
        lact_mixer mx[64];
        CHECK(c.model.n_layers <= 64);
        CHECK_OK(lact_lm_parse_mixers(&c.model, mx));
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lact_test_lm_train_XXXXXX");
    if (!mkdtemp(g_dir)) return check_summary("train_lm_train");
    test_schedule();
    test_configs();
    lact_status st = prepare_data();
    CHECK_OK(st);
    lact_ctx ctx;
    if (st == LACT_OK && lact_ctx_init(&ctx, LACT_CPU, 2) == LACT_OK) {
        test_errors(&ctx);
        test_round_trip(&ctx);
        test_resume(&ctx);
        test_loss_falls(&ctx);
        lact_ctx_free(&ctx);
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return check_summary("train_lm_train");
}
