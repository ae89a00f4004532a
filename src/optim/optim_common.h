/* Checks shared by the optimisers (private to src/optim). */
#ifndef TPSC_OPTIM_COMMON_H
#define TPSC_OPTIM_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "autograd/params.h"
#include "src/optim/param_groups.h"
#include "src/util/status.h"

/* Element loops below this many floats stay on one thread: a fork/join costs more. */
#define TPSC_OPTIM_OMP_MIN 32768

/* The store an optimiser's state was sized for must still have the same layout, and every
 * item's group must index the lr-scale table. `who` names the optimiser in the message. */
static inline tpsc_status tpsc_optim_check_store(const char *who, const ag_params *p,
                                                 size_t total, int count) {
    if (!p->finalised || !p->data || !p->grad)
        return tpsc_fail(TPSC_ERR_ARG, "%s: parameter store is not finalised", who);
    if (p->total != total || p->count != count)
        return tpsc_fail(TPSC_ERR_ARG,
                         "%s: parameter store changed since init (%zu floats/%d items, state has "
                         "%zu/%d)", who, p->total, p->count, total, count);
    for (int i = 0; i < p->count; i++) {
        int g = p->items[i].group;
        if (g < 0 || g >= TPSC_OPTIM_MAX_GROUPS)
            return tpsc_fail(TPSC_ERR_ARG, "%s: parameter %s has group %d, outside [0, %d)", who,
                             p->items[i].name, g, TPSC_OPTIM_MAX_GROUPS);
    }
    return TPSC_OK;
}

static inline tpsc_status tpsc_optim_check_scales(const char *who, const double *scale) {
    for (int g = 0; g < TPSC_OPTIM_MAX_GROUPS; g++)
        if (!isfinite(scale[g]) || scale[g] < 0.0)
            return tpsc_fail(TPSC_ERR_ARG, "%s: group_lr_scale[%d] = %g must be finite and >= 0",
                             who, g, scale[g]);
    return TPSC_OK;
}

/* Whether any of n floats is non-zero (NULL counts as all zero). */
static inline bool tpsc_optim_any_nonzero(const float *x, size_t n) {
    if (!x) return false;
    for (size_t i = 0; i < n; i++)
        if (x[i] != 0.0f) return true;
    return false;
}

/* Shared by the optimisers' restore_step: an item's update count is the saved global step if
 * it trains now or has state, else 0 (it was frozen all along). */
static inline tpsc_status tpsc_optim_restore_counts(const char *who, const ag_params *p, size_t total,
                                                    int count, const float *state_a, const float *state_b,
                                                    int64_t step, int64_t *param_step) {
    TPSC_TRY(tpsc_optim_check_store(who, p, total, count));
    if (step < 0) return tpsc_fail(TPSC_ERR_ARG, "%s: restored step %lld is negative", who, (long long)step);
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        bool has_state = tpsc_optim_any_nonzero(state_a ? state_a + it->offset : NULL, it->numel) ||
                         tpsc_optim_any_nonzero(state_b ? state_b + it->offset : NULL, it->numel);
        param_step[i] = (!it->frozen || has_state) ? step : 0;
    }
    return TPSC_OK;
}

#endif
