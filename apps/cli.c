#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/device.h"
#include "core/base/threads.h"

void cli_error(const cli_command *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cmd->path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static const cli_opt *find_opt(const cli_command *cmd, const char *flag, size_t len) {
    for (const cli_opt *o = cmd->opts; o && o->flag; o++)
        if (strlen(o->flag) == len && strncmp(o->flag, flag, len) == 0) return o;
    return NULL;
}

static bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "1") || !strcmp(s, "true") || !strcmp(s, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(s, "0") || !strcmp(s, "false") || !strcmp(s, "no")) {
        *out = false;
        return true;
    }
    return false;
}

/* Stores text into the option's field; false when it does not parse. */
static bool set_value(const cli_opt *o, const char *text) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CLI_BOOL:
        return parse_bool(text, (bool *)o->field);
    case CLI_INT: {
        long long v = strtoll(text, &end, 0);
        if (errno || end == text || *end) return false;
        *(int64_t *)o->field = v;
        return true;
    }
    case CLI_FLOAT: {
        double v = strtod(text, &end);
        if (errno || end == text || *end) return false;
        *(double *)o->field = v;
        return true;
    }
    case CLI_STRING:
        *(const char **)o->field = text;
        return true;
    case CLI_LIST: {
        cli_list *l = o->field;
        if (l->n >= CLI_LIST_MAX) return false;
        l->items[l->n++] = text;
        return true;
    }
    }
    return false;
}

static const char *type_word(cli_type t) {
    switch (t) {
    case CLI_INT:
        return "an integer";
    case CLI_FLOAT:
        return "a number";
    case CLI_BOOL:
        return "true or false";
    case CLI_LIST:
        return "at most 32 values";
    default:
        return "a value";
    }
}

static void apply_defaults(const cli_command *cmd) {
    for (const cli_opt *o = cmd->opts; o && o->flag; o++) {
        switch (o->type) {
        case CLI_BOOL:
            *(bool *)o->field = false;
            break;
        case CLI_INT:
            *(int64_t *)o->field = 0;
            break;
        case CLI_FLOAT:
            *(double *)o->field = 0;
            break;
        case CLI_STRING:
            *(const char **)o->field = NULL;
            break;
        case CLI_LIST:
            ((cli_list *)o->field)->n = 0;
            break;
        }
        if (o->def && o->type != CLI_LIST) set_value(o, o->def);
    }
}

cli_result cli_parse(const cli_command *cmd, int argc, char **argv, const char **positional,
                     int *n_positional) {
    apply_defaults(cmd);
    int np = 0;
    bool flags_done = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!flags_done && (!strcmp(arg, "--help") || !strcmp(arg, "-h"))) {
            cli_usage(cmd, stdout);
            return CLI_HELP;
        }
        if (!flags_done && !strcmp(arg, "--")) {
            flags_done = true;
            continue;
        }
        if (flags_done || arg[0] != '-' || arg[1] == '\0') {
            if (np >= cmd->max_positional) {
                cli_error(cmd, "unexpected argument '%s' (see %s --help)", arg, cmd->path);
                return CLI_ERROR;
            }
            positional[np++] = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const cli_opt *o = arg[1] == '-' ? find_opt(cmd, arg, len) : NULL;
        if (!o) {
            cli_error(cmd, "unknown flag '%.*s' (see %s --help)", (int)len, arg, cmd->path);
            return CLI_ERROR;
        }
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == CLI_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            cli_error(cmd, "flag '%s' needs a value (%s)", o->flag, o->meta ? o->meta : "value");
            return CLI_ERROR;
        }
        if (!set_value(o, value)) {
            cli_error(cmd, "flag '%s' expects %s, got '%s'", o->flag, type_word(o->type), value);
            return CLI_ERROR;
        }
    }
    if (n_positional) *n_positional = np;
    return CLI_PARSED;
}

void cli_usage(const cli_command *cmd, FILE *out) {
    fprintf(out, "usage: %s %s\n\n%s\n", cmd->path, cmd->args ? cmd->args : "[options]",
            cmd->summary);
    if (cmd->opts && cmd->opts->flag) fprintf(out, "\noptions:\n");
    for (const cli_opt *o = cmd->opts; o && o->flag; o++) {
        char left[64];
        if (o->type == CLI_BOOL)
            snprintf(left, sizeof left, "%s", o->flag);
        else
            snprintf(left, sizeof left, "%s %s", o->flag, o->meta ? o->meta : "VALUE");
        fprintf(out, "  %-22s %s", left, o->help);
        if (o->def && o->type != CLI_BOOL) fprintf(out, " (default: %s)", o->def);
        if (o->type == CLI_LIST) fprintf(out, " (repeatable)");
        fputc('\n', out);
    }
    fprintf(out, "  %-22s %s\n", "--help, -h", "show this help");
    if (cmd->details) fprintf(out, "\n%s", cmd->details);
}

bool cli_resolve_device(const cli_command *cmd, const cli_common *c, lact_device *dev) {
    lact_threads_set((int)c->threads);
    const char *d = c->device ? c->device : "auto";
    if (!strcmp(d, "auto")) {
        *dev = lact_cuda_available() ? LACT_CUDA : LACT_CPU;
        return true;
    }
    if (!strcmp(d, "cpu")) {
        *dev = LACT_CPU;
        return true;
    }
    if (!strcmp(d, "cuda")) {
        if (!LACT_WITH_CUDA) {
            cli_error(cmd, "--device cuda: this build has no CUDA kernels (rebuild with the "
                           "cuda preset)");
            return false;
        }
        if (!lact_cuda_available()) {
            cli_error(cmd, "--device cuda: no CUDA device is visible");
            return false;
        }
        *dev = LACT_CUDA;
        return true;
    }
    cli_error(cmd, "--device expects cpu, cuda or auto, got '%s'", d);
    return false;
}
