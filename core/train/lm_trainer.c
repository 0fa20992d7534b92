#define _POSIX_C_SOURCE 200809L

#include "core/train/lm_trainer.h"

#include <cjson/cJSON.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/base/log.h"
#include "core/io/checkpoint.h"
#include "core/io/file.h"

enum { PART_MODEL = 1, PART_OPT = 2, PART_LOADER = 4, PART_BATCH = 8 };

/* The vocabulary the shards were made with, from <name>_meta.json (-1 when
 * the folder has none: shards made by other tools). */
static lact_status data_vocab(const char *dir, int64_t *vocab) {
    *vocab = -1;
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/*_meta.json", dir);
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0) return LACT_OK;
    char *text = NULL;
    size_t size = 0;
    lact_status s = lact_file_read(g.gl_pathv[0], &text, &size);
    if (s == LACT_OK) {
        cJSON *root = cJSON_ParseWithLength(text, size);
        cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, "vocab_size") : NULL;
        if (!cJSON_IsNumber(v))
            s = lact_fail(LACT_E_FORMAT, "%s: no numeric \"vocab_size\"", g.gl_pathv[0]);
        else
            *vocab = (int64_t)v->valuedouble;
        cJSON_Delete(root);
    }
    free(text);
    globfree(&g);
    return s;
}

static lact_status check_data(const char *dir, const lact_lm_cfg *m, bool *has_val) {
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lact_fail(LACT_E_NOT_FOUND,
                         "%s: no such data directory (make one with lact lm "
                         "prepare)",
                         dir);
    int64_t vocab;
    LACT_TRY(data_vocab(dir, &vocab));
    if (vocab > m->vocab)
        return lact_fail(LACT_E_ARG, "%s: the shards use %lld token ids, the model's vocab is %lld",
                         dir, (long long)vocab, (long long)m->vocab);
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/*_val_*.bin", dir);
    glob_t g;
    *has_val = glob(pattern, 0, NULL, &g) == 0;
    if (*has_val) globfree(&g);
    return LACT_OK;
}

lact_status lact_lm_trainer_init(lact_lm_trainer *t, lact_ctx *ctx, const lact_lm_run_cfg *cfg,
                                 const char *data_dir) {
    memset(t, 0, sizeof *t);
    t->cfg = *cfg;
    t->ctx = ctx;
    LACT_TRY(lact_lm_run_check(cfg));
    LACT_TRY(lact_lm_check_device(&cfg->model, ctx->device));
    t->sched.steps = cfg->steps, t->sched.warmup = cfg->warmup;
    t->sched.peak = cfg->lr, t->sched.floor = cfg->lr * cfg->min_lr;
    t->sched.decay_frac = cfg->decay_frac;
    LACT_TRY(lact_schedule_parse(cfg->schedule, &t->sched.kind));
    bool has_val = false;
    if (data_dir) LACT_TRY(check_data(data_dir, &cfg->model, &has_val));
    lact_status s = lact_lm_init(&t->model, &cfg->model, ctx->device);
    if (s != LACT_OK) return s;
    t->parts |= PART_MODEL;
    s = lact_lm_init_values(ctx, &t->model, (uint64_t)cfg->seed);
    if (s == LACT_OK)
        s = lact_adamw_init(&t->opt, &t->model.params, (float)cfg->beta1, (float)cfg->beta2,
                            (float)cfg->eps, (float)cfg->weight_decay);
    if (s == LACT_OK) t->parts |= PART_OPT;
    char pattern[4096];
    if (s == LACT_OK && data_dir) {
        snprintf(pattern, sizeof pattern, "%s/*_train_*.bin", data_dir);
        const char *paths[1] = {pattern};
        s = lact_loader_init(&t->train, paths, 1, cfg->batch, cfg->seq_len, (uint64_t)cfg->seed,
                             true, true);
        if (s == LACT_OK) t->parts |= PART_LOADER;
    }
    if (s == LACT_OK) s = lact_lm_batch_init(&t->batch, &t->model, cfg->batch, cfg->seq_len);
    if (s == LACT_OK) t->parts |= PART_BATCH;
    if (s == LACT_OK && has_val) {
        snprintf(pattern, sizeof pattern, "%s/*_val_*.bin", data_dir);
        t->val_pattern = strdup(pattern);
        if (!t->val_pattern) s = lact_fail(LACT_E_NOMEM, "out of memory");
    }
    if (s != LACT_OK) lact_lm_trainer_free(t);
    return s;
}

void lact_lm_trainer_free(lact_lm_trainer *t) {
    lact_graph_free(&t->graph);
    t->graph_state = 0;
    if (t->parts & PART_BATCH) lact_lm_batch_free(&t->batch);
    if (t->parts & PART_LOADER) lact_loader_free(&t->train);
    if (t->parts & PART_OPT) lact_adamw_free(&t->opt);
    if (t->parts & PART_MODEL) lact_lm_free(&t->model);
    free(t->val_pattern);
    t->val_pattern = NULL;
    t->parts = 0;
}

static lact_status loader_windows(void *arg, int32_t *window, int64_t *rows) {
    return lact_loader_next(arg, window, rows);
}

lact_status lact_lm_trainer_step(lact_lm_trainer *t, lact_lm_step_stats *st) {
    if (!(t->parts & PART_LOADER))
        return lact_fail(LACT_E_ARG, "lm trainer: made without data, nothing to step on");
    return lact_lm_trainer_step_from(t, loader_windows, &t->train, st);
}

/* Forward and backward of the uploaded batch; the losses stay on the device. */
static lact_status micro_step(lact_lm_trainer *t) {
    lact_lm_batch *b = &t->batch;
    lact_arena_reset(&b->arena);
    LACT_TRY(lact_lm_forward_train(t->ctx, &t->model, &b->arena, &b->loss, &b->ids, &b->targets,
                                   &b->dloss));
    return lact_lm_backward(t->ctx, &t->model, &b->arena, &b->dloss);
}

/* On CUDA the first micro-step runs as it is (it sizes the kernels' cached
 * buffers); the second is recorded as a graph and every later one replays
 * it: the shapes and the arena's addresses repeat, and the batch arrives in
 * the same device buffers. If recording fails, the steps run kernel by
 * kernel from then on. */
static lact_status run_micro_step(lact_lm_trainer *t) {
    if (t->graph.exec) return lact_graph_launch(t->ctx, &t->graph);
    if (t->graph_state == 0) {
        const char *e = getenv("LACT_CUDA_GRAPH");
        t->graph_state = t->ctx->device == LACT_CUDA && !(e && !strcmp(e, "0")) ? 1 : -1;
        return micro_step(t);
    }
    if (t->graph_state < 0) return micro_step(t);
    LACT_TRY(lact_graph_begin(t->ctx));
    lact_status s = micro_step(t);
    char why[256]; /* the first failure names the call that cannot be recorded */
    snprintf(why, sizeof why, "%s", s == LACT_OK ? "" : lact_errmsg());
    lact_status e = lact_graph_end(t->ctx, &t->graph, s == LACT_OK);
    if (s == LACT_OK && e == LACT_OK) return lact_graph_launch(t->ctx, &t->graph);
    LACT_WARN("lm: the training step could not be recorded as a CUDA graph (%s); it runs kernel "
              "by kernel",
              s != LACT_OK ? why : lact_errmsg());
    t->graph_state = -1;
    return micro_step(t);
}

lact_status lact_lm_trainer_step_from(lact_lm_trainer *t, lact_lm_windows_fn next, void *arg,
                                      lact_lm_step_stats *st) {
    const lact_lm_run_cfg *c = &t->cfg;
    int64_t step = t->step + 1;
    float weight = 1.0f / (float)(c->batch * c->seq_len * c->accum);
    double sum = 0;
    int64_t tokens = 0;
    LACT_TRY(lact_params_zero_grad(&t->model.params));
    for (int64_t k = 0; k < c->accum; k++) {
        int64_t rows, n;
        LACT_TRY(next(arg, t->batch.window, &rows));
        LACT_TRY(lact_lm_batch_upload(&t->batch, rows, weight, &n));
        LACT_TRY(run_micro_step(t));
        tokens += n;
        /* The last micro-step's losses are read after the optimizer step is
         * queued, so the device runs backward, norm and step without
         * waiting for the host. */
        if (k + 1 < c->accum) {
            double part;
            LACT_TRY(lact_lm_batch_loss_sum(&t->batch, &part));
            sum += part;
        }
    }
    /* A non-finite loss comes with non-finite gradients, whose norm makes
     * the step leave the weights as they were. */
    st->lr = lact_schedule_lr(&t->sched, step);
    LACT_TRY(lact_adamw_grad_norm(t->ctx, &t->opt));
    LACT_TRY(lact_adamw_update(t->ctx, &t->opt, (float)st->lr, step, (float)c->grad_clip));
    double part;
    float norm;
    LACT_TRY(lact_lm_batch_loss_sum(&t->batch, &part));
    LACT_TRY(lact_adamw_read_norm(&t->opt, &norm));
    sum += part;
    st->loss = sum / (double)tokens;
    st->grad_norm = norm;
    if (!isfinite(st->loss))
        return lact_fail(LACT_E_ARG, "the loss is %g at step %lld (try a smaller lr)", st->loss,
                         (long long)step);
    st->tokens = tokens;
    t->step = step;
    t->tokens += tokens;
    return LACT_OK;
}

lact_status lact_lm_trainer_eval(lact_lm_trainer *t, double *val_loss) {
    *val_loss = NAN;
    if (!t->val_pattern) return LACT_OK;
    lact_loader val;
    const char *paths[1] = {t->val_pattern};
    LACT_TRY(lact_loader_init(&val, paths, 1, t->cfg.batch, t->cfg.seq_len, 0, false, false));
    lact_lm_eval_result r;
    lact_status s = lact_lm_eval(t->ctx, &t->model, &t->batch, &val, t->cfg.eval_batches, NULL, &r);
    lact_loader_free(&val);
    if (s == LACT_OK && r.tokens > 0) *val_loss = r.loss_sum / (double)r.tokens;
    return s;
}

/* ---- checkpoints ----------------------------------------------------------- */

/* Names and tensors of every weight, then m, then v. */
static lact_status ckpt_tensors(lact_lm_trainer *t, char ***names, lact_tensor **ts, int *n) {
    lact_params *p = &t->model.params;
    int np = lact_params_count(p);
    *n = 3 * np;
    *names = calloc((size_t)*n, sizeof **names);
    *ts = calloc((size_t)*n, sizeof **ts);
    if (!*names || !*ts) return lact_fail(LACT_E_NOMEM, "checkpoint: out of memory");
    static const char *const pre[3] = {"", "optim.m.", "optim.v."};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < np; i++) {
            lact_param *it = lact_params_at(p, i);
            size_t len = strlen(pre[k]) + strlen(it->name) + 1;
            char *name = malloc(len);
            if (!name) return lact_fail(LACT_E_NOMEM, "checkpoint: out of memory");
            snprintf(name, len, "%s%s", pre[k], it->name);
            (*names)[k * np + i] = name;
            (*ts)[k * np + i] = k == 0 ? it->w : it->state[k - 1];
        }
    return LACT_OK;
}

static void free_names(char **names, lact_tensor *ts, int n) {
    if (names)
        for (int i = 0; i < n; i++)
            free(names[i]);
    free(names);
    free(ts);
}

static char *state_json(const lact_lm_trainer *t) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    char *cfg_text = lact_config_to_json(fields, nf, &t->cfg);
    cJSON *root = cJSON_CreateObject();
    cJSON *cfg = cfg_text ? cJSON_Parse(cfg_text) : NULL;
    free(cfg_text);
    if (!root || !cfg) {
        cJSON_Delete(root);
        cJSON_Delete(cfg);
        return NULL;
    }
    char num[32];
    cJSON_AddStringToObject(root, "format", "lact.lm.train");
    snprintf(num, sizeof num, "%lld", (long long)t->step);
    cJSON_AddRawToObject(root, "step", num);
    snprintf(num, sizeof num, "%lld", (long long)t->tokens);
    cJSON_AddRawToObject(root, "tokens", num);
    cJSON *pos = cJSON_AddObjectToObject(root, "loader");
    snprintf(num, sizeof num, "%lld", (long long)t->train.pos.epoch);
    cJSON_AddRawToObject(pos, "epoch", num);
    snprintf(num, sizeof num, "%lld", (long long)t->train.pos.shard);
    cJSON_AddRawToObject(pos, "shard", num);
    snprintf(num, sizeof num, "%lld", (long long)t->train.pos.window);
    cJSON_AddRawToObject(pos, "window", num);
    cJSON_AddItemToObject(root, "config", cfg);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

lact_status lact_lm_trainer_save(lact_lm_trainer *t, const char *path) {
    char **names = NULL;
    lact_tensor *ts = NULL;
    int n = 0;
    lact_status s = ckpt_tensors(t, &names, &ts, &n);
    char *state = s == LACT_OK ? state_json(t) : NULL;
    if (s == LACT_OK && !state) s = lact_fail(LACT_E_NOMEM, "checkpoint: cannot build the state");
    if (s == LACT_OK) s = lact_checkpoint_save(path, n, (const char *const *)names, ts, state);
    free(state);
    free_names(names, ts, n);
    return s;
}

static bool get_int(const cJSON *obj, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v)) return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* Parses the state JSON: step, tokens, loader position and the config. */
static lact_status parse_state(const char *path, const char *json, lact_lm_run_cfg *cfg,
                               int64_t *step, int64_t *tokens, lact_loader_pos *pos) {
    if (!json)
        return lact_fail(LACT_E_FORMAT, "%s: no training state (not a lact lm checkpoint)", path);
    cJSON *root = cJSON_Parse(json);
    const cJSON *fmt = root ? cJSON_GetObjectItemCaseSensitive(root, "format") : NULL;
    const cJSON *loader = root ? cJSON_GetObjectItemCaseSensitive(root, "loader") : NULL;
    const cJSON *c = root ? cJSON_GetObjectItemCaseSensitive(root, "config") : NULL;
    lact_status s = LACT_OK;
    int64_t tk = 0;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "lact.lm.train") != 0 ||
        !get_int(root, "step", step) || !get_int(root, "tokens", &tk) || !cJSON_IsObject(loader) ||
        !get_int(loader, "epoch", &pos->epoch) || !get_int(loader, "shard", &pos->shard) ||
        !get_int(loader, "window", &pos->window) || !cJSON_IsObject(c))
        s = lact_fail(LACT_E_FORMAT, "%s: the training state is not a lact lm state", path);
    if (tokens) *tokens = tk;
    if (s == LACT_OK) {
        char *text = cJSON_PrintUnformatted(c);
        int nf;
        const lact_cfg_field *fields = lact_lm_run_fields(&nf);
        *cfg = lact_lm_run_defaults();
        s = text ? lact_config_parse(text, path, fields, nf, cfg)
                 : lact_fail(LACT_E_NOMEM, "out of memory");
        free(text);
    }
    cJSON_Delete(root);
    return s;
}

lact_status lact_lm_checkpoint_config(const char *path, lact_lm_run_cfg *cfg, int64_t *step) {
    char *json = NULL;
    LACT_TRY(lact_checkpoint_load(path, 0, NULL, NULL, &json));
    lact_loader_pos pos;
    lact_status s = parse_state(path, json, cfg, step, NULL, &pos);
    free(json);
    return s;
}

lact_status lact_lm_trainer_restore(lact_lm_trainer *t, const char *path) {
    char **names = NULL;
    lact_tensor *ts = NULL;
    int n = 0;
    char *json = NULL;
    lact_status s = ckpt_tensors(t, &names, &ts, &n);
    if (s == LACT_OK) s = lact_checkpoint_load(path, n, (const char *const *)names, ts, &json);
    lact_lm_run_cfg saved;
    int64_t step = 0, tokens = 0;
    lact_loader_pos pos;
    if (s == LACT_OK) s = parse_state(path, json, &saved, &step, &tokens, &pos);
    /* The checkpoint wrote the masters directly: the BF16 shadow follows. */
    lact_params_weights_changed(&t->model.params);
    if (s == LACT_OK) s = lact_params_sync_shadow(t->ctx, &t->model.params);
    if (s == LACT_OK && (t->parts & PART_LOADER)) s = lact_loader_seek(&t->train, pos);
    if (s == LACT_OK) t->step = step, t->tokens = tokens;
    free(json);
    free_names(names, ts, n);
    return s;
}
