/* `lact demo`: the `lact lm` pipeline on a shipped text, in one command and
 * one process. It learns a small byte-level BPE tokenizer from the text,
 * prepares token shards with it, trains the LaCT model of
 * configs/lm-demo.json on them, evaluates it (perplexity and bits per byte
 * on the held-out documents) and samples from it. Each step calls the verb's
 * own entry point with the arguments it prints, so the output folder is an
 * ordinary `lact lm` run that can be sampled, evaluated or trained further
 * by hand, and what the demo does is exactly what those commands do. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_lm.h"
#include "commands.h"
#include "core/base/log.h"
#include "core/base/progress.h"
#include "modalities/text/tokenizer.h"

#define DEMO_DATA "data/demo/kjv.txt"
#define DEMO_CONFIG "configs/lm-demo.json"
/* One document in twenty is held out: the demo text's documents are
 * chapters of a few KB, so this is some 15,000 val tokens. */
#define DEMO_VAL_FRACTION "0.05"
#define DEMO_STAGES 4
/* BPE ids: 256 bytes, the merges and end-of-text. A small vocabulary keeps
 * the embedding and head cheap; on the demo text its tokens average over
 * three bytes, so the model sees three times the text a byte model would. */
#define DEMO_VOCAB "1024"

#define DEMO_MAX_ARGS (24 + 2 * CLI_LIST_MAX)

typedef struct demo_opts {
    const char *data, *config, *out, *prompt;
    int64_t steps, tokens;
    double temperature;
    cli_list set;
    cli_common c;
} demo_opts;

/* The words after `lact lm <verb>`, owned. */
typedef struct demo_args {
    char *v[DEMO_MAX_ARGS];
    int n;
    bool oom;
} demo_args;

static void args_add(demo_args *a, const char *s) {
    char *copy = a->n < DEMO_MAX_ARGS ? strdup(s) : NULL;
    if (!copy) {
        a->oom = true;
        return;
    }
    a->v[a->n++] = copy;
}

static void args_addf(demo_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void args_addf(demo_args *a, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    args_add(a, buf);
}

static void args_free(demo_args *a) {
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

/* Prints a word so that a shell reads it back unchanged. */
static void print_word(const char *w) {
    bool plain = *w != '\0';
    for (const char *p = w; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+-", *p))
            plain = false;
    if (plain) {
        fputs(w, stdout);
        return;
    }
    putchar('\'');
    for (const char *p = w; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    }
    putchar('\'');
}

typedef struct demo_run {
    const demo_opts *o;
    const char *data, *config, *device;
    char data_dir[4096], ckpt[4096], tokenizer[4096];
    int64_t vocab; /* the tokenizer's, which the model takes */
    double seconds[DEMO_STAGES];
} demo_run;

static void print_command(const char *verb, const demo_args *a) {
    printf("$ lact lm %s", verb);
    for (int i = 0; i < a->n; i++) {
        putchar(' ');
        print_word(a->v[i]);
    }
    putchar('\n');
}

/* Runs `lact lm <verb> <args>` in-process after printing it (and `lead`, when
 * not NULL, right before the verb's own output); returns the verb's exit
 * code. */
static int run_verb(demo_run *r, int stage, const char *verb, int (*fn)(int, char **), demo_args *a,
                    const char *lead) {
    if (a->oom) {
        fprintf(stderr, "lact demo: out of memory\n");
        return 1;
    }
    print_command(verb, a);
    if (lead) fputs(lead, stdout);
    fflush(stdout);
    double t0 = lact_now();
    int rc = fn(a->n, a->v);
    fflush(stdout);
    r->seconds[stage] += lact_now() - t0;
    return rc;
}

static void stage_header(int stage, const char *what) {
    printf("\n[%d/%d] %s\n", stage + 1, DEMO_STAGES, what);
}

static void add_device(const demo_run *r, demo_args *a) {
    args_add(a, "--device");
    args_add(a, r->device);
    args_add(a, "--threads");
    args_addf(a, "%lld", (long long)r->o->c.threads);
}

static lact_status make_dirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return lact_fail(LACT_E_ARG, "--out: bad folder '%s'", path);
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
        return lact_fail(LACT_E_IO, "%s: not a folder", path);
    return LACT_OK;
}

static int stage_tokenizer(demo_run *r) {
    demo_args a = {0};
    args_add(&a, "train");
    args_add(&a, "--vocab");
    args_add(&a, DEMO_VOCAB);
    args_add(&a, "--out");
    args_add(&a, r->tokenizer);
    args_add(&a, r->data);
    int rc = run_verb(r, 0, "tokenizer", cmd_lm_tokenizer, &a, NULL);
    args_free(&a);
    lact_tokenizer tok;
    if (rc == 0 && lact_tokenizer_load(&tok, r->tokenizer) != LACT_OK) {
        fprintf(stderr, "lact demo: %s\n", lact_errmsg());
        rc = 1;
    } else if (rc == 0) {
        r->vocab = lact_tokenizer_vocab_size(&tok);
        lact_tokenizer_free(&tok);
    }
    return rc;
}

static int stage_prepare(demo_run *r) {
    stage_header(0, "prepare: a byte-level BPE tokenizer learnt from the text, then token shards");
    lact_status s = make_dirs(r->o->out);
    if (s != LACT_OK) {
        fprintf(stderr, "lact demo: %s\n", lact_errmsg());
        return 1;
    }
    int rc = stage_tokenizer(r);
    if (rc != 0) return rc;
    /* A val shard left by an earlier run must not pass for this one's. */
    char val[4200];
    snprintf(val, sizeof val, "%s/demo_val_000000.bin", r->data_dir);
    if (unlink(val) != 0 && errno != ENOENT) {
        fprintf(stderr, "lact demo: %s: cannot remove: %s\n", val, strerror(errno));
        return 1;
    }
    demo_args a = {0};
    args_add(&a, "--tokenizer");
    args_add(&a, r->tokenizer);
    args_add(&a, "--out");
    args_add(&a, r->data_dir);
    args_add(&a, "--name");
    args_add(&a, "demo");
    args_add(&a, "--docs");
    args_add(&a, "paragraph");
    args_add(&a, "--val-fraction");
    args_add(&a, DEMO_VAL_FRACTION);
    args_add(&a, r->data);
    rc = run_verb(r, 0, "prepare", cmd_lm_prepare, &a, NULL);
    args_free(&a);
    if (rc == 0 && access(val, R_OK) != 0) {
        fprintf(stderr,
                "lact demo: %s has too few paragraphs to hold some out for validation "
                "(separate documents with blank lines)\n",
                r->data);
        rc = 1;
    }
    return rc;
}

static int stage_train(demo_run *r) {
    const demo_opts *o = r->o;
    stage_header(1, "train: a LaCT language model from scratch (Ctrl-C stops with a checkpoint)");
    demo_args a = {0};
    args_add(&a, "--config");
    args_add(&a, r->config);
    args_add(&a, "--data");
    args_add(&a, r->data_dir);
    args_add(&a, "--out");
    args_add(&a, o->out);
    if (o->steps > 0) {
        args_add(&a, "--steps");
        args_addf(&a, "%lld", (long long)o->steps);
    }
    args_add(&a, "--set");
    args_addf(&a, "vocab=%lld", (long long)r->vocab);
    args_add(&a, "--set");
    args_addf(&a, "seed=%lld", (long long)o->c.seed);
    for (int i = 0; i < o->set.n; i++) {
        args_add(&a, "--set");
        args_add(&a, o->set.items[i]);
    }
    add_device(r, &a);
    int rc = run_verb(r, 1, "train", cmd_lm_train, &a, NULL);
    args_free(&a);
    if (rc == 130)
        fprintf(stderr,
                "lact demo: stopped; continue the run with\n  lact lm train --data %s "
                "--out %s --resume\n",
                r->data_dir, o->out);
    return rc;
}

static int stage_eval(demo_run *r) {
    char what[160];
    snprintf(what, sizeof what,
             "eval: loss on the held-out documents (guessing uniformly: perplexity %lld)",
             (long long)r->vocab);
    stage_header(2, what);
    int rc = 0;
    const char *tasks[2] = {"ppl", "bpb"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        demo_args a = {0};
        args_add(&a, "--checkpoint");
        args_add(&a, r->ckpt);
        args_add(&a, "--data");
        args_add(&a, r->data_dir);
        args_add(&a, "--task");
        args_add(&a, tasks[k]);
        if (k == 1) {
            args_add(&a, "--tokenizer");
            args_add(&a, r->tokenizer);
        }
        add_device(r, &a);
        rc = run_verb(r, 2, "eval", cmd_lm_eval, &a, NULL);
        args_free(&a);
    }
    return rc;
}

static int stage_sample(demo_run *r) {
    const demo_opts *o = r->o;
    stage_header(3, "sample: the model continues a prompt, one token at a time");
    demo_args a = {0};
    args_add(&a, "--checkpoint");
    args_add(&a, r->ckpt);
    args_add(&a, "--tokenizer");
    args_add(&a, r->tokenizer);
    args_add(&a, "--prompt");
    args_add(&a, o->prompt);
    args_add(&a, "--tokens");
    args_addf(&a, "%lld", (long long)o->tokens);
    args_add(&a, "--temperature");
    args_addf(&a, "%g", o->temperature);
    args_add(&a, "--top-p");
    args_add(&a, "0.9");
    args_add(&a, "--seed");
    args_addf(&a, "%lld", (long long)o->c.seed);
    add_device(r, &a);
    /* The verb prints only what it draws; the prompt goes first so that the
     * text reads on. */
    int rc = run_verb(r, 3, "sample", cmd_lm_sample, &a, o->prompt);
    args_free(&a);
    return rc;
}

/* A shipped file: as given when it exists, else under $LACT_SOURCE_DIR or
 * the source tree above the binary (BUILD/bin/lact or BUILD/<preset>/bin/lact). */
static char *find_shipped(const char *rel) {
    if (access(rel, R_OK) == 0) return strdup(rel);
    if (rel[0] == '/') return NULL;
    char buf[PATH_MAX + 64], real[PATH_MAX];
    const char *src = getenv("LACT_SOURCE_DIR");
    if (src) {
        snprintf(buf, sizeof buf, "%s/%s", src, rel);
        if (access(buf, R_OK) == 0 && realpath(buf, real)) return strdup(real);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    for (int up = 2; up <= 3; up++) {
        int len = snprintf(buf, sizeof buf, "%s", exe);
        for (int k = 0; k < up; k++)
            len += snprintf(buf + len, sizeof buf - (size_t)len, "/..");
        snprintf(buf + len, sizeof buf - (size_t)len, "/%s", rel);
        if (access(buf, R_OK) == 0 && realpath(buf, real)) return strdup(real);
    }
    return NULL;
}

static void print_summary(const demo_run *r, double total) {
    static const char *const names[DEMO_STAGES] = {"prepare", "train", "eval", "sample"};
    char buf[32];
    printf("\ndemo: done in %s (", lact_format_duration(total, buf, sizeof buf));
    for (int k = 0; k < DEMO_STAGES; k++)
        printf("%s%s %s", k ? ", " : "", names[k],
               lact_format_duration(r->seconds[k], buf, sizeof buf));
    printf("). The run is in ");
    print_word(r->o->out);
    printf("; go on with\n  lact lm sample --checkpoint ");
    print_word(r->ckpt);
    printf(" --tokenizer ");
    print_word(r->tokenizer);
    printf(" --prompt 'And Jesus' --tokens 300\n  lact lm train --data ");
    print_word(r->data_dir);
    printf(" --out ");
    print_word(r->o->out);
    printf(" --resume --steps 2000   # train on\n");
}

static int demo_main(const demo_opts *o, lact_device dev, const char *data, const char *config) {
    demo_run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.data = data;
    r.config = config;
    r.device = lact_device_name(dev);
    snprintf(r.data_dir, sizeof r.data_dir, "%s/data", o->out);
    snprintf(r.ckpt, sizeof r.ckpt, "%s/ckpt.safetensors", o->out);
    snprintf(r.tokenizer, sizeof r.tokenizer, "%s/tokenizer.json", o->out);
    struct stat st;
    printf("lact demo: a small LaCT language model trained from scratch, start to end\n"
           "  text    %s (%.0f KB)\n  model   %s\n  output  %s\n",
           data, stat(data, &st) == 0 ? (double)st.st_size / 1000.0 : 0.0, config, o->out);
    double t0 = lact_now();
    int rc = stage_prepare(&r);
    if (rc == 0) rc = stage_train(&r);
    if (rc == 0) rc = stage_eval(&r);
    if (rc == 0) rc = stage_sample(&r);
    if (rc == 0) print_summary(&r, lact_now() - t0);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    demo_opts o;
    const cli_opt opts[] = {
        {"--steps", CLI_INT, "N", "training steps (0: the config's)", "0", &o.steps},
        {"--data", CLI_STRING, "FILE", "text to train on, documents separated by blank lines",
         DEMO_DATA, &o.data},
        {"--config", CLI_STRING, "FILE", "model and training config", DEMO_CONFIG, &o.config},
        {"--set", CLI_LIST, "KEY=VALUE", "override a config key (see docs/lm.md)", NULL, &o.set},
        {"--out", CLI_STRING, "DIR", "run folder: data/, config.json, metrics.jsonl, checkpoint",
         "runs/demo", &o.out},
        {"--prompt", CLI_STRING, "TEXT", "text the sample continues", "And the LORD said",
         &o.prompt},
        {"--tokens", CLI_INT, "N", "tokens to sample (about 3 bytes each)", "150", &o.tokens},
        {"--temperature", CLI_FLOAT, "T", "sampling temperature (0: greedy)", "0.7",
         &o.temperature},
        CLI_OPT_SEED(&o.c),
        CLI_OPT_DEVICE(&o.c),
        /* The demo's matrices are small, so its steps are short: threads
         * that wait for a core another process holds make every step several
         * times slower. One thread is the steady default. */
        {"--threads", CLI_INT, "N", "CPU threads (0 = all cores)", "1", &o.c.threads},
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact demo",
        "[options]",
        "Trains a small LaCT language model on a shipped text, showing each stage of the\n"
        "`lact lm` pipeline: prepare (a BPE tokenizer and token shards), train, eval\n"
        "(perplexity, bits per byte) and sample. Each stage prints the `lact lm` commands it\n"
        "runs, in this process.",
        "The default text is the King James Bible's Genesis, Exodus, Ruth and the four\n"
        "Gospels (data/demo/README.md); the model is configs/lm-demo.json (a LaCT layer with\n"
        "sliding-window attention, then a softmax attention layer). Everything lands in\n"
        "--out, so `lact lm sample --checkpoint OUT/ckpt.safetensors` works afterwards.\n",
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    const char *bad = o.steps < 0             ? "--steps must be >= 0"
                      : o.tokens < 1          ? "--tokens must be >= 1"
                      : !(o.temperature >= 0) ? "--temperature must be >= 0"
                      : o.c.seed < 0          ? "--seed must be >= 0"
                      : o.c.threads < 0       ? "--threads must be >= 0"
                      : !*o.out               ? "--out must name a folder"
                                              : NULL;
    if (bad) {
        cli_error(&cmd, "%s", bad);
        return 2;
    }
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    char *data = find_shipped(o.data), *config = find_shipped(o.config);
    int rc = 0;
    if (!data || !config) {
        const char *flag = !data ? "--data" : "--config", *name = !data ? o.data : o.config;
        if (!strcmp(name, !data ? DEMO_DATA : DEMO_CONFIG))
            cli_error(&cmd,
                      "cannot find %s (run from the source tree, set LACT_SOURCE_DIR or "
                      "pass %s FILE)",
                      name, flag);
        else
            cli_error(&cmd, "%s %s: cannot find the file", flag, name);
        rc = 2;
    }
    if (rc == 0) rc = demo_main(&o, dev, data, config);
    free(data);
    free(config);
    return rc;
}
