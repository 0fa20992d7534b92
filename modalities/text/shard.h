/* Token shards in the llm.c layout: a header of 256 little-endian int32
 * (header[0] = 20240520, header[1] = version, header[2] = token count, the
 * rest 0), then the tokens. Version 1 stores uint16 tokens (llm.c); version
 * 2, this project's extension for vocabularies above 65536 ids, stores
 * uint32 tokens. */
#ifndef LACT_TEXT_SHARD_H
#define LACT_TEXT_SHARD_H

#include <stdint.h>
#include <stdio.h>

#include "core/base/status.h"
#include "core/io/file.h"

#define LACT_SHARD_MAGIC 20240520
#define LACT_SHARD_HEADER_INTS 256
#define LACT_SHARD_HEADER_BYTES (LACT_SHARD_HEADER_INTS * 4)

/* An open, validated shard read through a buffered FILE. */
typedef struct lact_shard {
    FILE *fp;
    char *path;
    int version;
    int token_bytes; /* 2 or 4 */
    int64_t n_tokens;
} lact_shard;

/* Checks magic, version and that the file holds exactly header + count
 * tokens; errors name the file. */
lact_status lact_shard_open(lact_shard *s, const char *path);
/* Reads tokens [first, first + n) as int32. */
lact_status lact_shard_read(lact_shard *s, int64_t first, int64_t n, int32_t *out);
void lact_shard_close(lact_shard *s);

/* Writes one shard atomically: tokens stream through a temporary file and
 * the header is filled in when the count is known. */
typedef struct lact_shard_writer {
    lact_atomic_file f;
    int version;
    int64_t n_tokens;
    uint8_t buf[1 << 16];
    size_t buf_len;
} lact_shard_writer;

/* version 1 (uint16) or 2 (uint32). */
lact_status lact_shard_writer_open(lact_shard_writer *w, const char *path, int version);
/* Appends tokens; an id that does not fit the version is an error. */
lact_status lact_shard_writer_put(lact_shard_writer *w, const int32_t *ids, size_t n);
lact_status lact_shard_writer_commit(lact_shard_writer *w);
void lact_shard_writer_abort(lact_shard_writer *w);

/* The version that can hold ids below vocab_size. */
int lact_shard_version_for(int64_t vocab_size);

#endif
