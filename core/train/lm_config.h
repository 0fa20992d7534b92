/* The configuration of a language-model run: the model's shapes
 * (lact_lm_cfg) and the training options, one flat JSON object read through
 * core/io/config.h (an unknown key is an error; `--set key=value` uses the
 * same table). docs/lm.md lists every key. */
#ifndef LACT_TRAIN_LM_CONFIG_H
#define LACT_TRAIN_LM_CONFIG_H

#include "core/io/config.h"
#include "core/nn/lm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_run_cfg {
    lact_lm_cfg model;
    int64_t seq_len, batch, accum; /* tokens per step: batch · accum · seq_len */
    int64_t steps, warmup;
    char schedule[16];   /* "cosine" or "wsd" */
    double lr, min_lr;   /* peak, and the floor the schedule decays to (a fraction of lr) */
    double decay_frac;   /* wsd: the share of the steps spent decaying */
    double weight_decay, beta1, beta2, eps, grad_clip;
    int64_t log_every, eval_every, eval_batches, checkpoint_every;
    int64_t seed;
} lact_lm_run_cfg;

/* The tiny CPU defaults of configs/lm-tiny.json. */
lact_lm_run_cfg lact_lm_run_defaults(void);
/* The key table; *n receives its length. */
const lact_cfg_field *lact_lm_run_fields(int *n);
/* Checks ranges and the model's shapes; one line naming the key. */
lact_status lact_lm_run_check(const lact_lm_run_cfg *c);

#ifdef __cplusplus
}
#endif
#endif
