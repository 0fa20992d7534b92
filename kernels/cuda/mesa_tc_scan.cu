/* The scans over chunks on tensor cores: one block of 4 warps per (head,
 * 64×64 tile of the d×d state, which state) walks the chunks in order
 * (states) or in reverse (adjoints), keeping the running state in fp32
 * registers and storing it in bf16 before each chunk adds
 *   S ← γ̄_{T−1} S + sgn · Aᵀ diag(w) B
 * (A, B the chunk's [T, d] rows). The next chunk's rows are loaded into
 * registers while the tensor cores work on the current one. At most 128
 * registers, so that the 512 blocks of the benchmark shape (64 heads × 4
 * tiles × 2 states) are resident at once: each walks 128 chunks in order,
 * and a second wave would double the time. */
#include "kernels/cuda/mesa_tc.cuh"

#define SCAN_THREADS 128
#define SCAN_LD 72

typedef struct scan_job {
    const bf16 *A[2], *B[2];
    const float *w[2];
    float sgn[2];
    const float *gm; /* γ̄ per token: the decay of a chunk is γ̄ at its last token */
    bf16 *out[2];
    float *last[2];
    bool last_t[2];
} scan_job;

/* This thread's 4 + 4 sixteen-byte pieces of a chunk's A and B tiles, and
 * the weights of its A rows. */
struct scan_raw {
    uint4 a[4], b[4];
    float wa[4];
};

static __device__ __forceinline__ void scan_fetch(scan_raw &raw, const bf16 *A, const bf16 *B,
                                                  const float *w, float sgn, int64_t row, int T,
                                                  int d, int a0, int b0) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int v = i * SCAN_THREADS + threadIdx.x, r = v >> 3, c = (v & 7) * 8;
        bool okr = r < T;
        bool oka = okr && a0 + c < d, okb = okr && b0 + c < d;
        raw.a[i] = oka ? *reinterpret_cast<const uint4 *>(A + (row + r) * d + a0 + c)
                       : make_uint4(0, 0, 0, 0);
        raw.b[i] = okb ? *reinterpret_cast<const uint4 *>(B + (row + r) * d + b0 + c)
                       : make_uint4(0, 0, 0, 0);
        raw.wa[i] = okr ? sgn * w[row + r] : 0.0f;
    }
}

static __device__ __forceinline__ uint32_t scale_pair(uint32_t u, float s) {
    float2 f = unpack_bf16(u);
    return pack_bf16(f.x * s, f.y * s);
}

static __device__ __forceinline__ void scan_stash(const scan_raw &raw, bf16 *sA, bf16 *sB) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        int v = i * SCAN_THREADS + threadIdx.x, r = v >> 3, c = (v & 7) * 8;
        uint4 a = raw.a[i];
        float s = raw.wa[i];
        a.x = scale_pair(a.x, s), a.y = scale_pair(a.y, s);
        a.z = scale_pair(a.z, s), a.w = scale_pair(a.w, s);
        *reinterpret_cast<uint4 *>(sA + r * SCAN_LD + c) = a;
        *reinterpret_cast<uint4 *>(sB + r * SCAN_LD + c) = raw.b[i];
    }
}

template <bool REV>
__global__ void __launch_bounds__(SCAN_THREADS, 4) tc_scan_kernel(mesa_geom G, scan_job job) {
    __shared__ __align__(16) bf16 sA[64 * SCAN_LD];
    __shared__ __align__(16) bf16 sB[64 * SCAN_LD];
    const int z = blockIdx.z, d = (int)G.d, tiles = (d + 63) / 64;
    const int a0 = (int)(blockIdx.y / tiles) * 64, b0 = (int)(blockIdx.y % tiles) * 64;
    const int64_t bh = blockIdx.x, dd = (int64_t)d * d;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    /* selects, not indexing: a run-time index into the parameter copies it to local memory */
    const bf16 *A = z ? job.A[1] : job.A[0], *B = z ? job.B[1] : job.B[0];
    const float *w = z ? job.w[1] : job.w[0];
    const float sgn = z ? job.sgn[1] : job.sgn[0];
    bf16 *out = z ? job.out[1] : job.out[0];

    float acc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[nt][e] = 0.0f;

    scan_raw raw;
    {
        mesa_item it = mesa_item_of(G, bh * G.nc + (REV ? G.nc - 1 : 0));
        scan_fetch(raw, A, B, w, sgn, it.row, (int)it.T, d, a0, b0);
    }
    for (int64_t cc = 0; cc < G.nc; cc++) {
        int64_t c = REV ? G.nc - 1 - cc : cc, n = bh * G.nc + c;
        mesa_item it = mesa_item_of(G, n);
        scan_stash(raw, sA, sB);
        __syncthreads();
        if (cc + 1 < G.nc) {
            mesa_item nx = mesa_item_of(G, bh * G.nc + (REV ? c - 1 : c + 1));
            scan_fetch(raw, A, B, w, sgn, nx.row, (int)nx.T, d, a0, b0);
        }
        /* the state before this chunk */
        const float decay = job.gm[it.row + it.T - 1];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int ra = a0 + warp * 16 + g + 8 * h, cb = b0 + nt * 8 + 2 * t;
                if (ra < d && cb < d)
                    *reinterpret_cast<uint32_t *>(out + n * dd + (int64_t)ra * d + cb) =
                        pack_bf16(acc[nt][2 * h], acc[nt][2 * h + 1]);
#pragma unroll
                for (int e = 0; e < 2; e++)
                    acc[nt][2 * h + e] *= decay;
            }
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            uint32_t a[4];
            frag_a_t<SCAN_LD>(a, sA, ks * 16, warp * 16, lane);
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                frag_b_kn<64>(b, sB, ks * 16, np * 16, lane);
                mma_bf16(acc[2 * np], a, b[0], b[1]);
                mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
            }
        }
        __syncthreads();
    }
    float *last = z ? job.last[1] : job.last[0];
    const bool last_t = z ? job.last_t[1] : job.last_t[0];
    if (!last) return;
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int ra = a0 + warp * 16 + g + 8 * h, cb = b0 + nt * 8 + 2 * t + e;
                if (ra < d && cb < d)
                    last[bh * dd + (last_t ? (int64_t)cb * d + ra : (int64_t)ra * d + cb)] =
                        acc[nt][2 * h + e];
            }
}

template <bool REV>
static lact_status scan(lact_ctx *ctx, const mesa_geom &G, const scan_job &job) {
    int tiles = (int)((G.d + 63) / 64);
    dim3 grid((unsigned)G.bh, (unsigned)(tiles * tiles), 2);
    tc_scan_kernel<REV><<<grid, SCAN_THREADS, 0, lact_cuda_stream(ctx)>>>(G, job);
    LACT_CU_LAUNCH("mesa_tc_scan");
    return LACT_OK;
}

lact_status mesa_tc_states(lact_ctx *ctx, const mesa_geom &G, const bf16 *k, const bf16 *v,
                           const mesa_tok &tok, bf16 *Hs, bf16 *Gt, float *h_last, float *g_last) {
    scan_job job;
    job.A[0] = k, job.B[0] = k, job.A[1] = k, job.B[1] = v;
    job.w[0] = job.w[1] = tok.wf;
    job.sgn[0] = job.sgn[1] = 1.0f;
    job.gm = tok.gm;
    job.out[0] = Hs, job.out[1] = Gt;
    job.last[0] = h_last, job.last[1] = g_last;
    job.last_t[0] = false, job.last_t[1] = true; /* g_last is G = Gtᵀ */
    return scan<false>(ctx, G, job);
}

lact_status mesa_tc_adjoints(lact_ctx *ctx, const mesa_geom &G, const bf16 *y, const bf16 *d_o,
                             const bf16 *x, const mesa_tok &tok, bf16 *dH, bf16 *dG) {
    scan_job job;
    job.A[0] = y, job.B[0] = x, job.A[1] = d_o, job.B[1] = x;
    job.w[0] = job.w[1] = tok.gm;
    job.sgn[0] = -1.0f, job.sgn[1] = 1.0f;
    job.gm = tok.gm;
    job.out[0] = dH, job.out[1] = dG;
    job.last[0] = job.last[1] = NULL;
    job.last_t[0] = job.last_t[1] = false;
    return scan<true>(ctx, G, job);
}
