/* The ttt reference, part 3: the order of operations, forward and backward
 * per head. Included after ttt_ref_step.inc.h; defines the two public entry
 * points with the suffix TTT_SFX (f32 | f64). */

#define TTT_CAT2(a, b) a##_##b
#define TTT_CAT(a, b) TTT_CAT2(a, b)
#define TTT_NAME(x) TTT_CAT(x, TTT_SFX)

typedef TTT_NAME(lact_ttt_in) ttt_in;
typedef TTT_NAME(lact_ttt_grad) ttt_grad;

/* n values from x into the state at element at of the snapshots' type:
 * copied, or rounded to BF16 (state_bf16). */
static void ttt_put(real *state, int64_t at, const real *x, int64_t n, bool b16) {
    if (!b16) {
        memcpy(state + at, x, (size_t)n * sizeof(real));
        return;
    }
    uint16_t *s = (uint16_t *)(void *)state + at;
    for (int64_t i = 0; i < n; i++)
        s[i] = lact_f32_to_bf16((float)x[i]);
}

static void ttt_get(real *x, const real *state, int64_t at, int64_t n, bool b16) {
    if (!b16) {
        memcpy(x, state + at, (size_t)n * sizeof(real));
        return;
    }
    const uint16_t *s = (const uint16_t *)(const void *)state + at;
    for (int64_t i = 0; i < n; i++)
        x[i] = (real)lact_bf16_to_f32(s[i]);
}

/* Head h's weights (and momenta) into snapshot slot u of a state of n heads
 * (layout: lact_ttt_state_offset). */
static void ttt_save(const ttt_ws *ws, real *state, const lact_ttt_args *args, int64_t n, int64_t u,
                     int64_t h, bool has_mom) {
    for (int j = 0; j < 3; j++) {
        int64_t w = lact_ttt_state_offset(n, has_mom, ws->d, ws->dh, u, h, j, false);
        ttt_put(state, w, ws->w[j], ws->nel, args->state_bf16);
        if (!has_mom) continue;
        int64_t m = lact_ttt_state_offset(n, has_mom, ws->d, ws->dh, u, h, j, true);
        ttt_put(state, m, ws->m[j], ws->nel, args->state_bf16);
    }
}

static void ttt_load(ttt_ws *ws, const real *state, const lact_ttt_args *args, int64_t n, int64_t u,
                     int64_t h, bool has_mom) {
    for (int j = 0; j < 3; j++) {
        int64_t w = lact_ttt_state_offset(n, has_mom, ws->d, ws->dh, u, h, j, false);
        ttt_get(ws->w[j], state, w, ws->nel, args->state_bf16);
        if (!has_mom) continue;
        int64_t m = lact_ttt_state_offset(n, has_mom, ws->d, ws->dh, u, h, j, true);
        ttt_get(ws->m[j], state, m, ws->nel, args->state_bf16);
    }
}

/* The initial weights' head that head h starts from. */
static int64_t ttt_w_head(const ttt_ws *ws, int64_t h) {
    return ws->wn ? h % ws->wn : h;
}

/* Initial weights of head h into ws->w, momentum zero, initial row norms. */
static void ttt_start_head(ttt_ws *ws, const ttt_in *in, int64_t h) {
    const real *w_init[3] = {in->w0, in->w1, in->w2};
    for (int i = 0; i < 3; i++) {
        memcpy(ws->w[i], w_init[i] + ttt_w_head(ws, h) * ws->nel, (size_t)ws->nel * sizeof(real));
        memset(ws->m[i], 0, (size_t)ws->nel * sizeof(real));
        ttt_row_norms(ws->r0[i], ws->w[i], ttt_rows(ws, i), ttt_cols(ws, i));
    }
}

static real ttt_mean_beta(const real *mom, const lact_ttt_op *op) {
    real s = 0;
    for (int64_t t = op->start; t < op->end; t++)
        s += mom[t];
    return s / (real)(op->end - op->start);
}

/* Head h's sequences; the per-token ones are views at the head's start. */
typedef struct ttt_head {
    const real *q, *k, *v, *l0, *l1, *l2, *mom;
} ttt_head;

static ttt_head ttt_head_of(const ttt_in *in, int64_t L, int64_t d, int64_t h) {
    return (ttt_head){in->q + h * L * d,
                      in->k + h * L * d,
                      in->v + h * L * d,
                      in->lr0 + h * L,
                      in->lr1 + h * L,
                      in->lr2 + h * L,
                      in->momentum ? in->momentum + h * L : NULL};
}

/* ws->g = G of update op over the whole range. */
static void ttt_grad_of(ttt_ws *ws, const ttt_head *x, const lact_ttt_op *op) {
    int64_t d = ws->d;
    for (int i = 0; i < 3; i++)
        memset(ws->g[i], 0, (size_t)ws->nel * sizeof(real));
    for (int64_t t0 = op->start; t0 < op->end; t0 += TTT_TILE) {
        int64_t T = op->end - t0 < TTT_TILE ? op->end - t0 : TTT_TILE;
        ttt_tile_grad_fwd(ws, x->k + t0 * d, x->v + t0 * d, x->l0 + t0, x->l1 + t0, x->l2 + t0, T);
    }
}

/* One update of ws->w, ws->m by op. */
static void ttt_update(ttt_ws *ws, const ttt_head *x, const lact_ttt_op *op, lact_ttt_muon muon) {
    ttt_grad_of(ws, x, op);
    real beta = x->mom ? ttt_mean_beta(x->mom, op) : 0;
    for (int i = 0; i < 3; i++)
        ttt_step_fwd(ws, i, beta, x->mom != NULL, muon);
}

/* Head h's weights after u updates into ws->w, ws->m: from the state where
 * the forward saved them, else rebuilt (u = 0: the initial weights) or
 * recomputed from the weights one update earlier. */
static void ttt_weights_at(ttt_ws *ws, const ttt_in *in, const ttt_head *x, const real *state,
                           const lact_ttt_args *args, int64_t n, int64_t h, int64_t u) {
    bool has_mom = x->mom != NULL;
    int64_t slot = lact_ttt_state_slot(args, u);
    if (slot >= 0) {
        ttt_load(ws, state, args, n, slot, h, has_mom);
        return;
    }
    if (u == 0) {
        ttt_start_head(ws, in, h);
        return;
    }
    ttt_weights_at(ws, in, x, state, args, n, h, u - 1);
    int64_t j = 0;
    for (int64_t seen = 0; j < args->n_ops; j++)
        if (args->ops[j].update && seen++ == u - 1) break;
    ttt_update(ws, x, &args->ops[j], args->muon);
}

lact_status TTT_NAME(lact_cpu_ttt_forward)(real *o, real *state, const ttt_in *in,
                                           const lact_ttt_dims *dims, const lact_ttt_args *args) {
    int64_t L = dims->len, d = dims->d;
    bool has_mom = in->momentum != NULL;
    ttt_ws ws;
    LACT_TRY(ttt_ws_init(&ws, d, dims->dh));
    ws.wn = dims->wn;
    memset(o, 0, (size_t)(dims->n * L * d) * sizeof(real));
    for (int64_t h = 0; h < dims->n; h++) {
        ttt_head x = ttt_head_of(in, L, d, h);
        real *oh = o + h * L * d;
        int64_t u = 0;
        ttt_start_head(&ws, in, h);
        for (int64_t j = 0; j < args->n_ops; j++) {
            const lact_ttt_op *op = &args->ops[j];
            if (op->apply)
                for (int64_t t0 = op->start; t0 < op->end; t0 += TTT_TILE) {
                    int64_t T = op->end - t0 < TTT_TILE ? op->end - t0 : TTT_TILE;
                    ttt_tile_apply_fwd(&ws, x.q + t0 * d, T, oh + t0 * d);
                }
            if (!op->update) continue;
            ttt_update(&ws, &x, op, args->muon);
            int64_t slot = lact_ttt_state_slot(args, ++u);
            if (state && slot >= 0) ttt_save(&ws, state, args, dims->n, slot, h, has_mom);
        }
    }
    ttt_ws_free(&ws);
    return LACT_OK;
}

/* Per-head gradient accumulators, copied out to the non-NULL outputs. */
typedef struct ttt_acc {
    real *q, *k, *v, *l0, *l1, *l2, *mom, *mem;
} ttt_acc;

static void ttt_copy_out(real *dst, const real *src, int64_t n) {
    if (dst) memcpy(dst, src, (size_t)n * sizeof(real));
}

lact_status TTT_NAME(lact_cpu_ttt_backward)(const ttt_grad *grad, const real *d_o,
                                            const real *state, const ttt_in *in,
                                            const lact_ttt_dims *dims, const lact_ttt_args *args) {
    int64_t L = dims->len, d = dims->d;
    bool has_mom = in->momentum != NULL;
    ttt_ws ws;
    LACT_TRY(ttt_ws_init(&ws, d, dims->dh));
    ws.wn = dims->wn;
    /* Heads that share initial weights add their gradients into them. */
    const bool shared = dims->wn && dims->wn != dims->n;
    ttt_acc acc;
    acc.mem = calloc((size_t)(3 * L * d + 4 * L), sizeof(real));
    if (!acc.mem) {
        ttt_ws_free(&ws);
        return lact_fail(LACT_E_NOMEM, "ttt backward: cannot allocate gradient buffers");
    }
    acc.q = acc.mem, acc.k = acc.q + L * d, acc.v = acc.k + L * d;
    acc.l0 = acc.v + L * d, acc.l1 = acc.l0 + L, acc.l2 = acc.l1 + L, acc.mom = acc.l2 + L;
    int64_t n_upd = lact_ttt_n_updates(args);
    real *dw_out[3] = {grad->w0, grad->w1, grad->w2};
    const real *w_init[3] = {in->w0, in->w1, in->w2};

    for (int64_t h = 0; h < dims->n; h++) {
        ttt_head x = ttt_head_of(in, L, d, h);
        const real *doh = d_o + h * L * d;
        memset(acc.mem, 0, (size_t)(3 * L * d + 4 * L) * sizeof(real));
        ttt_start_head(&ws, in, h);
        for (int i = 0; i < 3; i++) {
            memset(ws.dw[i], 0, (size_t)ws.nel * sizeof(real));
            memset(ws.dm[i], 0, (size_t)ws.nel * sizeof(real));
            memset(ws.dr0[i], 0, (size_t)ttt_rows(&ws, i) * sizeof(real));
        }
        int64_t upd = n_upd;
        for (int64_t j = args->n_ops - 1; j >= 0; j--) {
            const lact_ttt_op *op = &args->ops[j];
            if (op->update) upd--;
            ttt_weights_at(&ws, in, &x, state, args, dims->n, h, upd);
            if (op->update) {
                ttt_grad_of(&ws, &x, op);
                real beta = has_mom ? ttt_mean_beta(x.mom, op) : 0, dbeta = 0;
                for (int i = 0; i < 3; i++)
                    ttt_step_bwd(&ws, i, beta, has_mom, args->muon, &dbeta);
                for (int64_t t0 = op->start; t0 < op->end; t0 += TTT_TILE) {
                    int64_t T = op->end - t0 < TTT_TILE ? op->end - t0 : TTT_TILE;
                    ttt_tile_grad_bwd(&ws, x.k + t0 * d, x.v + t0 * d, x.l0 + t0, x.l1 + t0,
                                      x.l2 + t0, T, acc.k + t0 * d, acc.v + t0 * d, acc.l0 + t0,
                                      acc.l1 + t0, acc.l2 + t0);
                }
                if (has_mom) {
                    real share = dbeta / (real)(op->end - op->start);
                    for (int64_t t = op->start; t < op->end; t++)
                        acc.mom[t] += share;
                }
            }
            if (op->apply)
                for (int64_t t0 = op->start; t0 < op->end; t0 += TTT_TILE) {
                    int64_t T = op->end - t0 < TTT_TILE ? op->end - t0 : TTT_TILE;
                    ttt_tile_apply_bwd(&ws, x.q + t0 * d, doh + t0 * d, T, acc.q + t0 * d);
                }
        }
        /* The initial weights reach the output directly and through the
         * norms every renorm restores: r0 = ‖w_init row‖. */
        for (int i = 0; i < 3; i++) {
            if (!dw_out[i]) continue;
            int64_t rows = ttt_rows(&ws, i), cols = ttt_cols(&ws, i);
            const real *wi = w_init[i] + ttt_w_head(&ws, h) * ws.nel;
            real *dst = dw_out[i] + ttt_w_head(&ws, h) * ws.nel;
            bool first = !shared || h < dims->wn;
            for (int64_t r = 0; r < rows; r++) {
                real n = ws.r0[i][r], f = n > 0 ? ws.dr0[i][r] / n : 0;
                for (int64_t c = 0; c < cols; c++) {
                    real gv = ws.dw[i][r * cols + c] + f * wi[r * cols + c];
                    dst[r * cols + c] = first ? gv : dst[r * cols + c] + gv;
                }
            }
        }
        ttt_copy_out(grad->q ? grad->q + h * L * d : NULL, acc.q, L * d);
        ttt_copy_out(grad->k ? grad->k + h * L * d : NULL, acc.k, L * d);
        ttt_copy_out(grad->v ? grad->v + h * L * d : NULL, acc.v, L * d);
        ttt_copy_out(grad->lr0 ? grad->lr0 + h * L : NULL, acc.l0, L);
        ttt_copy_out(grad->lr1 ? grad->lr1 + h * L : NULL, acc.l1, L);
        ttt_copy_out(grad->lr2 ? grad->lr2 + h * L : NULL, acc.l2, L);
        if (has_mom) ttt_copy_out(grad->momentum ? grad->momentum + h * L : NULL, acc.mom, L);
    }
    free(acc.mem);
    ttt_ws_free(&ws);
    return LACT_OK;
}
