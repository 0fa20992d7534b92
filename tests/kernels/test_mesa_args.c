/* The mesa op's argument checks: values out of range (g > 0, beta outside
 * [0, 1], lambda <= 0, NaN), wrong shapes and options each fail with a line
 * that names the tensor; the valid call they start from passes. Also the
 * table row: found, planned, and equal to the public call. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/mesa.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

enum { B = 2, H = 3, L = 7, D = 4 };

typedef struct margs {
    lact_tensor q, k, v, g, beta, lam, o, d_o;
    lact_tensor dq, dk, dv, dg, dbeta, dlam;
} margs;

static lact_tensor make(int ndim, const int64_t *shape, float lo, float hi, uint64_t stream) {
    lact_tensor t = {0};
    if (lact_tensor_alloc(&t, LACT_F32, LACT_CPU, ndim, shape) != LACT_OK) return t;
    lact_rng rng = lact_rng_make(99, stream);
    float *p = t.data;
    for (int64_t i = 0; i < lact_tensor_numel(&t); i++)
        p[i] = lo + (hi - lo) * lact_rng_uniform(&rng);
    return t;
}

static void margs_init(margs *a) {
    int64_t s4[4] = {B, H, L, D}, s3[3] = {B, H, L}, hd[2] = {H, D};
    a->q = make(4, s4, -1, 1, 1);
    a->k = make(4, s4, -1, 1, 2);
    a->v = make(4, s4, -1, 1, 3);
    a->g = make(3, s3, -2, -0.01f, 4);
    a->beta = make(3, s3, 0.1f, 0.9f, 5);
    a->lam = make(2, hd, 0.5f, 1.5f, 6);
    a->o = make(4, s4, 0, 0, 7);
    a->d_o = make(4, s4, -1, 1, 8);
    a->dq = make(4, s4, 0, 0, 9);
    a->dk = make(4, s4, 0, 0, 9);
    a->dv = make(4, s4, 0, 0, 9);
    a->dg = make(3, s3, 0, 0, 9);
    a->dbeta = make(3, s3, 0, 0, 9);
    a->dlam = make(2, hd, 0, 0, 9);
}

static void margs_free(margs *a) {
    lact_tensor *all[] = {&a->q,   &a->k,  &a->v,  &a->g,  &a->beta, &a->lam,   &a->o,
                          &a->d_o, &a->dq, &a->dk, &a->dv, &a->dg,   &a->dbeta, &a->dlam};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        lact_tensor_free(all[i]);
}

static lact_status fwd(lact_ctx *ctx, margs *a, const lact_mesa_args *args) {
    return lact_mesa_forward(ctx, &a->o, NULL, NULL, NULL, &a->q, &a->k, &a->v, &a->g, &a->beta,
                             &a->lam, args);
}

static lact_status bwd(lact_ctx *ctx, margs *a, const lact_mesa_args *args) {
    return lact_mesa_backward(ctx, &a->dq, &a->dk, &a->dv, &a->dg, &a->dbeta, &a->dlam, &a->d_o,
                              &a->q, &a->k, &a->v, &a->g, &a->beta, &a->lam, args);
}

/* The last error names what it should. */
#define CHECK_MSG_HAS(needle)                                                                      \
    CHECK_MSG(strstr(lact_errmsg(), needle) != NULL, "message \"%s\" lacks \"%s\"", lact_errmsg(), \
              needle)

/* Sets element i of t to x, expects forward and backward to fail naming
 * `needle`, then restores it. */
static void bad_value(lact_ctx *ctx, margs *a, lact_tensor *t, int64_t i, float x,
                      const char *needle) {
    float *p = t->data, keep = p[i];
    p[i] = x;
    CHECK_FAILS(fwd(ctx, a, NULL), LACT_E_ARG);
    CHECK_MSG_HAS(needle);
    CHECK_FAILS(bwd(ctx, a, NULL), LACT_E_ARG);
    CHECK_MSG_HAS(needle);
    p[i] = keep;
}

/* Replaces t by a tensor of another shape, expects a failure naming
 * `needle`, then puts t back. */
static void bad_shape(lact_ctx *ctx, margs *a, lact_tensor *t, int ndim, const int64_t *shape,
                      bool backward, const char *needle) {
    lact_tensor keep = *t;
    *t = make(ndim, shape, 0.1f, 0.2f, 11);
    CHECK_FAILS(backward ? bwd(ctx, a, NULL) : fwd(ctx, a, NULL), LACT_E_ARG);
    CHECK_MSG_HAS(needle);
    lact_tensor_free(t);
    *t = keep;
}

static void test_bad_inputs(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    margs a;
    margs_init(&a);
    CHECK_OK(fwd(&ctx, &a, NULL));
    CHECK_OK(bwd(&ctx, &a, NULL));

    bad_value(&ctx, &a, &a.g, 3, 0.25f, "g[3]");
    bad_value(&ctx, &a, &a.g, 0, NAN, "g[0]");
    bad_value(&ctx, &a, &a.g, 5, -INFINITY, "g[5]");
    bad_value(&ctx, &a, &a.beta, 2, 1.5f, "beta[2]");
    bad_value(&ctx, &a, &a.beta, 1, -0.1f, "beta[1]");
    bad_value(&ctx, &a, &a.lam, 0, 0.0f, "lambda[0]");
    bad_value(&ctx, &a, &a.lam, 7, -1.0f, "lambda[7]");

    int64_t k_bad[4] = {B, H, L, D + 1}, g_bad[3] = {B, H, L + 1}, lam_bad[2] = {H, D + 1};
    int64_t q3[3] = {B, H, D}, st_bad[4] = {B, H, D, D + 1};
    bad_shape(&ctx, &a, &a.k, 4, k_bad, false, "k has shape");
    bad_shape(&ctx, &a, &a.v, 4, k_bad, false, "v has shape");
    bad_shape(&ctx, &a, &a.g, 3, g_bad, false, "g has shape");
    bad_shape(&ctx, &a, &a.beta, 3, g_bad, false, "beta has shape");
    bad_shape(&ctx, &a, &a.lam, 2, lam_bad, false, "lambda has shape");
    bad_shape(&ctx, &a, &a.q, 3, q3, false, "q has shape");
    bad_shape(&ctx, &a, &a.o, 4, k_bad, false, "o has shape");
    bad_shape(&ctx, &a, &a.d_o, 4, k_bad, true, "d_o has shape");
    bad_shape(&ctx, &a, &a.dlam, 2, lam_bad, true, "d_lambda has shape");
    bad_shape(&ctx, &a, &a.dg, 3, g_bad, true, "d_g has shape");

    lact_mesa_args zero_chunk = {0, 30}, zero_steps = {64, 0};
    CHECK_FAILS(fwd(&ctx, &a, &zero_chunk), LACT_E_ARG);
    CHECK_MSG_HAS("chunk");
    CHECK_FAILS(bwd(&ctx, &a, &zero_steps), LACT_E_ARG);
    CHECK_MSG_HAS("cg_steps");
    CHECK_FAILS(lact_mesa_forward(&ctx, NULL, NULL, NULL, NULL, &a.q, &a.k, &a.v, &a.g, &a.beta,
                                  &a.lam, NULL),
                LACT_E_ARG);
    CHECK_FAILS(lact_mesa_forward(NULL, &a.o, NULL, NULL, NULL, &a.q, &a.k, &a.v, &a.g, &a.beta,
                                  &a.lam, NULL),
                LACT_E_ARG);

    /* Decode: a state of the wrong shape, and a positive log decay. */
    int64_t s3[3] = {B, H, D}, s2[2] = {B, H}, hd[2] = {H, D}, st[4] = {B, H, D, D};
    lact_tensor q = make(3, s3, -1, 1, 20), g = make(2, s2, -1, -0.1f, 21),
                beta = make(2, s2, 0.2f, 0.8f, 22), lam = make(2, hd, 0.5f, 1, 23),
                o = make(3, s3, 0, 0, 24), hs = make(4, st, 0, 0, 25), gs = make(4, st, 0, 0, 26),
                bad = make(4, st_bad, 0, 0, 27);
    CHECK_OK(lact_mesa_decode(&ctx, &o, &hs, &gs, &q, &q, &q, &g, &beta, &lam, NULL));
    CHECK_FAILS(lact_mesa_decode(&ctx, &o, &bad, &gs, &q, &q, &q, &g, &beta, &lam, NULL),
                LACT_E_ARG);
    CHECK_MSG_HAS("h_state has shape");
    ((float *)g.data)[1] = 1.0f;
    CHECK_FAILS(lact_mesa_decode(&ctx, &o, &hs, &gs, &q, &q, &q, &g, &beta, &lam, NULL),
                LACT_E_ARG);
    CHECK_MSG_HAS("g[1]");
    lact_tensor *dec[] = {&q, &g, &beta, &lam, &o, &hs, &gs, &bad};
    for (int i = 0; i < 8; i++)
        lact_tensor_free(dec[i]);
    margs_free(&a);
    lact_ctx_free(&ctx);
}

/* The row plans o like q and runs the public forward with its params. */
static void test_table_row(void) {
    const lact_op_def *op = lact_op_find("mesa");
    CHECK(op != NULL);
    if (!op) return;
    CHECK(lact_op_n_inputs(op) == 6 && lact_op_n_outputs(op) == 1);
    CHECK(op->grad_inputs == 0x3f && op->param_inputs == 0x20);
    double p[LACT_OP_MAX_PARAMS];
    lact_op_default_params(op, p);
    CHECK(p[lact_op_param_index(op, "chunk")] == LACT_MESA_CHUNK);
    CHECK(p[lact_op_param_index(op, "cg_steps")] == LACT_MESA_CG_STEPS);
    lact_tensor in[LACT_OP_MAX_IO], plan[LACT_OP_MAX_IO];
    memset(in, 0, sizeof in);
    memset(plan, 0, sizeof plan);
    CHECK(op->make_case(1, 5, in, p));
    CHECK_OK(op->plan(in, p, plan));
    CHECK(lact_tensor_same_shape(&plan[0], &in[0]));
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    lact_tensor o_row = {0}, o_api = {0};
    CHECK_OK(lact_tensor_alloc(&o_row, LACT_F32, LACT_CPU, 4, in[0].shape));
    CHECK_OK(lact_tensor_alloc(&o_api, LACT_F32, LACT_CPU, 4, in[0].shape));
    CHECK_OK(op->forward(&ctx, &o_row, in, p));
    lact_mesa_args args = {(int64_t)p[0], (int)p[1]};
    CHECK_OK(lact_mesa_forward(&ctx, &o_api, NULL, NULL, NULL, &in[0], &in[1], &in[2], &in[3],
                               &in[4], &in[5], &args));
    CHECK(o_row.data && o_api.data &&
          memcmp(o_row.data, o_api.data, lact_tensor_nbytes(&o_row)) == 0);
    /* The case honours the ranges the op checks. */
    const float *g = in[3].data, *beta = in[4].data;
    bool in_range = true;
    for (int64_t i = 0; i < lact_tensor_numel(&in[3]); i++)
        in_range = in_range && g[i] < 0 && beta[i] > 0 && beta[i] < 1;
    CHECK(in_range);
    p[0] = 0;
    CHECK_FAILS(op->plan(in, p, plan), LACT_E_ARG);
    lact_tensor_free(&o_row);
    lact_tensor_free(&o_api);
    for (int i = 0; i < LACT_OP_MAX_IO; i++)
        lact_tensor_free(&in[i]);
    lact_ctx_free(&ctx);
}

int main(void) {
    test_bad_inputs();
    test_table_row();
    return check_summary("kernels_mesa_args");
}
