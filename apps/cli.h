/* A table-driven flag parser. Each command describes its options as a table of
 * {flag, type, meta, help, default, field}; defaults, parsing (`--key value`
 * and `--key=value`) and the usage text all come from that one table. */
#ifndef LACT_APP_CLI_H
#define LACT_APP_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/base/tensor.h"

typedef enum cli_type {
    CLI_BOOL,   /* bool; the flag takes no value */
    CLI_INT,    /* int64_t */
    CLI_FLOAT,  /* double */
    CLI_STRING, /* const char * (points into argv or at the default) */
    CLI_LIST,   /* cli_list: the flag may repeat (--set a=1 --set b=2) */
} cli_type;

#define CLI_LIST_MAX 32

typedef struct cli_list {
    const char *items[CLI_LIST_MAX];
    int n;
} cli_list;

typedef struct cli_opt {
    const char *flag; /* "--steps"; NULL ends the table */
    cli_type type;
    const char *meta; /* "N", "FILE"; ignored for CLI_BOOL */
    const char *help;
    const char *def; /* default as text, NULL = none (false / 0 / NULL) */
    void *field;
} cli_opt;

typedef struct cli_command {
    const char *path;    /* "lact op": prefix of every message */
    const char *args;    /* "NAME [options]": after the path in the usage line */
    const char *summary; /* one line */
    const char *details; /* more text printed after the options, or NULL */
    const cli_opt *opts;
    int max_positional;
} cli_command;

typedef enum cli_result {
    CLI_PARSED = 0, /* carry on */
    CLI_HELP,       /* --help was printed: exit 0 */
    CLI_ERROR,      /* one line went to stderr: exit 2 */
} cli_result;

/* Applies the defaults, then parses argv[0..argc) (the words after the
 * command). Words not starting with "--" are positional and land in
 * positional[0..*n_positional). "--" ends the flags. */
cli_result cli_parse(const cli_command *cmd, int argc, char **argv, const char **positional,
                     int *n_positional);
void cli_usage(const cli_command *cmd, FILE *out);
/* Prints "<path>: <message>" to stderr as one line. */
void cli_error(const cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The flags most commands share. */
typedef struct cli_common {
    const char *device; /* "auto", "cpu", "cuda" */
    int64_t threads;
    int64_t seed;
    bool json;
    bool quiet;
} cli_common;

#define CLI_OPT_DEVICE(c)                                                                          \
    {                                                                                              \
        "--device", CLI_STRING, "cpu|cuda", "where to run (auto: cuda when a GPU is present)",     \
            "auto", &(c)->device                                                                   \
    }
#define CLI_OPT_THREADS(c)                                                                         \
    { "--threads", CLI_INT, "N", "CPU threads (0 = all cores)", "0", &(c)->threads }
#define CLI_OPT_SEED(c)                                                                            \
    { "--seed", CLI_INT, "S", "random seed", "1234", &(c)->seed }
#define CLI_OPT_JSON(c)                                                                            \
    { "--json", CLI_BOOL, NULL, "print results as JSON lines", NULL, &(c)->json }
#define CLI_OPT_QUIET(c)                                                                           \
    { "--quiet", CLI_BOOL, NULL, "print only errors", NULL, &(c)->quiet }
/* The five above, in that order: the flags of every command that runs work. */
#define CLI_OPT_COMMON(c)                                                                          \
    CLI_OPT_DEVICE(c), CLI_OPT_THREADS(c), CLI_OPT_SEED(c), CLI_OPT_JSON(c), CLI_OPT_QUIET(c)
#define CLI_OPT_END                                                                                \
    { NULL, CLI_BOOL, NULL, NULL, NULL, NULL }

/* Resolves --device ("auto" picks cuda when this build sees a GPU) and sets
 * the thread count; prints one line and returns false when the device cannot
 * be used. */
bool cli_resolve_device(const cli_command *cmd, const cli_common *c, lact_device *dev);

#endif
