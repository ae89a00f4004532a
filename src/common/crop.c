#include "src/common/crop.h"

#include <math.h>

void crop_eval_box(int width, int height, int size, float crop_pct, float box[4]) {
    const int short_size = (int)floor(size / (double)crop_pct);
    int rw, rh; /* the resized image, as torchvision's Resize(int) computes it */
    if (width <= height) {
        rw = short_size;
        rh = (int)((double)short_size * height / width);
    } else {
        rh = short_size;
        rw = (int)((double)short_size * width / height);
    }
    const int cw = size < rw ? size : rw, ch = size < rh ? size : rh;
    const int left = (int)nearbyint((rw - cw) / 2.0), top = (int)nearbyint((rh - ch) / 2.0);
    const double sx = (double)width / rw, sy = (double)height / rh;
    box[0] = (float)(left * sx), box[1] = (float)(top * sy), box[2] = (float)(cw * sx), box[3] = (float)(ch * sy);
}
