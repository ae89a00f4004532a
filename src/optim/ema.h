/* Model EMA, as timm's ModelEmaV2: after each optimiser step, over every parameter (frozen
 * ones too; they do not move, so neither does their average):
 *
 *   ema <- decay * ema + (1 - decay) * param
 *
 * computed in float like PyTorch (decay and 1 - decay rounded to float once). The average
 * starts as a copy of the parameters. `data` has the layout of params->data (`total` floats)
 * and is what a checkpoint stores; evaluation with the EMA weights swaps the two blocks. */
#ifndef TPSC_OPTIM_EMA_H
#define TPSC_OPTIM_EMA_H

#include <stdint.h>

#include "autograd/params.h"
#include "src/util/status.h"

typedef struct tpsc_ema {
    float *data;          /* averaged parameters, params->data layout */
    size_t total;
    double decay;         /* 0.99996 in TPS/DeiT */
    int64_t updates;      /* calls to tpsc_ema_update (informational) */
} tpsc_ema;

/* Copies the current parameters. TPSC_ERR_ARG when decay is outside [0, 1]. */
tpsc_status tpsc_ema_init(tpsc_ema *e, const ag_params *p, double decay);
void tpsc_ema_free(tpsc_ema *e);
/* TPSC_ERR_ARG when the store's size changed since init. */
tpsc_status tpsc_ema_update(tpsc_ema *e, const ag_params *p);
/* Exchanges the contents of e->data and params->data (evaluate with the average, then swap
 * back). Gradients are untouched. */
tpsc_status tpsc_ema_swap(tpsc_ema *e, ag_params *p);

#endif
