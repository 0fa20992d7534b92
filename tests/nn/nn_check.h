/* Shared by the layer tests: a layer behind two function pointers, an arena
 * sized by a measuring pass, and a float gradient check by central
 * differences of L = Σ r ⊙ y on every parameter and on x. */
#ifndef LACT_TESTS_NN_CHECK_H
#define LACT_TESTS_NN_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/arena.h"
#include "core/base/philox.h"
#include "core/nn/params.h"
#include "tests/support/check.h"

typedef lact_status (*nn_forward_fn)(lact_ctx *ctx, void *layer, lact_arena *ar, void *saved,
                                     lact_tensor *y, const lact_tensor *x);
typedef lact_status (*nn_backward_fn)(lact_ctx *ctx, void *layer, lact_arena *ar,
                                      const void *saved, lact_tensor *dx, const lact_tensor *dy);

typedef struct nn_case {
    const char *name;
    lact_ctx *ctx;
    lact_params *params;
    void *layer, *saved;
    nn_forward_fn forward;
    nn_backward_fn backward;
    lact_tensor x, y, r, dx; /* CPU, [B, L, D] */
    lact_arena arena;
    size_t peak;
    float h;    /* finite-difference step (4e-3 by default) */
    double tol; /* tolerance scale: 1 = 1e-2 relative, 2e-3 of the largest gradient */
} nn_case;

static inline void nn_fill(lact_tensor *t, uint64_t seed, float scale) {
    float *p = t->data;
    int64_t n = lact_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        p[i] = scale * lact_philox_normal(seed, 7, (uint64_t)i);
}

/* Allocates x, y, r, dx, fills x and r, and sizes the arena with a measuring
 * pass of forward + backward; checks that the real pass peaks the same. */
static inline lact_status nn_case_init(nn_case *c, int64_t B, int64_t L, int64_t D, uint64_t seed) {
    int64_t shape[3] = {B, L, D};
    LACT_TRY(lact_tensor_alloc(&c->x, LACT_F32, LACT_CPU, 3, shape));
    LACT_TRY(lact_tensor_alloc(&c->y, LACT_F32, LACT_CPU, 3, shape));
    LACT_TRY(lact_tensor_alloc(&c->r, LACT_F32, LACT_CPU, 3, shape));
    LACT_TRY(lact_tensor_alloc(&c->dx, LACT_F32, LACT_CPU, 3, shape));
    if (c->h == 0) c->h = 4e-3f;
    if (c->tol == 0) c->tol = 1.0;
    nn_fill(&c->x, seed, 1.0f);
    nn_fill(&c->r, seed + 1, 1.0f);
    lact_arena m;
    lact_arena_init_measure(&m, LACT_CPU);
    LACT_TRY(c->forward(c->ctx, c->layer, &m, c->saved, &c->y, &c->x));
    LACT_TRY(c->backward(c->ctx, c->layer, &m, c->saved, &c->dx, &c->r));
    c->peak = m.peak;
    LACT_TRY(lact_arena_init(&c->arena, LACT_CPU, c->peak));
    return LACT_OK;
}

static inline void nn_case_free(nn_case *c) {
    lact_tensor_free(&c->x);
    lact_tensor_free(&c->y);
    lact_tensor_free(&c->r);
    lact_tensor_free(&c->dx);
    lact_arena_free(&c->arena);
}

/* Forward (+ backward with dy = r when grads): grads accumulate into a
 * zeroed store. */
static inline lact_status nn_case_run(nn_case *c, bool grads) {
    lact_arena_reset(&c->arena);
    LACT_TRY(c->forward(c->ctx, c->layer, &c->arena, c->saved, &c->y, &c->x));
    if (!grads) return LACT_OK;
    LACT_TRY(lact_params_zero_grad(c->params));
    return c->backward(c->ctx, c->layer, &c->arena, c->saved, &c->dx, &c->r);
}

static inline double nn_case_loss(nn_case *c) {
    if (nn_case_run(c, false) != LACT_OK) return NAN;
    const float *y = c->y.data, *r = c->r.data;
    double s = 0;
    for (int64_t i = 0; i < lact_tensor_numel(&c->y); i++)
        s += (double)r[i] * (double)y[i];
    return s;
}

/* Central differences on n_pick random elements of t plus its largest
 * analytic gradient; returns the worst error ratio (≤ 1 passes). */
static inline double nn_check_tensor(nn_case *c, const char *what, float *w, const float *g,
                                     int64_t n, int n_pick, uint64_t seed) {
    const float h = c->h;
    double gmax = 0;
    int64_t imax = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(g[i]) > gmax) {
            gmax = fabs(g[i]);
            imax = i;
        }
    double worst = 0;
    for (int k = 0; k <= n_pick; k++) {
        int64_t i = k == n_pick ? imax
                                : (int64_t)(lact_philox_uniform(seed, 11, (uint64_t)k) * (float)n);
        if (i >= n) i = n - 1;
        float w0 = w[i];
        w[i] = w0 + h;
        double lp = nn_case_loss(c);
        w[i] = w0 - h;
        double lm = nn_case_loss(c);
        w[i] = w0;
        double num = (lp - lm) / (2.0 * h), ana = g[i];
        double tol = c->tol * (1e-2 * fmax(fabs(num), fabs(ana)) + 2e-3 * gmax + 2e-4);
        double ratio = fabs(num - ana) / tol;
        if (ratio > worst) worst = ratio;
        CHECK_MSG(ratio <= 1.0, "%s: %s[%lld]: numeric %.6g, analytic %.6g (max |g| %.3g)",
                  c->name, what, (long long)i, num, ana, gmax);
    }
    return worst;
}

/* Every parameter (and x) is checked; every parameter must also receive a
 * non-zero gradient (a zero one means a path is cut). */
static inline void nn_gradcheck(nn_case *c, int n_pick) {
    CHECK_OK(nn_case_run(c, true));
    lact_params *p = c->params;
    int64_t total = p->padded;
    float *g = malloc((size_t)total * sizeof *g);
    int64_t nx = lact_tensor_numel(&c->x);
    float *gx = malloc((size_t)nx * sizeof *gx);
    if (!g || !gx) {
        CHECK(!"out of memory");
        free(g);
        free(gx);
        return;
    }
    memcpy(g, p->grads, (size_t)total * sizeof *g);
    memcpy(gx, c->dx.data, (size_t)nx * sizeof *gx);
    double worst = 0;
    for (int i = 0; i < lact_params_count(p); i++) {
        lact_param *it = lact_params_at(p, i);
        int64_t n = lact_tensor_numel(&it->w);
        const float *gi = g + it->offset;
        double gmax = 0;
        for (int64_t j = 0; j < n; j++) gmax = fmax(gmax, fabs(gi[j]));
        CHECK_MSG(gmax > 0, "%s: parameter %s has an all-zero gradient", c->name, it->name);
        double r = nn_check_tensor(c, it->name, it->w.data, gi, n, n_pick, 100 + (uint64_t)i);
        if (r > worst) worst = r;
    }
    double r = nn_check_tensor(c, "x", c->x.data, gx, nx, 2 * n_pick, 99);
    if (r > worst) worst = r;
    printf("%s: gradcheck worst error / tolerance = %.3f\n", c->name, worst);
    free(g);
    free(gx);
}

#endif
