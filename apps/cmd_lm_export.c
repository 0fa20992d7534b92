/* `lact lm export`: the weights of a lact checkpoint as a PyTorch state dict
 * (safetensors) under the twin's names (or a JSON map's), the inverse of
 * `lact lm import`: scripts/ref/lm_reference.py reads it directly. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd_lm.h"
#include "core/train/lm_import.h"
#include "core/train/lm_trainer.h"

typedef struct export_opts {
    const char *checkpoint, *out, *map, *dtype;
    cli_common c;
} export_opts;

static lact_status export_main(const export_opts *o, lact_dtype dt) {
    lact_lm_run_cfg cfg;
    int64_t step;
    LACT_TRY(lact_lm_checkpoint_config(o->checkpoint, &cfg, &step));
    lact_lm_name_map map;
    lact_lm_name_map_init(&map);
    if (o->map) LACT_TRY(lact_lm_name_map_load(&map, o->map));
    lact_lm m;
    lact_status s = lact_lm_init(&m, &cfg.model, LACT_CPU);
    if (s == LACT_OK) {
        s = lact_lm_load_weights(&m, o->checkpoint);
        if (s == LACT_OK) s = lact_lm_export_weights(&m, o->out, &map, dt);
        if (s == LACT_OK && !o->c.quiet)
            printf("export: %d tensors (%s) of step %lld to %s\n", lact_params_count(&m.params),
                   lact_dtype_name(dt), (long long)step, o->out);
        lact_lm_free(&m);
    }
    lact_lm_name_map_free(&map);
    return s;
}

int cmd_lm_export(int argc, char **argv) {
    export_opts o;
    const cli_opt opts[] = {
        {"--checkpoint", CLI_STRING, "FILE", "a lact lm checkpoint", NULL, &o.checkpoint},
        {"--out", CLI_STRING, "FILE", "the state dict to write (safetensors)", NULL, &o.out},
        {"--map", CLI_STRING, "FILE", "JSON name map {\"lact name\": \"file name\"} ({i}: layer)",
         NULL, &o.map},
        {"--dtype", CLI_STRING, "f32|bf16|f16", "tensor type in the file", "f32", &o.dtype},
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    const cli_command cmd = {
        "lact lm export",
        "--checkpoint FILE --out FILE [options]",
        "Writes the weights of a checkpoint as a PyTorch state dict under the names of the\n"
        "PyTorch twin (scripts/ref/lm_reference.py), or those a --map gives; lact lm import\n"
        "reads it back.",
        NULL,
        opts,
        0};
    cli_result res = cli_parse(&cmd, argc, argv, NULL, NULL);
    if (res != CLI_PARSED) return res == CLI_HELP ? 0 : 2;
    lact_dtype dt = LACT_F32;
    bool dtype_ok = !strcmp(o.dtype, "f32") || !strcmp(o.dtype, "bf16") || !strcmp(o.dtype, "f16");
    if (!strcmp(o.dtype, "bf16")) dt = LACT_BF16;
    if (!strcmp(o.dtype, "f16")) dt = LACT_F16;
    if (!o.checkpoint || !o.out || !dtype_ok) {
        cli_error(&cmd, !o.checkpoint ? "--checkpoint FILE is required"
                        : !o.out      ? "--out FILE is required"
                                      : "--dtype expects f32, bf16 or f16");
        return 2;
    }
    lact_status s = export_main(&o, dt);
    if (s != LACT_OK) {
        cli_error(&cmd, "%s", lact_errmsg());
        return 1;
    }
    return 0;
}
