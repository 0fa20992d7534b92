/* What this binary was built with and what it finds at run time, for
 * `lact version` and for benchmark reports. */
#ifndef LACT_BUILD_INFO_H
#define LACT_BUILD_INFO_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_build_info {
    const char *compiler;    /* "gcc 12.2.0" */
    bool cuda;               /* built with the CUDA kernels */
    int cuda_runtime;        /* e.g. 13000; 0 when unknown */
    int cuda_driver;         /* driver API version; 0 when no driver */
    int cublas;              /* e.g. 130100; 0 when unknown */
    const char *cuda_targets;/* the -gencode list the kernels were built for */
    const char *openblas;    /* openblas_get_config() */
    int omp_max_threads;
    char gpu_name[256];      /* "" when none */
    int gpu_sm;              /* compute capability major*10+minor, 0 when none */
    int gpu_count;
} lact_build_info;

void lact_build_info_get(lact_build_info *info);

#ifdef __cplusplus
}
#endif
#endif
