/* The loss of one given batch and its gradients, for comparing lact with
 * another implementation of the same model (`lact lm loss`,
 * scripts/ref/lm_parity.sh).
 *
 * A token batch is a safetensors file with one integer tensor "tokens"
 * [B, L + 1] (I32 or I64): row b gives the ids tokens[b, :L] and the
 * targets tokens[b, 1:], as the loader's windows do. */
#ifndef LACT_TRAIN_LM_LOSS_H
#define LACT_TRAIN_LM_LOSS_H

#include <stdbool.h>

#include "core/nn/lm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the batch at path into *tokens (host, malloc'd, [B, L + 1] I32);
 * every id must lie in [0, vocab). */
lact_status lact_lm_tokens_load(const char *path, int64_t vocab, int32_t **tokens, int64_t *B,
                                int64_t *L);

/* The mean cross-entropy over the B·L targets of tokens [B, L + 1]; with
 * grads, the gradients of that mean replace m's gradients (the store is
 * zeroed first), as one training step with batch B, seq_len L and accum 1
 * computes them. */
lact_status lact_lm_batch_loss(lact_ctx *ctx, lact_lm *m, const int32_t *tokens, int64_t B,
                               int64_t L, bool grads, double *loss);

/* Writes every parameter's gradient under its lact name. Atomic. */
lact_status lact_lm_save_grads(lact_lm *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
