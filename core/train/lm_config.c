#include "core/train/lm_config.h"

#include <stddef.h>
#include <string.h>

lact_lm_run_cfg lact_lm_run_defaults(void) {
    lact_lm_run_cfg c;
    memset(&c, 0, sizeof c);
    c.model = lact_lm_defaults();
    c.seq_len = 128, c.batch = 8, c.accum = 1;
    c.steps = 200, c.warmup = 20;
    strcpy(c.schedule, "cosine");
    c.lr = 3e-3, c.min_lr = 0.1, c.decay_frac = 0.2;
    c.weight_decay = 0.1, c.beta1 = 0.9, c.beta2 = 0.95, c.eps = 1e-8, c.grad_clip = 1.0;
    c.log_every = 10, c.eval_every = 100, c.eval_batches = 8, c.checkpoint_every = 100;
    c.seed = 1234;
    return c;
}

#define M(field) offsetof(lact_lm_run_cfg, model.field)
#define R(field) offsetof(lact_lm_run_cfg, field)

static const lact_cfg_field fields[] = {
    {"vocab", LACT_CFG_INT, M(vocab), 0, "vocabulary size (257 for the bytes tokenizer)"},
    {"d_model", LACT_CFG_INT, M(d_model), 0, "model width D"},
    {"n_layers", LACT_CFG_INT, M(n_layers), 0, "number of blocks"},
    {"n_heads", LACT_CFG_INT, M(n_heads), 0, "heads of every mixer (D % n_heads == 0)"},
    {"mixers", LACT_CFG_STRING, M(mixers), LACT_LM_MIXERS_MAX,
     "comma-separated mixers repeated over the layers: lact, attention, mesa"},
    {"mlp_mult", LACT_CFG_FLOAT, M(mlp_mult), 0, "SwiGLU hidden size = mlp_mult * d_model"},
    {"chunk", LACT_CFG_INT, M(chunk), 0, "LaCT tokens per fast-weight update"},
    {"window", LACT_CFG_INT, M(window), 0, "LaCT sliding-window attention (0: none; >= chunk)"},
    {"inter_multi", LACT_CFG_INT, M(inter_multi), 0, "LaCT fast-weight hidden / head dim"},
    {"base_lr", LACT_CFG_FLOAT, M(base_lr), 0, "LaCT fast-weight learning rate"},
    {"muon", LACT_CFG_BOOL, M(muon), 0, "LaCT Newton-Schulz on fast-weight updates"},
    {"momentum", LACT_CFG_BOOL, M(momentum), 0, "LaCT momentum on fast-weight updates"},
    {"mesa_chunk", LACT_CFG_INT, M(mesa_chunk), 0, "Mesa tokens per chunk of the parallel form"},
    {"mesa_cg_steps", LACT_CFG_INT, M(mesa_cg_steps), 0, "Mesa conjugate-gradient steps per solve"},
    {"tie_embeddings", LACT_CFG_BOOL, M(tie_embeddings), 0, "the head is the embedding"},
    {"init_std", LACT_CFG_FLOAT, M(init_std), 0, "std of the initial projections"},
    {"rope_theta", LACT_CFG_FLOAT, M(rope_theta), 0, "RoPE base"},
    {"norm_eps", LACT_CFG_FLOAT, M(norm_eps), 0, "RMSNorm epsilon"},
    {"dtype", LACT_CFG_STRING, M(dtype), sizeof(((lact_lm_cfg *)0)->dtype),
     "compute dtype: f32, or bf16 (CUDA; parameters stay F32)"},
    {"recompute", LACT_CFG_BOOL, M(recompute), 0,
     "recompute each block's activations in the backward (less memory, one more forward)"},
    {"seq_len", LACT_CFG_INT, R(seq_len), 0, "tokens per sequence"},
    {"batch", LACT_CFG_INT, R(batch), 0, "sequences per micro-batch"},
    {"accum", LACT_CFG_INT, R(accum), 0, "micro-batches per optimizer step"},
    {"steps", LACT_CFG_INT, R(steps), 0, "optimizer steps (the schedule's length)"},
    {"warmup", LACT_CFG_INT, R(warmup), 0, "linear warm-up steps"},
    {"schedule", LACT_CFG_STRING, R(schedule), 16, "cosine or wsd (warm-up, stable, decay)"},
    {"lr", LACT_CFG_FLOAT, R(lr), 0, "peak AdamW learning rate"},
    {"min_lr", LACT_CFG_FLOAT, R(min_lr), 0, "final learning rate as a fraction of lr"},
    {"decay_frac", LACT_CFG_FLOAT, R(decay_frac), 0, "wsd: share of the steps spent decaying"},
    {"weight_decay", LACT_CFG_FLOAT, R(weight_decay), 0, "AdamW decay of matrices"},
    {"beta1", LACT_CFG_FLOAT, R(beta1), 0, "AdamW beta1"},
    {"beta2", LACT_CFG_FLOAT, R(beta2), 0, "AdamW beta2"},
    {"eps", LACT_CFG_FLOAT, R(eps), 0, "AdamW epsilon"},
    {"grad_clip", LACT_CFG_FLOAT, R(grad_clip), 0, "global gradient norm limit (0: none)"},
    {"log_every", LACT_CFG_INT, R(log_every), 0, "steps between metrics lines"},
    {"eval_every", LACT_CFG_INT, R(eval_every), 0, "steps between val losses (0: never)"},
    {"eval_batches", LACT_CFG_INT, R(eval_batches), 0, "val batches per evaluation (0: all)"},
    {"checkpoint_every", LACT_CFG_INT, R(checkpoint_every), 0,
     "steps between checkpoints (0: only at the end)"},
    {"seed", LACT_CFG_INT, R(seed), 0, "initial weights and data order"},
};

const lact_cfg_field *lact_lm_run_fields(int *n) {
    *n = (int)(sizeof fields / sizeof fields[0]);
    return fields;
}

lact_status lact_lm_run_check(const lact_lm_run_cfg *c) {
    if (c->seq_len < 1 || c->batch < 1 || c->accum < 1 || c->steps < 1)
        return lact_fail(LACT_E_ARG, "seq_len, batch, accum and steps must be positive");
    if (c->warmup < 0 || c->log_every < 1 || c->eval_every < 0 || c->eval_batches < 0 ||
        c->checkpoint_every < 0)
        return lact_fail(LACT_E_ARG, "warmup, eval_every, eval_batches and checkpoint_every must "
                                     "be >= 0 and log_every positive");
    if (strcmp(c->schedule, "cosine") != 0 && strcmp(c->schedule, "wsd") != 0)
        return lact_fail(LACT_E_ARG, "schedule '%s': expected cosine or wsd", c->schedule);
    if (!(c->lr > 0) || !(c->min_lr >= 0 && c->min_lr <= 1) ||
        !(c->decay_frac >= 0 && c->decay_frac <= 1))
        return lact_fail(LACT_E_ARG, "lr must be > 0, min_lr and decay_frac in [0, 1]");
    if (!(c->weight_decay >= 0) || !(c->beta1 >= 0 && c->beta1 < 1) ||
        !(c->beta2 >= 0 && c->beta2 < 1) || !(c->eps > 0) || !(c->grad_clip >= 0))
        return lact_fail(LACT_E_ARG, "weight_decay, grad_clip >= 0, beta1, beta2 in [0, 1), "
                                     "eps > 0");
    if (c->model.window > 0 && c->model.window < c->model.chunk)
        return lact_fail(LACT_E_ARG, "window %lld is shorter than chunk %lld",
                         (long long)c->model.window, (long long)c->model.chunk);
    if (c->model.chunk < 1 || c->model.inter_multi < 1 || !(c->model.base_lr > 0))
        return lact_fail(LACT_E_ARG, "chunk, inter_multi and base_lr must be positive");
    if (c->model.mesa_chunk < 1 || c->model.mesa_cg_steps < 1 || c->model.mesa_cg_steps > 100000)
        return lact_fail(LACT_E_ARG,
                         "mesa_chunk must be positive and mesa_cg_steps in [1, 100000]");
    if (strcmp(c->model.dtype, "f32") != 0 && strcmp(c->model.dtype, "bf16") != 0)
        return lact_fail(LACT_E_ARG, "dtype '%s': expected f32 or bf16", c->model.dtype);
    return LACT_OK;
}
