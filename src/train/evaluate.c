#include "src/train/evaluate.h"

#include <string.h>

#include "src/dist/dist.h"
#include "src/export/export.h"
#include "src/train/progress.h"
#include "src/util/alloc.h"

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

/* Each rank evaluated its shard of the validation set: add the counts over ranks. */
tpsc_status tpsc_eval_reduce_ranks(tpsc_eval_result *ev) {
    if (!dist_active()) return TPSC_OK;
    double v[4 + TOK_MAX_STAGES] = {(double)ev->images, (double)ev->correct1, (double)ev->correct5};
    for (int k = 0; k < ev->n_stages; k++) v[4 + k] = ev->mean_kept[k];
    TPSC_TRY(dist_sum_doubles(v, 4 + TOK_MAX_STAGES));
    double mx[2] = {ev->forward_s, (double)ev->n_stages};
    TPSC_TRY(dist_max_doubles(mx, 2));
    ev->images = (size_t)v[0];
    ev->correct1 = (size_t)v[1];
    ev->correct5 = (size_t)v[2];
    ev->n_stages = (int)mx[1];
    for (int k = 0; k < ev->n_stages; k++) ev->mean_kept[k] = v[4 + k];
    ev->forward_s = mx[0]; /* the ranks run side by side: the slowest one's time */
    return TPSC_OK;
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

/* One engine's inference pass on a batch of n images [n,C,H,W]: *logits [n,K] (the engine's
 * until its next call), kept[s] the spatial tokens after stage s (mean over the batch). */
typedef tpsc_status (*eval_forward)(void *engine, const tpsc_batch *b, const float **logits, int *n_stages,
                                    double *kept);

/* The evaluation loop both engines share: every batch of the loader's epoch, timed forward;
 * res receives the sums (tpsc_eval_finish turns them into rates). */
static tpsc_status evaluate_loop(eval_forward forward, void *engine, const vit_model *m, tpsc_loader *val,
                                 tpsc_eval_result *res) {
    memset(res, 0, sizeof *res);
    TPSC_TRY(tpsc_loader_seek(val, (tpsc_data_position){0, 0}));
    const size_t K = m->cfg.num_classes;
    tpsc_status st = TPSC_OK;
    for (;;) {
        tpsc_batch b;
        st = tpsc_loader_next(val, &b);
        if (st != TPSC_OK || b.count == 0) break;
        const float *logits = NULL;
        int n_stages = 0;
        double kept[TOK_MAX_STAGES];
        const double t0 = tpsc_now();
        st = forward(engine, &b, &logits, &n_stages, kept);
        const double dt = tpsc_now() - t0;
        if (st == TPSC_OK) tpsc_eval_add_batch(res, logits, b.count, K, b.labels, n_stages, kept, dt);
        tpsc_loader_release(val, &b);
        if (st != TPSC_OK) break;
    }
    return st;
}

/* ---- the framework's forward (VIT_INFER) ---- */

typedef struct framework_engine {
    vit_model *m;
    ag_ctx *ctx;
    const size_t *keep_override;
} framework_engine;

static tpsc_status framework_forward(void *engine, const tpsc_batch *b, const float **logits, int *n_stages,
                                     double *kept) {
    framework_engine *e = engine;
    ag_ctx_reset(e->ctx);
    size_t shape[4] = {b->count, b->channels, b->height, b->width};
    ag_tensor *x = ag_wrap(e->ctx, b->images, NULL, 4, shape, false);
    vit_forward_opts fo = {.mode = VIT_INFER, .keep_override = e->keep_override};
    vit_output out;
    ag_tensor *y = vit_forward(e->ctx, e->m, x, &fo, &out);
    if (!y) return ag_ctx_status(e->ctx);
    *logits = y->data;
    *n_stages = out.n_stages;
    for (int s = 0; s < out.n_stages; s++) kept[s] = (double)out.kept_count[s];
    return TPSC_OK;
}

tpsc_status tpsc_evaluate(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                          tpsc_eval_result *res) {
    TPSC_TRY(tpsc_evaluate_pass(m, val, ctx, keep_override, res));
    TPSC_TRY(tpsc_eval_reduce_ranks(res));
    return tpsc_eval_finish(res, m);
}

tpsc_status tpsc_evaluate_pass(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                               tpsc_eval_result *res) {
    bool saved_grad = ctx->grad_enabled;
    ag_set_grad_enabled(ctx, false);
    framework_engine e = {m, ctx, keep_override};
    tpsc_status st = evaluate_loop(framework_forward, &e, m, val, res);
    ag_set_grad_enabled(ctx, saved_grad);
    return st;
}

/* ---- libtpsinfer's ---- */

typedef struct library_engine {
    tps_workspace *ws;
    float *logits;
    size_t max_batch;
} library_engine;

static tpsc_status library_forward(void *engine, const tpsc_batch *b, const float **logits, int *n_stages,
                                   double *kept) {
    library_engine *e = engine;
    if (b->count > e->max_batch)
        return tpsc_fail(TPSC_ERR_INTERNAL, "a validation batch of %zu images (expected <= %zu)", b->count, e->max_batch);
    if (tps_run(e->ws, b->images, b->count, e->logits) != TPS_OK)
        return tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
    *logits = e->logits;
    *n_stages = tps_num_stages(e->ws);
    for (int s = 0; s < *n_stages; s++) kept[s] = tps_mean_kept(e->ws, s);
    return TPSC_OK;
}

tpsc_status tpsc_evaluate_library(vit_model *m, tpsc_loader *val, size_t max_batch, const tps_open_options *oo,
                                  tpsc_eval_result *res) {
    memset(res, 0, sizeof *res);
    tps_model *lib = NULL;
    library_engine e = {.max_batch = max_batch};
    tpsc_status st = tpsc_export_open_model(m, oo, &lib);
    if (st == TPSC_OK && tps_workspace_create(lib, max_batch, &e.ws) != TPS_OK)
        st = tpsc_fail(TPSC_ERR_ARG, "libtpsinfer: %s", tps_last_error());
    if (st == TPSC_OK) {
        e.logits = tpsc_malloc(max_batch * m->cfg.num_classes * sizeof(float), "eval logits");
        if (!e.logits) st = TPSC_ERR_NOMEM;
    }
    if (st == TPSC_OK) st = evaluate_loop(library_forward, &e, m, val, res);
    if (st == TPSC_OK) st = tpsc_eval_reduce_ranks(res);
    if (st == TPSC_OK) st = tpsc_eval_finish(res, m);
    tpsc_free(e.logits);
    tps_workspace_free(e.ws);
    tps_model_close(lib);
    return st;
}
