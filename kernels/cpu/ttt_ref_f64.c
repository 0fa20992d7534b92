/* The ttt reference in double: the same body as ttt_ref_f32.c, for
 * finite-difference gradient checks and precision comparisons. */
#include "kernels/cpu/ttt_ref.h"

#define TTT_REAL double
#define TTT_GEMM cblas_dgemm
#define TTT_SFX f64
#include "kernels/cpu/ttt_ref_tile.inc.h"
#include "kernels/cpu/ttt_ref_step.inc.h"
#include "kernels/cpu/ttt_ref_driver.inc.h"
#include "kernels/cpu/ttt_ref_decode.inc.h"
