/* Data config defaults (DeiT's ImageNet recipe). Recipes name the enums through the schema (src/recipe/schema.c). */
#include <string.h>

#include "data/loader.h"

void tpsc_data_config_default(tpsc_data_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->format = TPSC_DATA_FASHION_MNIST;
    cfg->image_size = 224;
    cfg->channels = 3;
    cfg->batch_size = 64;
    cfg->workers = 2;
    cfg->prefetch = 4;
    cfg->drop_last = true;
    cfg->shuffle = true;
    cfg->world_size = 1;
    cfg->on_bad_image = TPSC_BAD_IMAGE_ERROR;
    cfg->repeated_aug = 1;
    tpsc_augment_config *a = &cfg->aug;
    a->scale_min = 0.08f;
    a->scale_max = 1.0f;
    a->ratio_min = 3.0f / 4.0f;
    a->ratio_max = 4.0f / 3.0f;
    a->hflip = 0.5f;
    a->color_jitter = 0.3f;
    strcpy(a->auto_augment, "rand-m9-mstd0.5-inc1");
    a->interpolation = TPSC_INTERP_BICUBIC;
    a->reprob = 0.25f;
    a->remode = TPSC_ERASE_PIXEL;
    a->recount = 1;
    a->mixup_alpha = 0.8f;
    a->cutmix_alpha = 1.0f;
    a->mixup_prob = 1.0f;
    a->mixup_switch_prob = 0.5f;
    a->smoothing = 0.1f;
    a->crop_pct = 0.875f;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(a->mean, mean, sizeof mean);
    memcpy(a->std, std, sizeof std);
}
