/* The dense kernels of the forward pass. Their arithmetic follows the training framework's ops
 * (autograd/ops/{layernorm,linear,fused_linear,gelu,attention}.c) operation for operation, so
 * the two inference paths agree to float rounding (BLAS blocking aside) and take the same
 * discrete decisions (kept tokens). */
#include <cblas.h>
#include <math.h>
#include <string.h>

/* the LayerNorm row of the training ops (src/common, header-only; GELU is internal.h's
 * ti_gelu, on vecmath's normal CDF): the same LayerNorm and GELU to the bit */
#include "src/common/rows.h"
#include "src/infer/gemm.h" /* the oneDNN dispatch of packed weights */
#include "src/infer/internal.h"

/* Elements below which a pass runs on one thread: these passes are memory-bound and take
 * well under a millisecond there, while a thread team adds a barrier that costs far more when
 * the machine is shared and a team member is preempted (batch-1 latency). */
#define ROWS_PAR (1 << 20)

/* y = (x - mean) / sqrt(var + eps) * w + b per row: the training op's row kernel (rows.h) */
void ti_layernorm(const float *x, size_t M, size_t C, const float *w, const float *b, float eps, float *y) {
    for (size_t r = 0; r < M; r++) {
        /* the row after next into L1: at batch 32 x (a chunk's [16 x 197, C]) comes from
         * beyond L2, and the first load of each row was a third of LayerNorm's time */
        if (r + 2 < M)
            for (size_t o = 0; o < C * sizeof(float); o += 64) __builtin_prefetch((const char *)(x + (r + 2) * C) + o, 0, 3);
        row_layernorm(x + r * C, C, w, b, eps, y + r * C, NULL, NULL);
    }
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

ti_heads ti_block_heads(const struct tps_model *m, const ti_block *b) {
    return (ti_heads){.H = m->H, .dq = b->w.dq, .dv = b->w.dv, .scale = (float)(1.0 / sqrt((double)m->D)), .kernel = m->attn};
}
