#include "src/optim/adamw.h"

#include <math.h>
#include <string.h>

#include "src/optim/optim_common.h"
#include "src/util/alloc.h"

tpsc_adamw_config tpsc_adamw_defaults(void) {
    tpsc_adamw_config c = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.05};
    for (int g = 0; g < TPSC_OPTIM_MAX_GROUPS; g++) c.group_lr_scale[g] = 1.0;
    return c;
}

static tpsc_status check_config(const tpsc_adamw_config *c) {
    if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
        return tpsc_fail(TPSC_ERR_ARG, "adamw: beta1 = %g must be in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
        return tpsc_fail(TPSC_ERR_ARG, "adamw: beta2 = %g must be in [0, 1)", c->beta2);
    if (!(isfinite(c->eps) && c->eps >= 0.0))
        return tpsc_fail(TPSC_ERR_ARG, "adamw: eps = %g must be finite and >= 0", c->eps);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0.0))
        return tpsc_fail(TPSC_ERR_ARG, "adamw: weight_decay = %g must be finite and >= 0",
                         c->weight_decay);
    return tpsc_optim_check_scales("adamw", c->group_lr_scale);
}

tpsc_status tpsc_adamw_init(tpsc_adamw *opt, const ag_params *p, const tpsc_adamw_config *cfg) {
    memset(opt, 0, sizeof *opt);
    if (!p->finalised) return tpsc_fail(TPSC_ERR_ARG, "adamw: parameter store is not finalised");
    TPSC_TRY(check_config(cfg));
    opt->cfg = *cfg;
    opt->total = p->total;
    opt->count = p->count;
    size_t bytes = (p->total ? p->total : 1) * sizeof(float);
    opt->m = tpsc_aligned_alloc(bytes, "adamw first moments");
    opt->v = tpsc_aligned_alloc(bytes, "adamw second moments");
    opt->param_step = tpsc_calloc(p->count ? (size_t)p->count : 1, sizeof(int64_t), "adamw steps");
    if (!opt->m || !opt->v || !opt->param_step) {
        tpsc_adamw_free(opt);
        return TPSC_ERR_NOMEM;
    }
    /* Alignment gaps between items are zeroed too, so the blocks save and compare cleanly. */
    memset(opt->m, 0, bytes);
    memset(opt->v, 0, bytes);
    return TPSC_OK;
}

void tpsc_adamw_free(tpsc_adamw *opt) {
    tpsc_free(opt->m);
    tpsc_free(opt->v);
    tpsc_free(opt->param_step);
    memset(opt, 0, sizeof *opt);
}

/* One item of n floats. Scalars are formed in double as PyTorch forms them in Python, then
 * rounded to float once; the element arithmetic is float, in PyTorch's order. */
static void adamw_item(float *restrict w, float *restrict m, float *restrict v,
                       const float *restrict g, size_t n, double lr, double wd, double beta1,
                       double beta2, double eps, int64_t t) {
    const float keep = (float)(1.0 - lr * wd);
    const float b1 = (float)beta1, one_minus_b1 = (float)(1.0 - beta1);
    const float b2 = (float)beta2, one_minus_b2 = (float)(1.0 - beta2);
    const double bias_correction1 = 1.0 - pow(beta1, (double)t);
    const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
    const float neg_step_size = (float)(-lr / bias_correction1);
    const float epsf = (float)eps;
    const int decays = wd != 0.0;
    #pragma omp parallel for simd if (parallel : n > TPSC_OPTIM_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float wi = decays ? w[i] * keep : w[i];
        float mi = m[i] * b1 + one_minus_b1 * g[i];
        float vi = v[i] * b2 + one_minus_b2 * g[i] * g[i];
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + epsf;
        w[i] = wi + neg_step_size * (mi / denom);
    }
}

tpsc_status tpsc_adamw_step(tpsc_adamw *opt, ag_params *p, double lr) {
    TPSC_TRY(tpsc_optim_check_store("adamw", p, opt->total, opt->count));
    if (!isfinite(lr) || lr < 0.0)
        return tpsc_fail(TPSC_ERR_ARG, "adamw: learning rate %g must be finite and >= 0", lr);
    const tpsc_adamw_config *c = &opt->cfg;
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        if (it->frozen || it->numel == 0) continue;
        int64_t t = ++opt->param_step[i];
        double lr_g = lr * c->group_lr_scale[it->group];
        double wd = it->no_decay ? 0.0 : c->weight_decay;
        size_t o = it->offset;
        adamw_item(p->data + o, opt->m + o, opt->v + o, p->grad + o, it->numel, lr_g, wd,
                   c->beta1, c->beta2, c->eps, t);
    }
    opt->step++;
    return TPSC_OK;
}

tpsc_status tpsc_adamw_restore_step(tpsc_adamw *opt, const ag_params *p, int64_t step) {
    TPSC_TRY(tpsc_optim_restore_counts("adamw restore", p, opt->total, opt->count, opt->m, opt->v,
                                       step, opt->param_step));
    opt->step = step;
    return TPSC_OK;
}
