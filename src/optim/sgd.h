/* SGD with momentum, as torch.optim.SGD (PyTorch 1.13, maximize off). Per parameter:
 *
 *   d <- g + wd * p                 coupled decay, skipped when item.no_decay
 *   b <- d                          on the parameter's first update
 *   b <- momentum b + (1 - dampening) d   afterwards
 *   d <- d + momentum b  (nesterov)  or  d <- b
 *   p <- p - lr_g d
 *
 * with lr_g = lr * group_lr_scale[item.group]; momentum 0 gives plain SGD (no buffer update).
 * Frozen items are skipped entirely. State: `buf` has the layout of params->data;
 * `param_step[i]` counts the updates item i received (0 means its buffer is not yet set). */
#ifndef TPSC_OPTIM_SGD_H
#define TPSC_OPTIM_SGD_H

#include <stdbool.h>
#include <stdint.h>

#include "autograd/params.h"
#include "src/optim/param_groups.h"
#include "src/util/status.h"

typedef struct tpsc_sgd_config {
    double momentum;       /* 0.9 */
    double dampening;      /* 0 */
    double weight_decay;   /* 0 */
    bool nesterov;        /* false; needs momentum > 0 and dampening 0, as in PyTorch */
    double group_lr_scale[TPSC_OPTIM_MAX_GROUPS]; /* 1 */
} tpsc_sgd_config;

typedef struct tpsc_sgd {
    tpsc_sgd_config cfg;
    float *buf;           /* momentum buffers, params->data layout (NULL when momentum == 0) */
    int64_t *param_step;  /* per item: updates received */
    size_t total;
    int count;
    int64_t step;         /* calls to tpsc_sgd_step */
} tpsc_sgd;

/* momentum 0.9, dampening 0, weight_decay 0, nesterov off, group scales 1. */
tpsc_sgd_config tpsc_sgd_defaults(void);
tpsc_status tpsc_sgd_init(tpsc_sgd *opt, const ag_params *p, const tpsc_sgd_config *cfg);
void tpsc_sgd_free(tpsc_sgd *opt);
tpsc_status tpsc_sgd_step(tpsc_sgd *opt, ag_params *p, double lr);
/* Resume after copying the saved buffers into opt->buf: as tpsc_adamw_restore_step (items
 * trainable or with a non-zero buffer get param_step = step, the others 0). */
tpsc_status tpsc_sgd_restore_step(tpsc_sgd *opt, const ag_params *p, int64_t step);

#endif
