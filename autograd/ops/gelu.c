/* GELU with the exact erf, as PyTorch's nn.GELU() default (approximate="none"):
 *     y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),
 *     dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
 * Phi and phi come from vecmath.h (float, absolute error < 2.5e-7), so both loops vectorise;
 * Phi is the rational erf, since x Phi(x) needs no relative accuracy in the tail. */
#include "autograd/ops.h"
#include "src/common/vecmath.h"

#define GELU_PAR 16384 /* Phi costs tens of flops: threads pay off sooner than for an add */

static void gelu_backward(ag_ctx *ctx, ag_node *n) {
    const ag_tensor *x = n->in[0];
    bool fresh; /* every element is written: a new buffer is stored into, not zeroed and added to */
    float *dx = ag_grad_write(ctx, n->in[0], &fresh);
    if (!dx) return;
    const float *dy = n->out->grad, *v = x->data;
    const size_t total = ag_numel(x);
    if (fresh) {
        #pragma omp parallel for simd if (parallel: total > GELU_PAR)
        for (size_t i = 0; i < total; i++) dx[i] = dy[i] * (vm_normal_cdf_rational(v[i]) + v[i] * vm_normal_pdf(v[i]));
    } else {
        #pragma omp parallel for simd if (parallel: total > GELU_PAR)
        for (size_t i = 0; i < total; i++) dx[i] += dy[i] * (vm_normal_cdf_rational(v[i]) + v[i] * vm_normal_pdf(v[i]));
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
    float *out = y->data;
    #pragma omp parallel for simd if (parallel: total > GELU_PAR)
    for (size_t i = 0; i < total; i++) out[i] = v[i] * vm_normal_cdf_rational(v[i]);
    ag_record(ctx, "gelu", gelu_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}
