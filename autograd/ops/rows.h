/* Row kernels shared by the training ops and libtpsinfer, header-only like vecmath.h, so that
 * the inference library computes them with the same operations in the same order without
 * linking the autograd engine.
 *
 *   ag_layernorm_row: one LayerNorm row, statistics in double over two passes (the one-pass
 *                     E[x^2] - E[x]^2 cancels badly for large means); returns mean and rstd.
 *   ag_sort_desc_row: the descending order of n scores for the inference top-k. The official
 *                     code calls torch.argsort(descending=True) (dtps) and torch.topk(sorted)
 *                     (EViT), whose order among equal scores is unspecified; here equal scores
 *                     keep their original order, and NaN scores go last. */
#ifndef TPSC_AUTOGRAD_OPS_ROWS_H
#define TPSC_AUTOGRAD_OPS_ROWS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* y = (x - mean) / sqrt(var + eps) * w + b over C values */
static inline void ag_layernorm_row(const float *xr, size_t C, const float *w, const float *b, float eps, float *yr,
                                    float *mean_out, float *rstd_out) {
    double sum = 0.0;
    #pragma omp simd reduction(+ : sum)
    for (size_t c = 0; c < C; c++) sum += xr[c];
    const double mean = sum / (double)C;
    double sq = 0.0;
    #pragma omp simd reduction(+ : sq)
    for (size_t c = 0; c < C; c++) {
        const double d = xr[c] - mean;
        sq += d * d;
    }
    const float mu = (float)mean, rs = (float)(1.0 / sqrt(sq / (double)C + (double)eps));
    #pragma omp simd
    for (size_t c = 0; c < C; c++) yr[c] = (xr[c] - mu) * rs * w[c] + b[c];
    if (mean_out) *mean_out = mu;
    if (rstd_out) *rstd_out = rs;
}

typedef struct ag_scored {
    float s;
    int32_t i;
} ag_scored;

static inline int ag_by_score_desc(const void *pa, const void *pb) {
    const ag_scored *a = pa, *b = pb;
    const bool na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na ? 1 : -1;
    if (!na && a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* order[r] = index of the r-th highest of score[0..n); tmp holds n ag_scored */
static inline void ag_sort_desc_row(const float *score, size_t n, int32_t *order, ag_scored *tmp) {
    for (size_t i = 0; i < n; i++) tmp[i] = (ag_scored){score[i], (int32_t)i};
    qsort(tmp, n, sizeof *tmp, ag_by_score_desc);
    for (size_t i = 0; i < n; i++) order[i] = tmp[i].i;
}

#endif
