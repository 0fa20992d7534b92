/* A language-model training run: the model, AdamW over its store, the
 * schedule, the train loader and one batch's buffers; a step is `accum`
 * micro-batches of forward + backward, global-norm clipping and one AdamW
 * update. A checkpoint holds the weights, AdamW's m and v
 * ("optim.m.<name>", "optim.v.<name>") and the state JSON (step, tokens,
 * loader position, seed, config), so that resuming continues the same run:
 * on the CPU the losses after resuming are bit-identical to an
 * uninterrupted run. There is no other randomness in a step: the data order
 * is the loader's, a function of (seed, position). */
#ifndef LACT_TRAIN_LM_TRAINER_H
#define LACT_TRAIN_LM_TRAINER_H

#include "core/base/graph.h"
#include "core/train/lm_batch.h"
#include "core/train/lm_config.h"
#include "core/train/optim.h"
#include "core/train/schedule.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_trainer {
    lact_lm_run_cfg cfg;
    lact_ctx *ctx;
    lact_lm model;
    lact_adamw opt;
    lact_schedule sched;
    lact_loader train;
    lact_lm_batch batch;
    char *val_pattern; /* NULL when the data has no val shards */
    int64_t step;      /* optimizer steps done */
    int64_t tokens;    /* training tokens seen */
    int parts;         /* what init made, for free */
    /* CUDA: the micro-step (forward + backward) recorded once and replayed;
     * graph_state 0 until the first micro-step ran, 1 once recorded (or
     * being recorded next), −1 when off (LACT_CUDA_GRAPH=0, or recording
     * failed). */
    lact_graph graph;
    int graph_state;
} lact_lm_trainer;

typedef struct lact_lm_step_stats {
    double loss; /* mean over the step's tokens */
    double lr, grad_norm;
    int64_t tokens;
} lact_lm_step_stats;

/* Builds the run on ctx's device (dtype bf16 needs a CUDA context) for the
 * shards in data_dir
 * (<name>_train_*.bin, optional <name>_val_*.bin and <name>_meta.json, as
 * `lact lm prepare` writes them). Weights from cfg->seed. A NULL data_dir
 * makes the run without a loader: its steps then come from
 * lact_lm_trainer_step_from (`lact bench lm` feeds random ids that way). */
lact_status lact_lm_trainer_init(lact_lm_trainer *t, lact_ctx *ctx, const lact_lm_run_cfg *cfg,
                                 const char *data_dir);
void lact_lm_trainer_free(lact_lm_trainer *t);
/* One optimizer step on the loader's next batches. */
lact_status lact_lm_trainer_step(lact_lm_trainer *t, lact_lm_step_stats *st);

/* Fills window [batch][seq_len + 1] with a micro-batch's token windows, as
 * lact_loader_next does; *rows ≤ batch (missing rows are ignored targets). */
typedef lact_status (*lact_lm_windows_fn)(void *arg, int32_t *window, int64_t *rows);
/* One optimizer step whose `accum` micro-batches come from next(arg). */
lact_status lact_lm_trainer_step_from(lact_lm_trainer *t, lact_lm_windows_fn next, void *arg,
                                      lact_lm_step_stats *st);
/* Mean val loss over cfg.eval_batches batches from the start of the val
 * shards (the same batches every time). */
lact_status lact_lm_trainer_eval(lact_lm_trainer *t, double *val_loss);

/* Writes the checkpoint atomically. */
lact_status lact_lm_trainer_save(lact_lm_trainer *t, const char *path);
/* Restores weights, moments, step, tokens and the loader position, and
 * refreshes the BF16 shadow. The model's shapes must equal the
 * checkpoint's. */
lact_status lact_lm_trainer_restore(lact_lm_trainer *t, const char *path);

/* The run config stored in a checkpoint (for eval and resume), and the
 * step it was taken at. */
lact_status lact_lm_checkpoint_config(const char *path, lact_lm_run_cfg *cfg, int64_t *step);

#ifdef __cplusplus
}
#endif
#endif
