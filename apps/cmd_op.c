/* `lact op NAME --in A.safetensors --out B.safetensors`: runs one row of the
 * op table on named tensors from a file, forward and, when the file holds
 * gradients d_<output>, backward; writes outputs and d_<input> gradients. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/base/context.h"
#include "core/io/safetensors.h"
#include "kernels/op_table.h"

typedef struct op_opts {
    const char *in, *out;
    cli_list set;
    bool list;
    cli_common c;
} op_opts;

static void op_print_list(void) {
    for (int i = 0; i < lact_op_count(); i++) {
        const lact_op_def *op = lact_op_at(i);
        printf("%-14s %s\n", op->name, op->summary ? op->summary : "");
        printf("%-14s   in:", "");
        for (int k = 0; op->inputs[k]; k++)
            printf(" %s", op->inputs[k]);
        printf("  out:");
        for (int k = 0; op->outputs[k]; k++)
            printf(" %s", op->outputs[k]);
        if (op->params[0].name) {
            printf("  params:");
            for (int k = 0; op->params[k].name; k++)
                printf(" %s=%g", op->params[k].name, op->params[k].value);
        }
        printf("%s\n", op->backward && op->grad_inputs ? "  (backward)" : "");
    }
}

/* "eps, alpha" into buf. */
static const char *param_names(const lact_op_def *op, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; op->params[k].name && len < n; k++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", k ? ", " : "", op->params[k].name);
    if (!op->params[0].name) snprintf(buf, n, "none");
    return buf;
}

static bool op_apply_params(const cli_command *cmd, const lact_op_def *op, const cli_list *set,
                            double *params) {
    lact_op_default_params(op, params);
    for (int i = 0; i < set->n; i++) {
        const char *a = set->items[i];
        const char *eq = strchr(a, '=');
        char names[256];
        if (!eq) {
            cli_error(cmd, "--set expects name=value, got '%s'", a);
            return false;
        }
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
        int k = lact_op_param_index(op, key);
        if (k < 0) {
            cli_error(cmd, "unknown param '%s' (valid: %s)", key,
                      param_names(op, names, sizeof names));
            return false;
        }
        char *end;
        double v = strtod(eq + 1, &end);
        if (end == eq + 1 || *end) {
            cli_error(cmd, "param '%s' expects a number, got '%s'", key, eq + 1);
            return false;
        }
        params[k] = v;
    }
    return true;
}

/* "x, w, d_out" into buf. */
static const char *file_names(const lact_st_file *f, char *buf, size_t n) {
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->n && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "", f->entries[i].name);
    if (f->n == 0) snprintf(buf, n, "no tensors");
    return buf;
}

/* The dtype an input is computed in: indices I32, parameters F32, activations
 * F32 (BF16 kept on CUDA when the file has BF16 and the op allows it). */
static lact_dtype op_input_dtype(const lact_op_def *op, int i, lact_dtype file_dt,
                                 lact_device dev) {
    if (!lact_dtype_is_float(file_dt)) return LACT_I32;
    if (op->param_inputs & (1u << i)) return LACT_F32;
    if (dev == LACT_CUDA && op->bf16 && file_dt == LACT_BF16) return LACT_BF16;
    return LACT_F32;
}

static bool op_load_inputs(const cli_command *cmd, const lact_op_def *op, const lact_st_file *f,
                           const char *path, lact_device dev, lact_tensor *in) {
    char names[1024];
    for (int i = 0; i < lact_op_n_inputs(op); i++) {
        const char *name = lact_op_input_name(op, i);
        int k = lact_st_find(f, name);
        if (k < 0) {
            if (lact_op_input_optional(op, i)) continue;
            cli_error(cmd, "input '%s' missing from %s (it has: %s)", name, path,
                      file_names(f, names, sizeof names));
            return false;
        }
        lact_tensor view = lact_st_view(f, k);
        if (lact_tensor_clone(&in[i], &view, op_input_dtype(op, i, view.dtype, dev), dev) !=
            LACT_OK) {
            cli_error(cmd, "input '%s': %s", name, lact_errmsg());
            return false;
        }
    }
    return true;
}

static bool op_alloc_like(const cli_command *cmd, lact_tensor *t, lact_dtype dt, lact_device dev,
                          const lact_tensor *shape_of, const char *what) {
    int64_t shape[LACT_MAX_DIMS];
    int ndim = shape_of->ndim;
    memcpy(shape, shape_of->shape, sizeof shape);
    if (lact_tensor_alloc(t, dt, dev, ndim, shape) != LACT_OK) {
        cli_error(cmd, "%s: %s", what, lact_errmsg());
        return false;
    }
    return true;
}

/* Loads d_<output> gradients; returns how many the file had (-1 on error). */
static int op_load_grads(const cli_command *cmd, const lact_op_def *op, const lact_st_file *f,
                         const lact_tensor *out, lact_device dev, lact_tensor *d_out) {
    int found = 0;
    char name[80], a[96], b[96];
    for (int j = 0; j < op->n_diff_outputs; j++) {
        snprintf(name, sizeof name, "d_%s", op->outputs[j]);
        int k = lact_st_find(f, name);
        if (k < 0) {
            if (!op_alloc_like(cmd, &d_out[j], out[j].dtype, dev, &out[j], name)) return -1;
            continue;
        }
        lact_tensor view = lact_st_view(f, k);
        if (!lact_tensor_same_shape(&view, &out[j])) {
            cli_error(cmd, "gradient '%s' is %s but output '%s' is %s", name,
                      lact_tensor_describe(&view, a, sizeof a), op->outputs[j],
                      lact_tensor_describe(&out[j], b, sizeof b));
            return -1;
        }
        if (lact_tensor_clone(&d_out[j], &view, out[j].dtype, dev) != LACT_OK) {
            cli_error(cmd, "gradient '%s': %s", name, lact_errmsg());
            return -1;
        }
        found++;
    }
    return found;
}

static int op_run(const cli_command *cmd, const lact_op_def *op, const op_opts *o,
                  const double *params, lact_device dev) {
    lact_tensor in[LACT_OP_MAX_IO], out[LACT_OP_MAX_IO];
    lact_tensor d_in[LACT_OP_MAX_IO], d_out[LACT_OP_MAX_IO];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    memset(d_in, 0, sizeof d_in);
    memset(d_out, 0, sizeof d_out);
    lact_st_file f;
    lact_ctx ctx;
    bool ctx_ok = false, file_ok = false;
    int rc = 1;
    int n_in = lact_op_n_inputs(op), n_out = lact_op_n_outputs(op);
    char grad_names[LACT_OP_MAX_IO][80];
    const char *names[2 * LACT_OP_MAX_IO];
    lact_tensor all[2 * LACT_OP_MAX_IO];
    int n_all = 0;

    if (lact_st_open(&f, o->in) != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        goto done;
    }
    file_ok = true;
    if (lact_ctx_init(&ctx, dev, (int)o->c.threads) != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        goto done;
    }
    ctx_ok = true;
    if (!op_load_inputs(cmd, op, &f, o->in, dev, in)) goto done;
    if (op->plan(in, params, out) != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        goto done;
    }
    for (int j = 0; j < n_out; j++)
        if (!op_alloc_like(cmd, &out[j], out[j].dtype, dev, &out[j], op->outputs[j])) goto done;
    if (op->forward(&ctx, out, in, params) != LACT_OK) {
        cli_error(cmd, "forward: %s", lact_errmsg());
        goto done;
    }
    for (int j = 0; j < n_out; j++) {
        names[n_all] = op->outputs[j];
        all[n_all++] = out[j];
    }

    if (op->backward && op->grad_inputs) {
        int found = op_load_grads(cmd, op, &f, out, dev, d_out);
        if (found < 0) goto done;
        if (found > 0) {
            for (int i = 0; i < n_in; i++) {
                if (!(op->grad_inputs & (1u << i)) || !in[i].data) continue;
                snprintf(grad_names[i], sizeof grad_names[i], "d_%s", lact_op_input_name(op, i));
                if (!op_alloc_like(cmd, &d_in[i], lact_op_grad_dtype(op, i, in), dev, &in[i],
                                   grad_names[i]))
                    goto done;
            }
            if (op->backward(&ctx, d_in, d_out, in, out, params) != LACT_OK) {
                cli_error(cmd, "backward: %s", lact_errmsg());
                goto done;
            }
            for (int i = 0; i < n_in; i++) {
                if (!d_in[i].data) continue;
                names[n_all] = grad_names[i];
                all[n_all++] = d_in[i];
            }
        }
    }
    if (lact_ctx_sync(&ctx) != LACT_OK ||
        lact_st_write(o->out, n_all, names, all, 0, NULL, NULL) != LACT_OK) {
        cli_error(cmd, "%s", lact_errmsg());
        goto done;
    }
    if (!o->c.quiet) {
        char desc[96];
        for (int k = 0; k < n_all; k++)
            printf("%-10s %s\n", names[k], lact_tensor_describe(&all[k], desc, sizeof desc));
        printf("wrote %d tensors to %s\n", n_all, o->out);
    }
    rc = 0;
done:
    for (int i = 0; i < LACT_OP_MAX_IO; i++) {
        lact_tensor_free(&in[i]);
        lact_tensor_free(&out[i]);
        lact_tensor_free(&d_in[i]);
        lact_tensor_free(&d_out[i]);
    }
    if (ctx_ok) lact_ctx_free(&ctx);
    if (file_ok) lact_st_close(&f);
    return rc;
}

int cmd_op(int argc, char **argv) {
    op_opts o;
    const cli_opt opts[] = {
        {"--in", CLI_STRING, "FILE", "safetensors file with the named inputs (and d_<output>)",
         NULL, &o.in},
        {"--out", CLI_STRING, "FILE", "safetensors file for the outputs and d_<input>", NULL,
         &o.out},
        {"--set", CLI_LIST, "NAME=VALUE", "set a param of the op", NULL, &o.set},
        {"--list", CLI_BOOL, NULL, "list the ops, their tensors and params", NULL, &o.list},
        CLI_OPT_DEVICE(&o.c),
        CLI_OPT_THREADS(&o.c),
        CLI_OPT_QUIET(&o.c),
        CLI_OPT_END,
    };
    cli_command cmd = {
        "lact op",
        "NAME --in A.safetensors --out B.safetensors [options]",
        "Runs one op forward on the tensors named in A and writes the outputs to B. When A\n"
        "also holds d_<output> gradients, runs the backward too and writes d_<input>.",
        "Activations are computed in F32 (BF16 stays BF16 on CUDA where the op allows it),\n"
        "parameters in F32, indices in I32. 'lact op --list' shows every op.\n",
        opts,
        1};
    const char *pos[1];
    int np = 0;
    cli_result r = cli_parse(&cmd, argc, argv, pos, &np);
    if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    if (o.list) {
        op_print_list();
        return 0;
    }
    if (np == 0) {
        cli_error(&cmd, "which op? (see lact op --list)");
        return 2;
    }
    const lact_op_def *op = lact_op_find(pos[0]);
    if (!op) {
        cli_error(&cmd, "unknown op '%s' (see lact op --list)", pos[0]);
        return 2;
    }
    char path[96];
    snprintf(path, sizeof path, "lact op %s", op->name);
    cmd.path = path;
    if (!o.in || !o.out) {
        cli_error(&cmd, "%s FILE is required", o.in ? "--out" : "--in");
        return 2;
    }
    double params[LACT_OP_MAX_PARAMS];
    if (!op_apply_params(&cmd, op, &o.set, params)) return 2;
    lact_device dev;
    if (!cli_resolve_device(&cmd, &o.c, &dev)) return 2;
    return op_run(&cmd, op, &o, params, dev);
}
