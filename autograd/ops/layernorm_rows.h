/* ag_layernorm's kernels on rows x [M,C], shared with ag_layernorm_linear
 * (ops/layernorm_linear.c) so that both compute every value the same way. */
#ifndef TPSC_AUTOGRAD_OPS_LAYERNORM_ROWS_H
#define TPSC_AUTOGRAD_OPS_LAYERNORM_ROWS_H

#include <stdbool.h>
#include <stddef.h>

#include "autograd/ag.h"

/* y [M,C] = LayerNorm(x) * w + b; mean and rstd [M] receive the statistics (both NULL: not
 * kept). */
void ln_forward_rows(const float *x, size_t M, size_t C, const float *w, const float *b, float eps, float *y,
                     float *mean, float *rstd);
/* From dy [M,C]: dx (stored when fresh, else added; NULL: not wanted), dw and db added to (NULL:
 * not wanted), with x, w and the forward's mean and rstd. part: NULL, or scratch from
 * ln_backward_part, with which dw and db are summed in the same pass as dx. */
void ln_backward_rows(const float *x, const float *dy, size_t M, size_t C, const float *w, const float *mean,
                      const float *rstd, float *dx, bool fresh, float *dw, float *db, double *part);
/* The part scratch for ctx's precision (see layernorm.c). */
double *ln_backward_part(ag_ctx *ctx, size_t C);

#endif
