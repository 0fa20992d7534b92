/* The gated attention layer: the whole forward against a direct composition
 * in double (GQA, qk RMSNorm, RoPE, causal and window masks, elementwise
 * gate), and gradients by central differences for several configurations. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/nn/attn_layer.h"
#include "nn_check.h"

enum { B = 2, L = 13, D = 16, H = 2, HD = 8 };

static lact_status fwd(lact_ctx *ctx, void *layer, lact_arena *ar, void *saved, lact_tensor *y,
                       const lact_tensor *x) {
    return lact_attn_layer_forward(ctx, layer, ar, saved, y, x, NULL);
}
static lact_status bwd(lact_ctx *ctx, void *layer, lact_arena *ar, const void *saved,
                       lact_tensor *dx, const lact_tensor *dy) {
    return lact_attn_layer_backward(ctx, layer, ar, saved, dx, dy);
}

typedef struct setup {
    lact_params params;
    lact_attn_layer layer;
    lact_attn_layer_saved saved;
    nn_case c;
} setup;

static lact_status setup_init(setup *s, lact_ctx *ctx, const char *name,
                              const lact_attn_layer_cfg *cfg, uint64_t seed) {
    memset(s, 0, sizeof *s);
    lact_params_init(&s->params, LACT_CPU);
    LACT_TRY(lact_attn_layer_declare(&s->layer, &s->params, "layers.1.attn", cfg));
    LACT_TRY(lact_params_alloc(&s->params));
    LACT_TRY(lact_params_init_values(ctx, &s->params, seed));
    for (int i = 0; i < lact_params_count(&s->params); i++) {
        lact_param *p = lact_params_at(&s->params, i);
        if (p->init.kind != LACT_INIT_NORMAL) {
            float *w = p->w.data;
            for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++)
                w[j] += 0.3f * lact_philox_normal(seed, 3 + (uint64_t)i, (uint64_t)j);
        }
    }
    s->c = (nn_case){.name = name, .ctx = ctx, .params = &s->params, .layer = &s->layer,
                     .saved = &s->saved, .forward = fwd, .backward = bwd};
    return nn_case_init(&s->c, B, L, D, seed + 10);
}

static void setup_free(setup *s) {
    nn_case_free(&s->c);
    lact_params_free(&s->params);
}

static lact_attn_layer_cfg cfg_of(int64_t kv_heads, lact_attn_mask mask, lact_attn_gate gate,
                                  bool qk_norm, bool rope) {
    lact_attn_layer_cfg c = lact_attn_layer_defaults(D, H);
    c.kv_heads = kv_heads;
    c.head_dim = HD;
    c.mask.mask = mask;
    c.mask.window = 5;
    c.mask.block = 4;
    c.gate = gate;
    c.qk_norm = qk_norm;
    c.rope = rope;
    c.init_std = 0.4f;
    return c;
}

static const float *W(setup *s, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "layers.1.attn.%s", suffix);
    int i = lact_params_find(&s->params, name);
    return i < 0 ? NULL : lact_params_at(&s->params, i)->w.data;
}

/* a [rows_out = n, D] row-major weight times x_t. */
static void project(double *out, const float *w, const float *xt, int n) {
    for (int c = 0; c < n; c++) {
        double z = 0;
        for (int i = 0; i < D; i++) z += (double)w[c * D + i] * xt[i];
        out[c] = z;
    }
}

/* Per head: RMSNorm with weight nw (or none), then RoPE at position p. */
static void head_prep(double *v, const float *nw, bool rope, int p, float eps) {
    if (nw) {
        double ms = 0;
        for (int j = 0; j < HD; j++) ms += v[j] * v[j];
        double rs = 1.0 / sqrt(ms / HD + eps);
        for (int j = 0; j < HD; j++) v[j] = v[j] * rs * nw[j];
    }
    if (rope) {
        for (int i = 0; i < HD / 2; i++) {
            double ang = p * pow(10000.0, -2.0 * i / HD), c = cos(ang), s = sin(ang);
            double a = v[i], b = v[i + HD / 2];
            v[i] = a * c - b * s;
            v[i + HD / 2] = b * c + a * s;
        }
    }
}

static void test_direct(lact_ctx *ctx, int64_t kv, lact_attn_mask mask) {
    setup s;
    lact_attn_layer_cfg cfg = cfg_of(kv, mask, LACT_ATTN_GATE_ELEMENTWISE, true, true);
    CHECK_OK(setup_init(&s, ctx, "direct", &cfg, 31));
    CHECK_OK(nn_case_run(&s.c, false));
    const float *x = s.c.x.data, *wq = W(&s, "wq"), *wk = W(&s, "wk"), *wv = W(&s, "wv"),
                *wg = W(&s, "wg"), *bg = W(&s, "bg"), *qn = W(&s, "q_norm"),
                *kn = W(&s, "k_norm"), *wo = W(&s, "wo");
    static double q[B][L][H * HD], k[B][L][H * HD], v[B][L][H * HD], g[B][L][H * HD];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            const float *xt = x + ((int64_t)b * L + t) * D;
            project(q[b][t], wq, xt, H * HD);
            project(k[b][t], wk, xt, (int)kv * HD);
            project(v[b][t], wv, xt, (int)kv * HD);
            project(g[b][t], wg, xt, H * HD);
            for (int h = 0; h < H; h++) head_prep(q[b][t] + h * HD, qn, true, t, cfg.norm_eps);
            for (int h = 0; h < kv; h++) head_prep(k[b][t] + h * HD, kn, true, t, cfg.norm_eps);
        }
    double err = 0, mag = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < L; t++) {
            double u[H * HD];
            for (int h = 0; h < H; h++) {
                int hk = h / (H / (int)kv);
                double sc[L], mx = -1e300, sum = 0;
                int lo = mask == LACT_ATTN_WINDOW ? (t - 4 > 0 ? t - 4 : 0) : 0;
                for (int j = lo; j <= t; j++) {
                    double dot = 0;
                    for (int c = 0; c < HD; c++) dot += q[b][t][h * HD + c] * k[b][j][hk * HD + c];
                    sc[j] = dot / sqrt((double)HD);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = lo; j <= t; j++) sum += exp(sc[j] - mx);
                for (int c = 0; c < HD; c++) {
                    double o = 0;
                    for (int j = lo; j <= t; j++) o += exp(sc[j] - mx) / sum * v[b][j][hk * HD + c];
                    double gl = g[b][t][h * HD + c] + bg[h * HD + c];
                    u[h * HD + c] = o / (1.0 + exp(-gl));
                }
            }
            for (int c = 0; c < D; c++) {
                double yc = 0;
                for (int i = 0; i < H * HD; i++) yc += (double)wo[c * H * HD + i] * u[i];
                err = fmax(err, fabs(yc - ((float *)s.c.y.data)[((int64_t)b * L + t) * D + c]));
                mag = fmax(mag, fabs(yc));
            }
        }
    printf("direct (kv_heads %lld, mask %d): max |y| %.3g, error %.3g\n", (long long)kv, (int)mask,
           mag, err);
    CHECK(mag > 1e-2);
    CHECK(err < 2e-5 * (1 + mag));
    setup_free(&s);
}

static void test_gradcheck(lact_ctx *ctx, const char *name, const lact_attn_layer_cfg *cfg) {
    setup s;
    CHECK_OK(setup_init(&s, ctx, name, cfg, 41));
    nn_gradcheck(&s.c, 3);
    CHECK(s.c.arena.peak == s.c.peak);
    setup_free(&s);
}

int main(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    test_direct(&ctx, H, LACT_ATTN_CAUSAL);
    test_direct(&ctx, 1, LACT_ATTN_WINDOW);
    lact_attn_layer_cfg c = cfg_of(H, LACT_ATTN_CAUSAL, LACT_ATTN_GATE_ELEMENTWISE, true, true);
    test_gradcheck(&ctx, "attn (causal, gate, qk_norm, rope)", &c);
    c = cfg_of(1, LACT_ATTN_WINDOW, LACT_ATTN_GATE_HEAD, false, true);
    test_gradcheck(&ctx, "attn (GQA, window, head gate, rope)", &c);
    c = cfg_of(1, LACT_ATTN_BLOCK_CAUSAL, LACT_ATTN_GATE_NONE, true, false);
    test_gradcheck(&ctx, "attn (GQA, block-causal, no gate, qk_norm)", &c);

    lact_params p;
    lact_params_init(&p, LACT_CPU);
    lact_attn_layer l;
    c = cfg_of(H, LACT_ATTN_CAUSAL, LACT_ATTN_GATE_ELEMENTWISE, true, true);
    c.kv_heads = 3; /* does not divide H */
    CHECK_FAILS(lact_attn_layer_declare(&l, &p, "bad", &c), LACT_E_ARG);
    lact_params_free(&p);
    lact_ctx_free(&ctx);
    return check_summary("nn_attn_layer");
}
