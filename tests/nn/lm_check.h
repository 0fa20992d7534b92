/* Shared by the language-model tests: a model on a fixed random batch, an
 * arena sized by a measuring forward + backward, and the float
 * central-difference check of Σ r ⊙ loss on sampled elements (and the
 * largest gradient) of every parameter. */
#ifndef LACT_TESTS_NN_LM_CHECK_H
#define LACT_TESTS_NN_LM_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/philox.h"
#include "core/nn/lm_model.h"
#include "tests/support/check.h"

typedef struct lm_case {
    lact_lm m;
    lact_tensor ids, targets, loss, dloss; /* ids, targets [B, L]; loss, dloss = r [B·L] */
    lact_arena arena;
    size_t peak;
    int64_t n; /* B·L */
} lm_case;

/* Ids in [0, vocab) from Philox stream `stream` of seed. */
static inline void lm_fill_ids(lact_tensor *t, int64_t vocab, uint64_t seed, uint64_t stream) {
    int32_t *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = (int32_t)(lact_philox_uniform(seed, stream, (uint64_t)i) * (float)vocab) % vocab;
}

static inline void lm_case_free(lm_case *s) {
    lact_lm_free(&s->m);
    lact_tensor_free(&s->ids);
    lact_tensor_free(&s->targets);
    lact_tensor_free(&s->loss);
    lact_tensor_free(&s->dloss);
    lact_arena_free(&s->arena);
}

/* The model of cfg with seeded weights, the parameters that start at a
 * constant (norm weights, biases, λ) moved off it so their gradients are
 * tested away from the identity, a random batch (target `ignored` set to −1
 * when ≥ 0) and loss weights r ∈ [0.5, 1.5). */
static inline lact_status lm_case_init(lm_case *s, lact_ctx *ctx, const lact_lm_cfg *cfg, int64_t B,
                                       int64_t L, uint64_t seed, int64_t ignored) {
    memset(s, 0, sizeof *s);
    s->n = B * L;
    LACT_TRY(lact_lm_init(&s->m, cfg, LACT_CPU));
    LACT_TRY(lact_lm_init_values(ctx, &s->m, seed));
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
    lm_fill_ids(&s->ids, cfg->vocab, seed, 5);
    lm_fill_ids(&s->targets, cfg->vocab, seed, 6);
    if (ignored >= 0) ((int32_t *)s->targets.data)[ignored] = -1;
    float *r = s->dloss.data;
    for (int64_t i = 0; i < s->n; i++)
        r[i] = 0.5f + lact_philox_uniform(seed, 8, (uint64_t)i);
    lact_arena m;
    lact_arena_init_measure(&m, LACT_CPU);
    LACT_TRY(lact_lm_forward(ctx, &s->m, &m, &s->loss, &s->ids, &s->targets));
    LACT_TRY(lact_lm_backward(ctx, &s->m, &m, &s->dloss));
    s->peak = m.peak;
    return lact_arena_init(&s->arena, LACT_CPU, s->peak);
}

/* Σ r ⊙ loss. */
static inline double lm_case_loss(lact_ctx *ctx, lm_case *s) {
    lact_arena_reset(&s->arena);
    if (lact_lm_forward(ctx, &s->m, &s->arena, &s->loss, &s->ids, &s->targets) != LACT_OK)
        return NAN;
    const float *l = s->loss.data, *r = s->dloss.data;
    double t = 0;
    for (int64_t i = 0; i < s->n; i++)
        t += (double)r[i] * l[i];
    return t;
}

/* One real forward + backward into the zeroed gradients; its arena peak
 * must equal the measuring pass's. The forward's losses stay in s->loss. */
static inline void lm_case_step(lact_ctx *ctx, const char *name, lm_case *s) {
    lact_arena_reset(&s->arena);
    CHECK_OK(lact_params_zero_grad(&s->m.params));
    CHECK_OK(lact_lm_forward(ctx, &s->m, &s->arena, &s->loss, &s->ids, &s->targets));
    CHECK_OK(lact_lm_backward(ctx, &s->m, &s->arena, &s->dloss));
    CHECK_MSG(s->arena.peak == s->peak, "%s: real peak %zu, measured %zu", name, s->arena.peak,
              s->peak);
}

/* After lm_case_step: every parameter's gradient is non-zero, and at three
 * sampled elements and the largest one it agrees with central differences
 * (step 4e-3). Prints the worst error / tolerance. */
static inline void lm_gradcheck(lact_ctx *ctx, const char *name, lm_case *s) {
    lact_params *p = &s->m.params;
    float *g = malloc((size_t)p->padded * sizeof *g);
    CHECK(g != NULL);
    if (!g) return;
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
            int64_t j =
                k == 3 ? imax : (int64_t)(lact_philox_uniform(7, (uint64_t)i, (uint64_t)k) * n);
            if (j >= n) j = n - 1;
            float w0 = w[j];
            w[j] = w0 + h;
            double lp = lm_case_loss(ctx, s);
            w[j] = w0 - h;
            double lm = lm_case_loss(ctx, s);
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
}

#endif
