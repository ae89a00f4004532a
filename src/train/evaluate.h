/* Evaluation in inference mode: tokens really removed, no tape. */
#ifndef TPSC_TRAIN_EVALUATE_H
#define TPSC_TRAIN_EVALUATE_H

#include "data/loader.h"
#include "src/infer/tps_infer.h"
#include "src/model/vit.h"

typedef struct tpsc_eval_result {
    double top1, top5;            /* percent */
    double gmacs;                 /* multiply-accumulates per image, 1e9, inference mode */
    double images_per_s;          /* forward passes only (loader time excluded) */
    double mean_kept[TOK_MAX_STAGES]; /* spatial tokens after each stage */
    int n_stages;
    size_t images;
    size_t correct1, correct5;    /* counts behind top1/top5 */
    double forward_s;             /* time in forward passes */
} tpsc_eval_result;

/* One pass over the loader's epoch (a val loader: fixed order). ctx is reset per batch. Under
 * MPI each rank passes its shard (a loader opened with its rank) and every rank receives the
 * whole set's result (tpsc_eval_reduce_ranks); all ranks must call it. 
 * keep_override: tokens per stage instead of the model's (NULL = the model's). */
tpsc_status tpsc_evaluate(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                          tpsc_eval_result *res);

/* tpsc_evaluate without the final tpsc_eval_finish: the sums of one shard, which data-parallel
 * evaluation adds over ranks before finishing. */
tpsc_status tpsc_evaluate_pass(vit_model *m, tpsc_loader *val, ag_ctx *ctx, const size_t *keep_override,
                               tpsc_eval_result *res);

/* The same pass through libtpsinfer (the deployed engine) opened with `oo` (precision, GEMM
 * back-end): m (its weights loaded, its tok_config as configured) is handed to the library in
 * memory; batches of at most max_batch images. */
tpsc_status tpsc_evaluate_library(vit_model *m, tpsc_loader *val, size_t max_batch, const tps_open_options *oo,
                                  tpsc_eval_result *res);

/* Adds a shard's sums (tpsc_evaluate_pass) over the MPI ranks: counts and kept tokens summed,
 * forward time the slowest rank's. A no-op in a single process. */
tpsc_status tpsc_eval_reduce_ranks(tpsc_eval_result *ev);

/* The pieces of both passes: add one batch's logits [n,K], its kept-token counts per stage
 * (NULL: none) and its forward time; then turn the sums into percentages, means and rates. */
void tpsc_eval_add_batch(tpsc_eval_result *res, const float *logits, size_t n, size_t K, const int32_t *labels,
                         int n_stages, const double *kept_per_stage, double forward_s);
tpsc_status tpsc_eval_finish(tpsc_eval_result *res, const vit_model *m);

/* GMACs per image of the model as configured (inference mode). */
double tpsc_model_gmacs(const vit_model *m);

#endif
