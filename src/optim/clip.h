/* Global gradient norm and clipping, as torch.nn.utils.clip_grad_norm_ (L2, PyTorch 1.13):
 *
 *   norm  = sqrt(sum over non-frozen items of sum g^2)     (accumulated in double)
 *   scale = max_norm / (norm + 1e-6);  g <- g * scale  when scale < 1
 *
 * Unlike PyTorch's default, a non-finite norm is an error: TPSC_ERR_NUMERIC naming the first
 * parameter (in declaration order) with a NaN or Inf gradient, and no gradient is scaled. */
#ifndef TPSC_OPTIM_CLIP_H
#define TPSC_OPTIM_CLIP_H

#include "autograd/params.h"
#include "src/util/status.h"

/* L2 norm of all non-frozen gradients into *norm (also set, to NaN/Inf, when it fails). */
tpsc_status tpsc_grad_norm(const ag_params *p, double *norm);

/* Computes the norm as above into *norm (the pre-clip value, for the log) and scales the
 * gradients if max_norm > 0 and the norm exceeds it. max_norm <= 0 only measures. */
tpsc_status tpsc_clip_grad_norm(ag_params *p, double max_norm, double *norm);

#endif
