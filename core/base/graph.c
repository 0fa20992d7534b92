#include "graph.h"

#if LACT_WITH_CUDA
#include <cuda_runtime_api.h>

lact_status lact_graph_begin(lact_ctx *ctx) {
    if (ctx->device != LACT_CUDA || !ctx->stream)
        return lact_fail(LACT_E_UNSUPPORTED, "graph: recording needs a CUDA context");
    /* Relaxed: work of other threads (and host-only runtime calls such as
     * function attributes) stays legal while this stream records. */
    cudaError_t e = cudaStreamBeginCapture((cudaStream_t)ctx->stream, cudaStreamCaptureModeRelaxed);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return lact_fail(LACT_E_CUDA, "graph: begin recording: %s", cudaGetErrorString(e));
    }
    return LACT_OK;
}

lact_status lact_graph_end(lact_ctx *ctx, lact_graph *g, bool ok) {
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)ctx->stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess && ok) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) (void)cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return lact_fail(LACT_E_CUDA, "graph: recording failed: %s", cudaGetErrorString(e));
    }
    if (!ok) return LACT_OK;
    lact_graph_free(g);
    g->exec = exec;
    return LACT_OK;
}

lact_status lact_graph_launch(lact_ctx *ctx, const lact_graph *g) {
    cudaError_t e = cudaGraphLaunch((cudaGraphExec_t)g->exec, (cudaStream_t)ctx->stream);
    if (e != cudaSuccess) return lact_fail(LACT_E_CUDA, "graph: launch: %s", cudaGetErrorString(e));
    return LACT_OK;
}

void lact_graph_free(lact_graph *g) {
    if (g->exec) (void)cudaGraphExecDestroy((cudaGraphExec_t)g->exec);
    g->exec = NULL;
}

#else

lact_status lact_graph_begin(lact_ctx *ctx) {
    (void)ctx;
    return lact_fail(LACT_E_UNSUPPORTED, "graph: this build has no CUDA");
}
lact_status lact_graph_end(lact_ctx *ctx, lact_graph *g, bool ok) {
    (void)ctx, (void)g, (void)ok;
    return lact_fail(LACT_E_UNSUPPORTED, "graph: this build has no CUDA");
}
lact_status lact_graph_launch(lact_ctx *ctx, const lact_graph *g) {
    (void)ctx, (void)g;
    return lact_fail(LACT_E_UNSUPPORTED, "graph: this build has no CUDA");
}
void lact_graph_free(lact_graph *g) {
    g->exec = NULL;
}

#endif
