/* A pre-norm residual block: for x [B, L, D],
 *
 *   h   = x + mixer(rmsnorm(x) · norm1)
 *   out = h + mlp(rmsnorm(h) · norm2)
 *
 * The mixer is the LaCT layer (with its sliding-window branch), the gated
 * attention layer or the Mesa layer, all causal; the MLP is SwiGLU (mlp.h).
 * Parameters under "<prefix>.": norm1 norm2 [D], then "lact.", "attn." or
 * "mesa.", and "mlp.".
 * Conventions as the layers: forward keeps what backward needs in the arena
 * (x must stay valid until backward), parameter gradients accumulate, dx is
 * overwritten. */
#ifndef LACT_NN_BLOCK_H
#define LACT_NN_BLOCK_H

#include "core/nn/attn_layer.h"
#include "core/nn/mesa_layer.h"
#include "core/nn/mlp.h"
#include "core/nn/ttt_layer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_mixer {
    LACT_MIXER_LACT = 0,
    LACT_MIXER_ATTENTION = 1,
    LACT_MIXER_MESA = 2,
} lact_mixer;

/* "lact", "attention" (or "attn"), "mesa"; false for anything else. */
bool lact_mixer_parse(const char *name, lact_mixer *out);
const char *lact_mixer_name(lact_mixer m);

typedef struct lact_block_cfg {
    int64_t dim;
    lact_mixer mixer;
    lact_ttt_layer_cfg lact;  /* used when mixer is LACT */
    lact_attn_layer_cfg attn; /* used when mixer is ATTENTION */
    lact_mesa_layer_cfg mesa; /* used when mixer is MESA */
    int64_t mlp_hidden;
    float init_std, out_std; /* the MLP's projections */
    float norm_eps;
} lact_block_cfg;

typedef struct lact_block {
    lact_block_cfg cfg;
    lact_params *params;
    int norm1, norm2;
    lact_ttt_layer lact;
    lact_attn_layer attn;
    lact_mesa_layer mesa;
    lact_mlp mlp;
} lact_block;

typedef struct lact_block_saved {
    lact_tensor x;         /* the caller's input */
    lact_tensor n1, rstd1; /* normed input of the mixer */
    lact_tensor h;         /* [B, L, D] after the mixer's residual */
    lact_tensor n2, rstd2; /* normed input of the MLP */
    lact_ttt_layer_saved lact;
    lact_attn_layer_saved attn;
    lact_mesa_layer_saved mesa;
    lact_mlp_saved mlp;
} lact_block_saved;

lact_status lact_block_declare(lact_block *b, lact_params *p, const char *prefix,
                               const lact_block_cfg *cfg);
void lact_block_free(lact_block *b);
/* out [B, L, D] from x (out must not alias x). */
lact_status lact_block_forward(lact_ctx *ctx, lact_block *b, lact_arena *arena, lact_block_saved *s,
                               lact_tensor *out, const lact_tensor *x);
/* dx (overwritten, may alias nothing the block saved) from dout. */
lact_status lact_block_backward(lact_ctx *ctx, lact_block *b, lact_arena *arena,
                                const lact_block_saved *s, lact_tensor *dx,
                                const lact_tensor *dout);

#ifdef __cplusplus
}
#endif
#endif
