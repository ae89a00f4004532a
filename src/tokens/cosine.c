/* Row normalisation for the cosine similarities of the squeeze (official get_sim:
 * x / (x.norm(dim=-1) + 1e-6)), forward and backward. */
#include <math.h>

#include "src/common/rows.h"
#include "src/tokens/tokens_internal.h"

void tok_rows_normalise(const float *x, size_t rows, size_t C, float *xh, float *norm) {
    #pragma omp parallel for if (rows * C > 65536)
    for (size_t r = 0; r < rows; r++) norm[r] = row_normalise(x + r * C, C, xh + r * C);
}

/* xh = x / (n + eps), n = ||x||:  dx = dxh / (n + eps) - x (x . dxh) / (n (n + eps)^2).
 * At x = 0 the second term is dropped, as torch's norm backward does. */
void tok_rows_normalise_backward(const float *x, const float *norm, const float *dxh, size_t rows, size_t C,
                                 float *dx) {
    #pragma omp parallel for if (rows * C > 65536)
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * C, *gr = dxh + r * C;
        const float n = norm[r], d = n + ROW_NORM_EPS;
        float dot = 0.0f;
        for (size_t c = 0; c < C; c++) dot += xr[c] * gr[c];
        const float radial = n > 0.0f ? dot / (n * d * d) : 0.0f;
        for (size_t c = 0; c < C; c++) dx[r * C + c] += gr[c] / d - xr[c] * radial;
    }
}
