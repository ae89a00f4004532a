/* Straight-through Gumbel-softmax keep mask (tau = 1), as the official
 * torch_codebase/models/functions.py gumbel_softmax(pred_score, hard=True)[:, :, 0:1] * prev.
 *
 * Forward: y = softmax(logp + g) over the 2 columns, g = -log(-log u); the hard sample is the
 * one-hot of argmax y (a tie goes to column 0, keep, as torch's max returns the first index);
 * keep = hard[0] * prev. The official `y_hard - y_soft.detach() + y_soft` is exactly 0 or 1 in
 * float (1 - y with y >= 1/2 is exact), so the value is the hard sample itself.
 * Backward: that of y[0] * prev through the soft sample: d y0/d z0 = y0 y1, d y0/d z1 = -y0 y1;
 * prev receives the hard value (keep is a product hard * prev).
 *
 * The top-k variant (tps.train_mask = topk, ours) draws the same noise and keeps the same
 * backward, but the hard sample is the k highest perturbed keep logits z0 - z1 among the live
 * tokens: the Gumbel top-k trick, which samples k tokens without replacement in proportion to
 * exp(z0 - z1) ranks. Training then sees exactly the token count inference keeps. */
#include <math.h>

#include "src/tokens/tokens.h"

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

/* The soft sample of one token: z_c = logp_c - log(-log u_c), y = softmax(z) as torch computes
 * it (so that the argmax sees the same rounded values); *margin = z0 - z1, the perturbed keep
 * logit the top-k mask ranks by. False when u is outside (0, 1). */
static bool soft_sample(const float *logp2, const float *u2, float *y0, float *y1, float *margin) {
    float z[2];
    for (int c = 0; c < 2; c++) {
        if (!(u2[c] > 0.0f && u2[c] < 1.0f)) return false;
        z[c] = logp2[c] - logf(-logf(u2[c]));
    }
    const float zmax = z[0] > z[1] ? z[0] : z[1];
    const float e0 = expf(z[0] - zmax), e1 = expf(z[1] - zmax), s = e0 + e1;
    *y0 = e0 / s;
    *y1 = e1 / s;
    *margin = z[0] - z[1];
    return true;
}

static ag_tensor *check_inputs(ag_ctx *ctx, const char *who, ag_tensor *logp, const float *u, ag_tensor *prev) {
    char sl[64], sp[64];
    if (logp->ndim != 3 || logp->shape[2] != 2 || prev->ndim != 2 || prev->shape[0] != logp->shape[0] ||
        prev->shape[1] != logp->shape[1])
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: logp %s must be [B,N,2] and prev %s [B,N]", who,
                        ag_shape_str(logp, sl, sizeof sl), ag_shape_str(prev, sp, sizeof sp));
    if (!ag_is_contiguous(logp) || !ag_is_contiguous(prev))
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: logp and prev must be contiguous", who);
    if (!u) return ag_error(ctx, TPSC_ERR_ARG, "%s: noise u is NULL", who);
    return logp;
}

static ag_tensor *noise_error(ag_ctx *ctx, const char *who, const float *u, size_t m) {
    const size_t c = u[2 * m] > 0.0f && u[2 * m] < 1.0f ? 1 : 0;
    return ag_error(ctx, TPSC_ERR_ARG, "%s: noise u[%zu] = %g is outside (0, 1)", who, 2 * m + c, (double)u[2 * m + c]);
}

/* keep [B,N] from the hard values in sv, recorded with the straight-through backward */
static ag_tensor *record_keep(ag_ctx *ctx, ag_tensor *keep, ag_tensor *logp, ag_tensor *prev, float *sv) {
    const size_t M = ag_numel(prev);
    for (size_t m = 0; m < M; m++) keep->data[m] = sv[3 * m + 2] * prev->data[m];
    ag_node *n = ag_record(ctx, "tok_gumbel_keep", gumbel_keep_backward, keep, 2, (ag_tensor *[]){logp, prev});
    if (n) n->saved = sv;
    return keep;
}

ag_tensor *tok_gumbel_keep(ag_ctx *ctx, ag_tensor *logp, const float *u, ag_tensor *prev) {
    static const char who[] = "tok_gumbel_keep";
    if (!ag_ok(ctx, 2, logp, prev) || !check_inputs(ctx, who, logp, u, prev)) return NULL;
    const size_t M = ag_numel(prev);
    ag_tensor *keep = ag_new2(ctx, prev->shape[0], prev->shape[1]);
    float *sv = ag_alloc(ctx, 3 * M * sizeof(float));
    if (!keep || !sv) return NULL;
    for (size_t m = 0; m < M; m++) {
        float y0, y1, margin;
        if (!soft_sample(logp->data + 2 * m, u + 2 * m, &y0, &y1, &margin)) return noise_error(ctx, who, u, m);
        sv[3 * m] = y0;
        sv[3 * m + 1] = y1;
        sv[3 * m + 2] = y0 >= y1 ? 1.0f : 0.0f; /* a tie keeps, as torch's max returns index 0 */
    }
    return record_keep(ctx, keep, logp, prev, sv);
}

ag_tensor *tok_gumbel_topk_keep(ag_ctx *ctx, ag_tensor *logp, const float *u, ag_tensor *prev, size_t k) {
    static const char who[] = "tok_gumbel_topk_keep";
    if (!ag_ok(ctx, 2, logp, prev) || !check_inputs(ctx, who, logp, u, prev)) return NULL;
    const size_t B = prev->shape[0], N = prev->shape[1], M = B * N;
    if (k < 1 || k > N) return ag_error(ctx, TPSC_ERR_ARG, "%s: cannot keep k = %zu of %zu tokens", who, k, N);
    ag_tensor *keep = ag_new2(ctx, B, N);
    float *sv = ag_alloc(ctx, 3 * M * sizeof(float));
    float *margin = ag_alloc(ctx, M * sizeof(float));
    int32_t *order = ag_alloc(ctx, M * sizeof(int32_t));
    if (!keep || !sv || !margin || !order) return NULL;
    for (size_t m = 0; m < M; m++) {
        if (!soft_sample(logp->data + 2 * m, u + 2 * m, &sv[3 * m], &sv[3 * m + 1], &margin[m]))
            return noise_error(ctx, who, u, m);
        sv[3 * m + 2] = 0.0f;
        /* tokens pruned earlier rank below every live one, whatever their margin */
        if (prev->data[m] != 1.0f) {
            if (prev->data[m] != 0.0f)
                return ag_error(ctx, TPSC_ERR_ARG, "%s: prev[%zu] = %g is not a 0/1 mask", who, m, (double)prev->data[m]);
            margin[m] = -INFINITY;
        }
    }
    if (!tok_sort_desc(ctx, margin, B, N, order)) return NULL;
    for (size_t b = 0; b < B; b++) {
        for (size_t r = 0; r < k; r++) {
            const size_t m = b * N + (size_t)order[b * N + r];
            if (prev->data[m] != 1.0f)
                return ag_error(ctx, TPSC_ERR_ARG, "%s: image %zu has fewer than k = %zu live tokens", who, b, k);
            sv[3 * m + 2] = 1.0f;
        }
    }
    return record_keep(ctx, keep, logp, prev, sv);
}
