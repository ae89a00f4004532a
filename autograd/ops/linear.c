/* Linear layer: y = x w^T + b, one GEMM over all M = B*N rows (kernel by precision: gemm.h). */
#include "autograd/gemm.h"
#include "autograd/ops.h"

/* dx [M,Cin] += dy [M,Cout] @ w [Cout,Cin];  dw [Cout,Cin] += dy^T @ x;  db [Cout] += sum_M dy */
static void linear_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    const int M = (int)ag_rows(x), Cin = (int)ag_cols(x), Cout = (int)w->shape[0];
    const float *dy = n->out->grad;
    bool fresh; /* dx is written whole by the sgemm: a new buffer needs no zeroing (beta 0) */
    float *dx = ag_grad_write(ctx, x, &fresh), *dw = ag_grad(ctx, w), *db = b ? ag_grad(ctx, b) : NULL;
    ag_operand dyo = ag_operand_grad_sums(ctx, dy, M, Cout, db); /* and db += sum_M dy */
    if (dx) {
        ag_operand wo = ag_operand_param(ctx, w->data, (size_t)Cout * Cin);
        ag_gemm(ctx, false, false, M, Cin, Cout, 1.0f, dyo, Cout, wo, Cin, fresh ? 0.0f : 1.0f, dx, Cin);
    }
    if (dw) {
        ag_operand xo = ag_operand_act(ctx, x->data, (size_t)M * Cin);
        ag_gemm(ctx, true, false, Cout, Cin, M, 1.0f, dyo, Cout, xo, Cin, 1.0f, dw, Cin);
        ag_operand_done(ctx, &xo);
    }
    ag_operand_done(ctx, &dyo);
}

ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b) {
    if (!ag_ok(ctx, 2, x, w)) return NULL;
    char sx[64], sw[64];
    if (w->ndim != 2 || ag_cols(x) != w->shape[1] || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
        return ag_error(ctx, TPSC_ERR_SHAPE, "linear: x %s, weight %s", ag_shape_str(x, sx, sizeof sx), ag_shape_str(w, sw, sizeof sw));
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "linear: x must be contiguous");
    const int M = (int)ag_rows(x), Cin = (int)ag_cols(x), Cout = (int)w->shape[0];
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = (size_t)Cout;
    ag_tensor *y = ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    /* y [M,Cout] = x [M,Cin] @ w^T + b */
    ag_operand xo = ag_operand_act(ctx, x->data, (size_t)M * Cin);
    ag_gemm_linear(ctx, M, Cout, Cin, xo, ag_operand_param(ctx, w->data, (size_t)Cout * Cin), b ? b->data : NULL, NULL,
                   y->data);
    ag_operand_done(ctx, &xo);
    if (ctx->status != TPSC_OK) return NULL;
    ag_tensor *in[3] = {x, w, b};
    ag_record(ctx, "linear", linear_backward, y, b ? 3 : 2, in);
    return y;
}
