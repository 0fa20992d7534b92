/* The language model: float central differences on sampled elements of every
 * parameter (both mixers, tied and untied heads), the measuring arena's
 * peak equal to the real pass's, ignored targets, and config errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/nn/lm_model.h"
#include "tests/support/check.h"

enum { B = 2, L = 9, V = 11 };

typedef struct setup {
    lact_lm m;
    lact_tensor ids, targets, loss, dloss;
    lact_arena arena;
    size_t peak;
} setup;

static lact_status setup_init(setup *s, lact_ctx *ctx, const lact_lm_cfg *cfg, uint64_t seed) {
    memset(s, 0, sizeof *s);
    LACT_TRY(lact_lm_init(&s->m, cfg, LACT_CPU));
    LACT_TRY(lact_lm_init_values(ctx, &s->m, seed));
    /* Norm weights away from one, so their gradients are tested off the identity. */
    for (int i = 0; i < lact_params_count(&s->m.params); i++) {
        lact_param *p = lact_params_at(&s->m.params, i);
        if (p->init.kind != LACT_INIT_NORMAL) {
            float *w = p->w.data;
            for (int64_t j = 0; j < lact_tensor_numel(&p->w); j++)
                w[j] += 0.2f * lact_philox_normal(seed, 3 + (uint64_t)i, (uint64_t)j);
        }
    }
    int64_t shape[2] = {B, L}, flat[1] = {B * L};
    LACT_TRY(lact_tensor_alloc(&s->ids, LACT_I32, LACT_CPU, 2, shape));
    LACT_TRY(lact_tensor_alloc(&s->targets, LACT_I32, LACT_CPU, 2, shape));
    LACT_TRY(lact_tensor_alloc(&s->loss, LACT_F32, LACT_CPU, 1, flat));
    LACT_TRY(lact_tensor_alloc(&s->dloss, LACT_F32, LACT_CPU, 1, flat));
    int32_t *ids = s->ids.data, *tg = s->targets.data;
    float *r = s->dloss.data;
    for (int i = 0; i < B * L; i++) {
        ids[i] = (int32_t)(lact_philox_uniform(seed, 5, (uint64_t)i) * V) % V;
        tg[i] = (int32_t)(lact_philox_uniform(seed, 6, (uint64_t)i) * V) % V;
        r[i] = 0.5f + lact_philox_uniform(seed, 8, (uint64_t)i);
    }
    tg[3] = -1; /* ignored */
    lact_arena m;
    lact_arena_init_measure(&m, LACT_CPU);
    LACT_TRY(lact_lm_forward(ctx, &s->m, &m, &s->loss, &s->ids, &s->targets));
    LACT_TRY(lact_lm_backward(ctx, &s->m, &m, &s->dloss));
    s->peak = m.peak;
    return lact_arena_init(&s->arena, LACT_CPU, s->peak);
}

static void setup_free(setup *s) {
    lact_lm_free(&s->m);
    lact_tensor_free(&s->ids);
    lact_tensor_free(&s->targets);
    lact_tensor_free(&s->loss);
    lact_tensor_free(&s->dloss);
    lact_arena_free(&s->arena);
}

/* Σ r ⊙ loss. */
static double total_loss(lact_ctx *ctx, setup *s) {
    lact_arena_reset(&s->arena);
    if (lact_lm_forward(ctx, &s->m, &s->arena, &s->loss, &s->ids, &s->targets) != LACT_OK)
        return NAN;
    const float *l = s->loss.data, *r = s->dloss.data;
    double t = 0;
    for (int i = 0; i < B * L; i++)
        t += (double)r[i] * l[i];
    return t;
}

static void gradcheck(lact_ctx *ctx, const char *name, const lact_lm_cfg *cfg) {
    setup s;
    lact_status st = setup_init(&s, ctx, cfg, 42);
    CHECK_OK(st);
    if (st != LACT_OK) {
        setup_free(&s);
        return;
    }
    lact_arena_reset(&s.arena);
    CHECK_OK(lact_params_zero_grad(&s.m.params));
    CHECK_OK(lact_lm_forward(ctx, &s.m, &s.arena, &s.loss, &s.ids, &s.targets));
    CHECK(((float *)s.loss.data)[3] == 0.0f);
    CHECK_OK(lact_lm_backward(ctx, &s.m, &s.arena, &s.dloss));
    CHECK_MSG(s.arena.peak == s.peak, "%s: real peak %zu, measured %zu", name, s.arena.peak,
              s.peak);
    lact_params *p = &s.m.params;
    float *g = malloc((size_t)p->padded * sizeof *g);
    memcpy(g, p->grads, (size_t)p->padded * sizeof *g);
    const float h = 4e-3f;
    double worst = 0;
    for (int i = 0; i < lact_params_count(p); i++) {
        lact_param *it = lact_params_at(p, i);
        int64_t n = lact_tensor_numel(&it->w);
        const float *gi = g + it->offset;
        float *w = it->w.data;
        double gmax = 0;
        int64_t imax = 0;
        for (int64_t j = 0; j < n; j++)
            if (fabs(gi[j]) > gmax) gmax = fabs(gi[j]), imax = j;
        CHECK_MSG(gmax > 0, "%s: %s has an all-zero gradient", name, it->name);
        for (int k = 0; k <= 3; k++) {
            int64_t j = k == 3 ? imax
                               : (int64_t)(lact_philox_uniform(7, (uint64_t)i, (uint64_t)k) * n);
            if (j >= n) j = n - 1;
            float w0 = w[j];
            w[j] = w0 + h;
            double lp = total_loss(ctx, &s);
            w[j] = w0 - h;
            double lm = total_loss(ctx, &s);
            w[j] = w0;
            double num = (lp - lm) / (2.0 * h), ana = gi[j];
            double tol = 2e-2 * fmax(fabs(num), fabs(ana)) + 5e-3 * gmax + 2e-4;
            double ratio = fabs(num - ana) / tol;
            if (ratio > worst) worst = ratio;
            CHECK_MSG(ratio <= 1.0, "%s: %s[%lld]: numeric %.6g, analytic %.6g (max |g| %.3g)",
                      name, it->name, (long long)j, num, ana, gmax);
        }
    }
    printf("%s: %d parameters, gradcheck worst error / tolerance = %.3f\n", name,
           lact_params_count(p), worst);
    free(g);
    setup_free(&s);
}

static lact_lm_cfg small(const char *mixers, bool tied) {
    lact_lm_cfg c = lact_lm_defaults();
    c.vocab = V, c.d_model = 8, c.n_layers = 2, c.n_heads = 2;
    snprintf(c.mixers, sizeof c.mixers, "%s", mixers);
    c.mlp_mult = 2.0;
    c.chunk = 4, c.window = 4;
    c.base_lr = 0.3, c.muon = false;
    c.init_std = 0.3;
    c.tie_embeddings = tied;
    return c;
}

static void test_errors(void) {
    lact_lm m;
    lact_lm_cfg c = small("lact,rnn", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    CHECK(strstr(lact_errmsg(), "'rnn'") != NULL);
    c = small("lact,attention,lact", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    c = small("lact,,attention", true);
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    c = small("lact", true);
    c.n_heads = 3;
    CHECK_FAILS(lact_lm_init(&m, &c, LACT_CPU), LACT_E_ARG);
    /* The pattern repeats: "attention" for one layer names both layers. */
    c = small("attention", true);
    lact_mixer mx[2];
    CHECK_OK(lact_lm_parse_mixers(&c, mx));
    CHECK(mx[0] == LACT_MIXER_ATTENTION && mx[1] == LACT_MIXER_ATTENTION);
    c.n_layers = 2;
    snprintf(c.mixers, sizeof c.mixers, " lact , attn");
    CHECK_OK(lact_lm_parse_mixers(&c, mx));
    CHECK(mx[0] == LACT_MIXER_LACT && mx[1] == LACT_MIXER_ATTENTION);
}

int main(void) {
    lact_ctx ctx;
    lact_status st = lact_ctx_init(&ctx, LACT_CPU, 1);
    CHECK_OK(st);
    if (st != LACT_OK) return check_summary("nn_lm_model");
    lact_lm_cfg c = small("lact,attention", false);
    gradcheck(&ctx, "lact+attention untied", &c);
    c = small("attention,lact", true);
    c.momentum = false;
    gradcheck(&ctx, "attention+lact tied", &c);
    c = small("lact", true);
    c.window = 0;
    gradcheck(&ctx, "lact without window", &c);
    test_errors();
    lact_ctx_free(&ctx);
    return check_summary("nn_lm_model");
}
