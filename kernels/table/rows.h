/* Internal to kernels/table: the list of rows and the helpers the rows
 * share (planning outputs, checking named inputs, making random cases). */
#ifndef LACT_TABLE_ROWS_H
#define LACT_TABLE_ROWS_H

#include "core/base/philox.h"
#include "kernels/kcheck.h"
#include "kernels/kernels.h"
#include "kernels/op_table.h"

/* Every row, in table order. Adding an op: one line here, one row in a
 * rows_*.c file named lact_op_row_<name>. */
#define LACT_OP_ROWS(X)                                                                            \
    X(matmul)                                                                                      \
    X(matmul_add)                                                                                  \
    X(add)                                                                                         \
    X(mul)                                                                                         \
    X(scale)                                                                                       \
    X(silu)                                                                                        \
    X(swiglu)                                                                                      \
    X(swiglu_packed)                                                                               \
    X(cast)                                                                                        \
    X(softplus)                                                                                    \
    X(sigmoid)                                                                                     \
    X(permute)                                                                                     \
    X(slice)                                                                                       \
    X(rmsnorm)                                                                                     \
    X(layernorm)                                                                                   \
    X(l2norm)                                                                                      \
    X(rope)                                                                                        \
    X(headprep)                                                                                    \
    X(softmax)                                                                                     \
    X(xent)                                                                                        \
    X(embedding)                                                                                   \
    X(sum)                                                                                         \
    X(norm)                                                                                        \
    X(fill_uniform)                                                                                \
    X(fill_normal)                                                                                 \
    X(adamw)                                                                                       \
    X(muon)                                                                                        \
    X(newton_schulz)                                                                               \
    X(attention)                                                                                   \
    X(mesa)                                                                                        \
    X(ttt)

#define LACT_OP_ROW_ID(name) LACT_OP_ID_##name,
typedef enum lact_op_id { LACT_OP_ROWS(LACT_OP_ROW_ID) LACT_OP_ID_COUNT } lact_op_id;
#undef LACT_OP_ROW_ID

#define LACT_OP_ROW_DECL(name) extern const lact_op_def lact_op_row_##name;
LACT_OP_ROWS(LACT_OP_ROW_DECL)
#undef LACT_OP_ROW_DECL

/* Activation dtypes a plan accepts on any device (the kernel then checks
 * what the device supports). */
#define OPTAB_ACT (LACT_DT(LACT_F32) | LACT_DT(LACT_BF16))
#define OPTAB_F32 LACT_DT(LACT_F32)
#define OPTAB_I32 LACT_DT(LACT_I32)

/* ---- planning ------------------------------------------------------------- */

/* An input is present unless it is a zeroed struct (data NULL, ndim 0). */
bool lact_optab_present(const lact_tensor *t);
/* The input, or NULL when an optional input is absent. */
const lact_tensor *lact_optab_opt(const lact_tensor *t);
/* Input name is present, has a dtype in the mask, and lives on dev (the
 * device of the op's first input). */
lact_status lact_optab_need(const char *op, const char *name, const lact_tensor *t, unsigned dtypes,
                            lact_device dev);
/* Same, but an absent tensor passes. */
lact_status lact_optab_maybe(const char *op, const char *name, const lact_tensor *t,
                             unsigned dtypes, lact_device dev);
/* A planned output: shape and dtype, device dev, no data. */
lact_tensor lact_optab_out(lact_device dev, lact_dtype dt, int ndim, const int64_t *shape);
/* The gradient slot of input i when the caller asked for it, else NULL. */
lact_tensor *lact_optab_grad(lact_tensor *d_in, const lact_tensor *in, int i);

/* ---- random cases ---------------------------------------------------------- */

/* One tensor shape of a test case. */
typedef struct optab_shape {
    int ndim;
    int64_t d[LACT_MAX_DIMS];
} optab_shape;

/* t = a new CPU F32 tensor of the shape, values uniform in [lo, hi). */
bool lact_optab_rand(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, float lo,
                     float hi);
/* t = a new CPU F32 tensor of the shape, values normal(0, std). */
bool lact_optab_randn(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, float std);
/* t = a new CPU I32 tensor of the shape, values uniform in [lo, hi). */
bool lact_optab_ids(lact_tensor *t, lact_rng *rng, int ndim, const int64_t *shape, int64_t lo,
                    int64_t hi);
/* Frees the first n inputs (for a case that failed half way). */
void lact_optab_free(lact_tensor *in, int n);

#endif
