/* timm RandAugment ("rand-m9-mstd0.5-inc1" grammar) on float HWC images holding 0..255.
 *
 * Per image: choose num_ops ops uniformly with replacement; each is applied with
 * probability p at magnitude m + N(0, mstd) clipped to [0, 10]. Ops follow PIL's
 * definitions (ImageOps / ImageEnhance / affine transforms with the mean colour as fill);
 * geometric ops resample with the transform's interpolation (timm passes DeiT's bicubic). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/transforms.h"

#define LEVEL_DENOM 10.0f

typedef enum {
    OP_AUTOCONTRAST, OP_EQUALIZE, OP_INVERT, OP_ROTATE, OP_POSTERIZE, OP_SOLARIZE, OP_SOLARIZE_ADD, OP_COLOR,
    OP_CONTRAST, OP_BRIGHTNESS, OP_SHARPNESS, OP_SHEAR_X, OP_SHEAR_Y, OP_TRANSLATE_X, OP_TRANSLATE_Y, OP_COUNT
} op_kind;

tpsc_status tpsc_randaug_parse(const char *spec, tpsc_randaug *out) {
    *out = (tpsc_randaug){.num_ops = 2, .magnitude = LEVEL_DENOM, .mstd = 0.0f, .prob = 0.5f, .increasing = false,
                          .magnitude_max = LEVEL_DENOM};
    if (strncmp(spec, "rand", 4) != 0 || (spec[4] != '\0' && spec[4] != '-'))
        return tpsc_fail(TPSC_ERR_CONFIG, "auto_augment = \"%s\": only RandAugment (\"rand-...\") is supported", spec);
    const char *p = spec + 4;
    while (*p == '-') {
        p++;
        char key[8] = {0};
        int k = 0;
        while (*p >= 'a' && *p <= 'z' && k < 7) key[k++] = *p++;
        char *end;
        double v = strtod(p, &end);
        if (end == p)
            return tpsc_fail(TPSC_ERR_CONFIG, "auto_augment = \"%s\": section \"%s\" has no number", spec, key);
        p = end;
        if (strcmp(key, "m") == 0) out->magnitude = (float)v;
        else if (strcmp(key, "n") == 0) out->num_ops = (int)v;
        else if (strcmp(key, "mstd") == 0) out->mstd = v > 100.0 ? INFINITY : (float)v; /* > 100: uniform */
        else if (strcmp(key, "mmax") == 0) out->magnitude_max = (float)v;
        else if (strcmp(key, "inc") == 0) out->increasing = v != 0.0;
        else if (strcmp(key, "p") == 0) out->prob = (float)v;
        else return tpsc_fail(TPSC_ERR_CONFIG, "auto_augment = \"%s\": unknown section \"%s\" (m, n, mstd, mmax, inc, p; weights \"w\" are not supported)", spec, key);
    }
    if (*p != '\0') return tpsc_fail(TPSC_ERR_CONFIG, "auto_augment = \"%s\": cannot parse from \"%s\"", spec, p);
    if (out->num_ops < 0 || out->num_ops > 16 || out->magnitude < 0.0f || out->prob < 0.0f || out->prob > 1.0f ||
        out->mstd < 0.0f)
        return tpsc_fail(TPSC_ERR_CONFIG, "auto_augment = \"%s\": a value is out of range", spec);
    return TPSC_OK;
}

static float clamp255(float v) { return v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v); }
static int bin_of(float v) { return (int)clamp255(v); }

static float grey(const float *px, int channels) {
    return channels >= 3 ? 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2] : px[0];
}

static bool random_sign(tpsc_rng *r) { return tpsc_rng_uniform(r) > 0.5f; }

/* PIL ImageOps.autocontrast (cutoff 0): stretch each channel to 0..255. */
static void autocontrast(float *img, size_t pixels, int channels) {
    for (int c = 0; c < channels; c++) {
        float lo = 255.0f, hi = 0.0f;
        for (size_t p = 0; p < pixels; p++) {
            float v = img[p * channels + c];
            lo = fminf(lo, v);
            hi = fmaxf(hi, v);
        }
        if (hi <= lo) continue;
        float scale = 255.0f / (hi - lo);
        for (size_t p = 0; p < pixels; p++) img[p * channels + c] = clamp255((img[p * channels + c] - lo) * scale);
    }
}

/* PIL ImageOps.equalize: per channel, the cumulative histogram as a lookup table. */
static void equalize(float *img, size_t pixels, int channels) {
    for (int c = 0; c < channels; c++) {
        size_t hist[256] = {0};
        for (size_t p = 0; p < pixels; p++) hist[bin_of(img[p * channels + c])]++;
        size_t nonzero = 0, last = 0;
        for (int i = 0; i < 256; i++)
            if (hist[i]) {
                nonzero++;
                last = hist[i];
            }
        if (nonzero <= 1) continue;
        size_t step = (pixels - last) / 255;
        if (step == 0) continue;
        float lut[256];
        size_t n = step / 2;
        for (int i = 0; i < 256; i++) {
            size_t v = n / step;
            lut[i] = (float)(v > 255 ? 255 : v);
            n += hist[i];
        }
        for (size_t p = 0; p < pixels; p++) img[p * channels + c] = lut[bin_of(img[p * channels + c])];
    }
}

static void blend_with(float *img, const float *degenerate, size_t n, float factor) {
    for (size_t i = 0; i < n; i++) img[i] = clamp255(degenerate[i] + factor * (img[i] - degenerate[i]));
}

/* PIL ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (3x3, centre 5, sum
 * 13); the one-pixel border keeps its values. */
static void sharpness(float *img, float *tmp, int width, int height, int channels, float factor) {
    size_t n = (size_t)width * height * channels;
    memcpy(tmp, img, n * sizeof *img);
    for (int y = 1; y + 1 < height; y++)
        for (int x = 1; x + 1 < width; x++)
            for (int c = 0; c < channels; c++) {
                float sum = 0.0f;
                for (int dy = -1; dy <= 1; dy++)
                    for (int dx = -1; dx <= 1; dx++)
                        sum += img[((size_t)(y + dy) * width + (x + dx)) * channels + c] * (dx == 0 && dy == 0 ? 5.0f : 1.0f);
                tmp[((size_t)y * width + x) * channels + c] = sum / 13.0f;
            }
    blend_with(img, tmp, n, factor);
}

/* Cubic convolution weights for offset t in [0, 1) of the 4 taps at -1, 0, 1, 2 (Keys).
 * PIL's affine/rotate bicubic uses a = -1 (its resize uses -0.5); a = -0.5 here misses PIL
 * by more than a level, a = -1 stays within rounding (tests/test_data_transforms.c). */
#define CUBIC_A -1.0
static void cubic_weights(double t, double w[4]) {
    const double a = CUBIC_A;
    double d[4] = {1 + t, t, 1 - t, 2 - t};
    for (int i = 0; i < 4; i++) {
        double x = d[i];
        w[i] = x <= 1 ? ((a + 2) * x - (a + 3)) * x * x + 1 : ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    }
}

static int clamp_index(int v, int n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

/* Output pixel centre (x, y) samples the input at (a x + b y + c, d x + e y + f), PIL's
 * AFFINE convention; a point outside the image takes `fill`, neighbours past the edge are
 * clamped (PIL's XCLIP/YCLIP). Bilinear or bicubic, as timm's `interpolation` hparam. */
static void affine(float *img, float *tmp, int width, int height, int channels, const double m[6], const float fill[3],
                   tpsc_interpolation interp) {
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            double ox = x + 0.5, oy = y + 0.5;
            double xin = m[0] * ox + m[1] * oy + m[2], yin = m[3] * ox + m[4] * oy + m[5];
            float *dst = tmp + ((size_t)y * width + x) * channels;
            if (xin < 0.0 || yin < 0.0 || xin >= width || yin >= height) {
                for (int c = 0; c < channels; c++) dst[c] = fill[c < 3 ? c : 0];
                continue;
            }
            double sx = xin - 0.5, sy = yin - 0.5;
            int x0 = (int)floor(sx), y0 = (int)floor(sy);
            double fx = sx - x0, fy = sy - y0;
            if (interp == TPSC_INTERP_BILINEAR) {
                int xa = clamp_index(x0, width), xb = clamp_index(x0 + 1, width);
                int ya = clamp_index(y0, height), yb = clamp_index(y0 + 1, height);
                for (int c = 0; c < channels; c++) {
                    double v00 = img[((size_t)ya * width + xa) * channels + c], v01 = img[((size_t)ya * width + xb) * channels + c];
                    double v10 = img[((size_t)yb * width + xa) * channels + c], v11 = img[((size_t)yb * width + xb) * channels + c];
                    dst[c] = (float)((v00 * (1 - fx) + v01 * fx) * (1 - fy) + (v10 * (1 - fx) + v11 * fx) * fy);
                }
            } else {
                double wx[4], wy[4];
                cubic_weights(fx, wx);
                cubic_weights(fy, wy);
                int xs[4], ys[4];
                for (int i = 0; i < 4; i++) xs[i] = clamp_index(x0 - 1 + i, width), ys[i] = clamp_index(y0 - 1 + i, height);
                for (int c = 0; c < channels; c++) {
                    double v = 0.0;
                    for (int j = 0; j < 4; j++) {
                        const float *row = img + (size_t)ys[j] * width * channels + c;
                        double h = 0.0;
                        for (int i = 0; i < 4; i++) h += wx[i] * row[(size_t)xs[i] * channels];
                        v += wy[j] * h;
                    }
                    dst[c] = (float)(v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v)); /* cubic overshoots; PIL clips */
                }
            }
        }
    memcpy(img, tmp, (size_t)width * height * channels * sizeof *img);
}

/* Ops whose level timm negates at random (_randomly_negate). */
static bool op_has_sign(op_kind op, bool increasing) {
    switch (op) {
    case OP_ROTATE: case OP_SHEAR_X: case OP_SHEAR_Y: case OP_TRANSLATE_X: case OP_TRANSLATE_Y: return true;
    case OP_COLOR: case OP_CONTRAST: case OP_BRIGHTNESS: case OP_SHARPNESS: return increasing;
    default: return false;
    }
}

static void apply_op(op_kind op, float mag, bool increasing, bool negate, tpsc_interpolation interp, float *img,
                     float *tmp, int width, int height, int channels, const float fill[3]) {
    size_t pixels = (size_t)width * height, n = pixels * channels;
    float level = mag / LEVEL_DENOM;
    switch (op) {
    case OP_AUTOCONTRAST: autocontrast(img, pixels, channels); break;
    case OP_EQUALIZE: equalize(img, pixels, channels); break;
    case OP_INVERT:
        for (size_t i = 0; i < n; i++) img[i] = 255.0f - img[i];
        break;
    case OP_ROTATE: {
        double deg = level * 30.0;
        if (negate) deg = -deg;
        /* PIL rotate(deg) turns the picture counter-clockwise about its centre. */
        double a = deg * M_PI / 180.0, cs = cos(a), sn = sin(a), cx = width / 2.0, cy = height / 2.0;
        double m[6] = {cs, -sn, cx - cs * cx + sn * cy, sn, cs, cy - sn * cx - cs * cy};
        affine(img, tmp, width, height, channels, m, fill, interp);
        break;
    }
    case OP_POSTERIZE: {
        int bits = (int)(level * 4.0f);
        if (increasing) bits = 4 - bits;
        if (bits >= 8) break;
        int mask = ~((1 << (8 - bits)) - 1) & 0xff;
        for (size_t i = 0; i < n; i++) img[i] = (float)(bin_of(img[i]) & mask);
        break;
    }
    case OP_SOLARIZE: {
        int thresh = (int)(level * 256.0f);
        if (increasing) thresh = 256 - thresh;
        for (size_t i = 0; i < n; i++)
            if (bin_of(img[i]) >= thresh) img[i] = 255.0f - img[i];
        break;
    }
    case OP_SOLARIZE_ADD: {
        float add = (float)(int)(level * 110.0f);
        for (size_t i = 0; i < n; i++)
            if (bin_of(img[i]) < 128) img[i] = clamp255(img[i] + add);
        break;
    }
    case OP_COLOR: case OP_CONTRAST: case OP_BRIGHTNESS: case OP_SHARPNESS: {
        float factor;
        if (increasing) {
            float v = level * 0.9f;
            if (negate) v = -v;
            factor = fmaxf(0.1f, 1.0f + v);
        } else {
            factor = level * 1.8f + 0.1f;
        }
        if (op == OP_BRIGHTNESS) {
            for (size_t i = 0; i < n; i++) img[i] = clamp255(img[i] * factor);
        } else if (op == OP_COLOR) {
            for (size_t p = 0; p < pixels; p++) {
                /* PIL's degenerate image is convert("L"): grey rounded to an integer. */
                float g = floorf(grey(img + p * channels, channels) + 0.5f);
                for (int c = 0; c < channels; c++) tmp[p * channels + c] = g;
            }
            blend_with(img, tmp, n, factor);
        } else if (op == OP_CONTRAST) {
            double sum = 0.0;
            for (size_t p = 0; p < pixels; p++) sum += grey(img + p * channels, channels);
            float mean = floorf((float)(sum / pixels) + 0.5f);
            for (size_t i = 0; i < n; i++) img[i] = clamp255(mean + factor * (img[i] - mean));
        } else {
            sharpness(img, tmp, width, height, channels, factor);
        }
        break;
    }
    case OP_SHEAR_X: case OP_SHEAR_Y: {
        double f = level * 0.3;
        if (negate) f = -f;
        double mx[6] = {1, f, 0, 0, 1, 0}, my[6] = {1, 0, 0, f, 1, 0};
        affine(img, tmp, width, height, channels, op == OP_SHEAR_X ? mx : my, fill, interp);
        break;
    }
    case OP_TRANSLATE_X: case OP_TRANSLATE_Y: {
        double pct = level * 0.45;
        if (negate) pct = -pct;
        double mx[6] = {1, 0, pct * width, 0, 1, 0}, my[6] = {1, 0, 0, 0, 1, pct * height};
        affine(img, tmp, width, height, channels, op == OP_TRANSLATE_X ? mx : my, fill, interp);
        break;
    }
    default: break;
    }
}

void tpsc_randaug_apply(const tpsc_randaug *ra, tpsc_rng *r, float *img, float *tmp, int width, int height,
                        int channels, const float fill[3]) {
    op_kind chosen[16];
    for (int i = 0; i < ra->num_ops; i++) chosen[i] = (op_kind)tpsc_rng_below(r, OP_COUNT);
    for (int i = 0; i < ra->num_ops; i++) {
        if (ra->prob < 1.0f && tpsc_rng_uniform(r) > ra->prob) continue;
        float mag = ra->magnitude;
        if (isinf(ra->mstd)) mag = mag * tpsc_rng_uniform(r);
        else if (ra->mstd > 0.0f) mag += ra->mstd * tpsc_rng_normal(r);
        mag = fmaxf(0.0f, fminf(mag, ra->magnitude_max));
        /* timm draws the sign inside the level function, after the magnitude. */
        bool negate = op_has_sign(chosen[i], ra->increasing) && random_sign(r);
        apply_op(chosen[i], mag, ra->increasing, negate, ra->interpolation, img, tmp, width, height, channels, fill);
    }
}

static const char *const op_names[OP_COUNT] = {
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
};

tpsc_status tpsc_randaug_op(const char *name, float magnitude, bool negate, tpsc_interpolation interp, float *img,
                            float *tmp, int width, int height, int channels, const float fill[3]) {
    size_t len = strlen(name);
    bool increasing = len > 10 && strcmp(name + len - 10, "Increasing") == 0;
    for (int op = 0; op < OP_COUNT; op++) {
        size_t n = strlen(op_names[op]);
        if (strncmp(name, op_names[op], n) == 0 && (name[n] == '\0' || (increasing && n + 10 == len))) {
            apply_op((op_kind)op, magnitude, increasing, negate, interp, img, tmp, width, height, channels, fill);
            return TPSC_OK;
        }
    }
    return tpsc_fail(TPSC_ERR_ARG, "RandAugment: unknown op \"%s\"", name);
}
