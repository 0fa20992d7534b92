/* The CPU ops that fuse a chain of others (the packed SwiGLU, the LaCT
 * gates, the token-order RMSNorm, the headprep backward that accumulates)
 * against that chain: the same bits where the chain's arithmetic is kept,
 * and one-line errors for shapes that do not fit. */
#include <stdbool.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/headprep.h"
#include "kernels/kernels.h"
#include "tests/support/check.h"
#include "tests/support/tensors.h"

static lact_ctx ctx;

static float *F(const lact_tensor *t) {
    return t->data;
}

/* The packed gate on [a | b] rows gives the bits of the gate on a and b
 * apart, forward and backward; a last dim that is not twice out's fails. */
static void test_swiglu_packed(void) {
    lact_rng rng = lact_rng_make(4321, 10);
    int64_t R = 5, Fw = 7, sab[2] = {R, 2 * Fw}, s1[2] = {R, Fw};
    lact_tensor ab = test_randn(&rng, 2, sab, 2.0f), d = test_randn(&rng, 2, s1, 1.0f);
    lact_tensor a = test_zeros(2, s1, LACT_F32), b = test_zeros(2, s1, LACT_F32);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < Fw; c++) {
            F(&a)[r * Fw + c] = F(&ab)[r * 2 * Fw + c];
            F(&b)[r * Fw + c] = F(&ab)[r * 2 * Fw + Fw + c];
        }
    lact_tensor y1 = test_zeros(2, s1, LACT_F32), y2 = test_zeros(2, s1, LACT_F32);
    lact_tensor da = test_zeros(2, s1, LACT_F32), db = test_zeros(2, s1, LACT_F32);
    lact_tensor dab = test_zeros(2, sab, LACT_F32);
    CHECK_OK(lact_swiglu_forward(&ctx, &y1, &a, &b));
    CHECK_OK(lact_swiglu_packed_forward(&ctx, &y2, &ab));
    CHECK(!memcmp(y1.data, y2.data, lact_tensor_nbytes(&y1)));
    CHECK_OK(lact_swiglu_backward(&ctx, &da, &db, &d, &a, &b));
    CHECK_OK(lact_swiglu_packed_backward(&ctx, &dab, &d, &ab));
    bool same = true;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < Fw; c++)
            same = same && F(&dab)[r * 2 * Fw + c] == F(&da)[r * Fw + c] &&
                   F(&dab)[r * 2 * Fw + Fw + c] == F(&db)[r * Fw + c];
    CHECK_MSG(same, "swiglu_packed backward differs from swiglu's on the halves");
    CHECK_FAILS(lact_swiglu_packed_forward(&ctx, &y1, &a), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "last dim doubled") != NULL);
    CHECK_FAILS(lact_swiglu_packed_backward(&ctx, &y1, &d, &ab), LACT_E_ARG);
    lact_tensor *all[] = {&ab, &d, &a, &b, &y1, &y2, &da, &db, &dab};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lact_tensor_free(all[i]);
}

/* The gates op against the ops it replaces: the bias add, the two layout
 * changes and softplus / sigmoid give the same bits forward; backward, the
 * gradient in z's layout is the same and the bias sums are close (the op
 * adds in double). A bias without momentum is refused. */
static void test_gates(void) {
    lact_rng rng = lact_rng_make(4321, 9);
    const int64_t B = 2, L = 5, H = 3, N = B * H, G = 4;
    int64_t zs[3] = {B, L, G * H}, gs[3] = {G, N, L}, ls[3] = {3, N, L}, ms[2] = {N, L};
    int64_t gh = G * H, h3 = 3 * H, h1 = H;
    lact_tensor z = test_randn(&rng, 3, zs, 2.0f), blr = test_randn(&rng, 1, &h3, 1.0f);
    lact_tensor bm = test_randn(&rng, 1, &h1, 1.0f), ball = test_zeros(1, &gh, LACT_F32);
    memcpy(F(&ball), F(&blr), sizeof(float) * 3 * H);
    memcpy(F(&ball) + 3 * H, F(&bm), sizeof(float) * H);
    lact_tensor zg = test_zeros(3, gs, LACT_F32), lr = test_zeros(3, ls, LACT_F32),
                mom = test_zeros(2, ms, LACT_F32);
    CHECK_OK(lact_gates_forward(&ctx, &lr, &mom, &zg, &z, &blr, &bm, -1.5f));
    /* the reference: [B, L, GH] + b -> [B, GH, L] -> [G, B·H, L] */
    lact_tensor zb = test_zeros(3, zs, LACT_F32),
                t = test_zeros(4, (int64_t[]){B, G * H, L, 1}, LACT_F32);
    lact_tensor zr = test_zeros(4, (int64_t[]){1, G, B, H * L}, LACT_F32);
    CHECK_OK(lact_add_forward(&ctx, &zb, &z, &ball));
    lact_tensor zb4 = lact_tensor_view(zb.data, LACT_F32, LACT_CPU, 4, (int64_t[]){B, L, G * H, 1});
    CHECK_OK(lact_permute_forward(&ctx, &t, &zb4));
    lact_tensor t4 = lact_tensor_view(t.data, LACT_F32, LACT_CPU, 4, (int64_t[]){1, B, G, H * L});
    CHECK_OK(lact_permute_forward(&ctx, &zr, &t4));
    CHECK(!memcmp(zr.data, zg.data, lact_tensor_nbytes(&zg)));
    lact_tensor zl = lact_tensor_view(zr.data, LACT_F32, LACT_CPU, 3, ls),
                lr2 = test_zeros(3, ls, LACT_F32);
    lact_tensor zm = lact_tensor_view(F(&zr) + 3 * N * L, LACT_F32, LACT_CPU, 2, ms);
    lact_tensor mom2 = test_zeros(2, ms, LACT_F32);
    CHECK_OK(lact_softplus_forward(&ctx, &lr2, &zl, -1.5f));
    CHECK_OK(lact_sigmoid_forward(&ctx, &mom2, &zm));
    CHECK(!memcmp(lr.data, lr2.data, lact_tensor_nbytes(&lr)));
    CHECK(!memcmp(mom.data, mom2.data, lact_tensor_nbytes(&mom)));

    lact_tensor dlr = test_randn(&rng, 3, ls, 1.0f), dm = test_randn(&rng, 2, ms, 1.0f);
    lact_tensor dz = test_zeros(3, zs, LACT_F32), dblr = test_zeros(1, &h3, LACT_F32),
                dbm = test_zeros(1, &h1, LACT_F32);
    CHECK_OK(lact_gates_backward(&ctx, &dz, &dblr, &dbm, &dlr, &dm, &zg, &mom, -1.5f));
    lact_tensor dg = test_zeros(3, gs, LACT_F32), dzr = test_zeros(3, zs, LACT_F32);
    lact_tensor dgl = lact_tensor_view(dg.data, LACT_F32, LACT_CPU, 3, ls);
    lact_tensor dgm = lact_tensor_view(F(&dg) + 3 * N * L, LACT_F32, LACT_CPU, 2, ms);
    CHECK_OK(lact_softplus_backward(&ctx, &dgl, &dlr, &zl, -1.5f));
    CHECK_OK(lact_sigmoid_backward(&ctx, &dgm, &dm, &mom));
    lact_tensor dg4 = lact_tensor_view(dg.data, LACT_F32, LACT_CPU, 4, (int64_t[]){1, G, B, H * L});
    lact_tensor t2 = lact_tensor_view(t.data, LACT_F32, LACT_CPU, 4, (int64_t[]){1, B, G, H * L});
    CHECK_OK(lact_permute_forward(&ctx, &t2, &dg4));
    lact_tensor t3 = lact_tensor_view(t.data, LACT_F32, LACT_CPU, 4, (int64_t[]){B, G * H, L, 1});
    lact_tensor dzr4 =
        lact_tensor_view(dzr.data, LACT_F32, LACT_CPU, 4, (int64_t[]){B, L, G * H, 1});
    CHECK_OK(lact_permute_forward(&ctx, &dzr4, &t3));
    CHECK(!memcmp(dz.data, dzr.data, lact_tensor_nbytes(&dz)));
    for (int64_t c = 0; c < G * H; c++) {
        double want = 0;
        for (int64_t r = 0; r < B * L; r++)
            want += F(&dzr)[r * G * H + c];
        CHECK_NEAR(c < 3 * H ? F(&dblr)[c] : F(&dbm)[c - 3 * H], want, 1e-5);
    }
    /* a momentum bias with three gates, or none with four */
    CHECK_FAILS(lact_gates_forward(&ctx, &lr, NULL, &zg, &z, &blr, &bm, -1.5f), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "mom") != NULL);
    lact_tensor *all[] = {&z,   &blr,  &bm,  &ball, &zg, &lr,   &mom, &zb, &t,  &zr,
                          &lr2, &mom2, &dlr, &dm,   &dz, &dblr, &dbm, &dg, &dzr};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lact_tensor_free(all[i]);
}

/* The norm of [B, H, L, d] rows written as [B, L, H, d]: the add and the
 * permute's bits; an out in the heads' own layout is refused. */
static void test_rmsnorm_heads(void) {
    lact_rng rng = lact_rng_make(4321, 8);
    int64_t hs[4] = {2, 3, 4, 5}, tok[4] = {2, 4, 3, 5}, nr = 24, cw = 5;
    lact_tensor hx = test_randn(&rng, 4, hs, 1.0f), hr = test_randn(&rng, 4, hs, 1.0f);
    lact_tensor hw = test_randn(&rng, 1, &cw, 1.0f), st = test_zeros(1, &nr, LACT_F32);
    lact_tensor y1 = test_zeros(4, hs, LACT_F32), y2 = test_zeros(4, tok, LACT_F32);
    lact_tensor y3 = test_zeros(4, tok, LACT_F32);
    CHECK_OK(lact_rmsnorm_forward_add(&ctx, &y1, &st, &hx, &hw, 1e-6f, &hr));
    CHECK_OK(lact_permute_forward(&ctx, &y2, &y1));
    CHECK_OK(lact_rmsnorm_forward_heads(&ctx, &y3, &st, &hx, &hw, 1e-6f, &hr));
    CHECK(!memcmp(y2.data, y3.data, lact_tensor_nbytes(&y2)));
    CHECK_FAILS(lact_rmsnorm_forward_heads(&ctx, &y1, &st, &hx, &hw, 1e-6f, &hr), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "needs [B, L, H, d]") != NULL);
    lact_tensor *all[] = {&hx, &hr, &hw, &st, &y1, &y2, &y3};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lact_tensor_free(all[i]);
}

/* headprep's _acc form adds the parameter gradients to what they hold:
 * the overwriting form's result plus the start, to the bit of an add. */
static void test_headprep_acc(void) {
    lact_rng rng = lact_rng_make(4321, 7);
    int64_t zsh[4] = {1, 5, 2, 4}, hsh[4] = {1, 2, 5, 4}, cv = 8;
    lact_tensor z = test_randn(&rng, 4, zsh, 2.0f), dq = test_randn(&rng, 4, hsh, 1.0f);
    lact_tensor sc = test_randn(&rng, 1, &cv, 1.0f), of = test_randn(&rng, 1, &cv, 1.0f);
    lact_tensor dz = test_zeros(4, zsh, LACT_F32), dxs = test_zeros(4, zsh, LACT_F32);
    lact_tensor ds = test_zeros(1, &cv, LACT_F32), dof = test_zeros(1, &cv, LACT_F32);
    lact_tensor as = test_randn(&rng, 1, &cv, 1.0f), ao = test_randn(&rng, 1, &cv, 1.0f);
    lact_tensor ws = test_zeros(1, &cv, LACT_F32), wo = test_zeros(1, &cv, LACT_F32);
    CHECK_OK(lact_headprep_backward(&ctx, &dz, &ds, &dof, &dxs, &dq, NULL, &z, &sc, &of, 0, 100.0f,
                                    1e-6f));
    CHECK_OK(lact_add_forward(&ctx, &ws, &as, &ds));
    CHECK_OK(lact_add_forward(&ctx, &wo, &ao, &dof));
    CHECK_OK(lact_headprep_backward_acc(&ctx, &dz, &as, &ao, &dxs, &dq, NULL, &z, &sc, &of, 0,
                                        100.0f, 1e-6f));
    CHECK(!memcmp(as.data, ws.data, lact_tensor_nbytes(&ws)));
    CHECK(!memcmp(ao.data, wo.data, lact_tensor_nbytes(&wo)));
    lact_tensor *all[] = {&z, &dq, &sc, &of, &dz, &dxs, &ds, &dof, &as, &ao, &ws, &wo};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        lact_tensor_free(all[i]);
}

int main(void) {
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_swiglu_packed();
    test_gates();
    test_rmsnorm_heads();
    test_headprep_acc();
    lact_ctx_free(&ctx);
    return check_summary("kernels_cpu_fused_ops");
}
