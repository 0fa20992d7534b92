/* The mesa op on CUDA: the order of the stages and their buffers
 * (docs/mesa.md). Forward: per-token scalars, chunk-start states by a scan
 * over chunks, then every chunk's CG solve and output at once. Backward:
 * the same states, the solutions x again, the adjoint solve y, the state
 * adjoints by a reverse scan, then every chunk's gradients at once. Each
 * stage runs on the tensor-core kernels or the generic ones (mesa_cuda.h);
 * all temporaries come from one cached device workspace per stream. */
#include <string.h>

#include "core/base/device.h"
#include "kernels/cuda/mesa_common.cuh"

/* ---- the cached workspace ------------------------------------------------------ */

/* One device buffer per stream, grown when a call needs more (common.cuh). */
lact_status mesa_workspace(lact_ctx *ctx, size_t bytes, void **out) {
    return lact_cuda_buffer(ctx, LACT_BUF_MESA, bytes, out);
}

/* ---- stage selection ------------------------------------------------------------ */

extern "C" int lact_cuda_mesa_tc_ok(const lact_mesa_cuda_in *in) {
    int64_t chunk = in->chunk < in->len ? in->chunk : in->len;
    return in->act == LACT_BF16 && in->d % 8 == 0 && in->d <= 128 && chunk <= 64;
}

static lact_status stage_mask(const lact_mesa_cuda_in *in, int *mask) {
    if (in->act != LACT_F32 && in->act != LACT_BF16)
        return lact_fail(LACT_E_UNSUPPORTED, "mesa: dtype %s has no CUDA kernel",
                         lact_dtype_name(in->act));
    int all = LACT_MESA_TC_SCAN | LACT_MESA_TC_SOLVE | LACT_MESA_TC_GRAD;
    bool ok = lact_cuda_mesa_tc_ok(in);
    if (in->impl == LACT_MESA_IMPL_AUTO) {
        *mask = ok ? all : 0;
        return LACT_OK;
    }
    if ((in->impl & ~all) != 0)
        return lact_fail(LACT_E_ARG, "mesa: unknown stage mask %d", in->impl);
    if (in->impl && !ok)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "mesa: the tensor-core kernels need BF16, d <= 128 and a multiple of 8, "
                         "chunk <= 64 (got %s, d = %lld, chunk = %lld)",
                         lact_dtype_name(in->act), (long long)in->d, (long long)in->chunk);
    *mask = in->impl;
    return LACT_OK;
}

/* ---- buffers of one call --------------------------------------------------------- */

typedef struct mesa_bufs {
    mesa_tok tok;
    void *Hs, *Gt, *dH, *dG; /* state type */
    void *X, *Y;             /* state type, [BH·L·d] */
    float *x32, *r, *p, *ap, *s, *rr;
    float *et, *gft, *zt, *dl, *sv;
    float *resid;
} mesa_bufs;

/* What a call needs: the backward's adjoint states and gradient scratch,
 * the generic solve's vectors, the fp32 solutions for the residual. */
typedef struct mesa_plan {
    bool bwd, bf, gen_solve, gen_grads, resid, own_y, own_x;
} mesa_plan;

static void layout(const mesa_geom &G, const mesa_plan &pl, char *base, size_t *off, mesa_bufs *b) {
    int64_t ntok = G.bh * G.len, nvec = ntok * G.d, nsq = G.items * G.chunk * G.chunk;
    size_t es = pl.bf ? 2 : 4, sb = mesa_state_bytes(G, pl.bf);
    memset(b, 0, sizeof *b);
    b->tok.lc = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    b->tok.bt = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    b->tok.gm = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    b->tok.wf = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    b->resid = (float *)mesa_carve(base, off, 4);
    b->Hs = mesa_carve(base, off, sb);
    b->Gt = mesa_carve(base, off, sb);
    if (pl.bwd) {
        b->dH = mesa_carve(base, off, sb);
        b->dG = mesa_carve(base, off, sb);
        if (pl.own_x) b->X = mesa_carve(base, off, (size_t)nvec * es);
        if (pl.own_y) b->Y = mesa_carve(base, off, (size_t)nvec * es);
    }
    if (pl.gen_solve || pl.resid) {
        b->x32 = (float *)mesa_carve(base, off, (size_t)nvec * 4);
        b->ap = (float *)mesa_carve(base, off, (size_t)nvec * 4);
        b->s = (float *)mesa_carve(base, off, (size_t)nsq * 4);
    }
    if (pl.gen_solve) {
        b->r = (float *)mesa_carve(base, off, (size_t)nvec * 4);
        b->p = (float *)mesa_carve(base, off, (size_t)nvec * 4);
        b->rr = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    }
    if (pl.bwd && pl.gen_grads) {
        b->et = (float *)mesa_carve(base, off, (size_t)nsq * 4);
        b->gft = (float *)mesa_carve(base, off, (size_t)nsq * 4);
        b->zt = (float *)mesa_carve(base, off, (size_t)nsq * 4);
        b->dl = (float *)mesa_carve(base, off, (size_t)ntok * 4);
        b->sv = (float *)mesa_carve(base, off, (size_t)ntok * 4);
    }
}

static lact_status buffers(lact_ctx *ctx, const mesa_geom &G, const mesa_plan &pl, mesa_bufs *b) {
    size_t bytes = 0;
    layout(G, pl, NULL, &bytes, b);
    void *base = NULL;
    LACT_TRY(mesa_workspace(ctx, bytes, &base));
    bytes = 0;
    layout(G, pl, (char *)base, &bytes, b);
    return LACT_OK;
}

static lact_status states(lact_ctx *ctx, const mesa_geom &G, const lact_mesa_cuda_in *in, int mask,
                          const mesa_bufs &b, float *h_last, float *g_last) {
    LACT_TRY(mesa_prep(ctx, G, in->act, in->g, in->beta, b.tok));
    if (mask & LACT_MESA_TC_SCAN)
        return mesa_tc_states(ctx, G, (const bf16 *)in->k, (const bf16 *)in->v, b.tok, (bf16 *)b.Hs,
                              (bf16 *)b.Gt, h_last, g_last);
    return mesa_gen_states(ctx, G, in->act, mask != 0, in->k, in->v, b.tok, b.Hs, b.Gt, h_last,
                           g_last);
}

/* One solve (FWD, X or ADJ) on the chosen kernels. */
static lact_status solve(lact_ctx *ctx, const mesa_geom &G, const lact_mesa_cuda_in *in, int mask,
                         mesa_solve_mode mode, const mesa_bufs &b, const void *d_o, void *o,
                         void *x_act, void *x_out, bool resid) {
    if (mask & LACT_MESA_TC_SOLVE) {
        mesa_tc_solve_io io;
        io.q = (const bf16 *)in->q, io.k = (const bf16 *)in->k, io.v = (const bf16 *)in->v;
        io.d_o = (const bf16 *)d_o, io.lambda = in->lambda;
        io.Hs = (const bf16 *)b.Hs, io.Gt = (const bf16 *)b.Gt;
        /* the state type is the activation dtype here */
        io.o = (bf16 *)o, io.x_out = (bf16 *)(x_act ? x_act : x_out);
        io.x32 = resid ? b.x32 : NULL;
        LACT_TRY(mesa_tc_solve(ctx, G, mode, b.tok, io));
        if (!resid) return LACT_OK;
    }
    mesa_solve_io io;
    memset(&io, 0, sizeof io);
    io.q = in->q, io.k = in->k, io.v = in->v, io.d_o = d_o, io.lambda = in->lambda;
    io.Hs = b.Hs, io.Gt = b.Gt;
    io.o = o, io.x_act = x_act, io.x_out = x_out;
    io.resid = resid ? b.resid : NULL;
    io.r = b.r, io.p = b.p, io.ap = b.ap, io.s = b.s, io.rr = b.rr, io.x = b.x32;
    if (mask & LACT_MESA_TC_SOLVE) { /* the residual of what the tensor-core solve found */
        io.x_in = b.x32;
        return mesa_gen_solve(ctx, G, in->act, true, MESA_SOLVE_RESID, b.tok, io);
    }
    return mesa_gen_solve(ctx, G, in->act, mask != 0, mode, b.tok, io);
}

/* ---- forward ----------------------------------------------------------------------- */

extern "C" lact_status lact_cuda_mesa_forward(lact_ctx *ctx, void *o, void *x, float *h_last,
                                              float *g_last, float *residual,
                                              const lact_mesa_cuda_in *in) {
    int mask = 0;
    LACT_TRY(stage_mask(in, &mask));
    mesa_geom G = mesa_geom_of(in);
    mesa_plan pl = {false, mask != 0, !(mask & LACT_MESA_TC_SOLVE), false, residual != NULL,
                    false, false};
    mesa_bufs b;
    LACT_TRY(buffers(ctx, G, pl, &b));
    cudaStream_t st = lact_cuda_stream(ctx);
    if (residual) LACT_CU(cudaMemsetAsync(b.resid, 0, sizeof(float), st));
    LACT_TRY(states(ctx, G, in, mask, b, h_last, g_last));
    LACT_TRY(solve(ctx, G, in, mask, MESA_SOLVE_FWD, b, NULL, o, x, NULL, residual != NULL));
    if (residual) {
        LACT_CU(cudaMemcpyAsync(residual, b.resid, sizeof(float), cudaMemcpyDeviceToHost, st));
        LACT_CU(cudaStreamSynchronize(st));
    }
    return LACT_OK;
}

/* ---- backward ---------------------------------------------------------------------- */

extern "C" lact_status lact_cuda_mesa_backward(lact_ctx *ctx, const lact_mesa_cuda_grad *grad,
                                               const void *d_o, const void *x,
                                               const lact_mesa_cuda_in *in) {
    int mask = 0;
    LACT_TRY(stage_mask(in, &mask));
    mesa_geom G = mesa_geom_of(in);
    bool bf = mask != 0;
    /* y goes straight into d_q when that has the state type */
    bool y_in_dq = grad->q && (bf || in->act == LACT_F32);
    /* the saved x serves as it is when it has the state type */
    bool x_as_is = x && (bf || in->act == LACT_F32);
    mesa_plan pl = {
        true,     bf,      !(mask & LACT_MESA_TC_SOLVE), !(mask & LACT_MESA_TC_GRAD), false,
        !y_in_dq, !x_as_is};
    mesa_bufs b;
    LACT_TRY(buffers(ctx, G, pl, &b));
    if (y_in_dq) b.Y = grad->q;
    if (x_as_is) b.X = (void *)x;
    lact_dtype sdt = bf ? LACT_BF16 : LACT_F32;
    int64_t nvec = G.bh * G.len * G.d;
    LACT_TRY(states(ctx, G, in, mask, b, NULL, NULL));
    if (!x)
        LACT_TRY(solve(ctx, G, in, mask, MESA_SOLVE_X, b, NULL, NULL, NULL, b.X, false));
    else if (!x_as_is)
        LACT_TRY(mesa_convert(ctx, sdt, b.X, in->act, x, nvec));
    LACT_TRY(solve(ctx, G, in, mask, MESA_SOLVE_ADJ, b, d_o, NULL, NULL, b.Y, false));
    if (grad->q && !y_in_dq) LACT_TRY(mesa_convert(ctx, in->act, grad->q, sdt, b.Y, nvec));
    if (!grad->k && !grad->v && !grad->g && !grad->beta) {
        if (grad->lambda) return mesa_dlambda(ctx, G, bf, b.X, b.Y, grad->lambda);
        return LACT_OK;
    }
    if (mask & LACT_MESA_TC_SCAN)
        LACT_TRY(mesa_tc_adjoints(ctx, G, (const bf16 *)b.Y, (const bf16 *)d_o, (const bf16 *)b.X,
                                  b.tok, (bf16 *)b.dH, (bf16 *)b.dG));
    else
        LACT_TRY(mesa_gen_adjoints(ctx, G, in->act, bf, b.Y, d_o, b.X, b.tok, b.dH, b.dG));
    if (mask & LACT_MESA_TC_GRAD) {
        mesa_tc_grad_io io;
        io.k = (const bf16 *)in->k, io.v = (const bf16 *)in->v, io.d_o = (const bf16 *)d_o;
        io.x = (const bf16 *)b.X, io.y = (const bf16 *)b.Y;
        io.Hs = (const bf16 *)b.Hs, io.Gt = (const bf16 *)b.Gt;
        io.dH = (const bf16 *)b.dH, io.dG = (const bf16 *)b.dG;
        io.dk = (bf16 *)grad->k, io.dv = (bf16 *)grad->v;
        io.dg = (bf16 *)grad->g, io.dbeta = (bf16 *)grad->beta;
        LACT_TRY(mesa_tc_grads(ctx, G, b.tok, io));
    } else {
        mesa_grad_io io;
        io.k = in->k, io.v = in->v, io.d_o = d_o, io.x = b.X, io.y = b.Y;
        io.Hs = b.Hs, io.Gt = b.Gt, io.dH = b.dH, io.dG = b.dG;
        io.dk = grad->k, io.dv = grad->v, io.dg = grad->g, io.dbeta = grad->beta;
        io.et = b.et, io.gft = b.gft, io.zt = b.zt, io.dl = b.dl, io.sv = b.sv;
        LACT_TRY(mesa_gen_grads(ctx, G, in->act, bf, b.tok, io));
    }
    if (grad->lambda) LACT_TRY(mesa_dlambda(ctx, G, bf, b.X, b.Y, grad->lambda));
    return LACT_OK;
}

/* ---- value checks ------------------------------------------------------------------ */

template <class T>
__global__ void find_bad_kernel(const T *g, const T *beta, int64_t n, int64_t m,
                                const float *lambda, int64_t nl, unsigned long long *first) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < m;
         i += (int64_t)gridDim.x * blockDim.x) {
        if (i < n) {
            float gv = ld(g, i), bv = ld(beta, i);
            if (!(isfinite(gv) && gv <= 0.0f)) atomicMin(&first[0], (unsigned long long)i);
            if (!(bv >= 0.0f && bv <= 1.0f)) atomicMin(&first[1], (unsigned long long)i);
        }
        if (i < nl && !(isfinite(lambda[i]) && lambda[i] > 0.0f))
            atomicMin(&first[2], (unsigned long long)i);
    }
}

static lact_status read_value(const void *p, lact_dtype dt, int64_t i, float *out) {
    if (dt == LACT_BF16) {
        bf16 h;
        LACT_CU(cudaMemcpy(&h, (const bf16 *)p + i, sizeof h, cudaMemcpyDeviceToHost));
        *out = __bfloat162float(h);
    } else {
        LACT_CU(cudaMemcpy(out, (const float *)p + i, sizeof *out, cudaMemcpyDeviceToHost));
    }
    return LACT_OK;
}

extern "C" lact_status lact_cuda_mesa_find_bad(lact_ctx *ctx, const lact_mesa_cuda_in *in,
                                               int64_t first[3], float value[3]) {
    void *ws = NULL;
    LACT_TRY(mesa_workspace(ctx, 3 * sizeof(unsigned long long), &ws));
    unsigned long long *dev = (unsigned long long *)ws, host[3];
    cudaStream_t st = lact_cuda_stream(ctx);
    int64_t n = in->b * in->h * in->len, nl = in->h * in->d;
    LACT_CU(cudaMemsetAsync(dev, 0xFF, sizeof host, st));
    int64_t m = n > nl ? n : nl;
    unsigned grid = lact_grid_1d(m, 256);
    if (in->act == LACT_BF16)
        find_bad_kernel<<<grid, 256, 0, st>>>((const bf16 *)in->g, (const bf16 *)in->beta, n, m,
                                              in->lambda, nl, dev);
    else
        find_bad_kernel<<<grid, 256, 0, st>>>((const float *)in->g, (const float *)in->beta, n, m,
                                              in->lambda, nl, dev);
    LACT_CU_LAUNCH("mesa_find_bad");
    LACT_CU(cudaMemcpyAsync(host, dev, sizeof host, cudaMemcpyDeviceToHost, st));
    LACT_CU(cudaStreamSynchronize(st));
    const void *src[3] = {in->g, in->beta, in->lambda};
    for (int i = 0; i < 3; i++) {
        first[i] = host[i] == ~0ull ? -1 : (int64_t)host[i];
        value[i] = 0.0f;
        if (first[i] >= 0)
            LACT_TRY(read_value(src[i], i == 2 ? LACT_F32 : in->act, first[i], &value[i]));
    }
    return LACT_OK;
}
