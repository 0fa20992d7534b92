#include "threads.h"

#include <cblas.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Some cblas.h variants do not declare it; OpenBLAS always exports it. */
void openblas_set_num_threads(int num_threads);

static int threads_now;

static int threads_max(void) {
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

void lact_threads_set(int n) {
    if (n <= 0) n = threads_max();
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
    threads_now = n;
}

int lact_threads_get(void) {
    if (threads_now > 0) return threads_now;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
