/* Hopper (sm_90a) pieces for warpgroup tensor-core kernels: shared-memory
 * matrix descriptors for the 128-byte swizzled layout, wgmma.mma_async
 * (bf16 in, fp32 accumulate) with A from shared memory or registers, its
 * fence / commit / wait, the accumulator layout, mbarriers, bulk tensor
 * copies (TMA, also multicast to a cluster) and their tensor maps, cluster
 * barriers and addresses, named barriers and setmaxnreg.
 *
 * Only the sm_90a pass may call the wgmma and setmaxnreg wrappers: a kernel
 * that uses them wraps its body in `#if WGMMA_DEVICE` so that the compute_90
 * PTX pass (and any other target) still builds with an empty body, and the
 * host checks before launching that the device runs the sm_90a image (see
 * attn_wgmma_built in attention_wgmma_fwd.cu: a device flag only that pass
 * sets).
 *
 * Layout ("SW128"): a tile of R rows × 64 bf16 columns (128 bytes a row) is
 * stored row after row, and the 16-byte chunk c of row r sits at chunk
 * c ^ (r % 8); groups of 8 rows (1024 bytes) must start 1024-aligned. A
 * tile with more columns is stored as consecutive 64-column slabs of
 * R·128 bytes. The bulk tensor copy with CU_TENSOR_MAP_SWIZZLE_128B and a
 * box of 64 columns writes exactly this, and the descriptors below read it:
 *   K-major operand (rows = M or N, the 16-element K step along a row):
 *     start = slab + 32·(k16 % 4), SBO = 1024 (next 8 rows), LBO unused;
 *   MN-major operand (rows = K, columns = M or N; B with imm-trans-b = 1):
 *     start = slab0 + 2048·k16 (16 rows), SBO = 1024 (next 8 K rows),
 *     LBO = slab stride (next 64 columns of N).
 *
 * Accumulator of m64nNk16 (fp32, N/2 registers a thread): warp w of the
 * warpgroup holds rows 16w..16w+15; with g = lane / 4, t = lane % 4,
 * register i is row 16w + g + 8·((i / 2) % 2), column 8·(i / 4) + 2t + i % 2.
 * The A fragment from registers (four bf16x2 for a 16-wide K step kk) uses
 * the same rows and columns 16kk + {2t, 2t+1 | +8}, so accumulator
 * registers 8kk..8kk+7, packed in pairs, are the A fragment of step kk
 * (wg_acc_to_a): P = softmax(S) feeds P·V without touching shared memory. */
#ifndef LACT_CUDA_WGMMA_CUH
#define LACT_CUDA_WGMMA_CUH

#include <cudaTypedefs.h>
#include <stdint.h>

#include "kernels/cuda/common.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_DEVICE 1
#else
#define WGMMA_DEVICE 0
#endif

/* ---- shared memory addresses, descriptors, the SW128 layout ------------------ */

static __device__ __forceinline__ uint32_t wg_smem(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Byte offset of element (r, c) (c < 64) inside a SW128 slab. */
static __host__ __device__ __forceinline__ uint32_t sw128_offset(int r, int c) {
    return (uint32_t)(r * 128 + ((((c >> 3) ^ r) & 7) << 4) + (c & 7) * 2);
}

/* Descriptor of a SW128 operand at shared address `addr` (16-byte units in
 * bits 0–13, LBO in 16–29, SBO in 32–45, layout 1 = 128-byte swizzle in
 * bits 62–63; base offset 0: slabs are 1024-aligned). */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}

/* ---- wgmma: fence, commit, wait, and the products --------------------------- */

static __device__ __forceinline__ void wg_fence() {
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
static __device__ __forceinline__ void wg_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

/* Keeps the compiler from moving reads or writes of accumulator (or A
 * fragment) registers across the asynchronous product's issue or wait. */
template <int N> static __device__ __forceinline__ void wg_fence_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> static __device__ __forceinline__ void wg_fence_regs(uint32_t (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "+r"(r[i])::"memory");
}

/* Ends the life of accumulator values without an instruction: the next
 * product that takes r with acc = 0 then does not keep them alive (its
 * operands are read-write) while other work runs before it. */
template <int N> static __device__ __forceinline__ void wg_undef_regs(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++)
        asm volatile("" : "=f"(r[i]));
}

#define WG_D8(i)                                                                                   \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]),    \
        "+f"(d[i + 6]), "+f"(d[i + 7])
#define WG_D32(i) WG_D8(i), WG_D8(i + 8), WG_D8(i + 16), WG_D8(i + 24)
#define WG_R16 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define WG_R32                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "  \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define WG_R64                                                                                     \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "  \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "   \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "   \
    "%56, %57, %58, %59, %60, %61, %62, %63}"

/* The 128 operand registers of an m64n256 accumulator, "%0" to "%127"
 * (WG_R10(a): "%a0" to "%a9"). */
#define WG_R10(a)                                                                                  \
    "%" #a "0, %" #a "1, %" #a "2, %" #a "3, %" #a "4, %" #a "5, %" #a "6, %" #a "7, %" #a         \
    "8, %" #a "9, "
#define WG_R128                                                                                    \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, " WG_R10(1) WG_R10(2) WG_R10(3) WG_R10(4) WG_R10(5)  \
        WG_R10(6) WG_R10(7) WG_R10(8) WG_R10(9) WG_R10(10)                                         \
            WG_R10(11) "%120, %121, %122, %123, %124, %125, %126, %127}"

/* d (64×N, fp32) = A·B (+ d if acc): A and B from shared memory, both
 * K-major (B stored [n][k], as K in Q·Kᵀ). */
template <int N>
static __device__ __forceinline__ void wg_mma_ss(float (&d)[N / 2], uint64_t da, uint64_t db,
                                                 int acc) {
    static_assert(N == 32 || N == 64 || N == 128 || N == 256, "wg_mma_ss: N is 32 to 256");
    if constexpr (N == 256) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " WG_R128
                     ", %128, %129, p, 1, 1, 0, 0;\n}\n"
                     : WG_D32(0), WG_D32(32), WG_D32(64), WG_D32(96)
                     : "l"(da), "l"(db), "r"(acc));
    } else if constexpr (N == 128) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64
                     ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                     : WG_D32(0), WG_D32(32)
                     : "l"(da), "l"(db), "r"(acc));
    } else if constexpr (N == 64) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                     ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                     : WG_D32(0)
                     : "l"(da), "l"(db), "r"(acc));
    } else {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " WG_R16
                     ", %16, %17, p, 1, 1, 0, 0;\n}\n"
                     : WG_D8(0), WG_D8(8)
                     : "l"(da), "l"(db), "r"(acc));
    }
}

/* d (64×N, fp32) += A·B: A (64×16) from registers (wg_acc_to_a layout), B
 * from shared memory, MN-major (TB 1: stored [k][n], as V in P·V) or
 * K-major (TB 0: stored [n][k], as a weight W in h·Wᵀ). */
template <int N, int TB>
static __device__ __forceinline__ void wg_mma_rs_b(float (&d)[N / 2], const uint32_t (&a)[4],
                                                   uint64_t db) {
    static_assert(N == 64 || N == 128 || N == 256, "wg_mma_rs: N is 64, 128 or 256");
    if constexpr (N == 256) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " WG_R128
                     ", {%128, %129, %130, %131}, %132, p, 1, 1, %134;\n}\n"
                     : WG_D32(0), WG_D32(32), WG_D32(64), WG_D32(96)
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1), "n"(TB));
    } else if constexpr (N == 128) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " WG_R64
                     ", {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
                     : WG_D32(0), WG_D32(32)
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1), "n"(TB));
    } else {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                     ", {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
                     : WG_D32(0)
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1), "n"(TB));
    }
}
template <int N>
static __device__ __forceinline__ void wg_mma_rs_tb(float (&d)[N / 2], const uint32_t (&a)[4],
                                                    uint64_t db) {
    wg_mma_rs_b<N, 1>(d, a, db);
}
template <int N>
static __device__ __forceinline__ void wg_mma_rs(float (&d)[N / 2], const uint32_t (&a)[4],
                                                 uint64_t db) {
    wg_mma_rs_b<N, 0>(d, a, db);
}

/* d (64×64, fp32) = A·B (+ d if acc): A and B from shared memory, both
 * MN-major (A stored [k][m], B stored [k][n]). */
static __device__ __forceinline__ void wg_mma_ss_tt64(float (&d)[32], uint64_t da, uint64_t db,
                                                      int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                 ", %32, %33, p, 1, 1, 1, 1;\n}\n"
                 : WG_D32(0)
                 : "l"(da), "l"(db), "r"(acc));
}

/* d (64×64, fp32) = A·B (+ d if acc): A from shared memory K-major, B
 * MN-major (stored [k][n], as W1 in y·W1). */
static __device__ __forceinline__ void wg_mma_ss_tb64(float (&d)[32], uint64_t da, uint64_t db,
                                                      int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " WG_R32
                 ", %32, %33, p, 1, 1, 0, 1;\n}\n"
                 : WG_D32(0)
                 : "l"(da), "l"(db), "r"(acc));
}

/* Row (0..63 in the warpgroup's tile) and column of accumulator register i. */
static __device__ __forceinline__ int wg_acc_row(int i, int warp, int lane) {
    return 16 * warp + (lane >> 2) + 8 * ((i >> 1) & 1);
}
static __device__ __forceinline__ int wg_acc_col(int i, int lane) {
    return 8 * (i >> 2) + 2 * (lane & 3) + (i & 1);
}

static __device__ __forceinline__ uint32_t wg_pack_bf16(float lo, float hi) {
    __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&p);
}

/* The A fragment of K step kk from accumulator registers (rounded to bf16). */
template <int NA>
static __device__ __forceinline__ void wg_acc_to_a(uint32_t (&a)[4], const float (&s)[NA], int kk) {
#pragma unroll
    for (int i = 0; i < 4; i++)
        a[i] = wg_pack_bf16(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
}

/* A 4×4 transpose of 32-bit words across the four lanes of a quad (t the
 * lane's place in it): lane t's v[m] becomes lane m's v[t], in two
 * butterfly stages of two shuffles. In the accumulator layout a quad holds
 * one row, lane t the column pair 8m + 2t of each group m of 8 columns:
 * afterwards lane t holds the 16 contiguous bytes of group t, so stores go
 * out in 16-byte pieces instead of 4-byte ones (one L2 request each). */
static __device__ __forceinline__ void wg_quad_transpose(uint32_t (&v)[4], int t) {
    const bool b = t & 1, c = t & 2;
    uint32_t y0 = __shfl_xor_sync(~0u, b ? v[0] : v[1], 1);
    uint32_t y1 = __shfl_xor_sync(~0u, b ? v[2] : v[3], 1);
    v[0] = b ? y0 : v[0], v[1] = b ? v[1] : y0, v[2] = b ? y1 : v[2], v[3] = b ? v[3] : y1;
    y0 = __shfl_xor_sync(~0u, c ? v[0] : v[2], 2);
    y1 = __shfl_xor_sync(~0u, c ? v[1] : v[3], 2);
    v[0] = c ? y0 : v[0], v[1] = c ? y1 : v[1], v[2] = c ? v[2] : y0, v[3] = c ? v[3] : y1;
}

/* 2^x in one MUFU instruction (denormal results flush to zero; 2^-inf = 0):
 * exp2f adds a range fix-up around it that a softmax does not need. */
static __device__ __forceinline__ float wg_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}

/* ---- registers, named barriers, proxies ------------------------------------- */

template <int R> static __device__ __forceinline__ void wg_setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> static __device__ __forceinline__ void wg_setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

/* Named barrier `id` (1..15; 0 is __syncthreads) over `n` threads: sync
 * waits, arrive only counts. */
static __device__ __forceinline__ void wg_bar_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
static __device__ __forceinline__ void wg_bar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}

/* Orders this thread's ordinary shared-memory writes before later reads by
 * the tensor cores or the copy engine (call before the barrier). */
static __device__ __forceinline__ void wg_fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* ---- mbarriers ---------------------------------------------------------------- */

static __device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* Makes the initialised barriers visible to the copy engine (then a
 * __syncthreads makes them visible to the block). */
static __device__ __forceinline__ void mbar_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
static __device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* One arrival that also expects `bytes` from bulk copies in this phase. */
static __device__ __forceinline__ void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
/* Expects `bytes` more from bulk copies in this phase, without arriving: the
 * copies can go out before the data that the arrival publishes is ready. */
static __device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
/* Waits until the phase of parity `parity` has completed (a fresh barrier
 * is in phase 0, so waiting on parity 1 returns at once). */
static __device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    uint32_t done = 0;
    do {
        asm volatile("{\n.reg .pred p;\n"
                     "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
    } while (!done);
}

/* ---- clusters ------------------------------------------------------------------ */

static __device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
/* The address of shared offset `addr` in the block of cluster rank `cta`. */
static __device__ __forceinline__ uint32_t cluster_map(uint32_t addr, uint32_t cta) {
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(cta));
    return r;
}
/* One arrival on the mbarrier at offset `bar` of the block of rank `cta`,
 * with the default (CTA-scope) release: it only says that this thread's
 * reads of a stage are done (a wgmma wait already ordered them), and a
 * cluster-scope release would wait for every store the thread has in
 * flight at each arrival. */
static __device__ __forceinline__ void mbar_arrive_cluster(uint32_t bar, uint32_t cta) {
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(cluster_map(bar, cta))
                 : "memory");
}
/* Every thread of every block of the cluster: shared memory written before
 * is visible to the cluster after. */
static __device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::
                     : "memory");
}
static __device__ __forceinline__ float ld_cluster_f32(uint32_t addr) {
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(addr) : "memory");
    return v;
}

/* ---- bulk tensor copies ------------------------------------------------------- */

/* Box at coordinates (c0 innermost, c1, c2) of a 3-d tensor map into shared
 * memory at `dst`, completing `bytes` on the mbarrier `bar`. Coordinates
 * past the tensor's ends read as zeros. */
static __device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0,
                                                   int c1, int c2, uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}
/* tma_load_3d into the same shared offset `dst` of every block of the
 * cluster in `mask` (bit i: rank i), completing `bytes` on each one's
 * mbarrier at offset `bar`. */
static __device__ __forceinline__ void tma_load_3d_mc(uint32_t dst, const CUtensorMap *map, int c0,
                                                      int c1, int c2, uint32_t bar, uint16_t mask) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 ".multicast::cluster [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "h"(mask)
                 : "memory");
}
/* Adds `bytes` of F32 at shared src into global dst (both 16-byte aligned). */
static __device__ __forceinline__ void bulk_reduce_add_f32(float *dst, uint32_t src,
                                                           uint32_t bytes) {
    asm volatile(
        "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst),
        "r"(src), "r"(bytes)
        : "memory");
}
/* Copies `bytes` at shared src to global dst (both 16-byte aligned). */
static __device__ __forceinline__ void bulk_store(void *dst, uint32_t src, uint32_t bytes) {
    asm volatile("cp.async.bulk.global.shared::cta.bulk_group [%0], [%1], %2;\n" ::"l"(dst),
                 "r"(src), "r"(bytes)
                 : "memory");
}
/* Orders this thread's completed bulk writes to global memory before its
 * later generic-proxy accesses (a flag that tells other blocks they landed). */
static __device__ __forceinline__ void fence_proxy_async_global() {
    asm volatile("fence.proxy.async.global;\n" ::: "memory");
}
static __device__ __forceinline__ void tma_commit() {
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
/* Waits until all but the newest N of this thread's committed bulk groups
 * have read their shared memory (those buffers may be rewritten) / until
 * all of them have completed. */
template <int N> static __device__ __forceinline__ void tma_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
static __device__ __forceinline__ void tma_wait_all() {
    asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}
static __device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)map) : "memory");
}

/* ---- host: tensor maps -------------------------------------------------------- */

/* The driver's cuTensorMapEncodeTiled through the runtime's entry-point
 * query (no link against the driver library); NULL if the driver lacks it. */
static inline PFN_cuTensorMapEncodeTiled_v12000 wg_encode_fn(void) {
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    static bool tried = false;
    if (!tried) {
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                             &q) == cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
        else
            (void)cudaGetLastError();
        tried = true;
    }
    return fn;
}

/* A bf16 tensor [n2][n1][n0] (n0 contiguous, rows `stride1` elements
 * apart, the n2 blocks `stride2` apart) read in boxes of 64 × rows × 1
 * with the 128-byte swizzle; the strides multiples of 8, the base 16-byte
 * aligned. */
static inline lact_status wg_tensor_map_bf16_rows(CUtensorMap *map, const void *base, uint64_t n0,
                                                  uint64_t n1, uint64_t n2, uint64_t stride1,
                                                  uint64_t stride2, uint32_t rows) {
    PFN_cuTensorMapEncodeTiled_v12000 enc = wg_encode_fn();
    if (!enc) return lact_fail(LACT_E_CUDA, "tensor map: cuTensorMapEncodeTiled unavailable");
    const cuuint64_t dims[3] = {n0, n1, n2};
    const cuuint64_t strides[2] = {stride1 * 2, stride2 * 2};
    const cuuint32_t box[3] = {64, rows, 1}, estr[3] = {1, 1, 1};
    CUresult r = enc(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void *>(base), dims,
                     strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) return lact_fail(LACT_E_CUDA, "tensor map: encode failed (%d)", (int)r);
    return LACT_OK;
}

/* The same with rows n0 apart. */
static inline lact_status wg_tensor_map_bf16_strided(CUtensorMap *map, const void *base,
                                                     uint64_t n0, uint64_t n1, uint64_t n2,
                                                     uint64_t stride2, uint32_t rows) {
    return wg_tensor_map_bf16_rows(map, base, n0, n1, n2, n0, stride2, rows);
}

/* The same with the n2 blocks packed (stride n0·n1); n0 a multiple of 64. */
static inline lact_status wg_tensor_map_bf16(CUtensorMap *map, const void *base, uint64_t n0,
                                             uint64_t n1, uint64_t n2, uint32_t rows) {
    return wg_tensor_map_bf16_strided(map, base, n0, n1, n2, n0 * n1, rows);
}

#endif
