/* `lact lm prepare`: tokenises text and JSON-lines files into llm.c-style
 * token shards, <out>/<name>_train_000000.bin and <name>_val_000000.bin,
 * plus <name>_meta.json describing them. Each document is preceded by the
 * end-of-text token (llm.c's convention); every 1/f-th document (f =
 * --val-fraction) goes to validation, spread evenly and deterministically. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/base/log.h"
#include "core/base/progress.h"
#include "core/io/file.h"
#include "modalities/text/corpus.h"
#include "modalities/text/shard.h"
#include "modalities/text/tokenizer.h"

#define PREPARE_MAX_FILES 1024

typedef struct prepare_opts {
    const char *tokenizer, *out, *name, *field, *docs;
    double val_fraction;
    int64_t shard_tokens, eot;
    bool quiet;
} prepare_opts;

/* One split's sequence of shards. */
typedef struct split_out {
    const char *split;
    lact_shard_writer w;
    bool open;
    int n_shards;
    int64_t in_shard, total;
} split_out;

typedef struct prepare_run {
    const prepare_opts *o;
    const char *name;
    lact_tokenizer tok;
    int version;
    int32_t eot;
    split_out train, val;
    lact_ids ids;
    int64_t docs, val_docs, bytes_before, total_bytes;
    lact_progress bar;
    bool show_bar;
} prepare_run;

static lact_status split_put(prepare_run *p, split_out *s, const int32_t *ids, size_t n) {
    while (n > 0) {
        if (!s->open) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_%s_%06d.bin", p->o->out, p->name, s->split,
                     s->n_shards);
            LACT_TRY(lact_shard_writer_open(&s->w, path, p->version));
            s->open = true;
            s->in_shard = 0;
        }
        size_t k = n;
        if ((int64_t)k > p->o->shard_tokens - s->in_shard)
            k = (size_t)(p->o->shard_tokens - s->in_shard);
        LACT_TRY(lact_shard_writer_put(&s->w, ids, k));
        s->in_shard += (int64_t)k, s->total += (int64_t)k;
        ids += k, n -= k;
        if (s->in_shard == p->o->shard_tokens) {
            s->open = false;
            s->n_shards++;
            LACT_TRY(lact_shard_writer_commit(&s->w));
        }
    }
    return LACT_OK;
}

static lact_status split_finish(split_out *s) {
    if (!s->open) return LACT_OK;
    s->open = false;
    s->n_shards++;
    return lact_shard_writer_commit(&s->w);
}

static lact_status on_doc(void *ctx, const uint8_t *doc, size_t n, int64_t consumed) {
    prepare_run *p = ctx;
    double f = p->o->val_fraction;
    int64_t k = p->docs++;
    bool val = floor((double)(k + 1) * f) > floor((double)k * f);
    p->ids.n = 0;
    LACT_TRY(lact_ids_push(&p->ids, p->eot));
    LACT_TRY(lact_tokenizer_encode(&p->tok, doc, n, &p->ids));
    p->val_docs += val;
    LACT_TRY(split_put(p, val ? &p->val : &p->train, p->ids.v, p->ids.n));
    if (p->show_bar) {
        char extra[96];
        double dt = lact_now() - p->bar.start;
        int64_t toks = p->train.total + p->val.total;
        snprintf(extra, sizeof extra, "%lld tok, %.0f tok/s", (long long)toks,
                 dt > 0 ? (double)toks / dt : 0.0);
        lact_progress_update(&p->bar, p->bytes_before + consumed, extra);
    }
    return LACT_OK;
}

static lact_status make_dir(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return lact_fail(LACT_E_ARG, "--out: bad directory '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return lact_fail(LACT_E_IO, "%s: cannot create: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return lact_fail(LACT_E_IO, "%s: not a directory", path);
    return LACT_OK;
}

static lact_status write_meta(const prepare_run *p) {
    char path[4096], json[2048];
    snprintf(path, sizeof path, "%s/%s_meta.json", p->o->out, p->name);
    int n = snprintf(json, sizeof json,
                     "{\n  \"format\": \"llm.c token shards\",\n  \"magic\": %d,\n"
                     "  \"version\": %d,\n  \"token_bytes\": %d,\n  \"vocab_size\": %lld,\n"
                     "  \"eot\": %d,\n  \"documents\": %lld,\n  \"val_documents\": %lld,\n"
                     "  \"train_tokens\": %lld,\n  \"train_shards\": %d,\n"
                     "  \"val_tokens\": %lld,\n  \"val_shards\": %d\n}\n",
                     LACT_SHARD_MAGIC, p->version, p->version == 1 ? 2 : 4,
                     (long long)lact_tokenizer_vocab_size(&p->tok), p->eot, (long long)p->docs,
                     (long long)p->val_docs, (long long)p->train.total, p->train.n_shards,
                     (long long)p->val.total, p->val.n_shards);
    return lact_file_write_atomic(path, json, (size_t)n);
}

static const char *base_name(const char *path, char *buf, size_t n) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(buf, n, "%.*s", (int)(len - start), path + start);
    return buf;
}

static lact_status prepare_files(prepare_run *p, lact_docs_mode mode, const char **files, int n) {
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0)
            return lact_fail(LACT_E_NOT_FOUND, "%s: cannot open: %s", files[i], strerror(errno));
        p->total_bytes += (int64_t)st.st_size;
    }
    p->show_bar = !p->o->quiet && p->total_bytes >= (1 << 20);
    if (p->show_bar) lact_progress_init(&p->bar, stderr, "prepare", "B", p->total_bytes);
    for (int i = 0; i < n; i++) {
        LACT_TRY(lact_corpus_read(files[i], mode, p->o->field, on_doc, p));
        struct stat st;
        p->bytes_before += stat(files[i], &st) == 0 ? (int64_t)st.st_size : 0;
    }
    if (p->show_bar) lact_progress_finish(&p->bar);
    LACT_TRY(split_finish(&p->train));
    LACT_TRY(split_finish(&p->val));
    return write_meta(p);
}

static int prepare_main(const cli_command *cmd, const prepare_opts *o, const char **files, int n) {
    lact_docs_mode mode;
    if (!lact_docs_mode_parse(o->docs, &mode)) {
        cli_error(cmd, "--docs expects file, paragraph or line, got '%s'", o->docs);
        return 2;
    }
    if (!o->out || n == 0 || !(o->val_fraction >= 0 && o->val_fraction < 1) ||
        o->shard_tokens < 1 || o->shard_tokens > INT32_MAX) {
        cli_error(cmd, !o->out  ? "--out DIR is required"
                       : n == 0 ? "no input files given"
                                : "--val-fraction must be in [0, 1) and --shard-tokens in "
                                  "1..2147483647");
        return 2;
    }
    prepare_run p = {0};
    p.o = o;
    p.train.split = "train", p.val.split = "val";
    char name[256];
    p.name = o->name ? o->name : base_name(o->out, name, sizeof name);
    lact_status s = lact_tokenizer_load(&p.tok, o->tokenizer);
    if (s != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        return 1;
    }
    int64_t vocab = lact_tokenizer_vocab_size(&p.tok);
    p.eot = o->eot >= 0 ? (int32_t)o->eot : lact_tokenizer_eot(&p.tok);
    int rc = 0;
    if (p.eot < 0 || p.eot >= vocab) {
        cli_error(cmd,
                  p.eot < 0 ? "the tokenizer has no <|endoftext|> token; pass --eot ID"
                            : "--eot %lld is outside the vocabulary of %lld ids",
                  (long long)p.eot, (long long)vocab);
        rc = 2;
    }
    p.version = lact_shard_version_for(vocab);
    if (!rc) s = make_dir(o->out);
    if (!rc && s == LACT_OK) s = prepare_files(&p, mode, files, n);
    if (!rc && s != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        rc = 1;
    }
    if (p.train.open) lact_shard_writer_abort(&p.train.w);
    if (p.val.open) lact_shard_writer_abort(&p.val.w);
    if (!rc && !o->quiet) {
        printf("prepare: %lld documents -> %lld train tokens in %d shards, %lld val tokens "
               "(%lld documents) in %d shards, uint%d, eot %d -> %s/%s_*.bin\n",
               (long long)p.docs, (long long)p.train.total, p.train.n_shards,
               (long long)p.val.total, (long long)p.val_docs, p.val.n_shards,
               p.version == 1 ? 16 : 32, p.eot, o->out, p.name);
        if (o->val_fraction > 0 && p.val_docs == 0)
            fprintf(stderr,
                    "lact lm prepare: no validation documents (%lld documents in all); "
                    "try --docs paragraph\n",
                    (long long)p.docs);
    }
    lact_tokenizer_free(&p.tok);
    lact_ids_free(&p.ids);
    return rc;
}

int cmd_lm_prepare(int argc, char **argv) {
    prepare_opts o;
    const cli_opt opts[] = {
        {"--tokenizer", CLI_STRING, "FILE|bytes", "tokenizer.json, or bytes (257 ids, eot 256)",
         "bytes", &o.tokenizer},
        {"--out", CLI_STRING, "DIR", "directory for the shards (created)", NULL, &o.out},
        {"--name", CLI_STRING, "NAME", "shard name prefix (default: the --out folder's name)", NULL,
         &o.name},
        {"--val-fraction", CLI_FLOAT, "F", "share of documents held out for validation", "0.01",
         &o.val_fraction},
        {"--shard-tokens", CLI_INT, "N", "tokens per shard", "100000000", &o.shard_tokens},
        {"--docs", CLI_STRING, "file|paragraph|line", "what a document is in a text file", "file",
         &o.docs},
        {"--field", CLI_STRING, "NAME", "the text field of .jsonl files (one document a line)",
         "text", &o.field},
        {"--eot", CLI_INT, "ID", "end-of-text id (-1: the tokenizer's <|endoftext|>)", "-1",
         &o.eot},
        {"--quiet", CLI_BOOL, NULL, "print only errors", NULL, &o.quiet},
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm prepare",
        "--out DIR [options] FILE...",
        "Tokenises text and JSON-lines files into llm.c token shards: a 256 x int32 header\n"
        "(magic 20240520; version 1 = uint16 tokens, 2 = uint32 for vocabularies over 65536;\n"
        "header[2] = token count), then the tokens. Each document is preceded by the\n"
        "end-of-text token; every 1/F-th document goes to the val split.",
        NULL,
        opts,
        PREPARE_MAX_FILES};
    const char **files = malloc(PREPARE_MAX_FILES * sizeof *files);
    if (!files) return 1;
    int n = 0;
    cli_result r = cli_parse(&cmd, argc, argv, files, &n);
    int rc = r == CLI_PARSED ? prepare_main(&cmd, &o, files, n) : r == CLI_HELP ? 0 : 2;
    free(files);
    return rc;
}
