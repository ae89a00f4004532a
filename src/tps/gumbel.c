/* Straight-through Gumbel-softmax keep mask (tau = 1), as the official
 * torch_codebase/models/functions.py gumbel_softmax(pred_score, hard=True)[:, :, 0:1] * prev.
 *
 * Forward: y = softmax(logp + g) over the 2 columns, g = -log(-log u); the hard sample is the
 * one-hot of argmax y (a tie goes to column 0, keep, as torch's max returns the first index);
 * keep = hard[0] * prev. The official `y_hard - y_soft.detach() + y_soft` is exactly 0 or 1 in
 * float (1 - y with y >= 1/2 is exact), so the value is the hard sample itself.
 * Backward: that of y[0] * prev through the soft sample: d y0/d z0 = y0 y1, d y0/d z1 = -y0 y1;
 * prev receives the hard value (keep is a product hard * prev). */
#include <math.h>

#include "src/tps/tps.h"

/* saved per token: y0, y1 (the soft sample) and hard0 */
static void gumbel_keep_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *logp = n->in[0], *prev = n->in[1];
    const size_t M = ag_numel(prev);
    const float *dk = n->out->grad, *sv = n->saved;
    float *dlogp = ag_grad(ctx, logp), *dprev = ag_grad(ctx, prev);
    for (size_t m = 0; m < M; m++) {
        const float y0 = sv[3 * m], y1 = sv[3 * m + 1], hard = sv[3 * m + 2];
        if (dlogp) {
            const float g = dk[m] * prev->data[m];
            dlogp[2 * m] += g * y0 * y1;
            dlogp[2 * m + 1] -= g * y0 * y1;
        }
        if (dprev) dprev[m] += dk[m] * hard;
    }
}

ag_tensor *tps_gumbel_keep(ag_ctx *ctx, ag_tensor *logp, const float *u, ag_tensor *prev) {
    if (!ag_ok(ctx, 2, logp, prev)) return NULL;
    char sl[64], sp[64];
    if (logp->ndim != 3 || logp->shape[2] != 2 || prev->ndim != 2 || prev->shape[0] != logp->shape[0] ||
        prev->shape[1] != logp->shape[1])
        return ag_error(ctx, TPSC_ERR_SHAPE, "tps_gumbel_keep: logp %s must be [B,N,2] and prev %s [B,N]",
                        ag_shape_str(logp, sl, sizeof sl), ag_shape_str(prev, sp, sizeof sp));
    if (!ag_is_contiguous(logp) || !ag_is_contiguous(prev))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tps_gumbel_keep: logp and prev must be contiguous");
    if (!u) return ag_error(ctx, TPSC_ERR_ARG, "tps_gumbel_keep: noise u is NULL");
    const size_t M = ag_numel(prev);
    ag_tensor *keep = ag_new2(ctx, prev->shape[0], prev->shape[1]);
    float *sv = ag_alloc(ctx, 3 * M * sizeof(float));
    if (!keep || !sv) return NULL;
    for (size_t m = 0; m < M; m++) {
        float z[2];
        for (int c = 0; c < 2; c++) {
            const float uc = u[2 * m + c];
            if (!(uc > 0.0f && uc < 1.0f))
                return ag_error(ctx, TPSC_ERR_ARG, "tps_gumbel_keep: noise u[%zu] = %g is outside (0, 1)", 2 * m + c,
                                (double)uc);
            z[c] = logp->data[2 * m + c] - logf(-logf(uc));
        }
        /* softmax as torch computes it, so that the argmax sees the same rounded values */
        const float zmax = z[0] > z[1] ? z[0] : z[1];
        const float e0 = expf(z[0] - zmax), e1 = expf(z[1] - zmax), s = e0 + e1;
        const float y0 = e0 / s, y1 = e1 / s;
        const float hard = y0 >= y1 ? 1.0f : 0.0f;
        sv[3 * m] = y0;
        sv[3 * m + 1] = y1;
        sv[3 * m + 2] = hard;
        keep->data[m] = hard * prev->data[m];
    }
    ag_node *n = ag_record(ctx, "tps_gumbel_keep", gumbel_keep_backward, keep, 2, (ag_tensor *[]){logp, prev});
    if (n) n->saved = sv;
    return keep;
}
