/* The ttt reference, part 4: streaming decode (specs/lact.md "Decoding").
 * Included after ttt_ref_driver.inc.h. Each head keeps its own W, M and
 * initial row norms; one workspace serves every head by pointing its w, m
 * and r0 at that head's state, so the tile products and the step are the
 * op's own code and the results match the causal order of the full op. */

typedef TTT_NAME(lact_ttt_dec) ttt_dec;

/* Per head: W0 | W1 | W2 and M0 | M1 | M2 ([3·nel] each), r0 rows (dh | d |
 * dh), buffered k, v [C, d], lr0..2 [3, C], β [C]. */
static int64_t ttt_dec_head_numel(int64_t d, int64_t dh, int64_t chunk) {
    return 6 * d * dh + (2 * dh + d) + chunk * (2 * d + 4);
}

static real *ttt_dec_head(const ttt_dec *s, int64_t h) {
    return (real *)s->mem + h * ttt_dec_head_numel(s->d, s->dh, s->chunk);
}

/* Points the workspace's state at head h's. */
static void ttt_dec_bind(const ttt_dec *s, ttt_ws *ws, int64_t h, real **bk, real **bv, real **bl,
                         real **bm) {
    int64_t nel = s->d * s->dh, C = s->chunk;
    real *at = ttt_dec_head(s, h);
    for (int i = 0; i < 3; i++)
        ws->w[i] = at + i * nel;
    at += 3 * nel;
    for (int i = 0; i < 3; i++)
        ws->m[i] = at + i * nel;
    at += 3 * nel;
    ws->r0[0] = at, ws->r0[1] = at + s->dh, ws->r0[2] = at + s->dh + s->d;
    at += 2 * s->dh + s->d;
    *bk = at, *bv = at + C * s->d;
    *bl = at + 2 * C * s->d, *bm = *bl + 3 * C;
}

lact_status TTT_NAME(lact_cpu_ttt_decode_init)(ttt_dec *s, const real *w0, const real *w1,
                                               const real *w2, int64_t n, int64_t d, int64_t dh,
                                               int64_t chunk, bool momentum, lact_ttt_muon muon) {
    memset(s, 0, sizeof *s);
    if (n < 1 || d < 1 || dh < 1 || chunk < 1)
        return lact_fail(LACT_E_ARG,
                         "ttt decode: n %lld, d %lld, dh %lld, chunk %lld must be "
                         "positive",
                         (long long)n, (long long)d, (long long)dh, (long long)chunk);
    s->n = n, s->d = d, s->dh = dh, s->chunk = chunk;
    s->momentum = momentum;
    s->muon = muon;
    int64_t total = n * ttt_dec_head_numel(d, dh, chunk);
    s->mem = calloc((size_t)total, sizeof(real));
    ttt_ws *ws = malloc(sizeof *ws);
    if (!s->mem || !ws) {
        free(s->mem), free(ws);
        s->mem = NULL;
        return lact_fail(LACT_E_NOMEM,
                         "ttt decode: cannot allocate the state of %lld heads "
                         "(%lld bytes)",
                         (long long)n, (long long)(total * (int64_t)sizeof(real)));
    }
    lact_status st = ttt_ws_init(ws, d, dh);
    if (st != LACT_OK) {
        free(s->mem), free(ws);
        s->mem = NULL;
        return st;
    }
    s->ws = ws;
    const real *w_init[3] = {w0, w1, w2};
    for (int64_t h = 0; h < n; h++) {
        real *bk, *bv, *bl, *bm;
        ttt_dec_bind(s, ws, h, &bk, &bv, &bl, &bm);
        for (int i = 0; i < 3; i++) {
            memcpy(ws->w[i], w_init[i] + h * ws->nel, (size_t)ws->nel * sizeof(real));
            ttt_row_norms(ws->r0[i], ws->w[i], ttt_rows(ws, i), ttt_cols(ws, i));
        }
    }
    return LACT_OK;
}

void TTT_NAME(lact_cpu_ttt_decode_free)(ttt_dec *s) {
    if (!s) return;
    ttt_ws *ws = s->ws;
    if (ws) {
        /* w, m, r0 may point into a head's state; the workspace's own
         * memory is ws->mem. */
        ttt_ws_free(ws);
        free(ws);
    }
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* One update of the bound head from its C buffered tokens. */
static void ttt_dec_update(const ttt_dec *s, ttt_ws *ws, const real *bk, const real *bv,
                           const real *bl, const real *bm) {
    int64_t C = s->chunk, d = s->d;
    for (int i = 0; i < 3; i++)
        memset(ws->g[i], 0, (size_t)ws->nel * sizeof(real));
    /* Tiles from the chunk's first token, as the op's update tiles them. */
    for (int64_t t0 = 0; t0 < C; t0 += TTT_TILE) {
        int64_t T = C - t0 < TTT_TILE ? C - t0 : TTT_TILE;
        ttt_tile_grad_fwd(ws, bk + t0 * d, bv + t0 * d, bl + t0, bl + C + t0, bl + 2 * C + t0, T);
    }
    lact_ttt_op whole = {0, C, true, false};
    real beta = s->momentum ? ttt_mean_beta(bm, &whole) : 0;
    for (int i = 0; i < 3; i++)
        ttt_step_fwd(ws, i, beta, s->momentum, s->muon);
}

lact_status TTT_NAME(lact_cpu_ttt_decode_feed)(ttt_dec *s, real *o, const ttt_in *in, int64_t T) {
    if (!s->mem || !s->ws) return lact_fail(LACT_E_ARG, "ttt decode: the state is not initialised");
    if (T < 1) return lact_fail(LACT_E_ARG, "ttt decode: %lld tokens", (long long)T);
    if ((in->momentum != NULL) != s->momentum)
        return lact_fail(LACT_E_ARG,
                         "ttt decode: the state was made %s momentum but the "
                         "tokens come %s it",
                         s->momentum ? "with" : "without", in->momentum ? "with" : "without");
    ttt_ws *ws = s->ws;
    int64_t d = s->d, C = s->chunk, fill = s->fill;
    memset(o, 0, (size_t)(s->n * T * d) * sizeof(real));
    for (int64_t h = 0; h < s->n; h++) {
        const real *q = in->q + h * T * d, *k = in->k + h * T * d, *v = in->v + h * T * d;
        const real *lr[3] = {in->lr0 + h * T, in->lr1 + h * T, in->lr2 + h * T};
        const real *mom = s->momentum ? in->momentum + h * T : NULL;
        real *oh = o + h * T * d;
        real *bk, *bv, *bl, *bm;
        ttt_dec_bind(s, ws, h, &bk, &bv, &bl, &bm);
        fill = s->fill;
        for (int64_t t = 0; t < T;) {
            int64_t m = C - fill < T - t ? C - fill : T - t;
            /* Apply first: these tokens see only the chunks before theirs. */
            for (int64_t t0 = t; t0 < t + m; t0 += TTT_TILE) {
                int64_t nt = t + m - t0 < TTT_TILE ? t + m - t0 : TTT_TILE;
                ttt_tile_apply_fwd(ws, q + t0 * d, nt, oh + t0 * d);
            }
            memcpy(bk + fill * d, k + t * d, (size_t)(m * d) * sizeof(real));
            memcpy(bv + fill * d, v + t * d, (size_t)(m * d) * sizeof(real));
            for (int i = 0; i < 3; i++)
                memcpy(bl + i * C + fill, lr[i] + t, (size_t)m * sizeof(real));
            if (mom) memcpy(bm + fill, mom + t, (size_t)m * sizeof(real));
            fill += m;
            t += m;
            if (fill == C) {
                ttt_dec_update(s, ws, bk, bv, bl, bm);
                fill = 0;
            }
        }
    }
    s->fill = fill;
    s->pos += T;
    return LACT_OK;
}

/* The current fast weights of every head: w0, w2 [N, dh, d], w1 [N, d, dh]
 * (any may be NULL). */
void TTT_NAME(lact_cpu_ttt_decode_weights)(const ttt_dec *s, real *w0, real *w1, real *w2) {
    int64_t nel = s->d * s->dh;
    real *out[3] = {w0, w1, w2};
    for (int64_t h = 0; h < s->n; h++)
        for (int i = 0; i < 3; i++)
            if (out[i])
                memcpy(out[i] + h * nel, ttt_dec_head(s, h) + i * nel, (size_t)nel * sizeof(real));
}
