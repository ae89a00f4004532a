/* Data config defaults (DeiT's ImageNet recipe) and the enum names recipes use. */
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

static const char *const format_names[] = {"fashion_mnist", "imagefolder", "idx", "h5"};

const char *tpsc_data_format_name(tpsc_data_format f) {
    return (unsigned)f < sizeof format_names / sizeof *format_names ? format_names[f] : "?";
}

static tpsc_status parse_name(const char *what, const char *name, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = i;
            return TPSC_OK;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n) strncat(list, "|", sizeof list - strlen(list) - 1);
    }
    return tpsc_fail(TPSC_ERR_CONFIG, "%s = \"%s\": expected one of %s", what, name, list);
}

tpsc_status tpsc_data_format_parse(const char *name, tpsc_data_format *out) {
    int v;
    TPSC_TRY(parse_name("format", name, format_names, 4, &v));
    *out = (tpsc_data_format)v;
    return TPSC_OK;
}

tpsc_status tpsc_bad_image_policy_parse(const char *name, tpsc_bad_image_policy *out) {
    static const char *const names[] = {"error", "skip"};
    int v;
    TPSC_TRY(parse_name("on_bad_image", name, names, 2, &v));
    *out = (tpsc_bad_image_policy)v;
    return TPSC_OK;
}

tpsc_status tpsc_interpolation_parse(const char *name, tpsc_interpolation *out) {
    static const char *const names[] = {"bicubic", "bilinear"};
    int v;
    TPSC_TRY(parse_name("interpolation", name, names, 2, &v));
    *out = (tpsc_interpolation)v;
    return TPSC_OK;
}

tpsc_status tpsc_erase_mode_parse(const char *name, tpsc_erase_mode *out) {
    static const char *const names[] = {"pixel", "rand", "const"};
    int v;
    TPSC_TRY(parse_name("remode", name, names, 3, &v));
    *out = (tpsc_erase_mode)v;
    return TPSC_OK;
}
