#include "src/train/evaluate.h"

#include <string.h>

#include "src/train/progress.h"

double tpsc_model_gmacs(const vit_model *m) {
    const vit_config *c = &m->cfg;
    size_t hidden = (size_t)((float)c->embed_dim * c->mlp_ratio + 0.5f);
    return tps_macs_per_image(&m->tps, c->img_size, c->patch_size, c->in_chans, c->embed_dim, c->depth, hidden,
                              c->num_classes) * 1e-9;
}

/* Is `label` among the k largest of row[0..K)? Ties count against the label (strict >). */
static bool in_top_k(const float *row, size_t K, int32_t label, size_t k) {
    size_t higher = 0;
    for (size_t j = 0; j < K; j++)
        if (row[j] > row[label]) higher++;
    return higher < k;
}

tpsc_status tpsc_evaluate(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                          tpsc_eval_result *res) {
    memset(res, 0, sizeof *res);
    TPSC_TRY(tpsc_loader_seek(val, (tpsc_data_position){0, 0}));
    const size_t K = m->cfg.num_classes;
    size_t correct1 = 0, correct5 = 0;
    double forward_s = 0;
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
        forward_s += tpsc_now() - t0;
        if (!logits) {
            tpsc_loader_release(val, &b);
            st = ag_ctx_status(ctx);
            break;
        }
        for (size_t i = 0; i < b.count; i++) {
            const float *row = logits->data + i * K;
            correct1 += in_top_k(row, K, b.labels[i], 1);
            correct5 += in_top_k(row, K, b.labels[i], K < 5 ? K : 5);
        }
        res->n_stages = out.n_stages;
        for (int s = 0; s < out.n_stages; s++) res->mean_kept[s] += (double)out.kept_count[s] * (double)b.count;
        res->images += b.count;
        tpsc_loader_release(val, &b);
    }
    ag_set_grad_enabled(ctx, saved_grad);
    if (st != TPSC_OK) return st;
    if (res->images == 0) return tpsc_fail(TPSC_ERR_ARG, "evaluation: the validation set is empty");
    res->top1 = 100.0 * (double)correct1 / (double)res->images;
    res->top5 = 100.0 * (double)correct5 / (double)res->images;
    for (int s = 0; s < res->n_stages; s++) res->mean_kept[s] /= (double)res->images;
    res->images_per_s = forward_s > 0 ? (double)res->images / forward_s : 0;
    res->gmacs = tpsc_model_gmacs(m);
    return TPSC_OK;
}
