/* Row kernels that the training ops and libtpsinfer both run, header-only like vecmath.h, so
 * that both engines compute them with the same operations in the same order (the parity tests
 * compare them bit for bit where the official code allows).
 *
 *   row_layernorm:  one LayerNorm row, statistics in double over two passes (the one-pass
 *                   E[x^2] - E[x]^2 cancels badly for large means); returns mean and rstd.
 *   row_softmax:    torch.softmax over one row, in place.
 *   row_normalise:  the official get_sim's x / (||x|| + 1e-6), dividing as torch does.
 *   row_sort_desc:  the descending order of n scores for the top-k. The official code calls
 *                   torch.argsort(descending=True) (dtps) and torch.topk(sorted) (EViT), whose
 *                   order among equal scores is unspecified; here equal scores keep their
 *                   original order, and NaN scores go last. */
#ifndef TPSC_COMMON_ROWS_H
#define TPSC_COMMON_ROWS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "src/common/vecmath.h"

/* get_sim's normalisation in the official code: x / (||x|| + 1e-6) */
#define ROW_NORM_EPS 1e-6f

/* y = (x - mean) / sqrt(var + eps) * w + b over C values */
static inline void row_layernorm(const float *xr, size_t C, const float *w, const float *b, float eps, float *yr,
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

/* exp(s - max) / sum over n > 0 values, in place. The max and the sum each run over
 * ROW_LANES lanes, value j into lane j mod ROW_LANES in order of j, and then across the lanes:
 * the max from lane 0 up (exact in any order), the sum as a fixed tree (lane k += lane k + w for
 * w = 8, 4, 2, 1). The order is written down rather than left to the vectoriser, so that
 * libtpsinfer's AVX-512 softmax (src/infer/attention.c) computes the same bits, and so does
 * any compiler at any optimisation level. The exponentials go through vm_expf_nonpos
 * (s - max <= 0), equal to vm_expf there. */
#define ROW_LANES 16

/* lanes[0] + ... + lanes[15] in the tree order above (lanes is overwritten) */
static inline float row_lanes_sum(float *lanes) {
    for (size_t w = ROW_LANES / 2; w > 0; w /= 2)
        for (size_t k = 0; k < w; k++) lanes[k] += lanes[k + w];
    return lanes[0];
}

static inline void row_softmax(float *row, size_t n) {
    float lanes[ROW_LANES];
    for (size_t k = 0; k < ROW_LANES; k++) lanes[k] = row[0];
    size_t j0 = 0;
    for (; j0 + ROW_LANES <= n; j0 += ROW_LANES) {
        #pragma omp simd
        for (size_t k = 0; k < ROW_LANES; k++) lanes[k] = row[j0 + k] > lanes[k] ? row[j0 + k] : lanes[k];
    }
    for (size_t j = j0; j < n; j++) lanes[j - j0] = row[j] > lanes[j - j0] ? row[j] : lanes[j - j0];
    float m = lanes[0];
    for (size_t k = 1; k < ROW_LANES; k++) m = lanes[k] > m ? lanes[k] : m;
    for (size_t k = 0; k < ROW_LANES; k++) lanes[k] = 0.0f;
    for (j0 = 0; j0 + ROW_LANES <= n; j0 += ROW_LANES) {
        #pragma omp simd
        for (size_t k = 0; k < ROW_LANES; k++) {
            row[j0 + k] = vm_expf_nonpos(row[j0 + k] - m);
            lanes[k] += row[j0 + k];
        }
    }
    for (size_t j = j0; j < n; j++) {
        row[j] = vm_expf_nonpos(row[j] - m);
        lanes[j - j0] += row[j];
    }
    const float inv = 1.0f / row_lanes_sum(lanes);
    #pragma omp simd
    for (size_t j = 0; j < n; j++) row[j] *= inv;
}

/* xh = x / (||x|| + eps) over C values (xh never x); returns ||x|| */
static inline float row_normalise(const float *restrict xr, size_t C, float *restrict xh) {
    float ss = 0.0f;
    for (size_t c = 0; c < C; c++) ss += xr[c] * xr[c];
    const float norm = sqrtf(ss), d = norm + ROW_NORM_EPS;
    #pragma omp simd
    for (size_t c = 0; c < C; c++) xh[c] = xr[c] / d;
    return norm;
}

typedef struct row_scored {
    float s;
    int32_t i;
} row_scored;

static inline int row_by_score_desc(const void *pa, const void *pb) {
    const row_scored *a = pa, *b = pb;
    const bool na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na ? 1 : -1;
    if (!na && a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* order[r] = index of the r-th highest of score[0..n); tmp holds n row_scored */
static inline void row_sort_desc(const float *score, size_t n, int32_t *order, row_scored *tmp) {
    for (size_t i = 0; i < n; i++) tmp[i] = (row_scored){score[i], (int32_t)i};
    qsort(tmp, n, sizeof *tmp, row_by_score_desc);
    for (size_t i = 0; i < n; i++) order[i] = tmp[i].i;
}

#endif
