/* The CUDA memory-bound kernels (rmsnorm, l2norm, rope, silu, swiglu,
 * add/mul with a broadcast operand and their gradients, permute, the fused
 * cross-entropy's row pass) against
 * the CPU reference at shapes larger than the op table's: rows that span
 * several warps, grid-stride loops, column sums over many slices, the
 * loop kernels of rows too long for registers, unaligned lengths with
 * tails, and views that start off a 16-byte boundary (the element-wise
 * fallback). F32 and BF16 activations (the CPU runs on the bf16-rounded
 * inputs); ‖cuda − cpu‖ / ‖cpu‖ per output. Device outputs are poisoned
 * with NaN first, so an element never written fails. Skips without a GPU. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/headprep.h"
#include "kernels/kernels.h"
#include "tests/support/check.h"

#if LACT_WITH_CUDA
#include <cuda_runtime_api.h>

#define F32_TOL 2e-5
#define BF16_TOL 1e-2
#define MAXT 12

/* One comparison: CPU tensors (F32) and device tensors (the run's dtype for
 * activations, F32 for parameters and statistics). */
typedef struct pair {
    lact_tensor c[MAXT], g[MAXT];
    int n;
    lact_ctx *cpu, *gpu;
    lact_dtype dt;
    uint64_t seed;
} pair;

static void pair_free(pair *p) {
    for (int i = 0; i < MAXT; i++) {
        lact_tensor_free(&p->c[i]);
        lact_tensor_free(&p->g[i]);
    }
    p->n = 0;
}

/* A random tensor: uniform in [lo, hi), rounded to bf16 when act and the
 * run is BF16, on both devices. Returns its index. */
static int rand_in(pair *p, bool act, int nd, const int64_t *shape, float lo, float hi) {
    int i = p->n++;
    lact_dtype dt = act ? p->dt : LACT_F32;
    CHECK_OK(lact_tensor_alloc(&p->c[i], LACT_F32, LACT_CPU, nd, shape));
    lact_rng rng = lact_rng_make(p->seed, 100 + (uint64_t)i);
    float *d = p->c[i].data;
    for (int64_t e = 0; e < lact_tensor_numel(&p->c[i]); e++) {
        float v = lo + (hi - lo) * lact_rng_uniform(&rng);
        d[e] = dt == LACT_BF16 ? lact_bf16_to_f32(lact_f32_to_bf16(v)) : v;
    }
    CHECK_OK(lact_tensor_clone(&p->g[i], &p->c[i], dt, LACT_CUDA));
    return i;
}

/* An output on both devices; the device one filled with NaN bytes. */
static int out_t(pair *p, bool act, int nd, const int64_t *shape) {
    int i = p->n++;
    CHECK_OK(lact_tensor_alloc(&p->c[i], LACT_F32, LACT_CPU, nd, shape));
    CHECK_OK(lact_tensor_alloc(&p->g[i], act ? p->dt : LACT_F32, LACT_CUDA, nd, shape));
    CHECK(cudaMemset(p->g[i].data, 0xff, lact_tensor_nbytes(&p->g[i])) == cudaSuccess);
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    return i;
}

static void compare(pair *p, const char *what, int i) {
    CHECK_OK(lact_ctx_sync(p->gpu));
    lact_tensor h = {0};
    CHECK_OK(lact_tensor_clone(&h, &p->g[i], LACT_F32, LACT_CPU));
    const float *a = h.data, *b = p->c[i].data;
    double num = 0, den = 0;
    bool finite = true;
    for (int64_t e = 0; e < lact_tensor_numel(&p->c[i]); e++) {
        finite = finite && isfinite(a[e]);
        num += ((double)a[e] - b[e]) * ((double)a[e] - b[e]);
        den += (double)b[e] * b[e];
    }
    double rel = sqrt(num) / (sqrt(den) > 0 ? sqrt(den) : 1.0);
    double tol = p->dt == LACT_BF16 ? BF16_TOL : F32_TOL;
    CHECK_MSG(finite && rel <= tol, "%s %s: rel err %.3g (tol %.0e)%s", what,
              lact_dtype_name(p->dt), rel, tol, finite ? "" : ", non-finite values");
    lact_tensor_free(&h);
}

/* Forward, backward, and both with a residual added in place (o2 and dx2
 * start as res and receive res + the result); with w, the backward that
 * adds dw to what it holds (dwa starts random). */
static void check_rmsnorm(pair *p, int64_t R, int64_t C, bool with_w) {
    int64_t sh[2] = {R, C}, rows[1] = {R}, vec[1] = {C};
    int x = rand_in(p, true, 2, sh, -2, 2), d = rand_in(p, true, 2, sh, -1, 1);
    int w = with_w ? rand_in(p, false, 1, vec, 0.5f, 1.5f) : -1;
    int dx2 = rand_in(p, true, 2, sh, -3, 3), o2 = rand_in(p, true, 2, sh, -3, 3);
    int o = out_t(p, true, 2, sh), rs = out_t(p, false, 1, rows);
    int dx = out_t(p, true, 2, sh), dw = out_t(p, false, 1, vec);
    int dwa = rand_in(p, false, 1, vec, -1, 1), dx3 = out_t(p, true, 2, sh);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_rmsnorm_forward(ctx, &t[o], &t[rs], &t[x], w >= 0 ? &t[w] : NULL, 1e-6f));
        /* dw exists only with w. */
        CHECK_OK(lact_rmsnorm_backward(ctx, &t[dx], w >= 0 ? &t[dw] : NULL, &t[d], &t[x],
                                       w >= 0 ? &t[w] : NULL, &t[rs]));
        CHECK_OK(lact_rmsnorm_backward_add(ctx, &t[dx2], NULL, &t[d], &t[x], w >= 0 ? &t[w] : NULL,
                                           &t[rs], &t[dx2]));
        CHECK_OK(lact_rmsnorm_forward_add(ctx, &t[o2], &t[rs], &t[x], w >= 0 ? &t[w] : NULL, 1e-6f,
                                          &t[o2]));
        if (w >= 0)
            CHECK_OK(lact_rmsnorm_backward_acc(ctx, &t[dx3], &t[dwa], &t[d], &t[x], &t[w], &t[rs],
                                               NULL));
    }
    char what[64];
    snprintf(what, sizeof what, "rmsnorm [%lld, %lld]", (long long)R, (long long)C);
    compare(p, what, o);
    compare(p, what, rs);
    compare(p, what, dx);
    if (with_w) compare(p, what, dw);
    snprintf(what, sizeof what, "rmsnorm + residual [%lld, %lld]", (long long)R, (long long)C);
    compare(p, what, dx2);
    compare(p, what, o2);
    if (with_w) {
        snprintf(what, sizeof what, "rmsnorm, dw accumulated [%lld, %lld]", (long long)R,
                 (long long)C);
        compare(p, what, dwa);
        compare(p, what, dx3);
    }
    pair_free(p);
}

/* The per-head norm written in token order, with the residual added: the
 * CUDA rows land where the CPU's add-then-permute puts them. */
static void check_rmsnorm_heads(pair *p, int64_t B, int64_t H, int64_t L, int64_t d) {
    int64_t xs[4] = {B, H, L, d}, os[4] = {B, L, H, d}, rows[1] = {B * H * L}, vec[1] = {d};
    int x = rand_in(p, true, 4, xs, -2, 2), res = rand_in(p, true, 4, xs, -1, 1);
    int w = rand_in(p, false, 1, vec, 0.5f, 1.5f);
    int o = out_t(p, true, 4, os), rs = out_t(p, false, 1, rows);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_rmsnorm_forward_heads(ctx, &t[o], &t[rs], &t[x], &t[w], 1e-6f, &t[res]));
    }
    char what[80];
    snprintf(what, sizeof what, "rmsnorm heads to tokens [%lld, %lld, %lld, %lld]", (long long)B,
             (long long)H, (long long)L, (long long)d);
    compare(p, what, o);
    compare(p, what, rs);
    pair_free(p);
}

/* The LaCT layer's gates: the bias, layout change and activations of z
 * [B, L, G·H] forward, and back to z's layout with the bias gradients
 * added to what they hold (G = 4 with momentum, 3 without). */
static void check_gates_op(pair *p, int64_t B, int64_t L, int64_t H, bool momentum) {
    int64_t G = momentum ? 4 : 3, N = B * H;
    int64_t zs[3] = {B, L, G * H}, gs[3] = {G, N, L}, ls[3] = {3, N, L}, ms[2] = {N, L};
    int64_t b3[1] = {3 * H}, b1[1] = {H};
    int z = rand_in(p, false, 3, zs, -6, 6), blr = rand_in(p, false, 1, b3, -1, 1);
    int bm = momentum ? rand_in(p, false, 1, b1, -1, 1) : -1;
    int dlr = rand_in(p, false, 3, ls, -1, 1), dm = momentum ? rand_in(p, false, 2, ms, -1, 1) : -1;
    int dblr = rand_in(p, false, 1, b3, -1, 1),
        dbm = momentum ? rand_in(p, false, 1, b1, -1, 1) : -1;
    int zg = out_t(p, false, 3, gs), lr = out_t(p, false, 3, ls);
    int mom = momentum ? out_t(p, false, 2, ms) : -1, dz = out_t(p, true, 3, zs);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_gates_forward(ctx, &t[lr], momentum ? &t[mom] : NULL, &t[zg], &t[z], &t[blr],
                                    momentum ? &t[bm] : NULL, -2.5f));
        CHECK_OK(lact_gates_backward(ctx, &t[dz], &t[dblr], momentum ? &t[dbm] : NULL, &t[dlr],
                                     momentum ? &t[dm] : NULL, &t[zg], momentum ? &t[mom] : NULL,
                                     -2.5f));
    }
    char what[80];
    snprintf(what, sizeof what, "gates B %lld L %lld H %lld%s", (long long)B, (long long)L,
             (long long)H, momentum ? " with momentum" : "");
    compare(p, what, zg);
    compare(p, what, lr);
    if (momentum) compare(p, what, mom);
    compare(p, what, dz);
    compare(p, what, dblr);
    if (momentum) compare(p, what, dbm);
    pair_free(p);
}

static void check_l2norm(pair *p, int64_t R, int64_t C) {
    int64_t sh[2] = {R, C};
    int x = rand_in(p, true, 2, sh, -2, 2), d = rand_in(p, true, 2, sh, -1, 1);
    int o = out_t(p, true, 2, sh), dx = out_t(p, true, 2, sh);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_l2norm_forward(ctx, &t[o], &t[x], 1e-5f));
        CHECK_OK(lact_l2norm_backward(ctx, &t[dx], &t[d], &t[x], 1e-5f));
    }
    compare(p, "l2norm out", o);
    compare(p, "l2norm dx", dx);
    pair_free(p);
}

static void check_rope(pair *p, int nd, const int64_t *sh, int64_t pos0) {
    int x = rand_in(p, true, nd, sh, -2, 2);
    int o = out_t(p, true, nd, sh), dx = out_t(p, true, nd, sh);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_rope_forward(ctx, &t[o], &t[x], pos0, 10000.0f));
        CHECK_OK(lact_rope_backward(ctx, &t[dx], &t[x], pos0, 10000.0f));
    }
    compare(p, "rope out", o);
    compare(p, "rope dx", dx);
    pair_free(p);
}

/* silu and swiglu on [R, C], the gradients with both outputs and with one. */
static void check_gates(pair *p, int64_t R, int64_t C) {
    int64_t sh[2] = {R, C};
    int a = rand_in(p, true, 2, sh, -4, 4), b = rand_in(p, true, 2, sh, -2, 2);
    int d = rand_in(p, true, 2, sh, -1, 1);
    int so = out_t(p, true, 2, sh), sdx = out_t(p, true, 2, sh), wo = out_t(p, true, 2, sh);
    int da = out_t(p, true, 2, sh), db = out_t(p, true, 2, sh), da1 = out_t(p, true, 2, sh);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_silu_forward(ctx, &t[so], &t[a]));
        CHECK_OK(lact_silu_backward(ctx, &t[sdx], &t[d], &t[a]));
        CHECK_OK(lact_swiglu_forward(ctx, &t[wo], &t[a], &t[b]));
        CHECK_OK(lact_swiglu_backward(ctx, &t[da], &t[db], &t[d], &t[a], &t[b]));
        CHECK_OK(lact_swiglu_backward(ctx, &t[da1], NULL, &t[d], &t[a], &t[b]));
    }
    compare(p, "silu out", so);
    compare(p, "silu dx", sdx);
    compare(p, "swiglu out", wo);
    compare(p, "swiglu da", da);
    compare(p, "swiglu db", db);
    compare(p, "swiglu da alone", da1);
    pair_free(p);
}

/* a [R, C] with b F32 [C]: add and mul forward and backward. */
static void check_broadcast(pair *p, int64_t R, int64_t C) {
    int64_t sh[2] = {R, C}, vec[1] = {C};
    int a = rand_in(p, true, 2, sh, -2, 2), b = rand_in(p, false, 1, vec, -2, 2);
    int d = rand_in(p, true, 2, sh, -1, 1);
    int add = out_t(p, true, 2, sh), mul = out_t(p, true, 2, sh), da = out_t(p, true, 2, sh);
    int db_add = out_t(p, false, 1, vec), db_mul = out_t(p, false, 1, vec);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_add_forward(ctx, &t[add], &t[a], &t[b]));
        CHECK_OK(lact_mul_forward(ctx, &t[mul], &t[a], &t[b]));
        CHECK_OK(lact_add_backward(ctx, NULL, &t[db_add], &t[d]));
        CHECK_OK(lact_mul_backward(ctx, &t[da], &t[db_mul], &t[d], &t[a], &t[b]));
    }
    char what[64];
    snprintf(what, sizeof what, "broadcast [%lld, %lld]", (long long)R, (long long)C);
    compare(p, what, add);
    compare(p, what, mul);
    compare(p, what, da);
    compare(p, what, db_add);
    compare(p, what, db_mul);
    pair_free(p);
}

static void check_permute(pair *p, const int64_t *sh) {
    int64_t so[4] = {sh[0], sh[2], sh[1], sh[3]};
    int x = rand_in(p, true, 4, sh, -2, 2), o = out_t(p, true, 4, so);
    CHECK_OK(lact_permute_forward(p->cpu, &p->c[o], &p->c[x]));
    CHECK_OK(lact_permute_forward(p->gpu, &p->g[o], &p->g[x]));
    compare(p, "permute", o);
    pair_free(p);
}

/* silu and l2norm on views one element past a 16-byte boundary: the
 * kernels must take their element-wise path. */
static void check_unaligned(pair *p) {
    int64_t n = 4097, sh[1] = {n}, rows[2] = {32, 128};
    int x = rand_in(p, true, 1, sh, -3, 3), o = out_t(p, true, 1, sh);
    int o2 = out_t(p, true, 1, sh);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        size_t es = lact_dtype_size(t[x].dtype);
        lact_tensor xv = lact_tensor_view((char *)t[x].data + es, t[x].dtype, t[x].device, 1,
                                          (int64_t[]){n - 1});
        lact_tensor ov = lact_tensor_view((char *)t[o].data + es, t[o].dtype, t[o].device, 1,
                                          (int64_t[]){n - 1});
        lact_tensor xr = lact_tensor_view((char *)t[x].data + es, t[x].dtype, t[x].device, 2, rows);
        lact_tensor orr =
            lact_tensor_view((char *)t[o2].data + es, t[o2].dtype, t[o2].device, 2, rows);
        CHECK_OK(lact_silu_forward(ctx, &ov, &xv));
        CHECK_OK(lact_l2norm_forward(ctx, &orr, &xr, 1e-5f));
        /* The element before the views: the same on both devices. */
        lact_tensor first = lact_tensor_view(t[o].data, t[o].dtype, t[o].device, 1, (int64_t[]){1});
        lact_tensor first2 =
            lact_tensor_view(t[o2].data, t[o2].dtype, t[o2].device, 1, (int64_t[]){1});
        lact_tensor x0 = lact_tensor_view(t[x].data, t[x].dtype, t[x].device, 1, (int64_t[]){1});
        CHECK_OK(lact_scale_forward(ctx, &first, &x0, 1.0f));
        CHECK_OK(lact_scale_forward(ctx, &first2, &x0, 1.0f));
    }
    compare(p, "silu unaligned", o);
    compare(p, "l2norm unaligned", o2);
    pair_free(p);
}

/* The fused cross-entropy forward and backward (lact_xent_forward_backward,
 * dw accumulating) against the CPU's: rows walked in blocks of `rows` (the
 * LACT_XENT_ROWS cap), every fourth target ignored. */
static void check_xent_fused(pair *p, int64_t N, int64_t C, int64_t V, const char *rows) {
    int64_t hs[2] = {N, C}, ws[2] = {V, C}, ns[1] = {N};
    int h = rand_in(p, true, 2, hs, -1, 1), w = rand_in(p, true, 2, ws, -1, 1);
    int dl = rand_in(p, false, 1, ns, 0.5f, 1.5f);
    int loss = out_t(p, false, 1, ns), lse = out_t(p, false, 1, ns);
    int dh = out_t(p, true, 2, hs);
    int dw = rand_in(p, false, 2, ws, -1, 1); /* the call adds to it */
    lact_tensor tc = {0}, tg = {0};
    CHECK_OK(lact_tensor_alloc(&tc, LACT_I32, LACT_CPU, 1, ns));
    int32_t *t = tc.data;
    for (int64_t i = 0; i < N; i++)
        t[i] = i % 4 == 3 ? -1 : (int32_t)((i * 7919) % V);
    CHECK_OK(lact_tensor_clone(&tg, &tc, LACT_I32, LACT_CUDA));
    CHECK_OK(lact_xent_forward_backward(p->cpu, &p->c[loss], &p->c[lse], &p->c[dh], &p->c[dw],
                                        &p->c[dl], &p->c[h], &p->c[w], &tc, 0));
    setenv("LACT_XENT_ROWS", rows, 1);
    CHECK_OK(lact_xent_forward_backward(p->gpu, &p->g[loss], &p->g[lse], &p->g[dh], &p->g[dw],
                                        &p->g[dl], &p->g[h], &p->g[w], &tg, 0));
    unsetenv("LACT_XENT_ROWS");
    char what[80];
    snprintf(what, sizeof what, "xent fused [%lld, %lld] x [%lld] rows %s", (long long)N,
             (long long)C, (long long)V, rows);
    compare(p, what, loss);
    compare(p, what, lse);
    compare(p, what, dh);
    compare(p, what, dw);
    lact_tensor_free(&tc);
    lact_tensor_free(&tg);
    pair_free(p);
}

/* AdamW over a whole block in one launch: weight decay below decay_end,
 * clipping by a norm on the device, the BF16 shadow; from offset off
 * (1: the element-wise kernel). norm < 0: not given; a non-finite norm
 * must leave everything as it was, bit for bit. The shadow must be
 * exactly bf16(p) of the device's new weights. */
static void check_adamw(pair *p, int64_t n, int64_t off, int64_t decay_end, float norm,
                        float max_norm) {
    int64_t full = n + off, one = 1;
    int ip = rand_in(p, false, 1, &full, -1.0f, 1.0f);
    int im = rand_in(p, false, 1, &full, -0.1f, 0.1f);
    int iv = rand_in(p, false, 1, &full, 0.0f, 0.01f);
    int ig = rand_in(p, false, 1, &full, -2.0f, 2.0f);
    lact_tensor tc[4], tg[4], nc, ng, sc, sg;
    const int idx[4] = {ip, im, iv, ig};
    for (int k = 0; k < 4; k++) {
        tc[k] = lact_tensor_view((float *)p->c[idx[k]].data + off, LACT_F32, LACT_CPU, 1, &n);
        tg[k] = lact_tensor_view((float *)p->g[idx[k]].data + off, LACT_F32, LACT_CUDA, 1, &n);
    }
    CHECK_OK(lact_tensor_alloc(&nc, LACT_F32, LACT_CPU, 1, &one));
    *(float *)nc.data = norm;
    CHECK_OK(lact_tensor_clone(&ng, &nc, LACT_F32, LACT_CUDA));
    CHECK_OK(lact_tensor_alloc(&sc, LACT_BF16, LACT_CPU, 1, &n));
    CHECK_OK(lact_tensor_alloc(&sg, LACT_BF16, LACT_CUDA, 1, &n));
    bool given = norm >= 0 || !isfinite(norm);
    lact_adamw_args a = {.lr = 0.01f,
                         .beta1 = 0.9f,
                         .beta2 = 0.95f,
                         .eps = 1e-8f,
                         .weight_decay = 0.1f,
                         .step = 7,
                         .decay_end = decay_end,
                         .grad_norm = given ? &nc : NULL,
                         .max_norm = max_norm,
                         .shadow = &sc};
    lact_tensor before = {0};
    CHECK_OK(lact_tensor_clone(&before, &p->c[ip], LACT_F32, LACT_CPU));
    CHECK_OK(lact_adamw_step(p->cpu, &tc[0], &tc[1], &tc[2], &tc[3], &a));
    a.grad_norm = given ? &ng : NULL;
    a.shadow = &sg;
    CHECK_OK(lact_adamw_step(p->gpu, &tg[0], &tg[1], &tg[2], &tg[3], &a));
    char what[96];
    snprintf(what, sizeof what, "adamw n %lld off %lld decay_end %lld norm %g", (long long)n,
             (long long)off, (long long)decay_end, (double)norm);
    for (int k = 0; k < 3; k++)
        compare(p, what, idx[k]);
    lact_tensor hp = {0}, hs = {0};
    CHECK_OK(lact_tensor_clone(&hp, &p->g[ip], LACT_F32, LACT_CPU));
    CHECK_OK(lact_tensor_clone(&hs, &sg, LACT_BF16, LACT_CPU));
    bool moved = memcmp(before.data, hp.data, lact_tensor_nbytes(&before)) != 0;
    CHECK_MSG(moved == isfinite(norm), "%s: weights %s", what, moved ? "changed" : "unchanged");
    int64_t bad = 0;
    const float *w = (const float *)hp.data + off;
    const uint16_t *sh = hs.data;
    for (int64_t e = 0; isfinite(norm) && e < n; e++)
        bad += sh[e] != lact_f32_to_bf16(w[e]);
    CHECK_MSG(bad == 0, "%s: %lld shadow elements differ from bf16(p)", what, (long long)bad);
    lact_tensor *tmp[] = {&before, &hp, &hs, &nc, &ng, &sc, &sg};
    for (size_t k = 0; k < sizeof tmp / sizeof tmp[0]; k++)
        lact_tensor_free(tmp[k]);
    pair_free(p);
}

/* The headprep backward that adds the scale and offset gradients to what
 * they hold (both start random), with and without the rotation: the tiled
 * kernels at d = 128, the general ones at d = 10. */
static void check_headprep_acc(pair *p, int64_t B, int64_t L, int64_t H, int64_t d, float theta) {
    int64_t zs[4] = {B, L, H, d}, hs[4] = {B, H, L, d}, vec[1] = {H * d};
    int z = rand_in(p, true, 4, zs, -3, 3), dqf = rand_in(p, true, 4, hs, -1, 1);
    int dqa = rand_in(p, true, 4, hs, -1, 1), sc = rand_in(p, false, 1, vec, 0.5f, 1.5f);
    int of = rand_in(p, false, 1, vec, -0.5f, 0.5f), dsa = rand_in(p, false, 1, vec, -1, 1);
    int doa = rand_in(p, false, 1, vec, -1, 1);
    int dz = out_t(p, true, 4, zs), dxs = out_t(p, true, 4, zs);
    for (int k = 0; k < 2; k++) {
        lact_ctx *ctx = k ? p->gpu : p->cpu;
        lact_tensor *t = k ? p->g : p->c;
        CHECK_OK(lact_headprep_backward_acc(ctx, &t[dz], &t[dsa], &t[doa], &t[dxs], &t[dqf],
                                            &t[dqa], &t[z], &t[sc], &t[of], 3, theta, 1e-6f));
    }
    char what[80];
    snprintf(what, sizeof what, "headprep, dscale and doffset accumulated, d %lld theta %g",
             (long long)d, theta);
    compare(p, what, dz);
    compare(p, what, dsa);
    compare(p, what, doa);
    pair_free(p);
}

static void run_dtype(lact_ctx *cpu, lact_ctx *gpu, lact_dtype dt) {
    pair p;
    memset(&p, 0, sizeof p);
    p.cpu = cpu;
    p.gpu = gpu;
    p.dt = dt;
    p.seed = 20251123u + (uint64_t)dt;
    check_rmsnorm(&p, 5000, 768, true); /* dw over several row groups per block */
    check_rmsnorm(&p, 300, 129, false); /* two warps a row, element-wise words */
    check_rmsnorm(&p, 40, 20000, true); /* too long for registers: loop kernels */
    check_rmsnorm(&p, 4100, 64, true);  /* 4 threads a row */
    check_rmsnorm_heads(&p, 2, 6, 300, 128);
    check_rmsnorm_heads(&p, 3, 2, 7, 10);   /* element-wise words */
    check_rmsnorm_heads(&p, 1, 2, 3, 9000); /* too long for registers: the loop kernel */
    check_l2norm(&p, 3000, 128);
    check_headprep_acc(&p, 2, 70, 6, 128, 10000.0f);
    check_headprep_acc(&p, 2, 33, 3, 10, 10000.0f);
    check_headprep_acc(&p, 3, 40, 2, 128, 0.0f);
    check_l2norm(&p, 70, 6000);
    check_rope(&p, 4, (int64_t[]){2, 700, 6, 128}, 100000);
    check_rope(&p, 3, (int64_t[]){3, 50, 130}, 7);
    check_rope(&p, 4, (int64_t[]){1, 3, 2, 1024}, 0); /* several table chunks */
    check_gates(&p, 700, 2064);
    check_gates_op(&p, 8, 4096, 6, true);
    check_gates_op(&p, 3, 77, 5, false); /* a last run of positions cut short */
    check_gates_op(&p, 2, 45, 100, true); /* 400 columns: shorter runs, two a thread */
    check_gates(&p, 33, 77); /* a tail after the last word */
    check_broadcast(&p, 5000, 768);
    check_broadcast(&p, 9, 100); /* 100 not a multiple of 8: element-wise */
    check_permute(&p, (int64_t[]){2, 300, 6, 128});
    check_permute(&p, (int64_t[]){3, 5, 7, 4});
    check_unaligned(&p);
    check_xent_fused(&p, 300, 64, 1000, "128"); /* three blocks of rows, staged rows */
    check_xent_fused(&p, 70, 32, 20001, "0");   /* odd vocabulary: element-wise */
    check_xent_fused(&p, 20, 16, 60000, "7");   /* rows too long to stage */
    if (dt == LACT_F32) {
        check_adamw(&p, 100003, 0, 60000, -1.0f, 0.0f); /* no norm given */
        check_adamw(&p, 100003, 0, 60000, 5.0f, 1.0f);  /* clipped */
        check_adamw(&p, 4096, 0, 0, 0.5f, 1.0f);        /* every element decayed, not clipped */
        check_adamw(&p, 5001, 1, 333, 3.0f, 2.0f);      /* element-wise: off a word, odd split */
        check_adamw(&p, 4096, 0, 1024, NAN, 1.0f);      /* skipped */
    }
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!lact_cuda_available())
        return check_skip("ew_cuda", "no CUDA device: runs on the GPU machine");
    lact_ctx cpu, gpu;
    if (lact_ctx_init(&cpu, LACT_CPU, 0) != LACT_OK ||
        lact_ctx_init(&gpu, LACT_CUDA, 0) != LACT_OK) {
        fprintf(stderr, "ew_cuda: %s\n", lact_errmsg());
        return 1;
    }
    printf("memory-bound kernels, CUDA vs CPU (tolerance f32 %.0e, bf16 %.0e)\n", F32_TOL,
           BF16_TOL);
    run_dtype(&cpu, &gpu, LACT_F32);
    run_dtype(&cpu, &gpu, LACT_BF16);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("ew_cuda");
}

#else

int main(void) {
    return check_skip("ew_cuda", "CPU-only build: runs on the GPU machine");
}

#endif
