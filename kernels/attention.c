/* lact_attention_*: the mask ranges, argument checks, then the CPU reference
 * or the CUDA version (forward, backward and decode). */
#include "kernels/attention.h"

#include <math.h>
#include <stdlib.h>

#include "core/base/device.h"
#include "kernels/cpu/attention_ref.h"
#include "kernels/kcheck.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/attention_cuda.h"
#endif

#define F32_ONLY LACT_DT(LACT_F32)
#define I32_ONLY LACT_DT(LACT_I32)

void lact_attention_key_range(const lact_attn_args *args, int64_t p, int64_t n, int64_t *lo,
                              int64_t *hi) {
    *lo = 0;
    *hi = p + 1;
    switch (args->mask) {
    case LACT_ATTN_FULL:
        *hi = n;
        break;
    case LACT_ATTN_CAUSAL:
        break;
    case LACT_ATTN_WINDOW:
        *lo = p - args->window + 1 > 0 ? p - args->window + 1 : 0;
        break;
    case LACT_ATTN_BLOCK_CAUSAL: {
        int64_t end = (p / args->block + 1) * args->block;
        *hi = end < n ? end : n;
        break;
    }
    }
}

double lact_attention_pairs(const lact_attn_args *args, int64_t n) {
    double pairs = 0.0;
    for (int64_t p = 0; p < n; p++) {
        int64_t lo, hi;
        lact_attention_key_range(args, p, n, &lo, &hi);
        pairs += (double)(hi - lo);
    }
    return pairs;
}

float lact_attention_scale(const lact_attn_args *args, int64_t d) {
    return args->scale != 0.0f ? args->scale : (float)(1.0 / sqrt((double)d));
}

static lact_status check_args(const char *op, const lact_attn_args *a) {
    if (!a) return lact_fail(LACT_E_ARG, "%s: args is NULL", op);
    switch (a->mask) {
    case LACT_ATTN_FULL:
    case LACT_ATTN_CAUSAL:
        break;
    case LACT_ATTN_WINDOW:
        if (a->window < 1)
            return lact_fail(LACT_E_ARG, "%s: window = %lld; the window mask needs window >= 1", op,
                             (long long)a->window);
        break;
    case LACT_ATTN_BLOCK_CAUSAL:
        if (a->block < 1)
            return lact_fail(LACT_E_ARG, "%s: block = %lld; the block-causal mask needs block >= 1",
                             op, (long long)a->block);
        break;
    default:
        return lact_fail(LACT_E_ARG,
                         "%s: mask = %d is not full (0), causal (1), window (2) or "
                         "block-causal (3)",
                         op, (int)a->mask);
    }
    if (!isfinite(a->scale))
        return lact_fail(LACT_E_ARG, "%s: scale = %g is not finite", op, a->scale);
    return LACT_OK;
}

static lact_status need_4d(const char *op, const char *name, const lact_tensor *t) {
    if (!t) return lact_fail(LACT_E_ARG, "%s: %s is NULL", op, name);
    return lact_kcheck_ndim(op, name, t, 4, 4);
}

static lact_status shape_fail(const char *op, const char *name, const lact_tensor *t,
                              const char *want) {
    char buf[96];
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %s", op, name,
                     lact_kcheck_shape_str(t, buf, sizeof buf), want);
}

lact_status lact_attention_check_shapes(const char *op, const lact_tensor *q, const lact_tensor *k,
                                        const lact_tensor *v, const lact_tensor *g,
                                        const lact_tensor *cu_seqlens, const lact_attn_args *args) {
    LACT_TRY(check_args(op, args));
    LACT_TRY(need_4d(op, "q", q));
    LACT_TRY(need_4d(op, "k", k));
    LACT_TRY(need_4d(op, "v", v));
    int64_t b = q->shape[0], h = q->shape[1], lq = q->shape[2], d = q->shape[3];
    int64_t hkv = k->shape[1], lk = k->shape[2];
    if (k->shape[0] != b || k->shape[3] != d)
        return shape_fail(op, "k", k, "[B, Hkv, Lk, d] with B and d of q [B, H, Lq, d]");
    LACT_TRY(lact_kcheck_same_shape(op, "v", v, "k", k));
    LACT_TRY(lact_kcheck_same_dtype(op, "k", k, "q", q));
    LACT_TRY(lact_kcheck_same_dtype(op, "v", v, "q", q));
    if (hkv < 1 || h % hkv != 0)
        return lact_fail(LACT_E_ARG,
                         "%s: q has %lld heads, k and v %lld; the query heads must be a "
                         "multiple of the key/value heads",
                         op, (long long)h, (long long)hkv);
    if (d < 1) return lact_fail(LACT_E_ARG, "%s: head dim d = 0", op);
    if (lq > lk)
        return lact_fail(LACT_E_ARG,
                         "%s: q has %lld tokens, k and v %lld; queries are aligned to the end "
                         "of the keys, so Lq <= Lk",
                         op, (long long)lq, (long long)lk);
    if (g) {
        LACT_TRY(need_4d(op, "g", g));
        bool ok = g->shape[0] == b && g->shape[1] == h && g->shape[2] == lq &&
                  (g->shape[3] == d || g->shape[3] == 1);
        if (!ok)
            return shape_fail(op, "g", g, "[B, H, Lq, d] or [B, H, Lq, 1] (q is [B, H, Lq, d])");
        LACT_TRY(lact_kcheck_same_dtype(op, "g", g, "q", q));
    }
    if (cu_seqlens) {
        if (cu_seqlens->dtype != LACT_I32)
            return lact_fail(LACT_E_ARG, "%s: cu_seqlens has dtype %s, expected I32", op,
                             lact_dtype_name(cu_seqlens->dtype));
        if (cu_seqlens->ndim != 1 || cu_seqlens->shape[0] < 2)
            return shape_fail(op, "cu_seqlens", cu_seqlens, "[n_seq + 1] with n_seq >= 1");
        if (b != 1 || lq != lk)
            return lact_fail(LACT_E_ARG,
                             "%s: packed sequences (cu_seqlens) need B = 1 and Lq = Lk; q has "
                             "B = %lld, Lq = %lld, Lk = %lld",
                             op, (long long)b, (long long)lq, (long long)lk);
    }
    return LACT_OK;
}

/* Copies a small I32 tensor to the host (it may live on the GPU). */
static lact_status host_ints(const char *op, const char *name, const lact_tensor *t,
                             int32_t **out) {
    size_t n = lact_tensor_nbytes(t);
    *out = malloc(n ? n : 1);
    if (!*out) return lact_fail(LACT_E_NOMEM, "%s: out of memory reading %s", op, name);
    lact_status s = lact_mem_copy(*out, LACT_CPU, t->data, t->device, n);
    if (s != LACT_OK) {
        free(*out);
        *out = NULL;
    }
    return s;
}

static lact_status check_cu_values(const char *op, const lact_tensor *cu, int64_t total) {
    int32_t *c;
    LACT_TRY(host_ints(op, "cu_seqlens", cu, &c));
    int64_t n = cu->shape[0];
    lact_status s = LACT_OK;
    if (c[0] != 0) s = lact_fail(LACT_E_ARG, "%s: cu_seqlens[0] = %d, expected 0", op, c[0]);
    for (int64_t i = 1; s == LACT_OK && i < n; i++)
        if (c[i] < c[i - 1])
            s = lact_fail(LACT_E_ARG,
                          "%s: cu_seqlens decreases at %lld (%d after %d); it must be "
                          "non-decreasing",
                          op, (long long)i, c[i], c[i - 1]);
    if (s == LACT_OK && c[n - 1] != total)
        s = lact_fail(LACT_E_ARG, "%s: cu_seqlens ends at %d, expected %lld (the tokens of q)", op,
                      c[n - 1], (long long)total);
    free(c);
    return s;
}

/* An activation tensor on the context's device with q's dtype. */
static lact_status check_act(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *t,
                             const lact_tensor *q) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, lact_kcheck_act_dtypes(ctx)));
    return lact_kcheck_same_dtype(op, name, t, "q", q);
}

/* Everything both passes check: context, inputs, options, packed lengths. */
static lact_status check_inputs(lact_ctx *ctx, const char *op, const lact_tensor *q,
                                const lact_tensor *k, const lact_tensor *v, const lact_tensor *g,
                                const lact_tensor *cu, const lact_attn_args *args) {
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "q", q, lact_kcheck_act_dtypes(ctx)));
    LACT_TRY(check_act(ctx, op, "k", k, q));
    LACT_TRY(check_act(ctx, op, "v", v, q));
    if (g) LACT_TRY(check_act(ctx, op, "g", g, q));
    LACT_TRY(lact_kcheck_optional(ctx, op, "cu_seqlens", cu, I32_ONLY));
    LACT_TRY(lact_attention_check_shapes(op, q, k, v, g, cu, args));
    if (cu) LACT_TRY(check_cu_values(op, cu, q->shape[2]));
    return LACT_OK;
}

static lact_status check_lse(lact_ctx *ctx, const char *op, const lact_tensor *lse,
                             const lact_tensor *q) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, "lse", lse, F32_ONLY));
    return lact_kcheck_numel(op, "lse", lse, q->shape[0] * q->shape[1] * q->shape[2],
                             "[B, H, Lq]: one per query row");
}

static lact_status check_like(lact_ctx *ctx, const char *op, const char *name, const lact_tensor *t,
                              const char *ref_name, const lact_tensor *ref, const lact_tensor *q) {
    LACT_TRY(check_act(ctx, op, name, t, q));
    return lact_kcheck_same_shape(op, name, t, ref_name, ref);
}

static lact_status no_cuda(const char *op) {
    return lact_fail(LACT_E_UNSUPPORTED, "%s: no CUDA implementation yet", op);
}

lact_status lact_attention_forward(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                   const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                                   const lact_tensor *g, const lact_tensor *cu_seqlens,
                                   const lact_attn_args *args) {
    const char *op = "attention";
    LACT_TRY(check_inputs(ctx, op, q, k, v, g, cu_seqlens, args));
    LACT_TRY(check_like(ctx, op, "y", y, "q", q, q));
    if (lse) LACT_TRY(check_lse(ctx, op, lse, q));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA)
        return lact_cuda_attention_forward(ctx, y, lse, q, k, v, g, cu_seqlens, args);
#endif
    if (ctx->device != LACT_CPU) return no_cuda(op);
    return lact_cpu_attention_forward(ctx, y, lse, q, k, v, g, cu_seqlens, args);
}

lact_status lact_attention_backward(lact_ctx *ctx, lact_tensor *d_q, lact_tensor *d_k,
                                    lact_tensor *d_v, lact_tensor *d_g, const lact_tensor *d_y,
                                    const lact_tensor *q, const lact_tensor *k,
                                    const lact_tensor *v, const lact_tensor *g,
                                    const lact_tensor *cu_seqlens, const lact_tensor *y,
                                    const lact_tensor *lse, const lact_attn_args *args) {
    const char *op = "attention backward";
    LACT_TRY(check_inputs(ctx, op, q, k, v, g, cu_seqlens, args));
    LACT_TRY(check_like(ctx, op, "d_y", d_y, "q", q, q));
    LACT_TRY(check_like(ctx, op, "y", y, "q", q, q));
    LACT_TRY(check_lse(ctx, op, lse, q));
    if (d_q) LACT_TRY(check_like(ctx, op, "d_q", d_q, "q", q, q));
    if (d_k) LACT_TRY(check_like(ctx, op, "d_k", d_k, "k", k, q));
    if (d_v) LACT_TRY(check_like(ctx, op, "d_v", d_v, "v", v, q));
    if (d_g && !g) return lact_fail(LACT_E_ARG, "%s: d_g is given but g is NULL", op);
    if (d_g) LACT_TRY(check_like(ctx, op, "d_g", d_g, "g", g, q));
    if (!d_q && !d_k && !d_v && !d_g) return LACT_OK;
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA)
        return lact_cuda_attention_backward(ctx, d_q, d_k, d_v, d_g, d_y, q, k, v, g, cu_seqlens, y,
                                            lse, args);
#endif
    if (ctx->device != LACT_CPU) return no_cuda(op);
    return lact_cpu_attention_backward(ctx, d_q, d_k, d_v, d_g, d_y, q, k, v, g, cu_seqlens, y, lse,
                                       args);
}

/* Every lens[b] is >= 1 and its visible keys fit the cache (see the
 * header's layout). */
static lact_status check_lens(const char *op, const lact_tensor *lens, int64_t slots,
                              const lact_attn_args *args) {
    int32_t *n;
    LACT_TRY(host_ints(op, "lens", lens, &n));
    lact_status s = LACT_OK;
    for (int64_t b = 0; s == LACT_OK && b < lens->shape[0]; b++) {
        int64_t need = n[b];
        if (args->mask == LACT_ATTN_WINDOW && args->window < need) need = args->window;
        if (n[b] < 1)
            s = lact_fail(LACT_E_ARG, "%s: lens[%lld] = %d; each sequence needs >= 1 token", op,
                          (long long)b, n[b]);
        else if (need > slots)
            s = lact_fail(LACT_E_ARG,
                          "%s: sequence %lld sees %lld cached tokens but the cache has %lld "
                          "slots",
                          op, (long long)b, (long long)need, (long long)slots);
    }
    free(n);
    return s;
}

lact_status lact_attention_decode(lact_ctx *ctx, lact_tensor *y, lact_tensor *lse,
                                  const lact_tensor *q, const lact_tensor *k_cache,
                                  const lact_tensor *v_cache, const lact_tensor *g,
                                  const lact_tensor *lens, const lact_attn_args *args) {
    const char *op = "attention decode";
    LACT_TRY(check_inputs(ctx, op, q, k_cache, v_cache, g, NULL, args));
    if (q->shape[2] != 1) return shape_fail(op, "q", q, "[B, H, 1, d] (one query per sequence)");
    LACT_TRY(check_like(ctx, op, "y", y, "q", q, q));
    if (lse) LACT_TRY(check_lse(ctx, op, lse, q));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "lens", lens, I32_ONLY));
    LACT_TRY(lact_kcheck_vector(op, "lens", lens, q->shape[0], "one per sequence: B of q"));
    LACT_TRY(check_lens(op, lens, k_cache->shape[2], args));
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        /* The key range of each sequence's query, from lens on the host. */
        int64_t nb = q->shape[0];
        int32_t *n = NULL, *ranges = malloc((size_t)(2 * nb) * sizeof *ranges);
        lact_status s = ranges ? host_ints(op, "lens", lens, &n)
                               : lact_fail(LACT_E_NOMEM, "%s: out of host memory", op);
        for (int64_t b = 0; s == LACT_OK && b < nb; b++) {
            int64_t lo, hi;
            lact_attention_key_range(args, n[b] - 1, n[b], &lo, &hi);
            ranges[2 * b] = (int32_t)lo, ranges[2 * b + 1] = (int32_t)hi;
        }
        if (s == LACT_OK)
            s = lact_cuda_attention_decode(ctx, y, lse, q, k_cache, v_cache, g, ranges,
                                           lact_attention_scale(args, q->shape[3]));
        free(n);
        free(ranges);
        return s;
    }
#endif
    if (ctx->device != LACT_CPU) return no_cuda(op);
    return lact_cpu_attention_decode(ctx, y, lse, q, k_cache, v_cache, g, lens, args);
}
