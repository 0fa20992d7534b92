/* What one forward/backward of the language model needs besides the model:
 * the token tensors on the device, their host staging buffers and the
 * activation arena, sized once by a measuring pass for (B, T). Also the
 * held-out loss over a loader, shared by training and `lact lm eval`.
 *
 * The loader comes from modalities/text: core/train reads token shards
 * (lact_core links lact_text for this). */
#ifndef LACT_TRAIN_LM_BATCH_H
#define LACT_TRAIN_LM_BATCH_H

#include "core/nn/lm_model.h"
#include "modalities/text/loader.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_batch {
    int64_t B, T;
    lact_tensor ids, targets; /* [B, T] I32 on the device */
    lact_tensor loss, dloss;  /* [B·T] F32 on the device */
    int32_t *window;          /* host [B, T + 1], the loader's rows */
    int32_t *h_ids, *h_targets;
    float *h_loss;
    lact_arena arena;
} lact_lm_batch;

/* Allocates everything and sizes the arena with a measuring forward +
 * backward of m at (B, T), in the model's activation dtype (m->act). */
lact_status lact_lm_batch_init(lact_lm_batch *b, lact_lm *m, int64_t B, int64_t T);
void lact_lm_batch_free(lact_lm_batch *b);
/* Uploads rows windows of b->window (rows ≤ B; missing rows are ignored
 * targets) and sets dloss to `weight` for every counted token. *n_tokens
 * receives how many targets count. */
lact_status lact_lm_batch_upload(lact_lm_batch *b, int64_t rows, float weight, int64_t *n_tokens);
/* Forward of the uploaded batch; *sum receives Σ loss (host double). */
lact_status lact_lm_batch_forward(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b, double *sum);
/* The two halves of lact_lm_batch_forward: the forward, which leaves the
 * per-token losses on the device, and their sum read back. */
lact_status lact_lm_batch_forward_device(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b);
lact_status lact_lm_batch_loss_sum(lact_lm_batch *b, double *sum);

typedef struct lact_lm_eval_result {
    double loss_sum; /* nats over every counted target */
    int64_t tokens;
    int64_t bytes; /* Σ bytes of the targets, when a byte table was given */
    int64_t batches;
} lact_lm_eval_result;

/* Loss over a loader from its current position: up to max_batches batches
 * (0: until it ends). token_bytes[id] (may be NULL) gives the text bytes of
 * each id, for bits per byte. */
lact_status lact_lm_eval(lact_ctx *ctx, lact_lm *m, lact_lm_batch *b, lact_loader *l,
                         int64_t max_batches, const int32_t *token_bytes, lact_lm_eval_result *r);

#ifdef __cplusplus
}
#endif
#endif
