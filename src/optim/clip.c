#include "src/optim/clip.h"

#include <math.h>

#include "src/optim/optim_common.h"

static double item_sumsq(const float *g, size_t n) {
    double s = 0.0;
    #pragma omp parallel for simd reduction(+ : s) if (parallel : n > TPSC_OPTIM_OMP_MIN)
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

tpsc_status tpsc_grad_norm(const ag_params *p, double *norm) {
    *norm = 0.0;
    if (!p->finalised || !p->grad) return tpsc_fail(TPSC_ERR_ARG, "grad norm: parameter store is not finalised");
    double total = 0.0;
    int first_bad = -1;
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        if (it->frozen) continue;
        /* In double a float's square cannot overflow, so a non-finite sum means a NaN/Inf. */
        double s = item_sumsq(p->grad + it->offset, it->numel);
        if (!isfinite(s) && first_bad < 0) first_bad = i;
        total += s;
    }
    *norm = sqrt(total);
    if (first_bad >= 0) {
        const ag_param *it = &p->items[first_bad];
        size_t k = 0;
        while (k < it->numel && isfinite(p->grad[it->offset + k])) k++;
        return tpsc_fail(TPSC_ERR_NUMERIC, "gradient of %s is not finite (element %zu = %g)",
                         it->name, k, k < it->numel ? (double)p->grad[it->offset + k] : NAN);
    }
    return TPSC_OK;
}

tpsc_status tpsc_clip_grad_norm(ag_params *p, double max_norm, double *norm) {
    TPSC_TRY(tpsc_grad_norm(p, norm));
    if (!(max_norm > 0.0)) return TPSC_OK;
    /* PyTorch computes the coefficient in float from float tensors. */
    const float scale = (float)max_norm / ((float)*norm + 1e-6f);
    if (!(scale < 1.0f)) return TPSC_OK;
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        if (it->frozen) continue;
        float *g = p->grad + it->offset;
        size_t n = it->numel;
        #pragma omp parallel for simd if (parallel : n > TPSC_OPTIM_OMP_MIN)
        for (size_t k = 0; k < n; k++) g[k] *= scale;
    }
    return TPSC_OK;
}
