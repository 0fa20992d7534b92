/* `lact version`: what this binary is and what it was built with. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "core/base/build_info.h"

#ifndef LACT_VERSION
#define LACT_VERSION "unknown"
#endif
#ifndef LACT_BUILD_TYPE
#define LACT_BUILD_TYPE "unknown"
#endif

/* 13000 -> "13.0"; 130100 (cuBLAS) -> "13.1.0". */
static const char *cuda_version(int v, char *buf, size_t n) {
    if (v <= 0)
        snprintf(buf, n, "unknown");
    else
        snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
    return buf;
}

static const char *cublas_version(int v, char *buf, size_t n) {
    if (v <= 0)
        snprintf(buf, n, "unknown");
    else
        snprintf(buf, n, "%d.%d.%d", v / 10000, (v / 100) % 100, v % 100);
    return buf;
}

int cmd_version(int argc, char **argv) {
    bool json = false;
    const cli_opt opts[] = {
        {"--json", CLI_BOOL, NULL, "print one JSON object", NULL, &json},
        CLI_OPT_END,
    };
    const cli_command cmd = {"lact version",
                             "[--json]",
                             "Prints the version, the build and the libraries and devices found.",
                             NULL,
                             opts,
                             0};
    if (argv) {
        cli_result r = cli_parse(&cmd, argc, argv, NULL, NULL);
        if (r != CLI_PARSED) return r == CLI_HELP ? 0 : 2;
    }
    lact_build_info bi;
    lact_build_info_get(&bi);
    char rt[32], drv[32], blas[32];
    cuda_version(bi.cuda_runtime, rt, sizeof rt);
    cuda_version(bi.cuda_driver, drv, sizeof drv);
    cublas_version(bi.cublas, blas, sizeof blas);
    if (json) {
        printf("{\"version\": \"%s\", \"build_type\": \"%s\", \"compiler\": \"%s\", "
               "\"cuda\": %s, \"cuda_runtime\": \"%s\", \"cuda_driver\": \"%s\", "
               "\"cublas\": \"%s\", \"openblas\": \"%s\", \"omp_threads\": %d, "
               "\"gpu\": \"%s\", \"gpu_sm\": %d, \"gpu_count\": %d}\n",
               LACT_VERSION, LACT_BUILD_TYPE, bi.compiler, bi.cuda ? "true" : "false", rt, drv,
               blas, bi.openblas ? bi.openblas : "", bi.omp_max_threads, bi.gpu_name, bi.gpu_sm,
               bi.gpu_count);
        return 0;
    }
    printf("lact %s (%s)\n", LACT_VERSION, LACT_BUILD_TYPE);
    printf("  compiler     %s\n", bi.compiler);
    if (bi.cuda) {
        printf("  cuda         on (runtime %s, driver %s, cuBLAS %s)\n", rt,
               bi.cuda_driver ? drv : "none", blas);
        if (bi.cuda_targets && bi.cuda_targets[0]) printf("  cuda targets %s\n", bi.cuda_targets);
    } else {
        printf("  cuda         off (CPU-only build)\n");
    }
    printf("  openblas     %s\n", bi.openblas ? bi.openblas : "unknown");
    printf("  openmp       %d threads\n", bi.omp_max_threads);
    if (bi.gpu_count > 0)
        printf("  gpu          %s (sm_%d)%s\n", bi.gpu_name, bi.gpu_sm,
               bi.gpu_count > 1 ? " and more" : "");
    else
        printf("  gpu          none found\n");
    return 0;
}
