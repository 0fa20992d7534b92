/* The CUDA mesa op against the CPU reference at larger shapes than the op
 * table's: several chunks, lengths that are not a multiple of the chunk,
 * head dims 40 to 128. F32 runs the generic kernels (fp32 throughout);
 * BF16 runs the generic kernels, each tensor-core stage alone and all of
 * them (the public op's choice), against the CPU float reference on the
 * same bf16-rounded inputs. Checks the output, the solutions x, the final
 * states, the residual, every gradient (from the saved x and solving for
 * it again), decoding, and that a bad g is named. Device outputs are
 * poisoned with NaN first. Skips without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/cuda/mesa_cuda.h"
#include "kernels/mesa.h"
#include "tests/support/check.h"

#if LACT_WITH_CUDA
#include <cuda_runtime_api.h>

#define NIN 6 /* q k v g beta lambda */
#define F32_TOL 5e-5
#define BF16_TOL 1e-2

typedef struct mcase {
    int64_t b, h, len, d, chunk;
} mcase;

static const mcase cases[] = {
    {1, 2, 200, 64, 64},  /* 4 chunks, an 8-token tail */
    {2, 1, 300, 128, 64}, /* d 128, a 44-token tail */
    {1, 2, 129, 128, 32}, /* chunk 32, a 1-token tail */
    {1, 1, 100, 96, 48},  /* d 96 (padded to 128 on the tensor cores) */
    {1, 1, 70, 40, 64},   /* d 40 (padded to 64) */
};

static const char *const grad_names[NIN] = {"d_q", "d_k", "d_v", "d_g", "d_beta", "d_lambda"};

static lact_status device_sync(void) {
    if (cudaDeviceSynchronize() != cudaSuccess)
        return lact_fail(LACT_E_CUDA, "cudaDeviceSynchronize failed");
    return LACT_OK;
}

static void unit_rows(float *p, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++) {
        double n2 = 0;
        for (int64_t c = 0; c < d; c++)
            n2 += (double)p[r * d + c] * p[r * d + c];
        float inv = (float)(1.0 / sqrt(n2 > 0 ? n2 : 1.0));
        for (int64_t c = 0; c < d; c++)
            p[r * d + c] *= inv;
    }
}

static void round_bf16(lact_tensor *t) {
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = lact_bf16_to_f32(lact_f32_to_bf16(p[i]));
}

/* Inputs like the table row's: unit q, k; g = −softplus(n) − 0.01;
 * beta = sigmoid(n); lambda in [0.5, 1.5); d_o normal. */
static bool make_inputs(const mcase *c, uint64_t seed, lact_tensor *in, lact_tensor *d_o) {
    int64_t act[4] = {c->b, c->h, c->len, c->d}, tok[3] = {c->b, c->h, c->len};
    int64_t hd[2] = {c->h, c->d};
    lact_rng rng = lact_rng_make(seed, 77);
    for (int i = 0; i < NIN; i++) {
        int nd = i < 3 ? 4 : i < 5 ? 3 : 2;
        if (lact_tensor_alloc(&in[i], LACT_F32, LACT_CPU, nd,
                              i < 3   ? act
                              : i < 5 ? tok
                                      : hd) != LACT_OK)
            return false;
        float *p = in[i].data;
        for (int64_t e = 0; e < lact_tensor_numel(&in[i]); e++) {
            float n = lact_rng_normal(&rng);
            p[e] = i < 3    ? n
                   : i == 3 ? -(log1pf(expf(n)) + 0.01f)
                   : i == 4 ? 1.0f / (1.0f + expf(-n))
                            : 0.5f + lact_rng_uniform(&rng);
        }
    }
    unit_rows(in[0].data, c->b * c->h * c->len, c->d);
    unit_rows(in[1].data, c->b * c->h * c->len, c->d);
    if (lact_tensor_alloc(d_o, LACT_F32, LACT_CPU, 4, act) != LACT_OK) return false;
    for (int64_t e = 0; e < lact_tensor_numel(d_o); e++)
        ((float *)d_o->data)[e] = lact_rng_normal(&rng);
    return true;
}

/* ‖got − ref‖ / ‖ref‖ with got on any device in any float dtype; inf on
 * NaN or a failed copy. */
static double rel_err(const lact_tensor *got, const lact_tensor *ref) {
    lact_tensor g = {0};
    if (lact_tensor_clone(&g, got, LACT_F32, LACT_CPU) != LACT_OK) return INFINITY;
    const float *a = g.data, *b = ref->data;
    double num = 0, den = 0;
    bool bad = false;
    for (int64_t i = 0; i < lact_tensor_numel(ref); i++) {
        if (!isfinite(a[i])) bad = true;
        double df = (double)a[i] - b[i];
        num += df * df;
        den += (double)b[i] * b[i];
    }
    lact_tensor_free(&g);
    if (bad) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static lact_status alloc_poisoned(lact_tensor *t, lact_dtype dt, const lact_tensor *like) {
    LACT_TRY(lact_tensor_alloc(t, dt, LACT_CUDA, like->ndim, like->shape));
    size_t n = lact_tensor_nbytes(t);
    unsigned char *h = malloc(n);
    if (!h) return lact_fail(LACT_E_NOMEM, "out of host memory");
    memset(h, 0xFF, n);
    lact_status s = lact_mem_copy(t->data, LACT_CUDA, h, LACT_CPU, n);
    free(h);
    if (s == LACT_OK) s = device_sync();
    return s;
}

/* What the CPU reference gives for one set of inputs. */
typedef struct reference {
    lact_tensor o, x, h_last, g_last, grad[NIN];
    float residual;
} reference;

static void reference_free(reference *r) {
    lact_tensor_free(&r->o);
    lact_tensor_free(&r->x);
    lact_tensor_free(&r->h_last);
    lact_tensor_free(&r->g_last);
    for (int i = 0; i < NIN; i++)
        lact_tensor_free(&r->grad[i]);
}

static lact_status run_reference(lact_ctx *cpu, const mcase *c, const lact_tensor *in,
                                 const lact_tensor *d_o, reference *r) {
    lact_mesa_args a = {c->chunk, LACT_MESA_CG_STEPS};
    int64_t st[4] = {c->b, c->h, c->d, c->d};
    LACT_TRY(lact_tensor_alloc(&r->o, LACT_F32, LACT_CPU, 4, in[0].shape));
    LACT_TRY(lact_tensor_alloc(&r->x, LACT_F32, LACT_CPU, 4, in[0].shape));
    LACT_TRY(lact_tensor_alloc(&r->h_last, LACT_F32, LACT_CPU, 4, st));
    LACT_TRY(lact_tensor_alloc(&r->g_last, LACT_F32, LACT_CPU, 4, st));
    for (int i = 0; i < NIN; i++)
        LACT_TRY(lact_tensor_alloc(&r->grad[i], LACT_F32, LACT_CPU, in[i].ndim, in[i].shape));
    LACT_TRY(lact_mesa_forward_x(cpu, &r->o, &r->x, &r->h_last, &r->g_last, &r->residual, &in[0],
                                 &in[1], &in[2], &in[3], &in[4], &in[5], &a));
    return lact_mesa_backward(cpu, &r->grad[0], &r->grad[1], &r->grad[2], &r->grad[3], &r->grad[4],
                              &r->grad[5], d_o, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], &a);
}

static const char *impl_name(int impl) {
    switch (impl) {
    case LACT_MESA_IMPL_AUTO:
        return "auto";
    case LACT_MESA_IMPL_GENERIC:
        return "generic";
    case LACT_MESA_TC_SCAN:
        return "tc-scan";
    case LACT_MESA_TC_SOLVE:
        return "tc-solve";
    case LACT_MESA_TC_GRAD:
        return "tc-grad";
    default:
        return "?";
    }
}

/* Every gradient against the reference; returns the worst relative error
 * and names it. */
static double check_grads(const lact_tensor *grad, const reference *r, double tol, int ci,
                          const char *dtn, const char *what, const char **wname) {
    double worst = 0;
    *wname = "-";
    for (int i = 0; i < NIN; i++) {
        double e = rel_err(&grad[i], &r->grad[i]);
        CHECK_MSG(e <= tol, "case %d %s %s: %s rel err %.3g > %.3g", ci, dtn, what, grad_names[i],
                  e, tol);
        if (!(e <= worst)) worst = e, *wname = grad_names[i];
    }
    return worst;
}

/* One CUDA run (dtype dt, stages impl) against the reference r. AUTO goes
 * through the public op: the forward keeps x, the backward takes it, then
 * the plain backward solves again. The other choices call the CUDA entry
 * points (their backward solves again). */
static void run_cuda(lact_ctx *gpu, const mcase *c, int ci, const lact_tensor *in_h,
                     const lact_tensor *d_o_h, lact_dtype dt, int impl, const reference *r) {
    lact_tensor in[NIN], grad[NIN], o = {0}, x = {0}, hl = {0}, gl = {0}, d_o = {0};
    memset(in, 0, sizeof in);
    memset(grad, 0, sizeof grad);
    lact_mesa_args a = {c->chunk, LACT_MESA_CG_STEPS};
    const char *dtn = dt == LACT_BF16 ? "bf16" : "f32", *iname = impl_name(impl);
    double tol = dt == LACT_BF16 ? BF16_TOL : F32_TOL;
    float resid = -1.0f;
    lact_status s = LACT_OK;
    for (int i = 0; i < NIN && s == LACT_OK; i++) {
        s = lact_tensor_clone(&in[i], &in_h[i], i == 5 ? LACT_F32 : dt, LACT_CUDA);
        if (s == LACT_OK) s = alloc_poisoned(&grad[i], i == 5 ? LACT_F32 : dt, &in_h[i]);
    }
    if (s == LACT_OK) s = lact_tensor_clone(&d_o, d_o_h, dt, LACT_CUDA);
    if (s == LACT_OK) s = alloc_poisoned(&o, dt, &in_h[0]);
    if (s == LACT_OK) s = alloc_poisoned(&x, dt, &in_h[0]);
    if (s == LACT_OK) s = alloc_poisoned(&hl, LACT_F32, &r->h_last);
    if (s == LACT_OK) s = alloc_poisoned(&gl, LACT_F32, &r->g_last);
    if (s == LACT_OK && impl == LACT_MESA_IMPL_AUTO) {
        s = lact_mesa_forward_x(gpu, &o, &x, &hl, &gl, &resid, &in[0], &in[1], &in[2], &in[3],
                                &in[4], &in[5], &a);
        if (s == LACT_OK)
            s = lact_mesa_backward_x(gpu, &grad[0], &grad[1], &grad[2], &grad[3], &grad[4],
                                     &grad[5], &d_o, &x, &in[0], &in[1], &in[2], &in[3], &in[4],
                                     &in[5], &a);
    } else if (s == LACT_OK) {
        lact_mesa_cuda_in ci_ = {dt,         c->b,       c->h,       c->len,     c->d,
                                 c->chunk,   a.cg_steps, impl,       in[0].data, in[1].data,
                                 in[2].data, in[3].data, in[4].data, in[5].data};
        lact_mesa_cuda_grad cg = {grad[0].data, grad[1].data, grad[2].data,
                                  grad[3].data, grad[4].data, grad[5].data};
        s = lact_cuda_mesa_forward(gpu, o.data, x.data, hl.data, gl.data, &resid, &ci_);
        if (s == LACT_OK) s = lact_cuda_mesa_backward(gpu, &cg, d_o.data, NULL, &ci_);
    }
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    CHECK_MSG(s == LACT_OK, "case %d %s %s: %s", ci, dtn, iname, lact_errmsg());
    if (s == LACT_OK) {
        double e_o = rel_err(&o, &r->o), e_x = rel_err(&x, &r->x);
        double e_h = rel_err(&hl, &r->h_last), e_g = rel_err(&gl, &r->g_last);
        const char *wname;
        double worst = check_grads(grad, r, tol, ci, dtn, iname, &wname);
        printf("  %d  %-4s %-8s o %.2e  x %.2e  h_last %.2e  g_last %.2e  residual %.2e (cpu "
               "%.2e)  grads max %.2e (%s)\n",
               ci, dtn, iname, e_o, e_x, e_h, e_g, (double)resid, (double)r->residual, worst,
               wname);
        CHECK_MSG(e_o <= tol && e_x <= tol, "case %d %s %s: o, x rel err %.3g, %.3g", ci, dtn,
                  iname, e_o, e_x);
        CHECK_MSG(e_h <= tol && e_g <= tol, "case %d %s %s: final states rel err %.3g, %.3g", ci,
                  dtn, iname, e_h, e_g);
        /* converged: the CPU reaches float precision; BF16 solves the
         * system of its bf16 operands, whose residual is measured in fp32 */
        double rtol = dt == LACT_BF16 ? 1e-2 : 1e-4;
        CHECK_MSG(resid >= 0 && resid <= rtol, "case %d %s %s: residual %g > %g", ci, dtn, iname,
                  (double)resid, rtol);
    }
    if (s == LACT_OK && impl == LACT_MESA_IMPL_AUTO) {
        for (int i = 0; i < NIN && s == LACT_OK; i++) {
            lact_tensor_free(&grad[i]);
            s = alloc_poisoned(&grad[i], i == 5 ? LACT_F32 : dt, &in_h[i]);
        }
        if (s == LACT_OK)
            s = lact_mesa_backward(gpu, &grad[0], &grad[1], &grad[2], &grad[3], &grad[4], &grad[5],
                                   &d_o, &in[0], &in[1], &in[2], &in[3], &in[4], &in[5], &a);
        if (s == LACT_OK) s = lact_ctx_sync(gpu);
        CHECK_MSG(s == LACT_OK, "case %d %s backward (solving again): %s", ci, dtn, lact_errmsg());
        if (s == LACT_OK) {
            const char *wname;
            double worst = check_grads(grad, r, tol, ci, dtn, "solving again", &wname);
            printf("  %d  %-4s %-8s backward solving x again: grads max %.2e (%s)\n", ci, dtn,
                   iname, worst, wname);
        }
    }
    for (int i = 0; i < NIN; i++) {
        lact_tensor_free(&in[i]);
        lact_tensor_free(&grad[i]);
    }
    lact_tensor_free(&o);
    lact_tensor_free(&x);
    lact_tensor_free(&hl);
    lact_tensor_free(&gl);
    lact_tensor_free(&d_o);
}

static void run_case(lact_ctx *cpu, lact_ctx *gpu, int ci) {
    const mcase *c = &cases[ci];
    for (int pass = 0; pass < 2; pass++) {
        lact_dtype dt = pass ? LACT_BF16 : LACT_F32;
        lact_tensor in[NIN], d_o = {0};
        memset(in, 0, sizeof in);
        reference r;
        memset(&r, 0, sizeof r);
        bool ok = make_inputs(c, 4242 + (uint64_t)ci, in, &d_o);
        CHECK_MSG(ok, "case %d: cannot make inputs", ci);
        if (ok && dt == LACT_BF16) {
            for (int i = 0; i < 5; i++)
                round_bf16(&in[i]);
            round_bf16(&d_o);
        }
        lact_status s = ok ? run_reference(cpu, c, in, &d_o, &r) : LACT_E_NOMEM;
        CHECK_MSG(s == LACT_OK, "case %d: CPU reference: %s", ci, lact_errmsg());
        if (s == LACT_OK) {
            lact_mesa_cuda_in probe;
            memset(&probe, 0, sizeof probe);
            probe.act = dt, probe.len = c->len, probe.d = c->d, probe.chunk = c->chunk;
            if (dt == LACT_F32 || !lact_cuda_mesa_tc_ok(&probe)) {
                run_cuda(gpu, c, ci, in, &d_o, dt, LACT_MESA_IMPL_AUTO, &r);
                if (dt == LACT_BF16) run_cuda(gpu, c, ci, in, &d_o, dt, LACT_MESA_IMPL_GENERIC, &r);
            } else {
                static const int impls[5] = {LACT_MESA_IMPL_GENERIC, LACT_MESA_TC_SCAN,
                                             LACT_MESA_TC_SOLVE, LACT_MESA_TC_GRAD,
                                             LACT_MESA_IMPL_AUTO};
                for (int k = 0; k < 5; k++)
                    run_cuda(gpu, c, ci, in, &d_o, dt, impls[k], &r);
            }
        }
        reference_free(&r);
        for (int i = 0; i < NIN; i++)
            lact_tensor_free(&in[i]);
        lact_tensor_free(&d_o);
    }
}

/* Five decoding steps from zero states on both devices (F32 and BF16). */
static void check_decode(lact_ctx *cpu, lact_ctx *gpu) {
    const mcase c = {2, 2, 5, 64, 64};
    lact_tensor in[NIN], d_o = {0};
    memset(in, 0, sizeof in);
    CHECK(make_inputs(&c, 99, in, &d_o));
    int64_t d = c.d, nbh = c.b * c.h, L = c.len;
    int64_t v3[3] = {c.b, c.h, d}, s2[2] = {c.b, c.h}, st[4] = {c.b, c.h, d, d};
    lact_mesa_args a = lact_mesa_default_args();
    for (int pass = 0; pass < 2; pass++) {
        lact_dtype dt = pass ? LACT_BF16 : LACT_F32;
        lact_tensor hs = {0}, gs = {0}, dhs = {0}, dgs = {0};
        CHECK_OK(lact_tensor_alloc(&hs, LACT_F32, LACT_CPU, 4, st));
        CHECK_OK(lact_tensor_alloc(&gs, LACT_F32, LACT_CPU, 4, st));
        if (!hs.data || !gs.data) break;
        memset(hs.data, 0, lact_tensor_nbytes(&hs));
        memset(gs.data, 0, lact_tensor_nbytes(&gs));
        CHECK_OK(lact_tensor_clone(&dhs, &hs, LACT_F32, LACT_CUDA));
        CHECK_OK(lact_tensor_clone(&dgs, &gs, LACT_F32, LACT_CUDA));
        double worst = 0;
        for (int64_t t = 0; t < L; t++) {
            lact_tensor x[5], dx[5], o = {0}, od = {0};
            memset(x, 0, sizeof x);
            memset(dx, 0, sizeof dx);
            for (int i = 0; i < 5; i++) {
                CHECK_OK(
                    lact_tensor_alloc(&x[i], LACT_F32, LACT_CPU, i < 3 ? 3 : 2, i < 3 ? v3 : s2));
                float *dst = x[i].data;
                const float *src = in[i].data;
                for (int64_t bh = 0; bh < nbh; bh++) {
                    if (i < 3)
                        for (int64_t e = 0; e < d; e++)
                            dst[bh * d + e] = src[(bh * L + t) * d + e];
                    else
                        dst[bh] = src[bh * L + t];
                }
                if (dt == LACT_BF16) round_bf16(&x[i]);
                CHECK_OK(lact_tensor_clone(&dx[i], &x[i], dt, LACT_CUDA));
            }
            CHECK_OK(lact_tensor_alloc(&o, LACT_F32, LACT_CPU, 3, v3));
            CHECK_OK(alloc_poisoned(&od, dt, &o));
            lact_tensor lam = {0};
            CHECK_OK(lact_tensor_clone(&lam, &in[5], LACT_F32, LACT_CUDA));
            CHECK_OK(
                lact_mesa_decode(cpu, &o, &hs, &gs, &x[0], &x[1], &x[2], &x[3], &x[4], &in[5], &a));
            CHECK_OK(lact_mesa_decode(gpu, &od, &dhs, &dgs, &dx[0], &dx[1], &dx[2], &dx[3], &dx[4],
                                      &lam, &a));
            CHECK_OK(lact_ctx_sync(gpu));
            double e = rel_err(&od, &o);
            if (!(e <= worst)) worst = e;
            for (int i = 0; i < 5; i++) {
                lact_tensor_free(&x[i]);
                lact_tensor_free(&dx[i]);
            }
            lact_tensor_free(&o);
            lact_tensor_free(&od);
            lact_tensor_free(&lam);
        }
        double eh = rel_err(&dhs, &hs), eg = rel_err(&dgs, &gs);
        double tol = dt == LACT_BF16 ? BF16_TOL : F32_TOL;
        printf("  decode %-4s %lld steps: o %.2e  h %.2e  g %.2e\n",
               dt == LACT_BF16 ? "bf16" : "f32", (long long)L, worst, eh, eg);
        CHECK_MSG(worst <= tol && eh <= tol && eg <= tol, "decode %s: rel err %.3g %.3g %.3g",
                  dt == LACT_BF16 ? "bf16" : "f32", worst, eh, eg);
        lact_tensor_free(&hs);
        lact_tensor_free(&gs);
        lact_tensor_free(&dhs);
        lact_tensor_free(&dgs);
    }
    for (int i = 0; i < NIN; i++)
        lact_tensor_free(&in[i]);
    lact_tensor_free(&d_o);
}

/* A g > 0 on the device is found and named like on the CPU. */
static void check_bad_value(lact_ctx *gpu) {
    const mcase c = {1, 2, 40, 16, 16};
    lact_tensor in[NIN], d_o = {0}, din[NIN], o = {0};
    memset(in, 0, sizeof in);
    memset(din, 0, sizeof din);
    CHECK(make_inputs(&c, 5, in, &d_o));
    ((float *)in[3].data)[45] = 0.25f;
    ((float *)in[4].data)[7] = 1.5f;
    for (int i = 0; i < NIN; i++)
        CHECK_OK(lact_tensor_clone(&din[i], &in[i], i == 5 ? LACT_F32 : LACT_BF16, LACT_CUDA));
    CHECK_OK(lact_tensor_alloc(&o, LACT_BF16, LACT_CUDA, 4, in[0].shape));
    CHECK_FAILS(lact_mesa_forward(gpu, &o, NULL, NULL, NULL, &din[0], &din[1], &din[2], &din[3],
                                  &din[4], &din[5], NULL),
                LACT_E_ARG);
    CHECK_MSG(strstr(lact_errmsg(), "g[45] = 0.25") != NULL, "message: %s", lact_errmsg());
    ((float *)in[3].data)[45] = -0.25f;
    lact_tensor_free(&din[3]);
    CHECK_OK(lact_tensor_clone(&din[3], &in[3], LACT_BF16, LACT_CUDA));
    CHECK_FAILS(lact_mesa_forward(gpu, &o, NULL, NULL, NULL, &din[0], &din[1], &din[2], &din[3],
                                  &din[4], &din[5], NULL),
                LACT_E_ARG);
    CHECK_MSG(strstr(lact_errmsg(), "beta[7] = 1.5") != NULL, "message: %s", lact_errmsg());
    for (int i = 0; i < NIN; i++) {
        lact_tensor_free(&in[i]);
        lact_tensor_free(&din[i]);
    }
    lact_tensor_free(&d_o);
    lact_tensor_free(&o);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!lact_cuda_available())
        return check_skip("mesa_cuda", "no CUDA device: runs on the GPU machine");
    lact_ctx cpu, gpu;
    if (lact_ctx_init(&cpu, LACT_CPU, 0) != LACT_OK ||
        lact_ctx_init(&gpu, LACT_CUDA, 0) != LACT_OK) {
        fprintf(stderr, "mesa_cuda: %s\n", lact_errmsg());
        return 1;
    }
    printf("mesa CUDA vs CPU (tolerance f32 %.0e, bf16 %.0e)\n", F32_TOL, BF16_TOL);
    for (int ci = 0; ci < (int)(sizeof cases / sizeof cases[0]); ci++)
        run_case(&cpu, &gpu, ci);
    check_decode(&cpu, &gpu);
    check_bad_value(&gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("mesa_cuda");
}

#else

int main(void) {
    return check_skip("mesa_cuda", "CPU-only build: runs on the GPU machine");
}

#endif
