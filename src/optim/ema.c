#include "src/optim/ema.h"

#include <math.h>
#include <string.h>

#include "src/optim/optim_common.h"
#include "src/util/alloc.h"

tpsc_status tpsc_ema_init(tpsc_ema *e, const ag_params *p, double decay) {
    memset(e, 0, sizeof *e);
    if (!(decay >= 0.0 && decay <= 1.0))
        return tpsc_fail(TPSC_ERR_ARG, "ema: decay %g must be in [0, 1]", decay);
    if (!p->finalised || !p->data) return tpsc_fail(TPSC_ERR_ARG, "ema: parameter store is not finalised");
    size_t bytes = (p->total ? p->total : 1) * sizeof(float);
    e->data = tpsc_aligned_alloc(bytes, "ema parameters");
    if (!e->data) return TPSC_ERR_NOMEM;
    memset(e->data, 0, bytes);
    memcpy(e->data, p->data, p->total * sizeof(float));
    e->total = p->total;
    e->decay = decay;
    return TPSC_OK;
}

void tpsc_ema_free(tpsc_ema *e) {
    tpsc_free(e->data);
    memset(e, 0, sizeof *e);
}

static tpsc_status check_size(const char *who, const tpsc_ema *e, const ag_params *p) {
    if (!e->data || !p->data || p->total != e->total)
        return tpsc_fail(TPSC_ERR_ARG, "%s: parameter store has %zu floats, the average %zu", who,
                         p->total, e->total);
    return TPSC_OK;
}

tpsc_status tpsc_ema_update(tpsc_ema *e, const ag_params *p) {
    TPSC_TRY(check_size("ema update", e, p));
    const float d = (float)e->decay, one_minus_d = (float)(1.0 - e->decay);
    float *restrict a = e->data;
    const float *restrict w = p->data;
    const size_t n = e->total;
    /* One flat loop: the gaps between items are zero in both blocks and stay zero. */
    #pragma omp parallel for simd if (parallel : n > TPSC_OPTIM_OMP_MIN)
    for (size_t i = 0; i < n; i++) a[i] = a[i] * d + w[i] * one_minus_d;
    e->updates++;
    return TPSC_OK;
}

tpsc_status tpsc_ema_swap(tpsc_ema *e, ag_params *p) {
    TPSC_TRY(check_size("ema swap", e, p));
    float *a = e->data, *w = p->data;
    const size_t n = e->total;
    #pragma omp parallel for simd if (parallel : n > TPSC_OPTIM_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float tmp = a[i];
        a[i] = w[i];
        w[i] = tmp;
    }
    return TPSC_OK;
}
