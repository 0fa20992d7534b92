/* `lact op rmsnorm` end to end: inputs written with lact_st_write, the CLI run
 * as a process (BUILD/bin/lact, beside BUILD/tests), its outputs read back and
 * compared with lact_rmsnorm_forward/backward called directly. Then the mesa
 * row's debug report: `--set residual=1` prints the CG residual, which
 * falls with more steps. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/base/context.h"
#include "core/io/safetensors.h"
#include "kernels/kernels.h"
#include "kernels/op_table.h"
#include "tests/support/check.h"

#define ROWS 5
#define COLS 24

static char lact_bin[4096];
static char tmp_dir[64];

static bool find_lact(void) {
    char exe[2048];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = '\0';
    snprintf(lact_bin, sizeof lact_bin, "%s/../bin/lact", exe);
    return access(lact_bin, X_OK) == 0;
}

/* Runs `lact op rmsnorm ARGS` quietly; returns its exit code. */
static int run_op(const char *in, const char *out, const char *extra) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "'%s' op rmsnorm --in '%s' --out '%s' --device cpu --quiet %s 2>/dev/null", lact_bin,
             in, out, extra);
    int st = system(cmd);
    return st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double max_diff(const lact_tensor *a, const lact_tensor *b) {
    const float *x = a->data, *y = b->data;
    double m = 0;
    for (int64_t i = 0; i < lact_tensor_numel(a); i++) {
        double d = fabs((double)x[i] - (double)y[i]);
        if (!(d <= m)) m = d; /* NaN sticks */
    }
    return m;
}

/* Reads name from an output file as F32 into t (caller frees). */
static bool read_f32(const lact_st_file *f, const char *name, lact_tensor *t) {
    lact_tensor view;
    if (lact_st_get(f, name, &view) != LACT_OK) return false;
    return lact_tensor_clone(t, &view, LACT_F32, LACT_CPU) == LACT_OK;
}

/* `lact op mesa --set residual=1 --set cg_steps=N` on in; the residual it
 * reports on stderr, or -1 when the run fails or prints none. */
static double mesa_residual(const char *in, const char *out, int steps) {
    char cmd[8192], err[128];
    snprintf(err, sizeof err, "%s/err.txt", tmp_dir);
    snprintf(cmd, sizeof cmd,
             "'%s' op mesa --in '%s' --out '%s' --device cpu --threads 1 --set residual=1 "
             "--set cg_steps=%d 2>'%s' >/dev/null",
             lact_bin, in, out, steps, err);
    int st = system(cmd);
    double r = -1;
    FILE *f = fopen(err, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "CG residual ");
        if (p) r = atof(p + strlen("CG residual "));
    }
    if (f) fclose(f);
    remove(err);
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? r : -1;
}

static void check_mesa_residual(void) {
    const lact_op_def *op = lact_op_find("mesa");
    CHECK(op != NULL);
    if (!op) return;
    lact_tensor in[LACT_OP_MAX_IO];
    double params[LACT_OP_MAX_PARAMS];
    memset(in, 0, sizeof in);
    CHECK(op->make_case(2, 99, in, params)); /* d = 16: 2 CG steps cannot solve it */
    const char *names[6];
    for (int i = 0; i < 6; i++)
        names[i] = lact_op_input_name(op, i);
    char path[128], out[128];
    snprintf(path, sizeof path, "%s/mesa_in.safetensors", tmp_dir);
    snprintf(out, sizeof out, "%s/mesa_out.safetensors", tmp_dir);
    CHECK_OK(lact_st_write(path, 6, names, in, 0, NULL, NULL));
    double r2 = mesa_residual(path, out, 2), r30 = mesa_residual(path, out, 30);
    printf("mesa CG residual: %.3g after 2 steps, %.3g after 30\n", r2, r30);
    CHECK_MSG(r2 > 0 && r30 >= 0, "no residual reported (2 steps: %g, 30 steps: %g)", r2, r30);
    CHECK_MSG(r30 < 1e-3 && r30 < 0.1 * r2, "residual 2 steps %g, 30 steps %g", r2, r30);
    remove(path);
    remove(out);
    for (int i = 0; i < 6; i++)
        lact_tensor_free(&in[i]);
}

int main(void) {
    if (!find_lact()) return check_skip("apps_test_op_cli", "no bin/lact beside the tests");
    const lact_op_def *op = lact_op_find("rmsnorm");
    CHECK(op != NULL);
    if (!op) return check_summary("apps_test_op_cli");
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/lact_op_cli_XXXXXX");
    CHECK(mkdtemp(tmp_dir) != NULL);

    const char *x_name = lact_op_input_name(op, 0), *w_name = lact_op_input_name(op, 1);
    const char *out_name = op->outputs[0];
    char dout_name[64], dx_name[64], dw_name[64];
    snprintf(dout_name, sizeof dout_name, "d_%s", out_name);
    snprintf(dx_name, sizeof dx_name, "d_%s", x_name);
    snprintf(dw_name, sizeof dw_name, "d_%s", w_name);

    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 1));
    int64_t xs[2] = {ROWS, COLS}, ws[1] = {COLS}, rs[1] = {ROWS};
    lact_tensor x, w, dout, x64;
    CHECK_OK(lact_tensor_alloc(&x, LACT_F32, LACT_CPU, 2, xs));
    CHECK_OK(lact_tensor_alloc(&w, LACT_F32, LACT_CPU, 1, ws));
    CHECK_OK(lact_tensor_alloc(&dout, LACT_F32, LACT_CPU, 2, xs));
    CHECK_OK(lact_fill_normal(&ctx, &x, 11, 1, 0.5f, 2.0f));
    CHECK_OK(lact_fill_uniform(&ctx, &w, 11, 2, 0.5f, 1.5f));
    CHECK_OK(lact_fill_normal(&ctx, &dout, 11, 3, 0.0f, 1.0f));

    /* The expected values, with a non-default eps so that --set must work. */
    const float eps = 0.25f;
    lact_tensor ref, rstd, ref_dx, ref_dw;
    CHECK_OK(lact_tensor_alloc(&ref, LACT_F32, LACT_CPU, 2, xs));
    CHECK_OK(lact_tensor_alloc(&rstd, LACT_F32, LACT_CPU, 1, rs));
    CHECK_OK(lact_tensor_alloc(&ref_dx, LACT_F32, LACT_CPU, 2, xs));
    CHECK_OK(lact_tensor_alloc(&ref_dw, LACT_F32, LACT_CPU, 1, ws));
    CHECK_OK(lact_rmsnorm_forward(&ctx, &ref, &rstd, &x, &w, eps));
    CHECK_OK(lact_rmsnorm_backward(&ctx, &ref_dx, &ref_dw, &dout, &x, &w, &rstd));

    char in1[128], in2[128], in3[128], out1[128], out2[128], out3[128];
    snprintf(in1, sizeof in1, "%s/in1.safetensors", tmp_dir);
    snprintf(in2, sizeof in2, "%s/in2.safetensors", tmp_dir);
    snprintf(in3, sizeof in3, "%s/in3.safetensors", tmp_dir);
    snprintf(out1, sizeof out1, "%s/out1.safetensors", tmp_dir);
    snprintf(out2, sizeof out2, "%s/out2.safetensors", tmp_dir);
    snprintf(out3, sizeof out3, "%s/out3.safetensors", tmp_dir);

    /* 1: forward and backward. */
    const char *names1[3] = {x_name, w_name, dout_name};
    lact_tensor t1[3] = {x, w, dout};
    CHECK_OK(lact_st_write(in1, 3, names1, t1, 0, NULL, NULL));
    CHECK(run_op(in1, out1, "--set eps=0.25") == 0);
    lact_st_file f;
    if (lact_st_open(&f, out1) == LACT_OK) {
        lact_tensor got = {0}, gdx = {0}, gdw = {0};
        CHECK(read_f32(&f, out_name, &got));
        CHECK(read_f32(&f, dx_name, &gdx));
        CHECK(read_f32(&f, dw_name, &gdw));
        if (got.data) CHECK_NEAR(max_diff(&got, &ref), 0, 1e-5);
        if (gdx.data) CHECK_NEAR(max_diff(&gdx, &ref_dx), 0, 1e-5);
        if (gdw.data) CHECK_NEAR(max_diff(&gdw, &ref_dw), 0, 1e-5);
        lact_tensor_free(&got);
        lact_tensor_free(&gdx);
        lact_tensor_free(&gdw);
        lact_st_close(&f);
    } else {
        CHECK_MSG(false, "no output file: %s", lact_errmsg());
    }

    /* 2: x stored as F64 and no d_out: forward only, converted inputs. */
    CHECK_OK(lact_tensor_clone(&x64, &x, LACT_F64, LACT_CPU));
    const char *names2[2] = {x_name, w_name};
    lact_tensor t2[2] = {x64, w};
    CHECK_OK(lact_st_write(in2, 2, names2, t2, 0, NULL, NULL));
    CHECK(run_op(in2, out2, "--set eps=0.25") == 0);
    if (lact_st_open(&f, out2) == LACT_OK) {
        lact_tensor got = {0};
        CHECK(read_f32(&f, out_name, &got));
        if (got.data) CHECK_NEAR(max_diff(&got, &ref), 0, 1e-5);
        CHECK(lact_st_find(&f, dx_name) < 0);
        lact_tensor_free(&got);
        lact_st_close(&f);
    } else {
        CHECK_MSG(false, "no output file: %s", lact_errmsg());
    }
    /* The default eps must give a different answer (the flag matters). */
    CHECK(run_op(in2, out2, "") == 0);
    if (lact_st_open(&f, out2) == LACT_OK) {
        lact_tensor got = {0};
        CHECK(read_f32(&f, out_name, &got));
        if (got.data) CHECK(max_diff(&got, &ref) > 1e-3);
        lact_tensor_free(&got);
        lact_st_close(&f);
    }

    /* 3: the required input missing: failure and no output file. */
    const char *names3[1] = {w_name};
    CHECK_OK(lact_st_write(in3, 1, names3, &w, 0, NULL, NULL));
    CHECK(run_op(in3, out3, "") == 1);
    struct stat sb;
    CHECK(stat(out3, &sb) != 0);
    /* An unknown param is a usage error. */
    CHECK(run_op(in1, out3, "--set no_such_param=1") == 2);
    check_mesa_residual();

    remove(in1);
    remove(in2);
    remove(in3);
    remove(out1);
    remove(out2);
    rmdir(tmp_dir);
    lact_tensor_free(&x);
    lact_tensor_free(&w);
    lact_tensor_free(&dout);
    lact_tensor_free(&x64);
    lact_tensor_free(&ref);
    lact_tensor_free(&rstd);
    lact_tensor_free(&ref_dx);
    lact_tensor_free(&ref_dw);
    lact_ctx_free(&ctx);
    return check_summary("apps_test_op_cli");
}
