/* CUDA vs CPU parity, driven by the op table: every row, every case, forward
 * and backward, compared by ‖cuda − cpu‖ / ‖cpu‖ against the row's bound for
 * the activation dtype (F32, and BF16 where the row allows it). CUDA outputs
 * are poisoned with NaN bytes first, so an element a kernel never writes
 * fails. Also checks that the uniform fill gives the CPU's bits exactly.
 * Skips (77) without a CUDA device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/context.h"
#include "core/base/device.h"
#include "core/base/philox.h"
#include "kernels/kernels.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

#if LACT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#define SEED 20240611u

/* Everything one run (one device, one dtype) of one case holds. */
typedef struct run {
    lact_tensor in[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
    lact_tensor d_out[LACT_OP_MAX_IO], d_in[LACT_OP_MAX_IO];
} run;

static void run_free(run *r) {
    for (int i = 0; i < LACT_OP_MAX_IO; i++) {
        lact_tensor_free(&r->in[i]);
        lact_tensor_free(&r->out[i]);
        lact_tensor_free(&r->d_out[i]);
        lact_tensor_free(&r->d_in[i]);
    }
    memset(r, 0, sizeof *r);
}

/* Copies and memsets through the legacy stream do not order against the
 * context's non-blocking stream: wait for the whole device around them. */
static lact_status device_sync(void) {
#if LACT_WITH_CUDA
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
        return lact_fail(LACT_E_CUDA, "cudaDeviceSynchronize: %s", cudaGetErrorString(e));
#endif
    return LACT_OK;
}

static bool present(const lact_tensor *t) { return t->data != NULL || t->ndim != 0; }

/* Activation inputs become BF16 in a BF16 run; parameters and indices stay,
 * except where the op needs its parameters in the activation dtype (xent's
 * w): then the plan rejects F32 and the parameters go BF16 too. */
static bool to_bf16(const lact_op_def *op, int i, const lact_tensor *t, bool params_too) {
    if (!present(t) || !lact_dtype_is_float(t->dtype)) return false;
    return params_too || !(op->param_inputs & (1u << i));
}

static void round_bf16(lact_tensor *t) {
    if (t->dtype != LACT_F32) return;
    float *p = t->data;
    for (int64_t i = 0; i < lact_tensor_numel(t); i++)
        p[i] = lact_bf16_to_f32(lact_f32_to_bf16(p[i]));
}

/* Fills a device tensor with 0xFF bytes (NaN in every float dtype). */
static lact_status poison(lact_tensor *t) {
    size_t n = lact_tensor_nbytes(t);
    if (!n || t->device == LACT_CPU) return LACT_OK;
    void *h = malloc(n);
    if (!h) return lact_fail(LACT_E_NOMEM, "poison: out of host memory");
    memset(h, 0xFF, n);
    lact_status s = lact_mem_copy(t->data, t->device, h, LACT_CPU, n);
    free(h);
    if (s == LACT_OK) s = device_sync();
    return s;
}

static lact_status alloc_like(lact_tensor *t, const lact_tensor *plan, lact_dtype dt,
                              lact_device dev) {
    return lact_tensor_alloc(t, dt, dev, plan->ndim, plan->shape);
}

/* ‖got − ref‖ / ‖ref‖ (absolute when ref is zero); +inf on NaN or a copy
 * failure. Either may live on any device in any float dtype. */
static double rel_err(const lact_tensor *got, const lact_tensor *ref) {
    lact_tensor g = {0};
    if (ref->dtype == LACT_I32 || got->dtype == LACT_I32) {
        if (lact_tensor_clone(&g, got, got->dtype, LACT_CPU) != LACT_OK) return INFINITY;
        bool same = lact_tensor_nbytes(&g) == lact_tensor_nbytes(ref) &&
                    memcmp(g.data, ref->data, lact_tensor_nbytes(ref)) == 0;
        lact_tensor_free(&g);
        return same ? 0.0 : INFINITY;
    }
    lact_tensor r = {0};
    if (lact_tensor_clone(&g, got, LACT_F32, LACT_CPU) != LACT_OK) return INFINITY;
    if (lact_tensor_clone(&r, ref, LACT_F32, LACT_CPU) != LACT_OK) {
        lact_tensor_free(&g);
        return INFINITY;
    }
    const float *a = g.data, *b = r.data;
    double num = 0.0, den = 0.0;
    bool nan = false;
    for (int64_t i = 0; i < lact_tensor_numel(ref); i++) {
        if (isnan(a[i]) || isinf(a[i])) nan = true;
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    lact_tensor_free(&g);
    lact_tensor_free(&r);
    if (nan) return INFINITY;
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* Plans the outputs of r->in on dev and allocates them there. */
static lact_status plan_outputs(const lact_op_def *op, run *r, const double *params,
                                lact_device dev) {
    lact_tensor planned[LACT_OP_MAX_IO];
    memset(planned, 0, sizeof planned);
    LACT_TRY(op->plan(r->in, params, planned));
    for (int k = 0; k < lact_op_n_outputs(op); k++) {
        LACT_TRY(alloc_like(&r->out[k], &planned[k], planned[k].dtype, dev));
        LACT_TRY(poison(&r->out[k]));
    }
    return LACT_OK;
}

static lact_status alloc_grads(const lact_op_def *op, run *r, lact_device dev) {
    for (int i = 0; i < lact_op_n_inputs(op); i++) {
        if (!(op->grad_inputs & (1u << i)) || !present(&r->in[i])) continue;
        LACT_TRY(alloc_like(&r->d_in[i], &r->in[i], lact_op_grad_dtype(op, i, r->in), dev));
        LACT_TRY(poison(&r->d_in[i]));
    }
    return LACT_OK;
}

typedef struct row_worst {
    double err[2 * LACT_OP_MAX_IO];
    const char *name[2 * LACT_OP_MAX_IO];
    int n;
} row_worst;

static void report(const lact_op_def *op, int c, const char *dt, const char *what,
                   const char *name, double err, double tol) {
    bool ok = err <= tol;
    printf("  %-14s %4d  %-4s  %-3s %-12s %10.3e  (tol %.1e)%s\n", op->name, c, dt, what, name,
           err, tol, ok ? "" : "  FAIL");
    fflush(stdout);
    CHECK_MSG(ok, "%s case %d %s: %s %s rel err %.3g > %.3g", op->name, c, dt, what, name, err,
              tol);
}

/* One case of one row in one dtype: CPU on the (rounded) inputs, CUDA on the
 * same values in dtype dt; compares every output and input gradient. */
static void parity_case(lact_ctx *cpu, lact_ctx *gpu, const lact_op_def *op, int c,
                        const lact_tensor *in0, const double *params, lact_dtype dt) {
    const char *dtn = dt == LACT_BF16 ? "bf16" : "f32";
    double tol = dt == LACT_BF16 ? op->tol_bf16 : op->tol_f32;
    int n_in = lact_op_n_inputs(op), n_out = lact_op_n_outputs(op);
    bool has_bwd = op->grad_inputs && op->backward;
    run h, d;
    memset(&h, 0, sizeof h);
    memset(&d, 0, sizeof d);
    lact_status s = LACT_OK;

    /* Inputs: CPU copies (rounded where BF16), then the device copies. */
    for (int pass = 0; pass < 2; pass++) {
        bool params_too = pass == 1;
        for (int i = 0; i < n_in && s == LACT_OK; i++) {
            if (!present(&in0[i])) continue;
            s = lact_tensor_clone(&h.in[i], &in0[i], in0[i].dtype, LACT_CPU);
            if (s != LACT_OK) break;
            bool low = dt == LACT_BF16 && to_bf16(op, i, &in0[i], params_too);
            if (low) round_bf16(&h.in[i]);
            s = lact_tensor_clone(&d.in[i], &h.in[i], low ? LACT_BF16 : h.in[i].dtype, LACT_CUDA);
        }
        lact_tensor probe[LACT_OP_MAX_IO];
        memset(probe, 0, sizeof probe);
        if (s != LACT_OK || dt != LACT_BF16 || params_too || op->plan(d.in, params, probe) == LACT_OK)
            break;
        run_free(&h);
        run_free(&d);
    }
    if (s == LACT_OK) s = plan_outputs(op, &h, params, LACT_CPU);
    if (s == LACT_OK) s = op->forward(cpu, h.out, h.in, params);
    if (s != LACT_OK) {
        CHECK_MSG(false, "%s case %d %s: CPU forward: %s", op->name, c, dtn, lact_errmsg());
        goto done;
    }
    s = device_sync();
    if (s == LACT_OK) s = plan_outputs(op, &d, params, LACT_CUDA);
    if (s == LACT_OK) s = op->forward(gpu, d.out, d.in, params);
    if (s == LACT_E_UNSUPPORTED) {
        printf("  %-14s %4d  %-4s  skipped (no CUDA kernel)\n", op->name, c, dtn);
        goto done;
    }
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    if (s != LACT_OK) {
        CHECK_MSG(false, "%s case %d %s: CUDA forward: %s", op->name, c, dtn, lact_errmsg());
        goto done;
    }
    for (int k = 0; k < n_out; k++)
        report(op, c, dtn, "out", op->outputs[k], rel_err(&d.out[k], &h.out[k]), tol);
    if (!has_bwd) goto done;

    /* Backward: the same random output gradients on both sides. */
    lact_rng rng = lact_rng_make(SEED + (uint64_t)c, 7);
    for (int k = 0; k < op->n_diff_outputs && s == LACT_OK; k++) {
        s = alloc_like(&h.d_out[k], &h.out[k], LACT_F32, LACT_CPU);
        if (s != LACT_OK) break;
        float *g = h.d_out[k].data;
        for (int64_t i = 0; i < lact_tensor_numel(&h.d_out[k]); i++) g[i] = lact_rng_normal(&rng);
        if (d.out[k].dtype == LACT_BF16) round_bf16(&h.d_out[k]);
        s = lact_tensor_clone(&d.d_out[k], &h.d_out[k], d.out[k].dtype, LACT_CUDA);
    }
    if (s == LACT_OK) s = alloc_grads(op, &h, LACT_CPU);
    if (s == LACT_OK) s = op->backward(cpu, h.d_in, h.d_out, h.in, h.out, params);
    if (s != LACT_OK) {
        CHECK_MSG(false, "%s case %d %s: CPU backward: %s", op->name, c, dtn, lact_errmsg());
        goto done;
    }
    s = alloc_grads(op, &d, LACT_CUDA);
    if (s == LACT_OK) s = op->backward(gpu, d.d_in, d.d_out, d.in, d.out, params);
    if (s == LACT_OK) s = lact_ctx_sync(gpu);
    if (s != LACT_OK) {
        CHECK_MSG(false, "%s case %d %s: CUDA backward: %s", op->name, c, dtn, lact_errmsg());
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        if (!present(&h.d_in[i])) continue;
        report(op, c, dtn, "d", lact_op_input_name(op, i), rel_err(&d.d_in[i], &h.d_in[i]), tol);
    }
done:
    run_free(&h);
    run_free(&d);
}

static void parity_row(lact_ctx *cpu, lact_ctx *gpu, const lact_op_def *op) {
    for (int c = 0;; c++) {
        lact_tensor in0[LACT_OP_MAX_IO];
        double params[LACT_OP_MAX_PARAMS];
        memset(in0, 0, sizeof in0);
        lact_op_default_params(op, params);
        if (!op->make_case(c, SEED + (uint64_t)c, in0, params)) break;
        parity_case(cpu, gpu, op, c, in0, params, LACT_F32);
        if (op->bf16) parity_case(cpu, gpu, op, c, in0, params, LACT_BF16);
        for (int i = 0; i < LACT_OP_MAX_IO; i++) lact_tensor_free(&in0[i]);
    }
}

/* Larger cases than the table's (which keep the CPU gradcheck fast): rows of
 * many warps, several vocabulary chunks, multi-slice column reductions,
 * odd GEMM sizes and the transposed Newton–Schulz. Same comparison; case
 * numbers start at 100. */
typedef struct big_input {
    int ndim; /* 0: absent */
    int64_t d[4];
    int64_t ids; /* > 0: I32 indices in [0, ids) */
} big_input;

typedef struct big_case {
    const char *op;
    big_input in[4];
    const char *param;
    double value;
} big_case;

static const big_case big_cases[] = {
    {"matmul", {{2, {513, 257}, 0}, {2, {257, 129}, 0}}, NULL, 0},
    {"matmul", {{3, {3, 200, 136}, 0}, {2, {72, 136}, 0}}, "tb", 1},
    {"matmul", {{3, {4, 96, 64}, 0}, {2, {96, 80}, 0}}, "ta", 1},
    {"matmul_add", {{2, {512, 256}, 0}, {2, {384, 256}, 0}, {2, {512, 384}, 0}}, "tb", 1},
    {"add", {{2, {4096, 96}, 0}, {1, {96}, 0}}, NULL, 0},
    {"mul", {{2, {2048, 300}, 0}, {1, {300}, 0}}, NULL, 0},
    {"swiglu", {{2, {300, 777}, 0}, {2, {300, 777}, 0}}, NULL, 0},
    {"swiglu_packed", {{2, {300, 4128}, 0}}, NULL, 0},
    {"swiglu_packed", {{2, {300, 1554}, 0}}, NULL, 0},
    {"rmsnorm", {{2, {64, 3000}, 0}, {1, {3000}, 0}}, NULL, 0},
    {"layernorm", {{2, {64, 2500}, 0}, {1, {2500}, 0}, {1, {2500}, 0}}, NULL, 0},
    {"l2norm", {{2, {50, 1500}, 0}}, NULL, 0},
    {"rope", {{4, {2, 300, 4, 64}, 0}}, NULL, 0},
    {"softmax", {{2, {40, 5000}, 0}}, NULL, 0},
    {"xent", {{2, {300, 64}, 0}, {2, {20000, 64}, 0}, {1, {300}, 20000}}, NULL, 0},
    /* a last vocabulary chunk of odd width: rows not on 16 bytes */
    {"xent", {{2, {300, 64}, 0}, {2, {20001, 64}, 0}, {1, {300}, 20001}}, NULL, 0},
    {"embedding", {{2, {5000, 96}, 0}, {1, {4096}, 5000}}, NULL, 0},
    {"sum", {{2, {30, 7000}, 0}}, NULL, 0},
    {"norm", {{2, {1000, 1000}, 0}}, NULL, 0},
    {"newton_schulz", {{2, {300, 200}, 0}}, NULL, 0},
    {"muon", {{2, {128, 256}, 0}, {2, {128, 256}, 0}, {2, {128, 256}, 0}}, NULL, 0},
};

static bool big_make(const big_case *bc, int k, lact_tensor *in) {
    lact_rng rng = lact_rng_make(SEED, 900 + (uint64_t)k);
    for (int i = 0; i < 4; i++) {
        const big_input *b = &bc->in[i];
        if (!b->ndim) continue;
        if (lact_tensor_alloc(&in[i], b->ids ? LACT_I32 : LACT_F32, LACT_CPU, b->ndim, b->d) !=
            LACT_OK)
            return false;
        for (int64_t j = 0; j < lact_tensor_numel(&in[i]); j++) {
            if (b->ids)
                ((int32_t *)in[i].data)[j] = (int32_t)(lact_rng_u32(&rng) % (uint32_t)b->ids);
            else
                ((float *)in[i].data)[j] = 2.0f * lact_rng_uniform(&rng) - 1.0f;
        }
    }
    return true;
}

static void parity_big(lact_ctx *cpu, lact_ctx *gpu) {
    for (int k = 0; k < (int)(sizeof big_cases / sizeof big_cases[0]); k++) {
        const big_case *bc = &big_cases[k];
        const lact_op_def *op = lact_op_find(bc->op);
        CHECK_MSG(op != NULL, "op %s is not in the table", bc->op);
        if (!op) continue;
        lact_tensor in0[LACT_OP_MAX_IO];
        double params[LACT_OP_MAX_PARAMS];
        memset(in0, 0, sizeof in0);
        lact_op_default_params(op, params);
        if (bc->param) {
            int pi = lact_op_param_index(op, bc->param);
            CHECK_MSG(pi >= 0, "op %s has no param %s", bc->op, bc->param);
            if (pi >= 0) params[pi] = bc->value;
        }
        if (big_make(bc, k, in0)) {
            parity_case(cpu, gpu, op, 100 + k, in0, params, LACT_F32);
            if (op->bf16) parity_case(cpu, gpu, op, 100 + k, in0, params, LACT_BF16);
        } else {
            CHECK_MSG(false, "%s: cannot allocate the large case", bc->op);
        }
        for (int i = 0; i < LACT_OP_MAX_IO; i++) lact_tensor_free(&in0[i]);
    }
}

/* The uniform fill is a pure function of (seed, stream, index) on both
 * devices: the bits must match, and the BF16 fill must be the CPU's values
 * rounded. */
static void check_fill_bits(lact_ctx *cpu, lact_ctx *gpu) {
    int64_t shape[1] = {1000003};
    lact_tensor hc = {0}, dc = {0}, db = {0}, back = {0};
    CHECK_OK(lact_tensor_alloc(&hc, LACT_F32, LACT_CPU, 1, shape));
    CHECK_OK(lact_tensor_alloc(&dc, LACT_F32, LACT_CUDA, 1, shape));
    CHECK_OK(lact_tensor_alloc(&db, LACT_BF16, LACT_CUDA, 1, shape));
    CHECK_OK(device_sync());
    CHECK_OK(lact_fill_uniform(cpu, &hc, 1234, 5, -0.7f, 1.3f));
    CHECK_OK(lact_fill_uniform(gpu, &dc, 1234, 5, -0.7f, 1.3f));
    CHECK_OK(lact_fill_uniform(gpu, &db, 1234, 5, -0.7f, 1.3f));
    CHECK_OK(lact_ctx_sync(gpu));
    CHECK_OK(lact_tensor_clone(&back, &dc, LACT_F32, LACT_CPU));
    int64_t diff = 0;
    for (int64_t i = 0; back.data && hc.data && i < shape[0]; i++)
        diff += memcmp((float *)back.data + i, (float *)hc.data + i, sizeof(float)) != 0;
    CHECK_MSG(back.data && diff == 0, "fill_uniform f32: %lld of %lld values differ from the CPU",
              (long long)diff, (long long)shape[0]);
    lact_tensor_free(&back);
    uint16_t *hb = malloc((size_t)shape[0] * 2);
    CHECK(hb != NULL);
    if (hb) CHECK_OK(lact_mem_copy(hb, LACT_CPU, db.data, LACT_CUDA, (size_t)shape[0] * 2));
    diff = 0;
    for (int64_t i = 0; hb && hc.data && i < shape[0]; i++)
        diff += hb[i] != lact_f32_to_bf16(((float *)hc.data)[i]);
    CHECK_MSG(hb && diff == 0, "fill_uniform bf16: %lld values differ from the rounded CPU fill",
              (long long)diff);
    printf("  %-14s %4s  %-4s  bits differing: %lld\n", "fill_uniform", "-", "both",
           (long long)diff);
    free(hb);
    lact_tensor_free(&hc);
    lact_tensor_free(&dc);
    lact_tensor_free(&db);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* keep the table in order with stderr */
    if (!lact_cuda_available())
        return check_skip("parity",
                          "no CUDA device: GPU parity runs on the GPU machine (scripts/gpu-check)");
    lact_ctx cpu, gpu;
    if (lact_ctx_init(&cpu, LACT_CPU, 0) != LACT_OK || lact_ctx_init(&gpu, LACT_CUDA, 0) != LACT_OK) {
        fprintf(stderr, "parity: %s\n", lact_errmsg());
        return 1;
    }
    char name[256];
    printf("parity on %s: %d ops\n", lact_cuda_device_name(name, sizeof name), lact_op_count());
    printf("  %-14s %4s  %-4s  %-16s %10s\n", "op", "case", "type", "tensor", "rel err");
    for (int i = 0; i < lact_op_count(); i++) parity_row(&cpu, &gpu, lact_op_at(i));
    parity_big(&cpu, &gpu);
    check_fill_bits(&cpu, &gpu);
    lact_ctx_free(&gpu);
    lact_ctx_free(&cpu);
    return check_summary("parity");
}
