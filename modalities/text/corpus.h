/* Reading documents out of corpus files, streamed a line at a time:
 * JSON-lines files (".jsonl": one object per line, the document is a string
 * field, "text" by default) and plain text, where a document is the whole
 * file, a paragraph (separated by blank lines) or a line. */
#ifndef LACT_TEXT_CORPUS_H
#define LACT_TEXT_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/status.h"

typedef enum lact_docs_mode {
    LACT_DOCS_FILE,
    LACT_DOCS_PARAGRAPH,
    LACT_DOCS_LINE,
} lact_docs_mode;

/* Called once per document; `consumed` is how many bytes of the file have
 * been read so far (for progress). */
typedef lact_status (*lact_doc_fn)(void *ctx, const uint8_t *doc, size_t n, int64_t consumed);

/* "file", "paragraph" or "line"; false when the word is none of them. */
bool lact_docs_mode_parse(const char *word, lact_docs_mode *mode);
lact_status lact_corpus_read(const char *path, lact_docs_mode mode, const char *field,
                             lact_doc_fn fn, void *ctx);
/* Whether the path names a JSON-lines file (by its extension). */
bool lact_corpus_is_jsonl(const char *path);

#endif
