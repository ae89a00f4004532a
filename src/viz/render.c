/* Panels, greying, host lines and outlines on an RGB canvas. See render.h. */
#include "src/viz/render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/util/alloc.h"

/* colours: lines from a squeezed patch to its host, and the host outlines */
static const uint8_t line_rgb[3] = {230, 60, 20};
static const uint8_t host_rgb[3] = {255, 170, 0};
/* borders between merged regions */
static const uint8_t border_rgb[3] = {20, 20, 20};

tpsc_viz_style tpsc_viz_default_style(int img_size) {
    int scale = img_size > 0 ? (224 + img_size - 1) / img_size : 1;
    return (tpsc_viz_style){.scale = scale < 1 ? 1 : scale, .gap = 4, .lines = true, .outlines = true};
}

void tpsc_viz_canvas_size(int img_size, int n_stages, int rows, const tpsc_viz_style *st, int *width, int *height) {
    const int panel = img_size * st->scale, panels = 1 + n_stages;
    *width = panels * panel + (panels + 1) * st->gap;
    *height = rows * panel + (rows + 1) * st->gap;
}

void tpsc_viz_panel_origin(int img_size, int row, int panel, const tpsc_viz_style *st, int *x, int *y) {
    const int size = img_size * st->scale;
    *x = st->gap + panel * (size + st->gap);
    *y = st->gap + row * (size + st->gap);
}

tpsc_status tpsc_rgb_image_alloc(tpsc_rgb_image *im, int width, int height) {
    im->pix = NULL;
    if (width < 1 || height < 1 || (size_t)width * (size_t)height > ((size_t)1 << 28))
        return tpsc_fail(TPSC_ERR_ARG, "visualize: canvas %d x %d", width, height);
    im->pix = tpsc_malloc((size_t)width * (size_t)height * 3, "visualization canvas");
    if (!im->pix) return TPSC_ERR_NOMEM;
    memset(im->pix, 255, (size_t)width * (size_t)height * 3);
    im->width = width, im->height = height;
    return TPSC_OK;
}

void tpsc_rgb_image_free(tpsc_rgb_image *im) {
    tpsc_free(im->pix);
    im->pix = NULL;
}

static void put(tpsc_rgb_image *im, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= im->width || y >= im->height) return;
    memcpy(im->pix + ((size_t)y * (size_t)im->width + (size_t)x) * 3, rgb, 3);
}

/* A square brush of side w along the segment (Bresenham). */
static void line(tpsc_rgb_image *im, int x0, int y0, int x1, int y1, int w, const uint8_t rgb[3]) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
        for (int a = 0; a < w; a++)
            for (int b = 0; b < w; b++) put(im, x0 + a - w / 2, y0 + b - w / 2, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

static void outline(tpsc_rgb_image *im, int x, int y, int size, int w, const uint8_t rgb[3]) {
    for (int t = 0; t < w; t++)
        for (int i = 0; i < size; i++) {
            put(im, x + i, y + t, rgb);
            put(im, x + i, y + size - 1 - t, rgb);
            put(im, x + t, y + i, rgb);
            put(im, x + size - 1 - t, y + i, rgb);
        }
}

/* One panel: the image, scaled, with patches where alive[j] == 0 greyed (alive NULL: none). */
static void draw_panel(tpsc_rgb_image *im, int x0, int y0, const uint8_t *display_rgb, int img_size, int patch, size_t grid,
                       const uint8_t *alive, int scale) {
    for (int y = 0; y < img_size * scale; y++)
        for (int x = 0; x < img_size * scale; x++) {
            const int iy = y / scale, ix = x / scale;
            const uint8_t *src = display_rgb + ((size_t)iy * (size_t)img_size + (size_t)ix) * 3;
            const size_t py = (size_t)(iy / patch), px = (size_t)(ix / patch);
            /* pixels past the last whole patch (img_size not a multiple) belong to no token */
            const bool pruned = alive && (py >= grid || px >= grid || !alive[py * grid + px]);
            uint8_t rgb[3];
            if (pruned) {
                const float lum = 0.299f * src[0] + 0.587f * src[1] + 0.114f * src[2];
                const float g = TPSC_VIZ_GREY_BASE * (1.0f - TPSC_VIZ_GREY_MIX) + lum * TPSC_VIZ_GREY_MIX;
                rgb[0] = rgb[1] = rgb[2] = (uint8_t)(g + 0.5f);
            } else {
                memcpy(rgb, src, 3);
            }
            put(im, x0 + x, y0 + y, rgb);
        }
}

/* A merging method's panel: every patch of a region (group[j], the token holding patch j)
 * painted in the region's mean colour, a border where two regions meet (as ToMe's figures). */
static void draw_regions(tpsc_rgb_image *im, int x0, int y0, const uint8_t *display_rgb, int img_size, int patch,
                         size_t grid, const int32_t *group, int scale, int thick) {
    static double sum[TPSC_VIZ_MAX_PATCHES][4]; /* r, g, b, pixels per region */
    const size_t N = grid * grid;
    memset(sum, 0, N * sizeof sum[0]);
    for (int iy = 0; iy < (int)grid * patch; iy++)
        for (int ix = 0; ix < (int)grid * patch; ix++) {
            double *acc = sum[group[(size_t)(iy / patch) * grid + (size_t)(ix / patch)]];
            const uint8_t *src = display_rgb + ((size_t)iy * (size_t)img_size + (size_t)ix) * 3;
            acc[0] += src[0], acc[1] += src[1], acc[2] += src[2], acc[3] += 1.0;
        }
    for (int y = 0; y < img_size * scale; y++)
        for (int x = 0; x < img_size * scale; x++) {
            const size_t py = (size_t)(y / scale / patch), px = (size_t)(x / scale / patch);
            uint8_t rgb[3] = {TPSC_VIZ_GREY_BASE, TPSC_VIZ_GREY_BASE, TPSC_VIZ_GREY_BASE}; /* past the last patch */
            if (py < grid && px < grid) {
                const double *acc = sum[group[py * grid + px]];
                for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)(acc[k] / acc[3] + 0.5);
            }
            put(im, x0 + x, y0 + y, rgb);
        }
    const int cell = patch * scale;
    for (size_t py = 0; py < grid; py++)
        for (size_t px = 0; px < grid; px++) {
            const int32_t g = group[py * grid + px];
            const int cx = x0 + (int)px * cell, cy = y0 + (int)py * cell;
            if (px + 1 < grid && group[py * grid + px + 1] != g)
                for (int t = 0; t < thick; t++)
                    for (int i = 0; i < cell; i++) put(im, cx + cell - 1 - t, cy + i, border_rgb);
            if (py + 1 < grid && group[(py + 1) * grid + px] != g)
                for (int t = 0; t < thick; t++)
                    for (int i = 0; i < cell; i++) put(im, cx + i, cy + cell - 1 - t, border_rgb);
        }
}

tpsc_status tpsc_viz_draw_row(tpsc_rgb_image *canvas, int row, const uint8_t *display_rgb, int img_size,
                              const tpsc_token_map *map, const tpsc_viz_style *st) {
    int need_w, need_h;
    tpsc_viz_canvas_size(img_size, map->n_stages, row + 1, st, &need_w, &need_h);
    if (canvas->width < need_w || canvas->height < need_h || st->scale < 1 || map->grid == 0)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: canvas %d x %d too small for row %d (%d x %d)", canvas->width,
                         canvas->height, row, need_w, need_h);
    const int patch = img_size / (int)map->grid, cell = patch * st->scale, thick = st->scale >= 4 ? st->scale / 4 : 1;
    int x, y;
    tpsc_viz_panel_origin(img_size, row, 0, st, &x, &y);
    draw_panel(canvas, x, y, display_rgb, img_size, patch, map->grid, NULL, st->scale);
    for (int s = 0; s < map->n_stages; s++) {
        tpsc_viz_panel_origin(img_size, row, 1 + s, st, &x, &y);
        if (tok_method_merges(map->method)) {
            draw_regions(canvas, x, y, display_rgb, img_size, patch, map->grid, map->group[s], st->scale, thick);
            continue;
        }
        draw_panel(canvas, x, y, display_rgb, img_size, patch, map->grid, map->alive[s], st->scale);
        if (!tok_method_squeezes(map->method)) continue;
        for (size_t j = 0; j < map->n_patches; j++) {
            const int32_t h = map->host[s][j];
            if (h < 0) continue;
            const int jx = x + (int)(j % map->grid) * cell, jy = y + (int)(j / map->grid) * cell;
            const int hx = x + (int)((size_t)h % map->grid) * cell, hy = y + (int)((size_t)h / map->grid) * cell;
            if (st->outlines) outline(canvas, hx, hy, cell, thick, host_rgb);
            if (st->lines) line(canvas, jx + cell / 2, jy + cell / 2, hx + cell / 2, hy + cell / 2, thick, line_rgb);
        }
    }
    return TPSC_OK;
}

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "data/stb_quiet_begin.h"
#include <stb/stb_image_write.h>
#include "data/stb_quiet_end.h"

tpsc_status tpsc_rgb_image_write_png(const tpsc_rgb_image *im, const char *path) {
    errno = 0;
    if (!stbi_write_png(path, im->width, im->height, 3, im->pix, im->width * 3))
        return tpsc_fail(TPSC_ERR_IO, "cannot write %s%s%s", path, errno ? ": " : "", errno ? strerror(errno) : "");
    return TPSC_OK;
}
