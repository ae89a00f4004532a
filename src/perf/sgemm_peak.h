#ifndef TPSC_PERF_SGEMM_PEAK_H
#define TPSC_PERF_SGEMM_PEAK_H
/* Best-of-`repeats` GFLOP/s of one square n x n sgemm with the current OpenBLAS and threads:
 * the ceiling that benchmarks quote their GEMM efficiency against. */
double tpsc_sgemm_peak_gflops(int n, int repeats);
#endif
