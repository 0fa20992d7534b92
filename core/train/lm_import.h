/* Weights from and to PyTorch state dicts (safetensors), for `lact lm
 * import` and `lact lm export`.
 *
 * A name map turns each lact parameter name into the name the tensor has in
 * the file. The default map is the state dict of the PyTorch twin
 * (scripts/ref/lm_reference.py): on the last component of the name,
 *   lr_w, lr_b     -> lr.weight, lr.bias      (LaCT learning-rate projection)
 *   mom_w, mom_b   -> mom.weight, mom.bias    (LaCT momentum projection)
 *   bg             -> wg.bias                 (attention gate bias)
 *   w_decay, b_decay -> decay.weight, decay.bias;  w_beta, b_beta -> beta.*  (Mesa)
 *   q_scale q_offset k_scale k_offset w0 w1 w2 lambda -> unchanged (bare)
 *   anything else  -> <name>.weight           (linears, norms, embedding, head)
 * e.g. layers.3.lact.wq <-> layers.3.lact.wq.weight.
 *
 * A JSON map overrides entries: an object {"<lact name>": "<file name>"}
 * where "{i}" in a key matches a layer index (digits) and stands for the
 * same digits in the value: {"layers.{i}.lact.wq": "model.{i}.q_proj.weight"}.
 * The first matching key wins; parameters no key matches keep the default.
 * Every key must match some parameter of the model (a typo is an error). */
#ifndef LACT_TRAIN_LM_IMPORT_H
#define LACT_TRAIN_LM_IMPORT_H

#include <stddef.h>

#include "core/nn/lm_model.h"
#include "core/train/lm_config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_lm_name_map {
    int n;
    char **lact;  /* patterns on lact names */
    char **file;  /* the file names they give */
    char *source; /* where the map came from, for messages */
} lact_lm_name_map;

/* The empty map: the default names only. */
void lact_lm_name_map_init(lact_lm_name_map *m);
void lact_lm_name_map_free(lact_lm_name_map *m);
/* Parses a JSON map (source names it in errors); the map must be empty. */
lact_status lact_lm_name_map_parse(lact_lm_name_map *m, const char *json, const char *source);
/* Reads and parses a JSON map file. */
lact_status lact_lm_name_map_load(lact_lm_name_map *m, const char *path);

/* The default file name of lact parameter name. */
lact_status lact_lm_default_name(const char *name, char *buf, size_t n);
/* The file name of lact parameter name under the map; *entry receives the
 * index of the entry that matched (-1: the default). entry may be NULL. */
lact_status lact_lm_map_name(const lact_lm_name_map *m, const char *name, char *buf, size_t n,
                             int *entry);

/* What went wrong in an import, one line per tensor. */
typedef struct lact_lm_problems {
    int n;
    char **lines;
} lact_lm_problems;

void lact_lm_problems_free(lact_lm_problems *p);

/* Fills every weight of m (CPU) from the state dict at path through map.
 * Tensors may be F32, BF16, F16 or F64. Each parameter whose tensor is
 * missing or has another shape or dtype, each tensor of the file no
 * parameter claims, each map entry that matches nothing, and two parameters
 * mapped to one name make one line in *problems; the status then fails
 * with the first line and the count. Nothing is copied unless all fit. */
lact_status lact_lm_import_weights(lact_lm *m, const char *path, const lact_lm_name_map *map,
                                   lact_lm_problems *problems);

/* Writes m's weights (CPU) as a training checkpoint at step 0 of run
 * config cfg: the weights, zero AdamW moments and the training state, so
 * that `lact lm eval`, `sample` and `train --resume` take it (a resumed run
 * starts its schedule and data order from the beginning). source is noted
 * in the state ("imported_from"). Atomic. */
lact_status lact_lm_import_save(lact_lm *m, const lact_lm_run_cfg *cfg, const char *path,
                                const char *source);

/* Writes m's weights under their file names (map) in dtype (F32, BF16 or
 * F16): the inverse of lact_lm_import_weights. Atomic. */
lact_status lact_lm_export_weights(lact_lm *m, const char *path, const lact_lm_name_map *map,
                                   lact_dtype dtype);

/* Loads the weights of a lact checkpoint (by lact name) into m, on any
 * device. */
lact_status lact_lm_load_weights(lact_lm *m, const char *path);

#ifdef __cplusplus
}
#endif
#endif
