/* The global feature of the score predictor (official PredictorLG.forward):
 *   g_b = sum_i mask_bi x_bi / sum_i mask_bi,  broadcast to every token of image b.
 * The official code divides by zero when an image has no token left in its mask (NaN, the
 * DynamicViT issue #6); here g_b = 0 then, and no gradient flows through that image.
 * Backward: with G_b = sum_n dL/dout_bn,  dx_bi = mask_bi G_b / den_b,
 * dmask_bi = G_b . (x_bi - g_b) / den_b. */
#include <string.h>

#include "src/tokens/tokens_internal.h"

static void masked_mean_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0], *mask = n->in[1];
    const size_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    const float *dy = n->out->grad, *y = n->out->data, *den = n->saved;
    float *dx = ag_grad(ctx, x), *dmask = ag_grad(ctx, mask);
    float *G = ag_alloc(ctx, C * sizeof(float));
    if (!G) return;
    for (size_t b = 0; b < B; b++) {
        if (den[b] == 0.0f) continue;
        memset(G, 0, C * sizeof(float));
        for (size_t t = 0; t < N; t++)
            for (size_t c = 0; c < C; c++) G[c] += dy[(b * N + t) * C + c];
        const float *g = y + b * N * C; /* row 0 holds g_b */
        for (size_t i = 0; i < N; i++) {
            const float *xi = x->data + (b * N + i) * C;
            const float mi = mask->data[b * N + i];
            if (dx)
                for (size_t c = 0; c < C; c++) dx[(b * N + i) * C + c] += mi * G[c] / den[b];
            if (dmask) {
                float s = 0.0f;
                for (size_t c = 0; c < C; c++) s += G[c] * (xi[c] - g[c]);
                dmask[b * N + i] += s / den[b];
            }
        }
    }
}

ag_tensor *tok_masked_mean_tokens(ag_ctx *ctx, ag_tensor *x, ag_tensor *mask) {
    if (!ag_ok(ctx, 2, x, mask)) return NULL;
    char sx[64], sm[64];
    if (x->ndim != 3 || mask->ndim != 2 || mask->shape[0] != x->shape[0] || mask->shape[1] != x->shape[1])
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_masked_mean_tokens: x %s must be [B,N,C] and mask %s [B,N]",
                        ag_shape_str(x, sx, sizeof sx), ag_shape_str(mask, sm, sizeof sm));
    if (!ag_is_contiguous(x) || !ag_is_contiguous(mask))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_masked_mean_tokens: inputs must be contiguous");
    const size_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    ag_tensor *y = ag_new3(ctx, B, N, C);
    float *den = ag_alloc(ctx, B * sizeof(float));
    if (!y || !den) return NULL;
    for (size_t b = 0; b < B; b++) {
        float *g = y->data + b * N * C;
        memset(g, 0, C * sizeof(float));
        float d = 0.0f;
        for (size_t i = 0; i < N; i++) {
            const float mi = mask->data[b * N + i];
            d += mi;
            for (size_t c = 0; c < C; c++) g[c] += mi * x->data[(b * N + i) * C + c];
        }
        den[b] = d;
        for (size_t c = 0; c < C; c++) g[c] = d != 0.0f ? g[c] / d : 0.0f;
        for (size_t t = 1; t < N; t++) memcpy(g + t * C, g, C * sizeof(float));
    }
    ag_node *n = ag_record(ctx, "tok_masked_mean_tokens", masked_mean_backward, y, 2, (ag_tensor *[]){x, mask});
    if (n) n->saved = den;
    return y;
}
