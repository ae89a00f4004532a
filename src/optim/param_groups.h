/* Parameter groups: which parameters decay, which learning-rate group they belong to, which
 * are frozen. Sets the flags of ag_params items (no_decay, group, frozen) the way timm/DeiT and
 * DynamicViT/TPS do; the optimisers then read only those flags, never names.
 *
 * timm (optim_factory.param_groups_weight_decay): no weight decay for every parameter with
 * ndim <= 1 or a name ending in ".bias", and for the model's no_weight_decay() set, which for
 * DeiT is {cls_token, pos_embed, dist_token}. TPS/DynamicViT train the score predictors with
 * the base lr and the backbone with lr * 0.01: the predictors are group 1, the rest group 0. */
#ifndef TPSC_OPTIM_PARAM_GROUPS_H
#define TPSC_OPTIM_PARAM_GROUPS_H

#include <stdbool.h>

#include "autograd/params.h"
#include "src/util/status.h"

/* Learning-rate groups (ag_param.group). Optimiser configs hold one lr scale per group. */
#define TPSC_GROUP_BACKBONE 0
#define TPSC_GROUP_PREDICTOR 1
#define TPSC_OPTIM_MAX_GROUPS 4

/* Names starting with this go to TPSC_GROUP_PREDICTOR. */
#define TPSC_PREDICTOR_PREFIX "score_predictor."

/* Sets no_decay and group on every item (frozen flags are left as they are). */
void tpsc_param_groups_assign(ag_params *p);

/* Clears no_decay on every item: weight decay on all parameters, as the official TPS
 * fine-tuning code does (its PyTorch train.py hands timm's create_optimizer_v2 a
 * param_group_fn, which bypasses timm's no-decay filter; its MegEngine get_param_groups
 * defaults to no_decay_bias_norm=False). Call after tpsc_param_groups_assign to reproduce it. */
void tpsc_param_groups_decay_all(ag_params *p);

/* Sets frozen (and requires_grad = !frozen, via ag_param_set_frozen) on every item whose name
 * starts with one of `prefixes` (n_prefixes of them; "" matches every parameter). A prefix that
 * matches no parameter is TPSC_ERR_MISSING naming it, and then no flag is changed: a typo in a
 * recipe must not silently train what it meant to freeze. `n_changed` (may be NULL) receives
 * the number of items matched. Call with frozen = false to unfreeze (e.g. after the backbone's
 * frozen epochs). */
tpsc_status tpsc_param_groups_freeze(ag_params *p, const char *const *prefixes, int n_prefixes,
                                     bool frozen, int *n_changed);

/* Number of floats in non-frozen items (what the optimiser will update). */
size_t tpsc_param_groups_trainable(const ag_params *p);

#endif
