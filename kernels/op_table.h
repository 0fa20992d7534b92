/* The table of ops: one row per op, naming its tensors and options, with
 * functions that run it on named tensors. The gradcheck, the CUDA/CPU parity
 * test and `lact op` are all driven by this table, so adding an op means
 * adding a row (kernels/table/). */
#ifndef LACT_OP_TABLE_H
#define LACT_OP_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_OP_MAX_IO 12
#define LACT_OP_MAX_PARAMS 8

typedef struct lact_op_param {
    const char *name; /* "eps" */
    double value;     /* default */
    const char *help;
} lact_op_param;

/* Shapes and dtypes of the tensors of one call; data pointers unused. */
typedef struct lact_op_io {
    lact_tensor in[LACT_OP_MAX_IO];
    lact_tensor out[LACT_OP_MAX_IO];
} lact_op_io;

typedef struct lact_op_def {
    const char *name;
    const char *summary;
    /* Tensor names, NULL-terminated. An input name starting with '?' is
     * optional (the tensor may be absent: data NULL, ndim 0). */
    const char *inputs[LACT_OP_MAX_IO];
    const char *outputs[LACT_OP_MAX_IO];
    /* The first n_diff_outputs outputs take gradients d_<name>; the others
     * are saved statistics. grad_inputs has bit i set when input i gets a
     * gradient d_<name> (0 = the op has no backward). */
    int n_diff_outputs;
    unsigned grad_inputs;
    /* bit i set: input i is a parameter (weights, biases; its gradient is F32
     * whatever the activation dtype). */
    unsigned param_inputs;
    lact_op_param params[LACT_OP_MAX_PARAMS]; /* name NULL ends the list */

    /* Fills out[] shapes/dtypes/device from in[] and params; checks inputs. */
    lact_status (*plan)(const lact_tensor *in, const double *params, lact_tensor *out);
    lact_status (*forward)(lact_ctx *ctx, lact_tensor *out, const lact_tensor *in,
                           const double *params);
    /* d_in: gradient tensors for inputs with a grad bit (others ignored),
     * allocated by the caller with the shape of the input and the dtype
     * lact_op_grad_dtype gives; d_out: one per differentiable output. */
    lact_status (*backward)(lact_ctx *ctx, lact_tensor *d_in, const lact_tensor *d_out,
                            const lact_tensor *in, const lact_tensor *out,
                            const double *params);

    /* Test cases: fills in[] (CPU, F32 except index inputs) with random
     * values for case c and may change params; returns false when c is past
     * the last case. Inputs are allocated by the callee; the caller frees. */
    bool (*make_case)(int c, uint64_t seed, lact_tensor *in, double *params);

    /* Relative-error bounds for the parity test, per activation dtype. */
    double tol_f32, tol_bf16;
    /* Gradcheck: relative bound on ‖analytic − numeric‖ / ‖numeric‖. */
    double tol_grad;
    /* true when BF16 activations make sense on CUDA (parity runs both). */
    bool bf16;
} lact_op_def;

int lact_op_count(void);
const lact_op_def *lact_op_at(int i);
const lact_op_def *lact_op_find(const char *name);
int lact_op_n_inputs(const lact_op_def *op);
int lact_op_n_outputs(const lact_op_def *op);
/* Index of a param by name, or -1. */
int lact_op_param_index(const lact_op_def *op, const char *name);
/* Fills params[] with the defaults. */
void lact_op_default_params(const lact_op_def *op, double *params);
/* Input name without the optional marker. */
const char *lact_op_input_name(const lact_op_def *op, int i);
bool lact_op_input_optional(const lact_op_def *op, int i);
/* The dtype of the gradient of input i: F32 for parameters (param_inputs)
 * and for F32 inputs; otherwise the input's dtype. in is the whole input
 * array (in[0 .. n_inputs)), not input i alone. */
lact_dtype lact_op_grad_dtype(const lact_op_def *op, int i, const lact_tensor *in);

#ifdef __cplusplus
}
#endif
#endif
