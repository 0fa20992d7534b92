/* The demo model: a byte-level MLP language model built only from the base
 * ops, with a hand-written backward. It predicts byte t from the K bytes
 * before it:
 *   x   = concat(E[b(t-K)], ..., E[b(t-1)])          [B, K*C]
 *   h0  = x · W_in                                    [B, C]
 *   h_{l+1} = h_l + swiglu(n_l · W0_l, n_l · W1_l) · W2_l,  n_l = rmsnorm(h_l) * g_l
 *   loss = xent(rmsnorm(h_L) * g_f, head, b(t))
 * Parameters, gradients and AdamW moments live in one allocation; the
 * activations of a batch in one arena sized by a measuring pass. */
#ifndef LACT_APP_DEMO_MODEL_H
#define LACT_APP_DEMO_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/arena.h"
#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#define DEMO_MAX_BLOCKS 8
#define DEMO_MAX_PARAMS (4 + 4 * DEMO_MAX_BLOCKS)

typedef struct demo_config {
    int64_t vocab;   /* 256: bytes */
    int64_t dim;     /* C */
    int64_t hidden;  /* F, the SwiGLU width */
    int64_t context; /* K previous bytes */
    int64_t blocks;  /* L */
    int64_t batch;   /* B windows per step */
} demo_config;

typedef struct demo_model {
    demo_config cfg;
    lact_device device;
    int n; /* number of parameter tensors */
    char names[DEMO_MAX_PARAMS][32];
    bool decay[DEMO_MAX_PARAMS];                        /* weight decay applies (matrices) */
    lact_tensor p[DEMO_MAX_PARAMS];                     /* parameters */
    lact_tensor g[DEMO_MAX_PARAMS];                     /* gradients */
    lact_tensor m[DEMO_MAX_PARAMS], v[DEMO_MAX_PARAMS]; /* AdamW moments */
    int64_t n_values;                                   /* parameter count */
    void *block;                                        /* the one allocation */
} demo_model;

/* Activations of one batch: views into an arena. */
typedef struct demo_acts {
    lact_tensor ids, target;            /* [B*K] I32, [B] I32 */
    lact_tensor emb, x;                 /* [B*K, C] and its view [B, K*C] */
    lact_tensor h[DEMO_MAX_BLOCKS + 1]; /* residual stream [B, C] */
    lact_tensor n[DEMO_MAX_BLOCKS], rstd[DEMO_MAX_BLOCKS];
    lact_tensor a[DEMO_MAX_BLOCKS], b[DEMO_MAX_BLOCKS], s[DEMO_MAX_BLOCKS]; /* [B, F] */
    lact_tensor mlp;                                                        /* [B, C] */
    lact_tensor hf, rstd_f, loss, lse, dloss;
    lact_tensor logits; /* [B, V], for sampling */
    /* backward scratch */
    lact_tensor dhf, dh[2], ds, da, db, dn_a, dn_b, dn, dxn, dx, demb;
} demo_acts;

/* Allocates and initialises the parameters (seeded Philox normals). */
lact_status demo_model_init(demo_model *md, lact_ctx *ctx, const demo_config *cfg, uint64_t seed);
void demo_model_free(demo_model *md);
/* Bytes of the model's one allocation. */
size_t demo_model_bytes(const demo_model *md);

/* Carves every activation from the arena (a measuring arena records the
 * size without memory). */
lact_status demo_acts_plan(demo_acts *act, lact_arena *arena, const demo_config *cfg);

/* loss[B] from ids and target. */
lact_status demo_forward(lact_ctx *ctx, const demo_model *md, demo_acts *act);
/* Gradients of mean(loss) into md->g (needs act->dloss = 1/B). */
lact_status demo_backward(lact_ctx *ctx, demo_model *md, demo_acts *act);
/* logits = rmsnorm(h_L) · headᵀ after a forward. */
lact_status demo_logits(lact_ctx *ctx, const demo_model *md, demo_acts *act);
/* One AdamW step on every parameter. */
lact_status demo_adamw(lact_ctx *ctx, demo_model *md, float lr, float weight_decay, int64_t step);

#endif
