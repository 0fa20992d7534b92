#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define CHECKPOINT_STATE_KEY "lact.state"

lact_status lact_checkpoint_save(const char *path, int n, const char *const *names,
                                 const lact_tensor *tensors, const char *state_json) {
    /* "format": "pt" is what PyTorch-side loaders look for. */
    const char *keys[2] = {"format", CHECKPOINT_STATE_KEY};
    const char *values[2] = {"pt", state_json};
    return lact_st_write(path, n, names, tensors, state_json ? 2 : 1, keys, values);
}

lact_status lact_checkpoint_load(const char *path, int n, const char *const *names,
                                 lact_tensor *dst, char **state_json) {
    if (state_json) *state_json = NULL;
    lact_st_file f;
    LACT_TRY(lact_st_open(&f, path));
    lact_status s = LACT_OK;
    for (int i = 0; i < n && s == LACT_OK; i++) {
        lact_tensor src;
        s = lact_st_get(&f, names[i], &src);
        if (s != LACT_OK) break;
        if (!lact_tensor_same_shape(&src, &dst[i])) {
            char a[128], b[128];
            s = lact_fail(LACT_E_FORMAT, "%s: tensor '%s' is %s in the checkpoint, expected %s",
                          path, names[i], lact_tensor_describe(&src, a, sizeof a),
                          lact_tensor_describe(&dst[i], b, sizeof b));
            break;
        }
        s = lact_tensor_copy(&dst[i], &src);
        if (s != LACT_OK) s = lact_fail_context(s, "%s: tensor '%s'", path, names[i]);
    }
    const char *state = lact_st_meta(&f, CHECKPOINT_STATE_KEY);
    if (s == LACT_OK && state && state_json) {
        size_t len = strlen(state) + 1;
        *state_json = malloc(len);
        if (*state_json)
            memcpy(*state_json, state, len);
        else
            s = lact_fail(LACT_E_NOMEM, "%s: out of memory copying the training state", path);
    }
    lact_st_close(&f);
    return s;
}
