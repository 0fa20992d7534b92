#include "build_info.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

#if LACT_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#endif

/* OpenBLAS exports this; the header's declaration varies between versions. */
char *openblas_get_config(void);

#ifndef LACT_CUDA_TARGETS
#define LACT_CUDA_TARGETS ""
#endif

#define LACT_STR2(x) #x
#define LACT_STR(x) LACT_STR2(x)

void lact_build_info_get(lact_build_info *info) {
    memset(info, 0, sizeof *info);
#if defined(__clang__)
    info->compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
    info->compiler = "gcc " LACT_STR(__GNUC__) "." LACT_STR(__GNUC_MINOR__) "." LACT_STR(
        __GNUC_PATCHLEVEL__);
#else
    info->compiler = "unknown";
#endif
    info->openblas = openblas_get_config();
    info->omp_max_threads = omp_get_max_threads();
    info->cuda_targets = LACT_CUDA_TARGETS;
#if LACT_WITH_CUDA
    info->cuda = true;
    int v = 0;
    if (cudaRuntimeGetVersion(&v) == cudaSuccess) info->cuda_runtime = v;
    if (cudaDriverGetVersion(&v) == cudaSuccess) info->cuda_driver = v;
    int major = 0, minor = 0, patch = 0;
    if (cublasGetProperty(MAJOR_VERSION, &major) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(MINOR_VERSION, &minor) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(PATCH_LEVEL, &patch) == CUBLAS_STATUS_SUCCESS)
        info->cublas = major * 10000 + minor * 100 + patch;
    int n = 0;
    if (cudaGetDeviceCount(&n) == cudaSuccess && n > 0) {
        struct cudaDeviceProp prop;
        info->gpu_count = n;
        if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
            snprintf(info->gpu_name, sizeof info->gpu_name, "%s", prop.name);
            info->gpu_sm = prop.major * 10 + prop.minor;
        }
    } else {
        (void)cudaGetLastError(); /* clear the sticky "no device" error */
    }
#endif
}
