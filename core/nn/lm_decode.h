/* Streaming decode of the language model (lm_model.h) and token sampling.
 *
 * The decode state holds, per layer, the mixer's own decode state: the LaCT
 * layer's (fast weights and the window branch's ring buffers,
 * lact_ttt_layer_decode), the attention layer's key/value cache
 * (lact_attn_layer_decode: a ring buffer for the window mask, else
 * max_context slots) or the Mesa layer's states H, G (lact_mesa_layer_decode,
 * d×d per head). A step takes the next T tokens of every sequence
 * (1 ≤ T ≤ max_tokens: one when generating, a piece of the prompt when
 * prefilling) and runs embedding → blocks → final norm → head on them only,
 * so its logits equal the full-sequence model's at those positions.
 * Everything is allocated by init (the step's activations in one arena
 * sized by a measuring pass); a step allocates nothing.
 *
 * Device: the context's, which must be the model's (CPU or CUDA). On CUDA
 * every state, cache and activation stays on the device between steps; a
 * step uploads its ids and, for host logits, downloads the logits of the
 * positions asked for (the last one when sampling), so sampling stays on
 * the host. The decode computes in F32 from the F32 master weights
 * whatever the model's dtype: a bf16 model decodes in F32. */
#ifndef LACT_NN_LM_DECODE_H
#define LACT_NN_LM_DECODE_H

#include <stdint.h>

#include "core/nn/lm_model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_decode_layer {
    lact_mixer mixer;
    lact_ttt_layer_decode lact;  /* mixer LACT */
    lact_attn_layer_decode attn; /* mixer ATTENTION */
    lact_mesa_layer_decode mesa; /* mixer MESA */
} lact_lm_decode_layer;

typedef struct lact_lm_decode {
    lact_lm *model;
    int64_t batch, max_tokens, max_context;
    int64_t pos; /* tokens seen per sequence */
    lact_lm_decode_layer *layers;
    lact_tensor piece;  /* [B, max_tokens] I32 on the host: prefill's slice of the prompt */
    lact_tensor ids;    /* [B, max_tokens] I32 on the device (CUDA): a step's ids */
    lact_tensor last;   /* [B, D] the final hidden of each sequence's token */
    lact_tensor logits; /* [B, V] on the device (CUDA): host logits on their way out */
    lact_arena arena;
} lact_lm_decode;

/* max_context: the most tokens a sequence will reach (sizes the causal
 * attention caches). */
lact_status lact_lm_decode_init(lact_ctx *ctx, lact_lm *m, lact_lm_decode *st, int64_t batch,
                                int64_t max_tokens, int64_t max_context);
void lact_lm_decode_free(lact_lm_decode *st);
/* ids [B, T] I32, 1 ≤ T ≤ max_tokens: the next T tokens. logits (F32) is
 * [B, T, V] (every position) or [B, V] (each sequence's last token). ids
 * and logits may each be on the host or on the context's device. */
lact_status lact_lm_decode_step(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *logits,
                                const lact_tensor *ids);
/* The whole prompt ids [B, n] (host) in steps of up to max_tokens; logits
 * [B, V] of the last token. */
lact_status lact_lm_decode_prefill(lact_ctx *ctx, lact_lm_decode *st, lact_tensor *logits,
                                   const lact_tensor *ids);

/* Sampling one id from a row of logits:
 *   temperature 0 (or top_k 1): the argmax (the lowest id among ties);
 *   else softmax(logits / temperature) restricted to the top_k largest
 *   (top_k 0: all), then to the smallest most-likely prefix whose
 *   probability reaches top_p (nucleus; 1: all), renormalised, and drawn
 *   with u = lact_philox_uniform(seed, stream, position): a (seed, stream,
 *   position) always gives the same id. Ids ≥ n_allowed are never drawn
 *   (a vocabulary padded past the tokenizer's). */
typedef struct lact_sample_cfg {
    float temperature;
    int64_t top_k;
    float top_p;
    uint64_t seed;
} lact_sample_cfg;

typedef struct lact_sample_entry {
    float p;
    int32_t id;
} lact_sample_entry;

typedef struct lact_sampler {
    lact_sample_cfg cfg;
    int64_t vocab;
    lact_sample_entry *entries; /* [vocab] scratch */
} lact_sampler;

lact_status lact_sampler_init(lact_sampler *s, const lact_sample_cfg *cfg, int64_t vocab);
void lact_sampler_free(lact_sampler *s);
/* One id from logits[0..n_allowed) (n_allowed ≤ vocab). */
int32_t lact_sampler_pick(lact_sampler *s, const float *logits, int64_t n_allowed, uint64_t stream,
                          uint64_t position);

#ifdef __cplusplus
}
#endif
#endif
