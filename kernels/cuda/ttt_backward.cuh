/* The ttt op's backward on CUDA (ttt.cu): the members of ttt_run that walk
 * the order in reverse, the step's backward and the backward through the
 * products of each update and apply. Included by ttt.cu after ttt_run,
 * whose macros and members it uses. */
#ifndef LACT_CUDA_TTT_BACKWARD_CUH
#define LACT_CUDA_TTT_BACKWARD_CUH

/* Backward of the step of update op j, at sW, sM as before it and the
 * step's input in sU (with momentum: βM + G) or G (without): dW :=
 * adjoint before the step, dM, dr0, dbeta; dGc (Bw when wide) = dG. */
template <class T> lact_status ttt_run<T>::step_bwd(int64_t j, const float *state, int64_t upd) {
    /* only the momentum's step without Muon adds the stored sums itself */
    if (muon || !mom) LACT_TRY(fold());
    if constexpr (ttt_dt<T>::v == LACT_BF16)
        if (sb16) return step_bwd_as<T>(j, state, upd);
    return step_bwd_as<float>(j, state, upd);
}

/* step_bwd with the saved weights in S. */
template <class T>
template <class S>
lact_status ttt_run<T>::step_bwd_as(int64_t j, const float *state, int64_t upd) {
    const float *bj = mom ? beta + j * g.n : NULL;
    const S *w = (const S *)sW, *m = (const S *)sM;
    const float *dun = dW;
    if (muon) {
        /* Newton–Schulz takes its input in F32 */
        const float *u = G;
        if (mom && Uf) {
            LACT_TRY(cast((const S *)sU, Uf));
            u = Uf;
        } else if (mom) {
            u = (const float *)sU;
        }
        /* The iterates the forward kept (the batched products' backward
         * then forms each step's A and P from them again: two of the
         * step's three products), else the iteration once more. */
        ns_at(state, keep_ns ? upd : -1);
        if (!keep_ns)
            LACT_TRY(ns.forward(u));
        else if (!ns.fused())
            LACT_TRY(ns.polys());
        /* with the paired products (wide) the renorm's backward also
         * copies W beside dG */
        TTT_LAUNCH_WROWS(ttt_renorm_bwd_kernel, T, TTT_THREADS, lact_aligned16(w, dW, Bw), g,
                         ns.X[5], (const float *)NULL, w, r0, dW, dr0, ns.dX[0], Bw);
        LACT_CU_LAUNCH("ttt_renorm_bwd");
        if (!ns.fused()) {
            /* the normalisation's and the momentum's backward in one pass */
            const T *dx0;
            LACT_TRY(ns.steps_bwd(&dx0));
            LACT_TRY(ns.prepare_bwd_mom(u, dx0, bj, m, dM, dGc, Bw, dbeta_part));
            return sum_parts(j, m ? 3 * TTT_NS_SLICES : 0);
        }
        /* G is free with momentum (u is sU or Uf); without, U is free */
        float *du = mom ? G : U;
        LACT_TRY(ns.fused_backward(u, du));
        dun = du;
    } else {
        /* renorm and momentum backward, and Wc, in one pass (load() left
         * the cast to it where momentum lets it wait: without, G is
         * formed from Wc before this step; a BF16 state's snapshot is
         * Wc already) */
        T *wc = mom && !sb16 ? Wc : NULL;
        const T *sa = pend_a ? SA : NULL, *su = pend_u ? SU : NULL;
        pend_a = pend_u = false;
        if (mom && dm16)
            TTT_LAUNCH_WROWS(ttt_step_bwd_kernel, T, TTT_THREADS, lact_aligned16(sU, w, dW, m, dM),
                             g, (const S *)sU, w, r0, dW, dr0, bj, m, (T *)dM, dGc, wc, Bw,
                             row_part, sa, su);
        else if (mom)
            TTT_LAUNCH_WROWS(ttt_step_bwd_kernel, T, TTT_THREADS, lact_aligned16(sU, w, dW, m, dM),
                             g, (const S *)sU, w, r0, dW, dr0, bj, m, dM, dGc, wc, Bw, row_part,
                             sa, su);
        else
            TTT_LAUNCH_WROWS(ttt_step_bwd_kernel, T, TTT_THREADS, lact_aligned16(G, w, dW), g,
                             (const float *)G, w, r0, dW, dr0, bj, m, dM, dGc, wc, (T *)NULL,
                             row_part, (const T *)NULL, (const T *)NULL);
        LACT_CU_LAUNCH("ttt_step_bwd");
        if (m) {
            ttt_sum_rows_kernel<<<(unsigned)g.n, TTT_THREADS, 0, st>>>(row_part, g.rows,
                                                                       dbeta + j * g.n);
            LACT_CU_LAUNCH("ttt_sum_rows");
        }
        return LACT_OK;
    }
    int64_t blocks = (3 * g.nel + 4 * TTT_THREADS - 1) / (4 * TTT_THREADS);
    if (blocks > TTT_MOM_BLOCKS) blocks = TTT_MOM_BLOCKS;
    ttt_mom_bwd_kernel<T><<<dim3((unsigned)blocks, (unsigned)g.n), TTT_THREADS, 0, st>>>(
        g, dun, bj, m, dM, dGc, dbeta_part);
    LACT_CU_LAUNCH("ttt_mom_bwd");
    return sum_parts(j, m ? blocks : 0);
}

/* dbeta of op j from the nb partial sums a head in dbeta_part (none: no
 * momentum before the update, nothing to add). */
template <class T> lact_status ttt_run<T>::sum_parts(int64_t j, int64_t nb) {
    static_assert(3 * TTT_NS_SLICES <= TTT_MOM_BLOCKS, "dbeta_part holds TTT_MOM_BLOCKS a head");
    if (nb == 0) return LACT_OK;
    ttt_sum_parts_kernel<<<1, 128, 0, st>>>(dbeta_part, nb, g.n, dbeta + j * g.n);
    LACT_CU_LAUNCH("ttt_sum_parts");
    return LACT_OK;
}

/* Backward through the products that made G (dGc given). */
template <class T>
lact_status ttt_run<T>::grad_bwd(int64_t j, const lact_ttt_cuda_grad *gr, bool have_tile) {
    const lact_ttt_op *op = &args->ops[j];
    int64_t Ld = g.len * g.d, nel3 = 3 * g.nel, dh = g.dh, d = g.d;
    const float add = first_touch(j, false, true) ? 0.0f : 1.0f;
    for (int64_t t0 = op->start; t0 < op->end; t0 += tile) {
        int64_t Tt = op->end - t0 < tile ? op->end - t0 : tile;
        const T *kt = k + t0 * d, *vt = v + t0 * d;
        if (wide) {
            LACT_TRY(grad_bwd_wide(gr, t0, Tt, add));
            continue;
        }
        /* the streamed pass forms a, b, e itself unless the tile has them */
        const bool abe = stream_grads && !have_tile && ttt_hidden_stream_forms_abe();
        if (!have_tile && !abe) {
            LACT_TRY(tile_ab(k, t0, Tt));
            LACT_TRY(tile_e(t0, Tt));
        }
        /* In place (layout()): H1 over Ze, X02 over Zab, dAB over KG,
         * dE over P1. */
        T *h1 = Ze, *x02 = Zab, *dAB = KG, *dE = P1;
        if (hidden_fused || stream_grads) {
            /* K dG02ᵀ and V dG1 formed in the kernel (ttt_hidden_fused.h,
             * ttt_hidden_stream.h) */
            if constexpr (ttt_dt<T>::v == LACT_BF16) {
                if (stream_grads)
                    LACT_TRY(ttt_hidden_stream_bwd(
                        ctx, k, v, abe ? Wc : NULL, dGc, in->lr0, in->lr1, in->lr2, Zab, Ze, dAB,
                        dE, gr->lr0, gr->lr1, gr->lr2, g.n, g.len, t0, Tt, g.d, g.dh));
                else
                    LACT_TRY(ttt_hidden_bwd_fused(ctx, k, v, dGc, in->lr0, in->lr1, in->lr2, Zab,
                                                  Ze, dAB, dE, gr->lr0, gr->lr1, gr->lr2, g.n,
                                                  g.len, t0, Tt, g.d, g.dh));
            }
        } else {
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, dh, d, g.n, vt, Ld,
                              dGc + 2 * g.nel, nel3, P1, Tt * dh, 1.0f, 0.0f));
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, true, Tt, 2 * dh, d, g.n, kt, Ld, dGc, nel3,
                              KG, Tt * 2 * dh, 1.0f, 0.0f));
            TTT_LAUNCH_ROWS(ttt_grad_bwd_ew_kernel, g.n * Tt, g, Tt, t0, 2 * dh, dh, Zab, Ze, P1,
                            KG, in->lr0, in->lr1, in->lr2, h1, x02, dAB, dE, gr->lr0, gr->lr1,
                            gr->lr2);
        }
        /* Straight into the token gradients: the first product stores
         * where this op is the first update on the rows, else adds. */
        if (gr->v) {
            T *dvt = (T *)gr->v + t0 * d;
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, true, Tt, d, dh, g.n, h1, Tt * dh,
                              dGc + 2 * g.nel, nel3, dvt, Ld, 1.0f, add));
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, true, Tt, d, dh, g.n, dE, Tt * dh,
                              Wc + 2 * g.nel, nel3, dvt, Ld, 1.0f, 1.0f));
        }
        if (gr->k) {
            T *dkt = (T *)gr->k + t0 * d;
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, d, 2 * dh, g.n, x02, Tt * 2 * dh,
                              dGc, nel3, dkt, Ld, 1.0f, add));
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, d, 2 * dh, g.n, dAB, Tt * 2 * dh,
                              Wc, nel3, dkt, Ld, 1.0f, 1.0f));
        }
        LACT_TRY(ttt_gemm(ctx, dt(), LACT_F32, true, false, d, dh, Tt, g.n, vt, Ld, dE, Tt * dh,
                          dW + 2 * g.nel, nel3, 1.0f, 1.0f));
        LACT_TRY(ttt_gemm(ctx, dt(), LACT_F32, true, false, 2 * dh, d, Tt, g.n, dAB, Tt * 2 * dh,
                          kt, Ld, dW, nel3, 1.0f, 1.0f));
    }
    return LACT_OK;
}

/* grad_bwd over tokens t0 + [0, Tt) with the paired operands (wide). */
template <class T>
lact_status ttt_run<T>::grad_bwd_wide(const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt,
                                      float add) {
    const int64_t Ld = g.len * g.d, dh = g.dh, d = g.d, s6 = 6 * g.nel;
    const T *kt = k + t0 * d, *vt = v + t0 * d, *B1 = Bw + 4 * g.nel;
    if (stream_grads) { /* BF16 only: the products and the element-wise step in one pass */
        LACT_TRY(pairs_pass(gr, t0, Tt));
    } else {
        LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, true, Tt, 4 * dh, d, g.n, kt, Ld, Bw, s6, ZK,
                          Tt * 4 * dh, 1.0f, 0.0f));
        LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, 2 * dh, d, g.n, vt, Ld, B1, s6, ZE,
                          Tt * 2 * dh, 1.0f, 0.0f));
        TTT_LAUNCH_ROWS(ttt_grad_bwd_ew_kernel, g.n * Tt, g, Tt, t0, 4 * dh, 2 * dh, ZK, ZE,
                        ZE + dh, ZK + 2 * dh, in->lr0, in->lr1, in->lr2, ZE + dh, ZK + 2 * dh, ZK,
                        ZE, gr->lr0, gr->lr1, gr->lr2);
    }
    LACT_TRY(wide_dv(ctx, gr, t0, Tt, add));
    LACT_TRY(wide_dk(ctx, gr, t0, Tt, add));
    return wide_dw(ctx, t0, Tt);
}

/* The update's streamed pass in the paired layout over tokens t0 + [0,
 * Tt) (BF16 only), after ZE = v [W1 | dG1] by a product where the pass
 * reads it (ttt_hidden_stream_reads_e). */
template <class T>
lact_status ttt_run<T>::pairs_pass(const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt) {
    if constexpr (ttt_dt<T>::v == LACT_BF16) {
        const int64_t dh = g.dh, d = g.d;
        const bool e_read = ttt_hidden_stream_reads_e(g.n, Tt, dh, false);
        if (e_read)
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, 2 * dh, d, g.n, v + t0 * d,
                              g.len * d, Bw + 4 * g.nel, 6 * g.nel, ZE, Tt * 2 * dh, 1.0f, 0.0f));
        return ttt_hidden_stream_bwd_pairs(ctx, k, v, Bw, in->lr0, in->lr1, in->lr2, ZK, ZE,
                                           gr->lr0, gr->lr1, gr->lr2, g.n, g.len, t0, Tt, d, dh,
                                           e_read);
    }
    return lact_fail(LACT_E_UNSUPPORTED, "ttt: the streamed pass takes BF16");
}

/* d_v += [dE | H1] [W1 | dG1]ᵀ over tokens t0 + [0, Tt), on cx. */
template <class T>
lact_status ttt_run<T>::wide_dv(lact_ctx *cx, const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt,
                                float add) {
    if (!gr->v) return LACT_OK;
    const int64_t Ld = g.len * g.d;
    return ttt_gemm(cx, dt(), dt(), false, true, Tt, g.d, 2 * g.dh, g.n, ZE, Tt * 2 * g.dh,
                    Bw + 4 * g.nel, 6 * g.nel, (T *)gr->v + t0 * g.d, Ld, 1.0f, add);
}

/* d_k += [dA dB | X02] [W0; W2; dG0; dG2], on cx. */
template <class T>
lact_status ttt_run<T>::wide_dk(lact_ctx *cx, const lact_ttt_cuda_grad *gr, int64_t t0, int64_t Tt,
                                float add) {
    if (!gr->k) return LACT_OK;
    const int64_t Ld = g.len * g.d;
    return ttt_gemm(cx, dt(), dt(), false, false, Tt, g.d, 4 * g.dh, g.n, ZK, Tt * 4 * g.dh, Bw,
                    6 * g.nel, (T *)gr->k + t0 * g.d, Ld, 1.0f, add);
}

/* dW1 += Vᵀ dE, dW02 += dABᵀ K: bands of ZE and ZK, on cx; with sh given
 * the sums are stored there in T instead (share). */
template <class T> lact_status ttt_run<T>::wide_dw(lact_ctx *cx, int64_t t0, int64_t Tt, T *sh) {
    const int64_t Ld = g.len * g.d, dh = g.dh, d = g.d;
    const T *kt = k + t0 * d, *vt = v + t0 * d;
    void *out = sh ? (void *)sh : (void *)dW;
    const lact_dtype od = sh ? dt() : LACT_F32;
    const float add = sh ? 0.0f : 1.0f;
    const size_t es = sh ? sizeof(T) : 4;
    lact_gemm_desc g1 = lact_gemm_desc_make(vt, ZE, (char *)out + 2 * g.nel * es, dt(), od, true,
                                            false, d, dh, Tt, g.n, Ld, Tt * 2 * dh, 3 * g.nel, 1.0f,
                                            add);
    g1.ldb = 2 * dh;
    LACT_TRY(lact_cuda_gemm(cx, &g1));
    lact_gemm_desc g02 = lact_gemm_desc_make(ZK, kt, out, dt(), od, true, false, 2 * dh, d, Tt, g.n,
                                             Tt * 4 * dh, Ld, 3 * g.nel, 1.0f, add);
    g02.lda = 4 * dh;
    return lact_cuda_gemm(cx, &g02);
}

/* dW += the stored sums not yet added (SA, SU), on ctx. */
template <class T> lact_status ttt_run<T>::fold() {
    if (!pend_a && !pend_u) return LACT_OK;
    const int64_t n = g.n * 3 * g.nel;
    const T *a = pend_a ? SA : NULL, *b = pend_u ? SU : NULL;
    pend_a = pend_u = false;
    constexpr int V = vec_width<T>::value;
    if (n % V == 0)
        ttt_fold_kernel<T, V><<<grid(n / V), TTT_THREADS, 0, st>>>(dW, a, b, n);
    else
        ttt_fold_kernel<T, 1><<<grid(n), TTT_THREADS, 0, st>>>(dW, a, b, n);
    LACT_CU_LAUNCH("ttt_fold");
    return LACT_OK;
}

/* Where the apply's (or the update's) weight-gradient products of a split
 * op store their sums: SA (SU), after adding what it held into dW; NULL
 * (add into dW) without the stored sums. */
template <class T> lact_status ttt_run<T>::share(bool apply, T **sh) {
    *sh = NULL;
    if (!dws) return LACT_OK;
    if (apply ? pend_a : pend_u) LACT_TRY(fold());
    (apply ? pend_a : pend_u) = true;
    *sh = apply ? SA : SU;
    return LACT_OK;
}

template <class T>
lact_status ttt_run<T>::apply_bwd(int64_t j, const T *d_o, const lact_ttt_cuda_grad *gr) {
    const lact_ttt_op *op = &args->ops[j];
    int64_t Ld = g.len * g.d, nel3 = 3 * g.nel, dh = g.dh, d = g.d;
    for (int64_t t0 = op->start; t0 < op->end; t0 += tile) {
        int64_t Tt = op->end - t0 < tile ? op->end - t0 : tile;
        const T *dot = d_o + t0 * d;
        T *h1 = P1, *dAB = Zab; /* in place, as in grad_bwd */
        if (hidden_fused || stream_grads) {
            /* h, (dA, dB) and with small heads d_q in one pass: rates 1 */
            T *dq = hidden_fused ? (T *)gr->q : NULL;
            LACT_TRY(hidden(q, d_o, NULL, NULL, NULL, dAB, h1, dq, t0, Tt));
        } else {
            LACT_TRY(tile_ab(q, t0, Tt));
            LACT_TRY(ttt_gemm(ctx, dt(), dt(), false, false, Tt, dh, d, g.n, dot, Ld,
                              Wc + 2 * g.nel, nel3, P1, Tt * dh, 1.0f, 0.0f));
            TTT_LAUNCH_ROWS(ttt_apply_bwd_ew_kernel, g.n * Tt, g, Tt, Zab, P1, h1, dAB);
        }
        LACT_TRY(apply_dw(ctx, d_o, t0, Tt));
        if (!hidden_fused) LACT_TRY(apply_dq(ctx, j, gr, t0, Tt));
    }
    return LACT_OK;
}

/* The apply's dW1 += dOᵀ H, dW02 += [dA dB]ᵀ Q from P1 and Zab, on cx;
 * with sh given stored there in T instead (share). */
template <class T>
lact_status ttt_run<T>::apply_dw(lact_ctx *cx, const T *d_o, int64_t t0, int64_t Tt, T *sh) {
    const int64_t Ld = g.len * g.d, nel3 = 3 * g.nel, dh = g.dh, d = g.d;
    if (sh) {
        LACT_TRY(ttt_gemm(cx, dt(), dt(), true, false, d, dh, Tt, g.n, d_o + t0 * d, Ld, P1,
                          Tt * dh, sh + 2 * g.nel, nel3, 1.0f, 0.0f));
        return ttt_gemm(cx, dt(), dt(), true, false, 2 * dh, d, Tt, g.n, Zab, Tt * 2 * dh,
                        q + t0 * d, Ld, sh, nel3, 1.0f, 0.0f);
    }
    LACT_TRY(ttt_gemm(cx, dt(), LACT_F32, true, false, d, dh, Tt, g.n, d_o + t0 * d, Ld, P1,
                      Tt * dh, dW + 2 * g.nel, nel3, 1.0f, 1.0f));
    return ttt_gemm(cx, dt(), LACT_F32, true, false, 2 * dh, d, Tt, g.n, Zab, Tt * 2 * dh,
                    q + t0 * d, Ld, dW, nel3, 1.0f, 1.0f);
}

/* d_q += [dA dB] [W0; W2] from Zab, on cx; op j's first rows store. */
template <class T>
lact_status ttt_run<T>::apply_dq(lact_ctx *cx, int64_t j, const lact_ttt_cuda_grad *gr, int64_t t0,
                                 int64_t Tt) {
    if (!gr->q) return LACT_OK;
    const float add = first_touch(j, true, true) ? 0.0f : 1.0f;
    return ttt_gemm(cx, dt(), dt(), false, false, Tt, g.d, 2 * g.dh, g.n, Zab, Tt * 2 * g.dh, Wc,
                    3 * g.nel, (T *)gr->q + t0 * g.d, g.len * g.d, 1.0f, add);
}

/* Ops whose backward op_bwd_split takes: the streamed passes and the
 * pairs, each range one tile. */
template <class T> bool ttt_run<T>::splits(const lact_ttt_op *op) const {
    return split && op->end - op->start <= tile;
}

/* Work queued on cx "to" waits for what "from" has queued so far (nothing
 * when both are ctx: one stream). */
template <class T> lact_status ttt_run<T>::hand(int e, lact_ctx *from, lact_ctx *to) {
    if (from == to) return LACT_OK;
    LACT_CU(cudaEventRecord(ev[e], lact_cuda_stream(from)));
    LACT_CU(cudaStreamWaitEvent(lact_cuda_stream(to), ev[e], 0));
    return LACT_OK;
}

/* The backward of op j (update and/or apply, after load) on two streams:
 * ctx takes the step's backward, the apply's weight gradients, the
 * update's streamed pass, d_v and its weight gradients; sx takes the
 * apply's streamed pass and d_q, then d_k. Each pair of passes that runs
 * side by side is independent: the step's backward (memory-bound) beside
 * the apply's pass (tensor cores), each product beside another, so each
 * fills the other's first and last waves. The apply comes first, as its
 * pass needs only the weights: its outputs (Zab, P1) then live in ZK and
 * ZE until the update's pass overwrites them. With sx = ctx the same
 * order runs on one stream, with the same bits. */
template <class T>
lact_status ttt_run<T>::op_bwd_split(int64_t j, const T *d_o, const lact_ttt_cuda_grad *gr,
                                     const float *state, int64_t u) {
    enum { E_WEIGHTS, E_PASS, E_DQ, E_PAIRS, E_DONE };
    static_assert((int)E_DONE < (int)E_FWD_H, "the forward's events are apart");
    const lact_ttt_op *op = &args->ops[j];
    /* the step's backward writes the products' copy of W where it is not
     * the snapshot itself (step_bwd_as) */
    const bool wc_by_step = op->update && mom && !muon && !sb16;
    if (op->apply && !wc_by_step) LACT_TRY(hand(E_WEIGHTS, ctx, sx));
    if (op->update) LACT_TRY(step_bwd(j, state, u));
    if (op->apply) {
        const int64_t t0 = op->start, Tt = op->end - op->start;
        if (wc_by_step) LACT_TRY(hand(E_WEIGHTS, ctx, sx));
        LACT_TRY(hidden(q, d_o, NULL, NULL, NULL, Zab, P1, NULL, t0, Tt, sx));
        LACT_TRY(hand(E_PASS, sx, ctx));
        LACT_TRY(apply_dq(sx, j, gr, t0, Tt));
        T *sh;
        LACT_TRY(share(true, &sh));
        LACT_TRY(apply_dw(ctx, d_o, t0, Tt, sh));
        LACT_TRY(hand(E_DQ, sx, ctx)); /* Zab is read until here */
    }
    if (op->update) {
        const int64_t t0 = op->start, Tt = op->end - op->start;
        const float add = first_touch(j, false, true) ? 0.0f : 1.0f;
        LACT_TRY(pairs_pass(gr, t0, Tt));
        LACT_TRY(hand(E_PAIRS, ctx, sx));
        LACT_TRY(wide_dk(sx, gr, t0, Tt, add));
        LACT_TRY(wide_dv(ctx, gr, t0, Tt, add));
        T *sh;
        LACT_TRY(share(false, &sh));
        LACT_TRY(wide_dw(ctx, t0, Tt, sh));
    }
    /* the next op's step overwrites Bw, its apply's pass Zab and P1 */
    return hand(E_DONE, sx, ctx);
}

template <class T>
lact_status ttt_run<T>::backward(const lact_ttt_cuda_grad *gr, const T *d_o, const float *state) {
    size_t act = (size_t)(g.n * g.len * g.d) * sizeof(T), tok = (size_t)(g.n * g.len) * 4;
    size_t mst = (size_t)(g.n * 3 * g.nel) * 4;
    /* The fused hidden pass adds into d_q; the products store on the
     * rows they write first, so only the others are zeroed. */
    if (hidden_fused)
        LACT_TRY(zero(gr->q, act));
    else
        LACT_TRY(zero_uncovered(gr->q, true, true));
    LACT_TRY(zero_uncovered(gr->k, false, true));
    LACT_TRY(zero_uncovered(gr->v, false, true));
    LACT_TRY(zero(gr->lr0, tok));
    LACT_TRY(zero(gr->lr1, tok));
    LACT_TRY(zero(gr->lr2, tok));
    LACT_TRY(zero(dW, mst));
    LACT_TRY(zero(dM, dm16 ? mst / 4 * sizeof(T) : mst));
    pend_a = pend_u = false;
    LACT_TRY(zero(dr0, (size_t)(g.n * g.rows) * 4));
    LACT_TRY(zero(dbeta, (size_t)(args->n_ops * g.n) * 4));
    int64_t u = lact_ttt_n_updates(args);
    for (int64_t j = args->n_ops - 1; j >= 0; j--) {
        const lact_ttt_op *op = &args->ops[j];
        if (op->update) u--;
        /* With momentum the step's input M' = βM + G is the momentum
         * after the update: no need to recompute G. It comes first, as
         * rebuilding it may overwrite W. */
        if (op->update && mom) LACT_TRY(load_m(state, u + 1, &sU));
        /* The step's backward writes Wc itself (step_bwd) where it
         * runs before any product. */
        LACT_TRY(load(state, u, !(op->update && mom && !muon)));
        if (splits(op)) {
            LACT_TRY(op_bwd_split(j, d_o, gr, state, u));
            continue;
        }
        LACT_TRY(fold()); /* the products below add into dW */
        if (op->update) {
            if (!mom) LACT_TRY(grad_fwd(op));
            LACT_TRY(step_bwd(j, state, u));
            LACT_TRY(grad_bwd(j, gr, !mom && op->end - op->start <= tile));
        }
        if (op->apply) LACT_TRY(apply_bwd(j, d_o, gr));
    }
    if (gr->momentum) {
        ttt_dmom_kernel<<<grid(g.n * g.len), TTT_THREADS, 0, st>>>(g, ops, args->n_ops, dbeta,
                                                                   gr->momentum);
        LACT_CU_LAUNCH("ttt_dmom");
    }
    /* the first op's stored sums: a pass of their own, or with dws_out
     * added as dw_out reads dW, as the steps add the others' */
    if (!dws_out) LACT_TRY(fold());
    const T *sa = pend_a ? SA : NULL, *su = pend_u ? SU : NULL;
    pend_a = pend_u = false;
    ttt_dw_out_kernel<T><<<dim3((unsigned)g.rows, (unsigned)g.wn), TTT_THREADS, 0, st>>>(
        g, dW, sa, su, dr0, r0, in->w0, in->w1, in->w2, gr->w0, gr->w1, gr->w2);
    LACT_CU_LAUNCH("ttt_dw_out");
    return LACT_OK;
}

#endif
