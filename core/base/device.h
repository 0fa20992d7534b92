/* Raw memory on a device. The CPU path is malloc; the CUDA path uses the CUDA
 * runtime's C API and exists only when built with LACT_CUDA (otherwise every
 * CUDA request fails with LACT_E_UNSUPPORTED and a clear message). */
#ifndef LACT_DEVICE_H
#define LACT_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True when this build has CUDA and at least one device is visible. */
bool lact_cuda_available(void);
/* Name of device 0 into buf ("" when none); returns buf. */
const char *lact_cuda_device_name(char *buf, size_t n);
/* PCI bus id of device 0 ("0000:19:00.0"), as NVML names devices. */
lact_status lact_cuda_device_pci_id(char *buf, size_t n);

lact_status lact_mem_alloc(lact_device dev, size_t bytes, void **out); /* 256-byte aligned */
void lact_mem_free(lact_device dev, void *p);
lact_status lact_mem_zero(lact_device dev, void *p, size_t bytes);
/* Synchronous copy between any two devices. */
lact_status lact_mem_copy(void *dst, lact_device dst_dev, const void *src, lact_device src_dev,
                          size_t bytes);
/* Bytes currently and at peak allocated through lact_mem_alloc on dev. */
size_t lact_mem_in_use(lact_device dev);
size_t lact_mem_peak(lact_device dev);
void lact_mem_reset_peak(lact_device dev);

#ifdef __cplusplus
}
#endif
#endif
