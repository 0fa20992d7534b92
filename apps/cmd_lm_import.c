/* `lact lm import`: a PyTorch state dict (safetensors) to a lact checkpoint.
 * The model comes from a run config; each parameter reads the tensor the
 * name map gives it (core/train/lm_import.h: the PyTorch twin's names by
 * default, a JSON map for other checkpoints). Every problem is one line:
 * missing, mis-shaped and unexpected tensors, and map entries that match
 * nothing. The checkpoint is a training checkpoint at step 0, so eval,
 * sample and train --resume take it. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/train/lm_import.h"

/* Lines printed for a file that does not fit; the rest are counted. */
#define MAX_LINES 20

typedef struct import_opts {
    const char *config, *weights, *out, *map;
    cli_list set;
    cli_common c;
} import_opts;

static lact_status resolve_config(const import_opts *o, lact_lm_run_cfg *cfg) {
    int nf;
    const lact_cfg_field *fields = lact_lm_run_fields(&nf);
    *cfg = lact_lm_run_defaults();
    LACT_TRY(lact_config_load(o->config, fields, nf, cfg));
    for (int i = 0; i < o->set.n; i++)
        LACT_TRY(lact_config_set(o->set.items[i], fields, nf, cfg));
    return lact_lm_run_check(cfg);
}

/* *reported: the problems were printed already, one line each. */
static lact_status import_main(const import_opts *o, const cli_command *cmd, bool *reported) {
    lact_lm_run_cfg cfg;
    LACT_TRY(resolve_config(o, &cfg));
    lact_lm_name_map map;
    lact_lm_name_map_init(&map);
    if (o->map) LACT_TRY(lact_lm_name_map_load(&map, o->map));
    lact_lm m;
    lact_status s = lact_lm_init(&m, &cfg.model, LACT_CPU);
    if (s != LACT_OK) {
        lact_lm_name_map_free(&map);
        return s;
    }
    lact_lm_problems pr;
    s = lact_lm_import_weights(&m, o->weights, &map, &pr);
    if (s != LACT_OK && pr.n > 0) {
        for (int i = 0; i < pr.n && i < MAX_LINES; i++)
            cli_error(cmd, "%s", pr.lines[i]);
        if (pr.n > MAX_LINES) cli_error(cmd, "... and %d more problems", pr.n - MAX_LINES);
        *reported = true;
    }
    if (s == LACT_OK) s = lact_lm_import_save(&m, &cfg, o->out, o->weights);
    if (s == LACT_OK && !o->c.quiet)
        printf("import: %d tensors, %lld parameters (%s, %lld layers [%s]) from %s; checkpoint "
               "%s\n",
               lact_params_count(&m.params), (long long)lact_lm_numel(&m),
               cfg.model.tie_embeddings ? "tied" : "untied", (long long)cfg.model.n_layers,
               cfg.model.mixers, o->weights, o->out);
    lact_lm_problems_free(&pr);
    lact_lm_free(&m);
    lact_lm_name_map_free(&map);
    return s;
}

int cmd_lm_import(int argc, char **argv) {
    import_opts o;
    const cli_opt opts[] = {
        {"--config", CLI_STRING, "FILE", "run config (JSON) the weights belong to", NULL,
         &o.config},
        {"--weights", CLI_STRING, "FILE", "PyTorch state dict (safetensors: F32, BF16, F16)", NULL,
         &o.weights},
        {"--out", CLI_STRING, "FILE", "the lact checkpoint to write", NULL, &o.out},
        {"--map", CLI_STRING, "FILE", "JSON name map {\"lact name\": \"file name\"} ({i}: layer)",
         NULL, &o.map},
        {"--set", CLI_LIST, "KEY=VALUE", "override a config key (repeatable)", NULL, &o.set},
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm import",
        "--config FILE --weights FILE --out FILE [options]",
        "Converts a PyTorch state dict of the model the config describes into a lact checkpoint\n"
        "(step 0 of a training run: lact lm eval, sample and train --resume take it). Names\n"
        "follow the PyTorch twin (scripts/ref/lm_reference.py) unless --map renames them;\n"
        "every parameter needs its tensor with its shape, and every tensor a parameter.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    if (!o.config || !o.weights || !o.out) {
        cli_error(&cmd, !o.config    ? "--config FILE is required"
                        : !o.weights ? "--weights FILE is required"
                                     : "--out FILE is required");
        return 2;
    }
    bool reported = false;
    lact_status s = import_main(&o, &cmd, &reported);
    if (s != LACT_OK) {
        if (!reported) cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
