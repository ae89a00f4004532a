/* From the training framework to libtpsinfer: a model with its weights as an inference file,
 * written to disk (`tpsc export`) or made in memory and opened by libtpsinfer without a
 * temporary file (`tpsc eval --precision`, `tpsc bench --engine lib`, and `tpsc infer` /
 * `tpsc visualize` given a training checkpoint). */
#ifndef TPSC_EXPORT_EXPORT_H
#define TPSC_EXPORT_EXPORT_H

#include <stdbool.h>

#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"

/* A training checkpoint loaded for export: the model with the weights chosen, its recipe, class
 * names and the preprocessing its recipe trained with. */
typedef struct tpsc_export {
    vit_model model;
    char *recipe_text;
    char **class_names;
    int n_class_names;
    tpsc_preprocessing preprocessing;
    const char *weights; /* "ema" or "model": the weights loaded */
} tpsc_export;

/* Loads ckpt (format tpsc-checkpoint; an inference file is refused: it is exported already)
 * with its EMA weights when prefer_ema and it has them, else /model. */
tpsc_status tpsc_export_load(tpsc_export *x, const char *ckpt, bool prefer_ema);
/* The inference file, atomically at path (channel gates: the dropped channels removed). */
tpsc_status tpsc_export_write(const tpsc_export *x, const char *path);
/* The inference file made in memory and opened by libtpsinfer (opt NULL: FP32). */
tpsc_status tpsc_export_open(const tpsc_export *x, const tps_open_options *opt, tps_model **out);
void tpsc_export_free(tpsc_export *x); /* zeroed or loaded */

/* m as it is (its weights, its tok_config: a --keep-ratio override included), without class
 * names or preprocessing, opened by libtpsinfer from memory. */
tpsc_status tpsc_export_open_model(const vit_model *m, const tps_open_options *opt, tps_model **out);

/* Any model file for libtpsinfer: an inference file opens as it is; a training checkpoint is
 * exported in memory first, with its EMA weights when it has them (as `tpsc export`). */
tpsc_status tpsc_open_for_inference(const char *path, const tps_open_options *opt, tps_model **out);

#endif
