/* Colour jitter (torchvision ColorJitter on PIL images, hue left at 0 as DeiT uses it). */
#include <math.h>

#include "data/transforms.h"

static float clamp255(float v) { return v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v); }

static float luminance(const float *px, int channels) {
    return channels >= 3 ? 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2] : px[0];
}

/* PIL ImageEnhance.Brightness: blend with black. */
static void brightness(float *img, size_t n, float f) {
    for (size_t i = 0; i < n; i++) img[i] = clamp255(img[i] * f);
}

/* PIL ImageEnhance.Contrast: blend with the rounded mean grey level. */
static void contrast(float *img, size_t pixels, int channels, float f) {
    double sum = 0.0;
    for (size_t p = 0; p < pixels; p++) sum += luminance(img + p * channels, channels);
    float mean = floorf((float)(sum / pixels) + 0.5f);
    for (size_t i = 0; i < pixels * channels; i++) img[i] = clamp255(mean + f * (img[i] - mean));
}

/* PIL ImageEnhance.Color: blend with the grey version of the image. */
static void saturation(float *img, size_t pixels, int channels, float f) {
    if (channels < 3) return; /* grey has no saturation to change */
    for (size_t p = 0; p < pixels; p++) {
        float *px = img + p * channels;
        float l = floorf(luminance(px, channels) + 0.5f); /* PIL's convert("L") is integer */
        for (int c = 0; c < channels; c++) px[c] = clamp255(l + f * (px[c] - l));
    }
}

void tpsc_color_jitter(tpsc_rng *r, float strength, float *img, int width, int height, int channels) {
    if (strength <= 0.0f) return;
    /* randperm(4) then one factor per enabled op, as torchvision draws them. */
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {
        int j = (int)tpsc_rng_below(r, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    float lo = fmaxf(0.0f, 1.0f - strength), hi = 1.0f + strength;
    float fb = lo + (hi - lo) * tpsc_rng_uniform(r);
    float fc = lo + (hi - lo) * tpsc_rng_uniform(r);
    float fs = lo + (hi - lo) * tpsc_rng_uniform(r);
    size_t pixels = (size_t)width * height;
    for (int k = 0; k < 4; k++) {
        switch (order[k]) {
        case 0: brightness(img, pixels * channels, fb); break;
        case 1: contrast(img, pixels, channels, fc); break;
        case 2: saturation(img, pixels, channels, fs); break;
        default: break; /* hue = 0: no-op */
        }
    }
}
