/* Shared pieces of the mesa CUDA files: the problem as the kernels see it,
 * the per-call buffers, and the launchers of the stages (docs/mesa.md).
 *
 * Every stage works on items (bh, c): chunk c of head bh, tokens
 * [c·C, c·C + T) with T = min(C, L − c·C). Token arrays keep the op's
 * layout [BH, L, d] (an item's rows are contiguous); per-item matrices are
 * [items, d, d] (states) or [items, C, C] (generic scratch). Per-token
 * scalars, computed once per call (mesa_prep):
 *   lc  ℓ_i, the in-chunk cumulative sum of g
 *   bt  β_i
 *   gm  γ̄_i = exp(ℓ_i)
 *   wf  exp(ℓ_{T−1} − ℓ_i) β_i, the weight of token i in the next chunk's state
 * States (stored in S = float for the generic kernels, bf16 for the
 * tensor-core ones), all k-major so that row-form products need no
 * transpose:
 *   Hs[c] = H at the start of chunk c            (symmetric)
 *   Gt[c] = Gᵀ at the start of chunk c           ([k, v])
 *   dH[c] = ∂ℓ/∂H after chunk c                  ([d, d], the orientation of −y xᵀ)
 *   dG[c] = ∂ℓ/∂G after chunk c                  ([v, k], the orientation of d_o xᵀ) */
#ifndef LACT_CUDA_MESA_COMMON_CUH
#define LACT_CUDA_MESA_COMMON_CUH

#include <stdint.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/mesa_cuda.h"

/* Guards the CG divisions, as in the CPU reference. */
#define MESA_CG_EPS 1e-30f

typedef struct mesa_geom {
    int64_t b, h, bh, len, d, chunk, nc, items;
    int steps;
} mesa_geom;

static inline mesa_geom mesa_geom_of(const lact_mesa_cuda_in *in) {
    mesa_geom G;
    G.b = in->b, G.h = in->h, G.bh = in->b * in->h, G.len = in->len, G.d = in->d;
    G.chunk = in->chunk < in->len ? in->chunk : in->len;
    G.nc = (G.len + G.chunk - 1) / G.chunk;
    G.items = G.bh * G.nc;
    G.steps = in->cg_steps;
    return G;
}

/* Item n = bh·nc + c: its head, first token row (in [BH·L]) and length. */
typedef struct mesa_item {
    int64_t bh, c, row, T;
} mesa_item;

static __host__ __device__ __forceinline__ mesa_item mesa_item_of(const mesa_geom &G, int64_t n) {
    mesa_item it;
    it.bh = n / G.nc, it.c = n % G.nc;
    int64_t s = it.c * G.chunk;
    it.row = it.bh * G.len + s;
    it.T = G.len - s < G.chunk ? G.len - s : G.chunk;
    return it;
}

/* Per-token scalars (see above), [BH·L] each. */
typedef struct mesa_tok {
    float *lc, *bt, *gm, *wf;
} mesa_tok;

/* The bytes of a state array. */
static inline size_t mesa_state_bytes(const mesa_geom &G, bool bf) {
    return (size_t)(G.items * G.d * G.d) * (bf ? 2 : 4);
}

/* A cached device buffer of at least bytes for the context's stream. */
lact_status mesa_workspace(lact_ctx *ctx, size_t bytes, void **out);

/* Bump allocation in 256-byte steps; with base NULL it only measures. */
static inline void *mesa_carve(char *base, size_t *off, size_t bytes) {
    void *p = base ? base + *off : NULL;
    *off += (bytes + 255) & ~(size_t)255;
    return p;
}

/* ---- generic kernels (mesa_generic.cu), any d and chunk ------------------- */

/* Per-token scalars from g, beta (activation dtype). */
lact_status mesa_prep(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, const void *g,
                      const void *beta, const mesa_tok &tok);

/* Forward scan: Hs, Gt for every chunk (S = bf16 when bf), and h_last,
 * g_last (F32, NULL to skip). */
lact_status mesa_gen_states(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                            const void *k, const void *v, const mesa_tok &tok, void *Hs, void *Gt,
                            float *h_last, float *g_last);

/* Reverse scan: dH, dG after every chunk from Y, d_o, X (Y and X of the
 * state type). */
lact_status mesa_gen_adjoints(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                              const void *y, const void *d_o, const void *x, const mesa_tok &tok,
                              void *dH, void *dG);

typedef enum mesa_solve_mode {
    MESA_SOLVE_FWD,  /* x = A⁻¹ q, then o; x kept in x_out when given */
    MESA_SOLVE_X,    /* x = A⁻¹ q into x_out */
    MESA_SOLVE_ADJ,  /* u = Gᵀ d_o, then y = A⁻¹ u into x_out */
    MESA_SOLVE_RESID /* no solve: the residual of x_in */
} mesa_solve_mode;

/* Buffers of one generic solve call. */
typedef struct mesa_solve_io {
    const void *q, *k, *v, *d_o; /* activation dtype */
    const float *lambda;
    const void *Hs, *Gt; /* state type */
    void *o;             /* activation dtype */
    void *x_act;         /* FWD: the solutions in the activation dtype, or NULL */
    void *x_out;         /* state type: X or Y */
    const float *x_in;   /* RESID: the solutions, fp32 */
    float *resid;        /* device scalar, max-updated (RESID and FWD) */
    /* generic scratch: [BH·L·d] ×3, [items·C·C], [BH·L] */
    float *r, *p, *ap, *s, *rr;
    float *x; /* [BH·L·d] fp32 solutions (FWD, X, ADJ) */
} mesa_solve_io;

lact_status mesa_gen_solve(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                           mesa_solve_mode mode, const mesa_tok &tok, const mesa_solve_io &io);

/* Buffers of the generic gradient stage. */
typedef struct mesa_grad_io {
    const void *k, *v, *d_o; /* activation dtype */
    const void *x, *y;       /* state type */
    const void *Hs, *Gt, *dH, *dG;
    void *dk, *dv, *dg, *dbeta; /* activation dtype, each may be NULL */
    float *et, *gft, *zt;       /* generic scratch [items·C·C] */
    float *dl, *sv;             /* generic scratch [BH·L] */
} mesa_grad_io;

lact_status mesa_gen_grads(lact_ctx *ctx, const mesa_geom &G, lact_dtype act, bool bf,
                           const mesa_tok &tok, const mesa_grad_io &io);

/* d_lambda[h, e] = −Σ_{b, l} y ⊙ x (x, y of the state type). */
lact_status mesa_dlambda(lact_ctx *ctx, const mesa_geom &G, bool bf, const void *x, const void *y,
                         float *d_lambda);

/* n elements from src (F32 or BF16) into dst (F32 or BF16). */
lact_status mesa_convert(lact_ctx *ctx, lact_dtype dst_dt, void *dst, lact_dtype src_dt,
                         const void *src, int64_t n);

/* ---- tensor-core kernels (mesa_tc_*.cu), BF16, d ≤ 128, chunk ≤ 64 -------- */

lact_status mesa_tc_states(lact_ctx *ctx, const mesa_geom &G, const bf16 *k, const bf16 *v,
                           const mesa_tok &tok, bf16 *Hs, bf16 *Gt, float *h_last, float *g_last);
lact_status mesa_tc_adjoints(lact_ctx *ctx, const mesa_geom &G, const bf16 *y, const bf16 *d_o,
                             const bf16 *x, const mesa_tok &tok, bf16 *dH, bf16 *dG);

/* The same modes as mesa_gen_solve except RESID; o, x_out bf16, x32 fp32
 * solutions (FWD, optional). */
typedef struct mesa_tc_solve_io {
    const bf16 *q, *k, *v, *d_o;
    const float *lambda;
    const bf16 *Hs, *Gt;
    bf16 *o, *x_out;
    float *x32;
} mesa_tc_solve_io;

lact_status mesa_tc_solve(lact_ctx *ctx, const mesa_geom &G, mesa_solve_mode mode,
                          const mesa_tok &tok, const mesa_tc_solve_io &io);

typedef struct mesa_tc_grad_io {
    const bf16 *k, *v, *d_o, *x, *y;
    const bf16 *Hs, *Gt, *dH, *dG;
    bf16 *dk, *dv, *dg, *dbeta; /* each may be NULL */
} mesa_tc_grad_io;

lact_status mesa_tc_grads(lact_ctx *ctx, const mesa_geom &G, const mesa_tok &tok,
                          const mesa_tc_grad_io &io);

#endif
