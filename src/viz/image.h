/* An image file as the model sees it at evaluation, for `tpsc visualize`: decoded with
 * stb_image, then the eval transform of the checkpoint's recipe (resize the short side to
 * size / crop_pct, centre crop, normalise with the recipe's mean/std) -- the same code the
 * validation loader runs (data/transforms.h). */
#ifndef TPSC_VIZ_IMAGE_H
#define TPSC_VIZ_IMAGE_H

#include <stdint.h>

#include "data/loader.h"

/* chw [channels, size, size]: the model input. display_rgb [size, size, 3]: the same pixels
 * before normalisation (0..255; grey repeated), what the panels show. Errors name the file. */
tpsc_status tpsc_viz_load_image(const char *path, const tpsc_augment_config *aug, int channels, int size, float *chw,
                                uint8_t *display_rgb);

/* Images in a folder (png, jpg, jpeg, bmp, pgm, ppm, pnm; any case), sorted by name, at most
 * max; paths[i] tpsc_malloc'd, free with tpsc_viz_free_list. */
tpsc_status tpsc_viz_list_images(const char *dir, int max, char ***paths, int *n);
void tpsc_viz_free_list(char **paths, int n);

#endif
