/* Drawing token maps: a row of panels per image -- the image as the model sees it, then one
 * panel per stage with the patches pruned so far greyed out and, for squeezing methods, each
 * newly squeezed patch joined by a line to the patch of its host, and hosts outlined. For
 * merging methods (tome, atme) a panel paints each token's region of patches in the region's
 * mean colour, with borders where regions meet.
 * A contact sheet stacks rows. RGB 8-bit canvases; PNG through stb_image_write. */
#ifndef TPSC_VIZ_RENDER_H
#define TPSC_VIZ_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "src/viz/token_map.h"

typedef struct tpsc_rgb_image {
    uint8_t *pix;   /* [height, width, 3] */
    int width, height;
} tpsc_rgb_image;

typedef struct tpsc_viz_style {
    int scale;      /* screen pixels per image pixel (>= 1) */
    int gap;        /* white pixels around and between panels */
    bool lines;     /* squeezed patch -> host lines */
    bool outlines;  /* host patches outlined */
} tpsc_viz_style;

/* scale so that a panel is at least 224 pixels, gap 4, lines and outlines on. */
tpsc_viz_style tpsc_viz_default_style(int img_size);

/* A pruned pixel: grey of value GREY_BASE*(1-GREY_MIX) + luminance*GREY_MIX, r = g = b, so a
 * pruned patch reads as washed-out grey on both colour and grey images. */
#define TPSC_VIZ_GREY_BASE 200.0f
#define TPSC_VIZ_GREY_MIX 0.3f

/* Canvas size of `rows` rows of (1 + n_stages) panels of img_size * scale pixels. */
void tpsc_viz_canvas_size(int img_size, int n_stages, int rows, const tpsc_viz_style *st, int *width, int *height);
/* A white canvas (tpsc_rgb_image_free it). */
tpsc_status tpsc_rgb_image_alloc(tpsc_rgb_image *im, int width, int height);
void tpsc_rgb_image_free(tpsc_rgb_image *im);

/* Draws row `row` of the canvas: display_rgb [img_size, img_size, 3] is the model's input
 * image in 0..255. The canvas must be tpsc_viz_canvas_size for at least row + 1 rows and the
 * map's stage count. */
tpsc_status tpsc_viz_draw_row(tpsc_rgb_image *canvas, int row, const uint8_t *display_rgb, int img_size,
                              const tpsc_token_map *map, const tpsc_viz_style *st);

/* Top-left pixel of panel p (0 = the image, 1 + s = after stage s) in row `row`. */
void tpsc_viz_panel_origin(int img_size, int row, int panel, const tpsc_viz_style *st, int *x, int *y);

tpsc_status tpsc_rgb_image_write_png(const tpsc_rgb_image *im, const char *path);

#endif
