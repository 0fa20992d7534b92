/* Shared by the ttt tests: random cases in double, the orders under test
 * and relative errors. */
#ifndef LACT_TEST_TTT_COMMON_H
#define LACT_TEST_TTT_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/ttt_ref.h"
#include "kernels/ttt.h"

#define TC_MAX_OPS 256

typedef enum { TC_CAUSAL, TC_BIDIR, TC_CUSTOM } tc_order;

typedef struct tc_case {
    int64_t n, len, d, dh, chunk;
    bool mom;
    lact_ttt_muon muon;
    tc_order order;
    int save_every; /* args.save_every */
    lact_ttt_op ops[TC_MAX_OPS];
    lact_ttt_args args;
    /* inputs, double; x[] indexes them in the order of lact_ttt_in_f64 */
    double *x[10];
    int64_t numel[10];
} tc_case;

static inline const char *tc_name(int i) {
    static const char *const names[10] = {"q",   "k",        "v",  "lr0", "lr1",
                                          "lr2", "momentum", "w0", "w1",  "w2"};
    return names[i];
}

static uint64_t tc_rng_state;
static inline double tc_uniform(void) {
    uint64_t z = (tc_rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
static inline double tc_range(double lo, double hi) {
    return lo + (hi - lo) * tc_uniform();
}

static inline void tc_fill(double *x, int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++)
        x[i] = tc_range(lo, hi);
}

/* Rows of x [rows, d] scaled to unit norm, as the layer feeds q and k. */
static inline void tc_unit_rows(double *x, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++)
            ss += x[r * d + j] * x[r * d + j];
        for (int64_t j = 0; j < d; j++)
            x[r * d + j] /= sqrt(ss) + 1e-5;
    }
}

/* A multi-round order with overlapping updates and applies, an apply-only
 * op before any update, and ops that both apply and update. */
static inline int64_t tc_custom_order(lact_ttt_op *ops, int64_t L) {
    int64_t a = L / 4, b = L / 2, c = (3 * L) / 4;
    int64_t n = 0;
    ops[n++] = (lact_ttt_op){0, a + 1, false, true};
    ops[n++] = (lact_ttt_op){0, b, true, false};
    ops[n++] = (lact_ttt_op){a, c, true, true};
    ops[n++] = (lact_ttt_op){0, L, false, true};
    ops[n++] = (lact_ttt_op){b, L, true, false};
    ops[n++] = (lact_ttt_op){1, c, true, false};
    ops[n++] = (lact_ttt_op){c - 1, L, false, true};
    return n;
}

static inline void tc_make_order(tc_case *c) {
    int64_t n = 0;
    if (c->order == TC_CAUSAL)
        n = lact_ttt_order_causal(c->ops, TC_MAX_OPS, c->len, c->chunk);
    else if (c->order == TC_BIDIR)
        n = lact_ttt_order_bidirectional(c->ops, TC_MAX_OPS, c->len, (2 * c->len) / 3, c->chunk);
    else
        n = tc_custom_order(c->ops, c->len);
    c->args =
        (lact_ttt_args){.ops = c->ops, .n_ops = n, .muon = c->muon, .save_every = c->save_every};
}

/* Random inputs like the layer's: unit q, k; lrs large enough that the
 * updates change the weights a lot (so every path matters numerically). */
static inline bool tc_init(tc_case *c, uint64_t seed) {
    tc_rng_state = seed;
    int64_t N = c->n, L = c->len, d = c->d, dh = c->dh;
    int64_t sizes[10] = {N * L * d, N * L * d,          N * L * d,  N * L,      N * L,
                         N * L,     c->mom ? N * L : 0, N * dh * d, N * d * dh, N * dh * d};
    for (int i = 0; i < 10; i++) {
        c->numel[i] = sizes[i];
        c->x[i] = sizes[i] ? malloc((size_t)sizes[i] * sizeof(double)) : NULL;
        if (sizes[i] && !c->x[i]) return false;
    }
    for (int i = 0; i < 3; i++)
        tc_fill(c->x[i], sizes[i], -1, 1);
    tc_unit_rows(c->x[0], N * L, d);
    tc_unit_rows(c->x[1], N * L, d);
    for (int i = 3; i < 6; i++)
        tc_fill(c->x[i], sizes[i], 0.05, 0.4);
    if (c->mom) tc_fill(c->x[6], sizes[6], 0.3, 0.95);
    tc_fill(c->x[7], sizes[7], -sqrt(3.0 / d), sqrt(3.0 / d));
    tc_fill(c->x[8], sizes[8], -sqrt(3.0 / dh), sqrt(3.0 / dh));
    tc_fill(c->x[9], sizes[9], -sqrt(3.0 / d), sqrt(3.0 / d));
    tc_make_order(c);
    return true;
}

static inline void tc_free(tc_case *c) {
    for (int i = 0; i < 10; i++)
        free(c->x[i]), c->x[i] = NULL;
}

static inline lact_ttt_in_f64 tc_in64(const tc_case *c) {
    return (lact_ttt_in_f64){c->x[0], c->x[1], c->x[2], c->x[3], c->x[4],
                             c->x[5], c->x[6], c->x[7], c->x[8], c->x[9]};
}

static inline lact_ttt_dims tc_dims(const tc_case *c) {
    return (lact_ttt_dims){c->n, c->len, c->d, c->dh, c->n};
}

static inline int64_t tc_state_numel(const tc_case *c) {
    return c->n * lact_ttt_state_numel(&c->args, c->mom, c->d, c->dh);
}

/* ‖a − b‖ / ‖b‖ (absolute when ‖b‖ = 0). */
static inline double tc_rel_err(const double *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++)
        num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double tc_rel_err_f(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        num += e * e, den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline const char *tc_muon_name(lact_ttt_muon m) {
    return m == LACT_TTT_MUON_OFF ? "off" : m == LACT_TTT_MUON_TABLE ? "table" : "fixed";
}
static inline const char *tc_order_name(tc_order o) {
    return o == TC_CAUSAL ? "causal" : o == TC_BIDIR ? "bidirectional" : "custom";
}

#endif
