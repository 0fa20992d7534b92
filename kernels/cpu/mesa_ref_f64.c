/* The mesa reference in double: the same body as mesa_ref_f32.c, for
 * finite-difference gradient checks and comparisons with an exact solve. */
#include "kernels/cpu/mesa_ref.h"

#define MESA_REAL double
#define MESA_GEMM cblas_dgemm
#define MESA_SFX f64
#include "kernels/cpu/mesa_ref_chunk.inc.h"
#include "kernels/cpu/mesa_ref_driver.inc.h"
#include "kernels/cpu/mesa_ref_decode.inc.h"
