/* Checks shared by the optimisers (private to src/optim). */
#ifndef TPSC_OPTIM_COMMON_H
#define TPSC_OPTIM_COMMON_H

#include <math.h>

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

#endif
