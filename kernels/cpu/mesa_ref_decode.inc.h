/* The mesa reference, part 3: one decoding step per head on the explicit
 * states, written apart from the chunk code (a rank-1 update and CG on the
 * d×d matrix), so that decoding a sequence token by token checks the
 * chunkwise forward. Included after mesa_ref_driver.inc.h. */

/* x ≈ (H + Λ)⁻¹ q by `steps` CG iterations from zero; r, p, ap scratch [d]. */
static void mesa_cg_dense(const real *h, const real *lam, const real *q, int64_t d, int steps,
                          real *x, real *r, real *p, real *ap) {
    memset(x, 0, (size_t)d * sizeof(real));
    memcpy(r, q, (size_t)d * sizeof(real));
    memcpy(p, q, (size_t)d * sizeof(real));
    real rr = mesa_dot(r, r, d);
    for (int it = 0; it < steps; it++) {
        for (int64_t a = 0; a < d; a++)
            ap[a] = mesa_dot(h + a * d, p, d) + lam[a] * p[a];
        real alpha = rr / (mesa_dot(p, ap, d) + MESA_CG_EPS);
        for (int64_t a = 0; a < d; a++) {
            x[a] += alpha * p[a];
            r[a] -= alpha * ap[a];
        }
        real rn = mesa_dot(r, r, d);
        real bt = rn / (rr + MESA_CG_EPS);
        for (int64_t a = 0; a < d; a++)
            p[a] = r[a] + bt * p[a];
        rr = rn;
    }
}

lact_status MESA_NAME(lact_cpu_mesa_decode)(real *o, real *h_state, real *g_state,
                                            const mesa_in *in, const lact_mesa_dims *dims) {
    int64_t d = dims->d, dd = d * d;
    real *buf = malloc((size_t)(4 * d) * sizeof(real));
    if (!buf)
        return lact_fail(LACT_E_NOMEM, "mesa decode: cannot allocate %lld bytes of workspace",
                         (long long)(4 * d * (int64_t)sizeof(real)));
    for (int64_t bh = 0; bh < dims->b * dims->h; bh++) {
        const real *q = in->q + bh * d, *k = in->k + bh * d, *v = in->v + bh * d;
        const real *lam = in->lambda + (bh % dims->h) * d;
        real gam = exp(in->g[bh]), b = in->beta[bh];
        real *h = h_state + bh * dd, *gs = g_state + bh * dd;
        for (int64_t a = 0; a < d; a++)
            for (int64_t c = 0; c < d; c++) {
                h[a * d + c] = gam * h[a * d + c] + b * k[a] * k[c];
                gs[a * d + c] = gam * gs[a * d + c] + b * v[a] * k[c];
            }
        real *x = buf;
        mesa_cg_dense(h, lam, q, d, dims->cg_steps, x, buf + d, buf + 2 * d, buf + 3 * d);
        for (int64_t a = 0; a < d; a++)
            o[bh * d + a] = mesa_dot(gs + a * d, x, d);
    }
    free(buf);
    return LACT_OK;
}
