#ifndef TPSC_PERF_AMX_PEAK_H
#define TPSC_PERF_AMX_PEAK_H
#include <stdbool.h>

/* The CPU's AMX-BF16 tile throughput, measured as tpsc_bf16_peak_gflops is (fma_peak.h):
 * `threads` OpenMP threads each run TDPBF16PS on tiles only (no loads in the loop; each
 * instruction is a 16x16 FP32 tile += a 16x32 by 32x16 BF16 product, 8192 multiply-adds),
 * best of `repeats`, in GFLOP/s. What no BF16 GEMM on AMX with FP32 accumulation can beat;
 * `tpsc bench --precision bf16` quotes its fraction when oneDNN runs on AMX. 0 when the CPU
 * lacks AMX-TILE or AMX-BF16 or Linux refuses the tile data permission (the instructions are
 * then never executed), or threads or repeats < 1. */
double tpsc_amx_peak_gflops(int threads, int repeats);
/* Whether the CPU has AMX-TILE and AMX-BF16 and Linux grants this process the tile data state
 * (asked for here, once per call: Linux keeps the permission for the whole process). */
bool tpsc_amx_peak_supported(void);
#endif
