/* Table row: headprep (the LaCT layer's fused per-head input preparation,
 * kernels/headprep.h). */
#include "kernels/headprep.h"
#include "kernels/table/rows.h"

static lact_status headprep_plan(const lact_tensor *in, const double *p, lact_tensor *out) {
    const char *op = "headprep";
    const lact_tensor *z = &in[0];
    LACT_TRY(lact_optab_need(op, "z", z, OPTAB_ACT, z->device));
    LACT_TRY(lact_kcheck_ndim(op, "z", z, 4, 4));
    LACT_TRY(lact_optab_need(op, "scale", &in[1], OPTAB_F32, z->device));
    LACT_TRY(lact_optab_need(op, "offset", &in[2], OPTAB_F32, z->device));
    if (!(p[1] >= 0.0)) return lact_fail(LACT_E_ARG, "%s: theta = %g must be ≥ 0", op, p[1]);
    int64_t shape[4] = {z->shape[0], z->shape[2], z->shape[1], z->shape[3]};
    out[0] = lact_optab_out(z->device, z->dtype, 4, shape);
    out[1] = lact_optab_out(z->device, z->dtype, 4, shape);
    return LACT_OK;
}

static lact_status headprep_fwd(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                                const double *p) {
    return lact_headprep_forward(ctx, &out[0], &out[1], &in[0], &in[1], &in[2], (int64_t)p[0],
                                 (float)p[1], (float)p[2]);
}

/* dxs (and dz when it is not asked for) go to temporaries on the device. */
static lact_status headprep_bwd(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                                const lact_tensor *in, const lact_tensor *out, const double *p) {
    const lact_tensor *z = &in[0];
    lact_tensor dxs = {0}, dz_tmp = {0};
    lact_tensor *dz = lact_optab_grad(d_in, in, 0);
    lact_status s = lact_tensor_alloc(&dxs, z->dtype, z->device, 4, z->shape);
    if (s == LACT_OK && !dz) {
        s = lact_tensor_alloc(&dz_tmp, z->dtype, z->device, 4, z->shape);
        dz = &dz_tmp;
    }
    /* The allocation's zero fill is not ordered against the context's
     * stream. */
    if (s == LACT_OK) s = lact_ctx_sync(ctx);
    if (s == LACT_OK)
        s = lact_headprep_backward(ctx, dz, lact_optab_grad(d_in, in, 1),
                                   lact_optab_grad(d_in, in, 2), &dxs, &d_out[0], &d_out[1], z,
                                   &in[1], &in[2], (int64_t)p[0], (float)p[1], (float)p[2]);
    if (s == LACT_OK) s = lact_ctx_sync(ctx);
    lact_tensor_free(&dxs);
    lact_tensor_free(&dz_tmp);
    return s;
}

static bool headprep_case(int c, uint64_t seed, lact_tensor *in, double *p) {
    /* Vector and element paths for both dtypes, group widths from 1 to 32
     * lanes with more units than lanes (d 130), no rotation with odd d,
     * the model's head shape, and the tiled kernels' block layouts. */
    static const struct {
        optab_shape z;
        double pos0, theta;
    } cases[] = {
        {{4, {2, 5, 3, 8}}, 0, 10000},
        {{4, {1, 7, 2, 64}}, 3, 10000},
        {{4, {2, 3, 4, 6}}, 0, 0},
        {{4, {1, 4, 3, 5}}, 2, 0},
        {{4, {2, 9, 6, 128}}, 100, 10000},
        {{4, {1, 3, 2, 130}}, 12345, 500000},
        {{4, {3, 2, 1, 2}}, 1, 100},
        {{4, {1, 5, 2, 16}}, 0, 0},
        /* Position tiles (CUDA): one block with ten table fills; batches
         * split over blocks; several blocks without rotation; idle lanes
         * (6 or 12 units a row) and two fills a block. */
        {{4, {1, 40, 2, 256}}, 5, 10000},
        {{4, {64, 2, 2, 32}}, 1000, 10000},
        {{4, {3, 50, 4, 64}}, 0, 0},
        {{4, {2, 70, 3, 96}}, 9, 500000},
    };
    if (c < 0 || c >= (int)(sizeof cases / sizeof cases[0])) return false;
    p[0] = cases[c].pos0;
    p[1] = cases[c].theta;
    p[2] = 1e-5;
    lact_rng rng = lact_rng_make(seed, 2700 + (uint64_t)c);
    const optab_shape *s = &cases[c].z;
    int64_t ch = s->d[2] * s->d[3];
    return lact_optab_rand(&in[0], &rng, s->ndim, s->d, -2.0f, 2.0f) &&
           lact_optab_rand(&in[1], &rng, 1, &ch, 0.5f, 1.5f) &&
           lact_optab_rand(&in[2], &rng, 1, &ch, -0.5f, 0.5f);
}

const lact_op_def lact_op_row_headprep = {
    .name = "headprep",
    .summary = "qf = rope(l2norm(silu(z) * scale + offset)), qa = rope(silu(z)), both to "
               "[B, H, L, d] from z [B, L, H, d]",
    .inputs = {"z", "scale", "offset"},
    .outputs = {"qf", "qa"},
    .n_diff_outputs = 2,
    .grad_inputs = 0x7,
    .param_inputs = 0x6,
    .params = {{"pos0", 0, "position of the first token"},
               {"theta", 10000, "RoPE frequency base (0: no rotation)"},
               {"eps", 1e-5, "added to the L2 norm"}},
    .plan = headprep_plan,
    .forward = headprep_fwd,
    .backward = headprep_bwd,
    .make_case = headprep_case,
    .tol_f32 = 1e-5,
    .tol_bf16 = 1e-2,
    .tol_grad = 1e-2,
    .bf16 = true,
};
