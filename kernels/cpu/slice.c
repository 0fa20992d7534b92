/* The slice op's copies on the CPU: one memcpy per row. */
#include "kernels/cpu/slice_ref.h"

#include <string.h>

void lact_cpu_copy_2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                      size_t height) {
    if (dpitch == width && spitch == width) {
        memcpy(dst, src, width * height);
        return;
    }
    for (size_t i = 0; i < height; i++)
        memcpy((char *)dst + i * dpitch, (const char *)src + i * spitch, width);
}
