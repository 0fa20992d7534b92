/* The hand-written ttt backward against central finite differences of the
 * double forward, for every input, over Muon off/table/fixed, momentum
 * on/off, causal, bidirectional and a custom multi-round order, with the
 * weights after every update saved or after every second one (the backward
 * recomputing the others). */
#include <math.h>
#include <stdio.h>

#include "tests/kernels/test_ttt_common.h"
#include "tests/support/check.h"

/* Five Newton–Schulz steps compose to a polynomial of degree 5^5, steep
 * where small singular values sit, so the difference quotient is the
 * fourth-order one with a small step (worst error seen ~5e-8). */
#define GC_STEP 1e-6
#define GC_TOL 1e-6

/* Σ d_o ⊙ o for the case's current inputs. */
static double gc_loss(const tc_case *c, const double *d_o, double *o) {
    lact_ttt_in_f64 in = tc_in64(c);
    lact_ttt_dims dims = tc_dims(c);
    if (lact_cpu_ttt_forward_f64(o, NULL, &in, &dims, &c->args) != LACT_OK) return NAN;
    double s = 0;
    for (int64_t i = 0; i < c->n * c->len * c->d; i++)
        s += d_o[i] * o[i];
    return s;
}

/* Numeric gradient of input i into num. */
static void gc_numeric(tc_case *c, int i, const double *d_o, double *o, double *num) {
    for (int64_t j = 0; j < c->numel[i]; j++) {
        double x = c->x[i][j], h = GC_STEP, f[4];
        static const double off[4] = {-2, -1, 1, 2};
        for (int s = 0; s < 4; s++) {
            c->x[i][j] = x + off[s] * h;
            f[s] = gc_loss(c, d_o, o);
        }
        c->x[i][j] = x;
        num[j] = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
    }
}

/* Analytic gradients of every input (grad[i] like c->x[i]). */
static bool gc_analytic(const tc_case *c, const double *d_o, double **grad) {
    lact_ttt_in_f64 in = tc_in64(c);
    lact_ttt_dims dims = tc_dims(c);
    int64_t S = tc_state_numel(c);
    double *state = malloc((size_t)S * sizeof(double));
    double *o = malloc((size_t)(c->n * c->len * c->d) * sizeof(double));
    lact_ttt_grad_f64 g = {grad[0], grad[1], grad[2], grad[3], grad[4],
                           grad[5], grad[6], grad[7], grad[8], grad[9]};
    bool ok = state && o;
    ok = ok && lact_cpu_ttt_forward_f64(o, state, &in, &dims, &c->args) == LACT_OK;
    ok = ok && lact_cpu_ttt_backward_f64(&g, d_o, state, &in, &dims, &c->args) == LACT_OK;
    free(state), free(o);
    return ok;
}

/* Checks the analytic gradients of case c; with numeric_muon set, the
 * numeric side uses another Muon setting and the check must FAIL (returns
 * the worst relative error either way). */
static double gc_case(tc_case *c, uint64_t seed, bool expect_fail, lact_ttt_muon numeric_muon) {
    CHECK(tc_init(c, seed));
    int64_t no = c->n * c->len * c->d;
    double *d_o = malloc((size_t)no * sizeof(double)), *o = malloc((size_t)no * sizeof(double));
    tc_fill(d_o, no, -1, 1);
    double *grad[10] = {0}, *num = NULL;
    int64_t max_numel = 0;
    for (int i = 0; i < 10; i++) {
        if (!c->numel[i]) continue;
        grad[i] = malloc((size_t)c->numel[i] * sizeof(double));
        max_numel = c->numel[i] > max_numel ? c->numel[i] : max_numel;
    }
    num = malloc((size_t)max_numel * sizeof(double));
    CHECK(gc_analytic(c, d_o, grad));
    if (expect_fail) c->args.muon = numeric_muon;
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        if (!c->numel[i]) continue;
        gc_numeric(c, i, d_o, o, num);
        double e = tc_rel_err(grad[i], num, c->numel[i]);
        worst = e > worst ? e : worst;
        if (expect_fail) continue;
        CHECK_MSG(e < GC_TOL,
                  "d=%lld dh=%lld L=%lld C=%lld muon=%s mom=%d %s save_every=%d: d_%s rel err %.3g",
                  (long long)c->d, (long long)c->dh, (long long)c->len, (long long)c->chunk,
                  tc_muon_name(c->muon), c->mom, tc_order_name(c->order), c->save_every, tc_name(i),
                  e);
        /* A gradient that is identically zero would pass trivially. */
        double nn = 0;
        for (int64_t j = 0; j < c->numel[i]; j++)
            nn += num[j] * num[j];
        CHECK_MSG(nn > 0, "d_%s is zero", tc_name(i));
    }
    for (int i = 0; i < 10; i++)
        free(grad[i]);
    free(num), free(d_o), free(o);
    tc_free(c);
    return worst;
}

int main(void) {
    static const int64_t sizes[][4] = {
        /* d, dh, L, chunk: L never a multiple of the chunk */
        {4, 4, 7, 3}, {4, 8, 13, 5}, {8, 8, 17, 6}, {8, 16, 20, 8}, {4, 8, 19, 4},
    };
    int n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    uint64_t seed = 100;
    int k = 0;
    for (int muon = 0; muon < 3; muon++)
        for (int mom = 0; mom < 2; mom++)
            for (int order = 0; order < 3; order++, k++) {
                /* Every option combination at two sizes, cycling through them;
                 * the second saves every second update's weights. */
                for (int r = 0; r < 2; r++) {
                    const int64_t *s = sizes[(k + r * 2) % n_sizes];
                    tc_case c = {.n = 2,
                                 .d = s[0],
                                 .dh = s[1],
                                 .len = s[2],
                                 .chunk = s[3],
                                 .mom = mom,
                                 .muon = (lact_ttt_muon)muon,
                                 .order = (tc_order)order,
                                 .save_every = r + 1};
                    gc_case(&c, seed++, false, LACT_TTT_MUON_OFF);
                }
            }
    /* The check can fail: analytic gradients of one Muon setting against
     * numeric ones of the other are far apart. */
    tc_case c = {.n = 1,
                 .d = 4,
                 .dh = 8,
                 .len = 11,
                 .chunk = 4,
                 .mom = true,
                 .muon = LACT_TTT_MUON_TABLE,
                 .order = TC_CAUSAL};
    double e = gc_case(&c, 7, true, LACT_TTT_MUON_FIXED);
    CHECK_MSG(e > 1e-3, "muon table vs fixed gradients agree to %.3g", e);
    return check_summary("kernels_test_ttt_grad");
}
