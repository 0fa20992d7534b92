/* The table of ops and the lookups on it. */
#include <string.h>

#include "kernels/table/rows.h"

#define LACT_OP_ROW_PTR(name) [LACT_OP_ID_##name] = &lact_op_row_##name,
static const lact_op_def *const op_rows[] = {LACT_OP_ROWS(LACT_OP_ROW_PTR)};
#undef LACT_OP_ROW_PTR

/* The table cannot drift from the list of ids. */
_Static_assert(sizeof op_rows / sizeof op_rows[0] == LACT_OP_ID_COUNT,
               "op table size differs from the op count");

int lact_op_count(void) {
    return LACT_OP_ID_COUNT;
}

const lact_op_def *lact_op_at(int i) {
    return i >= 0 && i < LACT_OP_ID_COUNT ? op_rows[i] : NULL;
}

const lact_op_def *lact_op_find(const char *name) {
    for (int i = 0; name && i < LACT_OP_ID_COUNT; i++)
        if (strcmp(op_rows[i]->name, name) == 0) return op_rows[i];
    return NULL;
}

int lact_op_n_inputs(const lact_op_def *op) {
    int n = 0;
    while (n < LACT_OP_MAX_IO && op->inputs[n])
        n++;
    return n;
}

int lact_op_n_outputs(const lact_op_def *op) {
    int n = 0;
    while (n < LACT_OP_MAX_IO && op->outputs[n])
        n++;
    return n;
}

int lact_op_param_index(const lact_op_def *op, const char *name) {
    for (int i = 0; name && i < LACT_OP_MAX_PARAMS && op->params[i].name; i++)
        if (strcmp(op->params[i].name, name) == 0) return i;
    return -1;
}

void lact_op_default_params(const lact_op_def *op, double *params) {
    for (int i = 0; i < LACT_OP_MAX_PARAMS; i++)
        params[i] = op->params[i].name ? op->params[i].value : 0.0;
}

const char *lact_op_input_name(const lact_op_def *op, int i) {
    const char *s = op->inputs[i];
    return s[0] == '?' ? s + 1 : s;
}

bool lact_op_input_optional(const lact_op_def *op, int i) {
    return op->inputs[i][0] == '?';
}

lact_dtype lact_op_grad_dtype(const lact_op_def *op, int i, const lact_tensor *in) {
    if ((op->param_inputs >> i) & 1u) return LACT_F32;
    return in[i].dtype;
}
