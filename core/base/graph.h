/* Recording the work a context queues, once, and replaying it with one
 * launch (a CUDA graph): for a training micro-step whose shapes and buffer
 * addresses repeat, the replay saves the per-kernel launch gaps. On the
 * CPU, and in a build without CUDA, recording is refused (LACT_E_UNSUPPORTED)
 * and callers run the work directly. */
#ifndef LACT_GRAPH_H
#define LACT_GRAPH_H

#include <stdbool.h>

#include "context.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_graph {
    void *exec; /* cudaGraphExec_t; NULL: nothing recorded */
} lact_graph;

/* Starts recording the context's stream: the work queued until
 * lact_graph_end is recorded, not run. */
lact_status lact_graph_begin(lact_ctx *ctx);
/* Stops recording. ok: whether the recorded work was queued without error;
 * if so the recording becomes g (replace any earlier one), else it is
 * dropped and the stream is left usable. */
lact_status lact_graph_end(lact_ctx *ctx, lact_graph *g, bool ok);
/* Queues the recorded work once more. */
lact_status lact_graph_launch(lact_ctx *ctx, const lact_graph *g);
void lact_graph_free(lact_graph *g);

#ifdef __cplusplus
}
#endif
#endif
