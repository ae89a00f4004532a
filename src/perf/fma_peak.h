#ifndef TPSC_PERF_FMA_PEAK_H
#define TPSC_PERF_FMA_PEAK_H
/* The CPU's FP32 FMA throughput, measured: `threads` OpenMP threads each run independent
 * fused multiply-adds on registers only (AVX-512 when the CPU has it, else AVX2 + FMA; 0 on
 * neither), best of `repeats` timings, in GFLOP/s (an FMA counts 2). What no FP32 code can
 * beat; benchmarks quote their fraction of it next to the sgemm-relative figure. */
double tpsc_fma_peak_gflops(int threads, int repeats);
/* "avx512" or "avx2", the width tpsc_fma_peak_gflops measures; "none" without FMA. */
const char *tpsc_fma_peak_isa(void);
#endif
