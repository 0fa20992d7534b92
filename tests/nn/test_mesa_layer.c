/* The Mesa layer: the whole forward against a direct composition in double
 * (token-by-token states, a Cholesky solve), gradients by central
 * differences of every parameter and of x for several configurations,
 * streaming decode against the forward (token by token, in uneven stretches,
 * prompt + steps), and configuration errors. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn/mesa_layer.h"
#include "nn_check.h"

enum { B = 2, L = 13, D = 16 };

static lact_status fwd(lact_ctx *ctx, void *layer, lact_arena *ar, void *saved, lact_tensor *y,
                       const lact_tensor *x) {
    return lact_mesa_layer_forward(ctx, layer, ar, saved, y, x, NULL);
}
static lact_status bwd(lact_ctx *ctx, void *layer, lact_arena *ar, const void *saved,
                       lact_tensor *dx, const lact_tensor *dy) {
    return lact_mesa_layer_backward(ctx, layer, ar, saved, dx, dy);
}

typedef struct setup {
    lact_params params;
    lact_mesa_layer layer;
    lact_mesa_layer_saved saved;
    nn_case c;
} setup;

static lact_status setup_init(setup *s, lact_ctx *ctx, const char *name,
                              const lact_mesa_layer_cfg *cfg, uint64_t seed) {
    memset(s, 0, sizeof *s);
    lact_params_init(&s->params, LACT_CPU);
    LACT_TRY(lact_mesa_layer_declare(&s->layer, &s->params, "layers.0.mesa", cfg));
    LACT_TRY(lact_params_alloc(&s->params));
    LACT_TRY(lact_params_init_values(ctx, &s->params, seed));
    /* Biases, λ and the norm weight away from their constant starts. */
    for (int i = 0; i < lact_params_count(&s->params); i++) {
        lact_param *p = lact_params_at(&s->params, i);
        if (p->init.kind != LACT_INIT_NORMAL) {
            float *w = p->w.data;
            for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++)
                w[j] += 0.3f * lact_philox_normal(seed, 3 + (uint64_t)i, (uint64_t)j);
        }
    }
    s->c = (nn_case){.name = name,
                     .ctx = ctx,
                     .params = &s->params,
                     .layer = &s->layer,
                     .saved = &s->saved,
                     .forward = fwd,
                     .backward = bwd};
    return nn_case_init(&s->c, B, L, D, seed + 10);
}

static void setup_free(setup *s) {
    nn_case_free(&s->c);
    lact_params_free(&s->params);
}

static lact_mesa_layer_cfg cfg_of(int64_t heads, int64_t head_dim, int64_t chunk) {
    lact_mesa_layer_cfg c = lact_mesa_layer_defaults(D, heads);
    c.head_dim = head_dim;
    c.op.chunk = chunk;
    c.init_std = 0.4f;
    return c;
}

static const float *W(setup *s, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "layers.0.mesa.%s", suffix);
    int i = lact_params_find(&s->params, name);
    CHECK_MSG(i >= 0, "no parameter %s", name);
    return i < 0 ? NULL : lact_params_at(&s->params, i)->w.data;
}

/* out[c] = Σ_i w[c, i] x_t[i] (+ bias[c]), w [n, D]. */
static void project(double *out, const float *w, const float *bias, const float *xt, int n) {
    for (int c = 0; c < n; c++) {
        double z = bias ? bias[c] : 0.0;
        for (int i = 0; i < D; i++)
            z += (double)w[c * D + i] * xt[i];
        out[c] = z;
    }
}

static double softplus(double z) {
    return z > 30 ? z : log1p(exp(z));
}

/* Solves A x = b for symmetric positive definite A [n, n] (Cholesky). */
static void spd_solve(double *x, const double *A, const double *b, int n) {
    double Lc[32 * 32], y[32];
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double s = A[i * n + j];
            for (int k = 0; k < j; k++)
                s -= Lc[i * n + k] * Lc[j * n + k];
            Lc[i * n + j] = i == j ? sqrt(s) : s / Lc[j * n + j];
        }
    for (int i = 0; i < n; i++) {
        double s = b[i];
        for (int k = 0; k < i; k++)
            s -= Lc[i * n + k] * y[k];
        y[i] = s / Lc[i * n + i];
    }
    for (int i = n - 1; i >= 0; i--) {
        double s = y[i];
        for (int k = i + 1; k < n; k++)
            s -= Lc[k * n + i] * x[k];
        x[i] = s / Lc[i * n + i];
    }
}

static void l2n(double *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++)
        s += v[i] * v[i];
    double r = 1.0 / (sqrt(s) + 1e-6);
    for (int i = 0; i < n; i++)
        v[i] *= r;
}

/* The layer's definition, one sequence and head at a time, in double. */
static void test_direct(lact_ctx *ctx, int64_t heads, int64_t hd, int64_t chunk) {
    enum { MAXHD = 64 };
    setup s;
    lact_mesa_layer_cfg cfg = cfg_of(heads, hd, chunk);
    CHECK_OK(setup_init(&s, ctx, "direct", &cfg, 31));
    CHECK_OK(nn_case_run(&s.c, false));
    const int H = (int)heads, d = (int)hd, HD = H * d;
    const float *x = s.c.x.data, *wq = W(&s, "wq"), *wk = W(&s, "wk"), *wv = W(&s, "wv"),
                *wdec = W(&s, "w_decay"), *bdec = W(&s, "b_decay"), *wbeta = W(&s, "w_beta"),
                *bbeta = W(&s, "b_beta"), *lam = W(&s, "lambda"), *on = W(&s, "o_norm"),
                *wgate = W(&s, "w_gate"), *wo = W(&s, "wo");
    static double q[L][MAXHD], k[L][MAXHD], v[L][MAXHD], zg[L][8], zb[L][8], zo[L][MAXHD];
    static double u[L][MAXHD], Hs[8][32 * 32], Gs[8][32 * 32];
    double err = 0, mag = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < L; t++) {
            const float *xt = x + ((int64_t)b * L + t) * D;
            project(q[t], wq, NULL, xt, HD);
            project(k[t], wk, NULL, xt, HD);
            project(v[t], wv, NULL, xt, HD);
            project(zg[t], wdec, bdec, xt, H);
            project(zb[t], wbeta, bbeta, xt, H);
            project(zo[t], wgate, NULL, xt, HD);
            for (int h = 0; h < H; h++) {
                l2n(q[t] + h * d, d);
                l2n(k[t] + h * d, d);
            }
        }
        memset(Hs, 0, sizeof Hs);
        memset(Gs, 0, sizeof Gs);
        for (int t = 0; t < L; t++) {
            for (int h = 0; h < H; h++) {
                double gam = exp(-softplus(zg[t][h])), beta = 1.0 / (1.0 + exp(-zb[t][h]));
                const double *kt = k[t] + h * d, *vt = v[t] + h * d;
                double *Hh = Hs[h], *Gh = Gs[h], A[32 * 32], xs[32], o[32];
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < d; j++) {
                        Hh[i * d + j] = gam * Hh[i * d + j] + beta * kt[i] * kt[j];
                        Gh[i * d + j] = gam * Gh[i * d + j] + beta * vt[i] * kt[j];
                        A[i * d + j] = Hh[i * d + j];
                    }
                for (int i = 0; i < d; i++)
                    A[i * d + i] += softplus(lam[h * d + i]) + cfg.lambda_min;
                spd_solve(xs, A, q[t] + h * d, d);
                double ms = 0;
                for (int i = 0; i < d; i++) {
                    o[i] = 0;
                    for (int j = 0; j < d; j++)
                        o[i] += Gh[i * d + j] * xs[j];
                    ms += o[i] * o[i];
                }
                double rs = 1.0 / sqrt(ms / d + cfg.norm_eps);
                for (int i = 0; i < d; i++)
                    u[t][h * d + i] = o[i] * rs * on[i] / (1.0 + exp(-zo[t][h * d + i]));
            }
            for (int c = 0; c < D; c++) {
                double yc = 0;
                for (int i = 0; i < HD; i++)
                    yc += (double)wo[c * HD + i] * u[t][i];
                float got = ((float *)s.c.y.data)[((int64_t)b * L + t) * D + c];
                err = fmax(err, fabs(yc - got));
                mag = fmax(mag, fabs(yc));
            }
        }
    }
    printf("direct (H %d, d %d, chunk %lld): max |y| %.3g, error %.3g\n", H, d, (long long)chunk,
           mag, err);
    CHECK(mag > 1e-2);
    CHECK_MSG(err < 2e-5 * (1 + mag), "direct: error %.3g", err);
    setup_free(&s);
}

static void test_gradcheck(lact_ctx *ctx, const char *name, const lact_mesa_layer_cfg *cfg) {
    setup s;
    CHECK_OK(setup_init(&s, ctx, name, cfg, 41));
    nn_gradcheck(&s.c, 3);
    CHECK(s.c.arena.peak == s.c.peak);
    setup_free(&s);
}

static double rel_err(const float *a, const float *r, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        num += ((double)a[i] - r[i]) * ((double)a[i] - r[i]), den += (double)r[i] * r[i];
    return sqrt(num / den);
}

/* Worst relative error per token when the tokens come in stretches seg[0],
 * seg[1], ... (the last repeats). */
static double decode_run(lact_ctx *ctx, setup *s, const int64_t *seg, int n_seg,
                         int64_t max_tokens) {
    lact_mesa_layer_decode st;
    CHECK_OK(lact_mesa_layer_decode_init(ctx, &s->layer, &st, B, max_tokens));
    float xs[B * L * D], ys[B * L * D];
    double worst = 0;
    size_t cap = st.arena.capacity;
    for (int64_t t0 = 0, j = 0; t0 < L; j++) {
        int64_t n = seg[j < n_seg ? j : n_seg - 1];
        if (n > L - t0) n = L - t0;
        int64_t sh[3] = {B, n, D};
        for (int64_t b = 0; b < B; b++)
            memcpy(xs + b * n * D, (const float *)s->c.x.data + (b * L + t0) * D,
                   (size_t)(n * D) * sizeof(float));
        lact_tensor xv = lact_tensor_view(xs, LACT_F32, LACT_CPU, 3, sh);
        lact_tensor yv = lact_tensor_view(ys, LACT_F32, LACT_CPU, 3, sh);
        CHECK_OK(lact_mesa_layer_decode_step(ctx, &st, &yv, &xv));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < n; t++)
                worst = fmax(worst, rel_err(ys + (b * n + t) * D,
                                            (const float *)s->c.y.data + (b * L + t0 + t) * D, D));
        t0 += n;
    }
    CHECK(st.pos == L);
    CHECK(st.arena.capacity == cap && st.arena.peak <= cap); /* sized once, at init */
    /* A step longer than max_tokens is refused. */
    int64_t big[3] = {B, max_tokens + 1, D};
    lact_tensor xv = lact_tensor_view(xs, LACT_F32, LACT_CPU, 3, big);
    lact_tensor yv = lact_tensor_view(ys, LACT_F32, LACT_CPU, 3, big);
    if ((max_tokens + 1) * B * D <= B * L * D)
        CHECK_FAILS(lact_mesa_layer_decode_step(ctx, &st, &yv, &xv), LACT_E_ARG);
    lact_mesa_layer_decode_free(&st);
    return worst;
}

static void test_decode(lact_ctx *ctx, int64_t chunk) {
    setup s;
    lact_mesa_layer_cfg cfg = cfg_of(2, 8, chunk);
    CHECK_OK(setup_init(&s, ctx, "decode", &cfg, 51));
    CHECK_OK(nn_case_run(&s.c, false));
    const int64_t ones[1] = {1}, mixed[4] = {5, 1, 3, 6}, prompt[2] = {9, 1};
    double e1 = decode_run(ctx, &s, ones, 1, 1);
    double e2 = decode_run(ctx, &s, mixed, 4, 6);
    double e3 = decode_run(ctx, &s, prompt, 2, 9);
    printf("mesa layer decode (chunk %lld): token by token %.2e, stretches %.2e, prompt + steps "
           "%.2e\n",
           (long long)chunk, e1, e2, e3);
    CHECK_MSG(e1 <= 1e-5, "token by token: %.3e", e1);
    CHECK_MSG(e2 <= 1e-5, "stretches: %.3e", e2);
    CHECK_MSG(e3 <= 1e-5, "prompt + steps: %.3e", e3);

    /* The state carries the past: the last token decoded alone, from a
     * fresh state, gives another output. */
    lact_mesa_layer_decode st;
    CHECK_OK(lact_mesa_layer_decode_init(ctx, &s.layer, &st, B, 1));
    float xs[B * D], ys[B * D];
    for (int64_t b = 0; b < B; b++)
        memcpy(xs + b * D, (const float *)s.c.x.data + (b * L + L - 1) * D,
               (size_t)D * sizeof(float));
    int64_t sh[3] = {B, 1, D};
    lact_tensor xv = lact_tensor_view(xs, LACT_F32, LACT_CPU, 3, sh);
    lact_tensor yv = lact_tensor_view(ys, LACT_F32, LACT_CPU, 3, sh);
    CHECK_OK(lact_mesa_layer_decode_step(ctx, &st, &yv, &xv));
    double diff = rel_err(ys, (const float *)s.c.y.data + (L - 1) * D, D);
    CHECK_MSG(diff > 1e-2, "the past changes the last output by only %.3e", diff);
    lact_mesa_layer_decode_free(&st);
    CHECK_FAILS(lact_mesa_layer_decode_init(ctx, &s.layer, &st, B, 0), LACT_E_ARG);
    setup_free(&s);
}

static void test_params_and_errors(void) {
    lact_params p;
    lact_params_init(&p, LACT_CPU);
    lact_mesa_layer l;
    lact_mesa_layer_cfg c = cfg_of(2, 8, 4);
    CHECK_OK(lact_mesa_layer_declare(&l, &p, "m", &c));
    const char *names[11] = {"m.wq",      "m.wk",     "m.wv",     "m.w_decay",
                             "m.b_decay", "m.w_beta", "m.b_beta", "m.lambda",
                             "m.o_norm",  "m.w_gate", "m.wo"};
    const int64_t numel[11] = {16 * 16, 16 * 16, 16 * 16, 2 * 16,  2,      2 * 16,
                               2,       16,      8,       16 * 16, 16 * 16};
    CHECK(lact_params_count(&p) == 11);
    for (int i = 0; i < 11; i++) {
        int j = lact_params_find(&p, names[i]);
        CHECK_MSG(j >= 0, "no parameter %s", names[i]);
        if (j < 0) continue;
        lact_param *it = lact_params_at(&p, j);
        int64_t n = 1;
        for (int k = 0; k < it->ndim; k++)
            n *= it->shape[k];
        CHECK_MSG(n == numel[i], "%s has %lld elements", names[i], (long long)n);
    }
    /* λ is a vector: AdamW's decay (matrices only) leaves it alone. */
    CHECK(lact_params_at(&p, lact_params_find(&p, "m.lambda"))->ndim == 1);
    lact_params_free(&p);

    lact_params_init(&p, LACT_CPU);
    c = cfg_of(2, 8, 4);
    c.lambda_init = 0.2f; /* below the floor */
    CHECK_FAILS(lact_mesa_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = cfg_of(2, 8, 4);
    c.decay_init = 1.0f;
    CHECK_FAILS(lact_mesa_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = cfg_of(2, 8, 0);
    CHECK_FAILS(lact_mesa_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    c = cfg_of(2, 8, 4);
    c.op.cg_steps = 0;
    CHECK_FAILS(lact_mesa_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    lact_params_free(&p);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_direct(&ctx, 2, 8, 4);
    test_direct(&ctx, 4, 6, 64);
    lact_mesa_layer_cfg c = cfg_of(2, 8, 4);
    test_gradcheck(&ctx, "mesa (H 2, d 8, chunk 4)", &c);
    c = cfg_of(4, 6, 64);
    c.lambda_min = 0.0f;
    test_gradcheck(&ctx, "mesa (H 4, d 6, one chunk, no λ floor)", &c);
    c = cfg_of(1, 12, 5);
    c.decay_init = 0.6f;
    test_gradcheck(&ctx, "mesa (H 1, d 12, chunk 5, fast decay)", &c);
    test_decode(&ctx, 4);
    test_decode(&ctx, 64);
    test_params_and_errors();
    lact_ctx_free(&ctx);
    return check_summary("nn_mesa_layer");
}
