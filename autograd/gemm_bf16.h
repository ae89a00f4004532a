/* The BF16 GEMM kernel behind ag_gemm (gemm.h): oneDNN's matmul primitive, bf16 x bf16 with
 * FP32 accumulation into an FP32 output. Built when CMake finds libdnnl (TPSC_WITH_ONEDNN);
 * without it ag_bf16_kernel_available says so and nothing else is reached.
 *
 * Primitives are made once per shape (M, N, K, transposes, strides, alpha, beta, and the
 * threading context: inside an OpenMP parallel region oneDNN runs on the calling thread
 * alone, outside it on omp_get_max_threads() threads) and kept for the process: a training
 * run repeats a handful of shapes every step. oneDNN's brgemm kernels take the plain
 * row-major layouts directly, so no operand is reordered: a bf16 copy is the whole cost. */
#ifndef TPSC_AUTOGRAD_GEMM_BF16_H
#define TPSC_AUTOGRAD_GEMM_BF16_H

#include <stdbool.h>
#include <stdint.h>

#include "src/util/status.h"

tpsc_status ag_bf16_kernel_available(void);
/* Whether oneDNN's BF16 kernels may run on AMX tiles here: its effective ISA (the CPU's,
 * capped by ONEDNN_MAX_CPU_ISA) includes AMX. The process has one oneDNN, so this holds for
 * libtpsinfer's BF16 linears too. false without oneDNN. */
bool ag_bf16_kernel_uses_amx(void);

/* y [M,N] (row stride ldy) = alpha op(a) op(b) + beta y on bf16 a and b (stored row strides
 * lda, ldb). Returns false with a tpsc error message (on the calling thread) when oneDNN could
 * not make or run the primitive. */
bool ag_bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                  const uint16_t *b, int ldb, float beta, float *y, int ldy);
/* The same, then + bias [N] on every row (bias may be NULL) and + r [M,N] (floats, row stride
 * ldr; r may be NULL), inside the kernel: y = alpha op(a) op(b) + bias + beta y + r. */
bool ag_bf16_gemm_ex(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                     const uint16_t *b, int ldb, float beta, float *y, int ldy, const float *bias, const float *r,
                     int ldr);
/* A linear's product kept in bf16: y [M,N] = bf16(a [M,K] b^T + bias [N]), b [N,K], all rows
 * contiguous, bias may be NULL. The sum is FP32, rounded to nearest even as it is stored, so y
 * holds what rounding ag_bf16_gemm_ex's FP32 output would give, at half the bytes written. */
bool ag_bf16_linear_to_bf16(int M, int N, int K, const uint16_t *a, const uint16_t *b, const float *bias,
                            uint16_t *y);

#endif
