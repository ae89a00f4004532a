/* Geometry: RandomResizedCrop and eval crop boxes, crop+resize (stb_image_resize), flip,
 * channel conversion and normalisation. */
#include <math.h>
#include <string.h>

#include <stb/stb_image_resize.h>

#include "data/transforms.h"
#include "src/common/crop.h"

void tpsc_rrc_box(tpsc_rng *r, int width, int height, float scale_min, float scale_max, float ratio_min,
                  float ratio_max, tpsc_box *out) {
    double area = (double)width * height;
    double log_lo = log(ratio_min), log_hi = log(ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (scale_min + (scale_max - scale_min) * tpsc_rng_uniform(r));
        double aspect = exp(log_lo + (log_hi - log_lo) * tpsc_rng_uniform(r));
        /* Python's round() is round-half-even, as nearbyint in the default mode. */
        int w = (int)nearbyint(sqrt(target * aspect));
        int h = (int)nearbyint(sqrt(target / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            int top = (int)tpsc_rng_below(r, (uint64_t)(height - h + 1));
            int left = (int)tpsc_rng_below(r, (uint64_t)(width - w + 1));
            *out = (tpsc_box){(float)left, (float)top, (float)w, (float)h};
            return;
        }
    }
    double in_ratio = (double)width / height;
    int w = width, h = height;
    if (in_ratio < ratio_min) h = (int)nearbyint(w / (double)ratio_min);
    else if (in_ratio > ratio_max) w = (int)nearbyint(h * (double)ratio_max);
    *out = (tpsc_box){(float)((width - w) / 2), (float)((height - h) / 2), (float)w, (float)h};
}

void tpsc_eval_box(int width, int height, int size, float crop_pct, tpsc_box *out) {
    float box[4];
    crop_eval_box(width, height, size, crop_pct, box);
    *out = (tpsc_box){box[0], box[1], box[2], box[3]};
}

void tpsc_transform_scratch_free(tpsc_transform_scratch *s) {
    tpsc_grow_free(&s->resize);
    tpsc_grow_free(&s->src_hwc);
    tpsc_grow_free(&s->crop_u8);
    tpsc_grow_free(&s->work);
    tpsc_grow_free(&s->work2);
}

tpsc_status tpsc_crop_resize(const tpsc_image_view *src, const tpsc_box *box, int out_w, int out_h,
                             tpsc_interpolation interp, tpsc_transform_scratch *s, float *out_hwc) {
    int c = src->channels, w = src->width, h = src->height;
    size_t out_n = (size_t)out_w * out_h * c;
    stbir_filter filter = interp == TPSC_INTERP_BILINEAR ? STBIR_FILTER_TRIANGLE : STBIR_FILTER_CATMULLROM;
    float s0 = box->x / w, t0 = box->y / h, s1 = (box->x + box->w) / w, t1 = (box->y + box->h) / h;
    int ok;
    if (src->u8) {
        uint8_t *resized = tpsc_grow(&s->crop_u8, out_n, "resized pixels");
        if (!resized) return TPSC_ERR_NOMEM;
        ok = stbir_resize_region(src->u8, w, h, 0, resized, out_w, out_h, 0, STBIR_TYPE_UINT8, c,
                                 STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, filter, filter,
                                 STBIR_COLORSPACE_LINEAR, &s->resize, s0, t0, s1, t1);
        for (size_t i = 0; i < out_n; i++) out_hwc[i] = resized[i];
    } else {
        size_t plane = (size_t)w * h;
        float *hwc = tpsc_grow(&s->src_hwc, plane * c * sizeof(float), "source pixels HWC");
        if (!hwc) return TPSC_ERR_NOMEM;
        for (int ch = 0; ch < c; ch++)
            for (size_t p = 0; p < plane; p++) hwc[p * c + ch] = src->f32[ch * plane + p] * 255.0f;
        ok = stbir_resize_region(hwc, w, h, 0, out_hwc, out_w, out_h, 0, STBIR_TYPE_FLOAT, c,
                                 STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, filter, filter,
                                 STBIR_COLORSPACE_LINEAR, &s->resize, s0, t0, s1, t1);
        /* Cubic filters overshoot; PIL clamps to the pixel range, so do we. */
        for (size_t i = 0; i < out_n; i++) out_hwc[i] = fminf(fmaxf(out_hwc[i], 0.0f), 255.0f);
    }
    if (!ok)
        return tpsc_fail(TPSC_ERR_INTERNAL, "resize %dx%d box (%g,%g,%g,%g) -> %dx%d failed", w, h, box->x, box->y,
                         box->w, box->h, out_w, out_h);
    return TPSC_OK;
}

void tpsc_hflip_hwc(float *img, int width, int height, int channels) {
    for (int y = 0; y < height; y++) {
        float *row = img + (size_t)y * width * channels;
        for (int a = 0, b = width - 1; a < b; a++, b--)
            for (int c = 0; c < channels; c++) {
                float t = row[a * channels + c];
                row[a * channels + c] = row[b * channels + c];
                row[b * channels + c] = t;
            }
    }
}

void tpsc_convert_channels(const float *in, int c_in, float *out, int c_out, size_t pixels) {
    if (c_in == c_out) {
        memcpy(out, in, pixels * c_in * sizeof *in);
    } else if (c_in == 1) {
        for (size_t p = 0; p < pixels; p++)
            for (int c = 0; c < c_out; c++) out[p * c_out + c] = in[p];
    } else {
        for (size_t p = 0; p < pixels; p++) {
            const float *px = in + p * c_in;
            float l = 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2];
            for (int c = 0; c < c_out; c++) out[p * c_out + c] = l;
        }
    }
}

void tpsc_normalize(const float *hwc, int width, int height, int channels, const float mean[3], const float std[3],
                    float *chw) {
    size_t plane = (size_t)width * height;
    for (int c = 0; c < channels; c++) {
        float m = mean[c < 3 ? c : 2], inv_s = 1.0f / std[c < 3 ? c : 2];
        float *dst = chw + c * plane;
        for (size_t p = 0; p < plane; p++) dst[p] = (hwc[p * channels + c] * (1.0f / 255.0f) - m) * inv_s;
    }
}
