/* The parameter store of one model: every parameter is declared first (name,
 * shape, init), then one allocation holds all weights (F32), one all
 * gradients (F32) and, when an optimizer asks, one all optimizer state
 * (k slots of the same size: AdamW's m and v, Muon's momentum). Each
 * parameter is a view into those blocks.
 *
 * BF16 compute (CUDA) adds one more block: a BF16 shadow of the weights
 * with the F32 block's layout, so that products with BF16 activations read
 * BF16 operands while the optimizer keeps updating the F32 masters. It is
 * refreshed by one cast of the whole block (lact_params_sync_shadow): after
 * every optimizer step, after init, and before the first forward that
 * follows a load (the store marks itself stale; code that writes weights
 * directly calls lact_params_weights_changed).
 *
 * Life cycle:
 *   lact_params_init -> lact_params_declare ... (layers' declare functions)
 *   -> lact_params_alloc -> [lact_params_alloc_shadow]
 *   -> lact_params_init_values (or lact_params_load)
 *   -> [lact_params_alloc_state] -> steps -> lact_params_free.
 *
 * Init is deterministic and independent of the declaration order: a
 * parameter's random stream is a hash of its name, so adding a layer does not
 * change the initial values of the others. Names are the keys of the
 * safetensors file (a PyTorch state-dict-like naming, "layers.0.attn.wq"). */
#ifndef LACT_NN_PARAMS_H
#define LACT_NN_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/context.h"
#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LACT_PARAM_NAME_MAX 96
#define LACT_PARAM_STATE_MAX 2

typedef enum lact_init_kind {
    LACT_INIT_NORMAL = 0, /* N(0, value²): value is the standard deviation */
    LACT_INIT_ONES,
    LACT_INIT_ZEROS,
    LACT_INIT_CONSTANT, /* every element = value */
} lact_init_kind;

typedef struct lact_init {
    lact_init_kind kind;
    float value;
} lact_init;

static inline lact_init lact_init_normal(float std) {
    lact_init i = {LACT_INIT_NORMAL, std};
    return i;
}
static inline lact_init lact_init_ones(void) {
    lact_init i = {LACT_INIT_ONES, 1.0f};
    return i;
}
static inline lact_init lact_init_zeros(void) {
    lact_init i = {LACT_INIT_ZEROS, 0.0f};
    return i;
}
static inline lact_init lact_init_constant(float v) {
    lact_init i = {LACT_INIT_CONSTANT, v};
    return i;
}

typedef struct lact_param {
    char name[LACT_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[LACT_MAX_DIMS];
    lact_init init;
    int64_t offset; /* elements from the start of each block (lact_params_alloc) */
    /* Views, valid after lact_params_alloc (state after alloc_state, wb
     * after alloc_shadow: BF16, w's shape; data NULL without a shadow). */
    lact_tensor w, g, wb;
    lact_tensor state[LACT_PARAM_STATE_MAX];
} lact_param;

typedef struct lact_params {
    lact_device device;
    int n, cap;
    lact_param *items;
    int64_t numel;  /* all parameters' elements (without padding) */
    int64_t padded; /* elements of one block (each parameter 64-aligned) */
    /* The matrices (ndim >= 2) come first in every block, in declaration
     * order, then the vectors: elements [0, matrix_end) are the matrices',
     * so work that treats the two kinds apart (AdamW's weight decay) takes
     * one range each. Set by lact_params_alloc, as are the offsets. */
    int64_t matrix_end;
    float *weights; /* device memory, one block */
    float *grads;
    float *state; /* n_state blocks back to back, or NULL */
    int n_state;
    uint16_t *shadow;  /* BF16 copy of the weight block, or NULL */
    bool shadow_stale; /* the weights changed since the last sync */
    bool allocated;
} lact_params;

void lact_params_init(lact_params *p, lact_device dev);
void lact_params_free(lact_params *p);

/* Declares a parameter; *id receives its index (ids stay valid, pointers to
 * items do not until allocation). Fails on a duplicate or over-long name, a
 * bad shape, or a store already allocated. */
lact_status lact_params_declare(lact_params *p, const char *name, int ndim, const int64_t *shape,
                                lact_init init, int *id);
/* "prefix.name" (or "name" when prefix is empty) into buf. */
lact_status lact_params_join(char *buf, size_t n, const char *prefix, const char *name);
/* lact_params_declare of "prefix.name". */
lact_status lact_params_declare_in(lact_params *p, const char *prefix, const char *name, int ndim,
                                   const int64_t *shape, lact_init init, int *id);
/* A layer's declare functions: LACT_PARAMS_DECL(p, prefix, "wq", init, &id, rows, cols)
 * declares prefix.wq with the shape given as the trailing dims (returns on
 * failure). */
#define LACT_PARAMS_DECL(p, prefix, name, init, id, ...)                                           \
    LACT_TRY(lact_params_declare_in(p, prefix, name,                                               \
                                    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),     \
                                    (int64_t[]){__VA_ARGS__}, init, id))

/* One allocation for the weights and one for the gradients (zeroed). */
lact_status lact_params_alloc(lact_params *p);
/* One allocation of k ≤ LACT_PARAM_STATE_MAX state slots per parameter,
 * zeroed (param.state[0..k)). */
lact_status lact_params_alloc_state(lact_params *p, int k);

/* One BF16 allocation shadowing the weight block (param.wb), marked stale
 * until the first lact_params_sync_shadow. */
lact_status lact_params_alloc_shadow(lact_params *p);
/* shadow = bf16(weights): one cast over the whole block on ctx's stream
 * (nothing without a shadow). */
lact_status lact_params_sync_shadow(lact_ctx *ctx, lact_params *p);
/* The sync, only when the weights changed since the last one. */
lact_status lact_params_refresh_shadow(lact_ctx *ctx, lact_params *p);
/* Marks the shadow stale, for code that writes weights directly. */
void lact_params_weights_changed(lact_params *p);
/* The weight a matrix product with activations of dtype act reads: the
 * BF16 shadow for BF16 activations, the F32 master otherwise. Parameters
 * that ops read elementwise (norm weights, scales, biases, the fast
 * weights' initial values) always take the F32 w. */
static inline const lact_tensor *lact_param_mm(const lact_param *it, lact_dtype act) {
    return act == LACT_BF16 ? &it->wb : &it->w;
}

/* Fills every weight from its init kind; normals draw Philox stream
 * lact_params_stream(name) under seed (and syncs the shadow). */
lact_status lact_params_init_values(lact_ctx *ctx, lact_params *p, uint64_t seed);
/* The random stream of a parameter: 64-bit FNV-1a of its name. */
uint64_t lact_params_stream(const char *name);

lact_status lact_params_zero_grad(lact_params *p);

/* Iteration: for (int i = 0; i < lact_params_count(p); i++) lact_params_at(p, i). */
int lact_params_count(const lact_params *p);
lact_param *lact_params_at(lact_params *p, int i);
/* Index of name, or -1. */
int lact_params_find(const lact_params *p, const char *name);
/* Total bytes of the weight, gradient, state and shadow blocks. */
size_t lact_params_bytes(const lact_params *p);

/* Writes every weight under its name (atomic; optional metadata pairs). */
lact_status lact_params_save(const lact_params *p, const char *path, int n_meta,
                             const char *const *meta_keys, const char *const *meta_values);
/* Reads every parameter by name (F32, BF16, F16 or F64 in the file; the
 * shape must match). strict: the file may hold no other tensors. Marks the
 * shadow stale. */
lact_status lact_params_load(lact_params *p, const char *path, bool strict);

#ifdef __cplusplus
}
#endif
#endif
