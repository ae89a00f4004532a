/* The dense kernels of the forward pass. Their arithmetic follows the training framework's ops
 * (autograd/ops/{layernorm,linear,fused_linear,gelu,attention}.c) operation for operation, so
 * the two inference paths agree to float rounding (BLAS blocking aside) and take the same
 * discrete decisions (kept tokens). */
#include <cblas.h>
#include <math.h>
#include <string.h>

/* header-only float exp / normal CDF shared with the training ops: same GELU to the bit; no
 * link dependency on the autograd engine */
#include "autograd/ops/rows.h"
#include "autograd/ops/vecmath.h"
#include "src/infer/gemm.h" /* the oneDNN dispatch of packed weights */
#include "src/infer/internal.h"

/* Elements below which a pass runs on one thread: these passes are memory-bound and take
 * well under a millisecond there, while a thread team adds a barrier that costs far more when
 * the machine is shared and a team member is preempted (batch-1 latency). */
#define ROWS_PAR (1 << 20)

/* y = (x - mean) / sqrt(var + eps) * w + b per row: the training op's row kernel (rows.h) */
void ti_layernorm(const float *x, size_t M, size_t C, const float *w, const float *b, float eps, float *y) {
    for (size_t r = 0; r < M; r++) ag_layernorm_row(x + r * C, C, w, b, eps, y + r * C, NULL, NULL);
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
    for (size_t i = 0; i < n; i++) x[i] = x[i] * ag_normal_cdf_rational(x[i]);
}

/* torch.softmax over one row, in place: exp(s - max) / sum, with vecmath's vectorisable
 * ag_expf_nonpos (s - max <= 0; bit-identical to the training op's ag_expf there, relative
 * error < 2.5e-7, and 20% faster on a 197-wide row): the attention softmax takes N^2 H
 * exponentials per block. */
static void softmax_row(float *row, size_t n) {
    /* the max over 16 lanes, then across them: `omp simd reduction(max)` compiled to a scalar
     * loop here; this is 0.9 us per 99 rows of 197, the whole row 15.0 -> 8.7 us (max is
     * exact in any order, so the result is unchanged, bit for bit) */
    float lanes[16];
    for (size_t k = 0; k < 16; k++) lanes[k] = row[0];
    size_t j0 = 0;
    for (; j0 + 16 <= n; j0 += 16) {
        #pragma omp simd
        for (size_t k = 0; k < 16; k++) lanes[k] = row[j0 + k] > lanes[k] ? row[j0 + k] : lanes[k];
    }
    for (size_t j = j0; j < n; j++) lanes[0] = row[j] > lanes[0] ? row[j] : lanes[0];
    float m = lanes[0];
    for (size_t k = 1; k < 16; k++) m = lanes[k] > m ? lanes[k] : m;
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (size_t j = 0; j < n; j++) {
        row[j] = ag_expf_nonpos(row[j] - m);
        sum += row[j];
    }
    const float inv = 1.0f / sum;
    #pragma omp simd
    for (size_t j = 0; j < n; j++) row[j] *= inv;
}

/* One (image, head) pair, query rows i0 .. i1-1 of the image's n. qkv: the image's n rows of
 * [n,3C]; out: its n rows of [n,C], of which rows i0 .. i1-1 are written:
 *   S = q k^T D^-0.5 [i1-i0,n];  A = softmax(S);  out[i0:i1, h*D : h*D+D] = A v
 * cls_row (may be NULL; needs i0 = 0) receives A's first row (EViT's cls attention of this
 * head). The head slices are read in place (leading dimension 3C); scores is [i1-i0,n]
 * scratch. A team splits an image's queries among its members; each row's result does not
 * depend on the split. */
void ti_attention_rows(const float *qkv, size_t n, size_t i0, size_t i1, size_t C, size_t H, size_t h, float *scores,
                       float *out, float *cls_row) {
    if (i1 <= i0) return;
    const size_t D = C / H, nq = i1 - i0;
    const float scale = (float)(1.0 / sqrt((double)D));
    const float *q = qkv + i0 * 3 * C + h * D, *k = qkv + C + h * D, *v = qkv + 2 * C + h * D;
    const int in = (int)n, iq = (int)nq, iD = (int)D, iC = (int)C, iC3 = (int)(3 * C);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iq, in, iD, scale, q, iC3, k, iC3, 0.0f, scores, in);
    for (size_t i = 0; i < nq; i++) softmax_row(scores + i * n, n);
    if (cls_row)
        for (size_t j = 0; j < n; j++) cls_row[j] = scores[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iq, iD, in, 1.0f, scores, in, v, iC3, 0.0f,
                out + i0 * C + h * D, iC);
}

/* official get_sim's normalisation: x / (||x|| + 1e-6), dividing as torch does */
void ti_rows_normalise(const float *x, size_t rows, size_t C, float *xh, float *norm) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        float ss = 0.0f;
        for (size_t c = 0; c < C; c++) ss += xr[c] * xr[c];
        const float nr = sqrtf(ss), d = nr + 1e-6f;
        norm[r] = nr;
        float *o = xh + r * C; /* never x: simd asserts it (the loop stayed scalar: 2x slower) */
        #pragma omp simd
        for (size_t c = 0; c < C; c++) o[c] = xr[c] / d;
    }
}
