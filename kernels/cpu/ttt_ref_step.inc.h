/* The ttt reference, part 2: one update of one fast weight (momentum,
 * Newton–Schulz, add, row renorm) and its backward. Included after
 * ttt_ref_tile.inc.h. */

static const double ttt_ns_table[5][3] = {
    {4.0848, -6.8946, 2.9270}, {3.9505, -6.3029, 2.6377}, {3.7418, -5.5913, 2.3037},
    {2.8769, -3.1427, 1.2046}, {2.8366, -3.0525, 1.2012},
};
static const double ttt_ns_fixed[3] = {3.4445, -4.7750, 2.0315};

static void ttt_ns_coef(lact_ttt_muon muon, int step, real *a, real *b, real *c) {
    const double *k = muon == LACT_TTT_MUON_FIXED ? ttt_ns_fixed : ttt_ns_table[step];
    *a = (real)k[0], *b = (real)k[1], *c = (real)k[2];
}

/* dst [cols, rows] = srcᵀ, src [rows, cols]. */
static void ttt_transpose(real *dst, const real *src, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* Works on the wide orientation X [p, q], p <= q. */
static void ttt_ns_shape(int64_t rows, int64_t cols, bool *tr, int64_t *p, int64_t *q) {
    *tr = rows > cols;
    *p = *tr ? cols : rows;
    *q = *tr ? rows : cols;
}

/* A = X Xᵀ, B = b A + c A A (both [p, p], symmetric). */
static void ttt_ns_poly(ttt_ws *ws, const real *X, int64_t p, int64_t q, real b, real c) {
    ttt_mm(false, true, p, p, q, 1, X, q, X, q, 0, ws->na, p);
    ttt_mm(false, false, p, p, p, c, ws->na, p, ws->na, p, 0, ws->nb, p);
    for (int64_t j = 0; j < p * p; j++)
        ws->nb[j] += b * ws->na[j];
}

/* out [rows, cols] = NS5(g); keeps the iterates for ttt_ns_bwd. */
static void ttt_ns_fwd(ttt_ws *ws, lact_ttt_muon muon, const real *g, int64_t rows, int64_t cols,
                       real *out) {
    bool tr;
    int64_t p, q;
    ttt_ns_shape(rows, cols, &tr, &p, &q);
    if (tr)
        ttt_transpose(ws->ny, g, rows, cols);
    else
        memcpy(ws->ny, g, (size_t)(p * q) * sizeof(real));
    real ss = 0;
    for (int64_t j = 0; j < p * q; j++)
        ss += ws->ny[j] * ws->ny[j];
    ws->nnorm = sqrt(ss);
    real inv = 1 / (ws->nnorm + (real)TTT_NS_EPS);
    for (int64_t j = 0; j < p * q; j++)
        ws->nx[0][j] = ws->ny[j] * inv;
    for (int s = 0; s < 5; s++) {
        real a, b, c;
        ttt_ns_coef(muon, s, &a, &b, &c);
        const real *X = ws->nx[s];
        real *Xn = ws->nx[s + 1];
        ttt_ns_poly(ws, X, p, q, b, c);
        for (int64_t j = 0; j < p * q; j++)
            Xn[j] = a * X[j];
        ttt_mm(false, false, p, q, p, 1, ws->nb, p, X, q, 1, Xn, q);
    }
    if (tr)
        ttt_transpose(out, ws->nx[5], p, q);
    else
        memcpy(out, ws->nx[5], (size_t)(p * q) * sizeof(real));
}

/* dg [rows, cols] from dout, right after ttt_ns_fwd on the same g. */
static void ttt_ns_bwd(ttt_ws *ws, lact_ttt_muon muon, const real *dout, int64_t rows, int64_t cols,
                       real *dg) {
    bool tr;
    int64_t p, q;
    ttt_ns_shape(rows, cols, &tr, &p, &q);
    real *dX = ws->nd, *dXp = ws->nd2;
    if (tr)
        ttt_transpose(dX, dout, rows, cols);
    else
        memcpy(dX, dout, (size_t)(p * q) * sizeof(real));
    for (int s = 4; s >= 0; s--) {
        real a, b, c;
        ttt_ns_coef(muon, s, &a, &b, &c);
        const real *X = ws->nx[s];
        ttt_ns_poly(ws, X, p, q, b, c);
        /* X' = a X + B X with B symmetric: dX = a dX' + B dX' + (dA + dAᵀ) X */
        for (int64_t j = 0; j < p * q; j++)
            dXp[j] = a * dX[j];
        ttt_mm(false, false, p, q, p, 1, ws->nb, p, dX, q, 1, dXp, q);
        ttt_mm(false, true, p, p, q, 1, dX, q, X, q, 0, ws->ndb, p); /* dB = dX' Xᵀ */
        ttt_mm(false, false, p, p, p, c, ws->ndb, p, ws->na, p, 0, ws->nda, p);
        ttt_mm(false, false, p, p, p, c, ws->na, p, ws->ndb, p, 1, ws->nda, p);
        for (int64_t j = 0; j < p * p; j++)
            ws->nda[j] += b * ws->ndb[j];
        for (int64_t i = 0; i < p; i++)
            for (int64_t j = 0; j < p; j++)
                ws->ndb[i * p + j] = ws->nda[i * p + j] + ws->nda[j * p + i];
        ttt_mm(false, false, p, q, p, 1, ws->ndb, p, X, q, 1, dXp, q);
        real *sw = dX;
        dX = dXp;
        dXp = sw;
    }
    /* X_0 = Y / (‖Y‖ + eps) */
    real n = ws->nnorm, ne = n + (real)TTT_NS_EPS, dot = 0;
    for (int64_t j = 0; j < p * q; j++)
        dot += dX[j] * ws->ny[j];
    real k = n > 0 ? dot / (ne * ne * n) : 0;
    for (int64_t j = 0; j < p * q; j++)
        dXp[j] = dX[j] / ne - k * ws->ny[j];
    if (tr)
        ttt_transpose(dg, dXp, p, q);
    else
        memcpy(dg, dXp, (size_t)(p * q) * sizeof(real));
}

/* Row norms of x [rows, cols]. */
static void ttt_row_norms(real *out, const real *x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        real ss = 0;
        for (int64_t c = 0; c < cols; c++)
            ss += x[r * cols + c] * x[r * cols + c];
        out[r] = sqrt(ss);
    }
}

/* w = each row of p rescaled to norm r0 (row / (‖row‖ + eps) · r0). */
static void ttt_renorm_fwd(real *w, const real *p, const real *r0, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const real *pr = p + r * cols;
        real ss = 0;
        for (int64_t c = 0; c < cols; c++)
            ss += pr[c] * pr[c];
        real s = r0[r] / (sqrt(ss) + (real)TTT_ROW_EPS);
        for (int64_t c = 0; c < cols; c++)
            w[r * cols + c] = pr[c] * s;
    }
}

/* dp from dw; dr0 += ∂/∂r0. */
static void ttt_renorm_bwd(real *dp, real *dr0, const real *dw, const real *p, const real *r0,
                           int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        const real *pr = p + r * cols, *dwr = dw + r * cols;
        real ss = 0, dot = 0;
        for (int64_t c = 0; c < cols; c++)
            ss += pr[c] * pr[c], dot += dwr[c] * pr[c];
        real n = sqrt(ss), ne = n + (real)TTT_ROW_EPS;
        real k = n > 0 ? r0[r] * dot / (ne * ne * n) : 0;
        for (int64_t c = 0; c < cols; c++)
            dp[r * cols + c] = dwr[c] * (r0[r] / ne) - k * pr[c];
        dr0[r] += dot / ne;
    }
}

/* One update of weight i from ws->g[i]: M, W change in place. */
static void ttt_step_fwd(ttt_ws *ws, int i, real beta, bool has_mom, lact_ttt_muon muon) {
    int64_t nel = ws->nel, rows = ttt_rows(ws, i), cols = ttt_cols(ws, i);
    const real *u = ws->g[i];
    if (has_mom) {
        for (int64_t j = 0; j < nel; j++)
            ws->m[i][j] = beta * ws->m[i][j] + ws->g[i][j];
        u = ws->m[i];
    }
    if (muon != LACT_TTT_MUON_OFF) {
        ttt_ns_fwd(ws, muon, u, rows, cols, ws->t[0]);
        u = ws->t[0];
    }
    real *p = ws->t[1];
    for (int64_t j = 0; j < nel; j++)
        p[j] = ws->w[i][j] + u[j];
    ttt_renorm_fwd(ws->w[i], p, ws->r0[i], rows, cols);
}

/* Backward of ttt_step_fwd for weight i, with ws->w[i], ws->m[i], ws->g[i]
 * as before the step. In: dw[i], dm[i] (adjoints after the step). Out:
 * dw[i] (direct path to W before the step), dm[i] (to M before), dg[i];
 * adds to dr0[i] and *dbeta. */
static void ttt_step_bwd(ttt_ws *ws, int i, real beta, bool has_mom, lact_ttt_muon muon,
                         real *dbeta) {
    int64_t nel = ws->nel, rows = ttt_rows(ws, i), cols = ttt_cols(ws, i);
    real *mu = ws->t[2], *p = ws->t[1], *dp = ws->t[3], *du = ws->t[4];
    const real *u = ws->g[i];
    if (has_mom) {
        for (int64_t j = 0; j < nel; j++)
            mu[j] = beta * ws->m[i][j] + ws->g[i][j];
        u = mu;
    }
    const real *un = u;
    if (muon != LACT_TTT_MUON_OFF) {
        ttt_ns_fwd(ws, muon, u, rows, cols, ws->t[0]);
        un = ws->t[0];
    }
    for (int64_t j = 0; j < nel; j++)
        p[j] = ws->w[i][j] + un[j];
    ttt_renorm_bwd(dp, ws->dr0[i], ws->dw[i], p, ws->r0[i], rows, cols);
    memcpy(ws->dw[i], dp, (size_t)nel * sizeof(real));
    const real *dun = dp;
    if (muon != LACT_TTT_MUON_OFF) {
        ttt_ns_bwd(ws, muon, dp, rows, cols, du);
        dun = du;
    }
    if (has_mom) {
        real dot = 0;
        for (int64_t j = 0; j < nel; j++) {
            real dmu = dun[j] + ws->dm[i][j];
            dot += dmu * ws->m[i][j];
            ws->dg[i][j] = dmu;
            ws->dm[i][j] = beta * dmu;
        }
        *dbeta += dot;
    } else {
        memcpy(ws->dg[i], dun, (size_t)nel * sizeof(real));
    }
}
