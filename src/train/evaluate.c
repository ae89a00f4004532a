#include "src/train/evaluate.h"

#include <string.h>

#include "src/train/progress.h"

double tpsc_model_gmacs(const vit_model *m) {
    return vit_macs_per_image(&m->cfg, &m->tps) * 1e-9;
}

/* Is `label` among the k largest of row[0..K)? Ties count against the label (strict >). */
static bool in_top_k(const float *row, size_t K, int32_t label, size_t k) {
    size_t higher = 0;
    for (size_t j = 0; j < K; j++)
        if (row[j] > row[label]) higher++;
    return higher < k;
}

void tpsc_eval_add_batch(tpsc_eval_result *res, const float *logits, size_t n, size_t K, const int32_t *labels,
                         int n_stages, const double *kept_per_stage, double forward_s) {
    for (size_t i = 0; i < n; i++) {
        const float *row = logits + i * K;
        res->correct1 += in_top_k(row, K, labels[i], 1);
        res->correct5 += in_top_k(row, K, labels[i], K < 5 ? K : 5);
    }
    res->n_stages = n_stages;
    for (int s = 0; s < n_stages; s++) res->mean_kept[s] += kept_per_stage[s] * (double)n;
    res->images += n;
    res->forward_s += forward_s;
}

tpsc_status tpsc_eval_finish(tpsc_eval_result *res, const vit_model *m) {
    if (res->images == 0) return tpsc_fail(TPSC_ERR_ARG, "evaluation: the validation set is empty");
    res->top1 = 100.0 * (double)res->correct1 / (double)res->images;
    res->top5 = 100.0 * (double)res->correct5 / (double)res->images;
    for (int s = 0; s < res->n_stages; s++) res->mean_kept[s] /= (double)res->images;
    res->images_per_s = res->forward_s > 0 ? (double)res->images / res->forward_s : 0;
    res->gmacs = tpsc_model_gmacs(m);
    return TPSC_OK;
}

tpsc_status tpsc_evaluate(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                          tpsc_eval_result *res) {
    TPSC_TRY(tpsc_evaluate_pass(m, val, ctx, keep_override, res));
    return tpsc_eval_finish(res, m);
}

tpsc_status tpsc_evaluate_pass(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                               tpsc_eval_result *res) {
    memset(res, 0, sizeof *res);
    TPSC_TRY(tpsc_loader_seek(val, (tpsc_data_position){0, 0}));
    const size_t K = m->cfg.num_classes;
    bool saved_grad = ctx->grad_enabled;
    ag_set_grad_enabled(ctx, false);
    tpsc_status st = TPSC_OK;
    for (;;) {
        tpsc_batch b;
        st = tpsc_loader_next(val, &b);
        if (st != TPSC_OK || b.count == 0) break;
        ag_ctx_reset(ctx);
        size_t shape[4] = {b.count, b.channels, b.height, b.width};
        ag_tensor *x = ag_wrap(ctx, b.images, NULL, 4, shape, false);
        vit_forward_opts fo = {.mode = VIT_INFER, .keep_override = keep_override};
        vit_output out;
        double t0 = tpsc_now();
        ag_tensor *logits = vit_forward(ctx, m, x, &fo, &out);
        const double dt = tpsc_now() - t0;
        if (!logits) {
            tpsc_loader_release(val, &b);
            st = ag_ctx_status(ctx);
            break;
        }
        double kept[TOK_MAX_STAGES];
        for (int s = 0; s < out.n_stages; s++) kept[s] = (double)out.kept_count[s];
        tpsc_eval_add_batch(res, logits->data, b.count, K, b.labels, out.n_stages, kept, dt);
        tpsc_loader_release(val, &b);
    }
    ag_set_grad_enabled(ctx, saved_grad);
    return st;
}
