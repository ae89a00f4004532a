/* Soft targets and timm's Mixup/CutMix in mode "batch". */
#include <math.h>

#include "data/transforms.h"

void tpsc_soft_targets(const int32_t *labels, size_t batch, size_t classes, float smoothing, float *targets) {
    float off = smoothing / (float)classes, on = 1.0f - smoothing + off;
    for (size_t b = 0; b < batch; b++) {
        float *t = targets + b * classes;
        for (size_t k = 0; k < classes; k++) t[k] = off;
        t[labels[b]] = on;
    }
}

/* Marsaglia and Tsang's method; shape < 1 boosted by u^(1/shape). */
static double gamma_draw(tpsc_rng *r, double shape) {
    if (shape < 1.0) {
        double u = tpsc_rng_uniform_open(r);
        return gamma_draw(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = tpsc_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = tpsc_rng_uniform_open(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

float tpsc_rng_beta(tpsc_rng *r, float a, float b) {
    double x = gamma_draw(r, a), y = gamma_draw(r, b);
    return (float)(x / (x + y));
}

static int clip_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

void tpsc_mixup(const tpsc_augment_config *aug, tpsc_rng *r, float *images, float *targets, size_t batch,
                size_t channels, size_t height, size_t width, size_t classes, float *lam_out, bool *cutmix_out) {
    *lam_out = 1.0f;
    *cutmix_out = false;
    bool mix_on = aug->mixup_alpha > 0.0f || aug->cutmix_alpha > 0.0f;
    if (!mix_on || tpsc_rng_uniform(r) >= aug->mixup_prob) return;
    bool cutmix;
    float lam;
    if (aug->mixup_alpha > 0.0f && aug->cutmix_alpha > 0.0f) {
        cutmix = tpsc_rng_uniform(r) < aug->mixup_switch_prob;
        float a = cutmix ? aug->cutmix_alpha : aug->mixup_alpha;
        lam = tpsc_rng_beta(r, a, a);
    } else if (aug->mixup_alpha > 0.0f) {
        cutmix = false;
        lam = tpsc_rng_beta(r, aug->mixup_alpha, aug->mixup_alpha);
    } else {
        cutmix = true;
        lam = tpsc_rng_beta(r, aug->cutmix_alpha, aug->cutmix_alpha);
    }
    if (lam == 1.0f) return;

    size_t plane = height * width, image = channels * plane;
    if (cutmix) {
        /* timm rand_bbox: centre uniform over the image, sides sqrt(1 - lam) of the image,
         * clipped at the border; lam becomes 1 - (box area / image area). */
        double ratio = sqrt(1.0 - lam);
        int cut_h = (int)(height * ratio), cut_w = (int)(width * ratio);
        int cy = (int)tpsc_rng_below(r, height), cx = (int)tpsc_rng_below(r, width);
        int yl = clip_int(cy - cut_h / 2, 0, (int)height), yh = clip_int(cy + cut_h / 2, 0, (int)height);
        int xl = clip_int(cx - cut_w / 2, 0, (int)width), xh = clip_int(cx + cut_w / 2, 0, (int)width);
        lam = (float)(1.0 - (double)(yh - yl) * (xh - xl) / (double)(height * width));
        /* x[i][box] = x[B-1-i][box]: swapping the box within each pair does it in place. */
        for (size_t i = 0; i < batch / 2; i++) {
            float *a = images + i * image, *b = images + (batch - 1 - i) * image;
            for (size_t c = 0; c < channels; c++)
                for (int y = yl; y < yh; y++)
                    for (int x = xl; x < xh; x++) {
                        size_t o = c * plane + (size_t)y * width + x;
                        float t = a[o];
                        a[o] = b[o];
                        b[o] = t;
                    }
        }
    } else {
        for (size_t i = 0; i < batch / 2; i++) {
            float *a = images + i * image, *b = images + (batch - 1 - i) * image;
            for (size_t o = 0; o < image; o++) {
                float va = a[o], vb = b[o];
                a[o] = lam * va + (1.0f - lam) * vb;
                b[o] = lam * vb + (1.0f - lam) * va;
            }
        }
    }
    /* Targets: t_i = lam t_i + (1 - lam) t_{B-1-i}, the middle sample of an odd batch mixes
     * with itself and stays as it is. */
    for (size_t i = 0; i < batch / 2; i++) {
        float *a = targets + i * classes, *b = targets + (batch - 1 - i) * classes;
        for (size_t k = 0; k < classes; k++) {
            float va = a[k], vb = b[k];
            a[k] = lam * va + (1.0f - lam) * vb;
            b[k] = lam * vb + (1.0f - lam) * va;
        }
    }
    *lam_out = lam;
    *cutmix_out = cutmix;
}
