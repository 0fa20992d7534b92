/* Every op of the table with a backward, on every test case: the analytic
 * gradients against central differences of L = Σ d_out · out (accumulated
 * in double) on a sample of the elements of each differentiable input. Also
 * checks that the table itself is consistent. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/philox.h"
#include "kernels/kernels.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

#define SEED 20240611u
#define MAX_SAMPLES 24
/* Relative step of the central differences: small enough for the O(h²)
 * error, large enough that float rounding of the outputs stays below it. */
#define STEP 4e-3f
#define NUMERIC_FLOOR 1e-3 /* below this ‖numeric‖ the error is absolute */

typedef struct gc_run {
    const lact_op_def *op;
    double params[LACT_OP_MAX_PARAMS];
    lact_tensor in[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
    lact_tensor d_in[LACT_OP_MAX_IO], d_out[LACT_OP_MAX_IO];
    int n_in, n_out;
} gc_run;

static void run_free(gc_run *r) {
    for (int i = 0; i < LACT_OP_MAX_IO; i++) {
        lact_tensor_free(&r->in[i]);
        lact_tensor_free(&r->out[i]);
        lact_tensor_free(&r->d_in[i]);
        lact_tensor_free(&r->d_out[i]);
    }
}

static bool present(const lact_tensor *t) {
    return t->data != NULL || t->ndim > 0;
}

static void fill_normal(lact_tensor *t, lact_rng *rng, float scale) {
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = scale * lact_rng_normal(rng);
}

/* L = Σ_k Σ_j d_out[k][j] · out[k][j], after a fresh forward. */
static bool eval_loss(gc_run *r, lact_ctx *ctx, double *loss) {
    if (r->op->forward(ctx, r->out, r->in, r->params) != LACT_OK) return false;
    double acc = 0.0;
    for (int k = 0; k < r->op->n_diff_outputs; k++) {
        const float *o = r->out[k].data, *d = r->d_out[k].data;
        for (int64_t j = 0; j < lact_tensor_numel(&r->out[k]); j++)
            acc += (double)d[j] * o[j];
    }
    *loss = acc;
    return true;
}

/* Relative error of input i's gradient over a sample of its elements. */
static double check_input(gc_run *r, lact_ctx *ctx, int i, lact_rng *rng) {
    lact_tensor *x = &r->in[i];
    float *px = x->data;
    const float *ga = r->d_in[i].data;
    int64_t n = lact_tensor_numel(x);
    int k = n < MAX_SAMPLES ? (int)n : MAX_SAMPLES;
    double diff2 = 0.0, num2 = 0.0;
    for (int s = 0; s < k; s++) {
        int64_t j = n <= MAX_SAMPLES ? s : (int64_t)(lact_rng_u32(rng) % (uint64_t)n);
        float orig = px[j];
        float step = STEP * fmaxf(1.0f, fabsf(orig));
        float xp = orig + step, xm = orig - step;
        double lp, lm;
        px[j] = xp;
        bool ok = eval_loss(r, ctx, &lp);
        px[j] = xm;
        ok = ok && eval_loss(r, ctx, &lm);
        px[j] = orig;
        if (!ok) return INFINITY;
        double numeric = (lp - lm) / ((double)xp - (double)xm);
        diff2 += (ga[j] - numeric) * (ga[j] - numeric);
        num2 += numeric * numeric;
    }
    return sqrt(diff2) / fmax(sqrt(num2), NUMERIC_FLOOR);
}

/* Runs one case; returns false when the op has no case c. */
static bool gradcheck_case(const lact_op_def *op, int c, lact_ctx *ctx) {
    gc_run r;
    memset(&r, 0, sizeof r);
    r.op = op;
    lact_op_default_params(op, r.params);
    if (!op->make_case(c, SEED, r.in, r.params)) return false;
    r.n_in = lact_op_n_inputs(op);
    r.n_out = lact_op_n_outputs(op);
    lact_tensor plan[LACT_OP_MAX_IO];
    memset(plan, 0, sizeof plan);
    lact_status st = op->plan(r.in, r.params, plan);
    CHECK_MSG(st == LACT_OK, "%s case %d: plan failed: %s", op->name, c, lact_errmsg());
    for (int k = 0; st == LACT_OK && k < r.n_out; k++) {
        CHECK_MSG(plan[k].dtype == LACT_F32 && plan[k].device == LACT_CPU,
                  "%s case %d: output %s planned as %s on %s", op->name, c, op->outputs[k],
                  lact_dtype_name(plan[k].dtype), lact_device_name(plan[k].device));
        st = lact_tensor_alloc(&r.out[k], LACT_F32, LACT_CPU, plan[k].ndim, plan[k].shape);
    }
    lact_rng rng = lact_rng_make(SEED, 5000 + (uint64_t)c);
    for (int k = 0; st == LACT_OK && k < op->n_diff_outputs; k++) {
        st = lact_tensor_alloc(&r.d_out[k], LACT_F32, LACT_CPU, r.out[k].ndim, r.out[k].shape);
        if (st == LACT_OK) fill_normal(&r.d_out[k], &rng, 1.0f);
    }
    for (int i = 0; st == LACT_OK && i < r.n_in; i++) {
        if (!((op->grad_inputs >> i) & 1u) || !present(&r.in[i])) continue;
        lact_dtype dt = lact_op_grad_dtype(op, i, r.in);
        st = lact_tensor_alloc(&r.d_in[i], dt, LACT_CPU, r.in[i].ndim, r.in[i].shape);
        /* Garbage that an accumulating (rather than overwriting) backward
         * would carry into its result. */
        if (st == LACT_OK) fill_normal(&r.d_in[i], &rng, 1e3f);
    }
    if (st == LACT_OK) {
        st = op->forward(ctx, r.out, r.in, r.params);
        CHECK_MSG(st == LACT_OK, "%s case %d: forward failed: %s", op->name, c, lact_errmsg());
    }
    if (st == LACT_OK) {
        st = op->backward(ctx, r.d_in, r.d_out, r.in, r.out, r.params);
        CHECK_MSG(st == LACT_OK, "%s case %d: backward failed: %s", op->name, c, lact_errmsg());
    }
    double worst = 0.0;
    const char *worst_name = "-";
    for (int i = 0; st == LACT_OK && i < r.n_in; i++) {
        if (!r.d_in[i].data || r.in[i].dtype != LACT_F32) continue;
        double e = check_input(&r, ctx, i, &rng);
        CHECK_MSG(e <= op->tol_grad, "%s case %d: gradient of %s off by %.3g (tolerance %.3g)",
                  op->name, c, lact_op_input_name(op, i), e, op->tol_grad);
        if (!(e <= worst) || worst_name[0] == '-') {
            worst = e;
            worst_name = lact_op_input_name(op, i);
        }
    }
    printf("gradcheck %-12s case %d: worst relative error %.2e (%s)%s\n", op->name, c, worst,
           worst_name, worst <= op->tol_grad && st == LACT_OK ? "" : "  FAILED");
    run_free(&r);
    return true;
}

/* Names unique and findable, tensor lists consistent, every row has cases. */
static void check_table(void) {
    int n = lact_op_count();
    CHECK(n > 0);
    CHECK(lact_op_at(-1) == NULL);
    CHECK(lact_op_at(n) == NULL);
    CHECK(lact_op_find("no_such_op") == NULL);
    for (int i = 0; i < n; i++) {
        const lact_op_def *op = lact_op_at(i);
        CHECK_MSG(op && op->name && op->plan && op->forward && op->make_case,
                  "row %d is incomplete", i);
        if (!op || !op->name) continue;
        CHECK_MSG(lact_op_find(op->name) == op, "%s: lookup finds another row", op->name);
        int n_in = lact_op_n_inputs(op), n_out = lact_op_n_outputs(op);
        CHECK_MSG(n_in >= 1 && n_out >= 1, "%s: no inputs or outputs", op->name);
        CHECK_MSG(op->n_diff_outputs <= n_out, "%s: n_diff_outputs too large", op->name);
        CHECK_MSG((op->grad_inputs >> n_in) == 0, "%s: grad bit past the inputs", op->name);
        CHECK_MSG((op->param_inputs >> n_in) == 0, "%s: param bit past the inputs", op->name);
        CHECK_MSG(!op->grad_inputs == !op->backward, "%s: backward and grad bits disagree",
                  op->name);
        CHECK_MSG(!op->grad_inputs || (op->n_diff_outputs > 0 && op->tol_grad > 0),
                  "%s: a backward needs differentiable outputs and tol_grad", op->name);
        CHECK_MSG(op->tol_f32 > 0, "%s: no f32 tolerance", op->name);
        for (int j = 0; op->params[j].name && j < LACT_OP_MAX_PARAMS; j++)
            CHECK_MSG(lact_op_param_index(op, op->params[j].name) == j, "%s: param %s repeats",
                      op->name, op->params[j].name);
        double params[LACT_OP_MAX_PARAMS];
        lact_op_default_params(op, params);
        lact_tensor in[LACT_OP_MAX_IO];
        memset(in, 0, sizeof in);
        bool has_case = op->make_case(0, SEED, in, params);
        CHECK_MSG(has_case, "%s: no test case", op->name);
        for (int j = 0; j < LACT_OP_MAX_IO; j++)
            lact_tensor_free(&in[j]);
    }
}

int main(void) {
    check_table();
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 0));
    int rows = 0, cases = 0;
    for (int i = 0; i < lact_op_count(); i++) {
        const lact_op_def *op = lact_op_at(i);
        if (!op || !op->grad_inputs || !op->backward) continue;
        rows++;
        for (int c = 0; gradcheck_case(op, c, &ctx); c++)
            cases++;
    }
    printf("gradcheck: %d ops, %d cases\n", rows, cases);
    CHECK(rows >= 15);
    lact_ctx_free(&ctx);
    return check_summary("kernels_gradcheck");
}
