/* JSON configs read through cJSON into a plain C struct described by a table
 * of fields. Keys may be dotted ("optim.lr" is {"optim": {"lr": ...}}). A key
 * in the file that the table does not name is an error (a typo must not pass
 * silently), as is a value of the wrong type. `--set key=value` overrides use
 * the same table. */
#ifndef LACT_CONFIG_H
#define LACT_CONFIG_H

#include <stddef.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lact_cfg_type {
    LACT_CFG_INT,    /* int64_t */
    LACT_CFG_FLOAT,  /* double */
    LACT_CFG_BOOL,   /* bool */
    LACT_CFG_STRING, /* char[size] */
} lact_cfg_type;

typedef struct lact_cfg_field {
    const char *key;
    lact_cfg_type type;
    size_t offset; /* offsetof(struct, member) */
    size_t size;   /* for strings: the char array's size */
    const char *help;
} lact_cfg_field;

/* Reads path into out (which already holds the defaults). */
lact_status lact_config_load(const char *path, const lact_cfg_field *fields, int n_fields,
                             void *out);
/* The same from a string; source names it in errors. */
lact_status lact_config_parse(const char *json, const char *source, const lact_cfg_field *fields,
                              int n_fields, void *out);
/* Applies one "key=value" override. */
lact_status lact_config_set(const char *assignment, const lact_cfg_field *fields, int n_fields,
                            void *out);
/* The struct as a JSON object (nested by dotted keys); caller frees. */
char *lact_config_to_json(const lact_cfg_field *fields, int n_fields, const void *in);

#ifdef __cplusplus
}
#endif
#endif
