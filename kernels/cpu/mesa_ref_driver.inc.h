/* The mesa reference, part 2: forward and backward per head over the chunks.
 * Included after mesa_ref_chunk.inc.h; defines the entry points with the
 * suffix MESA_SFX (f32 | f64).
 *
 * Backward (implicit differentiation of x_t = A_t⁻¹ q_t, A_t = H_t + Λ):
 *   u_t = G_tᵀ d_o_t                 (∂ℓ/∂x_t)
 *   y_t = A_t⁻¹ u_t                  (one more CG solve; A_t is symmetric)
 *   d_q_t = y_t,  ∂ℓ/∂H_t = −y_t x_tᵀ,  ∂ℓ/∂G_t = d_o_t x_tᵀ,  d_λ = −Σ_t y_t ⊙ x_t,
 * then the state adjoints run backwards over tokens,
 *   H̄_t = −y_t x_tᵀ + γ_{t+1} H̄_{t+1},   Ḡ_t = d_o_t x_tᵀ + γ_{t+1} Ḡ_{t+1},
 * and give the inputs of step t:
 *   d_k_t = β_t (H̄_t + H̄_tᵀ) k_t + β_t Ḡ_tᵀ v_t,   d_v_t = β_t Ḡ_t k_t,
 *   d_β_t = k_tᵀ H̄_t k_t + v_tᵀ Ḡ_t k_t,
 *   d_g_t = γ_t (⟨H̄_t, H_{t−1}⟩ + ⟨Ḡ_t, G_{t−1}⟩).
 * Chunk-start states come from a forward scan; inside a chunk the per-token
 * states are rebuilt from them. O(L d²) per head besides the CG solves. */

#define MESA_CAT2(a, b) a##_##b
#define MESA_CAT(a, b) MESA_CAT2(a, b)
#define MESA_NAME(x) MESA_CAT(x, MESA_SFX)

typedef MESA_NAME(lact_mesa_in) mesa_in;
typedef MESA_NAME(lact_mesa_grad) mesa_grad;

static int64_t mesa_min(int64_t a, int64_t b) {
    return a < b ? a : b;
}

lact_status MESA_NAME(lact_cpu_mesa_forward)(real *o, real *h_last, real *g_last, double *residual,
                                             const mesa_in *in, const lact_mesa_dims *dims) {
    return MESA_NAME(lact_cpu_mesa_forward_x)(o, NULL, h_last, g_last, residual, in, dims);
}

lact_status MESA_NAME(lact_cpu_mesa_forward_x)(real *o, real *x, real *h_last, real *g_last,
                                               double *residual, const mesa_in *in,
                                               const lact_mesa_dims *dims) {
    int64_t L = dims->len, d = dims->d, C = mesa_min(dims->chunk, L);
    mesa_ws ws;
    LACT_TRY(mesa_ws_init(&ws, d, C));
    double worst = 0;
    for (int64_t bh = 0; bh < dims->b * dims->h; bh++) {
        const real *lam = in->lambda + (bh % dims->h) * d;
        const real *q = in->q + bh * L * d, *k = in->k + bh * L * d, *v = in->v + bh * L * d;
        const real *g = in->g + bh * L, *beta = in->beta + bh * L;
        memset(ws.h0, 0, (size_t)(d * d) * sizeof(real));
        memset(ws.g0, 0, (size_t)(d * d) * sizeof(real));
        for (int64_t s = 0; s < L; s += C) {
            int64_t T = mesa_min(C, L - s);
            mesa_decay(&ws, g + s, beta + s, T);
            mesa_cg(&ws, k + s * d, lam, q + s * d, T, dims->cg_steps, ws.x);
            if (x) memcpy(x + (bh * L + s) * d, ws.x, (size_t)(T * d) * sizeof(real));
            mesa_output(&ws, k + s * d, v + s * d, ws.x, T, o + (bh * L + s) * d);
            if (residual) {
                double e = mesa_residual(&ws, k + s * d, lam, q + s * d, ws.x, T);
                if (e > worst) worst = e;
            }
            mesa_advance(&ws, k + s * d, v + s * d, T);
        }
        if (h_last) memcpy(h_last + bh * d * d, ws.h0, (size_t)(d * d) * sizeof(real));
        if (g_last) memcpy(g_last + bh * d * d, ws.g0, (size_t)(d * d) * sizeof(real));
    }
    if (residual) *residual = worst;
    mesa_ws_free(&ws);
    return LACT_OK;
}

/* Backward buffers besides the chunk workspace. */
typedef struct mesa_bw {
    real *starts;              /* [chunks, 2, d, d] H0, G0 of every chunk */
    real *hs, *gs;             /* [C + 1, d, d] states before each token of a chunk (and after) */
    real *u, *y;               /* [C, d] */
    real *hbar, *gbar;         /* [d, d] */
    real *hk, *htk, *gk, *gtv; /* [d] */
    real *dq, *dk, *dv, *dg, *dbeta; /* one head: [L, d] or [L] */
    real *dlam;                      /* [H, d] */
    real *mem;
} mesa_bw;

static lact_status mesa_bw_init(mesa_bw *bw, const lact_mesa_dims *dims, int64_t C) {
    memset(bw, 0, sizeof *bw);
    int64_t L = dims->len, d = dims->d, dd = d * d, nc = (L + C - 1) / C;
    int64_t n = nc * 2 * dd + 2 * (C + 1) * dd + 2 * C * d + 2 * dd + 4 * d + 3 * L * d + 2 * L +
                dims->h * d;
    bw->mem = calloc((size_t)n, sizeof(real));
    if (!bw->mem)
        return lact_fail(LACT_E_NOMEM, "mesa backward: cannot allocate %lld bytes of workspace",
                         (long long)(n * (int64_t)sizeof(real)));
    real *m = bw->mem;
    bw->starts = m, m += nc * 2 * dd;
    bw->hs = m, m += (C + 1) * dd;
    bw->gs = m, m += (C + 1) * dd;
    bw->u = m, m += C * d;
    bw->y = m, m += C * d;
    bw->hbar = m, m += dd;
    bw->gbar = m, m += dd;
    bw->hk = m, m += d;
    bw->htk = m, m += d;
    bw->gk = m, m += d;
    bw->gtv = m, m += d;
    bw->dq = m, m += L * d;
    bw->dk = m, m += L * d;
    bw->dv = m, m += L * d;
    bw->dg = m, m += L;
    bw->dbeta = m, m += L;
    bw->dlam = m;
    return LACT_OK;
}

/* hs[t + 1], gs[t + 1] = the states after token t of the chunk, from
 * hs[0] = H0, gs[0] = G0, one rank-1 update at a time. */
static void mesa_chunk_states(mesa_bw *bw, const mesa_ws *ws, const real *k, const real *v,
                              const real *g, const real *beta, int64_t T) {
    int64_t d = ws->d, dd = d * d;
    memcpy(bw->hs, ws->h0, (size_t)dd * sizeof(real));
    memcpy(bw->gs, ws->g0, (size_t)dd * sizeof(real));
    for (int64_t t = 0; t < T; t++) {
        real gam = exp(g[t]), b = beta[t];
        const real *kt = k + t * d, *vt = v + t * d;
        const real *h_prev = bw->hs + t * dd, *g_prev = bw->gs + t * dd;
        real *h = bw->hs + (t + 1) * dd, *gg = bw->gs + (t + 1) * dd;
        for (int64_t a = 0; a < d; a++)
            for (int64_t c = 0; c < d; c++) {
                h[a * d + c] = gam * h_prev[a * d + c] + b * kt[a] * kt[c];
                gg[a * d + c] = gam * g_prev[a * d + c] + b * vt[a] * kt[c];
            }
    }
}

/* Token t (chunk-local) of the reverse sweep: adds its direct terms to the
 * state adjoints, writes the gradients of its inputs (index tg = global
 * token), then decays the adjoints by γ_t for token t − 1. */
static void mesa_reverse_token(mesa_bw *bw, int64_t d, int64_t t, int64_t tg, const real *x,
                               const real *d_o, const real *k, const real *v, const real *g,
                               const real *beta) {
    const real *xt = x + t * d, *yt = bw->y + t * d, *dot = d_o + tg * d;
    const real *kt = k + tg * d, *vt = v + tg * d;
    real *hb = bw->hbar, *gb = bw->gbar;
    for (int64_t a = 0; a < d; a++)
        for (int64_t c = 0; c < d; c++) {
            hb[a * d + c] -= yt[a] * xt[c];
            gb[a * d + c] += dot[a] * xt[c];
        }
    for (int64_t a = 0; a < d; a++) {
        real s_hk = 0, s_htk = 0, s_gk = 0, s_gtv = 0;
        for (int64_t c = 0; c < d; c++) {
            s_hk += hb[a * d + c] * kt[c];
            s_htk += hb[c * d + a] * kt[c];
            s_gk += gb[a * d + c] * kt[c];
            s_gtv += gb[c * d + a] * vt[c];
        }
        bw->hk[a] = s_hk, bw->htk[a] = s_htk, bw->gk[a] = s_gk, bw->gtv[a] = s_gtv;
    }
    real b = beta[tg], gam = exp(g[tg]);
    for (int64_t a = 0; a < d; a++) {
        bw->dk[tg * d + a] = b * (bw->hk[a] + bw->htk[a] + bw->gtv[a]);
        bw->dv[tg * d + a] = b * bw->gk[a];
    }
    bw->dbeta[tg] = mesa_dot(kt, bw->hk, d) + mesa_dot(vt, bw->gk, d);
    const real *h_prev = bw->hs + t * d * d, *g_prev = bw->gs + t * d * d;
    bw->dg[tg] = gam * (mesa_dot(hb, h_prev, d * d) + mesa_dot(gb, g_prev, d * d));
    for (int64_t n = 0; n < d * d; n++) {
        hb[n] *= gam;
        gb[n] *= gam;
    }
}

/* One head's gradients into bw (dq .. dbeta) and its d_λ into bw->dlam. */
static void mesa_backward_head(mesa_ws *ws, mesa_bw *bw, const real *d_o, const real *q,
                               const real *k, const real *v, const real *g, const real *beta,
                               const real *lam, real *dlam, int64_t L, int64_t C, int steps) {
    int64_t d = ws->d, dd = d * d, nc = (L + C - 1) / C;
    memset(ws->h0, 0, (size_t)dd * sizeof(real));
    memset(ws->g0, 0, (size_t)dd * sizeof(real));
    for (int64_t c = 0; c < nc; c++) {
        int64_t s = c * C, T = mesa_min(C, L - s);
        memcpy(bw->starts + 2 * c * dd, ws->h0, (size_t)dd * sizeof(real));
        memcpy(bw->starts + (2 * c + 1) * dd, ws->g0, (size_t)dd * sizeof(real));
        mesa_decay(ws, g + s, beta + s, T);
        mesa_advance(ws, k + s * d, v + s * d, T);
    }
    memset(bw->hbar, 0, (size_t)dd * sizeof(real));
    memset(bw->gbar, 0, (size_t)dd * sizeof(real));
    for (int64_t c = nc - 1; c >= 0; c--) {
        int64_t s = c * C, T = mesa_min(C, L - s);
        memcpy(ws->h0, bw->starts + 2 * c * dd, (size_t)dd * sizeof(real));
        memcpy(ws->g0, bw->starts + (2 * c + 1) * dd, (size_t)dd * sizeof(real));
        mesa_decay(ws, g + s, beta + s, T);
        mesa_cg(ws, k + s * d, lam, q + s * d, T, steps, ws->x);
        mesa_chunk_states(bw, ws, k + s * d, v + s * d, g + s, beta + s, T);
        for (int64_t t = 0; t < T; t++) {
            const real *gt = bw->gs + (t + 1) * dd, *dot = d_o + (s + t) * d;
            for (int64_t b = 0; b < d; b++) {
                real acc = 0;
                for (int64_t a = 0; a < d; a++)
                    acc += gt[a * d + b] * dot[a];
                bw->u[t * d + b] = acc;
            }
        }
        mesa_cg(ws, k + s * d, lam, bw->u, T, steps, bw->y);
        memcpy(bw->dq + s * d, bw->y, (size_t)(T * d) * sizeof(real));
        for (int64_t n = 0; n < T * d; n++)
            dlam[n % d] -= bw->y[n] * ws->x[n];
        for (int64_t t = T - 1; t >= 0; t--)
            mesa_reverse_token(bw, d, t, s + t, ws->x, d_o, k, v, g, beta);
    }
}

static void mesa_put(real *dst, const real *src, int64_t n) {
    if (dst) memcpy(dst, src, (size_t)n * sizeof(real));
}

lact_status MESA_NAME(lact_cpu_mesa_backward)(const mesa_grad *grad, const real *d_o,
                                              const mesa_in *in, const lact_mesa_dims *dims) {
    int64_t L = dims->len, d = dims->d, C = mesa_min(dims->chunk, L);
    mesa_ws ws;
    mesa_bw bw;
    LACT_TRY(mesa_ws_init(&ws, d, C));
    lact_status st = mesa_bw_init(&bw, dims, C);
    if (st != LACT_OK) {
        mesa_ws_free(&ws);
        return st;
    }
    for (int64_t bh = 0; bh < dims->b * dims->h; bh++) {
        int64_t head = bh % dims->h, off = bh * L * d;
        mesa_backward_head(&ws, &bw, d_o + off, in->q + off, in->k + off, in->v + off,
                           in->g + bh * L, in->beta + bh * L, in->lambda + head * d,
                           bw.dlam + head * d, L, C, dims->cg_steps);
        mesa_put(grad->q ? grad->q + off : NULL, bw.dq, L * d);
        mesa_put(grad->k ? grad->k + off : NULL, bw.dk, L * d);
        mesa_put(grad->v ? grad->v + off : NULL, bw.dv, L * d);
        mesa_put(grad->g ? grad->g + bh * L : NULL, bw.dg, L);
        mesa_put(grad->beta ? grad->beta + bh * L : NULL, bw.dbeta, L);
    }
    mesa_put(grad->lambda, bw.dlam, dims->h * d);
    free(bw.mem);
    mesa_ws_free(&ws);
    return LACT_OK;
}
