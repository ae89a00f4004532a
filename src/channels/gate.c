/* The channel gates' ops: the straight-through Gumbel-sigmoid sample used in training, the
 * top-k mask of inference, and the masking of the qkv activations.
 *
 * Gumbel-sigmoid (binary Concrete): z = l + log u - log(1 - u) is l plus logistic noise, so
 * P(z > 0) = sigmoid(l). The forward is the hard sample 1[z > 0]; the backward is that of the
 * soft sample y = sigmoid(z / tau), dy/dl = y (1 - y) / tau, as TPS's token masks use the soft
 * sample of a Gumbel-softmax (src/tokens/gumbel.c). One draw per channel and step: the mask
 * is the same for every image, since export keeps one set of channels for all of them. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/channels/channels.h"

/* saved: y (1 - y) / tau per channel */
static void gumbel_gate_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *logits = n->in[0];
    const size_t L = ag_numel(logits);
    const float *dm = n->out->grad, *slope = n->saved;
    float *dl = ag_grad(ctx, logits);
    if (!dl) return;
    for (size_t c = 0; c < L; c++) dl[c] += dm[c] * slope[c];
}

ag_tensor *chan_gumbel_gate(ag_ctx *ctx, ag_tensor *logits, const float *u, float tau) {
    if (!ag_ok(ctx, 1, logits)) return NULL;
    char s[64];
    if (logits->ndim != 1 || !ag_is_contiguous(logits))
        return ag_error(ctx, TPSC_ERR_SHAPE, "chan_gumbel_gate: logits %s must be a contiguous [L]",
                        ag_shape_str(logits, s, sizeof s));
    if (!u) return ag_error(ctx, TPSC_ERR_ARG, "chan_gumbel_gate: noise u is NULL");
    if (!(tau > 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "chan_gumbel_gate: temperature %g must be > 0", (double)tau);
    const size_t L = logits->shape[0];
    ag_tensor *mask = ag_new1(ctx, L);
    float *slope = ag_alloc(ctx, L * sizeof *slope);
    if (!mask || !slope) return NULL;
    for (size_t c = 0; c < L; c++) {
        if (!(u[c] > 0.0f && u[c] < 1.0f))
            return ag_error(ctx, TPSC_ERR_ARG, "chan_gumbel_gate: noise u[%zu] = %g is outside (0, 1)", c, (double)u[c]);
        const float z = logits->data[c] + (logf(u[c]) - log1pf(-u[c]));
        const float y = 1.0f / (1.0f + expf(-z / tau));
        mask->data[c] = z >= 0.0f ? 1.0f : 0.0f;
        slope[c] = y * (1.0f - y) / tau;
    }
    ag_node *n = ag_record(ctx, "chan_gumbel_gate", gumbel_gate_backward, mask, 1, (ag_tensor *[]){logits});
    if (n) n->saved = slope;
    return mask;
}

bool chan_topk_indices(const float *logits, size_t L, size_t k, int32_t *kept) {
    if (k < 1 || k > L) return false;
    /* selection by rank: channel c is kept when fewer than k channels beat it (a larger logit,
     * or an equal one at a lower index); L is a head size or an MLP width, so L^2 is small */
    size_t n = 0;
    for (size_t c = 0; c < L; c++) {
        size_t rank = 0;
        for (size_t o = 0; o < L && rank < k; o++)
            rank += logits[o] > logits[c] || (logits[o] == logits[c] && o < c) ||
                    (isnan(logits[c]) && !isnan(logits[o]));
        if (rank < k && n < k) kept[n++] = (int32_t)c;
    }
    return n == k;
}

ag_tensor *chan_topk_gate(ag_ctx *ctx, ag_tensor *logits, size_t k) {
    if (!ag_ok(ctx, 1, logits)) return NULL;
    const size_t L = ag_numel(logits);
    ag_tensor *mask = ag_zeros(ctx, 1, (size_t[]){L});
    int32_t *kept = ag_alloc(ctx, (L ? L : 1) * sizeof *kept);
    if (!mask || !kept) return NULL;
    if (!chan_topk_indices(logits->data, L, k, kept))
        return ag_error(ctx, TPSC_ERR_ARG, "chan_topk_gate: cannot keep %zu of %zu channels", k, L);
    for (size_t j = 0; j < k; j++) mask->data[kept[j]] = 1.0f;
    return mask;
}

ag_tensor *chan_mask_qkv(ag_ctx *ctx, ag_tensor *qkv, ag_tensor *qk, ag_tensor *v, size_t heads) {
    if (!ag_ok(ctx, 1, qkv)) return NULL;
    if (!qk && !v) return qkv;
    const size_t C3 = qkv->shape[qkv->ndim - 1], C = C3 / 3, D = heads ? C / heads : 0;
    char s[64];
    if (C3 % 3 || !heads || C % heads || (qk && ag_numel(qk) != D) || (v && ag_numel(v) != D))
        return ag_error(ctx, TPSC_ERR_SHAPE, "chan_mask_qkv: qkv %s does not split into 3 x %zu heads of the masks' width",
                        ag_shape_str(qkv, s, sizeof s), heads);
    ag_tensor *ones = NULL;
    if (!qk || !v) {
        ones = ag_new1(ctx, D);
        if (!ones) return NULL;
        for (size_t c = 0; c < D; c++) ones->data[c] = 1.0f;
    }
    /* [qk x H | qk x H | v x H] -> [3C]; concat's backward sums each copy into its mask */
    ag_tensor **parts = ag_alloc(ctx, 3 * heads * sizeof *parts);
    if (!parts) return NULL;
    for (size_t h = 0; h < heads; h++) {
        parts[h] = parts[heads + h] = qk ? qk : ones;
        parts[2 * heads + h] = v ? v : ones;
    }
    ag_tensor *mask = ag_concat(ctx, (int)(3 * heads), parts, 0);
    return ag_mul(ctx, qkv, mask);
}
