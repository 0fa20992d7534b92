/* The ttt reference in float: what lact_ttt_forward/backward run on the CPU. */
#include "kernels/cpu/ttt_ref.h"

#define TTT_REAL float
#define TTT_GEMM cblas_sgemm
#define TTT_SFX f32
#include "kernels/cpu/ttt_ref_tile.inc.h"
#include "kernels/cpu/ttt_ref_step.inc.h"
#include "kernels/cpu/ttt_ref_driver.inc.h"
#include "kernels/cpu/ttt_ref_decode.inc.h"
