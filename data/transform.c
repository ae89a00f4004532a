/* One sample through the train or eval transform (the order of timm's
 * transforms_imagenet_train / DeiT's eval transform). */
#include <math.h>

#include "data/transforms.h"

tpsc_status tpsc_transform_init(tpsc_transform *t, const tpsc_augment_config *aug, bool train, int out_channels,
                                int size, uint64_t seed) {
    *t = (tpsc_transform){.aug = aug, .train = train && !aug->no_aug, .out_channels = out_channels,
                          .size = size, .seed = seed};
    if (out_channels != 1 && out_channels != 3)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: channels = %d, expected 1 or 3", out_channels);
    if (size < 1) return tpsc_fail(TPSC_ERR_CONFIG, "data: image_size = %d, expected >= 1", size);
    if (aug->crop_pct <= 0.0f || aug->crop_pct > 1.0f)
        return tpsc_fail(TPSC_ERR_CONFIG, "augment: crop_pct = %g, expected in (0, 1]", aug->crop_pct);
    if (t->train) {
        if (!(aug->scale_min > 0.0f && aug->scale_min <= aug->scale_max && aug->scale_max <= 1.0f))
            return tpsc_fail(TPSC_ERR_CONFIG, "augment: scale = %g, %g, expected 0 < min <= max <= 1", aug->scale_min,
                             aug->scale_max);
        if (!(aug->ratio_min > 0.0f && aug->ratio_min <= aug->ratio_max))
            return tpsc_fail(TPSC_ERR_CONFIG, "augment: ratio = %g, %g, expected 0 < min <= max", aug->ratio_min,
                             aug->ratio_max);
        if (aug->auto_augment[0]) {
            TPSC_TRY(tpsc_randaug_parse(aug->auto_augment, &t->randaug));
            t->randaug.interpolation = aug->interpolation;
            t->use_randaug = true;
        }
    }
    for (int c = 0; c < 3; c++)
        if (!(aug->std[c] > 0.0f)) return tpsc_fail(TPSC_ERR_CONFIG, "augment: std[%d] = %g, expected > 0", c, aug->std[c]);
    return TPSC_OK;
}

tpsc_status tpsc_transform_apply(const tpsc_transform *t, const tpsc_image_view *src, uint64_t epoch,
                                 uint64_t index, tpsc_transform_scratch *s, float *out_chw) {
    const tpsc_augment_config *aug = t->aug;
    int size = t->size, c_src = src->channels, c_out = t->out_channels;
    size_t pixels = (size_t)size * size;
    int c_max = c_src > c_out ? c_src : c_out;
    float *work = tpsc_grow(&s->work, pixels * c_max * sizeof(float), "transform work image");
    float *work2 = work ? tpsc_grow(&s->work2, pixels * c_max * sizeof(float), "transform work image") : NULL;
    if (!work2) return TPSC_ERR_NOMEM;

    tpsc_box box;
    if (t->train) {
        tpsc_rng r = tpsc_rng_keyed(t->seed, epoch, index, TPSC_PURPOSE_CROP);
        tpsc_rrc_box(&r, src->width, src->height, aug->scale_min, aug->scale_max, aug->ratio_min, aug->ratio_max,
                     &box);
    } else {
        tpsc_eval_box(src->width, src->height, size, aug->crop_pct, &box);
    }
    TPSC_TRY(tpsc_crop_resize(src, &box, size, size, aug->interpolation, s, work2));
    tpsc_convert_channels(work2, c_src, work, c_out, pixels);

    if (t->train) {
        tpsc_rng r = tpsc_rng_keyed(t->seed, epoch, index, TPSC_PURPOSE_FLIP);
        if (aug->hflip > 0.0f && tpsc_rng_uniform(&r) < aug->hflip) tpsc_hflip_hwc(work, size, size, c_out);
        if (t->use_randaug) {
            /* timm fills vacated pixels with the dataset mean as a colour. */
            float fill[3];
            for (int c = 0; c < 3; c++) fill[c] = fminf(255.0f, roundf(255.0f * aug->mean[c_out == 1 ? 0 : c]));
            tpsc_rng ra = tpsc_rng_keyed(t->seed, epoch, index, TPSC_PURPOSE_RANDAUG);
            tpsc_randaug_apply(&t->randaug, &ra, work, work2, size, size, c_out, fill);
        } else if (aug->color_jitter > 0.0f) {
            tpsc_rng rj = tpsc_rng_keyed(t->seed, epoch, index, TPSC_PURPOSE_JITTER);
            tpsc_color_jitter(&rj, aug->color_jitter, work, size, size, c_out);
        }
    }
    tpsc_normalize(work, size, size, c_out, aug->mean, aug->std, out_chw);
    if (t->train && aug->reprob > 0.0f) {
        tpsc_rng re = tpsc_rng_keyed(t->seed, epoch, index, TPSC_PURPOSE_ERASE);
        tpsc_random_erase(&re, aug->reprob, aug->remode, aug->recount, out_chw, size, size, c_out);
    }
    return TPSC_OK;
}
