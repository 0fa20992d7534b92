/* Matrix products through cuBLASLt. Row-major C = op(A) op(B) is computed as
 * the column-major Cᵀ = op(B)ᵀ op(A)ᵀ, i.e. with the operands swapped. Every
 * distinct problem (shape, dtypes, transposes, strides, alignment) gets one
 * plan — descriptors plus an algorithm — built on first use and cached, so
 * repeated calls only launch.
 *
 * The algorithm: cuBLASLt's heuristic ranks candidates by a model, which
 * need not pick the fastest for the batched and thin products of the ttt
 * op and its Newton–Schulz steps. With LACT_GEMM_TUNE=1 the top candidates
 * are timed on first use on the call's own operands, writing into a scratch
 * output, and the fastest is kept; otherwise (the default) the heuristic's
 * first choice is used, which is the same in every process. Products whose
 * output exceeds TUNE_MAX_BYTES keep the heuristic's choice (the scratch
 * would be a large allocation outside the arenas), and so do plans built
 * while the stream is being captured into a graph. */
#include <mutex>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

typedef struct plan_key {
    int ab_dtype, c_dtype, ta, tb;
    int64_t M, N, K, batch, stride_a, stride_b, stride_c;
    int64_t lda, ldb, ldc; /* row pitches, never 0 here */
    int align_a, align_b, align_c;
    size_t workspace;
} plan_key;

typedef struct gemm_plan {
    plan_key key;
    bool used;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; /* in cuBLASLt's order: A = our b, B = our a */
    cublasLtMatmulAlgo_t algo;
} gemm_plan;

#define PLAN_SLOTS 1024

static gemm_plan plans[PLAN_SLOTS];
static std::mutex plans_lock;

static uint64_t key_hash(const plan_key *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static cudaDataType_t cuda_type(lact_dtype dt) {
    switch (dt) {
    case LACT_BF16:
        return CUDA_R_16BF;
    case LACT_F16:
        return CUDA_R_16F;
    default:
        return CUDA_R_32F;
    }
}

/* Largest power of two up to 256 dividing the address, the batch stride
 * and a row pitch given explicitly (pitch_bytes 0: packed rows). */
static int alignment_of(const void *p, int64_t stride_bytes, int64_t batch, int64_t pitch_bytes) {
    uintptr_t v = (uintptr_t)p | (uintptr_t)pitch_bytes;
    if (batch > 1) v |= (uintptr_t)stride_bytes;
    int a = 256;
    while (a > 1 && (v & (uintptr_t)(a - 1)))
        a >>= 1;
    return a;
}

static lact_status layout_make(cublasLtMatrixLayout_t *l, lact_dtype dt, int64_t rows, int64_t cols,
                               int64_t ld, int64_t batch, int64_t stride) {
    LACT_CU(cublasLtMatrixLayoutCreate(l, cuda_type(dt), (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t count = (int32_t)batch;
        LACT_CU(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                 sizeof count));
        LACT_CU(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                 &stride, sizeof stride));
    }
    return LACT_OK;
}

static void plan_destroy(gemm_plan *p) {
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    memset(p, 0, sizeof *p);
}

#define TUNE_CANDIDATES 8
#define TUNE_REPS 4
#define TUNE_MAX_BYTES ((size_t)256 << 20)

static bool tune_enabled(lact_ctx *ctx) {
    const char *e = getenv("LACT_GEMM_TUNE");
    if (!e || strcmp(e, "1") != 0) return false;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(lact_cuda_stream(ctx), &cs) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return cs == cudaStreamCaptureStatusNone;
}

/* Elements from the first to one past the last of c's batch items. */
static size_t c_span(const plan_key *k) {
    size_t one = (size_t)((k->M - 1) * k->ldc + k->N);
    return k->batch > 1 ? (size_t)(k->stride_c * (k->batch - 1)) + one : one;
}

/* Mean time of TUNE_REPS launches of one candidate after a warm-up, or a
 * negative value where the candidate fails. */
static float tune_time(lact_ctx *ctx, gemm_plan *p, const cublasLtMatmulAlgo_t *algo,
                       const lact_gemm_desc *g, void *scratch, cudaEvent_t e0, cudaEvent_t e1) {
    cudaStream_t st = lact_cuda_stream(ctx);
    float alpha = g->alpha, beta = g->beta, ms = -1.0f;
    for (int r = -1; r < TUNE_REPS; r++) {
        if (r == 0 && cudaEventRecord(e0, st) != cudaSuccess) return -1.0f;
        if (cublasLtMatmul((cublasLtHandle_t)ctx->cublaslt, p->op, &alpha, g->b, p->la, g->a, p->lb,
                           &beta, scratch, p->lc, scratch, p->lc, algo, ctx->workspace,
                           ctx->workspace_bytes, st) != CUBLAS_STATUS_SUCCESS)
            return -1.0f;
    }
    if (cudaEventRecord(e1, st) != cudaSuccess || cudaEventSynchronize(e1) != cudaSuccess ||
        cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess)
        return -1.0f;
    return ms / TUNE_REPS;
}

/* The fastest of the n candidates on g's operands (index into res). */
static int tune_pick(lact_ctx *ctx, gemm_plan *p, const cublasLtMatmulHeuristicResult_t *res, int n,
                     const lact_gemm_desc *g) {
    size_t bytes = c_span(&p->key) * lact_dtype_size((lact_dtype)p->key.c_dtype);
    void *scratch = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    int best = 0;
    if (bytes > TUNE_MAX_BYTES) return 0;
    if (cudaMalloc(&scratch, bytes) == cudaSuccess &&
        cudaMemsetAsync(scratch, 0, bytes, lact_cuda_stream(ctx)) == cudaSuccess &&
        cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess) {
        float best_ms = -1.0f;
        for (int i = 0; i < n; i++) {
            float ms = tune_time(ctx, p, &res[i].algo, g, scratch, e0, e1);
            if (ms >= 0.0f && (best_ms < 0.0f || ms < best_ms)) best_ms = ms, best = i;
        }
    }
    /* A failed candidate or allocation leaves an error behind: the
     * heuristic's choice stands and the error is not the caller's. */
    if (cudaStreamSynchronize(lact_cuda_stream(ctx)) != cudaSuccess) best = 0;
    (void)cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    if (scratch) cudaFree(scratch);
    return best;
}

/* A cached plan for the same problem whose operands were no more aligned
 * than k's (its algorithm then runs on k's operands too). */
static const gemm_plan *plan_twin(const plan_key *k) {
    plan_key a = *k;
    a.align_a = a.align_b = a.align_c = 0;
    for (size_t i = 0; i < PLAN_SLOTS; i++) {
        if (!plans[i].used) continue;
        plan_key b = plans[i].key;
        b.align_a = b.align_b = b.align_c = 0;
        const plan_key *t = &plans[i].key;
        if (memcmp(&a, &b, sizeof a) == 0 && t->align_a <= k->align_a && t->align_b <= k->align_b &&
            t->align_c <= k->align_c)
            return &plans[i];
    }
    return NULL;
}

static lact_status plan_build(lact_ctx *ctx, const plan_key *k, gemm_plan *p,
                              const lact_gemm_desc *g) {
    lact_dtype ab = (lact_dtype)k->ab_dtype, cd = (lact_dtype)k->c_dtype;
    LACT_CU(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    LACT_CU(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    LACT_CU(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    /* Our b, row-major [K, N] (or [N, K] when tb), is column-major N×K (K×N). */
    LACT_TRY(layout_make(&p->la, ab, k->tb ? k->K : k->N, k->tb ? k->N : k->K, k->ldb, k->batch,
                         k->stride_b));
    LACT_TRY(layout_make(&p->lb, ab, k->ta ? k->M : k->K, k->ta ? k->K : k->M, k->lda, k->batch,
                         k->stride_a));
    LACT_TRY(layout_make(&p->lc, cd, k->N, k->M, k->ldc, k->batch, k->stride_c));

    /* The same problem at another alignment (a view, a recompute's buffers)
     * keeps its algorithm where it is valid, so equal inputs give equal bits
     * whatever the addresses. */
    const gemm_plan *twin = plan_twin(k);
    cublasLtMatmulHeuristicResult_t chk;
    if (twin &&
        cublasLtMatmulAlgoCheck((cublasLtHandle_t)ctx->cublaslt, p->op, p->la, p->lb, p->lc, p->lc,
                                &twin->algo, &chk) == CUBLAS_STATUS_SUCCESS &&
        chk.workspaceSize <= k->workspace) {
        p->key = *k;
        p->algo = twin->algo;
        return LACT_OK;
    }

    cublasLtMatmulPreference_t pref;
    LACT_CU(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = k->workspace;
    uint32_t al_a = (uint32_t)k->align_b, al_b = (uint32_t)k->align_a, al_c = (uint32_t)k->align_c;
    cublasStatus_t e = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                 &al_a, sizeof al_a);
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                 &al_b, sizeof al_b);
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                                 &al_c, sizeof al_c);
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                                 &al_c, sizeof al_c);
    cublasLtMatmulHeuristicResult_t res[TUNE_CANDIDATES];
    const bool tune = tune_enabled(ctx);
    int found = 0;
    if (e == CUBLAS_STATUS_SUCCESS)
        e = cublasLtMatmulAlgoGetHeuristic((cublasLtHandle_t)ctx->cublaslt, p->op, p->la, p->lb,
                                           p->lc, p->lc, pref, tune ? TUNE_CANDIDATES : 1, res,
                                           &found);
    cublasLtMatmulPreferenceDestroy(pref);
    LACT_CU(e);
    if (found < 1)
        return lact_fail(LACT_E_UNSUPPORTED,
                         "cuBLASLt has no algorithm for matmul %s x %s -> %s, M=%lld N=%lld "
                         "K=%lld batch=%lld",
                         lact_dtype_name(ab), lact_dtype_name(ab), lact_dtype_name(cd),
                         (long long)k->M, (long long)k->N, (long long)k->K, (long long)k->batch);
    p->key = *k;
    p->algo = res[found > 1 && tune ? tune_pick(ctx, p, res, found, g) : 0].algo;
    return LACT_OK;
}

/* The cached plan for k, built on a miss. */
static lact_status plan_get(lact_ctx *ctx, const plan_key *k, const lact_gemm_desc *g,
                            gemm_plan **out) {
    std::lock_guard<std::mutex> guard(plans_lock);
    uint64_t h = key_hash(k);
    size_t i = (size_t)(h % PLAN_SLOTS);
    for (size_t n = 0; n < PLAN_SLOTS; n++, i = (i + 1) % PLAN_SLOTS) {
        if (!plans[i].used) break;
        if (memcmp(&plans[i].key, k, sizeof *k) == 0) {
            *out = &plans[i];
            return LACT_OK;
        }
    }
    if (plans[i].used) plan_destroy(&plans[i]); /* table full: take over a slot */
    gemm_plan *p = &plans[i];
    memset(p, 0, sizeof *p);
    lact_status s = plan_build(ctx, k, p, g);
    if (s != LACT_OK) {
        plan_destroy(p);
        return s;
    }
    p->key = *k;
    p->used = true;
    *out = p;
    return LACT_OK;
}

lact_status lact_cuda_gemm(lact_ctx *ctx, const lact_gemm_desc *g) {
    if (g->M == 0 || g->N == 0 || g->batch == 0) return LACT_OK;
    if (g->K == 0) /* cuBLASLt rejects k = 0; the public op scales instead */
        return lact_fail(LACT_E_UNSUPPORTED, "matmul: K = 0 reached the CUDA GEMM");
    if (g->M > INT32_MAX || g->N > INT32_MAX || g->K > INT32_MAX || g->batch > INT32_MAX)
        return lact_fail(LACT_E_UNSUPPORTED, "matmul: dimension beyond 2^31 (M=%lld N=%lld K=%lld)",
                         (long long)g->M, (long long)g->N, (long long)g->K);
    plan_key k;
    memset(&k, 0, sizeof k); /* padding takes part in the hash */
    k.ab_dtype = g->ab_dtype;
    k.c_dtype = g->c_dtype;
    k.ta = g->ta;
    k.tb = g->tb;
    k.M = g->M;
    k.N = g->N;
    k.K = g->K;
    k.batch = g->batch;
    k.stride_a = g->batch > 1 ? g->stride_a : 0;
    k.stride_b = g->batch > 1 ? g->stride_b : 0;
    k.stride_c = g->batch > 1 ? g->stride_c : 0;
    /* Rows as stored: a is [M, K] ([K, M] when ta), b [K, N] ([N, K] when tb). */
    const int64_t pa = g->ta ? g->M : g->K, pb = g->tb ? g->K : g->N;
    k.lda = g->lda ? g->lda : pa;
    k.ldb = g->ldb ? g->ldb : pb;
    k.ldc = g->ldc ? g->ldc : g->N;
    if (k.lda < pa || k.ldb < pb || k.ldc < g->N)
        return lact_fail(LACT_E_ARG,
                         "matmul: row pitch below the row (lda %lld, ldb %lld, ldc %lld)",
                         (long long)g->lda, (long long)g->ldb, (long long)g->ldc);
    size_t eab = lact_dtype_size(g->ab_dtype), ec = lact_dtype_size(g->c_dtype);
    k.align_a = alignment_of(g->a, k.stride_a * (int64_t)eab, g->batch, g->lda * (int64_t)eab);
    k.align_b = alignment_of(g->b, k.stride_b * (int64_t)eab, g->batch, g->ldb * (int64_t)eab);
    k.align_c = alignment_of(g->c, k.stride_c * (int64_t)ec, g->batch, g->ldc * (int64_t)ec);
    const void *addend = g->addend ? g->addend : g->c;
    int align_add = alignment_of(addend, k.stride_c * (int64_t)ec, g->batch, g->ldc * (int64_t)ec);
    if (align_add < k.align_c) k.align_c = align_add;
    k.workspace = ctx->workspace_bytes;
    gemm_plan *p = NULL;
    LACT_TRY(plan_get(ctx, &k, g, &p));
    float alpha = g->alpha, beta = g->beta;
    LACT_CU(cublasLtMatmul((cublasLtHandle_t)ctx->cublaslt, p->op, &alpha, g->b, p->la, g->a, p->lb,
                           &beta, addend, p->lc, g->c, p->lc, &p->algo, ctx->workspace,
                           ctx->workspace_bytes, lact_cuda_stream(ctx)));
    return LACT_OK;
}

/* ---- the public op ---------------------------------------------------------- */

typedef struct mm_shape {
    int64_t M, N, K, batch;
    bool b_broadcast;
} mm_shape;

static mm_shape mm_shape_of(const lact_tensor *a, const lact_tensor *b, bool ta, bool tb) {
    mm_shape s;
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t bc = b->shape[b->ndim - 1];
    s.M = ta ? ac : ar;
    s.K = ta ? ar : ac;
    s.N = tb ? b->shape[b->ndim - 2] : bc;
    s.batch = lact_tensor_numel(a) / (ar * ac > 0 ? ar * ac : 1);
    int64_t b_items = lact_tensor_numel(b) / (s.K * s.N > 0 ? s.K * s.N : 1);
    s.b_broadcast = s.batch > 1 && b_items == 1;
    return s;
}

extern "C" lact_status lact_cuda_matmul_forward(lact_ctx *ctx, lact_tensor *out,
                                                const lact_tensor *a, const lact_tensor *b, bool ta,
                                                bool tb, float alpha, float beta) {
    mm_shape s = mm_shape_of(a, b, ta, tb);
    if (s.K == 0) {
        lact_tensor o = *out;
        return lact_cuda_scale_forward(ctx, out, &o, beta);
    }
    lact_gemm_desc g = lact_gemm_desc_make(a->data, b->data, out->data, a->dtype, out->dtype, ta,
                                           tb, s.M, s.N, s.K, s.batch, s.M * s.K,
                                           s.b_broadcast ? 0 : s.K * s.N, s.M * s.N, alpha, beta);
    return lact_cuda_gemm(ctx, &g);
}

extern "C" lact_status lact_cuda_matmul_add_forward(lact_ctx *ctx, lact_tensor *out,
                                                    const lact_tensor *a, const lact_tensor *b,
                                                    bool ta, bool tb, float alpha,
                                                    const lact_tensor *c) {
    mm_shape s = mm_shape_of(a, b, ta, tb);
    if (s.K == 0) {
        if (c->data == out->data) return LACT_OK;
        LACT_CU(cudaMemcpyAsync(out->data, c->data, lact_tensor_nbytes(out),
                                cudaMemcpyDeviceToDevice, lact_cuda_stream(ctx)));
        return LACT_OK;
    }
    lact_gemm_desc g = lact_gemm_desc_make(a->data, b->data, out->data, a->dtype, out->dtype, ta,
                                           tb, s.M, s.N, s.K, s.batch, s.M * s.K,
                                           s.b_broadcast ? 0 : s.K * s.N, s.M * s.N, alpha, 1.0f);
    g.addend = c->data;
    return lact_cuda_gemm(ctx, &g);
}

extern "C" lact_status lact_cuda_matmul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                                 const lact_tensor *dout, const lact_tensor *a,
                                                 const lact_tensor *b, bool ta, bool tb,
                                                 float alpha) {
    mm_shape s = mm_shape_of(a, b, ta, tb);
    int64_t M = s.M, N = s.N, K = s.K, B = s.batch;
    lact_dtype dt = a->dtype;
    int64_t sa = M * K, sd = M * N, sb = s.b_broadcast ? 0 : K * N;
    if (da) {
        lact_gemm_desc g;
        if (!ta) /* da [M, K] = dout [M, N] · op(b)ᵀ */
            g = lact_gemm_desc_make(dout->data, b->data, da->data, dt, da->dtype, false, !tb, M, K,
                                    N, B, sd, sb, sa, alpha, 0.0f);
        else /* da [K, M] = op(b) · doutᵀ */
            g = lact_gemm_desc_make(b->data, dout->data, da->data, dt, da->dtype, tb, true, K, M, N,
                                    B, sb, sd, sa, alpha, 0.0f);
        LACT_TRY(lact_cuda_gemm(ctx, &g));
    }
    if (db) {
        /* db [K, N] = op(a)ᵀ · dout; db [N, K] = doutᵀ · op(a) when tb. With b
         * broadcast the batch sums: for an untransposed a the batch folds
         * into the contraction ([B·M, K] and [B·M, N]); otherwise one product
         * per batch item accumulates. */
        int64_t Bg = B, fold = 1;
        if (s.b_broadcast && !ta) {
            fold = B;
            Bg = 1;
        }
        int64_t loops = s.b_broadcast && ta ? B : 1;
        if (loops > 1) Bg = 1;
        size_t ea = lact_dtype_size(dt);
        for (int64_t i = 0; i < loops; i++) {
            const char *ap = (const char *)a->data + (size_t)(i * sa) * ea;
            const char *dp = (const char *)dout->data + (size_t)(i * sd) * ea;
            float beta = i == 0 ? 0.0f : 1.0f;
            int64_t scb = s.b_broadcast ? 0 : K * N;
            lact_gemm_desc g;
            if (!tb)
                g = lact_gemm_desc_make(ap, dp, db->data, dt, db->dtype, !ta, false, K, N, M * fold,
                                        Bg, sa, sd, scb, alpha, beta);
            else
                g = lact_gemm_desc_make(dp, ap, db->data, dt, db->dtype, true, ta, N, K, M * fold,
                                        Bg, sd, sa, scb, alpha, beta);
            LACT_TRY(lact_cuda_gemm(ctx, &g));
        }
    }
    return LACT_OK;
}
