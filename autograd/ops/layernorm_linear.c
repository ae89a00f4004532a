/* LayerNorm followed by a linear layer as one op, x [M,C] as rows (a transformer block's norm1
 * -> qkv and norm2 -> fc1):
 *   h = LayerNorm(x; ln_w, ln_b)   [M,C]
 *   y = h w^T + b                  [M,Cout],  w [Cout,C], b [Cout] or NULL.
 * h is needed by nothing but the linear: as the GEMM's operand forward, and for the weight
 * gradient dw += dy^T h backward (LayerNorm's own backward works from x and the statistics).
 * FP32 keeps h as floats, as the two separate ops did. BF16 needs h only as a bf16 GEMM
 * operand, so it keeps h in bf16 alone, rounded row by row as it is normalised: half the
 * memory of the two LN outputs per block, and no pass that rounds them, forward or backward.
 *
 * Backward:  db += sum_M dy;  dw += dy^T h;  dh = dy w;  then LayerNorm's backward from dh.
 * Every value is computed as ag_layernorm then ag_linear compute it (the same kernels), so the
 * op and the chain agree bit for bit in either precision. */
#include <omp.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "autograd/ops/layernorm_rows.h"
#include "src/common/bf16_round.h"
#include "src/common/rows.h"

#define LNL_PAR 16384 /* element count above which the row loop is worth threads */

enum { IN_X, IN_LNW, IN_LNB, IN_W, IN_B };

typedef struct lnl_saved {
    float *mean, *rstd; /* [M] */
    const float *h;     /* FP32: h [M,C] */
    const uint16_t *hb; /* BF16: bf16(h) [M,C] */
} lnl_saved;

static void layernorm_linear_backward(ag_ctx *ctx, ag_node *n) {
    const lnl_saved *s = n->saved;
    ag_tensor *x = n->in[IN_X], *lnw = n->in[IN_LNW], *lnb = n->in[IN_LNB], *w = n->in[IN_W];
    ag_tensor *b = n->i[0] ? n->in[IN_B] : NULL;
    const int M = (int)ag_rows(x), C = (int)ag_cols(x), Cout = (int)w->shape[0];
    const size_t MC = (size_t)M * (size_t)C;
    const float *dy = n->out->grad;
    float *db = b ? ag_grad(ctx, b) : NULL;
    bool fresh;
    float *dw = ag_grad(ctx, w), *dx = ag_grad_write(ctx, x, &fresh);
    float *dlnw = ag_grad(ctx, lnw), *dlnb = ag_grad(ctx, lnb);
    float *dh = dx || dlnw || dlnb ? ag_scratch_get(ctx, MC) : NULL;
    if (ctx->status != TPSC_OK) return;
    /* and db += sum_M dy, as ag_linear; dy may be kept as bf16 only (fc1's, from the GELU;
     * qkv's, from the attention) */
    ag_operand dyo = n->out->grad_bf16
                         ? ag_operand_grad_bf16_sums(ctx, n->out->grad_bf16, n->out->grad_bf16_sums, Cout, db)
                         : ag_operand_grad_sums(ctx, dy, M, Cout, db);
    if (dh) /* dh [M,C] = dy w */
        ag_gemm(ctx, false, false, M, C, Cout, 1.0f, dyo, Cout, ag_operand_param(ctx, w->data, (size_t)Cout * C), C, 0.0f,
                dh, C);
    if (dw) {
        ag_operand ho = s->hb ? (ag_operand){NULL, s->hb, 0, 0} : ag_operand_act(ctx, s->h, MC);
        ag_gemm(ctx, true, false, Cout, C, M, 1.0f, dyo, Cout, ho, C, 1.0f, dw, C);
        ag_operand_done(ctx, &ho);
    }
    ag_operand_done(ctx, &dyo);
    if (dh) {
        ln_backward_rows(x->data, dh, (size_t)M, (size_t)C, lnw->data, s->mean, s->rstd, dx, fresh, dlnw, dlnb,
                         ln_backward_part(ctx, (size_t)C));
        ag_scratch_put(ctx, dh, MC);
    }
}

/* hb [M,C] = bf16(LayerNorm(x)), each row normalised into the thread's row of `row` [threads,C]
 * and rounded from there. */
static void ln_forward_bf16(const float *x, size_t M, size_t C, const float *wv, const float *bv, float eps,
                            uint16_t *hb, float *row, float *mean, float *rstd) {
    #pragma omp parallel for if (M * C > LNL_PAR)
    for (size_t r = 0; r < M; r++) {
        float *t = row + (size_t)omp_get_thread_num() * C;
        float mu, rs;
        row_layernorm(x + r * C, C, wv, bv, eps, t, &mu, &rs);
        bf16_round_row(t, C, hb + r * C);
        if (mean) {
            mean[r] = mu;
            rstd[r] = rs;
        }
    }
}

static ag_tensor *layernorm_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *ln_w, ag_tensor *ln_b, float eps,
                                   ag_tensor *w, ag_tensor *b, bool out_bf16) {
    if (!ag_ok(ctx, 4, x, ln_w, ln_b, w)) return NULL;
    char sx[64], sw[64], sl[64];
    const size_t C = ag_cols(x);
    if (x->ndim < 1 || C == 0 || ln_w->ndim != 1 || ln_b->ndim != 1 || ln_w->shape[0] != C || ln_b->shape[0] != C)
        return ag_error(ctx, TPSC_ERR_SHAPE, "layernorm_linear: x %s, norm weight %s: the norm's weight and bias must be [C] "
                        "of x's last dim", ag_shape_str(x, sx, sizeof sx), ag_shape_str(ln_w, sl, sizeof sl));
    if (w->ndim != 2 || w->shape[1] != C || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
        return ag_error(ctx, TPSC_ERR_SHAPE, "layernorm_linear: x %s, weight %s", ag_shape_str(x, sx, sizeof sx),
                        ag_shape_str(w, sw, sizeof sw));
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "layernorm_linear: x must be contiguous");
    if (!(eps >= 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "layernorm_linear: eps %g must be >= 0", (double)eps);
    const size_t M = ag_rows(x), Cout = w->shape[0], MC = M * C;
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = Cout;
    out_bf16 = out_bf16 && ctx->precision == AG_BF16;
    ag_tensor *y = out_bf16 ? ag_new_bf16(ctx, x->ndim, shape) : ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    /* Absent inputs are passed as x so the node's input slots stay fixed; i[0] says if b is real. */
    ag_tensor *in[5] = {x, ln_w, ln_b, w, b ? b : x};
    const bool grad = ag_needs_grad(ctx, 5, in);
    lnl_saved *s = grad ? ag_alloc(ctx, sizeof *s) : NULL;
    if (grad && !s) return NULL;
    float *mean = grad ? ag_alloc(ctx, M * sizeof(float)) : NULL, *rstd = grad ? ag_alloc(ctx, M * sizeof(float)) : NULL;
    if (grad && (!mean || !rstd)) return NULL;
    ag_operand ho = {0};
    if (ctx->precision == AG_BF16) {
        uint16_t *hb = ag_alloc(ctx, MC * sizeof(uint16_t));
        float *row = ag_alloc(ctx, (size_t)omp_get_max_threads() * C * sizeof(float));
        if (!hb || !row) return NULL;
        ln_forward_bf16(x->data, M, C, ln_w->data, ln_b->data, eps, hb, row, mean, rstd);
        ho = (ag_operand){NULL, hb, 0, 0};
        if (s) *s = (lnl_saved){mean, rstd, NULL, hb};
    } else {
        float *h = ag_alloc(ctx, MC * sizeof(float));
        if (!h) return NULL;
        ln_forward_rows(x->data, M, C, ln_w->data, ln_b->data, eps, h, mean, rstd);
        ho = ag_operand_act(ctx, h, MC);
        if (s) *s = (lnl_saved){mean, rstd, h, NULL};
    }
    const ag_operand wo = ag_operand_param(ctx, w->data, Cout * C);
    if (out_bf16)
        ag_gemm_linear_to_bf16(ctx, (int)M, (int)Cout, (int)C, ho, wo, b ? b->data : NULL, y->bf16);
    else
        ag_gemm_linear(ctx, (int)M, (int)Cout, (int)C, ho, wo, b ? b->data : NULL, NULL, y->data);
    if (ctx->status != TPSC_OK) return NULL;
    ag_node *node = ag_record(ctx, "layernorm_linear", layernorm_linear_backward, y, 5, in);
    if (node) {
        node->saved = s;
        node->i[0] = b != NULL;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_layernorm_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *ln_w, ag_tensor *ln_b, float eps, ag_tensor *w,
                               ag_tensor *b) {
    return layernorm_linear(ctx, x, ln_w, ln_b, eps, w, b, false);
}

ag_tensor *ag_layernorm_linear_bf16(ag_ctx *ctx, ag_tensor *x, ag_tensor *ln_w, ag_tensor *ln_b, float eps,
                                    ag_tensor *w, ag_tensor *b) {
    return layernorm_linear(ctx, x, ln_w, ln_b, eps, w, b, true);
}
