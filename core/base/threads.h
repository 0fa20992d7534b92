/* CPU parallelism: OpenMP when the compiler has it, serial otherwise. */
#ifndef LACT_THREADS_H
#define LACT_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the number of CPU threads (0 = all cores) for OpenMP and OpenBLAS. */
void lact_threads_set(int n);
int lact_threads_get(void);

#ifdef __cplusplus
}
#endif
#endif
