/* libtpsinfer's GEMM back-ends of the linear layers (patch embedding, qkv, proj, fc1, fc2, head,
 * the score predictors' layers).
 *
 * FP32 has two: OpenBLAS (cblas_sgemm, which packs its weight operand on every call) and
 * oneDNN's matmul primitive on weights reordered once, when the model is opened, into the
 * blocked layout its kernel reads, with bias, residual (sum post-op) and GELU (eltwise post-op)
 * fused into the product. BF16 (TPS_PRECISION_BF16) always runs through oneDNN: each input row
 * is rounded to bf16 (nearest even), the weight was rounded once at load, products accumulate
 * in f32, bias and residual are added in f32. The attention products, LayerNorm, softmax and
 * the pruning stages do not go through here.
 *
 * Built with oneDNN when CMake finds libdnnl (TPSC_WITH_ONEDNN); without it the oneDNN
 * functions report TPS_ERR_UNSUPPORTED, no weight is packed and every linear runs on OpenBLAS.
 *
 * Letters: M rows, K = Cin, N = Cout (oneDNN's matmul names). */
#ifndef TPS_INFER_GEMM_H
#define TPS_INFER_GEMM_H

#include <stdbool.h>
#include <stddef.h>

#include "src/infer/internal.h"

/* The element type of a packed weight and of the rows that meet it. */
typedef enum ti_dtype { TI_DT_F32 = 0, TI_DT_BF16 = 1 } ti_dtype;

/* A model's oneDNN state: its packed weights and the matmul primitives made for them. */
typedef struct ti_onednn ti_onednn;

/* TPS_OK when this build has oneDNN and the CPU (as oneDNN sees it, ONEDNN_MAX_CPU_ISA
 * included) can run dt: f32 anywhere oneDNN runs, bf16 with AVX512-BF16; else
 * TPS_ERR_UNSUPPORTED with a message saying which. */
tps_status ti_onednn_available(ti_dtype dt);
/* True when oneDNN runs an f32 DeiT linear with its brgemm kernel on pre-packed weights
 * (AVX-512). Without it (an AVX2-only CPU, or the ISA capped) oneDNN's f32 matmul is its
 * gemm:jit, which packs on every call like OpenBLAS and measured level with it or slower:
 * TPS_GEMM_AUTO then takes OpenBLAS (docs/inference.md, "FP32 GEMM back-ends"). */
bool ti_onednn_f32_prepacked(void);
tps_status ti_onednn_create(ti_dtype dt, ti_onednn **out);
/* Reorders w->f [N,K] (rounded to bf16 for TI_DT_BF16) into the matmul's preferred layout
 * and sets w->packed. A shape oneDNN has only its reference kernel for is left to OpenBLAS
 * (w->packed stays NULL, TPS_OK). */
tps_status ti_onednn_pack(ti_onednn *be, ti_weight *w, size_t N, size_t K);
/* After ti_onednn_pack of an FP32 weight: sets w->panels and w->panel_k when the packed layout
 * is the one gemm_panel.c reads (BA16a64b: 64-column panels) and N is a whole number of
 * panels, else leaves them NULL (that weight's linears stay on oneDNN). */
void ti_onednn_panels(ti_weight *w);
/* Weights packed by ti_onednn_pack (for reports and tests). */
size_t ti_onednn_packed_count(const ti_onednn *be);
void ti_onednn_free(ti_onednn *be); /* NULL is fine */

/* y [M,N] (row stride ldy) = epilogue(x [M,K] (row stride ldx) w^T + b): LIN_RESIDUAL adds
 * y's old value, LIN_GELU applies GELU (oneDNN's gelu_erf). Returns false when it could not
 * run (a new shape's primitive or its buffers could not be made, or an FP32 output with row
 * stride ldy != N): the caller then runs OpenBLAS. After the first call of each (M, N, K,
 * strides, epilogue) on a thread it allocates nothing. */
bool ti_onednn_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b, size_t N,
                      float *y, size_t ldy, lin_epilogue epi);

/* The panel back-end (TPS_GEMM_PANEL, gemm_panel.c): libtpsinfer's own AVX-512 kernel on
 * weights oneDNN packed at load, shared by a team by output columns; it may run where
 * ti_avx512_allowed() (internal.h). */
#define PANEL_COLS 64
/* y [M, columns of panels p0 .. p1-1] (row stride ldy) = epi(x [M,K] (row stride ldx) w^T + b)
 * for every row, w->panels set; columns past N (a last partial panel) are not written. Single
 * thread; allocates nothing. */
void ti_panel_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b, size_t N,
                     size_t p0, size_t p1, float *y, size_t ldy, lin_epilogue epi);

/* f32 -> bf16 bits, round to nearest even (NaN stays NaN), as the CPU's VCVTNEPS2BF16 does
 * for normal numbers. Exposed for the tests. */
void ti_bf16_round(const float *x, size_t n, uint16_t *out);

#endif
