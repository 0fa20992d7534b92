/* lact_ttt_decode_*: argument checks around the CPU decode state
 * (kernels/cpu/ttt_ref_decode.inc.h) or the CUDA one
 * (kernels/cuda/ttt_decode_cuda.h). */
#include "kernels/ttt_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/ttt_ref.h"
#include "kernels/kcheck.h"
#if LACT_WITH_CUDA
#include "kernels/cuda/ttt_decode_cuda.h"
#endif

#define F32_ONLY LACT_DT(LACT_F32)

/* t is F32 on the CPU with exactly the shape want[0..ndim). */
static lact_status check_dims(const lact_ctx *ctx, const char *op, const char *name,
                              const lact_tensor *t, int ndim, const int64_t *want) {
    LACT_TRY(lact_kcheck_tensor(ctx, op, name, t, F32_ONLY));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == want[i];
    if (ok) return LACT_OK;
    char got[96], exp[96];
    int at = 0;
    at += snprintf(exp + at, sizeof exp - (size_t)at, "[");
    for (int i = 0; i < ndim && at < (int)sizeof exp; i++)
        at += snprintf(exp + at, sizeof exp - (size_t)at, "%s%lld", i ? ", " : "",
                       (long long)want[i]);
    if (at < (int)sizeof exp) snprintf(exp + at, sizeof exp - (size_t)at, "]");
    return lact_fail(LACT_E_ARG, "%s: %s has shape %s, expected %s", op, name,
                     lact_kcheck_shape_str(t, got, sizeof got), exp);
}

lact_status lact_ttt_decode_init(lact_ctx *ctx, lact_ttt_decode *s, const lact_tensor *w0,
                                 const lact_tensor *w1, const lact_tensor *w2, int64_t chunk,
                                 bool momentum, lact_ttt_muon muon) {
    const char *op = "ttt decode";
    memset(s, 0, sizeof *s);
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    LACT_TRY(lact_kcheck_tensor(ctx, op, "w0", w0, F32_ONLY));
    if (w0->ndim != 3 || w0->shape[0] < 1 || w0->shape[1] < 1 || w0->shape[2] < 1) {
        char buf[96];
        return lact_fail(LACT_E_ARG, "%s: w0 has shape %s, expected [N, dh, d]", op,
                         lact_kcheck_shape_str(w0, buf, sizeof buf));
    }
    int64_t N = w0->shape[0], dh = w0->shape[1], d = w0->shape[2];
    LACT_TRY(check_dims(ctx, op, "w1", w1, 3, (int64_t[]){N, d, dh}));
    LACT_TRY(check_dims(ctx, op, "w2", w2, 3, (int64_t[]){N, dh, d}));
    if (chunk < 1)
        return lact_fail(LACT_E_ARG, "%s: chunk %lld must be positive", op, (long long)chunk);
    if (muon != LACT_TTT_MUON_OFF && muon != LACT_TTT_MUON_TABLE && muon != LACT_TTT_MUON_FIXED)
        return lact_fail(LACT_E_ARG, "%s: muon = %d is not off (0), table (1) or fixed (2)", op,
                         (int)muon);
#if LACT_WITH_CUDA
    if (ctx->device == LACT_CUDA) {
        lact_ttt_dec_cuda *cu = malloc(sizeof *cu);
        if (!cu) return lact_fail(LACT_E_NOMEM, "%s: cannot allocate the state", op);
        lact_status st = lact_cuda_ttt_decode_init(ctx, cu, w0->data, w1->data, w2->data, N, d, dh,
                                                   chunk, momentum, muon);
        if (st != LACT_OK) {
            free(cu);
            return st;
        }
        *s = (lact_ttt_decode){N, d, dh, chunk, momentum, muon, 0, 0, NULL, cu};
        return LACT_OK;
    }
#endif
    lact_ttt_dec_f32 *cpu = malloc(sizeof *cpu);
    if (!cpu) return lact_fail(LACT_E_NOMEM, "%s: cannot allocate the state", op);
    lact_status st = lact_cpu_ttt_decode_init_f32(cpu, w0->data, w1->data, w2->data, N, d, dh,
                                                  chunk, momentum, muon);
    if (st != LACT_OK) {
        free(cpu);
        return st;
    }
    *s = (lact_ttt_decode){N, d, dh, chunk, momentum, muon, 0, 0, cpu, NULL};
    return LACT_OK;
}

void lact_ttt_decode_free(lact_ttt_decode *s) {
    if (!s) return;
    if (s->cpu) lact_cpu_ttt_decode_free_f32(s->cpu);
    free(s->cpu);
#if LACT_WITH_CUDA
    if (s->cuda) lact_cuda_ttt_decode_free(s->cuda);
#endif
    free(s->cuda);
    memset(s, 0, sizeof *s);
}

/* T tokens; step: the [N, d] / [N] shapes of one token. */
static lact_status feed(lact_ctx *ctx, lact_ttt_decode *s, lact_tensor *o, const lact_tensor *q,
                        const lact_tensor *k, const lact_tensor *v, const lact_tensor *lr0,
                        const lact_tensor *lr1, const lact_tensor *lr2, const lact_tensor *momentum,
                        bool step) {
    const char *op = step ? "ttt decode step" : "ttt decode prefill";
    if (!s || (!s->cpu && !s->cuda))
        return lact_fail(LACT_E_ARG, "%s: the state is not initialised", op);
    LACT_TRY(lact_kcheck_ctx(ctx, op));
    if ((ctx->device == LACT_CUDA) != (s->cuda != NULL))
        return lact_fail(LACT_E_ARG, "%s: the state lives on %s, the context on %s", op,
                         s->cuda ? "cuda" : "cpu", lact_device_name(ctx->device));
    int64_t N = s->n, d = s->d, T = 1;
    if (!step) {
        LACT_TRY(lact_kcheck_tensor(ctx, op, "q", q, F32_ONLY));
        if (q->ndim != 3 || q->shape[1] < 1) {
            char buf[96];
            return lact_fail(LACT_E_ARG, "%s: q has shape %s, expected [%lld, T, %lld]", op,
                             lact_kcheck_shape_str(q, buf, sizeof buf), (long long)N, (long long)d);
        }
        T = q->shape[1];
    }
    int nd = step ? 2 : 3, nr = step ? 1 : 2;
    int64_t act[3] = {N, step ? d : T, d}, row[2] = {N, T};
    LACT_TRY(check_dims(ctx, op, "q", q, nd, act));
    LACT_TRY(check_dims(ctx, op, "k", k, nd, act));
    LACT_TRY(check_dims(ctx, op, "v", v, nd, act));
    LACT_TRY(check_dims(ctx, op, "o", o, nd, act));
    LACT_TRY(check_dims(ctx, op, "lr0", lr0, nr, row));
    LACT_TRY(check_dims(ctx, op, "lr1", lr1, nr, row));
    LACT_TRY(check_dims(ctx, op, "lr2", lr2, nr, row));
    bool has_mom = momentum && momentum->data;
    if (has_mom != s->momentum)
        return lact_fail(LACT_E_ARG, "%s: the state was made %s momentum, the tokens come %s", op,
                         s->momentum ? "with" : "without", has_mom ? "with" : "without");
    if (has_mom) LACT_TRY(check_dims(ctx, op, "momentum", momentum, nr, row));
#if LACT_WITH_CUDA
    if (s->cuda) {
        LACT_TRY(lact_cuda_ttt_decode_feed(ctx, s->cuda, o->data, q->data, k->data, v->data,
                                           lr0->data, lr1->data, lr2->data,
                                           has_mom ? momentum->data : NULL, T));
        s->pos += T;
        s->fill = s->cuda->fill;
        return LACT_OK;
    }
#endif
    lact_ttt_in_f32 in = {
        q->data, k->data, v->data, lr0->data, lr1->data, lr2->data, has_mom ? momentum->data : NULL,
        NULL,    NULL,    NULL};
    LACT_TRY(lact_cpu_ttt_decode_feed_f32(s->cpu, o->data, &in, T));
    s->pos = s->cpu->pos;
    s->fill = s->cpu->fill;
    return LACT_OK;
}

lact_status lact_ttt_decode_prefill(lact_ctx *ctx, lact_ttt_decode *s, lact_tensor *o,
                                    const lact_tensor *q, const lact_tensor *k,
                                    const lact_tensor *v, const lact_tensor *lr0,
                                    const lact_tensor *lr1, const lact_tensor *lr2,
                                    const lact_tensor *momentum) {
    return feed(ctx, s, o, q, k, v, lr0, lr1, lr2, momentum, false);
}

lact_status lact_ttt_decode_step(lact_ctx *ctx, lact_ttt_decode *s, lact_tensor *o,
                                 const lact_tensor *q, const lact_tensor *k, const lact_tensor *v,
                                 const lact_tensor *lr0, const lact_tensor *lr1,
                                 const lact_tensor *lr2, const lact_tensor *momentum) {
    return feed(ctx, s, o, q, k, v, lr0, lr1, lr2, momentum, true);
}

lact_status lact_ttt_decode_weights(const lact_ttt_decode *s, lact_tensor *w0, lact_tensor *w1,
                                    lact_tensor *w2) {
    const char *op = "ttt decode weights";
    if (!s || (!s->cpu && !s->cuda))
        return lact_fail(LACT_E_ARG, "%s: the state is not initialised", op);
    int64_t nel = s->n * s->d * s->dh;
    lact_device dev = s->cuda ? LACT_CUDA : LACT_CPU;
    lact_tensor *out[3] = {w0, w1, w2};
    const char *names[3] = {"w0", "w1", "w2"};
    for (int i = 0; i < 3; i++)
        if (out[i] && (out[i]->dtype != LACT_F32 || out[i]->device != dev ||
                       lact_tensor_numel(out[i]) != nel || !out[i]->data))
            return lact_fail(LACT_E_ARG, "%s: %s must be an F32 tensor of %lld elements on %s", op,
                             names[i], (long long)nel, lact_device_name(dev));
#if LACT_WITH_CUDA
    if (s->cuda)
        return lact_cuda_ttt_decode_weights(s->cuda, w0 ? w0->data : NULL, w1 ? w1->data : NULL,
                                            w2 ? w2->data : NULL);
#endif
    lact_cpu_ttt_decode_weights_f32(s->cpu, w0 ? w0->data : NULL, w1 ? w1->data : NULL,
                                    w2 ? w2->data : NULL);
    return LACT_OK;
}
