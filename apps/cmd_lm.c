/* `lact lm <verb>`: the language-model frontend. Each verb lives in its own
 * cmd_lm_<verb>.c and takes the words after it. */
#include <stdio.h>
#include <string.h>

#include "cmd_lm.h"
#include "commands.h"

typedef struct lm_verb {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} lm_verb;

static const lm_verb verbs[] = {
    {"tokenizer", cmd_lm_tokenizer, "train a byte-level BPE tokenizer, encode or decode text"},
    {"prepare", cmd_lm_prepare, "tokenise text or JSON-lines files into token shards"},
    {"train", cmd_lm_train, "train the language model, with checkpoints and --resume"},
    {"eval", cmd_lm_eval, "ppl, bpb, loss by position, needle in a haystack, multiple choice"},
    {"sample", cmd_lm_sample, "continue a prompt with a checkpoint, streaming the tokens"},
    {"import", cmd_lm_import, "a PyTorch state dict (safetensors) to a lact checkpoint"},
    {"export", cmd_lm_export, "a checkpoint's weights as a PyTorch state dict"},
    {"loss", cmd_lm_loss, "loss and gradients of a checkpoint on one token batch"},
};
#define N_VERBS ((int)(sizeof verbs / sizeof verbs[0]))

static void lm_usage(FILE *out) {
    fprintf(out, "usage: lact lm <verb> [options]\n\nLanguage modelling.\n\nverbs:\n");
    for (int i = 0; i < N_VERBS; i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(out, "\nRun 'lact lm <verb> --help' for the options of a verb.\n");
}

int cmd_lm(int argc, char **argv) {
    if (argc < 1) {
        fprintf(stderr, "lact lm: which verb? (see lact lm --help)\n");
        return 2;
    }
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
        lm_usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_VERBS; i++)
        if (!strcmp(argv[0], verbs[i].name)) return verbs[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lact lm: unknown verb '%s' (see lact lm --help)\n", argv[0]);
    return 2;
}
