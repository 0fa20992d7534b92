/* The tasks of `lact lm eval` beyond perplexity and bits per byte: loss by
 * position, needle in a haystack and multiple choice. cmd_lm_eval.c parses
 * the flags and loads the model; these run a task (the logic lives in
 * core/train/lm_eval_*.c) and print its report. */
#ifndef LACT_APP_LM_EVAL_TASKS_H
#define LACT_APP_LM_EVAL_TASKS_H

#include <stdint.h>

#include "cli.h"
#include "core/train/lm_config.h"

typedef struct eval_opts {
    const char *checkpoint, *data, *task, *tokenizer, *split, *out;
    const char *lengths, *depths, *filler, *niah_mode, *tasks_file;
    int64_t batches, batch, seq_len, bucket, max_length, trials;
    cli_common c;
} eval_opts;

/* What every task gets: the options, the checkpoint's config and step, and
 * the model with its weights on ctx's device. */
typedef struct eval_env {
    const eval_opts *o;
    const lact_lm_run_cfg *cfg;
    int64_t step;
    lact_ctx *ctx;
    lact_lm *m;
} eval_env;

lact_status eval_position(const eval_env *e);
lact_status eval_niah(const eval_env *e);
lact_status eval_mc(const eval_env *e);

#endif
