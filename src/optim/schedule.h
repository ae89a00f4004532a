/* Learning-rate schedules, evaluated per optimiser step (not per epoch).
 *
 * Cosine follows timm's CosineLRScheduler (timm/scheduler/cosine_lr.py, cycle_limit 1,
 * decay_rate 1, no noise, no k-decay) with its linear warm-up, but indexed by step:
 *
 *   step < W:                 lr = warmup_lr + step * ((base_lr - warmup_lr) / W)
 *   warmup_prefix (default):  t = step - W, T = total_steps - 1 - W
 *   otherwise (timm's mode):  t = step,     T = total_steps
 *   t < T:                    lr = min_lr + 0.5 (base_lr - min_lr) (1 + cos(pi t / T))
 *   t >= T:                   lr = min_lr
 *
 * The default (warmup_prefix) gives lr(0) = warmup_lr, lr(W) = base_lr and
 * lr(total_steps - 1) = min_lr: warm up, then one full half-cosine over the remaining steps.
 * With warmup_prefix false the curve is exactly timm's CosineLRScheduler(t_initial =
 * total_steps, warmup_t = W, warmup_prefix = False), as DeiT and TPS create it: the warm-up
 * overwrites the start of a cosine that spans the whole run, so lr(W) < base_lr and the
 * run ends just above min_lr. DeiT/TPS step it once per epoch (t_in_epochs): their exact
 * per-epoch lrs are tpsc_lr_at(s, epoch) with W and total_steps counted in epochs. Per
 * optimiser step is smoother (no jump at each epoch boundary) and is what tpsc trains with. */
#ifndef TPSC_OPTIM_SCHEDULE_H
#define TPSC_OPTIM_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

#include "src/util/status.h"

typedef enum tpsc_lr_kind {
    TPSC_LR_CONSTANT = 0, /* base_lr at every step (warm-up still applies if warmup_steps > 0) */
    TPSC_LR_COSINE,
} tpsc_lr_kind;

typedef struct tpsc_lr_schedule {
    tpsc_lr_kind kind;
    double base_lr;       /* peak lr, reached at the end of warm-up */
    double warmup_lr;     /* lr at step 0 (timm warmup_lr_init); 1e-6 in TPS */
    double min_lr;        /* cosine floor (timm lr_min); 1e-5 in TPS */
    int64_t warmup_steps; /* W; 0 = no warm-up */
    int64_t total_steps;  /* steps in the whole run, warm-up included */
    bool warmup_prefix;   /* cosine after warm-up, ends on min_lr (true); timm's curve (false) */
} tpsc_lr_schedule;

/* Cosine with warmup_prefix, the given endpoints; constant when kind says so. */
tpsc_lr_schedule tpsc_lr_cosine(double base_lr, double warmup_lr, double min_lr,
                                int64_t warmup_steps, int64_t total_steps);
tpsc_lr_schedule tpsc_lr_constant(double base_lr);

/* TPSC_ERR_CONFIG naming the field: negative or non-finite lr, warmup_steps < 0,
 * total_steps < 1 for cosine, warmup_steps >= total_steps for cosine. */
tpsc_status tpsc_lr_check(const tpsc_lr_schedule *s);

/* The learning rate at optimiser step `step` (0-based). Steps past the end give min_lr. */
double tpsc_lr_at(const tpsc_lr_schedule *s, int64_t step);

#endif
