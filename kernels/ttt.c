/* lact_ttt_*: orders, argument checks, then the CPU reference or the CUDA
 * version (kernels/cuda/ttt.cu). */
#include "kernels/ttt.h"

#include <stddef.h>

#include "kernels/cpu/ttt_ref.h"
#include "kernels/kcheck.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/ttt_cuda.h"
#endif

#define F32_ONLY LACT_DT(LACT_F32)

int64_t lact_ttt_order_causal(lact_ttt_op *ops, int64_t cap, int64_t len, int64_t chunk) {
    if (len <= 0 || chunk <= 0) return 0;
    int64_t n = (len + chunk - 1) / chunk;
    for (int64_t c = 0; ops && c < n && c < cap; c++) {
        int64_t end = (c + 1) * chunk < len ? (c + 1) * chunk : len;
        ops[c] = (lact_ttt_op){c * chunk, end, c + 1 < n, true};
    }
    return n;
}

int64_t lact_ttt_order_bidirectional(lact_ttt_op *ops, int64_t cap, int64_t len, int64_t n_ctx,
                                     int64_t chunk) {
    if (len <= 0 || chunk <= 0 || n_ctx < 0 || n_ctx > len) return 0;
    int64_t n = (n_ctx + chunk - 1) / chunk;
    for (int64_t c = 0; ops && c < n && c < cap; c++) {
        int64_t end = (c + 1) * chunk < n_ctx ? (c + 1) * chunk : n_ctx;
        ops[c] = (lact_ttt_op){c * chunk, end, true, false};
    }
    if (ops && n < cap) ops[n] = (lact_ttt_op){0, len, false, true};
    return n + 1;
}

lact_status lact_ttt_check_args(const lact_ttt_args *args, int64_t len) {
    if (!args) return lact_fail(LACT_E_ARG, "ttt: args is NULL");
    if (args->n_ops <= 0 || !args->ops)
        return lact_fail(LACT_E_ARG, "ttt: the order has no operations");
    if (args->muon != LACT_TTT_MUON_OFF && args->muon != LACT_TTT_MUON_TABLE &&
        args->muon != LACT_TTT_MUON_FIXED)
        return lact_fail(LACT_E_ARG, "ttt: muon = %d is not off (0), table (1) or fixed (2)",
                         (int)args->muon);
    if (args->save_every < 0 || args->save_every > 2)
        return lact_fail(LACT_E_ARG, "ttt: save_every = %d is not 1 (every update) or 2",
                         args->save_every);
    for (int64_t j = 0; j < args->n_ops; j++) {
        const lact_ttt_op *op = &args->ops[j];
        if (op->start < 0 || op->end <= op->start || op->end > len)
            return lact_fail(LACT_E_ARG,
                             "ttt: operation %lld covers [%lld, %lld), not a non-empty range "
                             "inside [0, %lld)",
                             (long long)j, (long long)op->start, (long long)op->end,
                             (long long)len);
        if (!op->update && !op->apply)
            return lact_fail(LACT_E_ARG, "ttt: operation %lld neither updates nor applies",
                             (long long)j);
    }
    return LACT_OK;
}

int64_t lact_ttt_n_updates(const lact_ttt_args *args) {
    int64_t n = 0;
    for (int64_t j = 0; j < args->n_ops; j++)
        n += args->ops[j].update;
    return n;
}

static int64_t save_every(const lact_ttt_args *args) {
    return args->save_every > 1 ? args->save_every : 1;
}

int64_t lact_ttt_state_ns_numel(const lact_ttt_args *args, int64_t d, int64_t dh) {
    if (!args->keep_ns || args->muon == LACT_TTT_MUON_OFF || save_every(args) != 1) return 0;
    return 9 * d * dh + 4; /* 6 · 3 · d · dh BF16, 3 norms, 1 pad */
}

int64_t lact_ttt_state_snap_numel(const lact_ttt_args *args, bool momentum, int64_t d, int64_t dh) {
    int64_t snaps = lact_ttt_n_updates(args) / save_every(args) * (momentum ? 6 : 3) * d * dh;
    return args->state_bf16 ? (snaps + 1) / 2 : snaps;
}

int64_t lact_ttt_state_numel(const lact_ttt_args *args, bool momentum, int64_t d, int64_t dh) {
    return lact_ttt_state_snap_numel(args, momentum, d, dh) +
           lact_ttt_n_updates(args) * lact_ttt_state_ns_numel(args, d, dh);
}

int64_t lact_ttt_state_slot(const lact_ttt_args *args, int64_t u) {
    int64_t s = save_every(args);
    return u > 0 && u % s == 0 && u <= lact_ttt_n_updates(args) ? u / s - 1 : -1;
}

int64_t lact_ttt_state_offset(int64_t n, bool momentum, int64_t d, int64_t dh, int64_t slot,
                              int64_t h, int i, bool moment) {
    static const int pos[3] = {0, 2, 1}; /* W0, W1, W2 -> position in W0 | W2 | W1 */
    int64_t nel = d * dh, snap = (momentum ? 6 : 3) * nel * n;
    return slot * snap + (moment ? 3 * nel * n : 0) + h * 3 * nel + pos[i] * nel;
}

/* t is an F32 tensor of exactly the given shape on ctx's device. */
static lact_status check_shape_dt(const lact_ctx *ctx, const char *op, const char *name,
                                  const lact_tensor *t, unsigned dtypes, int ndim, int64_t d0,
                                  int64_t d1, int64_t d2) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, dtypes));
    int64_t want[3] = {d0, d1, d2};
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (ok) return LACT_OK;
    char buf[96];
    if (ndim == 2)
        return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected [%lld, %lld]", op, name,
                         lact_kcheck_shape_str(t, buf, sizeof buf), (long long)d0, (long long)d1);
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected [%lld, %lld, %lld]", op, name,
                     lact_kcheck_shape_str(t, buf, sizeof buf), (long long)d0, (long long)d1,
                     (long long)d2);
}

static lact_status check_shape(const lact_ctx *ctx, const char *op, const char *name,
                               const lact_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    return check_shape_dt(ctx, op, name, t, F32_ONLY, ndim, d0, d1, d2);
}

/* An activation (q, k, v, o and their gradients): F32 on the CPU, F32 or
 * BF16 on CUDA, of the dtype of q. */
static lact_status check_act(const lact_ctx *ctx, const char *op, const char *name,
                             const lact_tensor *t, const lact_tensor *q) {
    LACT_TRY(check_shape_dt(ctx, op, name, t, lact_kcheck_act_dtypes(ctx), 3, q->shape[0],
                            q->shape[1], q->shape[2]));
    return lact_kcheck_same_dtype(op, name, t, "q", q);
}

static bool present(const lact_tensor *t) {
    return t && t->data;
}

/* Checks every input and the order; fills dims. */
static lact_status check_inputs(lact_ctx *ctx, const char *op, const lact_tensor *q,
                                const lact_tensor *k, const lact_tensor *v, const lact_tensor *lr0,
                                const lact_tensor *lr1, const lact_tensor *lr2,
                                const lact_tensor *momentum, const lact_tensor *w0,
                                const lact_tensor *w1, const lact_tensor *w2,
                                const lact_ttt_args *args, lact_ttt_dims *dims) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "q", q, lact_kcheck_act_dtypes(ctx)));
    if (q->ndim != 3 || q->shape[0] < 1 || q->shape[1] < 1 || q->shape[2] < 1) {
        char buf[96];
        return lact_fail(LACT_E_ARG, "%s: q has shape %s, expected [N, L, d]", op,
                         lact_kcheck_shape_str(q, buf, sizeof buf));
    }
    int64_t N = q->shape[0], L = q->shape[1], d = q->shape[2];
    LACT_TRY(lact_kcheck_tensor(ctx, op, "w0", w0, F32_ONLY));
    if (w0->ndim != 3 || w0->shape[0] < 1 || N % w0->shape[0] != 0 || w0->shape[1] < 1) {
        char buf[96];
        return lact_fail(LACT_E_ARG,
                         "%s: w0 has shape %s, expected [Nw, dh, d] with Nw dividing "
                         "N = %lld",
                         op, lact_kcheck_shape_str(w0, buf, sizeof buf), (long long)N);
    }
    int64_t dh = w0->shape[1], Nw = w0->shape[0];
    LACT_TRY(check_act(ctx, op, "k", k, q));
    LACT_TRY(check_act(ctx, op, "v", v, q));
    LACT_TRY(check_shape(ctx, op, "lr0", lr0, 2, N, L, 0));
    LACT_TRY(check_shape(ctx, op, "lr1", lr1, 2, N, L, 0));
    LACT_TRY(check_shape(ctx, op, "lr2", lr2, 2, N, L, 0));
    if (present(momentum)) LACT_TRY(check_shape(ctx, op, "momentum", momentum, 2, N, L, 0));
    LACT_TRY(check_shape(ctx, op, "w0", w0, 3, Nw, dh, d));
    LACT_TRY(check_shape(ctx, op, "w1", w1, 3, Nw, d, dh));
    LACT_TRY(check_shape(ctx, op, "w2", w2, 3, Nw, dh, d));
    LACT_TRY(lact_ttt_check_args(args, L));
    *dims = (lact_ttt_dims){N, L, d, dh, Nw};
    return LACT_OK;
}

static lact_ttt_in_f32 make_in(const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                               const lact_tensor *lr0, const lact_tensor *lr1,
                               const lact_tensor *lr2, const lact_tensor *momentum,
                               const lact_tensor *w0, const lact_tensor *w1,
                               const lact_tensor *w2) {
    return (lact_ttt_in_f32){q->data,
                             k->data,
                             v->data,
                             lr0->data,
                             lr1->data,
                             lr2->data,
                             present(momentum) ? momentum->data : NULL,
                             w0->data,
                             w1->data,
                             w2->data};
}

#if LACT_WITH_CUDA
static lact_ttt_cuda_in make_cuda_in(const lact_tensor *q, const lact_tensor *k,
                                     const lact_tensor *v, const lact_tensor *lr0,
                                     const lact_tensor *lr1, const lact_tensor *lr2,
                                     const lact_tensor *momentum, const lact_tensor *w0,
                                     const lact_tensor *w1, const lact_tensor *w2,
                                     const lact_ttt_dims *dims) {
    /* The pointers as the CPU reference takes them (q, k, v in any dtype). */
    lact_ttt_in_f32 f = make_in(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2);
    return (lact_ttt_cuda_in){.act = q->dtype,
                              .n = dims->n,
                              .len = dims->len,
                              .d = dims->d,
                              .dh = dims->dh,
                              .wn = dims->wn,
                              .q = f.q,
                              .k = f.k,
                              .v = f.v,
                              .lr0 = f.lr0,
                              .lr1 = f.lr1,
                              .lr2 = f.lr2,
                              .momentum = f.momentum,
                              .w0 = f.w0,
                              .w1 = f.w1,
                              .w2 = f.w2};
}
#endif

#if LACT_WITH_CUDA
/* The CUDA version's BF16 snapshots double as the products' BF16 weights. */
static lact_status check_cuda_state(const char *op, const lact_ttt_args *args,
                                    const lact_tensor *q) {
    if (args->state_bf16 && q->dtype != LACT_BF16)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: a BF16 state (state_bf16) on CUDA needs BF16 activations, not %s", op,
                         lact_dtype_name(q->dtype));
    return LACT_OK;
}
#endif

static lact_status check_state(lact_ctx *ctx, const char *op, const lact_tensor *state,
                               const lact_ttt_dims *dims, const lact_ttt_args *args,
                               bool momentum) {
    int64_t S = lact_ttt_state_numel(args, momentum, dims->d, dims->dh);
    return check_shape(ctx, op, "state", state, 2, dims->n, S, 0);
}

lact_status lact_ttt_forward(lact_ctx *ctx, lact_tensor *o, lact_tensor *state,
                             const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                             const lact_tensor *lr0, const lact_tensor *lr1, const lact_tensor *lr2,
                             const lact_tensor *momentum, const lact_tensor *w0,
                             const lact_tensor *w1, const lact_tensor *w2,
                             const lact_ttt_args *args) {
    const char *op = "ttt";
    lact_ttt_dims dims;
    LACT_TRY(check_inputs(ctx, op, q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2, args, &dims));
    LACT_TRY(check_act(ctx, op, "o", o, q));
    if (state) LACT_TRY(check_state(ctx, op, state, &dims, args, present(momentum)));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        LACT_TRY(check_cuda_state(op, args, q));
        lact_ttt_cuda_in cin = make_cuda_in(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2, &dims);
        return lact_cuda_ttt_forward(ctx, o->data, state ? state->data : NULL, &cin, args);
    }
#endif
    lact_ttt_in_f32 in = make_in(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2);
    return lact_cpu_ttt_forward_f32(o->data, state ? state->data : NULL, &in, &dims, args);
}

lact_status lact_ttt_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k, lact_tensor *d_v,
                              lact_tensor *d_lr0, lact_tensor *d_lr1, lact_tensor *d_lr2,
                              lact_tensor *d_momentum, lact_tensor *d_w0, lact_tensor *d_w1,
                              lact_tensor *d_w2, const lact_tensor *d_o, const lact_tensor *state,
                              const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                              const lact_tensor *lr0, const lact_tensor *lr1,
                              const lact_tensor *lr2, const lact_tensor *momentum,
                              const lact_tensor *w0, const lact_tensor *w1, const lact_tensor *w2,
                              const lact_ttt_args *args) {
    const char *op = "ttt backward";
    lact_ttt_dims dims;
    LACT_TRY(check_inputs(ctx, op, q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2, args, &dims));
    bool mom = present(momentum);
    int64_t N = dims.n, L = dims.len, d = dims.d, dh = dims.dh;
    LACT_TRY(check_act(ctx, op, "d_o", d_o, q));
    if (d_q) LACT_TRY(check_act(ctx, op, "d_q", d_q, q));
    if (d_k) LACT_TRY(check_act(ctx, op, "d_k", d_k, q));
    if (d_v) LACT_TRY(check_act(ctx, op, "d_v", d_v, q));
    if (d_lr0) LACT_TRY(check_shape(ctx, op, "d_lr0", d_lr0, 2, N, L, 0));
    if (d_lr1) LACT_TRY(check_shape(ctx, op, "d_lr1", d_lr1, 2, N, L, 0));
    if (d_lr2) LACT_TRY(check_shape(ctx, op, "d_lr2", d_lr2, 2, N, L, 0));
    if (d_momentum && !mom)
        return lact_fail(LACT_E_ARG, "%s: d_momentum is given but momentum is absent", op);
    if (d_momentum) LACT_TRY(check_shape(ctx, op, "d_momentum", d_momentum, 2, N, L, 0));
    int64_t Nw = dims.wn;
    if (d_w0) LACT_TRY(check_shape(ctx, op, "d_w0", d_w0, 3, Nw, dh, d));
    if (d_w1) LACT_TRY(check_shape(ctx, op, "d_w1", d_w1, 3, Nw, d, dh));
    if (d_w2) LACT_TRY(check_shape(ctx, op, "d_w2", d_w2, 3, Nw, dh, d));
    if (state) LACT_TRY(check_state(ctx, op, state, &dims, args, mom));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        LACT_TRY(check_cuda_state(op, args, q));
        lact_ttt_cuda_in cin = make_cuda_in(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2, &dims);
        lact_ttt_cuda_grad cg = {
            d_q ? d_q->data : NULL,
            d_k ? d_k->data : NULL,
            d_v ? d_v->data : NULL,
            d_lr0 ? d_lr0->data : NULL,
            d_lr1 ? d_lr1->data : NULL,
            d_lr2 ? d_lr2->data : NULL,
            d_momentum ? d_momentum->data : NULL,
            d_w0 ? d_w0->data : NULL,
            d_w1 ? d_w1->data : NULL,
            d_w2 ? d_w2->data : NULL,
        };
        (void)L;
        return lact_cuda_ttt_backward(ctx, &cg, d_o->data, state ? state->data : NULL, &cin, args);
    }
#endif

    lact_ttt_in_f32 in = make_in(q, k, v, lr0, lr1, lr2, momentum, w0, w1, w2);
    lact_ttt_grad_f32 g = {
        d_q ? d_q->data : NULL,
        d_k ? d_k->data : NULL,
        d_v ? d_v->data : NULL,
        d_lr0 ? d_lr0->data : NULL,
        d_lr1 ? d_lr1->data : NULL,
        d_lr2 ? d_lr2->data : NULL,
        d_momentum ? d_momentum->data : NULL,
        d_w0 ? d_w0->data : NULL,
        d_w1 ? d_w1->data : NULL,
        d_w2 ? d_w2->data : NULL,
    };
    if (state) return lact_cpu_ttt_backward_f32(&g, d_o->data, state->data, &in, &dims, args);

    /* No saved state: run the forward once more to make it. */
    int64_t S = lact_ttt_state_numel(args, mom, d, dh);
    lact_tensor st = {0}, o = {0};
    lact_status s = lact_tensor_alloc(&st, LACT_F32, LACT_CPU, 2, (int64_t[]){N, S});
    if (s == LACT_OK) s = lact_tensor_alloc(&o, LACT_F32, LACT_CPU, 3, (int64_t[]){N, L, d});
    if (s == LACT_OK) s = lact_cpu_ttt_forward_f32(o.data, st.data, &in, &dims, args);
    if (s == LACT_OK) s = lact_cpu_ttt_backward_f32(&g, d_o->data, st.data, &in, &dims, args);
    lact_tensor_free(&o);
    lact_tensor_free(&st);
    return s;
}
