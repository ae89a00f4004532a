/* The TPS squeeze with real removal, one image: the official TPSModule.forward in eval mode
 * (TPS-CVPR2023 torch_codebase/models/dynamic_vit.py), kept X_r [k,C], dropped X_p [p,C]:
 *   S = cos(X_p, X_r) / T  [p,k]  (x / (||x|| + 1e-6) on both sides, no self mask)
 *   E_ij = [S_ij == max_k S_ik]    (all tied maxima)
 *   W_ji = exp(S_ij) E_ij;  den_j = e + sum_i W_ji;  out_j = x_j e / den_j + sum_i (W_ji / den_j) y_i
 * One sgemm for S (p x k x C); the rest is O(p C). libtpsinfer runs it for dtps and etps, the
 * training framework's differentiable squeeze (src/tokens/squeeze_remove.c) for its forward,
 * keeping the buffers for its backward. */
#ifndef TPSC_COMMON_SQUEEZE_H
#define TPSC_COMMON_SQUEEZE_H

#include <stddef.h>

/* The host's own weight in the squeeze: e = exp(1). */
#define SQUEEZE_HOST_WEIGHT 2.718281828459045f

/* What the squeeze computes on the way, for one image; all written by squeeze_image. */
typedef struct squeeze_buffers {
    float *kept_hat, *dropped_hat;   /* [k,C] [p,C] rows / (||row|| + 1e-6) */
    float *kept_norm, *dropped_norm; /* [k] [p] ||row|| */
    float *sim;                      /* [p,k] S = cos / T */
    float *sim_max;                  /* [p] max_k S_ik, or NULL when not wanted */
    float *den;                      /* [k] den_j */
    float *acc;                      /* [k,C] sum_i W_ji y_i */
} squeeze_buffers;

/* Floats of one scratch block that squeeze_buffers_carve splits (sim_max not included). */
size_t squeeze_scratch_floats(size_t k, size_t p, size_t C);
/* Points b's buffers into scratch (squeeze_scratch_floats(k, p, C) floats); sim_max = NULL. */
void squeeze_buffers_carve(squeeze_buffers *b, float *scratch, size_t k, size_t p, size_t C);
/* out [k,C] (may be kept itself: each host row is read for the last time when it is written),
 * k >= 1, temp > 0. */
void squeeze_image(const float *kept, size_t k, const float *dropped, size_t p, size_t C, float temp, float *out,
                   const squeeze_buffers *b);

#endif
