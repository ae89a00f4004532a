/* GELU with the exact erf, as PyTorch's nn.GELU() default (approximate="none"):
 *     y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
 *     dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi). */
#include <math.h>

#include "autograd/ops.h"

#define GELU_PAR 16384 /* erf costs tens of cycles: threads pay off sooner than for an add */

static const float INV_SQRT2 = 0.70710678118654752f;
static const float INV_SQRT_2PI = 0.39894228040143268f;

static void gelu_backward(ag_ctx *ctx, ag_node *n) {
    const ag_tensor *x = n->in[0];
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    const float *dy = n->out->grad, *v = x->data;
    const size_t total = ag_numel(x);
    #pragma omp parallel for if (total > GELU_PAR)
    for (size_t i = 0; i < total; i++) {
        const float cdf = 0.5f * (1.0f + erff(v[i] * INV_SQRT2));
        const float pdf = INV_SQRT_2PI * expf(-0.5f * v[i] * v[i]);
        dx[i] += dy[i] * (cdf + v[i] * pdf);
    }
}

ag_tensor *ag_gelu(ag_ctx *ctx, ag_tensor *x) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    if (!ag_is_contiguous(x)) {
        char s[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "gelu: input %s must be contiguous", ag_shape_str(x, s, sizeof s));
    }
    ag_tensor *y = ag_new(ctx, x->ndim, x->shape);
    if (!y) return NULL;
    const float *v = x->data;
    const size_t total = ag_numel(x);
    #pragma omp parallel for if (total > GELU_PAR)
    for (size_t i = 0; i < total; i++) y->data[i] = 0.5f * v[i] * (1.0f + erff(v[i] * INV_SQRT2));
    ag_record(ctx, "gelu", gelu_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}
