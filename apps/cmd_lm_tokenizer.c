/* `lact lm tokenizer encode|decode|train`: text on stdin to a JSON array of
 * ids on stdout and back, and byte-level BPE training into a Hugging Face
 * tokenizer.json. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cmd_lm.h"
#include "modalities/text/bpe_json.h"
#include "modalities/text/bpe_train.h"
#include "modalities/text/corpus.h"
#include "modalities/text/tokenizer.h"

#define TRAIN_MAX_FILES 256

static lact_status read_all(FILE *fp, lact_bytes *out) {
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        LACT_TRY(lact_bytes_append(out, buf, n));
    if (ferror(fp)) return lact_fail(LACT_E_IO, "stdin: read error");
    return LACT_OK;
}

static int run_encode(const cli_command *cmd, const char *spec) {
    lact_tokenizer t;
    lact_bytes in = {0};
    lact_ids ids = {0};
    lact_status s = lact_tokenizer_load(&t, spec);
    if (s != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        return 1;
    }
    s = read_all(stdin, &in);
    if (s == LACT_OK) s = lact_tokenizer_encode(&t, in.v, in.n, &ids);
    if (s == LACT_OK) {
        putchar('[');
        for (size_t i = 0; i < ids.n; i++)
            printf(i ? ", %d" : "%d", ids.v[i]);
        puts("]");
        if (fflush(stdout) != 0 || ferror(stdout)) s = lact_fail(LACT_E_IO, "stdout: write error");
    }
    if (s != LACT_OK) cli_error(cmd, "%s", lact_errmsg());
    lact_tokenizer_free(&t);
    lact_bytes_free(&in);
    lact_ids_free(&ids);
    return s == LACT_OK ? 0 : 1;
}

static lact_status parse_ids(const lact_bytes *in, lact_ids *ids) {
    char *text = malloc(in->n + 1);
    if (!text) return lact_fail(LACT_E_NOMEM, "stdin: out of memory");
    memcpy(text, in->v, in->n);
    text[in->n] = '\0';
    cJSON *j = cJSON_Parse(text);
    free(text);
    lact_status s = LACT_OK;
    if (!cJSON_IsArray(j))
        s = lact_fail(LACT_E_FORMAT, "stdin: expected a JSON array of token ids");
    int i = 0;
    for (const cJSON *e = j ? j->child : NULL; e && s == LACT_OK; e = e->next, i++) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 2147483647.0 ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            s = lact_fail(LACT_E_FORMAT, "stdin: element %d is not a token id", i);
        else
            s = lact_ids_push(ids, (int32_t)e->valuedouble);
    }
    cJSON_Delete(j);
    return s;
}

static int run_decode(const cli_command *cmd, const char *spec) {
    lact_tokenizer t;
    lact_bytes in = {0}, out = {0};
    lact_ids ids = {0};
    lact_status s = lact_tokenizer_load(&t, spec);
    if (s != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        return 1;
    }
    s = read_all(stdin, &in);
    if (s == LACT_OK) s = parse_ids(&in, &ids);
    if (s == LACT_OK) s = lact_tokenizer_decode(&t, ids.v, ids.n, &out);
    if (s == LACT_OK && ((out.n && fwrite(out.v, 1, out.n, stdout) != out.n) || fflush(stdout)))
        s = lact_fail(LACT_E_IO, "stdout: write error");
    if (s != LACT_OK) cli_error(cmd, "%s", lact_errmsg());
    lact_tokenizer_free(&t);
    lact_bytes_free(&in);
    lact_bytes_free(&out);
    lact_ids_free(&ids);
    return s == LACT_OK ? 0 : 1;
}

static lact_status train_add_doc(void *ctx, const uint8_t *doc, size_t n, int64_t consumed) {
    (void)consumed;
    return lact_bpe_trainer_add(ctx, doc, n);
}

typedef struct train_opts {
    int64_t vocab, min_frequency;
    const char *out, *pretok, *field;
    cli_list special;
    bool quiet;
} train_opts;

static int run_train(const cli_command *cmd, const train_opts *o, const char **files, int n_files) {
    text_pretok kind;
    if (!strcmp(o->pretok, "gpt2"))
        kind = TEXT_PRETOK_GPT2;
    else if (!strcmp(o->pretok, "llama3"))
        kind = TEXT_PRETOK_LLAMA3;
    else {
        cli_error(cmd, "--pretok expects gpt2 or llama3, got '%s'", o->pretok);
        return 2;
    }
    const char *def_special[] = {"<|endoftext|>"};
    const char *const *specials = o->special.n ? o->special.items : def_special;
    int n_specials = o->special.n ? o->special.n : 1;
    if (!o->out || n_files == 0 || o->vocab < 256 + n_specials || o->min_frequency < 1) {
        cli_error(cmd, !o->out        ? "--out FILE is required"
                       : n_files == 0 ? "no corpus files given"
                                      : "--vocab must be at least 256 + the special tokens and "
                                        "--min-frequency at least 1");
        return 2;
    }
    lact_bpe_trainer tr;
    lact_bpe_trainer_init(&tr, kind);
    lact_status s = LACT_OK;
    for (int i = 0; i < n_files && s == LACT_OK; i++)
        s = lact_corpus_read(files[i], LACT_DOCS_FILE, o->field, train_add_doc, &tr);
    lact_bpe b;
    lact_bpe_train_opts to = {o->vocab, o->min_frequency, specials, n_specials};
    bool trained = false;
    if (s == LACT_OK) s = lact_bpe_trainer_finish(&tr, &to, &b), trained = s == LACT_OK;
    if (s == LACT_OK) s = lact_bpe_save_json(&b, o->out);
    if (s == LACT_OK && !o->quiet)
        printf("tokenizer: %lld bytes in %zu distinct pieces -> %d merges, vocabulary %d "
               "(eot %d) -> %s\n",
               (long long)tr.bytes_seen, tr.n_words, b.n_merges, b.n_ids, b.eot_id, o->out);
    if (s != LACT_OK) cli_error(cmd, "%s", lact_errmsg());
    if (trained) lact_bpe_free(&b);
    lact_bpe_trainer_free(&tr);
    return s == LACT_OK ? 0 : 1;
}

static int tokenizer_train(int argc, char **argv) {
    train_opts o;
    const cli_opt opts[] = {
        {"--vocab", CLI_INT, "N", "vocabulary size, bytes and special tokens included", "4096",
         &o.vocab},
        {"--out", CLI_STRING, "FILE", "where to write tokenizer.json", NULL, &o.out},
        {"--pretok", CLI_STRING, "gpt2|llama3", "pre-tokenisation rules", "gpt2", &o.pretok},
        {"--min-frequency", CLI_INT, "N", "stop when the best pair occurs fewer times", "2",
         &o.min_frequency},
        {"--special", CLI_LIST, "TOKEN", "special token, may repeat (default <|endoftext|>)", NULL,
         &o.special},
        {"--field", CLI_STRING, "NAME", "the text field of .jsonl files", "text", &o.field},
        {"--quiet", CLI_BOOL, NULL, "print only errors", NULL, &o.quiet},
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm tokenizer train",
        "--vocab N --out tok.json [options] CORPUS...",
        "Learns a byte-level BPE tokenizer (ids 0..255 are the bytes, then the merges, then the\n"
        "special tokens) from text or .jsonl files and writes a Hugging Face tokenizer.json.",
        NULL,
        opts,
        TRAIN_MAX_FILES};
    const char *files[TRAIN_MAX_FILES];
    int n = 0;
    cli_result r = cli_parse(&cmd, argc, argv, files, &n);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    return run_train(&cmd, &o, files, n);
}

static int tokenizer_codec(bool encode, int argc, char **argv) {
    const char *spec = NULL;
    const cli_opt opts[] = {
        {"--tokenizer", CLI_STRING, "FILE|bytes", "tokenizer.json, or bytes", NULL, &spec},
        CLI_OPT_END,
    };
    const cli_command cmd = {
        encode ? "lact lm tokenizer encode" : "lact lm tokenizer decode",
        "--tokenizer FILE|bytes < INPUT",
        encode ? "Reads text on stdin and prints its token ids as a JSON array."
               : "Reads a JSON array of token ids on stdin and writes their text to stdout.",
        NULL,
        opts,
        0};
    cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (!spec) {
        cli_error(&cmd, "--tokenizer FILE|bytes is required");
        return 2;
    }
    return encode ? run_encode(&cmd, spec) : run_decode(&cmd, spec);
}

int cmd_lm_tokenizer(int argc, char **argv) {
    const char *verb = argc > 0 ? argv[0] : "";
    if (!strcmp(verb, "encode")) return tokenizer_codec(true, argc - 1, argv + 1);
    if (!strcmp(verb, "decode")) return tokenizer_codec(false, argc - 1, argv + 1);
    if (!strcmp(verb, "train")) return tokenizer_train(argc - 1, argv + 1);
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        printf("usage: lact lm tokenizer encode|decode|train [options]\n\n"
               "  encode   text on stdin -> JSON array of ids on stdout\n"
               "  decode   JSON array of ids on stdin -> text on stdout\n"
               "  train    learn a byte-level BPE tokenizer.json from a corpus\n\n"
               "Run 'lact lm tokenizer <verb> --help' for the options of a verb.\n");
        return 0;
    }
    fprintf(stderr,
            verb[0] ? "lact lm tokenizer: unknown verb '%s' (encode, decode or train)\n"
                    : "lact lm tokenizer: which verb%s? (encode, decode or train)\n",
            verb);
    return 2;
}
