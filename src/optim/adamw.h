/* AdamW, exactly as torch.optim.AdamW (PyTorch 1.13, amsgrad off, maximize off), for one
 * ag_params store. Per parameter with gradient g, at its update number t (1, 2, ...):
 *
 *   p <- p * (1 - lr_g * wd)                    decoupled decay, skipped when item.no_decay
 *   m <- beta1 m + (1 - beta1) g
 *   v <- beta2 v + (1 - beta2) g^2
 *   p <- p - (lr_g / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *
 * with lr_g = lr * group_lr_scale[item.group]. Frozen items are skipped entirely: no decay, no
 * moment update, their update count does not advance (as PyTorch skips params whose .grad is
 * None: a parameter unfrozen later starts its bias correction at t = 1, like PyTorch's state).
 *
 * State for checkpoints: m and v are float blocks with the layout of params->data (`total`
 * floats each, same offsets); `step` counts calls to tpsc_adamw_step; `param_step[i]` is the
 * update count t of item i (params->count entries). A checkpoint that keeps only m, v and
 * step is restored with tpsc_adamw_restore_step. */
#ifndef TPSC_OPTIM_ADAMW_H
#define TPSC_OPTIM_ADAMW_H

#include <stdint.h>

#include "autograd/params.h"
#include "src/optim/param_groups.h"
#include "src/util/status.h"

typedef struct tpsc_adamw_config {
    double beta1, beta2;   /* 0.9, 0.999 */
    double eps;            /* 1e-8 */
    double weight_decay;   /* 0.05 in DeiT/TPS (PyTorch's default is 0.01) */
    double group_lr_scale[TPSC_OPTIM_MAX_GROUPS]; /* lr multiplier per ag_param.group; 1 */
} tpsc_adamw_config;

typedef struct tpsc_adamw {
    tpsc_adamw_config cfg;
    float *m;             /* first moments, params->data layout */
    float *v;             /* second moments, params->data layout */
    int64_t *param_step;  /* per item: updates received (PyTorch's state['step']) */
    size_t total;         /* floats in m and v (== params->total at init) */
    int count;            /* entries in param_step (== params->count at init) */
    int64_t step;         /* calls to tpsc_adamw_step */
} tpsc_adamw;

/* beta 0.9/0.999, eps 1e-8, weight_decay 0.05, all group scales 1. */
tpsc_adamw_config tpsc_adamw_defaults(void);

/* Allocates zeroed state for a finalised store. TPSC_ERR_ARG on a bad config (beta outside
 * [0,1), eps or weight_decay negative or non-finite), naming the key. */
tpsc_status tpsc_adamw_init(tpsc_adamw *opt, const ag_params *p, const tpsc_adamw_config *cfg);
void tpsc_adamw_free(tpsc_adamw *opt);

/* One update with base learning rate `lr` (the schedule's value for this step) from
 * params->grad. Fails without touching anything if the store's layout changed since init or
 * an item's group is outside [0, TPSC_OPTIM_MAX_GROUPS) (TPSC_ERR_ARG naming it). */
tpsc_status tpsc_adamw_step(tpsc_adamw *opt, ag_params *p, double lr);

/* Resume: after tpsc_adamw_init, copy the saved moments into opt->m / opt->v (e.g. with
 * tpsc_checkpoint_load_state), set the frozen flags the run had, then call this with the saved
 * step. It sets opt->step = step and param_step[i] = step for every item that is trainable or
 * has non-zero moments, 0 for the rest (frozen all along). Exact unless an item was unfrozen
 * part-way through the run, where it overstates that item's count (bias correction then
 * assumes warmer moments); saving param_step itself avoids even that. */
tpsc_status tpsc_adamw_restore_step(tpsc_adamw *opt, const ag_params *p, int64_t step);

#endif
