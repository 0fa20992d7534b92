#define _POSIX_C_SOURCE 200809L

#include "corpus.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textmap.h"

bool lact_docs_mode_parse(const char *word, lact_docs_mode *mode) {
    if (!strcmp(word, "file")) *mode = LACT_DOCS_FILE;
    else if (!strcmp(word, "paragraph")) *mode = LACT_DOCS_PARAGRAPH;
    else if (!strcmp(word, "line")) *mode = LACT_DOCS_LINE;
    else return false;
    return true;
}

bool lact_corpus_is_jsonl(const char *path) {
    size_t n = strlen(path);
    return (n >= 6 && !strcmp(path + n - 6, ".jsonl")) || (n >= 7 && !strcmp(path + n - 7, ".ndjson"));
}

static bool blank(const char *line, ssize_t n) {
    for (ssize_t i = 0; i < n; i++)
        if (line[i] != '\n' && line[i] != '\r' && line[i] != ' ' && line[i] != '\t') return false;
    return true;
}

static lact_status jsonl_doc(const char *path, int64_t lineno, const char *line, const char *field,
                             lact_doc_fn fn, void *ctx, int64_t consumed) {
    cJSON *j = cJSON_Parse(line);
    if (!j) return lact_fail(LACT_E_FORMAT, "%s:%lld: not a JSON object", path, (long long)lineno);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, field);
    lact_status s;
    if (!cJSON_IsString(t))
        s = lact_fail(LACT_E_FORMAT, "%s:%lld: no string field \"%s\"", path, (long long)lineno,
                      field);
    else
        s = fn(ctx, (const uint8_t *)t->valuestring, strlen(t->valuestring), consumed);
    cJSON_Delete(j);
    return s;
}

lact_status lact_corpus_read(const char *path, lact_docs_mode mode, const char *field,
                             lact_doc_fn fn, void *ctx) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return lact_fail(errno == ENOENT ? LACT_E_NOT_FOUND : LACT_E_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    bool jsonl = lact_corpus_is_jsonl(path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t consumed = 0, lineno = 0;
    lact_bytes doc = {0};
    lact_status s = LACT_OK;
    while (s == LACT_OK && (n = getline(&line, &cap, fp)) > 0) {
        consumed += n;
        lineno++;
        if (jsonl) {
            if (!blank(line, n)) s = jsonl_doc(path, lineno, line, field, fn, ctx, consumed);
        } else if (mode == LACT_DOCS_LINE) {
            ssize_t k = n;
            while (k > 0 && (line[k - 1] == '\n' || line[k - 1] == '\r'))
                k--;
            if (k > 0) s = fn(ctx, (const uint8_t *)line, (size_t)k, consumed);
        } else if (mode == LACT_DOCS_PARAGRAPH && blank(line, n)) {
            if (doc.n) s = fn(ctx, doc.v, doc.n, consumed);
            doc.n = 0;
        } else {
            s = lact_bytes_append(&doc, line, (size_t)n);
        }
    }
    if (s == LACT_OK && ferror(fp)) s = lact_fail(LACT_E_IO, "%s: read error: %s", path, strerror(errno));
    if (s == LACT_OK && doc.n) s = fn(ctx, doc.v, doc.n, consumed);
    free(line);
    lact_bytes_free(&doc);
    fclose(fp);
    return s;
}
