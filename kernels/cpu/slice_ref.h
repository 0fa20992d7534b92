/* The CPU side of the slice op (kernels/dispatch_slice.c): strided copies
 * of whole rows of bytes. */
#ifndef LACT_CPU_SLICE_REF_H
#define LACT_CPU_SLICE_REF_H

#include <stddef.h>

/* height rows of width bytes, row i from src + i·spitch to dst + i·dpitch. */
void lact_cpu_copy_2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                      size_t height);

#endif
