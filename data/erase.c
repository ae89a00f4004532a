/* timm RandomErasing (min area 0.02, max area 1/3, aspect 0.3..1/0.3), applied after
 * normalisation, so 'pixel' and 'rand' fill with N(0, 1) values like timm's. */
#include <math.h>

#include "data/transforms.h"

void tpsc_random_erase(tpsc_rng *r, float prob, tpsc_erase_mode mode, int count, float *chw, int width, int height,
                       int channels) {
    if (prob <= 0.0f || tpsc_rng_uniform(r) >= prob) return;
    if (count < 1) count = 1;
    const double min_area = 0.02, max_area = 1.0 / 3.0;
    const double log_lo = log(0.3), log_hi = log(1.0 / 0.3);
    double area = (double)width * height;
    size_t plane = (size_t)width * height;
    for (int k = 0; k < count; k++) {
        for (int attempt = 0; attempt < 10; attempt++) {
            double target = (min_area + (max_area - min_area) * tpsc_rng_uniform(r)) * area / count;
            double aspect = exp(log_lo + (log_hi - log_lo) * tpsc_rng_uniform(r));
            int h = (int)nearbyint(sqrt(target * aspect));
            int w = (int)nearbyint(sqrt(target / aspect));
            if (w < width && h < height) {
                /* random.randint is inclusive of both ends. */
                int top = (int)tpsc_rng_below(r, (uint64_t)(height - h + 1));
                int left = (int)tpsc_rng_below(r, (uint64_t)(width - w + 1));
                for (int c = 0; c < channels; c++) {
                    float channel_value = mode == TPSC_ERASE_RAND ? tpsc_rng_normal(r) : 0.0f;
                    for (int y = top; y < top + h; y++)
                        for (int x = left; x < left + w; x++)
                            chw[c * plane + (size_t)y * width + x] =
                                mode == TPSC_ERASE_PIXEL ? tpsc_rng_normal(r) : channel_value;
                }
                break;
            }
        }
    }
}
