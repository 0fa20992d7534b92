/* Checkpoints: weights (and optimizer tensors) in one safetensors file, and
 * the training state (step, data position, RNG, config) as JSON in the same
 * file's "__metadata__" under the key "lact.state", so one atomic rename
 * publishes both together. */
#ifndef LACT_CHECKPOINT_H
#define LACT_CHECKPOINT_H

#include "core/base/status.h"
#include "core/base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the tensors and the state JSON (may be NULL) to path atomically. */
lact_status lact_checkpoint_save(const char *path, int n, const char *const *names,
                                 const lact_tensor *tensors, const char *state_json);
/* Copies each named tensor from the checkpoint into dst[i] (shapes must match;
 * dtypes are converted; dst may be on the GPU), and returns a copy of the
 * state JSON in *state_json (caller frees; NULL when absent). */
lact_status lact_checkpoint_load(const char *path, int n, const char *const *names,
                                 lact_tensor *dst, char **state_json);

#ifdef __cplusplus
}
#endif
#endif
