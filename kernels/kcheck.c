#include "kernels/kcheck.h"

#include <stdio.h>

const char *lact_kcheck_shape_str(const lact_tensor *t, char *buf, size_t n) {
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
    return buf;
}

/* "F32 or BF16" for the error messages. */
static void format_dtypes(unsigned mask, char *buf, size_t n) {
    size_t len = 0;
    int count = 0;
    buf[0] = '\0';
    for (int d = 0; d < LACT_DTYPE_COUNT && len < n; d++) {
        if (!(mask & LACT_DT(d))) continue;
        len += (size_t)snprintf(buf + len, n - len, "%s%s", count ? " or " : "",
                                lact_dtype_name((lact_dtype)d));
        count++;
    }
}

lact_status lact_kcheck_ctx(const lact_ctx *ctx, const char *op) {
    if (!ctx) return lact_fail(LACT_E_ARG, "%s: the context is NULL", op);
    if (ctx->device == LACT_CUDA && !LACT_WITH_CUDA)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "%s: this build has no CUDA support (rebuild with -DLACT_CUDA=ON)", op);
    if (ctx->device != LACT_CPU && ctx->device != LACT_CUDA)
        return lact_fail(LACT_E_ARG, "%s: unknown device %d in the context", op, (int)ctx->device);
    return LACT_OK;
}

unsigned lact_kcheck_act_dtypes(const lact_ctx *ctx) {
    return ctx->device == LACT_CUDA ? (LACT_DT(LACT_F32) | LACT_DT(LACT_BF16)) : LACT_DT(LACT_F32);
}

lact_status lact_kcheck_tensor(const lact_ctx *ctx, const char *op, const char *name,
                               const lact_tensor *t, unsigned dtypes) {
    if (!t) return lact_fail(LACT_E_ARG, "%s: %s is NULL", op, name);
    if ((int)t->dtype < 0 || t->dtype >= LACT_DTYPE_COUNT)
        return lact_fail(LACT_E_ARG, "%s: %s has an invalid dtype %d", op, name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > LACT_MAX_DIMS)
        return lact_fail(LACT_E_ARG, "%s: %s has %d dims (at most %d)", op, name, t->ndim,
                         LACT_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0) return lact_fail(LACT_E_ARG, "%s: %s has a negative dim", op, name);
    if (!t->data && lact_tensor_numel(t) > 0)
        return lact_fail(LACT_E_ARG, "%s: %s has no data", op, name);
    if (t->device != ctx->device)
        return lact_fail(LACT_E_ARG, "%s: %s is on %s, the context on %s", op, name,
                         lact_device_name(t->device), lact_device_name(ctx->device));
    if (!(dtypes & LACT_DT(t->dtype))) {
        char want[64];
        format_dtypes(dtypes, want, sizeof want);
        return lact_fail(
            LACT_E_ARG, "%s: %s has dtype %s, expected %s%s", op, name, lact_dtype_name(t->dtype),
            want,
            ctx->device == LACT_CPU && t->dtype == LACT_BF16 ? " (the CPU computes in F32)" : "");
    }
    if (!lact_tensor_is_contiguous(t))
        return lact_fail(LACT_E_ARG, "%s: %s is not contiguous", op, name);
    return LACT_OK;
}

lact_status lact_kcheck_optional(const lact_ctx *ctx, const char *op, const char *name,
                                 const lact_tensor *t, unsigned dtypes) {
    return t ? lact_kcheck_tensor(ctx, op, name, t, dtypes) : LACT_OK;
}

lact_status lact_kcheck_same_shape(const char *op, const char *name, const lact_tensor *t,
                                   const char *ref_name, const lact_tensor *ref) {
    if (lact_tensor_same_shape(t, ref)) return LACT_OK;
    char a[96], b[96];
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %s (the shape of %s)", op, name,
                     lact_kcheck_shape_str(t, a, sizeof a), lact_kcheck_shape_str(ref, b, sizeof b),
                     ref_name);
}

lact_status lact_kcheck_same_dtype(const char *op, const char *name, const lact_tensor *t,
                                   const char *ref_name, const lact_tensor *ref) {
    if (t->dtype == ref->dtype) return LACT_OK;
    return lact_fail(LACT_E_ARG, "%s: %s has dtype %s, expected %s (the dtype of %s)", op, name,
                     lact_dtype_name(t->dtype), lact_dtype_name(ref->dtype), ref_name);
}

lact_status lact_kcheck_vector(const char *op, const char *name, const lact_tensor *t, int64_t n,
                               const char *why) {
    if (t->ndim == 1 && t->shape[0] == n) return LACT_OK;
    char a[96];
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected [%lld] (%s)", op, name,
                     lact_kcheck_shape_str(t, a, sizeof a), (long long)n, why);
}

lact_status lact_kcheck_numel(const char *op, const char *name, const lact_tensor *t, int64_t n,
                              const char *why) {
    int64_t have = lact_tensor_numel(t);
    if (have == n) return LACT_OK;
    char a[96];
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s (%lld elements), expected %lld (%s)", op,
                     name, lact_kcheck_shape_str(t, a, sizeof a), (long long)have, (long long)n,
                     why);
}

lact_status lact_kcheck_ndim(const char *op, const char *name, const lact_tensor *t, int min_ndim,
                             int max_ndim) {
    if (t->ndim >= min_ndim && t->ndim <= max_ndim) return LACT_OK;
    char a[96];
    if (min_ndim == max_ndim)
        return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %d dims", op, name,
                         lact_kcheck_shape_str(t, a, sizeof a), min_ndim);
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %d to %d dims", op, name,
                     lact_kcheck_shape_str(t, a, sizeof a), min_ndim, max_ndim);
}

/* Checks that a, b and out (dout for the backward) fit together:
 * op(a) [..., M, K] · op(b) [..., K, N] = out [..., M, N]. */
lact_status lact_kcheck_matmul(const char *op, const char *out_name, const lact_tensor *out,
                               const lact_tensor *a, const lact_tensor *b, bool ta, bool tb) {
    LACT_TRY(lact_kcheck_ndim(op, "a", a, 2, LACT_MAX_DIMS));
    LACT_TRY(lact_kcheck_ndim(op, "b", b, 2, LACT_MAX_DIMS));
    int nd = a->ndim;
    int64_t m = a->shape[nd - (ta ? 1 : 2)], k = a->shape[nd - (ta ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (tb ? 1 : 2)], n = b->shape[b->ndim - (tb ? 2 : 1)];
    char sa[96], sb[96], so[96];
    if (k != kb)
        return lact_fail(
            LACT_E_ARG, "%s: inner dims differ: a %s%s has K = %lld, b %s%s has K = %lld", op,
            lact_kcheck_shape_str(a, sa, sizeof sa), ta ? " (transposed)" : "", (long long)k,
            lact_kcheck_shape_str(b, sb, sizeof sb), tb ? " (transposed)" : "", (long long)kb);
    if (b->ndim != 2 && b->ndim != nd)
        return lact_fail(
            LACT_E_ARG, "%s: b has shape %s; expected 2 dims (broadcast) or %d like a %s", op,
            lact_kcheck_shape_str(b, sb, sizeof sb), nd, lact_kcheck_shape_str(a, sa, sizeof sa));
    for (int d = 0; b->ndim == nd && d < nd - 2; d++)
        if (b->shape[d] != a->shape[d])
            return lact_fail(LACT_E_ARG, "%s: batch dims of b %s differ from those of a %s", op,
                             lact_kcheck_shape_str(b, sb, sizeof sb),
                             lact_kcheck_shape_str(a, sa, sizeof sa));
    bool ok = out->ndim == nd && out->shape[nd - 2] == m && out->shape[nd - 1] == n;
    for (int d = 0; ok && d < nd - 2; d++)
        ok = out->shape[d] == a->shape[d];
    if (!ok)
        return lact_fail(LACT_E_ARG,
                         "%s: %s has shape %s, expected batch dims of a %s with [%lld, %lld]", op,
                         out_name, lact_kcheck_shape_str(out, so, sizeof so),
                         lact_kcheck_shape_str(a, sa, sizeof sa), (long long)m, (long long)n);
    return LACT_OK;
}
