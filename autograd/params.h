/* ag_params: every parameter of a model in one allocation, with a mirror for gradients.
 *
 * A model declares its parameters by name and shape (timm names: "blocks.0.attn.qkv.weight"),
 * then finalises the store, which carves one float block into named views. Zeroing gradients,
 * the optimiser step, gradient norms and checkpoint I/O are then flat loops over the block or
 * loops over the named list. */
#ifndef TPSC_AUTOGRAD_PARAMS_H
#define TPSC_AUTOGRAD_PARAMS_H

#include "autograd/tensor.h"
#include "src/util/status.h"

#define AG_PARAM_NAME_MAX 96

typedef struct ag_param {
    char name[AG_PARAM_NAME_MAX];
    ag_tensor t;          /* data/grad point into the store's blocks once finalised */
    size_t offset;        /* in floats, from the start of the block */
    size_t numel;
    bool no_decay;        /* AdamW skips weight decay (norms, biases, cls_token, pos_embed) */
    bool frozen;          /* excluded from updates; requires_grad is false */
    int group;            /* learning-rate group (0 backbone, 1 predictors, ...) */
} ag_param;

typedef struct ag_params {
    ag_param *items;
    int count, cap;
    float *data;          /* all parameters */
    float *grad;          /* all gradients, same layout */
    size_t total;         /* floats in each block */
    bool finalised;
} ag_params;

void ag_params_init(ag_params *p);
void ag_params_free(ag_params *p);
/* Declares a parameter; returns its index or -1 (error set: duplicate name, store finalised). */
int ag_params_add(ag_params *p, const char *name, int ndim, const size_t *shape);
/* Allocates the blocks (zeroed) and points every tensor into them. */
tpsc_status ag_params_finalise(ag_params *p);
/* Index by name, or -1. */
int ag_params_find(const ag_params *p, const char *name);
ag_tensor *ag_param_tensor(ag_params *p, int index);
void ag_params_zero_grad(ag_params *p);
void ag_param_set_frozen(ag_params *p, int index, bool frozen);

#endif
