/* The mesa reference in float: what lact_mesa_* run on the CPU. */
#include "kernels/cpu/mesa_ref.h"

#define MESA_REAL float
#define MESA_GEMM cblas_sgemm
#define MESA_SFX f32
#include "kernels/cpu/mesa_ref_chunk.inc.h"
#include "kernels/cpu/mesa_ref_driver.inc.h"
#include "kernels/cpu/mesa_ref_decode.inc.h"
