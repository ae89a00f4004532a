#include "src/optim/schedule.h"

#include <math.h>

tpsc_lr_schedule tpsc_lr_cosine(double base_lr, double warmup_lr, double min_lr,
                                int64_t warmup_steps, int64_t total_steps) {
    return (tpsc_lr_schedule){.kind = TPSC_LR_COSINE, .base_lr = base_lr, .warmup_lr = warmup_lr,
                              .min_lr = min_lr, .warmup_steps = warmup_steps,
                              .total_steps = total_steps, .warmup_prefix = true};
}

tpsc_lr_schedule tpsc_lr_constant(double base_lr) {
    return (tpsc_lr_schedule){.kind = TPSC_LR_CONSTANT, .base_lr = base_lr, .warmup_lr = base_lr,
                              .min_lr = base_lr, .total_steps = 1, .warmup_prefix = true};
}

static int bad_lr(double x) { return !isfinite(x) || x < 0.0; }

tpsc_status tpsc_lr_check(const tpsc_lr_schedule *s) {
    if (s->kind != TPSC_LR_CONSTANT && s->kind != TPSC_LR_COSINE)
        return tpsc_fail(TPSC_ERR_CONFIG, "lr schedule: unknown kind %d", (int)s->kind);
    if (bad_lr(s->base_lr)) return tpsc_fail(TPSC_ERR_CONFIG, "lr: %g must be finite and >= 0", s->base_lr);
    if (bad_lr(s->warmup_lr))
        return tpsc_fail(TPSC_ERR_CONFIG, "warmup_lr: %g must be finite and >= 0", s->warmup_lr);
    if (bad_lr(s->min_lr)) return tpsc_fail(TPSC_ERR_CONFIG, "min_lr: %g must be finite and >= 0", s->min_lr);
    if (s->warmup_steps < 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "warmup_steps: %lld must be >= 0", (long long)s->warmup_steps);
    if (s->kind == TPSC_LR_COSINE) {
        if (s->total_steps < 1)
            return tpsc_fail(TPSC_ERR_CONFIG, "total_steps: %lld must be >= 1", (long long)s->total_steps);
        if (s->warmup_steps >= s->total_steps)
            return tpsc_fail(TPSC_ERR_CONFIG, "warmup_steps: %lld must be below total_steps %lld",
                             (long long)s->warmup_steps, (long long)s->total_steps);
    }
    return TPSC_OK;
}

double tpsc_lr_at(const tpsc_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    /* timm: warmup_lr_init + t * s with s = (lr - warmup_lr_init) / warmup_t, in that order */
    if (step < s->warmup_steps)
        return s->warmup_lr + (double)step * ((s->base_lr - s->warmup_lr) / (double)s->warmup_steps);
    if (s->kind == TPSC_LR_CONSTANT) return s->base_lr;
    int64_t t = s->warmup_prefix ? step - s->warmup_steps : step;
    int64_t T = s->warmup_prefix ? s->total_steps - 1 - s->warmup_steps : s->total_steps;
    if (t >= T) return s->min_lr;
    return s->min_lr + 0.5 * (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * (double)t / (double)T));
}
