/* The GEMM kernels behind the ops that multiply matrices (linear, the fused linears, matmul,
 * attention), chosen by the context's precision:
 *   AG_FP32  OpenBLAS sgemm on the FP32 operands;
 *   AG_BF16  oneDNN's matmul on bf16 copies of both operands (round to nearest even), with
 *            FP32 accumulation and an FP32 output (a bf16 one, ag_gemm_to_bf16, for a tensor
 *            or gradient kept as bf16 only), for the forward product and both backward
 *            products alike: what PyTorch's CPU autocast in bf16 does to these ops. A
 *            parameter's copy is read packed in the kernel's layout by the linears' forward
 *            and input-gradient products (ag_gemm_linear, and ag_gemm's dense b = w).
 * An op is written once: it wraps each operand (ag_operand_act for an activation or a
 * gradient, ag_operand_param for a parameter) and calls ag_gemm; the wrap costs nothing in
 * FP32 and rounds to bf16 in BF16. Parameters, gradients, the optimiser state and every other
 * op stay FP32 in both precisions.
 *
 * The bf16 copy of a parameter is made at its first use after ag_ctx_reset, so once per step,
 * after the optimiser has updated the FP32 weights, and serves the forward product and the
 * input-gradient product of that step. (A caller that changes a parameter between two uses
 * without a reset must reset: the copy would be stale.) An activation's copy lives in the
 * gradient pool only while the op runs.
 *
 * Letters: y [M,N] = alpha op(a) [M,K] op(b) [K,N] + beta y, row-major, op() = transpose or not. */
#ifndef TPSC_AUTOGRAD_GEMM_H
#define TPSC_AUTOGRAD_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ag.h"

/* TPSC_OK when this build has oneDNN and the CPU has AVX512-BF16; otherwise a message that
 * names what is missing (the CPU feature, or oneDNN at build time). */
tpsc_status ag_bf16_available(void);
/* Sets ctx's GEMM precision; AG_BF16 fails (with ag_bf16_available's message) where it cannot
 * run at full speed: never a silent fallback. */
tpsc_status ag_set_precision(ag_ctx *ctx, ag_precision p);
const char *ag_precision_name(ag_precision p); /* "fp32", "bf16" */
/* "fp32" / "bf16" -> p; TPSC_ERR_CONFIG naming the value otherwise. */
tpsc_status ag_precision_parse(const char *s, ag_precision *p);

/* One GEMM operand: its FP32 values and, in BF16, their bf16 copy in the same layout. */
typedef struct ag_operand {
    const float *f;
    const uint16_t *h;
    size_t pool_numel; /* > 0: h is pool scratch of that many floats, returned by ag_operand_done */
    size_t param;      /* > 0: h is the step's copy of a parameter (ag_operand_param), number param-1
                        * of the context's, which keeps the weight packed for the linears */
} ag_operand;

/* n values of an activation or gradient (in BF16: rounded into pool scratch). */
ag_operand ag_operand_act(ag_ctx *ctx, const float *f, size_t n);
/* An incoming gradient dy [M,N] as ag_operand_act makes it, and db [N] += its column sums
 * (a linear's bias gradient; db NULL: none). FP32 sums with sgemv (dy^T 1); BF16 sums in the
 * pass that rounds dy (per thread in double, each column added to db once), so dy is read
 * once, not twice. */
ag_operand ag_operand_grad_sums(ag_ctx *ctx, const float *dy, int M, int N, float *db);
/* BF16: an incoming gradient kept as bf16 only (t->grad_bf16) as the operand it already is, and
 * db [N] += sums [N], the column sums its writer made as it stored it (t->grad_bf16_sums; every
 * writer of a bf16 gradient that reaches a linear makes them). db NULL: none; sums NULL with a
 * db: ctx's error. */
ag_operand ag_operand_grad_bf16_sums(ag_ctx *ctx, const uint16_t *dy, const double *sums, int N, float *db);
/* n values of a parameter (in BF16: the step's cached copy, see above). */
ag_operand ag_operand_param(ag_ctx *ctx, const float *f, size_t n);
/* n values rounded into the caller's buffer `buf` (bytes from ag_operand_bytes) instead of
 * pool scratch: for products inside a parallel region, one buffer per thread. */
size_t ag_operand_bytes(const ag_ctx *ctx, size_t n); /* 0 in FP32 */
ag_operand ag_operand_into(const ag_ctx *ctx, const float *f, size_t n, uint16_t *buf);
/* BF16 only: pool scratch for n bf16 values that the caller computes and rounds itself (an op
 * whose operand exists only to be multiplied, like the GELU before fc2, writes it once, as
 * bf16, instead of as floats that are then rounded); f is NULL. In FP32, or when the pool is
 * out of memory (ctx's error is set), h is NULL. Return it with ag_operand_done. */
ag_operand ag_operand_bf16_scratch(ag_ctx *ctx, size_t n);
/* The operand starting `offset` values further (a head's columns, one product of a batch). */
ag_operand ag_operand_at(ag_operand o, size_t offset);
/* Returns an activation operand's scratch; a no-op for the others. */
void ag_operand_done(ag_ctx *ctx, ag_operand *o);

/* y [M,N] (row stride ldy) = alpha op(a) op(b) + beta y, lda/ldb the stored row strides.
 * Sets ctx's error on failure (only possible in BF16: oneDNN could not make a primitive).
 * Safe to call from inside an OpenMP parallel region with operands made outside it. */
void ag_gemm(ag_ctx *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha, ag_operand a, int lda,
             ag_operand b, int ldb, float beta, float *y, int ldy);

/* The linears' forward: y [M,N] = r [M,N] + x [M,K] w^T + bias [N], w [N,K] (bias and r may
 * be NULL; all rows contiguous). FP32 writes r + bias into y and lets sgemm accumulate onto it;
 * BF16 hands bias and r to the kernel, which adds them as it stores y, so y is written once and
 * never read back. */
void ag_gemm_linear(ag_ctx *ctx, int M, int N, int K, ag_operand x, ag_operand w, const float *bias, const float *r,
                    float *y);
/* BF16 only: the same with the output kept in bf16, y [M,N] = bf16(x w^T + bias), for a tensor
 * that feeds nothing but BF16 products (ag_new_bf16); the values rounding ag_gemm_linear's
 * output would give. */
void ag_gemm_linear_to_bf16(ag_ctx *ctx, int M, int N, int K, ag_operand x, ag_operand w, const float *bias,
                            uint16_t *y);
/* BF16 only: y [M,N] (row stride ldy) = bf16(op(a) op(b)), for a product used only as a bf16
 * operand (or rounded at once anyway): half the bytes written. */
void ag_gemm_to_bf16(ag_ctx *ctx, bool trans_a, bool trans_b, int M, int N, int K, ag_operand a, int lda,
                     ag_operand b, int ldb, uint16_t *y, int ldy);

/* y [M,N] = (a [M,K] b [K,N]) * m [M,N] element by element, all rows contiguous, m not y: a
 * backward product scaled by a local derivative (fc2's dx by GELU's). The product goes into y,
 * then one pass multiplies; each element is the float product of the GEMM's value and m's. (In
 * BF16 oneDNN could multiply as it stores y, as a binary post-op, but on AMX that ran fc2's dx
 * at about half the rate of the plain product inside a training step, far more than the pass
 * costs: docs/performance.md, "Attention and fc2 on AMX".) m is an operand: FP32 reads m.f;
 * BF16 reads m's bf16 values m.h when it has them (a factor made as bf16, half the bytes to
 * write and read, at one more bf16 rounding of the result), else the floats m.f. */
void ag_gemm_mul(ag_ctx *ctx, int M, int N, int K, ag_operand a, ag_operand b, ag_operand m, float *y);

/* Frees ctx's cached parameter copies (ag_ctx_free calls it). */
void ag_gemm_free_params(ag_ctx *ctx);

#endif
