#include "bench_energy.h"

#include <dlfcn.h>
#include <string.h>

#include "core/base/device.h"

typedef int (*nvml_void_fn)(void);
typedef int (*nvml_by_pci_fn)(const char *pci_bus_id, void **device);

lact_status bench_energy_open(bench_energy *e) {
    memset(e, 0, sizeof *e);
    char pci[32];
    LACT_TRY(lact_cuda_device_pci_id(pci, sizeof pci));
    e->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!e->lib)
        return lact_fail(LACT_E_UNSUPPORTED, "energy: cannot load NVML (libnvidia-ml.so.1): %s",
                         dlerror());
    void *init = dlsym(e->lib, "nvmlInit_v2");
    void *by_pci = dlsym(e->lib, "nvmlDeviceGetHandleByPciBusId_v2");
    void *energy = dlsym(e->lib, "nvmlDeviceGetTotalEnergyConsumption");
    void *shutdown = dlsym(e->lib, "nvmlShutdown");
    if (!init || !by_pci || !energy || !shutdown) {
        bench_energy_close(e);
        return lact_fail(LACT_E_UNSUPPORTED, "energy: NVML lacks the energy counter functions");
    }
    /* dlsym gives object pointers; POSIX makes them usable as function
     * pointers, which ISO C leaves open: hence memcpy, not a cast. */
    nvml_void_fn init_fn;
    nvml_by_pci_fn by_pci_fn;
    memcpy(&init_fn, &init, sizeof init_fn);
    memcpy(&by_pci_fn, &by_pci, sizeof by_pci_fn);
    memcpy(&e->total_mj, &energy, sizeof e->total_mj);
    int rc = init_fn();
    if (rc != 0) {
        bench_energy_close(e);
        return lact_fail(LACT_E_UNSUPPORTED, "energy: nvmlInit failed (NVML error %d)", rc);
    }
    memcpy(&e->shutdown, &shutdown, sizeof e->shutdown);
    rc = by_pci_fn(pci, &e->device);
    unsigned long long mj = 0;
    if (rc == 0) rc = e->total_mj(e->device, &mj);
    if (rc != 0) {
        bench_energy_close(e);
        return lact_fail(LACT_E_UNSUPPORTED,
                         "energy: no energy counter for the GPU at %s (NVML error %d)", pci, rc);
    }
    return LACT_OK;
}

void bench_energy_close(bench_energy *e) {
    if (e->shutdown) e->shutdown();
    if (e->lib) dlclose(e->lib);
    memset(e, 0, sizeof *e);
}

lact_status bench_energy_per_run(lact_ctx *ctx, const bench_energy *e, bench_fn fn, void *arg,
                                 double seconds, double *mj, double *watts) {
    unsigned long long e0 = 0, e1 = 0;
    LACT_TRY(lact_ctx_sync(ctx));
    int rc = e->total_mj(e->device, &e0);
    const double t0 = bench_now_s();
    long runs = 0;
    while (rc == 0 && (runs < 3 || bench_now_s() - t0 < seconds)) {
        LACT_TRY(fn(ctx, arg));
        runs++;
        /* Wait now and then, so that the queue does not run far ahead of
         * the clock the loop is timed by. */
        if (runs % 4 == 0) LACT_TRY(lact_ctx_sync(ctx));
    }
    LACT_TRY(lact_ctx_sync(ctx));
    const double t1 = bench_now_s();
    if (rc == 0) rc = e->total_mj(e->device, &e1);
    if (rc != 0)
        return lact_fail(LACT_E_UNSUPPORTED, "energy: reading the counter failed (NVML error %d)",
                         rc);
    *mj = (double)(e1 - e0) / (double)runs;
    *watts = (double)(e1 - e0) * 1e-3 / (t1 - t0);
    return LACT_OK;
}
