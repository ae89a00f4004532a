/* libtpsinfer's opt-in BF16 linears (TPS_PRECISION_BF16), through oneDNN's matmul primitive
 * (bf16 x bf16 -> f32 with avx512_core_bf16 kernels). Built when CMake finds libdnnl
 * (TPSC_WITH_ONEDNN); without it every function here reports TPS_ERR_UNSUPPORTED and
 * ti_bf16_linear is never reached (no weight is packed).
 *
 * What runs in BF16: every linear whose weight was packed (patch embedding, qkv, proj, fc1,
 * fc2, head, the score predictors' layers when oneDNN has a bf16 kernel for their shape):
 * the input rows are rounded to bf16 (nearest even), the weight was rounded once at load,
 * products accumulate in f32, bias and residual are added in f32. Attention products,
 * LayerNorm, GELU, softmax and the pruning stages stay FP32.
 *
 * Letters: M rows, K = Cin, N = Cout (oneDNN's matmul names). */
#ifndef TPS_INFER_BF16_H
#define TPS_INFER_BF16_H

#include <stdbool.h>
#include <stddef.h>

#include "src/infer/internal.h"

/* A model's BF16 state: the packed weights and the matmul primitives made for them. */
typedef struct ti_bf16 ti_bf16;

/* TPS_OK when this build has oneDNN and the CPU (as oneDNN sees it, DNNL_MAX_CPU_ISA
 * included) has AVX512-BF16; else TPS_ERR_UNSUPPORTED with a message saying which. */
tps_status ti_bf16_available(void);
tps_status ti_bf16_create(ti_bf16 **out);
/* Rounds w->f [N,K] to bf16 in the matmul's preferred layout and sets w->packed. A shape
 * oneDNN has no bf16 kernel for is left FP32 (w->packed stays NULL, TPS_OK). */
tps_status ti_bf16_pack(ti_bf16 *be, ti_weight *w, size_t N, size_t K);
/* Weights packed by ti_bf16_pack (for reports and tests). */
size_t ti_bf16_packed_count(const ti_bf16 *be);
void ti_bf16_free(ti_bf16 *be); /* NULL is fine */

/* y [M,N] (row stride ldy) = x [M,K] (row stride ldx) w^T + b, plus y's old value when
 * residual. Returns false when it could not run (a new shape's primitive or its buffers
 * could not be made): the caller then runs the FP32 product. After the first call of each
 * (M, N, K, ldy, residual) on a thread it allocates nothing. */
bool ti_bf16_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b, size_t N,
                    float *y, size_t ldy, bool residual);

/* f32 -> bf16 bits, round to nearest even (NaN stays NaN), as the CPU's VCVTNEPS2BF16 does
 * for normal numbers. Exposed for the tests. */
void ti_bf16_round(const float *x, size_t n, uint16_t *out);

#endif
