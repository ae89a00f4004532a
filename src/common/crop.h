/* The evaluation crop (timm/DeiT): torchvision Resize(int(S / crop_pct)) on the short side,
 * then CenterCrop(S), as one box in the source image's pixels, so that one resample of that
 * box to S x S gives the same pixels in the training data pipeline and in libtpsinfer. */
#ifndef TPSC_COMMON_CROP_H
#define TPSC_COMMON_CROP_H

/* box = {left, top, width, height} in source pixels of a width x height image */
void crop_eval_box(int width, int height, int size, float crop_pct, float box[4]);

#endif
