/* Newton–Schulz orthogonalisation and the Muon step on the CPU.
 *
 * NS(G): X = G / (‖G‖_F + 1e-7), transposed when R > C so that X Xᵀ is the
 * small Gram matrix; then `steps` times  A = X Xᵀ,  X ← a X + (b A + c A²) X
 * with the quintic coefficients (a, b, c) = (3.4445, −4.7750, 2.0315), which
 * drive every singular value of X towards 1; transposed back at the end. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_kernels.h"

#define NS_A 3.4445f
#define NS_B (-4.7750f)
#define NS_C 2.0315f
#define NS_NORM_EPS 1e-7

/* out [rows, cols] = NS(g [rows, cols]); out may be g. */
static lact_status ns_run(float *out, const float *g, int64_t rows, int64_t cols, int steps,
                          const char *op) {
    bool tr = rows > cols;
    int64_t r = tr ? cols : rows, c = tr ? rows : cols, n = rows * cols;
    if (n == 0) return LACT_OK;
    size_t floats = (size_t)(2 * r * c + 2 * r * r);
    float *block = malloc(floats * sizeof(float));
    if (!block) return lact_fail(LACT_E_NOMEM, "%s: cannot allocate %zu bytes", op, floats * 4);
    float *x = block, *y = x + r * c, *a = y + r * c, *b = a + r * r;

    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)g[i] * g[i];
    float inv = (float)(1.0 / (sqrt(ss) + NS_NORM_EPS));
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            x[tr ? j * c + i : i * c + j] = g[i * cols + j] * inv;

    for (int s = 0; s < steps; s++) {
        /* a = X Xᵀ;  b = c·a·a + b·a;  y = b·X + a·X. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)r, (int)c, 1.0f, x,
                    (int)c, x, (int)c, 0.0f, a, (int)r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)r, (int)r, NS_C, a,
                    (int)r, a, (int)r, 0.0f, b, (int)r);
        for (int64_t i = 0; i < r * r; i++)
            b[i] += NS_B * a[i];
        memcpy(y, x, (size_t)(r * c) * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)c, (int)r, 1.0f, b,
                    (int)r, x, (int)c, NS_A, y, (int)c);
        float *t = x;
        x = y;
        y = t;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            out[i * cols + j] = x[tr ? j * c + i : i * c + j];
    free(block);
    return LACT_OK;
}

lact_status lact_cpu_newton_schulz(lact_ctx *ctx, lact_tensor *out, const lact_tensor *g,
                                   int steps) {
    return ns_run(out->data, g->data, g->shape[0], g->shape[1], steps, "newton_schulz");
}

lact_status lact_cpu_muon_step(lact_ctx *ctx, lact_tensor *param, lact_tensor *m,
                               const lact_tensor *grad, const lact_muon_args *args) {
    int64_t rows = param->shape[0], cols = param->shape[1], n = rows * cols;
    float *pp = param->data, *pm = m->data;
    const float *pg = grad->data;
    float mu = args->momentum;
    float *u = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!u) return lact_fail(LACT_E_NOMEM, "muon: cannot allocate the update buffer");
    for (int64_t i = 0; i < n; i++) {
        pm[i] = mu * pm[i] + pg[i];
        u[i] = args->nesterov ? pg[i] + mu * pm[i] : pm[i];
    }
    lact_status st = ns_run(u, u, rows, cols, args->ns_steps, "muon");
    if (st == LACT_OK) {
        double ratio = cols > 0 ? (double)rows / (double)cols : 1.0;
        float step = args->lr * (float)sqrt(ratio > 1.0 ? ratio : 1.0);
        float decay = 1.0f - args->lr * args->weight_decay;
        for (int64_t i = 0; i < n; i++)
            pp[i] = pp[i] * decay - step * u[i];
    }
    free(u);
    return st;
}
