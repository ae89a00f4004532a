#ifndef TPSC_PERF_FMA_PEAK_H
#define TPSC_PERF_FMA_PEAK_H
#include <stdbool.h>

/* The CPU's FP32 FMA throughput, measured: `threads` OpenMP threads each run independent
 * fused multiply-adds on registers only (AVX-512 when the CPU has it, else AVX2 + FMA; 0 on
 * neither), best of `repeats` timings, in GFLOP/s (an FMA counts 2). What no FP32 code can
 * beat; benchmarks quote their fraction of it next to the sgemm-relative figure. 0 also
 * when threads or repeats < 1. */
double tpsc_fma_peak_gflops(int threads, int repeats);
/* "avx512" or "avx2", the width tpsc_fma_peak_gflops measures; "none" without FMA. */
const char *tpsc_fma_peak_isa(void);
/* The CPU's AVX512-BF16 dot-product throughput, measured the same way: vdpbf16ps on registers
 * (each of 16 FP32 lanes accumulates two BF16 products: 32 multiply-adds, 64 FLOP), the same
 * 12 independent accumulators on `threads` threads, best of `repeats`, in GFLOP/s. What no
 * BF16 GEMM with FP32 accumulation can beat; `tpsc bench --precision bf16` quotes its fraction.
 * 0 when the CPU lacks AVX512-BF16 (the instruction is then never executed), or threads or
 * repeats < 1. */
double tpsc_bf16_peak_gflops(int threads, int repeats);
/* Whether the CPU has AVX512-BF16 (and AVX512F), i.e. whether tpsc_bf16_peak_gflops measures. */
bool tpsc_bf16_peak_supported(void);

/* The timing these peaks share (and the AMX peak, amx_peak.h): `loop` runs `iters` iterations
 * on registers on each of `threads` OpenMP threads at once and returns something computed, so
 * the work is kept; best of `repeats` timings of the whole region, in GFLOP/s, from macs:
 * multiply-adds per iteration on one thread (all accumulators, all lanes), 2 FLOP each. */
typedef float (*tpsc_peak_loop)(long iters);
double tpsc_peak_best_gflops(tpsc_peak_loop loop, long iters, int threads, int repeats, double macs);
#endif
