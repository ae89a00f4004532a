#include "autograd/threads.h"

#include <cblas.h>
#include <omp.h>

void ag_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

int ag_get_threads(void) { return omp_get_max_threads(); }
const char *ag_blas_corename(void) { return openblas_get_corename(); }
const char *ag_blas_config(void) { return openblas_get_config(); }
