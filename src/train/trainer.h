/* The trainer: `tpsc train RECIPE` end to end.
 *
 * Builds the model from the recipe (optionally from an init checkpoint), the dense teacher,
 * the data loaders, the optimiser and schedule, then runs epochs of
 *     forward (train mode) -> TPS losses -> backward -> clip -> optimiser -> EMA
 * with an evaluation per epoch in inference mode (tokens really removed), writing
 * out_dir/name/{last.h5, best.h5, metrics.jsonl}. Resuming from last.h5 continues bit-exactly. */
#ifndef TPSC_TRAIN_TRAINER_H
#define TPSC_TRAIN_TRAINER_H

#include "src/recipe/recipe.h"
#include "src/train/evaluate.h"

typedef struct tpsc_train_result {
    tpsc_eval_result last_eval;   /* of the final epoch (or of the step limit) */
    float best_top1;
    double train_seconds;
    int64_t steps;
    char run_dir[TPSC_RECIPE_PATH_MAX * 2];
} tpsc_train_result;

/* r must be loaded and validated. Library code: returns a status; the message names the
 * file, key or step at fault. */
tpsc_status tpsc_train_run(const tpsc_recipe *r, tpsc_train_result *res);

#endif
