/* `lact <command> ...`: finds the command in the table and hands it the rest
 * of the words. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct command_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_entry;

static const command_entry commands[] = {
    {"demo", cmd_demo, "train, evaluate and sample a small LaCT language model"},
    {"lm", cmd_lm, "language models: tokenizers, token shards"},
    {"op", cmd_op, "run one op forward (and backward) on tensors from a safetensors file"},
    {"bench", cmd_bench, "time GEMM and memory copies against the library ceilings"},
    {"version", cmd_version, "print the version and what this build links"},
};
#define N_COMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *out) {
    fprintf(out, "usage: lact <command> [options]\n\n"
                 "Long-context sequence models with large-chunk test-time training.\n\n"
                 "commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-10s %s\n", "help", "show this list");
    fprintf(out, "\nRun 'lact <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) return cmd_version(0, NULL);
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "lact: unknown command '%s' (see lact --help)\n", name);
    return 2;
}
