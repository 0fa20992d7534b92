/* lact_{add,mul,scale,silu,swiglu,cast,softplus,sigmoid}_*: argument checks,
 * then the CPU or CUDA version. */
#include "kernels/kcheck.h"
#include "kernels/kernels.h"

/* b broadcasts over a: numel(b) divides numel(a). */
static lact_status check_broadcast(const char *op, const char *bname, const lact_tensor *b,
                                   const char *aname, const lact_tensor *a) {
    int64_t na = lact_tensor_numel(a), nb = lact_tensor_numel(b);
    if ((nb == 0 && na == 0) || (nb > 0 && na % nb == 0)) return LACT_OK;
    char sa[96], sb[96];
    return lact_fail(LACT_E_ARG,
                     "%s: %s %s (%lld elements) does not broadcast over %s %s (%lld elements)", op,
                     bname, lact_kcheck_shape_str(b, sb, sizeof sb), (long long)nb, aname,
                     lact_kcheck_shape_str(a, sa, sizeof sa), (long long)na);
}

/* out and a are activations of one shape and dtype; b has a's dtype or F32
 * and broadcasts over a. */
static lact_status check_binary(lact_ctx *ctx, const char *op, const char *out_name,
                                const lact_tensor *out, const lact_tensor *a,
                                const lact_tensor *b) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, out_name, out, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "a", a, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "b", b, LACT_DT(a->dtype) | LACT_DT(LACT_F32)));
    LACT_TRY(lact_kcheck_same_dtype(op, out_name, out, "a", a));
    LACT_TRY(lact_kcheck_same_shape(op, out_name, out, "a", a));
    return check_broadcast(op, "b", b, "a", a);
}

/* out and x are activations of one shape and dtype. */
static lact_status check_unary(lact_ctx *ctx, const char *op, const char *out_name,
                               const lact_tensor *out, const char *x_name, const lact_tensor *x) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, out_name, out, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, x_name, x, act));
    LACT_TRY(lact_kcheck_same_dtype(op, out_name, out, x_name, x));
    return lact_kcheck_same_shape(op, out_name, out, x_name, x);
}

lact_status lact_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                             const lact_tensor *b) {
    LACT_TRY(check_binary(ctx, "add", "out", out, a, b));
    return LACT_KDISPATCH(ctx, add_forward, out, a, b);
}

lact_status lact_add_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                              const lact_tensor *dout) {
    const char *op = "add backward";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "dout", dout, lact_kcheck_act_dtypes(ctx)));
    if (da) LACT_TRY(check_unary(ctx, op, "da", da, "dout", dout));
    if (db) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "db", db, LACT_DT(dout->dtype) | LACT_DT(LACT_F32)));
        LACT_TRY(check_broadcast(op, "db", db, "dout", dout));
    }
    if (!da && !db) return LACT_OK;
    return LACT_KDISPATCH(ctx, add_backward, da, db, dout);
}

lact_status lact_mul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                             const lact_tensor *b) {
    LACT_TRY(check_binary(ctx, "mul", "out", out, a, b));
    return LACT_KDISPATCH(ctx, mul_forward, out, a, b);
}

lact_status lact_mul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                              const lact_tensor *dout, const lact_tensor *a, const lact_tensor *b) {
    const char *op = "mul backward";
    LACT_TRY(check_binary(ctx, op, "dout", dout, a, b));
    if (da) LACT_TRY(check_unary(ctx, op, "da", da, "a", a));
    if (db) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "db", db, LACT_DT(b->dtype) | LACT_DT(LACT_F32)));
        LACT_TRY(lact_kcheck_same_shape(op, "db", db, "b", b));
    }
    if (!da && !db) return LACT_OK;
    return LACT_KDISPATCH(ctx, mul_backward, da, db, dout, a, b);
}

lact_status lact_scale_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a, float s) {
    LACT_TRY(check_unary(ctx, "scale", "out", out, "a", a));
    return LACT_KDISPATCH(ctx, scale_forward, out, a, s);
}

lact_status lact_scale_backward(lact_ctx *ctx, lact_tensor *da, const lact_tensor *dout, float s) {
    if (!da) return lact_kcheck_ctx(ctx, "scale backward");
    LACT_TRY(check_unary(ctx, "scale backward", "da", da, "dout", dout));
    return LACT_KDISPATCH(ctx, scale_backward, da, dout, s);
}

lact_status lact_silu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    LACT_TRY(check_unary(ctx, "silu", "out", out, "x", x));
    return LACT_KDISPATCH(ctx, silu_forward, out, x);
}

lact_status lact_silu_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                               const lact_tensor *x) {
    const char *op = "silu backward";
    LACT_TRY(check_unary(ctx, op, "dout", dout, "x", x));
    if (!dx) return LACT_OK;
    LACT_TRY(check_unary(ctx, op, "dx", dx, "x", x));
    return LACT_KDISPATCH(ctx, silu_backward, dx, dout, x);
}

lact_status lact_swiglu_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                const lact_tensor *b) {
    const char *op = "swiglu";
    LACT_TRY(check_unary(ctx, op, "out", out, "a", a));
    LACT_TRY(check_unary(ctx, op, "b", b, "a", a));
    return LACT_KDISPATCH(ctx, swiglu_forward, out, a, b);
}

lact_status lact_swiglu_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                 const lact_tensor *dout, const lact_tensor *a,
                                 const lact_tensor *b) {
    const char *op = "swiglu backward";
    LACT_TRY(check_unary(ctx, op, "dout", dout, "a", a));
    LACT_TRY(check_unary(ctx, op, "b", b, "a", a));
    if (da) LACT_TRY(check_unary(ctx, op, "da", da, "a", a));
    if (db) LACT_TRY(check_unary(ctx, op, "db", db, "b", b));
    if (!da && !db) return LACT_OK;
    return LACT_KDISPATCH(ctx, swiglu_backward, da, db, dout, a, b);
}

/* ab [..., 2F] against out [..., F]: the same leading dims and dtype. */
static lact_status check_packed(lact_ctx *ctx, const char *op, const char *out_name,
                                const lact_tensor *out, const lact_tensor *ab) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    unsigned act = lact_kcheck_act_dtypes(ctx);
    LACT_TRY(lact_kcheck_tensor(ctx, op, out_name, out, act));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "ab", ab, act));
    LACT_TRY(lact_kcheck_same_dtype(op, out_name, out, "ab", ab));
    bool ok = out->ndim >= 1 && ab->ndim == out->ndim &&
              ab->shape[ab->ndim - 1] == 2 * out->shape[out->ndim - 1];
    for (int i = 0; ok && i + 1 < out->ndim; i++)
        ok = ab->shape[i] == out->shape[i];
    if (ok) return LACT_OK;
    char so[96], sa[96];
    return lact_fail(LACT_E_ARG, "%s: ab %s must be %s %s with its last dim doubled", op,
                     lact_kcheck_shape_str(ab, sa, sizeof sa), out_name,
                     lact_kcheck_shape_str(out, so, sizeof so));
}

lact_status lact_swiglu_packed_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *ab) {
    LACT_TRY(check_packed(ctx, "swiglu_packed", "out", out, ab));
    return LACT_KDISPATCH(ctx, swiglu_packed_forward, out, ab);
}

lact_status lact_swiglu_packed_backward(lact_ctx *ctx, lact_tensor *dab, const lact_tensor *dout,
                                        const lact_tensor *ab) {
    const char *op = "swiglu_packed backward";
    LACT_TRY(check_packed(ctx, op, "dout", dout, ab));
    if (!dab) return LACT_OK;
    LACT_TRY(check_unary(ctx, op, "dab", dab, "ab", ab));
    return LACT_KDISPATCH(ctx, swiglu_packed_backward, dab, dout, ab);
}

/* An F32 tensor of exactly the given dims (NULL: the check passes only
 * when want is false). */
static lact_status check_f32_dims(lact_ctx *ctx, const char *op, const char *name,
                                  const lact_tensor *t, bool want, int nd, const int64_t *dims) {
    if (!want) {
        if (!t) return LACT_OK;
        return lact_fail(LACT_E_ARG, "%s: %s is given but the gates have no momentum", op, name);
    }
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, LACT_DT(LACT_F32)));
    bool ok = t->ndim == nd;
    for (int i = 0; ok && i < nd; i++)
        ok = t->shape[i] == dims[i];
    if (ok) return LACT_OK;
    char sh[96], w[96];
    lact_tensor want_t = {.ndim = nd};
    for (int i = 0; i < nd; i++)
        want_t.shape[i] = dims[i];
    return lact_fail(LACT_E_ARG, "%s: %s is %s, expected %s", op, name,
                     lact_kcheck_shape_str(t, sh, sizeof sh),
                     lact_kcheck_shape_str(&want_t, w, sizeof w));
}

/* The context, t [B, L, ·] (z or dz, of the given dtypes) and zg
 * [G, B·H, L] (G = 3 or 4), which fixes the rest: the heads H = N / B. */
static lact_status gates_geometry(lact_ctx *ctx, const char *op, const char *name,
                                  const lact_tensor *t, unsigned dtypes, const lact_tensor *zg,
                                  int64_t *G, int64_t *H) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, dtypes));
    LACT_TRY(lact_kcheck_ndim(op, name, t, 3, 3));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "zg", zg, LACT_DT(LACT_F32)));
    int64_t B = t->shape[0];
    if (zg->ndim != 3 || (zg->shape[0] != 3 && zg->shape[0] != 4) || B < 1 ||
        zg->shape[1] % B != 0) {
        char sh[96];
        return lact_fail(LACT_E_ARG, "%s: zg is %s, expected [3 or 4, B·H, L] with B = %lld", op,
                         lact_kcheck_shape_str(zg, sh, sizeof sh), (long long)B);
    }
    *G = zg->shape[0];
    *H = zg->shape[1] / B;
    return LACT_OK;
}

/* The rates (or their gradient) [3, N, L], the momentum (or its gradient)
 * [N, L] and the two biases (or theirs) [3H], [H]: the second and the last
 * only with momentum (G = 4). */
static lact_status check_gate_set(lact_ctx *ctx, const char *op, const char *const names[4],
                                  const lact_tensor *rates, const lact_tensor *mom,
                                  const lact_tensor *b_lr, const lact_tensor *b_m, int64_t G,
                                  int64_t H, int64_t N, int64_t L) {
    LACT_TRY(check_f32_dims(ctx, op, names[0], rates, true, 3, (int64_t[]){3, N, L}));
    LACT_TRY(check_f32_dims(ctx, op, names[1], mom, G == 4, 2, (int64_t[]){N, L}));
    LACT_TRY(check_f32_dims(ctx, op, names[2], b_lr, true, 1, (int64_t[]){3 * H}));
    return check_f32_dims(ctx, op, names[3], b_m, G == 4, 1, (int64_t[]){H});
}

lact_status lact_gates_forward(lact_ctx *ctx, lact_tensor *lr, lact_tensor *mom, lact_tensor *zg,
                               const lact_tensor *z, const lact_tensor *b_lr,
                               const lact_tensor *b_m, float shift) {
    const char *op = "gates";
    int64_t G = 0, H = 0;
    LACT_TRY(gates_geometry(ctx, op, "z", z, LACT_DT(LACT_F32), zg, &G, &H));
    int64_t B = z->shape[0], L = z->shape[1];
    int64_t N = B * H;
    LACT_TRY(check_f32_dims(ctx, op, "z", z, true, 3, (int64_t[]){B, L, G * H}));
    LACT_TRY(check_f32_dims(ctx, op, "zg", zg, true, 3, (int64_t[]){G, N, L}));
    static const char *const names[4] = {"lr", "mom", "b_lr", "b_m"};
    LACT_TRY(check_gate_set(ctx, op, names, lr, mom, b_lr, b_m, G, H, N, L));
    if (lact_tensor_numel(z) == 0) return LACT_OK;
    return LACT_KDISPATCH(ctx, gates_forward, lr, mom, zg, z, b_lr, b_m, shift);
}

lact_status lact_gates_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *db_lr,
                                lact_tensor *db_m, const lact_tensor *dlr, const lact_tensor *dmom,
                                const lact_tensor *zg, const lact_tensor *mom, float shift) {
    const char *op = "gates backward";
    int64_t G = 0, H = 0;
    LACT_TRY(gates_geometry(ctx, op, "dz", dz, lact_kcheck_act_dtypes(ctx), zg, &G, &H));
    int64_t B = dz->shape[0], L = dz->shape[1];
    int64_t N = B * H;
    if (dz->shape[2] != G * H || zg->shape[2] != L)
        return lact_fail(LACT_E_ARG, "%s: dz must be [B, L, G·H] = [%lld, %lld, %lld] for zg", op,
                         (long long)B, (long long)zg->shape[2], (long long)(G * H));
    static const char *const names[4] = {"dlr", "dmom", "db_lr", "db_m"};
    LACT_TRY(check_gate_set(ctx, op, names, dlr, dmom, db_lr, db_m, G, H, N, L));
    LACT_TRY(check_f32_dims(ctx, op, "mom", mom, G == 4, 2, (int64_t[]){N, L}));
    if (lact_tensor_numel(dz) == 0) return LACT_OK;
    return LACT_KDISPATCH(ctx, gates_backward, dz, db_lr, db_m, dlr, dmom, zg, mom, shift);
}

lact_status lact_softplus_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x,
                                  float shift) {
    LACT_TRY(check_unary(ctx, "softplus", "out", out, "x", x));
    return LACT_KDISPATCH(ctx, softplus_forward, out, x, shift);
}

lact_status lact_softplus_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                   const lact_tensor *x, float shift) {
    const char *op = "softplus backward";
    LACT_TRY(check_unary(ctx, op, "dout", dout, "x", x));
    if (!dx) return LACT_OK;
    LACT_TRY(check_unary(ctx, op, "dx", dx, "x", x));
    return LACT_KDISPATCH(ctx, softplus_backward, dx, dout, x, shift);
}

lact_status lact_sigmoid_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    LACT_TRY(check_unary(ctx, "sigmoid", "out", out, "x", x));
    return LACT_KDISPATCH(ctx, sigmoid_forward, out, x);
}

lact_status lact_sigmoid_backward(lact_ctx *ctx, lact_tensor *dx, const lact_tensor *dout,
                                  const lact_tensor *out) {
    const char *op = "sigmoid backward";
    LACT_TRY(check_unary(ctx, op, "dout", dout, "out", out));
    if (!dx) return LACT_OK;
    LACT_TRY(check_unary(ctx, op, "dx", dx, "out", out));
    return LACT_KDISPATCH(ctx, sigmoid_backward, dx, dout, out);
}

lact_status lact_cast_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *x) {
    const char *op = "cast";
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "out", out, LACT_DT_FLOATS));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "x", x, LACT_DT_FLOATS));
    LACT_TRY(lact_kcheck_same_shape(op, "out", out, "x", x));
    return LACT_KDISPATCH(ctx, cast_forward, out, x);
}
