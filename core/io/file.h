/* Whole-file helpers with checked stdio, and atomic replacement: data goes to
 * "<path>.tmp.<pid>", is fsync'd, then renamed over path, so a crash never
 * leaves a half-written file under the real name. */
#ifndef LACT_FILE_H
#define LACT_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "core/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
lact_status lact_file_read(const char *path, char **data, size_t *size);

typedef struct lact_atomic_file {
    FILE *fp;
    char *path;
    char *tmp_path;
} lact_atomic_file;

lact_status lact_atomic_open(lact_atomic_file *f, const char *path);
/* Checked fwrite; on error the message names the file. */
lact_status lact_atomic_write(lact_atomic_file *f, const void *data, size_t bytes);
/* Flushes, fsyncs, closes and renames into place. */
lact_status lact_atomic_commit(lact_atomic_file *f);
/* Closes and removes the temporary file (after an error). */
void lact_atomic_abort(lact_atomic_file *f);
/* Writes a whole buffer atomically. */
lact_status lact_file_write_atomic(const char *path, const void *data, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
