/* The headprep op on the CPU: the separate reference ops in the order the
 * LaCT layer used to call them, on temporaries, so the results are those
 * ops' bits. */
#include <stdlib.h>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/headprep_ref.h"

typedef struct geom {
    int64_t B, L, H, d, n;
} geom;

static geom geom_of(const lact_tensor *z) {
    geom g = {z->shape[0], z->shape[1], z->shape[2], z->shape[3], lact_tensor_numel(z)};
    return g;
}

/* [B, L, H, d] (rows) or [B, H, L, d] (heads) over p. */
static lact_tensor rows_view(float *p, const geom *g) {
    int64_t shape[4] = {g->B, g->L, g->H, g->d};
    return lact_tensor_view(p, LACT_F32, LACT_CPU, 4, shape);
}

static lact_tensor heads_view(float *p, const geom *g) {
    int64_t shape[4] = {g->B, g->H, g->L, g->d};
    return lact_tensor_view(p, LACT_F32, LACT_CPU, 4, shape);
}

static lact_status temps(float **bufs, int k, int64_t n) {
    for (int i = 0; i < k; i++) {
        bufs[i] = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!bufs[i]) {
            for (int j = 0; j < i; j++)
                free(bufs[j]);
            return lact_fail(LACT_E_NOMEM, "headprep: %lld floats of scratch", (long long)n);
        }
    }
    return LACT_OK;
}

static void temps_free(float **bufs, int k) {
    for (int i = 0; i < k; i++)
        free(bufs[i]);
}

/* out = permute(rope(x)) or permute(x) when theta is 0; x is overwritten
 * by the rotation's scratch use. */
static lact_status rope_permute(lact_ctx *ctx, lact_tensor *out, float *x, float *tmp,
                                const geom *g, int64_t pos0, float theta) {
    lact_tensor xv = rows_view(x, g), tv = rows_view(tmp, g), ov = heads_view(out->data, g);
    if (theta > 0.0f) {
        LACT_TRY(lact_cpu_rope_forward(ctx, &tv, &xv, pos0, theta));
        return lact_cpu_permute_forward(ctx, &ov, &tv);
    }
    return lact_cpu_permute_forward(ctx, &ov, &xv);
}

lact_status lact_cpu_headprep_forward(lact_ctx *ctx, lact_tensor *qf, lact_tensor *qa,
                                      const lact_tensor *z, const lact_tensor *scale,
                                      const lact_tensor *offset, int64_t pos0, float theta,
                                      float eps) {
    geom g = geom_of(z);
    float *b[3];
    LACT_TRY(temps(b, 3, g.n));
    lact_tensor s = rows_view(b[0], &g), t = rows_view(b[1], &g), u = rows_view(b[2], &g);
    lact_status st = lact_cpu_silu_forward(ctx, &s, z);
    if (st == LACT_OK && qf) {
        st = lact_cpu_mul_forward(ctx, &t, &s, scale);
        if (st == LACT_OK) st = lact_cpu_add_forward(ctx, &t, &t, offset);
        if (st == LACT_OK) st = lact_cpu_l2norm_forward(ctx, &u, &t, eps);
        if (st == LACT_OK) st = rope_permute(ctx, qf, b[2], b[1], &g, pos0, theta);
    }
    if (st == LACT_OK && qa) st = rope_permute(ctx, qa, b[0], b[1], &g, pos0, theta);
    temps_free(b, 3);
    return st;
}

/* dn = ropeᵀ(permute back(dq)) into a (b as scratch); returns the buffer
 * that holds it. */
static lact_status unrope(lact_ctx *ctx, float **res, const lact_tensor *dq, float *a, float *b,
                          const geom *g, int64_t pos0, float theta) {
    lact_tensor av = rows_view(a, g), bv = rows_view(b, g), dv = heads_view(dq->data, g);
    /* The swap of dims 1 and 2 of [B, H, L, d] is [B, L, H, d]. */
    LACT_TRY(lact_cpu_permute_forward(ctx, &av, &dv));
    *res = a;
    if (theta > 0.0f) {
        LACT_TRY(lact_cpu_rope_backward(ctx, &bv, &av, pos0, theta));
        *res = b;
    }
    return LACT_OK;
}

lact_status lact_cpu_headprep_backward(lact_ctx *ctx, lact_tensor *dz, lact_tensor *dscale,
                                       lact_tensor *doffset, lact_tensor *dxs,
                                       const lact_tensor *dqf, const lact_tensor *dqa,
                                       const lact_tensor *z, const lact_tensor *scale,
                                       const lact_tensor *offset, int64_t pos0, float theta,
                                       float eps, bool acc) {
    geom g = geom_of(z);
    int64_t C = g.H * g.d;
    /* b[5]: with acc, the parameter sums before they are added */
    float *b[6];
    LACT_TRY(temps(b + 5, 1, acc ? 2 * C : 1));
    float *sums = b[5];
    lact_status st = temps(b, 5, g.n);
    if (st != LACT_OK) {
        free(sums);
        return st;
    }
    lact_tensor dsc_t = lact_tensor_view(sums, LACT_F32, LACT_CPU, 1, &C);
    lact_tensor dof_t = lact_tensor_view(sums + (acc ? C : 0), LACT_F32, LACT_CPU, 1, &C);
    lact_tensor *dsc = acc && dscale ? &dsc_t : dscale, *dof = acc && doffset ? &dof_t : doffset;
    lact_tensor s = rows_view(b[0], &g), xs = rows_view(b[1], &g), dg = rows_view(b[2], &g);
    st = lact_cpu_silu_forward(ctx, &s, z);
    float *dn = NULL;
    if (st == LACT_OK && dqf) {
        st = lact_cpu_mul_forward(ctx, &xs, &s, scale);
        if (st == LACT_OK) st = lact_cpu_add_forward(ctx, &xs, &xs, offset);
        if (st == LACT_OK) st = unrope(ctx, &dn, dqf, b[3], b[4], &g, pos0, theta);
        lact_tensor dnv = rows_view(dn, &g);
        if (st == LACT_OK) st = lact_cpu_l2norm_backward(ctx, dxs, &dnv, &xs, eps);
        if (st == LACT_OK && dof) st = lact_cpu_add_backward(ctx, NULL, dof, dxs);
        if (st == LACT_OK) st = lact_cpu_mul_backward(ctx, &dg, dsc, dxs, &s, scale);
        if (st == LACT_OK && acc && doffset) st = lact_cpu_add_forward(ctx, doffset, doffset, dof);
        if (st == LACT_OK && acc && dscale) st = lact_cpu_add_forward(ctx, dscale, dscale, dsc);
    }
    if (st == LACT_OK && dqa) {
        st = unrope(ctx, &dn, dqa, b[3], b[4], &g, pos0, theta);
        lact_tensor dnv = rows_view(dn, &g);
        if (st == LACT_OK)
            st = dqf ? lact_cpu_add_forward(ctx, &dg, &dg, &dnv)
                     : lact_cpu_scale_forward(ctx, &dg, &dnv, 1.0f);
    }
    if (st == LACT_OK) st = lact_cpu_silu_backward(ctx, dz, &dg, z);
    temps_free(b, 6);
    return st;
}
