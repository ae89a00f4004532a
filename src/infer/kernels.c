/* The dense kernels of the forward pass. Their arithmetic follows the training framework's ops
 * (autograd/ops/{layernorm,linear,fused_linear,gelu,attention}.c) operation for operation, so
 * the two inference paths agree to float rounding (BLAS blocking aside) and take the same
 * discrete decisions (kept tokens). */
#include <cblas.h>
#include <math.h>
#include <string.h>

/* the float exp / normal CDF and the LayerNorm and softmax rows of the training ops
 * (src/common, header-only): the same GELU, LayerNorm and softmax to the bit */
#include "src/common/rows.h"
#include "src/common/vecmath.h"
#include "src/infer/gemm.h" /* the oneDNN dispatch of packed weights */
#include "src/infer/internal.h"

/* Elements below which a pass runs on one thread: these passes are memory-bound and take
 * well under a millisecond there, while a thread team adds a barrier that costs far more when
 * the machine is shared and a team member is preempted (batch-1 latency). */
#define ROWS_PAR (1 << 20)

/* y = (x - mean) / sqrt(var + eps) * w + b per row: the training op's row kernel (rows.h) */
void ti_layernorm(const float *x, size_t M, size_t C, const float *w, const float *b, float eps, float *y) {
    for (size_t r = 0; r < M; r++) row_layernorm(x + r * C, C, w, b, eps, y + r * C, NULL, NULL);
}

void ti_linear(const float *x, size_t M, size_t Cin, size_t ldx, const ti_weight *w, const float *b, size_t Cout,
               float *y, size_t ldy) {
    if (M == 0) return;
    /* a weight packed at load runs through oneDNN (gemm.h); false: OpenBLAS below */
    if (w->packed && ti_onednn_linear(x, M, Cin, ldx, w, b, Cout, y, ldy, LIN_PLAIN)) return;
    /* memcpy: the element loop stayed scalar (y and b may alias), 3% of a batch-32 pass */
    #pragma omp parallel for if (M * Cout > ROWS_PAR)
    for (size_t m = 0; m < M; m++) memcpy(y + m * ldy, b, Cout * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Cout, (int)Cin, 1.0f, x, (int)ldx, w->f, (int)Cin, 1.0f,
                y, (int)ldy);
}

/* y [M,Cout] += x [M,Cin] w^T + b, y holding the residual: r + b is written first and sgemm
 * accumulates onto it, as the framework's fused ag_linear_residual (same rounding), which
 * saves the separate residual pass and buffer. */
void ti_linear_residual(const float *x, size_t M, size_t Cin, const ti_weight *w, const float *b, size_t Cout, float *y) {
    if (M == 0) return;
    /* a weight packed at load runs through oneDNN (gemm.h); false: OpenBLAS below */
    if (w->packed && ti_onednn_linear(x, M, Cin, Cin, w, b, Cout, y, Cout, LIN_RESIDUAL)) return;
    #pragma omp parallel for if (M * Cout > ROWS_PAR)
    for (size_t m = 0; m < M; m++) {
        float *yr = y + m * Cout;
        #pragma omp simd
        for (size_t o = 0; o < Cout; o++) yr[o] = yr[o] + b[o];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Cout, (int)Cin, 1.0f, x, (int)Cin, w->f, (int)Cin,
                1.0f, y, (int)Cout);
}

void ti_linear_epi(const float *x, size_t M, size_t Cin, size_t ldx, const ti_weight *w, const float *b, size_t Cout,
                   float *y, size_t ldy, lin_epilogue epi) {
    if (M == 0) return;
    if (w->packed && ti_onednn_linear(x, M, Cin, ldx, w, b, Cout, y, ldy, epi)) return;
    const ti_weight blas = {.f = w->f}; /* OpenBLAS below, not another oneDNN attempt */
    if (epi == LIN_RESIDUAL && ldx == Cin && ldy == Cout) {
        ti_linear_residual(x, M, Cin, &blas, b, Cout, y);
        return;
    }
    if (epi == LIN_RESIDUAL) { /* strided residual: y + b first, then accumulate */
        for (size_t m = 0; m < M; m++) {
            float *yr = y + m * ldy;
            #pragma omp simd
            for (size_t o = 0; o < Cout; o++) yr[o] = yr[o] + b[o];
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Cout, (int)Cin, 1.0f, x, (int)ldx, w->f,
                    (int)Cin, 1.0f, y, (int)ldy);
        return;
    }
    ti_linear(x, M, Cin, ldx, &blas, b, Cout, y, ldy);
    if (epi == LIN_GELU)
        for (size_t m = 0; m < M; m++) ti_gelu(y + m * ldy, Cout);
}

/* GELU, x Phi(x), in place, with vecmath's rational Phi (absolute error < 1.8e-7 with FMA),
 * the same as the training op's */
void ti_gelu(float *x, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] * vm_normal_cdf_rational(x[i]);
}

ti_heads ti_block_heads(const struct tps_model *m, const ti_block *b) {
    return (ti_heads){.H = m->H, .dq = b->w.dq, .dv = b->w.dv, .scale = (float)(1.0 / sqrt((double)m->D))};
}

/* One (image, head) pair, query rows i0 .. i1-1 of the image's n. qkv: the image's n rows of
 * [n, 2Q+V] (Q = H dq, V = H dv); out: its n rows of [n, V], of which rows i0 .. i1-1 are
 * written:
 *   S = q k^T D^-0.5 (+ key_bias) [i1-i0,n];  A = softmax(S);  out[i0:i1, h*dv : h*dv+dv] = A v
 * key_bias [n] (may be NULL): ToMe's proportional attention, log size of each key token, added
 * to every row after the scaling, as ag_attention_sized.
 * (D the dense head size: for an unpruned block dq = dv = D and 2Q+V = 3C.)
 * cls_row (may be NULL; needs i0 = 0) receives A's first row (EViT's cls attention of this
 * head). The head slices are read in place (leading dimension 2Q+V); scores is [i1-i0,n]
 * scratch. A team splits an image's queries among its members; each row's result does not
 * depend on the split. */
void ti_attention_rows(const float *qkv, const ti_heads *g, size_t n, size_t i0, size_t i1, size_t h, float *scores,
                       float *out, float *cls_row, const float *key_bias) {
    if (i1 <= i0) return;
    const size_t Q = g->H * g->dq, V = g->H * g->dv, W = 2 * Q + V, nq = i1 - i0;
    const float *q = qkv + i0 * W + h * g->dq, *k = qkv + Q + h * g->dq, *v = qkv + 2 * Q + h * g->dv;
    const int in = (int)n, iq = (int)nq, idq = (int)g->dq, idv = (int)g->dv, iV = (int)V, iW = (int)W;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iq, in, idq, g->scale, q, iW, k, iW, 0.0f, scores, in);
    if (key_bias)
        for (size_t i = 0; i < nq; i++) {
            float *row = scores + i * n;
            #pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] += key_bias[j];
        }
    for (size_t i = 0; i < nq; i++) row_softmax(scores + i * n, n);
    if (cls_row)
        for (size_t j = 0; j < n; j++) cls_row[j] = scores[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iq, idv, in, 1.0f, scores, in, v, iW, 0.0f,
                out + i0 * V + h * g->dv, iV);
}

