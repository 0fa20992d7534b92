#include "device.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if LACT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

/* lact_mem_free takes only the pointer, yet the in-use statistics must stay
 * exact. A host block is preceded by a 256-byte header holding its size (256
 * keeps the payload 256-byte aligned); a device block's size lives in a small
 * host-side table keyed by pointer, since a header in device memory would cost
 * a copy to read back. */
#define HEADER_BYTES 256

static _Atomic size_t mem_in_use[2];
static _Atomic size_t mem_peak[2];

static void stats_add(int dev, size_t bytes) {
    size_t now = atomic_fetch_add(&mem_in_use[dev], bytes) + bytes;
    size_t peak = atomic_load(&mem_peak[dev]);
    while (now > peak && !atomic_compare_exchange_weak(&mem_peak[dev], &peak, now)) {
    }
}

static void stats_sub(int dev, size_t bytes) {
    atomic_fetch_sub(&mem_in_use[dev], bytes);
}

size_t lact_mem_in_use(lact_device dev) {
    return atomic_load(&mem_in_use[dev == LACT_CUDA]);
}
size_t lact_mem_peak(lact_device dev) {
    return atomic_load(&mem_peak[dev == LACT_CUDA]);
}
void lact_mem_reset_peak(lact_device dev) {
    int d = dev == LACT_CUDA;
    atomic_store(&mem_peak[d], atomic_load(&mem_in_use[d]));
}

static lact_status cpu_alloc(size_t bytes, void **out) {
    if (bytes > SIZE_MAX - 2 * HEADER_BYTES)
        return lact_fail(LACT_E_NOMEM, "host allocation of %zu bytes is too large", bytes);
    size_t total = (bytes + HEADER_BYTES + HEADER_BYTES - 1) / HEADER_BYTES * HEADER_BYTES;
    char *base = aligned_alloc(HEADER_BYTES, total);
    if (!base)
        return lact_fail(LACT_E_NOMEM, "out of host memory allocating %zu bytes (%.1f MiB)", bytes,
                         (double)bytes / (1024.0 * 1024.0));
    memcpy(base, &bytes, sizeof bytes);
    stats_add(0, bytes);
    *out = base + HEADER_BYTES;
    return LACT_OK;
}

static void cpu_free(void *p) {
    char *base = (char *)p - HEADER_BYTES;
    size_t bytes;
    memcpy(&bytes, base, sizeof bytes);
    stats_sub(0, bytes);
    free(base);
}

#if LACT_WITH_CUDA

#define CUDA_TRY(call)                                                                             \
    do {                                                                                           \
        cudaError_t lact_cu_e_ = (call);                                                           \
        if (lact_cu_e_ != cudaSuccess)                                                             \
            return lact_fail(LACT_E_CUDA, "%s failed: %s", #call, cudaGetErrorString(lact_cu_e_)); \
    } while (0)

/* Device block sizes, keyed by pointer (open addressing, grows as needed). */
typedef struct cuda_block {
    uintptr_t ptr;
    size_t bytes;
} cuda_block;

static cuda_block *blocks;
static size_t blocks_cap, blocks_used;
static _Atomic int blocks_lock;

static void table_lock(void) {
    int expected = 0;
    while (!atomic_compare_exchange_weak(&blocks_lock, &expected, 1))
        expected = 0;
}
static void table_unlock(void) {
    atomic_store(&blocks_lock, 0);
}

static size_t slot_of(uintptr_t p, size_t cap) {
    return (size_t)((p >> 8) * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

/* Deleted slots hold ptr == 1 so probing continues past them. */
static void table_insert_raw(cuda_block *tab, size_t cap, uintptr_t p, size_t bytes) {
    size_t i = slot_of(p, cap);
    while (tab[i].ptr > 1)
        i = (i + 1) & (cap - 1);
    tab[i].ptr = p;
    tab[i].bytes = bytes;
}

static bool table_insert(uintptr_t p, size_t bytes) {
    if ((blocks_used + 1) * 2 > blocks_cap) {
        size_t cap = blocks_cap ? blocks_cap * 2 : 256;
        cuda_block *tab = calloc(cap, sizeof *tab);
        if (!tab) return false;
        for (size_t i = 0; i < blocks_cap; i++)
            if (blocks[i].ptr > 1) table_insert_raw(tab, cap, blocks[i].ptr, blocks[i].bytes);
        free(blocks);
        blocks = tab;
        blocks_cap = cap;
    }
    table_insert_raw(blocks, blocks_cap, p, bytes);
    blocks_used++;
    return true;
}

static size_t table_remove(uintptr_t p) {
    if (!blocks_cap) return 0;
    size_t i = slot_of(p, blocks_cap);
    for (size_t n = 0; n < blocks_cap && blocks[i].ptr; n++, i = (i + 1) & (blocks_cap - 1)) {
        if (blocks[i].ptr == p) {
            size_t bytes = blocks[i].bytes;
            blocks[i].ptr = 1;
            blocks_used--; /* tombstones are rebuilt away on the next growth */
            return bytes;
        }
    }
    return 0;
}

static int cuda_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

bool lact_cuda_available(void) {
    return cuda_count() > 0;
}

const char *lact_cuda_device_name(char *buf, size_t n) {
    if (n) buf[0] = '\0';
    struct cudaDeviceProp prop;
    if (n && cuda_count() > 0 && cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
        strncpy(buf, prop.name, n - 1);
        buf[n - 1] = '\0';
    }
    return buf;
}

lact_status lact_cuda_device_pci_id(char *buf, size_t n) {
    if (n) buf[0] = '\0';
    if (cuda_count() <= 0) return lact_fail(LACT_E_UNSUPPORTED, "no CUDA device is visible");
    cudaError_t e = cudaDeviceGetPCIBusId(buf, (int)n, 0);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lact_fail(LACT_E_CUDA, "cudaDeviceGetPCIBusId failed: %s", cudaGetErrorString(e));
    }
    return LACT_OK;
}

static lact_status cuda_alloc(size_t bytes, void **out) {
    void *p = NULL;
    /* cudaMalloc aligns to at least 256 bytes. */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lact_fail(e == cudaErrorMemoryAllocation ? LACT_E_NOMEM : LACT_E_CUDA,
                         "cudaMalloc(%zu bytes, %.1f MiB) failed: %s (in use %.1f MiB)", bytes,
                         (double)bytes / (1024.0 * 1024.0), cudaGetErrorString(e),
                         (double)lact_mem_in_use(LACT_CUDA) / (1024.0 * 1024.0));
    }
    table_lock();
    bool ok = table_insert((uintptr_t)p, bytes);
    table_unlock();
    if (!ok) {
        cudaFree(p);
        return lact_fail(LACT_E_NOMEM, "out of host memory tracking a device allocation");
    }
    stats_add(1, bytes);
    *out = p;
    return LACT_OK;
}

static void cuda_free(void *p) {
    table_lock();
    size_t bytes = table_remove((uintptr_t)p);
    table_unlock();
    stats_sub(1, bytes);
    cudaFree(p); /* nothing useful to do with an error while freeing */
}

static enum cudaMemcpyKind copy_kind(lact_device dst, lact_device src) {
    if (dst == LACT_CUDA)
        return src == LACT_CUDA ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
    return src == LACT_CUDA ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost;
}

#else /* !LACT_WITH_CUDA */

static lact_status no_cuda(void) {
    return lact_fail(LACT_E_UNSUPPORTED, "this build has no CUDA (configure with -DLACT_CUDA=ON)");
}

bool lact_cuda_available(void) {
    return false;
}

const char *lact_cuda_device_name(char *buf, size_t n) {
    if (n) buf[0] = '\0';
    return buf;
}

lact_status lact_cuda_device_pci_id(char *buf, size_t n) {
    if (n) buf[0] = '\0';
    return no_cuda();
}

#endif

lact_status lact_mem_alloc(lact_device dev, size_t bytes, void **out) {
    *out = NULL;
    if (dev == LACT_CPU) return cpu_alloc(bytes, out);
#if LACT_WITH_CUDA
    return cuda_alloc(bytes, out);
#else
    return no_cuda();
#endif
}

void lact_mem_free(lact_device dev, void *p) {
    if (!p) return;
    if (dev == LACT_CPU) {
        cpu_free(p);
        return;
    }
#if LACT_WITH_CUDA
    cuda_free(p);
#endif
}

lact_status lact_mem_zero(lact_device dev, void *p, size_t bytes) {
    if (!bytes) return LACT_OK;
    if (dev == LACT_CPU) {
        memset(p, 0, bytes);
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    CUDA_TRY(cudaMemset(p, 0, bytes));
    return LACT_OK;
#else
    return no_cuda();
#endif
}

lact_status lact_mem_copy(void *dst, lact_device dst_dev, const void *src, lact_device src_dev,
                          size_t bytes) {
    if (!bytes || dst == src) return LACT_OK;
    if (dst_dev == LACT_CPU && src_dev == LACT_CPU) {
        memmove(dst, src, bytes);
        return LACT_OK;
    }
#if LACT_WITH_CUDA
    CUDA_TRY(cudaMemcpy(dst, src, bytes, copy_kind(dst_dev, src_dev)));
    return LACT_OK;
#else
    return no_cuda();
#endif
}
