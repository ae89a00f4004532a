/* The score predictor, DynamicViT's PredictorLG as in TPS-CVPR2023
 * torch_codebase/models/dynamic_vit.py:
 *   in_conv  = LayerNorm(C) (torch's default eps 1e-5, not the backbone's 1e-6), Linear(C,C), GELU
 *   h [B,N,C]; local = h[..., :C/2]; global = masked mean of h[..., C/2:] over the tokens with
 *   prev = 1, broadcast to every token; z = [local, global]
 *   out_conv = Linear(C,C/2), GELU, Linear(C/2,C/4), GELU, Linear(C/4,2), LogSoftmax
 * Output [B,N,2]: column 0 is the log-probability of keeping the token. */
#include <stdio.h>

#include "autograd/ops.h"
#include "src/tokens/tokens_internal.h"

#define PREDICTOR_LN_EPS 1e-5f

static int add_param(ag_params *params, int stage, const char *suffix, int ndim, const size_t *shape) {
    char name[AG_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "score_predictor.%d.%s", stage, suffix);
    int idx = ag_params_add(params, name, ndim, shape);
    if (idx >= 0) {
        params->items[idx].group = 1;              /* predictors: their own learning rate */
        params->items[idx].no_decay = ndim == 1;   /* biases and the LayerNorm */
    }
    return idx;
}

tpsc_status tok_predictor_declare(tok_predictor *p, ag_params *params, int stage, size_t C) {
    if (!p || !params) return tpsc_fail(TPSC_ERR_ARG, "tok_predictor_declare: NULL argument");
    if (C < 4) return tpsc_fail(TPSC_ERR_ARG, "score_predictor.%d: embed_dim %zu is too small (need >= 4)", stage, C);
    const size_t C2 = C / 2, C4 = C / 4;
    struct { int *idx; const char *suffix; int ndim; size_t s0, s1; } decl[] = {
        {&p->in_norm_w, "in_conv.0.weight", 1, C, 0},   {&p->in_norm_b, "in_conv.0.bias", 1, C, 0},
        {&p->in_fc_w, "in_conv.1.weight", 2, C, C},     {&p->in_fc_b, "in_conv.1.bias", 1, C, 0},
        {&p->out0_w, "out_conv.0.weight", 2, C2, C},    {&p->out0_b, "out_conv.0.bias", 1, C2, 0},
        {&p->out2_w, "out_conv.2.weight", 2, C4, C2},   {&p->out2_b, "out_conv.2.bias", 1, C4, 0},
        {&p->out4_w, "out_conv.4.weight", 2, 2, C4},    {&p->out4_b, "out_conv.4.bias", 1, 2, 0},
    };
    for (size_t d = 0; d < sizeof decl / sizeof decl[0]; d++) {
        *decl[d].idx = add_param(params, stage, decl[d].suffix, decl[d].ndim, (size_t[]){decl[d].s0, decl[d].s1});
        if (*decl[d].idx < 0) {
            tpsc_error_context("score_predictor.%d.%s: ", stage, decl[d].suffix);
            return TPSC_ERR_CONFIG;
        }
    }
    return TPSC_OK;
}

static void fill_trunc_normal(ag_tensor *t, tpsc_rng *rng) {
    const size_t n = ag_numel(t);
    for (size_t i = 0; i < n; i++) t->data[i] = tpsc_rng_trunc_normal(rng, 0.0f, 0.02f, -2.0f, 2.0f);
}

static void fill_const(ag_tensor *t, float v) {
    const size_t n = ag_numel(t);
    for (size_t i = 0; i < n; i++) t->data[i] = v;
}

void tok_predictor_init(const tok_predictor *p, ag_params *params, tpsc_rng *rng) {
    fill_const(ag_param_tensor(params, p->in_norm_w), 1.0f);
    fill_const(ag_param_tensor(params, p->in_norm_b), 0.0f);
    /* draw order: in_conv.1, out_conv.0, out_conv.2, out_conv.4 (the modules' order) */
    const int weights[] = {p->in_fc_w, p->out0_w, p->out2_w, p->out4_w};
    const int biases[] = {p->in_fc_b, p->out0_b, p->out2_b, p->out4_b};
    for (int l = 0; l < 4; l++) {
        fill_trunc_normal(ag_param_tensor(params, weights[l]), rng);
        fill_const(ag_param_tensor(params, biases[l]), 0.0f);
    }
}

ag_tensor *tok_predictor_forward(ag_ctx *ctx, const tok_predictor *p, ag_params *params, ag_tensor *x,
                                 ag_tensor *prev) {
    if (!ag_ok(ctx, 2, x, prev)) return NULL;
    if (x->ndim != 3) {
        char sx[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "score predictor: x %s must be [B,N,C]", ag_shape_str(x, sx, sizeof sx));
    }
    const size_t C = x->shape[2], C2 = C / 2;
#define P(i) ag_param_tensor(params, p->i)
    ag_tensor *h = ag_layernorm(ctx, x, P(in_norm_w), P(in_norm_b), PREDICTOR_LN_EPS);
    h = ag_gelu(ctx, ag_linear(ctx, h, P(in_fc_w), P(in_fc_b)));
    ag_tensor *local = ag_slice(ctx, h, 2, 0, C2);
    ag_tensor *global = tok_masked_mean_tokens(ctx, ag_slice(ctx, h, 2, C2, C - C2), prev);
    ag_tensor *z = ag_concat(ctx, 2, (ag_tensor *[]){local, global}, 2);
    z = ag_gelu(ctx, ag_linear(ctx, z, P(out0_w), P(out0_b)));
    z = ag_gelu(ctx, ag_linear(ctx, z, P(out2_w), P(out2_b)));
    z = ag_linear(ctx, z, P(out4_w), P(out4_b));
#undef P
    return ag_log_softmax(ctx, z);
}
