#include "src/common/squeeze.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "src/common/rows.h"

size_t squeeze_scratch_floats(size_t k, size_t p, size_t C) { return (2 * k + p) * C + p * k + 2 * k + p; }

void squeeze_buffers_carve(squeeze_buffers *b, float *scratch, size_t k, size_t p, size_t C) {
    b->kept_hat = scratch;
    b->dropped_hat = b->kept_hat + k * C;
    b->kept_norm = b->dropped_hat + p * C;
    b->dropped_norm = b->kept_norm + k;
    b->sim = b->dropped_norm + p;
    b->den = b->sim + p * k;
    b->acc = b->den + k;
    b->sim_max = NULL;
}

void squeeze_image(const float *kept, size_t k, const float *dropped, size_t p, size_t C, float temp, float *out,
                   const squeeze_buffers *b) {
    float *S = b->sim, *den = b->den, *acc = b->acc;
    for (size_t j = 0; j < k; j++) b->kept_norm[j] = row_normalise(kept + j * C, C, b->kept_hat + j * C);
    for (size_t i = 0; i < p; i++) b->dropped_norm[i] = row_normalise(dropped + i * C, C, b->dropped_hat + i * C);
    if (p > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p, (int)k, (int)C, 1.0f, b->dropped_hat, (int)C,
                    b->kept_hat, (int)C, 0.0f, S, (int)k);
    for (size_t j = 0; j < k; j++) den[j] = SQUEEZE_HOST_WEIGHT;
    memset(acc, 0, k * C * sizeof(float));
    /* the element loops carry `omp simd`: acc never overlaps dropped, and out is kept or
     * apart from it (same element read, then written); without it they stay scalar */
    for (size_t i = 0; i < p; i++) {
        float *Si = S + i * k;
        #pragma omp simd
        for (size_t j = 0; j < k; j++) Si[j] /= temp;
        float m = -INFINITY;
        for (size_t j = 0; j < k; j++)
            if (Si[j] > m) m = Si[j];
        if (b->sim_max) b->sim_max[i] = m;
        for (size_t j = 0; j < k; j++) {
            if (Si[j] != m) continue;
            const float w = expf(m);
            den[j] += w;
            float *aj = acc + j * C;
            const float *di = dropped + i * C;
            #pragma omp simd
            for (size_t c = 0; c < C; c++) aj[c] += w * di[c];
        }
    }
    for (size_t j = 0; j < k; j++) {
        const float self = SQUEEZE_HOST_WEIGHT / den[j], inv = 1.0f / den[j];
        const float *kj = kept + j * C, *aj = acc + j * C;
        float *oj = out + j * C;
        #pragma omp simd
        for (size_t c = 0; c < C; c++) oj[c] = kj[c] * self + aj[c] * inv;
    }
}
