/* Transforms: box geometry against torchvision's formulas, exact crops, flips, channel
 * conversion, normalisation, RandAugment ops and the eval transform against PIL's own output
 * (tests/fixtures/data/pil_reference.h5, made by tests/data/make_data_fixtures.py), random
 * erasing, soft targets, Mixup/CutMix, and the Beta sampler. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <string.h>

#include "data/data_fixtures.h"
#include "data/transforms.h"

/* torchvision RandomResizedCrop: a box inside the image whose area fraction is in scale and
 * aspect in ratio, up to the rounding of w and h to integers (half a pixel each side). */
Test(data_transforms, rrc_box_respects_scale_and_ratio) {
    const int W = 500, H = 375;
    int fallbacks = 0;
    for (uint64_t i = 0; i < 2000; i++) {
        tpsc_rng r = tpsc_rng_keyed(7, 0, i, TPSC_PURPOSE_CROP);
        tpsc_box b;
        tpsc_rrc_box(&r, W, H, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f, &b);
        cr_assert(b.x >= 0 && b.y >= 0 && b.w >= 1 && b.h >= 1 && b.x + b.w <= W && b.y + b.h <= H);
        cr_assert_eq(b.x, floorf(b.x), "integer boxes");
        float area = b.w * b.h / (float)(W * H);
        float ratio_hi = (b.w + 0.5f) / (b.h - 0.5f), ratio_lo = (b.w - 0.5f) / (b.h + 0.5f);
        if (b.w == W && b.h == H) fallbacks++;
        /* Rounding w and h by up to half a pixel loses at most (w + h) / 2 + 1/4 pixels of area. */
        float min_pixels = 0.08f * W * H - 0.5f * (b.w + b.h) - 0.25f;
        cr_assert(b.w * b.h >= min_pixels && area <= 1.0f, "area %g", area);
        cr_assert(ratio_hi >= 0.75f && ratio_lo <= 4.0f / 3.0f, "ratio of %gx%g", b.w, b.h);
    }
    cr_assert_lt(fallbacks, 20, "the 10 tries rarely all fail at these settings");
}

/* The fallback: scale (1, 1) and ratio (1, 1) on 40x30 needs a 35x35 box, which never fits,
 * so torchvision centre-crops w = h = round(30 * 1) = 30 at left (40 - 30) // 2 = 5, top 0. */
Test(data_transforms, rrc_fallback_is_torchvision_centre_crop) {
    tpsc_rng r = tpsc_rng_keyed(1, 2, 3, 4);
    tpsc_box b;
    tpsc_rrc_box(&r, 40, 30, 1.0f, 1.0f, 1.0f, 1.0f, &b);
    cr_assert_float_eq(b.x, 5.0f, 0.0f);
    cr_assert_float_eq(b.y, 0.0f, 0.0f);
    cr_assert_float_eq(b.w, 30.0f, 0.0f);
    cr_assert_float_eq(b.h, 30.0f, 0.0f);
}

/* DeiT eval on 500x375 at 224, crop_pct 0.875 (hand-computed from torchvision's Resize and
 * CenterCrop): short side 256, long int(256 * 500 / 375) = 341; left round(58.5) = 58 (half
 * to even), top 16; in source pixels x = 58 * 500 / 341, w = 224 * 500 / 341, y = 16 * 375 /
 * 256, h = 224 * 375 / 256. Tolerance 1e-3 px (float). */
Test(data_transforms, eval_box_is_torchvision_resize_centre_crop) {
    tpsc_box b;
    tpsc_eval_box(500, 375, 224, 0.875f, &b);
    cr_assert_float_eq(b.x, 58 * 500 / 341.0f, 1e-3f);
    cr_assert_float_eq(b.w, 224 * 500 / 341.0f, 1e-3f);
    cr_assert_float_eq(b.y, 16 * 375 / 256.0f, 1e-3f);
    cr_assert_float_eq(b.h, 224 * 375 / 256.0f, 1e-3f);
    tpsc_eval_box(375, 500, 224, 0.875f, &b); /* portrait: the same, transposed */
    cr_assert_float_eq(b.y, 58 * 500 / 341.0f, 1e-3f);
    cr_assert_float_eq(b.x, 16 * 375 / 256.0f, 1e-3f);
}

/* An integer box resized to its own size is a copy: cubic weights at integer offsets are
 * (0, 1, 0), so pixels match exactly (uint8 path) or to float rounding (float path, 1e-3). */
Test(data_transforms, crop_at_scale_one_is_exact) {
    enum { W = 40, H = 30 };
    static uint8_t u8[H * W * 3];
    static float f32[3 * H * W], out[16 * 16 * 3];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                u8[(y * W + x) * 3 + c] = fx_pixel(0, y, x, c);
                f32[(c * H + y) * W + x] = fx_pixel(0, y, x, c) / 255.0f;
            }
    tpsc_transform_scratch s = {0};
    tpsc_box box = {5, 3, 16, 16};
    tpsc_image_view v = {.u8 = u8, .width = W, .height = H, .channels = 3};
    cr_assert_eq(tpsc_crop_resize(&v, &box, 16, 16, TPSC_INTERP_BICUBIC, &s, out), TPSC_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) cr_assert_float_eq(out[(y * 16 + x) * 3 + c], fx_pixel(0, y + 3, x + 5, c), 0.0f);
    tpsc_image_view vf = {.f32 = f32, .width = W, .height = H, .channels = 3};
    cr_assert_eq(tpsc_crop_resize(&vf, &box, 16, 16, TPSC_INTERP_BILINEAR, &s, out), TPSC_OK);
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) cr_assert_float_eq(out[(y * 16 + x) * 3 + c], fx_pixel(0, y + 3, x + 5, c), 1e-3f);
    tpsc_transform_scratch_free(&s);
}

/* Downscaling a constant image keeps it constant (filter weights sum to 1; exact in uint8). */
Test(data_transforms, downscale_keeps_constants) {
    static uint8_t u8[64 * 48];
    static float out[17 * 13];
    memset(u8, 97, sizeof u8);
    tpsc_transform_scratch s = {0};
    tpsc_box box = {3.5f, 2.25f, 55.0f, 41.0f};
    tpsc_image_view v = {.u8 = u8, .width = 64, .height = 48, .channels = 1};
    cr_assert_eq(tpsc_crop_resize(&v, &box, 17, 13, TPSC_INTERP_BICUBIC, &s, out), TPSC_OK);
    for (int i = 0; i < 17 * 13; i++) cr_assert_float_eq(out[i], 97.0f, 0.0f);
    tpsc_transform_scratch_free(&s);
}

Test(data_transforms, flip_channels_normalise) {
    float img[2 * 3 * 3], orig[2 * 3 * 3];
    for (int i = 0; i < 18; i++) img[i] = orig[i] = (float)i;
    tpsc_hflip_hwc(img, 3, 2, 3); /* W 3, H 2, C 3 */
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++)
            for (int c = 0; c < 3; c++) cr_assert_eq(img[(y * 3 + x) * 3 + c], orig[(y * 3 + (2 - x)) * 3 + c]);
    float grey[2] = {10, 200}, rgb[6], back[2];
    tpsc_convert_channels(grey, 1, rgb, 3, 2);
    for (int c = 0; c < 3; c++) cr_assert_eq(rgb[3 + c], 200.0f, "grey repeated");
    float colour[3] = {100, 50, 200};
    tpsc_convert_channels(colour, 3, back, 1, 1);
    /* ITU-R 601 luminance as PIL's convert("L"): 0.299 R + 0.587 G + 0.114 B (float, 1e-4). */
    cr_assert_float_eq(back[0], 0.299f * 100 + 0.587f * 50 + 0.114f * 200, 1e-4f);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    float hwc[2 * 3] = {255, 0, 51, 0, 255, 102}, chw[6];
    tpsc_normalize(hwc, 2, 1, 3, mean, std, chw);
    /* (x / 255 - mean) / std, float32 arithmetic: tolerance 1e-5. */
    cr_assert_float_eq(chw[0], (1.0f - 0.485f) / 0.229f, 1e-5f);
    cr_assert_float_eq(chw[1], (0.0f - 0.485f) / 0.229f, 1e-5f);
    cr_assert_float_eq(chw[2], (0.0f - 0.456f) / 0.224f, 1e-5f);
    cr_assert_float_eq(chw[5], (0.4f - 0.406f) / 0.225f, 1e-5f);
}

static void read_u8(hid_t f, const char *name, uint8_t *out) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "%s in pil_reference.h5", name);
    cr_assert(H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
}

static hid_t open_pil(void) {
    hid_t f = H5Fopen(DATA_FIXTURES "/pil_reference.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s/pil_reference.h5", DATA_FIXTURES);
    return f;
}

/* The 40x30 "smooth" image and PIL's result `name` of it. */
static void read_smooth_and(const char *name, uint8_t *smooth, uint8_t *want) {
    hid_t f = open_pil();
    read_u8(f, "smooth", smooth);
    read_u8(f, name, want);
    H5Fclose(f);
}

/* Every RandAugment op of timm's sets at magnitude 9 (both signs where timm negates at
 * random; geometric ops bilinear and bicubic) against PIL applied to the same image. Tolerance 1 level: PIL rounds or truncates
 * each op's result to uint8, we keep floats. */
Test(data_transforms, randaugment_ops_match_pil) {
    hid_t f = open_pil();
    static uint8_t texture[10 * 12 * 3], ops[64 * 360];
    read_u8(f, "texture", texture);
    hid_t d = H5Dopen2(f, "op_names", H5P_DEFAULT);
    hid_t space = H5Dget_space(d);
    int n = (int)H5Sget_simple_extent_npoints(space);
    cr_assert(n >= 40 && n <= 64, "%d ops: 15 timm ops, sign, non-increasing and bicubic variants", n);
    char *names[64];
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5T_CSET_UTF8);
    cr_assert(H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0);
    read_u8(f, "ops", ops);
    const float fill[3] = {124, 116, 104};
    for (int k = 0; k < n; k++) {
        float img[360], tmp[360];
        for (int i = 0; i < 360; i++) img[i] = texture[i];
        char name[64];
        snprintf(name, sizeof name, "%s", names[k]);
        char *bicubic = strstr(name, "_bicubic");
        if (bicubic) *bicubic = '\0';
        char *neg = strstr(name, "_neg");
        if (neg) *neg = '\0';
        tpsc_interpolation interp = bicubic ? TPSC_INTERP_BICUBIC : TPSC_INTERP_BILINEAR;
        cr_assert_eq(tpsc_randaug_op(name, 9.0f, neg != NULL, interp, img, tmp, 12, 10, 3, fill), TPSC_OK, "%s", name);
        bool changed = false, pil_changed = false;
        for (int i = 0; i < 360; i++) {
            cr_assert(fabsf(img[i] - ops[k * 360 + i]) <= 1.0f, "%s pixel %d: ours %g, PIL %d", names[k], i, img[i],
                      ops[k * 360 + i]);
            changed |= img[i] != texture[i];
            pil_changed |= ops[k * 360 + i] != texture[i];
        }
        cr_assert_eq(changed, pil_changed, "%s changes the image as PIL's does (or leaves it)", names[k]);
    }
    H5Dvlen_reclaim(mem, space, H5P_DEFAULT, names);
    H5Tclose(mem), H5Sclose(space), H5Dclose(d), H5Fclose(f);
    float img[4] = {0};
    cr_assert_eq(tpsc_randaug_op("Cutout", 9.0f, false, TPSC_INTERP_BILINEAR, img, img, 2, 2, 1, fill), TPSC_ERR_ARG);
}

/* Equalize on 1200 pixels (below 256 PIL's step is 0 and it does nothing): exact, as both
 * build the same integer lookup table from the histogram. */
Test(data_transforms, equalize_matches_pil) {
    static uint8_t smooth[30 * 40 * 3], want[30 * 40 * 3];
    read_smooth_and("smooth_equalize", smooth, want);
    static float img[30 * 40 * 3], tmp[30 * 40 * 3];
    for (int i = 0; i < 30 * 40 * 3; i++) img[i] = smooth[i];
    const float fill[3] = {0, 0, 0};
    cr_assert_eq(tpsc_randaug_op("Equalize", 9.0f, false, TPSC_INTERP_BICUBIC, img, tmp, 40, 30, 3, fill), TPSC_OK);
    int changed = 0;
    for (int i = 0; i < 30 * 40 * 3; i++) {
        cr_assert_float_eq(img[i], (float)want[i], 0.0f, "pixel %d", i);
        changed += want[i] != smooth[i];
    }
    cr_assert_gt(changed, 100);
}

/* DeiT's eval transform (bicubic short-side resize, centre crop) vs PIL's resize and crop of
 * the same image: within 1 level (PIL rounds to uint8) plus float rounding. */
Test(data_transforms, eval_transform_matches_pil_bicubic) {
    static uint8_t smooth[30 * 40 * 3], want[32 * 32 * 3];
    read_smooth_and("eval_32", smooth, want);
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    fx_unit_normalize(&cfg.aug);
    tpsc_transform t;
    cr_assert_eq(tpsc_transform_init(&t, &cfg.aug, false, 3, 32, 0), TPSC_OK);
    tpsc_transform_scratch s = {0};
    static float out[3 * 32 * 32];
    tpsc_image_view v = {.u8 = smooth, .width = 40, .height = 30, .channels = 3};
    cr_assert_eq(tpsc_transform_apply(&t, &v, 0, 0, &s, out), TPSC_OK);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) {
                float got = out[(c * 32 + y) * 32 + x] * 255.0f;
                cr_assert(fabsf(got - want[(y * 32 + x) * 3 + c]) <= 1.0f + 1e-3f, "(%d,%d,%d): %g vs PIL %d", y, x, c,
                          got, want[(y * 32 + x) * 3 + c]);
            }
    tpsc_transform_scratch_free(&s);
}

Test(data_transforms, randaugment_grammar) {
    tpsc_randaug ra;
    cr_assert_eq(tpsc_randaug_parse("rand-m9-mstd0.5-inc1", &ra), TPSC_OK);
    cr_assert_eq(ra.num_ops, 2, "timm default n = 2");
    cr_assert_float_eq(ra.magnitude, 9.0f, 0.0f);
    cr_assert_float_eq(ra.mstd, 0.5f, 0.0f);
    cr_assert(ra.increasing);
    cr_assert_float_eq(ra.prob, 0.5f, 0.0f, "timm applies each chosen op with p = 0.5");
    cr_assert_eq(tpsc_randaug_parse("rand-n3-m5", &ra), TPSC_OK);
    cr_assert_eq(ra.num_ops, 3);
    cr_assert(!ra.increasing);
    cr_assert_eq(tpsc_randaug_parse("rand-mstd101", &ra), TPSC_OK);
    cr_assert(isinf(ra.mstd), "mstd > 100 means uniform magnitude");
    cr_assert_eq(tpsc_randaug_parse("augmix-m5", &ra), TPSC_ERR_CONFIG);
    cr_assert_eq(tpsc_randaug_parse("rand-w0", &ra), TPSC_ERR_CONFIG);
    cr_assert_eq(tpsc_randaug_parse("rand-m", &ra), TPSC_ERR_CONFIG);
}

/* Colour jitter on a constant grey image: contrast and saturation leave it, brightness scales
 * it by a factor in [0.7, 1.3]; the result stays constant and in that range. */
Test(data_transforms, color_jitter_range) {
    float lo = 1e9f, hi = -1e9f;
    for (uint64_t i = 0; i < 200; i++) {
        float img[4 * 4 * 3];
        for (int k = 0; k < 48; k++) img[k] = 100.0f;
        tpsc_rng r = tpsc_rng_keyed(3, 0, i, TPSC_PURPOSE_JITTER);
        tpsc_color_jitter(&r, 0.3f, img, 4, 4, 3);
        for (int k = 1; k < 48; k++) cr_assert_float_eq(img[k], img[0], 1e-4f);
        cr_assert(img[0] >= 70.0f - 1e-3f && img[0] <= 130.0f + 1e-3f, "%g", img[0]);
        lo = fminf(lo, img[0]), hi = fmaxf(hi, img[0]);
    }
    cr_assert(hi - lo > 30.0f, "the brightness factor varies across samples");
    float img[3] = {1, 2, 3};
    tpsc_rng r = tpsc_rng_keyed(3, 0, 0, 0);
    tpsc_color_jitter(&r, 0.0f, img, 1, 1, 3);
    cr_assert(img[0] == 1 && img[1] == 2 && img[2] == 3, "strength 0 is off");
}

/* timm RandomErasing: with probability 1 one box of area 2%..33% (up to integer rounding)
 * takes N(0,1) values; 'const' writes zeros; the erase rate over 4000 images is p = 0.25
 * within 0.03 (4 standard errors of a binomial proportion). */
Test(data_transforms, random_erasing) {
    enum { S = 32 };
    static float img[3 * S * S];
    for (uint64_t i = 0; i < 200; i++) {
        for (int k = 0; k < 3 * S * S; k++) img[k] = 100.0f;
        tpsc_rng r = tpsc_rng_keyed(5, 0, i, TPSC_PURPOSE_ERASE);
        tpsc_random_erase(&r, 1.0f, i % 2 ? TPSC_ERASE_PIXEL : TPSC_ERASE_CONST, 1, img, S, S, 3);
        int erased = 0;
        for (int k = 0; k < S * S; k++) erased += img[k] != 100.0f;
        for (int c = 1; c < 3; c++)
            for (int k = 0; k < S * S; k++) cr_assert_eq(img[k] != 100.0f, img[c * S * S + k] != 100.0f, "all channels");
        cr_assert(erased >= (int)(0.02 * S * S * 0.7) && erased <= (int)(S * S / 3.0 * 1.3), "area %d", erased);
        if (i % 2 == 0)
            for (int k = 0; k < S * S; k++) cr_assert(img[k] == 100.0f || img[k] == 0.0f);
    }
    int hits = 0;
    for (uint64_t i = 0; i < 4000; i++) {
        float one[3 * 4 * 4];
        for (int k = 0; k < 48; k++) one[k] = 100.0f;
        tpsc_rng r = tpsc_rng_keyed(6, 1, i, TPSC_PURPOSE_ERASE);
        tpsc_random_erase(&r, 0.25f, TPSC_ERASE_CONST, 1, one, 4, 4, 3);
        bool any = false;
        for (int k = 0; k < 48; k++) any |= one[k] != 100.0f;
        hits += any;
    }
    cr_assert(fabs(hits / 4000.0 - 0.25) < 0.03, "erase rate %g", hits / 4000.0);
}

/* timm one_hot with smoothing s over K: off = s / K, on = 1 - s + s / K. */
Test(data_transforms, soft_targets) {
    int32_t labels[2] = {3, 0};
    float t[2 * 10];
    tpsc_soft_targets(labels, 2, 10, 0.1f, t);
    cr_assert_float_eq(t[3], 0.91f, 1e-6f);
    cr_assert_float_eq(t[0], 0.01f, 1e-6f);
    cr_assert_float_eq(t[10], 0.91f, 1e-6f);
    cr_assert_float_eq(t[19], 0.01f, 1e-6f);
}

/* Mixup: sample i becomes lam x_i + (1 - lam) x_{B-1-i} (the flipped batch); targets the same. */
Test(data_transforms, mixup_blends_with_the_flipped_batch) {
    enum { B = 5, C = 2, HW = 9, K = 4 };
    tpsc_augment_config aug;
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    aug = cfg.aug;
    aug.cutmix_alpha = 0.0f;
    int32_t labels[B] = {0, 1, 2, 3, 1};
    for (uint64_t trial = 0; trial < 20; trial++) {
        float images[B * C * HW], targets[B * K], t0[B * K];
        for (int b = 0; b < B; b++)
            for (int k = 0; k < C * HW; k++) images[b * C * HW + k] = (float)b;
        tpsc_soft_targets(labels, B, K, 0.1f, targets);
        memcpy(t0, targets, sizeof t0);
        tpsc_rng r = tpsc_rng_keyed(9, 0, trial, TPSC_PURPOSE_MIXUP);
        float lam;
        bool cutmix;
        tpsc_mixup(&aug, &r, images, targets, B, C, 3, 3, K, &lam, &cutmix);
        cr_assert(!cutmix);
        cr_assert(lam >= 0.0f && lam <= 1.0f);
        for (int b = 0; b < B; b++) {
            float want = lam * b + (1 - lam) * (B - 1 - b);
            for (int k = 0; k < C * HW; k++) cr_assert_float_eq(images[b * C * HW + k], want, 1e-5f);
            for (int k = 0; k < K; k++)
                cr_assert_float_eq(targets[b * K + k], lam * t0[b * K + k] + (1 - lam) * t0[(B - 1 - b) * K + k], 1e-6f);
        }
    }
}

/* CutMix: one box per batch copied from the flipped batch; lam = 1 - box area / image area
 * exactly (timm's correct_lam), so counting replaced pixels recovers lam. */
Test(data_transforms, cutmix_box_and_corrected_lam) {
    enum { B = 4, C = 3, H = 12, W = 10, K = 3 };
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    tpsc_augment_config aug = cfg.aug;
    aug.mixup_alpha = 0.0f;
    int32_t labels[B] = {0, 1, 2, 0};
    int boxes = 0;
    for (uint64_t trial = 0; trial < 50; trial++) {
        static float images[B * C * H * W];
        float targets[B * K], t0[B * K];
        for (int b = 0; b < B; b++)
            for (int k = 0; k < C * H * W; k++) images[b * C * H * W + k] = (float)(b + 1);
        tpsc_soft_targets(labels, B, K, 0.0f, targets);
        memcpy(t0, targets, sizeof t0);
        tpsc_rng r = tpsc_rng_keyed(11, 0, trial, TPSC_PURPOSE_MIXUP);
        float lam;
        bool cutmix;
        tpsc_mixup(&aug, &r, images, targets, B, C, H, W, K, &lam, &cutmix);
        if (lam == 1.0f) continue; /* box clipped to nothing */
        cr_assert(cutmix);
        boxes++;
        for (int b = 0; b < B; b++) {
            int replaced = 0;
            for (int k = 0; k < H * W; k++) {
                float v = images[b * C * H * W + k];
                cr_assert(v == b + 1 || v == B - b, "a pixel is its own or its partner's");
                replaced += v == B - b;
                for (int c = 1; c < C; c++) cr_assert_eq(images[(b * C + c) * H * W + k], v);
            }
            cr_assert_float_eq(lam, 1.0f - replaced / (float)(H * W), 1e-6f, "batch %d", b);
            for (int k = 0; k < K; k++)
                cr_assert_float_eq(targets[b * K + k], lam * t0[b * K + k] + (1 - lam) * t0[(B - 1 - b) * K + k], 1e-6f);
        }
    }
    cr_assert_gt(boxes, 25);
}

/* Batch-level choices: mixup_prob 0 never mixes; with both alphas the CutMix share follows
 * switch_prob 0.5 within 0.05 over 2000 batches (4.5 standard errors). */
Test(data_transforms, mixup_probabilities) {
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    tpsc_augment_config aug = cfg.aug;
    float img[2] = {1, 2}, tgt[4] = {1, 0, 0, 1};
    float lam;
    bool cutmix;
    aug.mixup_prob = 0.0f;
    tpsc_rng r = tpsc_rng_keyed(1, 1, 1, 1);
    tpsc_mixup(&aug, &r, img, tgt, 2, 1, 1, 1, 2, &lam, &cutmix);
    cr_assert(lam == 1.0f && img[0] == 1.0f && tgt[0] == 1.0f);
    aug.mixup_prob = 1.0f;
    int cut = 0;
    for (uint64_t i = 0; i < 2000; i++) {
        float im[2 * 4] = {0}, tg[4] = {1, 0, 0, 1};
        tpsc_rng rr = tpsc_rng_keyed(2, 0, i, TPSC_PURPOSE_MIXUP);
        tpsc_mixup(&aug, &rr, im, tg, 2, 1, 2, 2, 2, &lam, &cutmix);
        cut += cutmix;
    }
    cr_assert(fabs(cut / 2000.0 - 0.5) < 0.05, "CutMix share %g", cut / 2000.0);
}

/* Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)): for a = 0.8, 0.09615; for a = 1,
 * 1/12. 40000 draws: mean within 0.01, variance within 0.005 (over 4 standard errors). */
Test(data_transforms, beta_sampler_moments) {
    const float alphas[2] = {0.8f, 1.0f};
    for (int k = 0; k < 2; k++) {
        double a = alphas[k], sum = 0, sq = 0;
        tpsc_rng r;
        tpsc_rng_seed(&r, 42 + k);
        const int n = 40000;
        for (int i = 0; i < n; i++) {
            double x = tpsc_rng_beta(&r, (float)a, (float)a);
            cr_assert(x >= 0 && x <= 1);
            sum += x, sq += x * x;
        }
        double mean = sum / n, var = sq / n - mean * mean;
        cr_assert(fabs(mean - 0.5) < 0.01, "alpha %g mean %g", a, mean);
        cr_assert(fabs(var - 1.0 / (4 * (2 * a + 1))) < 0.005, "alpha %g var %g", a, var);
    }
}

/* The train transform is a pure function of (seed, epoch, index): the same key gives the same
 * output, another index or epoch another one. */
Test(data_transforms, train_transform_is_keyed) {
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    static uint8_t px[30 * 40 * 3];
    for (int i = 0; i < 30 * 40 * 3; i++) px[i] = (uint8_t)(i * 7);
    tpsc_image_view v = {.u8 = px, .width = 40, .height = 30, .channels = 3};
    tpsc_transform t;
    cr_assert_eq(tpsc_transform_init(&t, &cfg.aug, true, 3, 16, 99), TPSC_OK);
    tpsc_transform_scratch s1 = {0}, s2 = {0};
    static float a[3 * 256], b[3 * 256], c[3 * 256];
    cr_assert_eq(tpsc_transform_apply(&t, &v, 2, 5, &s1, a), TPSC_OK);
    cr_assert_eq(tpsc_transform_apply(&t, &v, 2, 6, &s1, c), TPSC_OK);
    cr_assert_eq(tpsc_transform_apply(&t, &v, 2, 5, &s2, b), TPSC_OK);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert_neq(memcmp(a, c, sizeof a), 0);
    tpsc_transform_scratch_free(&s1);
    tpsc_transform_scratch_free(&s2);
}
