/* The attention op against a naive double-precision softmax(q kᵀ) v built
 * from an explicit mask matrix (forward, lse and every gradient) on all the
 * table's cases, and masks that must coincide. Decode and argument errors:
 * test_attention_decode.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/attention.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

#define SEED 777u
#define TOL 1e-5

/* ---- naive reference ------------------------------------------------------- */

/* The mask as the spec writes it, for query position p and key j. */
static bool keeps(const lact_attn_args *a, int64_t p, int64_t j) {
    switch (a->mask) {
    case LACT_ATTN_FULL:
        return true;
    case LACT_ATTN_CAUSAL:
        return j <= p;
    case LACT_ATTN_WINDOW:
        return p - a->window < j && j <= p;
    case LACT_ATTN_BLOCK_CAUSAL:
        return j / a->block <= p / a->block;
    }
    return false;
}

static double sigm(double x) {
    return 1.0 / (1.0 + exp(-x));
}

typedef struct naive_out {
    double *y, *lse, *dq, *dk, *dv, *dg;
} naive_out;

static void naive_free(naive_out *o) {
    free(o->y), free(o->lse), free(o->dq), free(o->dk), free(o->dv), free(o->dg);
}

/* Forward and backward of Σ dy ⊙ y in double, one (batch, sequence, head)
 * at a time, with full score and probability matrices. */
static void naive_attention(naive_out *o, const lact_tensor *tq, const lact_tensor *tk,
                            const lact_tensor *tv, const lact_tensor *tg, const lact_tensor *tcu,
                            const float *dy, const lact_attn_args *a) {
    int64_t nb = tq->shape[0], nh = tq->shape[1], lq = tq->shape[2], d = tq->shape[3];
    int64_t nkv = tk->shape[1], lk = tk->shape[2], gd = tg ? tg->shape[3] : 0;
    const float *q = tq->data, *k = tk->data, *v = tv->data, *g = tg ? tg->data : NULL;
    const int32_t *cu = tcu ? tcu->data : NULL;
    int64_t n_seq = cu ? tcu->shape[0] - 1 : 1;
    double scale = a->scale != 0.0f ? a->scale : 1.0 / sqrt((double)d);
    o->y = calloc((size_t)(nb * nh * lq * d), sizeof(double));
    o->lse = calloc((size_t)(nb * nh * lq), sizeof(double));
    o->dq = calloc((size_t)(nb * nh * lq * d), sizeof(double));
    o->dk = calloc((size_t)(nb * nkv * lk * d), sizeof(double));
    o->dv = calloc((size_t)(nb * nkv * lk * d), sizeof(double));
    o->dg = calloc((size_t)(nb * nh * lq * (gd ? gd : 1)), sizeof(double));
    for (int64_t b = 0; b < nb; b++)
        for (int64_t s = 0; s < n_seq; s++)
            for (int64_t h = 0; h < nh; h++) {
                int64_t q0 = cu ? cu[s] : 0, nq = cu ? cu[s + 1] - cu[s] : lq;
                int64_t k0 = q0, nk = cu ? nq : lk, hk = h / (nh / nkv);
                double *p = calloc((size_t)(nq * nk + 1), sizeof(double));
                double *dp = calloc((size_t)(nq * nk + 1), sizeof(double));
                double *ob = calloc((size_t)(nq * d + 1), sizeof(double));
                double *dob = calloc((size_t)(nq * d + 1), sizeof(double));
                for (int64_t i = 0; i < nq; i++) {
                    int64_t row = (b * nh + h) * lq + q0 + i, pos = nk - nq + i;
                    double mx = -INFINITY, sum = 0.0;
                    for (int64_t j = 0; j < nk; j++) {
                        const float *kj = k + ((b * nkv + hk) * lk + k0 + j) * d;
                        double sc = 0.0;
                        for (int64_t c = 0; c < d; c++)
                            sc += (double)q[row * d + c] * kj[c];
                        p[i * nk + j] = keeps(a, pos, j) ? scale * sc : -INFINITY;
                        mx = fmax(mx, p[i * nk + j]);
                    }
                    for (int64_t j = 0; j < nk; j++)
                        sum += exp(p[i * nk + j] - mx);
                    o->lse[row] = mx + log(sum);
                    for (int64_t j = 0; j < nk; j++)
                        p[i * nk + j] = exp(p[i * nk + j] - o->lse[row]);
                    for (int64_t c = 0; c < d; c++) {
                        double acc = 0.0, gate = g ? sigm(g[row * gd + (gd == 1 ? 0 : c)]) : 1.0;
                        for (int64_t j = 0; j < nk; j++)
                            acc += p[i * nk + j] * v[((b * nkv + hk) * lk + k0 + j) * d + c];
                        ob[i * d + c] = acc;
                        o->y[row * d + c] = acc * gate;
                        dob[i * d + c] = dy[row * d + c] * gate;
                        double dgc = dy[row * d + c] * acc * gate * (1.0 - gate);
                        if (g) o->dg[row * gd + (gd == 1 ? 0 : c)] += dgc;
                    }
                    /* dP = dO vᵀ; dS = P ⊙ (dP − Σ_j P dP). */
                    double rs = 0.0;
                    for (int64_t j = 0; j < nk; j++) {
                        double acc = 0.0;
                        for (int64_t c = 0; c < d; c++)
                            acc += dob[i * d + c] * v[((b * nkv + hk) * lk + k0 + j) * d + c];
                        dp[i * nk + j] = acc;
                        rs += acc * p[i * nk + j];
                    }
                    for (int64_t j = 0; j < nk; j++) {
                        double ds = p[i * nk + j] * (dp[i * nk + j] - rs);
                        int64_t kr = ((b * nkv + hk) * lk + k0 + j) * d;
                        for (int64_t c = 0; c < d; c++) {
                            o->dq[row * d + c] += scale * ds * k[kr + c];
                            o->dk[kr + c] += scale * ds * q[row * d + c];
                            o->dv[kr + c] += p[i * nk + j] * dob[i * d + c];
                        }
                    }
                }
                free(p), free(dp), free(ob), free(dob);
            }
}

/* ‖got − ref‖ / ‖ref‖. */
static double rel(const float *got, const double *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)got[i] - ref[i];
        num += e * e;
        den += ref[i] * ref[i];
        if (isnan(got[i])) return INFINITY;
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static lact_attn_args args_of(const double *p) {
    return (lact_attn_args){(lact_attn_mask)(int)p[0], (int64_t)p[1], (int64_t)p[2], (float)p[3]};
}

static lact_tensor tensor_like(const lact_tensor *t, lact_dtype dt, int ndim) {
    lact_tensor out = {0};
    CHECK_OK(lact_tensor_alloc(&out, dt, LACT_CPU, ndim, t->shape));
    return out;
}

/* Every case of the table row against the naive reference. */
static void check_cases(lact_ctx *ctx) {
    const lact_op_def *op = lact_op_find("attention");
    CHECK(op != NULL);
    if (!op) return;
    int n_cases = 0;
    for (int c = 0;; c++) {
        lact_tensor in[LACT_OP_MAX_IO];
        double p[LACT_OP_MAX_PARAMS];
        memset(in, 0, sizeof in);
        lact_op_default_params(op, p);
        if (!op->make_case(c, SEED, in, p)) break;
        n_cases++;
        lact_attn_args a = args_of(p);
        const lact_tensor *q = &in[0], *k = &in[1], *v = &in[2];
        const lact_tensor *g = in[3].data ? &in[3] : NULL, *cu = in[4].data ? &in[4] : NULL;
        lact_tensor y = tensor_like(q, LACT_F32, 4), lse = tensor_like(q, LACT_F32, 3);
        lact_tensor dy = tensor_like(q, LACT_F32, 4), dq = tensor_like(q, LACT_F32, 4);
        lact_tensor dk = tensor_like(k, LACT_F32, 4), dv = tensor_like(v, LACT_F32, 4);
        lact_tensor dg = {0}, y2 = tensor_like(q, LACT_F32, 4);
        if (g) dg = tensor_like(g, LACT_F32, 4);
        lact_rng rng = lact_rng_make(SEED, 50 + (uint64_t)c);
        for (int64_t i = 0; i < lact_tensor_numel(&dy); i++)
            ((float *)dy.data)[i] = lact_rng_normal(&rng);
        CHECK_OK(lact_attention_forward(ctx, &y, &lse, q, k, v, g, cu, &a));
        CHECK_OK(lact_attention_backward(ctx, &dq, &dk, &dv, g ? &dg : NULL, &dy, q, k, v, g, cu,
                                         &y, &lse, &a));
        naive_out ref = {0};
        naive_attention(&ref, q, k, v, g, cu, dy.data, &a);
        double e[6] = {
            rel(y.data, ref.y, lact_tensor_numel(&y)),
            rel(lse.data, ref.lse, lact_tensor_numel(&lse)),
            rel(dq.data, ref.dq, lact_tensor_numel(&dq)),
            rel(dk.data, ref.dk, lact_tensor_numel(&dk)),
            rel(dv.data, ref.dv, lact_tensor_numel(&dv)),
            g ? rel(dg.data, ref.dg, lact_tensor_numel(&dg)) : 0.0,
        };
        static const char *names[6] = {"y", "lse", "d_q", "d_k", "d_v", "d_g"};
        double worst = 0.0;
        for (int j = 0; j < 6; j++) {
            CHECK_MSG(e[j] <= TOL, "case %d (mask %d): %s rel err %.3g vs naive", c, (int)a.mask,
                      names[j], e[j]);
            worst = fmax(worst, e[j]);
        }
        printf("attention case %2d: mask %d, q %lldx%lldx%lldx%lld, kv heads %lld, Lk %lld, "
               "gate %lld, packed %s: worst rel err %.2e\n",
               c, (int)a.mask, (long long)q->shape[0], (long long)q->shape[1],
               (long long)q->shape[2], (long long)q->shape[3], (long long)k->shape[1],
               (long long)k->shape[2], g ? (long long)g->shape[3] : 0LL, cu ? "yes" : "no", worst);
        /* Without lse the forward gives the same y. */
        CHECK_OK(lact_attention_forward(ctx, &y2, NULL, q, k, v, g, cu, &a));
        CHECK(memcmp(y.data, y2.data, lact_tensor_nbytes(&y)) == 0);
        naive_free(&ref);
        lact_tensor *all[] = {&y, &lse, &dy, &dq, &dk, &dv, &dg, &y2};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            lact_tensor_free(all[j]);
        for (int j = 0; j < LACT_OP_MAX_IO; j++)
            lact_tensor_free(&in[j]);
    }
    CHECK(n_cases >= 10);
}

/* A window at least as long as the sequence is the causal mask, and blocks
 * of one token are too: the same numbers. */
static void check_equivalent_masks(lact_ctx *ctx) {
    int64_t s[4] = {1, 2, 19, 8};
    lact_tensor q = {0}, k = {0}, v = {0};
    CHECK_OK(lact_tensor_alloc(&q, LACT_F32, LACT_CPU, 4, s));
    CHECK_OK(lact_tensor_alloc(&k, LACT_F32, LACT_CPU, 4, s));
    CHECK_OK(lact_tensor_alloc(&v, LACT_F32, LACT_CPU, 4, s));
    lact_rng rng = lact_rng_make(SEED, 9);
    lact_tensor *t3[] = {&q, &k, &v};
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < lact_tensor_numel(t3[t]); i++)
            ((float *)t3[t]->data)[i] = lact_rng_normal(&rng);
    lact_tensor y[3];
    lact_attn_args a[3] = {{LACT_ATTN_CAUSAL, 0, 0, 0},
                           {LACT_ATTN_WINDOW, 19, 0, 0},
                           {LACT_ATTN_BLOCK_CAUSAL, 0, 1, 0}};
    for (int m = 0; m < 3; m++) {
        y[m] = tensor_like(&q, LACT_F32, 4);
        CHECK_OK(lact_attention_forward(ctx, &y[m], NULL, &q, &k, &v, NULL, NULL, &a[m]));
    }
    CHECK(memcmp(y[0].data, y[1].data, lact_tensor_nbytes(&q)) == 0);
    CHECK(memcmp(y[0].data, y[2].data, lact_tensor_nbytes(&q)) == 0);
    /* A window of 3 differs from causal from the 4th token on. */
    a[1].window = 3;
    CHECK_OK(lact_attention_forward(ctx, &y[1], NULL, &q, &k, &v, NULL, NULL, &a[1]));
    CHECK(memcmp(y[0].data, y[1].data, 3 * 8 * sizeof(float)) == 0);
    CHECK(memcmp(y[0].data, y[1].data, lact_tensor_nbytes(&q)) != 0);
    for (int m = 0; m < 3; m++)
        lact_tensor_free(&y[m]);
    lact_tensor_free(&q), lact_tensor_free(&k), lact_tensor_free(&v);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    check_cases(&ctx);
    check_equivalent_masks(&ctx);
    lact_ctx_free(&ctx);
    return check_summary("kernels_attention");
}
