/* The ttt op on CUDA: the order of operations, each a few batched cuBLASLt
 * products over the N heads plus fused element-wise kernels
 * (ttt_kernels.cuh) and, with Muon, batched Newton–Schulz (ttt_ns.cuh).
 * Long ranges run in tiles of at most TTT_TILE tokens, so temporaries are
 * O(TTT_TILE · dh) per head whatever the order. All temporaries come from
 * one cached device workspace; nothing is allocated per chunk.
 *
 * Backward (ttt_backward.cuh) walks the order in reverse from the saved
 * state: per update it recomputes the step (G, momentum, Newton–Schulz,
 * renorm) and propagates through it, then through the products that made
 * G; per apply through the read-out. Weights the state lacks (the initial ones, and with
 * save_every 2 those after odd updates) are rebuilt in the working W, M.
 *
 * A BF16 state (state_bf16, BF16 activations) holds the weights in the
 * products' type: the forward's renorm writes its BF16 copy of W into the
 * snapshot, where the products read it, and a BF16 copy of M beside it,
 * while W and M go on in F32 in the workspace; the backward's products and
 * step read the snapshot in place. Rebuilt weights get the same BF16
 * copies (Wc, M16), so the step's backward reads one type per call.
 * Without Muon (m16) G and the momentum have no F32 form at all: the G
 * products write BF16 and the momentum goes from update to update as the
 * snapshots' copy, so the step moves a third fewer bytes and forward and
 * backward see the same momentum. */
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "kernels/cuda/ttt_cuda.h"
#include "kernels/cuda/ttt_apply_fused.h"
#include "kernels/cuda/ttt_hidden_fused.h"
#include "kernels/cuda/ttt_hidden_stream.h"
#include "kernels/cuda/ttt_ns.cuh"

#define TTT_TILE 4096
#define TTT_THREADS 256

/* Launches a row kernel (ttt_kernels.cuh) over rows token rows: 16-byte
 * accesses when dh allows them (else two or one columns per access), up to
 * a warp per row and several rows per block of TTT_THREADS. */
#define TTT_LAUNCH_ROWS(kernel, rows, ...)                                                         \
    do {                                                                                           \
        constexpr int vw_ = 16 / (int)sizeof(T);                                                   \
        const int v_ = g.dh % vw_ == 0 ? vw_ : g.dh % 2 == 0 ? 2 : 1;                              \
        const int lanes_ = ttt_row_lanes(g.dh / v_);                                               \
        const int64_t per_ = TTT_THREADS / lanes_, need_ = ((rows) + per_ - 1) / per_;             \
        const unsigned bl_ = (unsigned)(need_ < 1048576 ? need_ : 1048576);                        \
        if (v_ == vw_)                                                                             \
            kernel<T, vw_><<<bl_, TTT_THREADS, 0, st>>>(__VA_ARGS__);                              \
        else if (v_ == 2)                                                                          \
            kernel<T, 2><<<bl_, TTT_THREADS, 0, st>>>(__VA_ARGS__);                                \
        else                                                                                       \
            kernel<T, 1><<<bl_, TTT_THREADS, 0, st>>>(__VA_ARGS__);                                \
        LACT_CU_LAUNCH(#kernel);                                                                   \
    } while (0)

/* Bump allocation in 256-byte steps; with base NULL it only measures. */
static void *carve(char *base, size_t *off, size_t bytes) {
    void *p = base ? base + *off : NULL;
    *off += (bytes + 255) & ~(size_t)255;
    return p;
}

/* ---- one call ----------------------------------------------------------------- */

template <class T> struct ttt_run {
    lact_ctx *ctx;
    cudaStream_t st;
    ttt_geom g;
    const lact_ttt_cuda_in *in;
    const lact_ttt_args *args;
    bool mom, muon, bwd;
    bool hidden_fused;  /* the hidden-unit passes in one kernel (ttt_hidden_fused.h) */
    bool hidden_stream; /* the apply's of large heads (ttt_hidden_stream.h) */
    bool stream_grads;  /* and the gradient's, without d_q */
    bool keep_ns;       /* the state keeps each update's iterates (lact_ttt_args.keep_ns) */
    bool sb16;          /* BF16 snapshots (lact_ttt_args.state_bf16; T is then bf16) */
    bool wide;          /* the backward's products in pairs (grad_bwd) */
    bool m16;           /* G and the momentum in T (sb16 with momentum, without Muon) */
    /* m16's backward: the momentum's adjoint dM in T too (and its buffer),
     * halving the step's backward's largest reads and writes; each
     * update's dG is rounded to T for the products anyway */
    bool dm16;
    /* The backward of split ops (op_bwd_split) without Muon: the apply's and
     * the update's weight-gradient products store their sums in T, in SA
     * and SU (master layout), where they added into the F32 dW; the next
     * step's backward adds them into dW as it reads it (ttt_step_bwd_kernel),
     * or fold() where no step follows. A product then writes 2 bytes an
     * element where it read and wrote 8. pend_a, pend_u: SA, SU hold sums
     * not yet in dW. dws_out: the first op's sums are added by
     * ttt_dw_out_kernel, which reads that dW anyway, instead of a fold()
     * pass before it (LACT_TTT_DWOUT_SUMS=1). */
    bool dws, dws_out, pend_a, pend_u;
    T *SA, *SU;
    /* The backward of an op with the streamed passes and the pairs in the
     * order of op_bwd_split, whose independent passes go to a second
     * stream (sx: the side context, or ctx with LACT_TTT_OVERLAP=0) */
    bool split;
    /* The forward's large-head apply writes h to its own buffer Ha, whose
     * product into o then runs on sx beside the update's pass */
    bool fsplit;
    /* The forward's step split by rows (step_splits): ctx renorms W0 and
     * W2 once G02 is in, and the next apply, which reads only those, can
     * start; sx makes G1 and renorms W1 beside them. w1_late: ctx has not
     * yet waited for that W1 (event E_FWD_W1). */
    bool rsplit, w1_late;
    T *Ha;
    lact_ctx side, *sx;
    cudaEvent_t *ev;
    int64_t tile, per;
    const T *q, *k, *v;

    lact_ttt_op *ops;
    bool recompute;         /* backward with save_every 2 */
    int64_t have_w, have_m; /* backward: which weights W, M hold (-1: none) */
    float *beta, *dbeta, *dbeta_part;
    float *W, *M, *G, *r0;
    const float *cw, *cm; /* where step_fwd finds the weights and momentum */
    T *Wc;                /* the products' weights: wc_ws, or a BF16 state's snapshot */
    T *wc_ws;
    T *M16;        /* BF16 state: the rebuilt M's copy (m16: the momentum between snapshots) */
    T *G16;        /* m16: G */
    const T *cm16; /* m16: where step_fwd finds the momentum (NULL: zero) */
    float *Uf;     /* BF16 state with Muon and momentum: the step's input in F32 */
    float *dW, *dM, *U, *dr0, *row_part;
    /* Backward: W, M of the snapshot being undone and the step's input βM + G
     * (the next snapshot's M), read in place from the state: F32, or T with
     * sb16 (where rebuilt ones are read from Wc, M16). */
    const void *sW, *sM, *sU;
    T *dGc;
    T *Zab, *Ze, *X02, *H1, *P1, *KG;
    /* wide: the step's backward writes W and dG side by side in Bw
     * (ttt_wide_off), so that one product of K [W0; W2; dG0; dG2]ᵀ fills
     * ZK's rows [a b | k dG02ᵀ] and one of V [W1 | dG1] ZE's [e | v dG1];
     * ttt_grad_bwd_ew turns them into [dA dB | X02] and [dE | H1] in
     * place, and d_k, d_v are then one product each over the doubled
     * contraction. Zab, Ze, P1 and KG are packed views of ZK and ZE for
     * the other passes. */
    T *Bw, *ZK, *ZE;
    ttt_ns<T> ns;
    T *ws_x[6]; /* the workspace's iterates and norms (ns_at) */
    float *ws_nnorm;

    lact_dtype dt() const { return ttt_dt<T>::v; }

    void layout(char *base, size_t *off) {
        int64_t N = g.n, nel3 = 3 * g.nel, n_ops = args->n_ops, dh = g.dh;
        int64_t tt = N * tile;
        ops = (lact_ttt_op *)carve(base, off, (size_t)n_ops * sizeof(lact_ttt_op));
        beta = (float *)carve(base, off, (size_t)(n_ops * N) * 4);
        dbeta = (float *)carve(base, off, (size_t)(n_ops * N) * 4);
        dbeta_part = (float *)carve(base, off, (size_t)(TTT_MOM_BLOCKS * N) * 4);
        /* The backward reads saved W and M in place from the state
         * (snapshots have this layout); W, M hold the weights it rebuilds. */
        W = (float *)carve(base, off, (size_t)(N * nel3) * 4);
        const bool steps = !bwd || recompute;
        M = mom && steps && !m16 ? (float *)carve(base, off, (size_t)(N * nel3) * 4) : NULL;
        /* The backward with momentum reads βM + G from the state; G is then
         * only Newton–Schulz's scratch, or the rebuilt updates' (below). */
        bool own_g = !bwd || !mom || muon;
        G = own_g && !m16 ? (float *)carve(base, off, (size_t)(N * nel3) * 4) : NULL;
        G16 = own_g && m16 ? (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T)) : NULL;
        r0 = (float *)carve(base, off, (size_t)(N * g.rows) * 4);
        Wc = wc_ws = (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T));
        M16 = sb16 && mom && (recompute || (m16 && steps))
                  ? (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T))
                  : NULL;
        Uf = sb16 && bwd && muon && mom ? (float *)carve(base, off, (size_t)(N * nel3) * 4) : NULL;
        Bw = ZK = ZE = NULL;
        if (wide) {
            Zab = ZK = (T *)carve(base, off, (size_t)(tt * 4 * dh) * sizeof(T));
            Ze = ZE = (T *)carve(base, off, (size_t)(tt * 2 * dh) * sizeof(T));
        } else {
            Zab = (T *)carve(base, off, (size_t)(tt * 2 * dh) * sizeof(T));
            Ze = (T *)carve(base, off, (size_t)(tt * dh) * sizeof(T));
        }
        Ha = fsplit ? (T *)carve(base, off, (size_t)(tt * dh) * sizeof(T)) : NULL;
        /* The row kernels read and write each element in one thread, so
         * their outputs may overwrite inputs of the same shape: X02 over
         * Zab and H1 over Ze, except where the backward without momentum
         * keeps G's tile (Zab, Ze) for grad_bwd. */
        if (bwd && !mom) {
            X02 = (T *)carve(base, off, (size_t)(tt * 2 * dh) * sizeof(T));
            H1 = (T *)carve(base, off, (size_t)(tt * dh) * sizeof(T));
        } else {
            X02 = Zab;
            H1 = Ze;
        }
        dW = dM = U = dr0 = row_part = NULL;
        SA = SU = NULL;
        dGc = P1 = KG = NULL;
        if (bwd) {
            dW = (float *)carve(base, off, (size_t)(N * nel3) * 4);
            dM = mom ? (float *)carve(base, off, (size_t)(N * nel3) * (dm16 ? sizeof(T) : 4))
                     : NULL;
            U = mom ? NULL : (float *)carve(base, off, (size_t)(N * nel3) * 4);
            dr0 = (float *)carve(base, off, (size_t)(N * g.rows) * 4);
            row_part = (float *)carve(base, off, (size_t)(N * g.rows) * 4);
            if (dws) {
                SA = (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T));
                SU = (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T));
            }
            if (wide) {
                Bw = (T *)carve(base, off, (size_t)(N * 2 * nel3) * sizeof(T));
                P1 = ZE ? ZE + tt * dh : NULL;
                KG = ZK ? ZK + tt * 2 * dh : NULL;
            } else {
                dGc = (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T));
            }
            size_t at = *off;
            if (!wide) {
                P1 = (T *)carve(base, off, (size_t)(tt * dh) * sizeof(T));
                KG = (T *)carve(base, off, (size_t)(tt * 2 * dh) * sizeof(T));
            }
            /* A rebuilt update's G is dead before P1 and KG are written. */
            if (recompute && !own_g) {
                size_t need = (size_t)(N * nel3) * (m16 ? sizeof(T) : 4);
                void *p = *off - at >= need ? (base ? base + at : NULL) : carve(base, off, need);
                if (m16)
                    G16 = (T *)p;
                else
                    G = (float *)p;
            }
        }
        if (muon) {
            int64_t sq = 3 * N * ns.p * ns.p;
            for (int i = 0; i < 6; i++)
                ns.X[i] = (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T));
            for (int i = 0; i < 5; i++) {
                ns.A[i] = (T *)carve(base, off, (size_t)sq * sizeof(T));
                ns.P[i] = (T *)carve(base, off, (size_t)sq * sizeof(T));
            }
            ns.Q = bwd ? (T *)carve(base, off, (size_t)sq * sizeof(T)) : NULL;
            ns.R = bwd ? (T *)carve(base, off, (size_t)sq * sizeof(T)) : NULL;
            for (int i = 0; i < 2; i++)
                ns.dX[i] = bwd ? (T *)carve(base, off, (size_t)(N * nel3) * sizeof(T)) : NULL;
            ns.nnorm = (float *)carve(base, off, (size_t)(3 * N) * 4);
            ns.acc = (float *)carve(base, off, (size_t)(3 * N * TTT_NS_SLICES) * 4);
            memcpy(ws_x, ns.X, sizeof ws_x);
            ws_nnorm = ns.nnorm;
        }
    }

    lact_status setup(lact_ctx *c, const lact_ttt_cuda_in *i, const lact_ttt_args *a, bool b) {
        ctx = c;
        st = lact_cuda_stream(c);
        in = i;
        args = a;
        bwd = b;
        g.n = i->n, g.len = i->len, g.d = i->d, g.dh = i->dh;
        g.nel = g.d * g.dh, g.rows = 2 * g.dh + g.d;
        g.wr_lo = 0, g.wr_n = g.rows;
        g.wn = i->wn > 0 ? i->wn : i->n;
        mom = i->momentum != NULL;
        muon = a->muon != LACT_TTT_MUON_OFF;
        recompute = b && a->save_every == 2;
        sb16 = a->state_bf16 && ttt_dt<T>::v == LACT_BF16;
        hidden_fused = ttt_dt<T>::v == LACT_BF16 && ttt_hidden_fused_ready(i->d, i->dh);
        hidden_stream =
            ttt_dt<T>::v == LACT_BF16 && !hidden_fused && ttt_hidden_stream_ready(i->d, i->dh);
        stream_grads = hidden_stream && ttt_hidden_stream_all();
        const char *g16 = getenv("LACT_TTT_G16");
        m16 = sb16 && mom && !muon && !(g16 && strcmp(g16, "0") == 0);
        const char *d16 = getenv("LACT_TTT_DM16");
        dm16 = m16 && !(d16 && strcmp(d16, "0") == 0);
        ns.setup(c, g, a->muon);
        /* With Muon the batched iteration's last pass writes the pairs
         * (the fused one's leaves dG in the master layout) */
        const char *we = getenv("LACT_TTT_WIDE");
        wide = b && mom && !(muon && ns.fused()) && !hidden_fused &&
               !(stream_grads && !ttt_hidden_stream_pairs()) && !(we && strcmp(we, "0") == 0);
        const char *ov = getenv("LACT_TTT_OVERLAP");
        const bool two = !(ov && strcmp(ov, "0") == 0);
        split = wide && stream_grads;
        const char *ws16 = getenv("LACT_TTT_DW16");
        dws = split && !muon && !(ws16 && strcmp(ws16, "0") == 0);
        const char *wo = getenv("LACT_TTT_DWOUT_SUMS");
        dws_out = dws && wo && strcmp(wo, "1") == 0;
        pend_a = pend_u = false;
        fsplit = !b && hidden_stream && two;
        const char *rs = getenv("LACT_TTT_STEP_SPLIT");
        rsplit = fsplit && !muon && !(rs && strcmp(rs, "0") == 0);
        w1_late = false;
        sx = c, ev = NULL;
        if ((split || fsplit) && two) {
            LACT_TRY(lact_cuda_side(c, &side, &ev));
            sx = &side;
        }
        have_w = have_m = -1;
        q = (const T *)i->q, k = (const T *)i->k, v = (const T *)i->v;
        per = (mom ? 6 : 3) * g.nel;
        int64_t longest = 1;
        for (int64_t j = 0; j < a->n_ops; j++)
            if (a->ops[j].end - a->ops[j].start > longest)
                longest = a->ops[j].end - a->ops[j].start;
        tile = longest < TTT_TILE ? longest : TTT_TILE;
        /* Both passes decide alike, so the backward finds what the forward
         * kept; the room holds BF16 iterates (fused or batched iteration). */
        keep_ns = lact_ttt_state_ns_numel(a, g.d, g.dh) > 0 && ttt_dt<T>::v == LACT_BF16;
        find_first();
        size_t bytes = 0;
        layout(NULL, &bytes);
        void *base = NULL;
        LACT_TRY(lact_cuda_buffer(c, LACT_BUF_TTT, bytes, &base));
        bytes = 0;
        layout((char *)base, &bytes);
        LACT_CU(cudaMemcpyAsync(ops, a->ops, (size_t)a->n_ops * sizeof(lact_ttt_op),
                                cudaMemcpyHostToDevice, st));
        TTT_LAUNCH_WROWS(ttt_init_kernel, T, TTT_THREADS, lact_aligned16(i->w0, i->w1, i->w2, W, M),
                         g, i->w0, i->w1, i->w2, W, Wc, M, r0);
        LACT_CU_LAUNCH("ttt_init");
        cw = W, cm = M, cm16 = NULL;
        if (mom) {
            ttt_beta_kernel<<<dim3((unsigned)a->n_ops, (unsigned)g.n), TTT_THREADS, 0, st>>>(
                g, i->momentum, ops, beta);
            LACT_CU_LAUNCH("ttt_beta");
        }
        return LACT_OK;
    }

    unsigned grid(int64_t n) const { return lact_grid_1d(n, TTT_THREADS); }

    /* ---- which token rows an op writes first ---- */

    static bool of_kind(const lact_ttt_op *op, bool apply) {
        return apply ? op->apply : op->update;
    }

    /* Whether op j is the first of its kind (apply: o, d_q; update: d_k,
     * d_v) to write any of the rows of its tokens, walking the order forward
     * or in reverse. Its products then store where they would add, and its
     * rows need no zeroing beforehand. */
    bool overlaps_earlier(int64_t j, bool apply, bool reverse) const {
        const lact_ttt_op *a = &args->ops[j];
        for (int64_t i = reverse ? j + 1 : 0; i < (reverse ? args->n_ops : j); i++) {
            const lact_ttt_op *b = &args->ops[i];
            if (of_kind(b, apply) && b->start < a->end && a->start < b->end) return true;
        }
        return false;
    }
    /* The answers for the three walks (apply forward, apply and update in
     * reverse), found once per call; orders of more than TTT_FIRST_OPS ops
     * have none (every op adds onto zeroed rows). */
#define TTT_FIRST_OPS 1024
    uint64_t first_bits[3][TTT_FIRST_OPS / 64];
    void find_first() {
        memset(first_bits, 0, sizeof first_bits);
        if (args->n_ops > TTT_FIRST_OPS) return;
        for (int64_t j = 0; j < args->n_ops; j++)
            for (int w = 0; w < 3; w++) {
                const bool apply = w<2, reverse = w> 0;
                if (!overlaps_earlier(j, apply, reverse))
                    first_bits[w][j / 64] |= (uint64_t)1 << (j % 64);
            }
    }
    bool first_touch(int64_t j, bool apply, bool reverse) const {
        const int w = apply ? (reverse ? 1 : 0) : 2;
        return j < TTT_FIRST_OPS && (first_bits[w][j / 64] >> (j % 64) & 1);
    }

    /* Zeroes the rows of x [N, len, d] that no op of the kind stores
     * (first_touch, walking forward or in reverse): those no op covers, and
     * those that only ops adding to rows written before them cover. */
    lact_status zero_uncovered(void *x, bool apply, bool reverse) {
        if (!x) return LACT_OK;
        const size_t row = (size_t)g.d * sizeof(T);
        for (int64_t t = 0; t < g.len;) {
            int64_t reach = t, next = g.len;
            for (int64_t i = 0; i < args->n_ops; i++) {
                const lact_ttt_op *b = &args->ops[i];
                if (!of_kind(b, apply) || !first_touch(i, apply, reverse)) continue;
                if (b->start <= t && t < b->end && b->end > reach) reach = b->end;
                if (b->start > t && b->start < next) next = b->start;
            }
            if (reach > t) {
                t = reach;
                continue;
            }
            LACT_CU(cudaMemset2DAsync((char *)x + (size_t)t * row, (size_t)g.len * row, 0,
                                      (size_t)(next - t) * row, (size_t)g.n, st));
            t = next;
        }
        return LACT_OK;
    }

    /* ---- products of one tile of tokens [t0, t0 + Tt) ---- */

    /* Zab = X [W0; W2]ᵀ for X = q or k rows. */
    lact_status tile_ab(const T *x, int64_t t0, int64_t Tt) {
        return ttt_gemm(ctx, dt(), dt(), false, true, Tt, 2 * g.dh, g.d, g.n, x + t0 * g.d,
                        g.len * g.d, Wc, 3 * g.nel, Zab, Tt * 2 * g.dh, 1.0f, 0.0f);
    }
    /* Ze = V W1 (row form of W1ᵀ v_t). */
    lact_status tile_e(int64_t t0, int64_t Tt) {
        return ttt_gemm(ctx, dt(), dt(), false, false, Tt, g.dh, g.d, g.n, v + t0 * g.d,
                        g.len * g.d, Wc + 2 * g.nel, 3 * g.nel, Ze, Tt * g.dh, 1.0f, 0.0f);
    }

    /* The fused hidden pass over tokens t0 + [0, Tt) (BF16 only; dx only
     * with small heads). */
    lact_status hidden(const T *x, const T *y, const float *l0, const float *l1, const float *l2,
                       T *out02, T *out1, T *dx, int64_t t0, int64_t Tt, lact_ctx *cx = NULL) {
        if constexpr (ttt_dt<T>::v == LACT_BF16) {
            if (stream_grads && !dx) {
                lact_ctx *c = cx ? cx : ctx;
                /* e = y W1 by a product, which the pass reads and overwrites */
                const bool e_read = ttt_hidden_stream_reads_e(g.n, Tt, g.dh, true);
                if (e_read)
                    LACT_TRY(ttt_gemm(c, dt(), dt(), false, false, Tt, g.dh, g.d, g.n, y + t0 * g.d,
                                      g.len * g.d, Wc + 2 * g.nel, 3 * g.nel, out1, Tt * g.dh,
                                      1.0f, 0.0f));
                return ttt_hidden_stream(c, x, y, Wc, l0, l1, l2, out02, out1, g.n, g.len, t0, Tt,
                                         g.d, g.dh, e_read);
            }
            return ttt_hidden_fused(ctx, x, y, Wc, l0, l1, l2, out02, out1, dx, g.n, g.len, t0, Tt,
                                    g.d, g.dh);
        }
        return lact_fail(LACT_E_UNSUPPORTED, "ttt: the fused hidden pass takes BF16");
    }

    /* The fused apply adds into o; the products store where op j is the
     * first to write (first_touch). */
    bool apply_fused() const {
        return dt() == LACT_BF16 && ttt_apply_fused_fits(g.d, g.dh);
    }

    lact_status apply_fwd(int64_t j, T *o) {
        const lact_ttt_op *op = &args->ops[j];
        if (apply_fused())
            return ttt_apply_fused(ctx, (const bf16 *)q, (const bf16 *)Wc, (bf16 *)o, g.n, g.len,
                                   op->start, op->end - op->start, g.d, g.dh);
        const float add = first_touch(j, true, false) ? 0.0f : 1.0f;
        /* fsplit: o += h W1ᵀ on sx, which the update's pass need not wait
         * for (forward() joins the streams before the step) */
        T *h = fsplit ? Ha : H1;
        lact_ctx *cx = fsplit ? sx : ctx;
        for (int64_t t0 = op->start; t0 < op->end; t0 += tile) {
            int64_t Tt = op->end - t0 < tile ? op->end - t0 : tile;
            if (t0 > op->start) LACT_TRY(hand(E_FWD_JOIN, cx, ctx)); /* Ha is free */
            if (hidden_stream && ttt_hidden_stream_fills(g.n, Tt, g.dh)) {
                if constexpr (ttt_dt<T>::v == LACT_BF16)
                    LACT_TRY(ttt_hidden_stream_apply(ctx, q, Wc, h, g.n, g.len, t0, Tt, g.d, g.dh));
            } else {
                LACT_TRY(tile_ab(q, t0, Tt));
                TTT_LAUNCH_ROWS(ttt_apply_ew_kernel, g.n * Tt, g, Tt, Zab, h);
            }
            LACT_TRY(hand(E_FWD_H, ctx, cx));
            LACT_TRY(ttt_gemm(cx, dt(), dt(), false, true, Tt, g.d, g.dh, g.n, h, Tt * g.dh,
                              Wc + 2 * g.nel, 3 * g.nel, o + t0 * g.d, g.len * g.d, 1.0f, add));
        }
        return LACT_OK;
    }

    /* G of an update op (master layout): F32 in G, or T in G16 (m16). */
    lact_status grad_fwd(const lact_ttt_op *op, bool g1_apart = false) {
        /* The backward without momentum keeps this tile's Zab and Ze for
         * grad_bwd, which the fused pass does not write. */
        const bool fused = (hidden_fused || stream_grads) && !(bwd && !mom);
        for (int64_t t0 = op->start; t0 < op->end; t0 += tile) {
            int64_t Tt = op->end - t0 < tile ? op->end - t0 : tile;
            float acc = t0 == op->start ? 0.0f : 1.0f;
            if (fused) {
                LACT_TRY(hidden(k, v, in->lr0, in->lr1, in->lr2, X02, H1, NULL, t0, Tt));
            } else {
                LACT_TRY(tile_ab(k, t0, Tt));
                LACT_TRY(tile_e(t0, Tt));
                TTT_LAUNCH_ROWS(ttt_grad_ew_kernel, g.n * Tt, g, Tt, t0, Zab, Ze, in->lr0, in->lr1,
                                in->lr2, X02, H1);
            }
            /* m16: in T, as the products' own output type */
            const lact_dtype gt = m16 ? dt() : LACT_F32;
            void *g02 = m16 ? (void *)G16 : (void *)G;
            LACT_TRY(ttt_gemm(ctx, dt(), gt, true, false, 2 * g.dh, g.d, Tt, g.n, X02,
                              Tt * 2 * g.dh, k + t0 * g.d, g.len * g.d, g02, 3 * g.nel, 1.0f, acc));
            if (g1_apart) break; /* one tile: g1_product runs it on sx */
            LACT_TRY(g1_product(ctx, t0, Tt, acc));
        }
        return LACT_OK;
    }

    /* G1 = h1ᵀ v of the tile at t0 (added to when acc is 1) */
    lact_status g1_product(lact_ctx *cx, int64_t t0, int64_t Tt, float acc) {
        const lact_dtype gt = m16 ? dt() : LACT_F32;
        void *g1 = m16 ? (void *)(G16 + 2 * g.nel) : (void *)(G + 2 * g.nel);
        return ttt_gemm(cx, dt(), gt, true, false, g.d, g.dh, Tt, g.n, v + t0 * g.d, g.len * g.d,
                        H1, Tt * g.dh, g1, 3 * g.nel, 1.0f, acc);
    }

    /* Whether the forward splits update op's step by rows (rsplit): one
     * tile, so that G1 is one product, on two streams. */
    bool step_splits(const lact_ttt_op *op) const {
        return rsplit && sx != ctx && op->end - op->start <= tile;
    }

    /* Runs a row kernel launcher f(stream, geometry) over every row on ctx,
     * or with split the W0 and W2 rows on ctx and the W1 rows on sx. */
    template <class F> lact_status rows_split(bool split, F &&f) {
        if (!split) return f(st, g);
        LACT_TRY(f(st, ttt_rows_of(g, 0, 2 * g.dh)));
        return f(lact_cuda_stream(sx), ttt_rows_of(g, 2 * g.dh, g.d));
    }

    /* Snapshot slot of the state (lact_ttt_state_offset): the N heads' W,
     * then their M, each exactly the working layout, in F32 or (sb16) T. */
    void *snapshot(const float *state, int64_t slot) const {
        return (char *)state + (size_t)(slot * g.n * per) * (sb16 ? sizeof(T) : 4);
    }
    /* The momenta of snapshot snap. */
    const void *snap_m(const void *snap) const {
        return (const char *)snap + (size_t)(g.n * 3 * g.nel) * (sb16 ? sizeof(T) : 4);
    }

    /* Points the iteration's iterates and norms at update u's room in the
     * state (lact_ttt_state_ns_numel; u from 0), or back at the workspace
     * for u < 0. */
    void ns_at(const float *state, int64_t u) {
        if (u < 0) {
            memcpy(ns.X, ws_x, sizeof ws_x);
            ns.nnorm = ws_nnorm;
            return;
        }
        int64_t per_ns = lact_ttt_state_ns_numel(args, g.d, g.dh);
        int64_t snaps = g.n * lact_ttt_state_snap_numel(args, mom, g.d, g.dh);
        float *base = (float *)state + snaps + u * g.n * per_ns;
        for (int i = 0; i < 6; i++)
            ns.X[i] = (T *)base + (int64_t)i * 3 * g.n * g.nel;
        ns.nnorm = base + 9 * g.n * g.nel;
    }

    template <class A, class B> lact_status cast(const A *in, B *out) {
        int64_t n = g.n * 3 * g.nel;
        ttt_cast_kernel<<<grid(n / 4 + 1), TTT_THREADS, 0, st>>>(n, in, out);
        LACT_CU_LAUNCH("ttt_cast");
        return LACT_OK;
    }
    lact_status cast_w(const float *w) {
        Wc = wc_ws;
        return cast(w, Wc);
    }

    /* W, Wc := the initial weights, M := 0 when with_m (r0 is rewritten with
     * the same norms). */
    lact_status init_w(bool with_m) {
        float *m = with_m ? M : NULL;
        Wc = wc_ws;
        TTT_LAUNCH_WROWS(ttt_init_kernel, T, TTT_THREADS,
                         lact_aligned16(in->w0, in->w1, in->w2, W, m), g, in->w0, in->w1, in->w2, W,
                         Wc, m, r0);
        LACT_CU_LAUNCH("ttt_init");
        have_w = 0;
        if (with_m) have_m = 0, cm16 = NULL;
        return LACT_OK;
    }

    /* Index of the u-th update operation (u from 0). */
    int64_t update_op(int64_t u) const {
        for (int64_t j = 0, seen = 0; j < args->n_ops; j++)
            if (args->ops[j].update && seen++ == u) return j;
        return -1;
    }

    /* W, M := the weights after v updates, which the state lacks, from those
     * one update earlier (saved, or the initial ones). */
    lact_status rebuild(const float *state, int64_t v) {
        if (have_w == v && (!mom || have_m == v)) return LACT_OK;
        int64_t slot = lact_ttt_state_slot(args, v - 1), j = update_op(v - 1);
        if (v < 1 || j < 0 || (slot < 0 && v != 1))
            return lact_fail(LACT_E_ARG, "ttt backward: no weights to rebuild update %lld from",
                             (long long)v);
        if (slot >= 0 && sb16) {
            const T *src = (const T *)snapshot(state, slot);
            LACT_TRY(cast(src, W));
            if (m16)
                cm16 = (const T *)snap_m(src); /* read in place */
            else if (mom)
                LACT_TRY(cast((const T *)snap_m(src), M));
            Wc = (T *)src;
        } else if (slot >= 0) {
            size_t bytes = (size_t)(g.n * 3 * g.nel) * 4;
            const float *src = (const float *)snapshot(state, slot);
            LACT_CU(cudaMemcpyAsync(W, src, bytes, cudaMemcpyDeviceToDevice, st));
            if (mom) LACT_CU(cudaMemcpyAsync(M, snap_m(src), bytes, cudaMemcpyDeviceToDevice, st));
            LACT_TRY(cast_w(W));
        } else {
            LACT_TRY(init_w(true));
        }
        LACT_TRY(grad_fwd(&args->ops[j]));
        cw = W, cm = M;
        LACT_TRY(step_fwd(j, NULL));
        have_w = have_m = v;
        return LACT_OK;
    }

    /* Points sW, sM at the weights after u updates (the state's, else
     * rebuilt in W, M) and refreshes the product copy Wc (from a saved
     * snapshot only when cast: step_bwd may do it). After u = 0 the
     * momentum is zero: sM is NULL, and M keeps what it held. */
    lact_status load(const float *state, int64_t u, bool with_cast = true) {
        int64_t slot = lact_ttt_state_slot(args, u);
        if (slot >= 0) {
            sW = snapshot(state, slot);
            sM = mom ? snap_m(sW) : NULL;
            if (sb16) {
                Wc = (T *)sW; /* the products read the snapshot itself */
                return LACT_OK;
            }
            return with_cast ? cast_w((const float *)sW) : LACT_OK;
        }
        sW = sb16 ? (const void *)wc_ws : W;
        if (u == 0) {
            sM = NULL;
            return have_w == 0 ? cast_w(W) : init_w(false);
        }
        LACT_TRY(rebuild(state, u));
        sM = sb16 ? (const void *)M16 : M;
        return cast_w(W);
    }

    /* The momentum after u updates (u >= 1), the state's or rebuilt in M
     * (M16 with sb16). */
    lact_status load_m(const float *state, int64_t u, const void **m) {
        int64_t slot = lact_ttt_state_slot(args, u);
        if (slot < 0) LACT_TRY(rebuild(state, u));
        *m = slot >= 0 ? snap_m(snapshot(state, slot)) : sb16 ? (const void *)M16 : M;
        return LACT_OK;
    }

    /* The update of op j after G: momentum, Newton–Schulz, add, renorm,
     * from the weights at cw, cm. The new W and M go to the state snapshot
     * snap when given (which cw, cm then point at), else to W, M; the
     * iterates go to the state's room when kept (the forward's u-th
     * update). */
    lact_status step_fwd(int64_t j, void *snap, float *state = NULL, int64_t upd = -1,
                         bool split = false) {
        const float *bj = mom ? beta + j * g.n : NULL;
        /* F32 snapshots take W, M themselves; BF16 ones the copies (rebuilt
         * weights' in Wc, M16), W and M staying in the workspace. */
        float *ow = snap && !sb16 ? (float *)snap : W;
        float *om = !mom ? NULL : snap && !sb16 ? (float *)snap_m(snap) : M;
        T *oc = snap && sb16 ? (T *)snap : wc_ws;
        T *ms = !mom || !sb16 ? NULL : snap ? (T *)snap_m(snap) : M16;
        if (m16) {
            LACT_TRY(rows_split(split, [&](cudaStream_t st, const ttt_geom &g) {
                TTT_LAUNCH_WROWS(ttt_renorm16_kernel, T, TTT_THREADS,
                                 lact_aligned16(cm16, G16, cw, ow) && lact_aligned16(oc, ms), g, bj,
                                 cm16, G16, cw, ow, oc, r0, ms);
                LACT_CU_LAUNCH("ttt_renorm16");
                return LACT_OK;
            }));
            cm16 = ms;
        } else if (!muon) {
            LACT_TRY(rows_split(split, [&](cudaStream_t st, const ttt_geom &g) {
                TTT_LAUNCH_WROWS(ttt_renorm_kernel, T, TTT_THREADS,
                                 lact_aligned16(cm, om, G, cw, ow) && lact_aligned16(oc, ms), g,
                                 (const T *)NULL, bj, cm, om, G, cw, ow, oc, r0, ms);
                LACT_CU_LAUNCH("ttt_renorm");
                return LACT_OK;
            }));
        } else {
            const float *u = G;
            const bool kept = keep_ns && state && upd >= 0;
            ns_at(state, kept ? upd : -1);
            /* the batched iteration takes the mix with its first pass */
            const bool summed = mom && !ns.fused();
            if (summed) {
                LACT_TRY(ns.mix(bj, cm, G, om, ms));
            } else if (mom) {
                ttt_mom_mix_kernel<<<grid(g.n * 3 * g.nel), TTT_THREADS, 0, st>>>(g, bj, cm, G, om,
                                                                                  ms);
                LACT_CU_LAUNCH("ttt_mom_mix");
            }
            if (mom) u = om;
            LACT_TRY(ns.forward(u, kept, summed));
            TTT_LAUNCH_WROWS(ttt_renorm_kernel, T, TTT_THREADS, lact_aligned16(cw, ow, oc), g,
                             ns.X[5], NULL, NULL, NULL, NULL, cw, ow, oc, r0, (T *)NULL);
            LACT_CU_LAUNCH("ttt_renorm");
        }
        cw = ow, cm = om, Wc = oc;
        return LACT_OK;
    }

    lact_status forward(T *o, float *state) {
        if (apply_fused())
            LACT_CU(cudaMemsetAsync(o, 0, (size_t)(g.n * g.len * g.d) * sizeof(T), st));
        else
            LACT_TRY(zero_uncovered(o, true, false));
        int64_t u = 0;
        for (int64_t j = 0; j < args->n_ops; j++) {
            const lact_ttt_op *op = &args->ops[j];
            if (op->apply) LACT_TRY(apply_fwd(j, o));
            if (!op->update) {
                LACT_TRY(hand(E_FWD_JOIN, sx, ctx));
                w1_late = false;
                continue;
            }
            /* the e product reads W1, which the last step may still be
             * writing on sx (recorded there after it, before this apply's
             * product) */
            if (w1_late) LACT_CU(cudaStreamWaitEvent(st, ev[E_FWD_W1], 0));
            const bool split = step_splits(op);
            LACT_TRY(grad_fwd(op, split));
            /* the step may overwrite the weights the apply's product reads,
             * the next apply Ha */
            LACT_TRY(hand(E_FWD_JOIN, sx, ctx));
            if (split) { /* G1 on sx, beside W0 and W2's step on ctx */
                LACT_TRY(hand(E_FWD_G02, ctx, sx));
                LACT_TRY(g1_product(sx, op->start, op->end - op->start, 0.0f));
            }
            int64_t slot = lact_ttt_state_slot(args, ++u);
            LACT_TRY(step_fwd(j, state && slot >= 0 ? snapshot(state, slot) : NULL, state, u - 1,
                              split));
            if (split) LACT_CU(cudaEventRecord(ev[E_FWD_W1], lact_cuda_stream(sx)));
            w1_late = split;
        }
        if (w1_late) LACT_CU(cudaStreamWaitEvent(st, ev[E_FWD_W1], 0));
        return LACT_OK;
    }

    /* ---- backward (ttt_backward.cuh) ---- */

    lact_status step_bwd(int64_t j, const float *state, int64_t upd);
    template <class S> lact_status step_bwd_as(int64_t j, const float *state, int64_t upd);
    lact_status sum_parts(int64_t j, int64_t nb);
    lact_status grad_bwd(int64_t j, const lact_ttt_cuda_grad *gr, bool have_tile);
    lact_status grad_bwd_wide(const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt, float add);
    lact_status pairs_pass(const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt);
    lact_status apply_bwd(int64_t j, const T *d_o, const lact_ttt_cuda_grad *gr);
    lact_status apply_dw(lact_ctx *cx, const T *d_o, int64_t t0, int64_t Tt, T *sh = NULL);
    lact_status apply_dq(lact_ctx *cx, int64_t j, const lact_ttt_cuda_grad *gr, int64_t t0,
                         int64_t Tt);
    lact_status wide_dv(lact_ctx *cx, const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt,
                        float add);
    lact_status wide_dk(lact_ctx *cx, const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt,
                        float add);
    lact_status wide_dw(lact_ctx *cx, int64_t t0, int64_t Tt, T *sh = NULL);
    lact_status fold();
    lact_status share(bool apply, T **sh);
    bool splits(const lact_ttt_op *op) const;
    lact_status hand(int e, lact_ctx *from, lact_ctx *to);
    /* events of the forward's hand-offs (op_bwd_split has its own) */
    enum { E_FWD_G02 = 3, E_FWD_W1, E_FWD_H, E_FWD_JOIN };
    static_assert(E_FWD_JOIN < LACT_SIDE_EVENTS, "lact_cuda_side keeps too few events");
    lact_status op_bwd_split(int64_t j, const T *d_o, const lact_ttt_cuda_grad *gr,
                             const float *state, int64_t u);
    lact_status backward(const lact_ttt_cuda_grad *gr, const T *d_o, const float *state);

    lact_status zero(void *p, size_t bytes) {
        if (p) LACT_CU(cudaMemsetAsync(p, 0, bytes, st));
        return LACT_OK;
    }
};

#include "kernels/cuda/ttt_backward.cuh"

/* ---- entry points ----------------------------------------------------------------- */

extern "C" lact_status lact_cuda_ttt_forward(lact_ctx *ctx, void *o, float *state,
                                             const lact_ttt_cuda_in *in,
                                             const lact_ttt_args *args) {
    if (in->act == LACT_BF16) {
        ttt_run<bf16> r;
        LACT_TRY(r.setup(ctx, in, args, false));
        return r.forward((bf16 *)o, state);
    }
    ttt_run<float> r;
    LACT_TRY(r.setup(ctx, in, args, false));
    return r.forward((float *)o, state);
}

template <class T>
static lact_status backward_t(lact_ctx *ctx, const lact_ttt_cuda_grad *grad, const void *d_o,
                              const float *state, const lact_ttt_cuda_in *in,
                              const lact_ttt_args *args) {
    ttt_run<T> r;
    LACT_TRY(r.setup(ctx, in, args, true));
    return r.backward(grad, (const T *)d_o, state);
}

extern "C" lact_status lact_cuda_ttt_backward(lact_ctx *ctx, const lact_ttt_cuda_grad *grad,
                                              const void *d_o, const float *state,
                                              const lact_ttt_cuda_in *in,
                                              const lact_ttt_args *args) {
    void *tmp = NULL;
    if (!state) {
        /* No saved state: run the forward once more into a temporary. */
        int64_t S = lact_ttt_state_numel(args, in->momentum != NULL, in->d, in->dh);
        size_t sb = (size_t)(in->n * S) * 4;
        size_t ob = (size_t)(in->n * in->len * in->d) * lact_dtype_size(in->act);
        size_t sb_up = (sb + 255) & ~(size_t)255;
        LACT_TRY(lact_mem_alloc(LACT_CUDA, sb_up + ob, &tmp));
        float *st = (float *)tmp;
        void *o = (char *)tmp + sb_up;
        lact_status s = lact_cuda_ttt_forward(ctx, o, st, in, args);
        if (s == LACT_OK)
            state = st;
        else {
            lact_mem_free(LACT_CUDA, tmp);
            return s;
        }
    }
    lact_status s = in->act == LACT_BF16 ? backward_t<bf16>(ctx, grad, d_o, state, in, args)
                                         : backward_t<float>(ctx, grad, d_o, state, in, args);
    if (tmp) {
        cudaError_t e = cudaStreamSynchronize(lact_cuda_stream(ctx));
        lact_mem_free(LACT_CUDA, tmp);
        if (s == LACT_OK && e != cudaSuccess)
            return lact_fail(LACT_E_CUDA, "ttt backward: %s", cudaGetErrorString(e));
    }
    return s;
}
