/* Table rows: the fused cross-entropy, embedding lookup, reductions and
 * random fills. */
#include "kernels/table/rows.h"

/* ---- xent ------------------------------------------------------------------------ */

static lact_status xent_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "xent";
    const lact_tensor *h = &in[0], *w = &in[1], *t = &in[2];
    LACT_TRY(lact_optab_need(op, "h", h, OPTAB_ACT, h->device));
    LACT_TRY(lact_optab_need(op, "w", w, OPTAB_ACT, h->device));
    LACT_TRY(lact_optab_need(op, "target", t, OPTAB_I32, h->device));
    LACT_TRY(lact_kcheck_same_dtype(op, "w", w, "h", h));
    LACT_TRY(lact_kcheck_ndim(op, "h", h, 1, LACT_MAX_DIMS));
    LACT_TRY(lact_kcheck_ndim(op, "w", w, 2, 2));
    if (w->shape[1] != lact_tensor_cols(h)) {
        char sw[96];
        return lact_fail(LACT_E_ARG, "%s: w has shape %s, expected [V, %lld] (last dim of h)", op,
                         lact_kcheck_shape_str(w, sw, sizeof sw), (long long)lact_tensor_cols(h));
    }
    int64_t n = lact_tensor_rows(h);
    LACT_TRY(lact_kcheck_numel(op, "target", t, n, "one per row of h"));
    if (p[0] < 0) return lact_fail(LACT_E_ARG, "%s: vocab_chunk = %g must be >= 0", op, p[0]);
    out[0] = lact_optab_out(h->device, LACT_F32, 1, &n);
    out[1] = lact_optab_out(h->device, LACT_F32, 1, &n);
    return LACT_OK;
}

static lact_status xent_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    return lact_xent_forward(ctx, &out[0], &out[1], &in[0], &in[1], &in[2], (int64_t)p[0]);
}

static lact_status xent_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_xent_backward(ctx, lact_optab_grad(d_in, in, 0), lact_optab_grad(d_in, in, 1),
                              &d_out[0], &in[0], &in[1], &in[2], &out[1], (int64_t)p[0]);
}

static bool xent_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* N, C, V, vocab_chunk; V mostly not a multiple of the chunk. */
    static const int64_t cases[][4] = {
        {5, 8, 13, 4}, {17, 5, 29, 7}, {3, 16, 64, 0}, {4, 6, 10, 10}, {1, 3, 2, 1},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    int64_t n = cases[c][0], ch = cases[c][1], v = cases[c][2];
    p[0] = (double)cases[c][3];
    lact_rng rng = lact_rng_make(seed, 600 + (uint64_t)c);
    int64_t hs[2] = {n, ch}, ws[2] = {v, ch};
    if (!lact_optab_rand(&in[0], &rng, 2, hs, -1.0f, 1.0f)) return false;
    if (!lact_optab_rand(&in[1], &rng, 2, ws, -1.0f, 1.0f) ||
        !lact_optab_ids(&in[2], &rng, 1, &n, 0, v)) {
        lact_optab_free(in, 2);
        return false;
    }
    /* A few ignored rows. */
    int32_t *t = in[2].data;
    for (int64_t i = 2; i < n; i += 5)
        t[i] = -1;
    return true;
}

const lact_op_def lact_op_row_xent = {
    .name = "xent",
    .summary = "loss[n] = logsumexp(h[n] @ w^T) - h[n] . w[target[n]] (target < 0: ignored)",
    .inputs = {"h", "w", "target"},
    .outputs = {"loss", "lse"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x3,
    .param_inputs = 0x2,
    .params = {{"vocab_chunk", 0, "vocabulary columns per pass (0 = 8192)"}},
    .plan = xent_plan,
    .forward = xent_fwd,
    .backward = xent_bwd,
    .make_case = xent_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 2e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- embedding ------------------------------------------------------------------- */

static lact_status embedding_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "embedding";
    const lact_tensor *table = &in[0], *ids = &in[1];
    LACT_TRY(lact_optab_need(op, "table", table, OPTAB_ACT, table->device));
    LACT_TRY(lact_optab_need(op, "ids", ids, OPTAB_I32, table->device));
    LACT_TRY(lact_kcheck_ndim(op, "table", table, 2, 2));
    LACT_TRY(lact_kcheck_ndim(op, "ids", ids, 0, LACT_MAX_DIMS - 1));
    int64_t shape[LACT_MAX_DIMS];
    for (int d = 0; d < ids->ndim; d++)
        shape[d] = ids->shape[d];
    shape[ids->ndim] = table->shape[1];
    out[0] = lact_optab_out(table->device, table->dtype, ids->ndim + 1, shape);
    return LACT_OK;
}

static lact_status embedding_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                 const double *p) {
    return lact_embedding_forward(ctx, &out[0], &in[0], &in[1]);
}

static lact_status embedding_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                 const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_embedding_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[1]);
}

static bool embedding_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* V, C, ids shape: more ids than rows, so some repeat. */
    static const struct {
        int64_t v, c;
        optab_shape ids;
    } cases[] = {
        {10, 5, {1, {7}}},
        {3, 64, {2, {2, 4}}},
        {17, 1, {1, {20}}},
        {1, 3, {1, {2}}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 700 + (uint64_t)c);
    int64_t ts[2] = {cases[c].v, cases[c].c};
    if (!lact_optab_rand(&in[0], &rng, 2, ts, -1.0f, 1.0f)) return false;
    if (!lact_optab_ids(&in[1], &rng, cases[c].ids.ndim, cases[c].ids.d, 0, cases[c].v)) {
        lact_optab_free(in, 1);
        return false;
    }
    return true;
}

const lact_op_def lact_op_row_embedding = {
    .name = "embedding",
    .summary = "out[n, :] = table[ids[n], :]",
    .inputs = {"table", "ids"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .param_inputs = 0x1,
    .plan = embedding_plan,
    .forward = embedding_fwd,
    .backward = embedding_bwd,
    .make_case = embedding_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- sum, norm ----------------------------------------------------------------------- */

static bool reduce_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const optab_shape cases[] = {
        {2, {3, 5}},
        {2, {1, 1}},
        {3, {2, 3, 129}},
        {1, {17}},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    lact_rng rng = lact_rng_make(seed, 800 + (uint64_t)c);
    return lact_optab_rand(&in[0], &rng, cases[c].ndim, cases[c].d, -1.0f, 1.0f);
}

static lact_status sum_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need("sum", "x", x, OPTAB_ACT, x->device));
    LACT_TRY(lact_kcheck_ndim("sum", "x", x, 1, LACT_MAX_DIMS));
    int64_t one = 1;
    out[0] = x->ndim == 1 ? lact_optab_out(x->device, x->dtype, 1, &one)
                          : lact_optab_out(x->device, x->dtype, x->ndim - 1, x->shape);
    return LACT_OK;
}

static lact_status sum_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                           const double *p) {
    return lact_sum_forward(ctx, &out[0], &in[0]);
}

static lact_status sum_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                           const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_sum_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0]);
}

const lact_op_def lact_op_row_sum = {
    .name = "sum",
    .summary = "out[r] = sum of row r of x (over the last dim)",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = sum_plan,
    .forward = sum_fwd,
    .backward = sum_bwd,
    .make_case = reduce_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

static lact_status norm_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need("norm", "x", x, OPTAB_ACT, x->device));
    LACT_TRY(lact_kcheck_ndim("norm", "x", x, 1, LACT_MAX_DIMS));
    int64_t one = 1;
    out[0] = lact_optab_out(x->device, LACT_F32, 1, &one);
    return LACT_OK;
}

static lact_status norm_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                            const double *p) {
    return lact_norm_forward(ctx, &out[0], &in[0]);
}

static lact_status norm_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out, const double *p) {
    return lact_norm_backward(ctx, lact_optab_grad(d_in, in, 0), &d_out[0], &in[0], &out[0]);
}

const lact_op_def lact_op_row_norm = {
    .name = "norm",
    .summary = "out[0] = ||x||_2 over all elements",
    .inputs = {"x"},
    .outputs = {"out"},
    .n_diff_outputs = 1,
    .grad_inputs = 0x1,
    .plan = norm_plan,
    .forward = norm_fwd,
    .backward = norm_bwd,
    .make_case = reduce_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};

/* ---- random fills: the input only gives the shape and dtype ----------------------------- */

enum { FILL_SEED, FILL_STREAM, FILL_A, FILL_B };

static lact_status fill_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const lact_tensor *x = &in[0];
    LACT_TRY(lact_optab_need("fill", "like", x, OPTAB_ACT, x->device));
    if (p[FILL_SEED] < 0 || p[FILL_STREAM] < 0)
        return lact_fail(LACT_E_ARG, "fill: seed and stream must be >= 0");
    out[0] = lact_optab_out(x->device, x->dtype, x->ndim, x->shape);
    return LACT_OK;
}

static lact_status fill_uniform_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                    const double *p) {
    return lact_fill_uniform(ctx, &out[0], (uint64_t)p[FILL_SEED], (uint64_t)p[FILL_STREAM],
                             (float)p[FILL_A], (float)p[FILL_B]);
}

static lact_status fill_normal_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                   const double *p) {
    return lact_fill_normal(ctx, &out[0], (uint64_t)p[FILL_SEED], (uint64_t)p[FILL_STREAM],
                            (float)p[FILL_A], (float)p[FILL_B]);
}

static bool fill_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    static const optab_shape cases[] = {{2, {3, 5}}, {1, {1001}}};
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[FILL_SEED] = (double)(seed % 100000);
    p[FILL_STREAM] = c;
    return lact_tensor_alloc(&in[0], LACT_F32, LACT_CPU, cases[c].ndim, cases[c].d) == LACT_OK;
}

const lact_op_def lact_op_row_fill_uniform = {
    .name = "fill_uniform",
    .summary = "out = lo + (hi - lo) * uniform(seed, stream, i), shaped like the input",
    .inputs = {"like"},
    .outputs = {"out"},
    .params = {{"seed", 0, "Philox key"},
               {"stream", 0, "Philox stream"},
               {"lo", 0, "lower bound"},
               {"hi", 1, "upper bound"}},
    .plan = fill_plan,
    .forward = fill_uniform_fwd,
    .make_case = fill_case,
    .tol_f32 = 1e-6,
    .tol_bf16 = 1e-2,
    .bf16 = true,
};

const lact_op_def lact_op_row_fill_normal = {
    .name = "fill_normal",
    .summary = "out = mean + std * normal(seed, stream, i), shaped like the input",
    .inputs = {"like"},
    .outputs = {"out"},
    .params = {{"seed", 0, "Philox key"},
               {"stream", 0, "Philox stream"},
               {"mean", 0, "mean"},
               {"std", 1, "standard deviation"}},
    .plan = fill_plan,
    .forward = fill_normal_fwd,
    .make_case = fill_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .bf16 = true,
};
