/* The data harnesses' common tail: every sample of an opened dataset (up to a few) goes
 * through the eval transform and the full train transform (RandomResizedCrop, flip,
 * RandAugment, erasing) at a small output size, as the loader's workers would. */
#ifndef TPSC_FUZZ_DATA_H
#define TPSC_FUZZ_DATA_H

#include "data/dataset.h"
#include "data/transforms.h"

static inline void fuzz_transform_samples(tpsc_dataset *ds, size_t max_samples) {
    static tpsc_data_config cfg;
    static bool ready;
    if (!ready) {
        tpsc_data_config_default(&cfg);
        ready = true;
    }
    enum { SIZE = 16, CH = 3 };
    static float out[CH * SIZE * SIZE];
    tpsc_decode_scratch ds_scratch = {0};
    tpsc_transform_scratch tr_scratch = {0};
    tpsc_transform t[2];
    for (int train = 0; train < 2; train++)
        if (tpsc_transform_init(&t[train], &cfg.aug, train, CH, SIZE, 7) != TPSC_OK) abort();
    for (size_t i = 0; i < ds->count && i < max_samples; i++) {
        tpsc_image_view v;
        if (tpsc_dataset_get(ds, i, &ds_scratch, &v) != TPSC_OK) continue;
        for (int train = 0; train < 2; train++) tpsc_transform_apply(&t[train], &v, 0, i, &tr_scratch, out);
    }
    tpsc_decode_scratch_free(&ds_scratch);
    tpsc_transform_scratch_free(&tr_scratch);
    tpsc_clear_error();
}

#endif
