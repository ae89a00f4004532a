/* One thread-count setting for the whole process. OpenBLAS (OpenMP build) and our OpenMP
 * loops share the same pool, so they never oversubscribe the cores. */
#ifndef TPSC_AUTOGRAD_THREADS_H
#define TPSC_AUTOGRAD_THREADS_H

/* n <= 0: use all cores. */
void ag_set_threads(int n);
int ag_get_threads(void);
/* OpenBLAS' kernel family in use ("Haswell", "SkylakeX", ...) and its build ("OpenMP"...). */
const char *ag_blas_corename(void);
const char *ag_blas_config(void);

#endif
