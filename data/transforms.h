/* Per-sample transforms (torchvision/timm semantics) and the batch-level Mixup/CutMix.
 *
 * Train (timm transforms_imagenet_train): RandomResizedCrop -> horizontal flip ->
 * RandAugment, or colour jitter when RandAugment is off -> normalise -> random erasing.
 * Eval (DeiT): resize the short side to floor(size / crop_pct), centre crop size, normalise.
 *
 * Work images are float HWC holding 0..255 values (what PIL holds as uint8), so thresholds
 * like posterize and solarize keep their PIL meaning; normalisation gives float CHW.
 * Every random draw for a sample comes from tpsc_rng_keyed(seed, epoch, index, purpose).
 * Letters: B batch, C channels, H/W height/width, K classes. */
#ifndef TPSC_DATA_TRANSFORMS_H
#define TPSC_DATA_TRANSFORMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/buffer.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "src/util/rng.h"

/* The `purpose` key of tpsc_rng_keyed: one stream per transform, so turning one knob does
 * not change the draws of the others. Mixup adds the rank. */
enum {
    TPSC_PURPOSE_SHUFFLE = 1,
    TPSC_PURPOSE_CROP = 2,
    TPSC_PURPOSE_FLIP = 3,
    TPSC_PURPOSE_JITTER = 4,
    TPSC_PURPOSE_RANDAUG = 5,
    TPSC_PURPOSE_ERASE = 6,
    TPSC_PURPOSE_MIXUP = 1024,
};

/* A crop in source pixels: left x, top y, width w, height h. */
typedef struct tpsc_box {
    float x, y, w, h;
} tpsc_box;

/* torchvision RandomResizedCrop.get_params: 10 tries of area in scale*W*H and log-uniform
 * aspect ratio, integer box fully inside; else the centre crop clamped to the ratio range. */
void tpsc_rrc_box(tpsc_rng *r, int width, int height, float scale_min, float scale_max, float ratio_min,
                  float ratio_max, tpsc_box *out);
/* DeiT eval: Resize(int(size / crop_pct)) on the short side (torchvision integer sizes),
 * CenterCrop(size) with round((h' - size) / 2); expressed as the source box it covers. */
void tpsc_eval_box(int width, int height, int size, float crop_pct, tpsc_box *out);

typedef struct tpsc_transform_scratch {
    tpsc_grow_buf resize;  /* stb_image_resize work memory */
    tpsc_grow_buf src_hwc; /* a float CHW source transposed to HWC */
    tpsc_grow_buf crop_u8; /* resized uint8 pixels before conversion to float */
    tpsc_grow_buf work;    /* float HWC [H, W, max(C_src, C_out)] */
    tpsc_grow_buf work2;   /* second work image (channel conversion, RandAugment) */
} tpsc_transform_scratch;
void tpsc_transform_scratch_free(tpsc_transform_scratch *s);

/* Crops `box` out of src and resizes it to out_w x out_h with the source's channel count:
 * out_hwc float [out_h, out_w, src->channels], 0..255. */
tpsc_status tpsc_crop_resize(const tpsc_image_view *src, const tpsc_box *box, int out_w, int out_h,
                             tpsc_interpolation interp, tpsc_transform_scratch *s, float *out_hwc);
void tpsc_hflip_hwc(float *img, int width, int height, int channels);
/* Channel count change: 1 -> C repeats; 3 -> 1 is ITU-R 601 luminance as PIL's convert("L"). */
void tpsc_convert_channels(const float *in, int c_in, float *out, int c_out, size_t pixels);
/* torchvision ColorJitter(b, c, s, hue=0) with b = c = s = strength, ops in random order. */
void tpsc_color_jitter(tpsc_rng *r, float strength, float *img, int width, int height, int channels);
/* HWC 0..255 -> CHW (x / 255 - mean) / std. */
void tpsc_normalize(const float *hwc, int width, int height, int channels, const float mean[3], const float std[3],
                    float *chw);
/* timm RandomErasing on a normalised CHW image (probability, area 0.02..1/3, aspect 0.3..3.3). */
void tpsc_random_erase(tpsc_rng *r, float prob, tpsc_erase_mode mode, int count, float *chw, int width, int height,
                       int channels);

/* timm RandAugment, e.g. "rand-m9-mstd0.5-inc1". */
typedef struct tpsc_randaug {
    int num_ops;       /* n, default 2 */
    float magnitude;   /* m, 0..10 */
    float mstd;        /* magnitude noise std; 0 = fixed; infinite (mstd > 100) = uniform in [0, m] */
    float magnitude_max; /* mmax, the clip of the noisy magnitude, default 10 */
    float prob;        /* p, each op applied with this probability, default 0.5 */
    bool increasing;   /* inc1: the "increasing" op set */
    tpsc_interpolation interpolation; /* geometric ops' resampling; the transform sets the config's */
} tpsc_randaug;
tpsc_status tpsc_randaug_parse(const char *spec, tpsc_randaug *out);
/* img float HWC 0..255, tmp the same size; fill = the mean colour 0..255 for vacated pixels. */
void tpsc_randaug_apply(const tpsc_randaug *ra, tpsc_rng *r, float *img, float *tmp, int width, int height,
                        int channels, const float fill[3]);

/* One op by its timm name ("Equalize", "PosterizeIncreasing", "Rotate", ...) at a magnitude
 * 0..10, with timm's random negation fixed to `negate`: for tests against PIL. */
tpsc_status tpsc_randaug_op(const char *name, float magnitude, bool negate, tpsc_interpolation interp, float *img,
                            float *tmp, int width, int height, int channels, const float fill[3]);

/* One sample through the train or eval transform into out_chw [C_out, size, size]. */
typedef struct tpsc_transform {
    const tpsc_augment_config *aug;
    bool train;
    bool use_randaug;
    tpsc_randaug randaug;
    int out_channels, size;
    uint64_t seed;
} tpsc_transform;
tpsc_status tpsc_transform_init(tpsc_transform *t, const tpsc_augment_config *aug, bool train, int out_channels,
                                int size, uint64_t seed);
tpsc_status tpsc_transform_apply(const tpsc_transform *t, const tpsc_image_view *src, uint64_t epoch,
                                 uint64_t index, tpsc_transform_scratch *s, float *out_chw);

/* Soft targets [B, K]: one-hot with smoothing (off = s / K, on = 1 - s + s / K). */
void tpsc_soft_targets(const int32_t *labels, size_t batch, size_t classes, float smoothing, float *targets);
/* timm Mixup, mode "batch": one lam per batch; sample i mixed with sample B-1-i (the batch
 * flipped); CutMix lam corrected to the clipped box area. Mixes images [B, C, H, W] and the
 * soft targets [B, K] in place. Returns lam (1 = unmixed) and whether CutMix was used. */
void tpsc_mixup(const tpsc_augment_config *aug, tpsc_rng *r, float *images, float *targets, size_t batch,
                size_t channels, size_t height, size_t width, size_t classes, float *lam, bool *cutmix);
/* Draws from Beta(a, a) (for Mixup) via two gamma variates. */
float tpsc_rng_beta(tpsc_rng *r, float a, float b);

#endif
