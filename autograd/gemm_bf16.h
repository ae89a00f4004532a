/* The BF16 GEMM kernel behind ag_gemm (gemm.h): oneDNN's matmul primitive, bf16 x bf16 with
 * FP32 accumulation into an FP32 output (or a bf16 one, for a linear's output kept as bf16). Built when CMake finds libdnnl (TPSC_WITH_ONEDNN);
 * without it ag_bf16_kernel_available says so and nothing else is reached.
 *
 * Primitives are made once per shape (M, N, K, transposes, strides, alpha, beta, and the
 * threading context: inside an OpenMP parallel region oneDNN runs on the calling thread
 * alone, outside it on omp_get_max_threads() threads) and kept for the process: a training
 * run repeats a handful of shapes every step. oneDNN's brgemm kernels take the plain
 * row-major layouts directly; only a linear's weight is worth reordering into the kernel's
 * own layout (ag_bf16_linear), once per step, as the kernel would otherwise copy it for
 * every block of rows. */
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
/* y [M,N] (row stride ldy) = bf16(op(a) op(b)): the FP32 sum rounded to nearest even as it
 * is stored, for a product whose only use is as a bf16 operand. */
bool ag_bf16_gemm_to_bf16(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, uint16_t *y, int ldy);
/* A linear's weight in the layout oneDNN's kernel reads it in (blocked for AMX), made from the
 * row-major bf16 weight by a reorder; owned by the caller, freed with ag_bf16_packed_free. */
typedef struct ag_bf16_packed ag_bf16_packed;
void ag_bf16_packed_free(ag_bf16_packed *pk);
/* A linear's forward: y [M,N] = a [M,K] b^T + bias [N] + r [M,N] (b [N,K]; all rows contiguous;
 * bias and r may be NULL), y floats, or bf16 when y_bf16 (the FP32 sum rounded to nearest even
 * as it is stored: what rounding the float output would give, at half the bytes written).
 * pk NULL: b is read row-major. Otherwise b is read from *pk, packed from b first when *pk is
 * NULL (made here), when `stale` (b's values changed since), or when this product's kernel
 * reads another layout: a kernel that reads its own layout skips the copy it otherwise makes
 * of b for every block of rows (a parameter is packed once per step, at its first product). */
bool ag_bf16_linear(int M, int N, int K, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk, bool stale,
                    const float *bias, const float *r, void *y, bool y_bf16);
/* y [M,N] = alpha a [M,K] b [K,N] + beta y (all rows contiguous; y floats, or bf16 when y_bf16
 * with beta 0), b read from *pk as ag_bf16_linear reads it (packed from the row-major b): a
 * linear's input-gradient product dy w, whose weight is the same every step's call. */
bool ag_bf16_gemm_packed(int M, int N, int K, float alpha, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk,
                         bool stale, float beta, void *y, bool y_bf16);

#endif
