/* The ttt reference, part 1: workspace and the per-tile products.
 * Included by ttt_ref_f32.c / ttt_ref_f64.c after defining
 *   TTT_REAL (float | double) and TTT_GEMM (cblas_sgemm | cblas_dgemm).
 *
 * Per head: W0, W2 [dh, d], W1 [d, dh], row-major. A tile is T <= TTT_TILE
 * consecutive tokens; K, V, Q are its rows of k, v, q ([T, d]). Row form of
 * the spec's column vectors: A = K W0ᵀ, B = K W2ᵀ, E = V W1 (e_t = W1ᵀ v_t),
 * all [T, dh]. */
#include <cblas.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

typedef TTT_REAL real;

/* Tokens per tile: bounds the activations to O(TTT_TILE · dh) per head
 * whatever the chunk size, since G and its backward are sums over tokens. */
#define TTT_TILE 256
#define TTT_ROW_EPS 1e-5
#define TTT_NS_EPS 1e-7
#define TTT_NBUF 9

typedef struct ttt_ws {
    int64_t d, dh, nel;
    int64_t wn;                  /* heads of the initial weights (0: one per head) */
    real *w[3], *m[3], *g[3];    /* state and this step's G */
    real *dw[3], *dm[3], *dg[3]; /* adjoints */
    real *r0[3], *dr0[3];        /* initial row norms and their adjoints */
    real *t[5];                  /* [nel] temporaries of one weight's step */
    real *buf[TTT_NBUF];         /* [TTT_TILE, dh] tile activations */
    real *nx[6], *ny, *nd, *nd2; /* Newton–Schulz iterates X_0..X_5 [p, q] */
    real *na, *nb, *nda, *ndb;   /* [p, p] */
    real nnorm;                  /* ‖G‖_F of the last Newton–Schulz input */
    real *mem;
} ttt_ws;

static int64_t ttt_rows(const ttt_ws *ws, int i) {
    return i == 1 ? ws->d : ws->dh;
}
static int64_t ttt_cols(const ttt_ws *ws, int i) {
    return i == 1 ? ws->dh : ws->d;
}

static lact_status ttt_ws_init(ttt_ws *ws, int64_t d, int64_t dh) {
    memset(ws, 0, sizeof *ws);
    ws->d = d;
    ws->dh = dh;
    ws->nel = d * dh;
    int64_t p = d < dh ? d : dh, rows = d < dh ? dh : d;
    int64_t nel = ws->nel, tile = TTT_TILE * dh;
    int64_t total = 3 * 6 * nel + 6 * rows + 5 * nel + TTT_NBUF * tile + 9 * nel + 4 * p * p;
    ws->mem = malloc((size_t)total * sizeof(real));
    if (!ws->mem)
        return lact_fail(LACT_E_NOMEM, "ttt: cannot allocate %lld bytes of workspace",
                         (long long)(total * (int64_t)sizeof(real)));
    real *at = ws->mem;
    for (int i = 0; i < 3; i++) {
        ws->w[i] = at, at += nel;
        ws->m[i] = at, at += nel;
        ws->g[i] = at, at += nel;
        ws->dw[i] = at, at += nel;
        ws->dm[i] = at, at += nel;
        ws->dg[i] = at, at += nel;
        ws->r0[i] = at, at += rows;
        ws->dr0[i] = at, at += rows;
    }
    for (int i = 0; i < 5; i++)
        ws->t[i] = at, at += nel;
    for (int i = 0; i < TTT_NBUF; i++)
        ws->buf[i] = at, at += tile;
    for (int i = 0; i < 6; i++)
        ws->nx[i] = at, at += nel;
    ws->ny = at, at += nel;
    ws->nd = at, at += nel;
    ws->nd2 = at, at += nel;
    ws->na = at, at += p * p;
    ws->nb = at, at += p * p;
    ws->nda = at, at += p * p;
    ws->ndb = at, at += p * p;
    return LACT_OK;
}

static void ttt_ws_free(ttt_ws *ws) {
    free(ws->mem);
    ws->mem = NULL;
}

/* c = alpha op(a) op(b) + beta c, row-major. */
static void ttt_mm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, real alpha, const real *a,
                   int64_t lda, const real *b, int64_t ldb, real beta, real *c, int64_t ldc) {
    TTT_GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m,
             (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static real ttt_sigmoid(real x) {
    return (real)1 / ((real)1 + exp(-x));
}

/* G += the tile's contribution (the spec's G0, G1, G2, lrs included). */
static void ttt_tile_grad_fwd(ttt_ws *ws, const real *K, const real *V, const real *l0,
                              const real *l1, const real *l2, int64_t T) {
    int64_t d = ws->d, dh = ws->dh;
    real *A = ws->buf[0], *B = ws->buf[1], *E = ws->buf[2];
    real *H1 = ws->buf[3], *X2 = ws->buf[4], *X0 = ws->buf[5];
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->w[0], d, 0, A, dh);
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->w[2], d, 0, B, dh);
    ttt_mm(false, false, T, dh, d, 1, V, d, ws->w[1], dh, 0, E, dh);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = t * dh; j < (t + 1) * dh; j++) {
            real a = A[j], b = B[j], e = E[j], sg = ttt_sigmoid(a);
            real s = a * sg, sp = sg * (1 + a * (1 - sg));
            H1[j] = l1[t] * s * b;
            X2[j] = l2[t] * e * s;
            X0[j] = l0[t] * e * b * sp;
        }
    }
    ttt_mm(true, false, d, dh, T, 1, V, d, H1, dh, 1, ws->g[1], dh);
    ttt_mm(true, false, dh, d, T, 1, X2, dh, K, d, 1, ws->g[2], d);
    ttt_mm(true, false, dh, d, T, 1, X0, dh, K, d, 1, ws->g[0], d);
}

/* Backward of ttt_tile_grad_fwd at the same W: from dG (ws->dg) adds to
 * dK, dV [T, d], dl0, dl1, dl2 [T] and dW (ws->dw). */
static void ttt_tile_grad_bwd(ttt_ws *ws, const real *K, const real *V, const real *l0,
                              const real *l1, const real *l2, int64_t T, real *dK, real *dV,
                              real *dl0, real *dl1, real *dl2) {
    int64_t d = ws->d, dh = ws->dh;
    real *A = ws->buf[0], *B = ws->buf[1], *E = ws->buf[2];
    real *P1 = ws->buf[3], *KG2 = ws->buf[4], *KG0 = ws->buf[5];
    real *H1 = ws->buf[6], *X2 = ws->buf[7], *X0 = ws->buf[8];
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->w[0], d, 0, A, dh);
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->w[2], d, 0, B, dh);
    ttt_mm(false, false, T, dh, d, 1, V, d, ws->w[1], dh, 0, E, dh);
    ttt_mm(false, false, T, dh, d, 1, V, d, ws->dg[1], dh, 0, P1, dh); /* (dG1ᵀ v_t)ᵀ */
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->dg[2], d, 0, KG2, dh);  /* (dG2 k_t)ᵀ */
    ttt_mm(false, true, T, dh, d, 1, K, d, ws->dg[0], d, 0, KG0, dh);  /* (dG0 k_t)ᵀ */
    for (int64_t t = 0; t < T; t++) {
        real s0 = 0, s1 = 0, s2 = 0;
        for (int64_t j = t * dh; j < (t + 1) * dh; j++) {
            real a = A[j], b = B[j], e = E[j], sg = ttt_sigmoid(a);
            real s = a * sg, sp = sg * (1 + a * (1 - sg));
            real spp = sg * (1 - sg) * (2 + a * (1 - 2 * sg));
            s1 += P1[j] * s * b;
            s2 += KG2[j] * e * s;
            s0 += KG0[j] * e * b * sp;
            real dh1 = l1[t] * P1[j], g2 = l2[t] * KG2[j], g0 = l0[t] * KG0[j];
            real de = g2 * s + g0 * b * sp;
            real ds = g2 * e + dh1 * b;
            real db = g0 * e * sp + dh1 * s;
            real dsp = g0 * e * b;
            H1[j] = l1[t] * s * b;
            X2[j] = l2[t] * e * s;
            X0[j] = l0[t] * e * b * sp;
            A[j] = ds * sp + dsp * spp; /* dA */
            B[j] = db;
            E[j] = de;
        }
        dl0[t] += s0;
        dl1[t] += s1;
        dl2[t] += s2;
    }
    ttt_mm(false, true, T, d, dh, 1, H1, dh, ws->dg[1], dh, 1, dV, d);
    ttt_mm(false, false, T, d, dh, 1, X2, dh, ws->dg[2], d, 1, dK, d);
    ttt_mm(false, false, T, d, dh, 1, X0, dh, ws->dg[0], d, 1, dK, d);
    ttt_mm(false, true, T, d, dh, 1, E, dh, ws->w[1], dh, 1, dV, d);
    ttt_mm(true, false, d, dh, T, 1, V, d, E, dh, 1, ws->dw[1], dh);
    ttt_mm(true, false, dh, d, T, 1, A, dh, K, d, 1, ws->dw[0], d);
    ttt_mm(false, false, T, d, dh, 1, A, dh, ws->w[0], d, 1, dK, d);
    ttt_mm(true, false, dh, d, T, 1, B, dh, K, d, 1, ws->dw[2], d);
    ttt_mm(false, false, T, d, dh, 1, B, dh, ws->w[2], d, 1, dK, d);
}

/* O [T, d] += f_W(Q). */
static void ttt_tile_apply_fwd(ttt_ws *ws, const real *Q, int64_t T, real *O) {
    int64_t d = ws->d, dh = ws->dh;
    real *A = ws->buf[0], *B = ws->buf[1];
    ttt_mm(false, true, T, dh, d, 1, Q, d, ws->w[0], d, 0, A, dh);
    ttt_mm(false, true, T, dh, d, 1, Q, d, ws->w[2], d, 0, B, dh);
    for (int64_t j = 0; j < T * dh; j++)
        A[j] = A[j] * ttt_sigmoid(A[j]) * B[j];
    ttt_mm(false, true, T, d, dh, 1, A, dh, ws->w[1], dh, 1, O, d);
}

/* From dO [T, d]: dQ += ∂/∂Q, dW += ∂/∂W. */
static void ttt_tile_apply_bwd(ttt_ws *ws, const real *Q, const real *dO, int64_t T, real *dQ) {
    int64_t d = ws->d, dh = ws->dh;
    real *A = ws->buf[0], *B = ws->buf[1], *dH = ws->buf[2], *H = ws->buf[3];
    ttt_mm(false, true, T, dh, d, 1, Q, d, ws->w[0], d, 0, A, dh);
    ttt_mm(false, true, T, dh, d, 1, Q, d, ws->w[2], d, 0, B, dh);
    ttt_mm(false, false, T, dh, d, 1, dO, d, ws->w[1], dh, 0, dH, dh);
    for (int64_t j = 0; j < T * dh; j++) {
        real a = A[j], b = B[j], sg = ttt_sigmoid(a);
        real s = a * sg, sp = sg * (1 + a * (1 - sg));
        H[j] = s * b;
        A[j] = dH[j] * b * sp;
        B[j] = dH[j] * s;
    }
    ttt_mm(true, false, d, dh, T, 1, dO, d, H, dh, 1, ws->dw[1], dh);
    ttt_mm(true, false, dh, d, T, 1, A, dh, Q, d, 1, ws->dw[0], d);
    ttt_mm(true, false, dh, d, T, 1, B, dh, Q, d, 1, ws->dw[2], d);
    ttt_mm(false, false, T, d, dh, 1, A, dh, ws->w[0], d, 1, dQ, d);
    ttt_mm(false, false, T, d, dh, 1, B, dh, ws->w[2], d, 1, dQ, d);
}
