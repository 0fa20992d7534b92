/* Batched matrix product on the CPU: one OpenBLAS sgemm per batch entry.
 *   out = alpha * op(a) · op(b) + beta * out
 * a [..., M, K] (or [..., K, M] when ta), b [..., K, N] (or [..., N, K] when
 * tb) or one 2-D b for the whole batch, out [..., M, N]. */
#include <cblas.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

typedef struct mm_dims {
    int64_t batch, m, n, k;
    bool b_broadcast;
} mm_dims;

static mm_dims mm_dims_of(const lact_tensor *a, const lact_tensor *b, bool ta, bool tb) {
    mm_dims d;
    int nd = a->ndim;
    d.m = a->shape[nd - (ta ? 1 : 2)];
    d.k = a->shape[nd - (ta ? 2 : 1)];
    d.n = b->shape[b->ndim - (tb ? 2 : 1)];
    d.batch = 1;
    for (int i = 0; i < nd - 2; i++)
        d.batch *= a->shape[i];
    d.b_broadcast = b->ndim == 2 && nd > 2;
    return d;
}

static int ld(int64_t cols) {
    return cols > 0 ? (int)cols : 1;
}

/* c [rows, cols] = alpha · op(x) · op(y) + beta · c, row-major; x is stored
 * with x_cols columns, y with y_cols. */
static void gemm(bool tx, bool ty, int64_t rows, int64_t cols, int64_t inner, float alpha,
                 const float *x, int64_t x_cols, const float *y, int64_t y_cols, float beta,
                 float *c) {
    if (rows == 0 || cols == 0) return;
    if (inner == 0) {
        for (int64_t i = 0; i < rows * cols; i++)
            c[i] = beta == 0.0f ? 0.0f : beta * c[i];
        return;
    }
    cblas_sgemm(CblasRowMajor, tx ? CblasTrans : CblasNoTrans, ty ? CblasTrans : CblasNoTrans,
                (int)rows, (int)cols, (int)inner, alpha, x, ld(x_cols), y, ld(y_cols), beta, c,
                ld(cols));
}

lact_status lact_cpu_matmul_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                    const lact_tensor *b, bool ta, bool tb, float alpha,
                                    float beta) {
    mm_dims d = mm_dims_of(a, b, ta, tb);
    int64_t a_cols = ta ? d.m : d.k, b_cols = tb ? d.k : d.n;
    int64_t sa = d.m * d.k, sb = d.b_broadcast ? 0 : d.k * d.n, so = d.m * d.n;
    const float *pa = a->data, *pb = b->data;
    float *po = out->data;
    for (int64_t i = 0; i < d.batch; i++)
        gemm(ta, tb, d.m, d.n, d.k, alpha, pa + i * sa, a_cols, pb + i * sb, b_cols, beta,
             po + i * so);
    return LACT_OK;
}

lact_status lact_cpu_matmul_add_forward(lact_ctx *ctx, lact_tensor *out, const lact_tensor *a,
                                        const lact_tensor *b, bool ta, bool tb, float alpha,
                                        const lact_tensor *c) {
    if (c->data != out->data)
        memcpy(out->data, c->data, (size_t)lact_tensor_numel(out) * sizeof(float));
    return lact_cpu_matmul_forward(ctx, out, a, b, ta, tb, alpha, 1.0f);
}

/* With A = op(a) [M, K], B = op(b) [K, N] and dC = dout [M, N]:
 *   dA = alpha dC Bᵀ, dB = alpha Aᵀ dC; da and db are these, transposed back
 *   where a or b was given transposed. */
lact_status lact_cpu_matmul_backward(lact_ctx *ctx, lact_tensor *da, lact_tensor *db,
                                     const lact_tensor *dout, const lact_tensor *a,
                                     const lact_tensor *b, bool ta, bool tb, float alpha) {
    mm_dims d = mm_dims_of(a, b, ta, tb);
    int64_t a_cols = ta ? d.m : d.k, b_cols = tb ? d.k : d.n;
    int64_t sa = d.m * d.k, sb = d.b_broadcast ? 0 : d.k * d.n, so = d.m * d.n;
    const float *pa = a->data, *pb = b->data, *pd = dout->data;
    if (db && d.batch == 0)
        for (int64_t j = 0; j < lact_tensor_numel(db); j++)
            ((float *)db->data)[j] = 0.0f;
    for (int64_t i = 0; i < d.batch; i++) {
        const float *ai = pa + i * sa, *bi = pb + i * sb, *di = pd + i * so;
        if (da) {
            float *dai = (float *)da->data + i * sa;
            if (!ta) /* da [M, K] = dC · Bᵀ */
                gemm(false, !tb, d.m, d.k, d.n, alpha, di, d.n, bi, b_cols, 0.0f, dai);
            else /* da [K, M] = B · dCᵀ */
                gemm(tb, true, d.k, d.m, d.n, alpha, bi, b_cols, di, d.n, 0.0f, dai);
        }
        if (db) {
            /* A broadcast b collects its gradient from every batch entry. */
            float *dbi = (float *)db->data + i * sb;
            float beta = d.b_broadcast && i > 0 ? 1.0f : 0.0f;
            if (!tb) /* db [K, N] = Aᵀ · dC */
                gemm(!ta, false, d.k, d.n, d.m, alpha, ai, a_cols, di, d.n, beta, dbi);
            else /* db [N, K] = dCᵀ · A */
                gemm(true, ta, d.n, d.k, d.m, alpha, di, d.n, ai, a_cols, beta, dbi);
        }
    }
    return LACT_OK;
}
