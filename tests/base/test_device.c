#include <stdint.h>
#include <string.h>

#include "core/base/context.h"
#include "core/base/device.h"
#include "tests/support/check.h"

static void test_host(void) {
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CPU, 2));
    CHECK(ctx.device == LACT_CPU && ctx.n_threads == 2 && ctx.stream == NULL);
    CHECK_OK(lact_ctx_sync(&ctx));
    lact_ctx_free(&ctx);
    lact_ctx_free(&ctx);

    size_t base = lact_mem_in_use(LACT_CPU);
    void *p = NULL, *q = NULL;
    CHECK_OK(lact_mem_alloc(LACT_CPU, 1000, &p));
    CHECK_OK(lact_mem_alloc(LACT_CPU, 24, &q));
    CHECK(lact_mem_in_use(LACT_CPU) == base + 1024);
    CHECK((uintptr_t)p % 256 == 0 && (uintptr_t)q % 256 == 0);
    CHECK_OK(lact_mem_copy(q, LACT_CPU, "0123456789abcdefghijklm", LACT_CPU, 24));
    CHECK(memcmp(q, "0123456789", 10) == 0);
    CHECK_OK(lact_mem_zero(LACT_CPU, q, 24));
    CHECK(((char *)q)[5] == 0);
    lact_mem_free(LACT_CPU, p);
    CHECK(lact_mem_peak(LACT_CPU) >= base + 1024);
    lact_mem_reset_peak(LACT_CPU);
    CHECK(lact_mem_peak(LACT_CPU) == base + 24);
    lact_mem_free(LACT_CPU, q);
    lact_mem_free(LACT_CPU, NULL);
    CHECK(lact_mem_in_use(LACT_CPU) == base);
}

static void test_no_gpu(void) {
    lact_ctx ctx;
    void *p = (void *)1;
    char name[64] = "x";
    CHECK(lact_cuda_device_name(name, sizeof name)[0] == '\0');
    name[0] = 'x';
    CHECK(lact_cuda_device_pci_id(name, sizeof name) != LACT_OK && name[0] == '\0');
    CHECK(lact_errmsg()[0] != '\0');
    CHECK(lact_ctx_init(&ctx, LACT_CUDA, 0) != LACT_OK);
    CHECK(strstr(lact_errmsg(), "CUDA") != NULL);
    CHECK(ctx.stream == NULL && ctx.workspace == NULL && ctx.cublas == NULL);
    lact_ctx_free(&ctx);
    CHECK(lact_mem_alloc(LACT_CUDA, 16, &p) != LACT_OK && p == NULL);
    CHECK(lact_errmsg()[0] != '\0');
#if !LACT_WITH_CUDA
    CHECK(strcmp(lact_errmsg(), "this build has no CUDA (configure with -DLACT_CUDA=ON)") == 0);
#endif
}

static void test_gpu(void) {
    char name[128];
    CHECK(lact_cuda_device_name(name, sizeof name)[0] != '\0');
    /* "dddd:bb:dd.f", as NVML takes it. */
    CHECK_OK(lact_cuda_device_pci_id(name, sizeof name));
    CHECK(strlen(name) >= 12 && name[strlen(name) - 2] == '.' && strchr(name, ':') != NULL);
    size_t base = lact_mem_in_use(LACT_CUDA);
    lact_ctx ctx;
    CHECK_OK(lact_ctx_init(&ctx, LACT_CUDA, 0));
    CHECK(ctx.stream && ctx.cublas && ctx.cublaslt && ctx.workspace && ctx.scratch);
    CHECK(ctx.workspace_bytes == (size_t)32 << 20 && ctx.scratch_bytes == (size_t)16 << 20);
    CHECK(lact_mem_in_use(LACT_CUDA) == base + (48u << 20));
    CHECK_OK(lact_ctx_sync(&ctx));

    /* Many blocks, freed out of order, keep the byte count exact. */
    enum { N = 600 };
    static void *blocks[N];
    for (int i = 0; i < N; i++)
        CHECK_OK(lact_mem_alloc(LACT_CUDA, (size_t)(i + 1) * 64, &blocks[i]));
    size_t total = 0;
    for (int i = 0; i < N; i++)
        total += (size_t)(i + 1) * 64;
    CHECK(lact_mem_in_use(LACT_CUDA) == base + (48u << 20) + total);
    for (int i = 0; i < N; i += 2)
        lact_mem_free(LACT_CUDA, blocks[i]);
    for (int i = 1; i < N; i += 2)
        lact_mem_free(LACT_CUDA, blocks[i]);
    CHECK(lact_mem_in_use(LACT_CUDA) == base + (48u << 20));
    CHECK(lact_mem_peak(LACT_CUDA) >= base + (48u << 20) + total);

    /* Host -> device -> device -> host. */
    uint32_t host[256], back[256];
    for (int i = 0; i < 256; i++)
        host[i] = (uint32_t)i * 2654435761u;
    void *d1 = NULL, *d2 = NULL;
    CHECK_OK(lact_mem_alloc(LACT_CUDA, sizeof host, &d1));
    CHECK_OK(lact_mem_alloc(LACT_CUDA, sizeof host, &d2));
    CHECK(d1 && (uintptr_t)d1 % 256 == 0);
    CHECK_OK(lact_mem_copy(d1, LACT_CUDA, host, LACT_CPU, sizeof host));
    CHECK_OK(lact_mem_copy(d2, LACT_CUDA, d1, LACT_CUDA, sizeof host));
    CHECK_OK(lact_mem_copy(back, LACT_CPU, d2, LACT_CUDA, sizeof host));
    CHECK(memcmp(host, back, sizeof host) == 0);
    CHECK_OK(lact_mem_zero(LACT_CUDA, d2, sizeof host));
    CHECK_OK(lact_mem_copy(back, LACT_CPU, d2, LACT_CUDA, sizeof host));
    CHECK(back[17] == 0 && back[255] == 0);
    lact_mem_free(LACT_CUDA, d1);
    lact_mem_free(LACT_CUDA, d2);

    lact_ctx_free(&ctx);
    CHECK(ctx.stream == NULL);
    lact_ctx_free(&ctx);
    CHECK(lact_mem_in_use(LACT_CUDA) == base);
}

int main(void) {
    test_host();
    if (lact_cuda_available())
        test_gpu();
    else
        test_no_gpu();
    return check_summary("base_device");
}
