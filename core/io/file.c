#define _POSIX_C_SOURCE 200809L

#include "file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

lact_status lact_file_read(const char *path, char **data, size_t *size) {
    *data = NULL;
    if (size) *size = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return lact_fail(errno == ENOENT ? LACT_E_NOT_FOUND : LACT_E_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - 1 - len, fp);
        if (len < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    if (!buf) {
        fclose(fp);
        return lact_fail(LACT_E_NOMEM, "%s: out of memory reading the file", path);
    }
    if (ferror(fp)) {
        int err = errno;
        fclose(fp);
        free(buf);
        return lact_fail(LACT_E_IO, "%s: read error: %s", path, strerror(err));
    }
    fclose(fp);
    buf[len] = '\0';
    *data = buf;
    if (size) *size = len;
    return LACT_OK;
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void atomic_release(lact_atomic_file *f) {
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

lact_status lact_atomic_open(lact_atomic_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path) + 32;
    f->path = str_dup(path);
    f->tmp_path = malloc(n);
    if (!f->path || !f->tmp_path) {
        atomic_release(f);
        return lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int err = errno;
        atomic_release(f);
        return lact_fail(LACT_E_IO, "%s: cannot create: %s", path, strerror(err));
    }
    return LACT_OK;
}

lact_status lact_atomic_write(lact_atomic_file *f, const void *data, size_t bytes) {
    if (!f->fp) return lact_fail(LACT_E_IO, "%s: file is not open", f->path ? f->path : "?");
    if (bytes && fwrite(data, 1, bytes, f->fp) != bytes)
        return lact_fail(LACT_E_IO, "%s: write failed: %s", f->path, strerror(errno));
    return LACT_OK;
}

lact_status lact_atomic_commit(lact_atomic_file *f) {
    if (!f->fp) return lact_fail(LACT_E_IO, "%s: file is not open", f->path ? f->path : "?");
    const char *what = NULL;
    int err = 0;
    if (fflush(f->fp) != 0)
        what = "flush";
    else if (fsync(fileno(f->fp)) != 0)
        what = "fsync";
    if (what) err = errno;
    int closed = fclose(f->fp);
    f->fp = NULL;
    if (!what && closed != 0) {
        what = "close";
        err = errno;
    }
    if (!what && rename(f->tmp_path, f->path) != 0) {
        what = "rename";
        err = errno;
    }
    if (what) {
        lact_status s = lact_fail(LACT_E_IO, "%s: %s failed: %s", f->path, what, strerror(err));
        lact_atomic_abort(f);
        return s;
    }
    atomic_release(f);
    return LACT_OK;
}

void lact_atomic_abort(lact_atomic_file *f) {
    if (!f) return;
    if (f->fp) fclose(f->fp);
    if (f->tmp_path) remove(f->tmp_path);
    atomic_release(f);
}

lact_status lact_file_write_atomic(const char *path, const void *data, size_t bytes) {
    lact_atomic_file f;
    LACT_TRY(lact_atomic_open(&f, path));
    lact_status s = lact_atomic_write(&f, data, bytes);
    if (s != LACT_OK) {
        lact_atomic_abort(&f);
        return s;
    }
    return lact_atomic_commit(&f);
}
