/* Pieces the Mesa layer's forward, backward and decode files share. */
#ifndef LACT_NN_MESA_LAYER_INTERNAL_H
#define LACT_NN_MESA_LAYER_INTERNAL_H

#include <stdbool.h>

#include "core/nn/mesa_layer.h"

/* q, k ← x / (‖x‖ + 1e-6) per head. */
#define LACT_MESA_L2_EPS 1e-6f

/* x [B, L, D] and y agree with the layer; arena, context and parameters are
 * usable. what names the caller in the message. */
lact_status lact_mesa_layer_check_io(const lact_mesa_layer *l, const lact_arena *ar,
                                     const lact_ctx *ctx, const char *what, const lact_tensor *x,
                                     const lact_tensor *y);

/* The input stage on s->x = x (s->B, s->L set): q0, k0 and the op's
 * inputs q, k, v, zg, g, beta, lambda, head-major ([B, H, L, ·], the
 * forward) or token-major ([L, B, H, ·], decode: one token's heads are one
 * contiguous [B, H, ·] block). */
lact_status lact_mesa_layer_inputs(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                   lact_mesa_layer_saved *s, const lact_tensor *x,
                                   bool token_major);

/* The output stage from s->o [B, L, H·d]: per-head RMSNorm, output gate,
 * output projection into y [B, L, D] (+ res unless NULL). */
lact_status lact_mesa_layer_output(lact_ctx *ctx, lact_mesa_layer *l, lact_arena *ar,
                                   lact_mesa_layer_saved *s, lact_tensor *y,
                                   const lact_tensor *res);

#endif
