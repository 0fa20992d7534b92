#include "nn_ops.h"

#include <math.h>

#include "core/base/device.h"
#include "core/nn/params.h"
#include "kernels/kernels.h"

lact_tensor lact_nn_view(const lact_tensor *t, int ndim, const int64_t *shape) {
    lact_tensor v = lact_tensor_view(t->data, t->dtype, t->device, ndim, shape);
    if (ndim >= 0 && ndim <= LACT_MAX_DIMS && lact_tensor_is_contiguous(t) &&
        lact_tensor_numel(&v) <= lact_tensor_numel(t))
        return v;
    /* A bad view is a bug in the caller: an empty tensor makes the next
     * kernel's shape check name it. */
    int64_t zero = 0;
    return lact_tensor_view(NULL, t->dtype, t->device, 1, &zero);
}

lact_status lact_nn_alloc(lact_arena *arena, lact_tensor *t, int ndim, const int64_t *shape) {
    return lact_arena_tensor(arena, t, LACT_F32, ndim, shape);
}

lact_status lact_nn_check_act(const struct lact_params *p, const lact_tensor *x, const char *what) {
    if (x->dtype == LACT_F32) return LACT_OK;
    if (x->dtype != LACT_BF16)
        return lact_fail(LACT_E_ARG, "%s: activations of dtype %s (F32 or BF16)", what,
                         lact_dtype_name(x->dtype));
    if (!p->shadow)
        return lact_fail(LACT_E_ARG,
                         "%s: BF16 activations need the parameters' BF16 shadow "
                         "(lact_params_alloc_shadow)",
                         what);
    return LACT_OK;
}

lact_status lact_nn_decode_check(const lact_ctx *ctx, const struct lact_params *p, int64_t batch,
                                 int64_t max_tokens, const char *what) {
    if (batch < 1 || max_tokens < 1)
        return lact_fail(LACT_E_ARG, "%s: batch %lld and max_tokens %lld must be positive", what,
                         (long long)batch, (long long)max_tokens);
    if (!p->allocated || p->device != ctx->device)
        return lact_fail(LACT_E_ARG, "%s: the parameters must be allocated on the context's %s",
                         what, lact_device_name(ctx->device));
    return LACT_OK;
}

lact_status lact_nn_decode_io_check(const lact_ctx *ctx, const lact_tensor *x, const lact_tensor *y,
                                    const char *what) {
    if (x->device != ctx->device || y->device != ctx->device || x->dtype != LACT_F32 ||
        y->dtype != LACT_F32 || !lact_tensor_is_contiguous(x) || !lact_tensor_is_contiguous(y))
        return lact_fail(LACT_E_ARG, "%s: x and y must be contiguous F32 on the context's %s", what,
                         lact_device_name(ctx->device));
    return LACT_OK;
}

lact_status lact_nn_accumulate(lact_ctx *ctx, lact_tensor *acc, const lact_tensor *x) {
    return lact_add_forward(ctx, acc, acc, x);
}

float lact_nn_inv_softplus(float y) {
    return (float)log(expm1((double)y));
}

lact_status lact_nn_permute(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x, int64_t A,
                            int64_t Bd, int64_t C, int64_t E) {
    int64_t n = A * Bd * C * E;
    if (A < 1 || Bd < 1 || C < 1 || E < 1 || !x || !out || lact_tensor_numel(x) != n ||
        lact_tensor_numel(out) != n)
        return lact_fail(LACT_E_ARG,
                         "permute: dims [%lld, %lld, %lld, %lld] do not match x (%lld elements) "
                         "and out (%lld elements)",
                         (long long)A, (long long)Bd, (long long)C, (long long)E,
                         (long long)(x ? lact_tensor_numel(x) : -1),
                         (long long)(out ? lact_tensor_numel(out) : -1));
    lact_tensor xv = LACT_NN_VIEW(x, A, Bd, C, E), ov = LACT_NN_VIEW(out, A, C, Bd, E);
    return lact_permute_forward(ctx, &ov, &xv);
}
