#include <cblas.h>
#include <stdlib.h>

#include "src/perf/sgemm_peak.h"
#include "src/train/progress.h"

double tpsc_sgemm_peak_gflops(int n, int repeats) {
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b), *c = malloc((size_t)n * n * sizeof *c);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = 1e-3f * (float)(i % 1000);
    double best = 1e30;
    for (int r = 0; r < repeats + 1; r++) {
        double t0 = tpsc_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = tpsc_now() - t0;
        if (r > 0 && t < best) best = t; /* the first call warms caches and threads */
    }
    free(a), free(b), free(c);
    return 2.0 * (double)n * n * n / best * 1e-9;
}
