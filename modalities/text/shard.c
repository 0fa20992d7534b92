#define _POSIX_C_SOURCE 200809L

#include "shard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

static int32_t read_le32(const uint8_t *p) {
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static void write_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

int lact_shard_version_for(int64_t vocab_size) { return vocab_size <= 65536 ? 1 : 2; }

lact_status lact_shard_open(lact_shard *s, const char *path) {
    memset(s, 0, sizeof *s);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return lact_fail(errno == ENOENT ? LACT_E_NOT_FOUND : LACT_E_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    struct stat st;
    uint8_t h[LACT_SHARD_HEADER_BYTES];
    lact_status r = LACT_OK;
    if (fstat(fileno(fp), &st) != 0) {
        r = lact_fail(LACT_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (st.st_size < LACT_SHARD_HEADER_BYTES ||
               fread(h, 1, sizeof h, fp) != sizeof h) {
        r = lact_fail(LACT_E_FORMAT, "%s: truncated token shard (%lld bytes, the header alone is %d)",
                      path, (long long)st.st_size, LACT_SHARD_HEADER_BYTES);
    } else if (read_le32(h) != LACT_SHARD_MAGIC) {
        r = lact_fail(LACT_E_FORMAT, "%s: bad magic %d (a token shard starts with %d)", path,
                      read_le32(h), LACT_SHARD_MAGIC);
    } else if (read_le32(h + 4) != 1 && read_le32(h + 4) != 2) {
        r = lact_fail(LACT_E_FORMAT, "%s: token shard version %d is unsupported (1: uint16, 2: uint32)",
                      path, read_le32(h + 4));
    } else {
        s->version = read_le32(h + 4);
        s->token_bytes = s->version == 1 ? 2 : 4;
        s->n_tokens = read_le32(h + 8);
        int64_t want = LACT_SHARD_HEADER_BYTES + s->n_tokens * s->token_bytes;
        if (s->n_tokens < 0 || want != (int64_t)st.st_size)
            r = lact_fail(LACT_E_FORMAT,
                          "%s: header says %lld tokens (%lld bytes) but the file has %lld bytes",
                          path, (long long)s->n_tokens, (long long)want, (long long)st.st_size);
    }
    s->path = r == LACT_OK ? malloc(strlen(path) + 1) : NULL;
    if (r == LACT_OK && !s->path) r = lact_fail(LACT_E_NOMEM, "%s: out of memory", path);
    if (r != LACT_OK) {
        fclose(fp);
        memset(s, 0, sizeof *s);
        return r;
    }
    strcpy(s->path, path);
    s->fp = fp;
    return LACT_OK;
}

lact_status lact_shard_read(lact_shard *s, int64_t first, int64_t n, int32_t *out) {
    if (first < 0 || n < 0 || first + n > s->n_tokens)
        return lact_fail(LACT_E_ARG, "%s: tokens %lld..%lld outside the shard's %lld", s->path,
                         (long long)first, (long long)(first + n), (long long)s->n_tokens);
    if (fseeko(s->fp, (off_t)(LACT_SHARD_HEADER_BYTES + first * s->token_bytes), SEEK_SET) != 0)
        return lact_fail(LACT_E_IO, "%s: seek failed: %s", s->path, strerror(errno));
    uint8_t buf[8192];
    int64_t done = 0;
    while (done < n) {
        int64_t k = n - done;
        if (k * s->token_bytes > (int64_t)sizeof buf) k = (int64_t)sizeof buf / s->token_bytes;
        if (fread(buf, (size_t)s->token_bytes, (size_t)k, s->fp) != (size_t)k)
            return lact_fail(LACT_E_IO, "%s: read failed (file changed while open?)", s->path);
        for (int64_t i = 0; i < k; i++)
            out[done + i] = s->token_bytes == 2
                                ? (int32_t)(buf[2 * i] | buf[2 * i + 1] << 8)
                                : read_le32(buf + 4 * i);
        done += k;
    }
    return LACT_OK;
}

void lact_shard_close(lact_shard *s) {
    if (s->fp) fclose(s->fp);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static lact_status flush_buf(lact_shard_writer *w) {
    lact_status r = lact_atomic_write(&w->f, w->buf, w->buf_len);
    w->buf_len = 0;
    return r;
}

lact_status lact_shard_writer_open(lact_shard_writer *w, const char *path, int version) {
    memset(w, 0, sizeof *w);
    if (version != 1 && version != 2)
        return lact_fail(LACT_E_ARG, "%s: token shard version %d (1 or 2)", path, version);
    w->version = version;
    LACT_TRY(lact_atomic_open(&w->f, path));
    uint8_t h[LACT_SHARD_HEADER_BYTES] = {0};
    lact_status r = lact_atomic_write(&w->f, h, sizeof h);
    if (r != LACT_OK) lact_atomic_abort(&w->f);
    return r;
}

lact_status lact_shard_writer_put(lact_shard_writer *w, const int32_t *ids, size_t n) {
    int tb = w->version == 1 ? 2 : 4;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (tb == 2 && ids[i] > 65535))
            return lact_fail(LACT_E_ARG, "%s: token %d does not fit a version %d shard",
                             w->f.path, ids[i], w->version);
        if (w->buf_len + 4 > sizeof w->buf) LACT_TRY(flush_buf(w));
        if (tb == 2) {
            w->buf[w->buf_len] = (uint8_t)ids[i];
            w->buf[w->buf_len + 1] = (uint8_t)(ids[i] >> 8);
        } else {
            write_le32(w->buf + w->buf_len, (uint32_t)ids[i]);
        }
        w->buf_len += (size_t)tb;
    }
    if (w->n_tokens + (int64_t)n > INT32_MAX)
        return lact_fail(LACT_E_ARG, "%s: a shard holds at most %d tokens", w->f.path, INT32_MAX);
    w->n_tokens += (int64_t)n;
    return LACT_OK;
}

lact_status lact_shard_writer_commit(lact_shard_writer *w) {
    LACT_TRY(flush_buf(w));
    uint8_t h[12];
    write_le32(h, LACT_SHARD_MAGIC);
    write_le32(h + 4, (uint32_t)w->version);
    write_le32(h + 8, (uint32_t)w->n_tokens);
    if (fflush(w->f.fp) != 0 || fseek(w->f.fp, 0, SEEK_SET) != 0)
        return lact_fail(LACT_E_IO, "%s: cannot rewind to write the header: %s", w->f.path,
                         strerror(errno));
    LACT_TRY(lact_atomic_write(&w->f, h, sizeof h));
    if (fseek(w->f.fp, 0, SEEK_END) != 0)
        return lact_fail(LACT_E_IO, "%s: seek failed: %s", w->f.path, strerror(errno));
    return lact_atomic_commit(&w->f);
}

void lact_shard_writer_abort(lact_shard_writer *w) { lact_atomic_abort(&w->f); }
