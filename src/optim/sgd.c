#include "src/optim/sgd.h"

#include <math.h>
#include <string.h>

#include "src/optim/optim_common.h"
#include "src/util/alloc.h"

tpsc_sgd_config tpsc_sgd_defaults(void) {
    tpsc_sgd_config c = {.momentum = 0.9, .dampening = 0.0, .weight_decay = 0.0, .nesterov = false};
    for (int g = 0; g < TPSC_OPTIM_MAX_GROUPS; g++) c.group_lr_scale[g] = 1.0;
    return c;
}

static tpsc_status check_config(const tpsc_sgd_config *c) {
    if (!(isfinite(c->momentum) && c->momentum >= 0.0))
        return tpsc_fail(TPSC_ERR_ARG, "sgd: momentum = %g must be finite and >= 0", c->momentum);
    if (!isfinite(c->dampening))
        return tpsc_fail(TPSC_ERR_ARG, "sgd: dampening = %g must be finite", c->dampening);
    if (!(isfinite(c->weight_decay) && c->weight_decay >= 0.0))
        return tpsc_fail(TPSC_ERR_ARG, "sgd: weight_decay = %g must be finite and >= 0",
                         c->weight_decay);
    if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0))
        return tpsc_fail(TPSC_ERR_ARG, "sgd: nesterov needs momentum > 0 and dampening 0 "
                                       "(momentum %g, dampening %g)", c->momentum, c->dampening);
    return tpsc_optim_check_scales("sgd", c->group_lr_scale);
}

tpsc_status tpsc_sgd_init(tpsc_sgd *opt, const ag_params *p, const tpsc_sgd_config *cfg) {
    memset(opt, 0, sizeof *opt);
    if (!p->finalised) return tpsc_fail(TPSC_ERR_ARG, "sgd: parameter store is not finalised");
    TPSC_TRY(check_config(cfg));
    opt->cfg = *cfg;
    opt->total = p->total;
    opt->count = p->count;
    opt->param_step = tpsc_calloc(p->count ? (size_t)p->count : 1, sizeof(int64_t), "sgd steps");
    if (!opt->param_step) return TPSC_ERR_NOMEM;
    if (cfg->momentum != 0.0) {
        size_t bytes = (p->total ? p->total : 1) * sizeof(float);
        opt->buf = tpsc_aligned_alloc(bytes, "sgd momentum buffers");
        if (!opt->buf) {
            tpsc_sgd_free(opt);
            return TPSC_ERR_NOMEM;
        }
        memset(opt->buf, 0, bytes);
    }
    return TPSC_OK;
}

void tpsc_sgd_free(tpsc_sgd *opt) {
    tpsc_free(opt->buf);
    tpsc_free(opt->param_step);
    memset(opt, 0, sizeof *opt);
}

/* One item of n floats; `first` is the item's first update, when PyTorch sets the buffer to
 * the (decayed) gradient itself rather than blending it. */
static void sgd_item(float *restrict w, float *restrict b, const float *restrict g, size_t n,
                     double lr, double wd, const tpsc_sgd_config *c, int first) {
    const float wdf = (float)wd, neg_lr = (float)(-lr);
    const float mom = (float)c->momentum, one_minus_damp = (float)(1.0 - c->dampening);
    const int decays = wd != 0.0, nesterov = c->nesterov;
    #pragma omp parallel for simd if (parallel : n > TPSC_OPTIM_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float d = decays ? g[i] + wdf * w[i] : g[i];
        if (b) {
            float bi = first ? d : b[i] * mom + one_minus_damp * d;
            b[i] = bi;
            d = nesterov ? d + mom * bi : bi;
        }
        w[i] = w[i] + neg_lr * d;
    }
}

tpsc_status tpsc_sgd_step(tpsc_sgd *opt, ag_params *p, double lr) {
    TPSC_TRY(tpsc_optim_check_store("sgd", p, opt->total, opt->count));
    if (!isfinite(lr) || lr < 0.0)
        return tpsc_fail(TPSC_ERR_ARG, "sgd: learning rate %g must be finite and >= 0", lr);
    const tpsc_sgd_config *c = &opt->cfg;
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        if (it->frozen || it->numel == 0) continue;
        int first = opt->param_step[i]++ == 0;
        double lr_g = lr * c->group_lr_scale[it->group];
        double wd = it->no_decay ? 0.0 : c->weight_decay;
        size_t o = it->offset;
        sgd_item(p->data + o, opt->buf ? opt->buf + o : NULL, p->grad + o, it->numel, lr_g, wd, c,
                 first);
    }
    opt->step++;
    return TPSC_OK;
}

tpsc_status tpsc_sgd_restore_step(tpsc_sgd *opt, const ag_params *p, int64_t step) {
    TPSC_TRY(tpsc_optim_restore_counts("sgd restore", p, opt->total, opt->count, opt->buf, NULL,
                                       step, opt->param_step));
    opt->step = step;
    return TPSC_OK;
}
