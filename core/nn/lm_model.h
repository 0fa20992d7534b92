/* The language model: token embedding [V, D] → N pre-norm residual blocks
 * (block.h; the mixer of each layer from the config) → RMSNorm → LM head
 * (the embedding itself when tied, else its own [V, D]) → fused chunked
 * cross-entropy (lact_xent_*), so no [B·L, V] logits tensor exists.
 *
 * Parameters (safetensors keys): embed [V, D]; layers.<i>.norm1, norm2 [D],
 * layers.<i>.lact.*, layers.<i>.attn.* or layers.<i>.mesa.*,
 * layers.<i>.mlp.{w_gate,w_up,w_down};
 * norm_f [D]; head [V, D] (untied only).
 *
 * Memory: forward keeps the residual stream of every layer and what each
 * layer saves in the arena (only the residual stream with cfg.recompute,
 * the backward then recomputing one block at a time); backward takes and
 * returns scratch. A measuring
 * arena walks the allocations without computing, so one measuring pass of
 * forward + backward gives the arena's size for a (B, L).
 *
 * Dtype: cfg.dtype "bf16" on CUDA makes every activation and activation
 * gradient BF16 (the arena's tensors; the loss, the saved statistics and
 * the parameter gradients stay F32) and gives the store its BF16 shadow,
 * which the matrix products read (params.h). The masters, gradients and
 * optimizer state stay F32. A model on the CPU computes in F32 whatever
 * dtype says (the CPU kernels are F32 only); lact_lm_check_device is the
 * error for callers that must not fall back (training). */
#ifndef LACT_NN_LM_MODEL_H
#define LACT_NN_LM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/nn/block.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_LM_MIXERS_MAX 256

/* Shapes and the layers' options. Types follow core/io/config.h (int64_t,
 * double, bool, char[]) so that a config table can point into it. */
typedef struct lact_lm_cfg {
    int64_t vocab, d_model, n_layers, n_heads;
    /* Comma-separated mixers, repeated cyclically over the layers:
     * "lact" (all LaCT), "lact,lact,lact,attention" (attention every 4th),
     * "mesa,attention". */
    char mixers[LACT_LM_MIXERS_MAX];
    double mlp_mult;     /* SwiGLU hidden = round(mlp_mult · D) */
    int64_t chunk;       /* LaCT tokens per fast-weight update */
    int64_t window;      /* LaCT sliding-window attention (0: none), ≥ chunk */
    int64_t inter_multi; /* LaCT fast-weight hidden = d_head · inter_multi */
    double base_lr;      /* LaCT fast-weight learning rate for a zero projection */
    bool muon;           /* LaCT Newton–Schulz on the fast-weight updates */
    bool momentum;       /* LaCT momentum on the fast-weight updates */
    int64_t mesa_chunk;  /* Mesa tokens per chunk of the parallel form */
    int64_t mesa_cg_steps; /* Mesa conjugate-gradient steps per solve */
    bool tie_embeddings;
    double init_std;     /* projections; output projections get init_std / sqrt(2N) */
    double rope_theta;
    double norm_eps;
    char dtype[8]; /* compute dtype on CUDA: "f32" or "bf16" */
    /* Activation recompute: the forward keeps only the residual stream and
     * the backward runs each block's forward again just before its
     * backward, so the arena holds one block's activations instead of all
     * of them (one more forward per step). */
    bool recompute;
} lact_lm_cfg;

/* vocab 257 (bytes), d 64, 2 layers, 2 heads, "lact", mlp 4, chunk 32,
 * window 32, inter_multi 2, base_lr 1e-3, muon and momentum on, Mesa chunk
 * 64 and 30 CG steps, tied, init std 0.02, θ 10000, eps 1e-6, dtype f32. */
lact_lm_cfg lact_lm_defaults(void);

/* cfg->dtype can run on dev: "f32" anywhere, "bf16" on CUDA only (one line
 * naming the key otherwise). */
lact_status lact_lm_check_device(const lact_lm_cfg *cfg, lact_device dev);

/* Parses cfg->mixers for n_layers layers into out[n_layers]; fails naming
 * the unknown mixer, an empty entry or a list longer than the model. */
lact_status lact_lm_parse_mixers(const lact_lm_cfg *cfg, lact_mixer *out);

typedef struct lact_lm {
    lact_lm_cfg cfg;
    lact_params params;
    int embed, head, norm_f; /* head == embed when tied */
    int n_layers;
    lact_dtype act; /* activations: BF16 for dtype bf16 on CUDA, else F32 */
    /* Set around a forward that no backward follows (scoring): it gives
     * each block's saved activations back at once, as recompute does, and
     * lact_lm_backward refuses to run after it. */
    bool forward_only;
    bool backward_ready; /* the last forward kept what backward needs */
    lact_block *blocks;
    lact_block_saved *saved;
    /* forward's views, kept for backward */
    int64_t B, L;
    lact_tensor *xs; /* [N + 1] residual stream, [B, L, D] each */
    lact_tensor hf, rstd_f, lse;
    lact_tensor ids, targets;
    /* Set by lact_lm_forward_train: the head's backward has run, its
     * gradient is accumulated and dhf is the gradient at hf. */
    bool head_done;
    lact_tensor dhf;
} lact_lm;

/* Checks cfg, declares and allocates the parameters (values not set), and
 * the BF16 shadow when the model computes in BF16. */
lact_status lact_lm_init(lact_lm *m, const lact_lm_cfg *cfg, lact_device dev);
void lact_lm_free(lact_lm *m);
/* Seeded values for every parameter (lact_params_init_values). */
lact_status lact_lm_init_values(lact_ctx *ctx, lact_lm *m, uint64_t seed);
/* Parameter count (the head once when tied). */
int64_t lact_lm_numel(const lact_lm *m);

/* loss [B·L] (F32, per token) from ids and targets [B, L] (I32; a negative
 * target is ignored: loss 0, no gradient). ids and targets must stay valid
 * until backward. A stale BF16 shadow (weights loaded or written since the
 * last sync) is refreshed first. */
lact_status lact_lm_forward(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                            const lact_tensor *ids, const lact_tensor *targets);
/* lact_lm_forward for a training step whose dloss [B·L] (F32) is known
 * before it: the head's backward runs with the forward (the head gradient
 * accumulates here), so that the logits are formed once. The backward that
 * follows must be given the same dloss. */
lact_status lact_lm_forward_train(lact_ctx *ctx, lact_lm *m, lact_arena *arena, lact_tensor *loss,
                                  const lact_tensor *ids, const lact_tensor *targets,
                                  const lact_tensor *dloss);
/* Gradients of Σ dloss ⊙ loss accumulate into m->params' gradients. */
lact_status lact_lm_backward(lact_ctx *ctx, lact_lm *m, lact_arena *arena,
                             const lact_tensor *dloss);

#ifdef __cplusplus
}
#endif
#endif
