/* `tpsc visualize` (src/viz/): the token map against the model's own forward, hosts of
 * squeezed tokens (against the maps an earlier implementation drew), the eval preprocessing of a fixture image, the drawn canvas (size,
 * untouched kept patches, greyed pruned patches, host lines only for squeezing methods) and the
 * PNG written, and folder listing for contact sheets. Tiny models: img 28, patch 7, dim 16,
 * depth 3, two stages. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "src/util/alloc.h"
#include "src/viz/image.h"
#include "src/viz/render.h"

#define IMG 28
#define PATCH 7
#define GRID 4
#define NP (GRID * GRID)

static void tiny_model(vit_model *m, tok_method method, size_t in_chans, uint64_t seed) {
    vit_config vc = {.arch = "custom", .img_size = IMG, .patch_size = PATCH, .in_chans = in_chans, .embed_dim = 16,
                     .depth = 3, .num_heads = 2, .num_classes = 10, .mlp_ratio = 4.0f, .ln_eps = 1e-6f};
    tok_config tc = {.method = method, .n_stages = 2, .prune_loc = {1, 2}, .squeeze_temp = 1.0f};
    if (method == TOK_NONE) tc.n_stages = 0;
    else tok_config_fill_rho(&tc, 0.5f);
    cr_assert_eq(vit_model_create(m, &vc, &tc), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    vit_model_init(m, &rng);
}

static void random_image(float *chw, size_t n, uint64_t seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) chw[i] = tpsc_rng_normal(&rng);
}

/* Reference: vit_forward in VIT_INFER mode on the same weights and image. The map reads that
 * forward, so logits agree (1e-5 absolute, as when the map ran a forward of its own) and the
 * kept patch indices exactly. */
static void check_against_model(tok_method method) {
    static vit_model m;
    tiny_model(&m, method, 1, 11);
    float img[IMG * IMG];
    random_image(img, IMG * IMG, 5);
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_not_null(ctx);
    static tpsc_token_map map;
    cr_assert_eq(tpsc_token_map_compute(&m, ctx, img, NULL, &map), TPSC_OK, "%s", tpsc_last_error());
    float got[10];
    memcpy(got, map.logits, sizeof got);
    tpsc_token_map copy = map;

    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, false);
    size_t shape[4] = {1, 1, IMG, IMG};
    vit_forward_opts fo = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, ag_wrap(ctx, img, NULL, 4, shape, false), &fo, &out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    for (int k = 0; k < 10; k++)
        cr_assert(fabsf(got[k] - logits->data[k]) <= 1e-5f, "%s logit %d: map %g, model %g", tok_method_name(method), k,
                  (double)got[k], (double)logits->data[k]);
    cr_assert_eq(copy.n_stages, out.n_stages);
    for (int s = 0; s < out.n_stages; s++) {
        cr_assert_eq(copy.kept_count[s], out.kept_count[s], "%s stage %d", tok_method_name(method), s);
        size_t alive = 0, with_patch = 0; /* evit's fused token (-1) may be kept and has no patch */
        for (size_t j = 0; j < out.kept_count[s]; j++) {
            cr_assert_eq(copy.kept_orig[s][j], out.kept_orig[s][j], "%s stage %d token %zu", tok_method_name(method), s, j);
            if (out.kept_orig[s][j] < 0) continue;
            cr_assert(copy.alive[s][out.kept_orig[s][j]]);
            with_patch++;
        }
        for (size_t j = 0; j < NP; j++) alive += copy.alive[s][j];
        cr_assert_eq(alive, with_patch, "%s stage %d: alive patches", tok_method_name(method), s);

        /* every patch dropped at this stage: squeezing methods name a host alive at the
         * stage; evit fuses it; dynamicvit just drops it */
        for (size_t j = 0; j < NP; j++) {
            const bool dropped_here = !copy.alive[s][j] && (s == 0 || copy.alive[s - 1][j]);
            const int32_t h = copy.host[s][j];
            if (!dropped_here) {
                cr_assert_eq(h, TPSC_VIZ_NO_HOST, "%s stage %d patch %zu not dropped here has host %d",
                             tok_method_name(method), s, j, h);
            } else if (tok_method_squeezes(method)) {
                cr_assert(h >= 0 && h < NP && copy.alive[s][h], "%s stage %d patch %zu: host %d not a kept patch",
                          tok_method_name(method), s, j, h);
            } else {
                cr_assert_eq(h, method == TOK_EVIT ? TPSC_VIZ_FUSED : TPSC_VIZ_NO_HOST, "%s stage %d patch %zu",
                             tok_method_name(method), s, j);
            }
        }
    }
    /* Reference hosts for this model and image (-1 none, -2 evit's fused token): the map of
     * commit 950f093, whose token map ran its own stage-by-stage forward and took each host as
     * the cosine argmax in double. Exact. */
    static const int32_t want_host[4][2][NP] = {
        [TOK_DTPS - TOK_DYNAMICVIT] = {{9, 11, 7, -1, -1, -1, -1, -1, 7, -1, 11, -1, -1, 11, 4, 4},
                                       {-1, -1, -1, 9, 12, -1, 5, 9, -1, -1, -1, -1, -1, -1, -1, -1}},
        [TOK_ETPS - TOK_DYNAMICVIT] = {{9, -1, 7, 9, -1, 6, -1, -1, 7, -1, 15, -1, 11, 11, -1, -1},
                                       {-1, 11, -1, -1, 15, -1, 9, -1, -1, -1, -1, -1, -1, -1, 15, -1}},
    };
    if (tok_method_squeezes(method))
        for (int s = 0; s < 2; s++)
            for (size_t j = 0; j < NP; j++)
                cr_assert_eq(copy.host[s][j], want_host[method - TOK_DYNAMICVIT][s][j], "%s stage %d patch %zu: host %d, want %d",
                             tok_method_name(method), s, j, copy.host[s][j], want_host[method - TOK_DYNAMICVIT][s][j]);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(visualize, token_map_matches_the_model_dynamicvit) { check_against_model(TOK_DYNAMICVIT); }
Test(visualize, token_map_matches_the_model_dtps) { check_against_model(TOK_DTPS); }
Test(visualize, token_map_matches_the_model_evit) { check_against_model(TOK_EVIT); }
Test(visualize, token_map_matches_the_model_etps) { check_against_model(TOK_ETPS); }

/* A colourful 28 x 28 fixture: red stripes and a blue gradient, every pixel with r != g. */
/* Merging methods: the map observes vit_forward's source map; the panels paint each region in
 * its mean colour. References: vit_output.patch_token_block at each panel's block (exact),
 * the region count, and the mean of the display pixels of a region's patches, computed here,
 * at every cell's centre pixel (rounded to the nearest byte as the renderer does). */
static const uint8_t *pixel(const tpsc_rgb_image *c, int x, int y);

static void check_merging(tok_method method) {
    static vit_model m;
    vit_config vc = {.arch = "custom", .img_size = IMG, .patch_size = PATCH, .in_chans = 1, .embed_dim = 16,
                     .depth = 3, .num_heads = 2, .num_classes = 10, .mlp_ratio = 4.0f, .ln_eps = 1e-6f};
    tok_config tc = {.method = method, .tome_r = 3, .prop_attn = true, .squeeze_temp = 1.0f};
    if (method == TOK_ATME) {
        tc.n_stages = 2, tc.prune_loc[0] = 1, tc.prune_loc[1] = 2;
        tok_config_fill_rho(&tc, 0.5f);
    }
    cr_assert_eq(vit_model_create(&m, &vc, &tc), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 3);
    vit_model_init(&m, &rng);
    float img[IMG * IMG];
    random_image(img, IMG * IMG, 9);
    ag_ctx *ctx = ag_ctx_create(0);
    static tpsc_token_map map;
    cr_assert_eq(tpsc_token_map_compute(&m, ctx, img, NULL, &map), TPSC_OK, "%s", tpsc_last_error());
    const int panels = method == TOK_TOME ? 3 : 2; /* tome: every block of 3; atme: blocks 1, 2 */
    cr_assert_eq(map.n_stages, panels);
    cr_assert_eq(tpsc_token_map_panels(&m), panels);
    static tpsc_token_map copy;
    copy = map;
    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, false);
    vit_forward_opts fo = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, &m, ag_wrap(ctx, img, NULL, 4, (size_t[]){1, 1, IMG, IMG}, false), &fo, &out);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    const size_t want_regions[2][3] = {{14, 11, 8}, {8, 4, 0}}; /* tome r = 3: 17 -> 14 -> 11 -> 8 tokens */
    for (int s = 0; s < panels; s++) {
        const int b = method == TOK_TOME ? s : s + 1;
        cr_assert_eq(copy.block[s], b);
        for (size_t j = 0; j < NP; j++)
            cr_assert_eq(copy.group[s][j], out.patch_token_block[b][j], "%s panel %d patch %zu", tok_method_name(method), s, j);
        cr_assert_eq(copy.kept_count[s], want_regions[method == TOK_TOME ? 0 : 1][s] - (method == TOK_TOME ? 1 : 0),
                     "%s panel %d: %zu regions", tok_method_name(method), s, copy.kept_count[s]);
    }
    /* the drawing: every cell in its region's mean colour */
    uint8_t display[IMG * IMG * 3];
    tpsc_rng_seed(&rng, 4);
    for (size_t i = 0; i < sizeof display; i++) display[i] = (uint8_t)(tpsc_rng_uniform_open(&rng) * 255.0f);
    tpsc_viz_style st = tpsc_viz_default_style(IMG);
    int w, h;
    tpsc_viz_canvas_size(IMG, panels, 1, &st, &w, &h);
    tpsc_rgb_image canvas;
    cr_assert_eq(tpsc_rgb_image_alloc(&canvas, w, h), TPSC_OK);
    cr_assert_eq(tpsc_viz_draw_row(&canvas, 0, display, IMG, &copy, &st), TPSC_OK, "%s", tpsc_last_error());
    const int cell = PATCH * st.scale;
    for (int s = 0; s < panels; s++) {
        int x0, y0;
        tpsc_viz_panel_origin(IMG, 0, 1 + s, &st, &x0, &y0);
        for (size_t j = 0; j < NP; j++) {
            double sum[3] = {0, 0, 0}, n = 0;
            for (int iy = 0; iy < GRID * PATCH; iy++)
                for (int ix = 0; ix < GRID * PATCH; ix++)
                    if (copy.group[s][(size_t)(iy / PATCH) * GRID + (size_t)(ix / PATCH)] == copy.group[s][j]) {
                        for (int k = 0; k < 3; k++) sum[k] += display[((size_t)iy * IMG + (size_t)ix) * 3 + k];
                        n++;
                    }
            const uint8_t *px = pixel(&canvas, x0 + (int)(j % GRID) * cell + cell / 2, y0 + (int)(j / GRID) * cell + cell / 2);
            for (int k = 0; k < 3; k++)
                cr_assert_eq(px[k], (uint8_t)(sum[k] / n + 0.5), "%s panel %d patch %zu channel %d",
                             tok_method_name(method), s, j, k);
        }
    }
    tpsc_rgb_image_free(&canvas);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

Test(visualize, merged_groups_tome) { check_merging(TOK_TOME); }
Test(visualize, merged_groups_atme) { check_merging(TOK_ATME); }

static void fixture_png(const char *path, uint8_t *rgb) {
    for (int y = 0; y < IMG; y++)
        for (int x = 0; x < IMG; x++) {
            uint8_t *p = rgb + (y * IMG + x) * 3;
            p[0] = (uint8_t)(x % 4 < 2 ? 220 : 120);
            p[1] = (uint8_t)(20 + y);
            p[2] = (uint8_t)(x * 9);
        }
    tpsc_rgb_image im = {.pix = rgb, .width = IMG, .height = IMG};
    cr_assert_eq(tpsc_rgb_image_write_png(&im, path), TPSC_OK, "%s", tpsc_last_error());
}

static tpsc_augment_config eval_aug(void) {
    tpsc_augment_config a;
    memset(&a, 0, sizeof a);
    a.crop_pct = 1.0f;
    a.interpolation = TPSC_INTERP_BICUBIC;
    for (int c = 0; c < 3; c++) a.mean[c] = 0.5f, a.std[c] = 0.25f;
    return a;
}

static void draw_fixture(tok_method method, tpsc_rgb_image *canvas, uint8_t *display, tpsc_token_map *map,
                         tpsc_viz_style *st) {
    char dir[] = "/tmp/tpsc_viz_XXXXXX", path[64];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/fixture.png", dir);
    uint8_t rgb[IMG * IMG * 3];
    fixture_png(path, rgb);
    tpsc_augment_config aug = eval_aug();
    float chw[3 * IMG * IMG];
    cr_assert_eq(tpsc_viz_load_image(path, &aug, 3, IMG, chw, display), TPSC_OK, "%s", tpsc_last_error());
    /* Reference: the eval transform at the image's own size with crop_pct 1 resizes nothing,
     * so input and display are the fixture's pixels: display within 1 (rounding), and the
     * normalised input (x / 255 - 0.5) / 0.25 within 1e-4 of that. */
    for (int i = 0; i < IMG * IMG * 3; i++) cr_assert(abs((int)display[i] - (int)rgb[i]) <= 1, "display pixel %d", i);
    for (int i = 0; i < IMG * IMG; i++) {
        const double want = (rgb[i * 3 + 1] / 255.0 - 0.5) / 0.25;
        cr_assert(fabs(chw[IMG * IMG + i] - want) <= 1e-4, "input G at %d: %g vs %g", i, (double)chw[IMG * IMG + i], want);
    }
    static vit_model m;
    tiny_model(&m, method, 3, 3);
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(tpsc_token_map_compute(&m, ctx, chw, NULL, map), TPSC_OK, "%s", tpsc_last_error());
    *st = tpsc_viz_default_style(IMG);
    int w, h;
    tpsc_viz_canvas_size(IMG, map->n_stages, 1, st, &w, &h);
    cr_assert_eq(tpsc_rgb_image_alloc(canvas, w, h), TPSC_OK);
    cr_assert_eq(tpsc_viz_draw_row(canvas, 0, display, IMG, map, st), TPSC_OK, "%s", tpsc_last_error());

    /* the PNG on disk has the canvas's size */
    snprintf(path, sizeof path, "%s/map.png", dir);
    cr_assert_eq(tpsc_rgb_image_write_png(canvas, path), TPSC_OK, "%s", tpsc_last_error());
    int pw = 0, ph = 0, pc = 0;
    uint8_t *back = stbi_load(path, &pw, &ph, &pc, 3);
    cr_assert_not_null(back);
    cr_assert(pw == w && ph == h, "PNG %d x %d, canvas %d x %d", pw, ph, w, h);
    cr_assert_eq(memcmp(back, canvas->pix, (size_t)w * h * 3), 0, "PNG pixels differ from the canvas");
    stbi_image_free(back);
    unlink(path);
    snprintf(path, sizeof path, "%s/fixture.png", dir);
    unlink(path);
    rmdir(dir);
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

static const uint8_t *pixel(const tpsc_rgb_image *c, int x, int y) { return c->pix + ((size_t)y * c->width + x) * 3; }

Test(visualize, output_size_and_pruned_patches_greyed) {
    static tpsc_rgb_image canvas;
    static uint8_t display[IMG * IMG * 3];
    static tpsc_token_map map;
    tpsc_viz_style st;
    draw_fixture(TOK_DYNAMICVIT, &canvas, display, &map, &st);
    /* Reference size: 3 panels (image + 2 stages) of 28 * 8 = 224 px, 4 px gaps around and
     * between: 3 * 224 + 4 * 4 = 688 wide, 224 + 2 * 4 = 232 high. */
    cr_assert_eq(st.scale, 8);
    cr_assert(canvas.width == 688 && canvas.height == 232, "canvas %d x %d", canvas.width, canvas.height);
    for (int panel = 0; panel < 3; panel++) {
        int x0, y0;
        tpsc_viz_panel_origin(IMG, 0, panel, &st, &x0, &y0);
        for (int y = 0; y < IMG * st.scale; y++)
            for (int x = 0; x < IMG * st.scale; x++) {
                const int ix = x / st.scale, iy = y / st.scale, j = (iy / PATCH) * GRID + ix / PATCH;
                const uint8_t *src = display + (iy * IMG + ix) * 3, *got = pixel(&canvas, x0 + x, y0 + y);
                const bool pruned = panel > 0 && !map.alive[panel - 1][j];
                if (!pruned) {
                    cr_assert(!memcmp(got, src, 3), "panel %d (%d,%d): kept pixel changed", panel, x, y);
                    continue;
                }
                /* Reference: grey = 200 * 0.7 + 0.3 * luminance (ITU-R 601), r = g = b; the
                 * fixture's own pixels are never grey (r != g) */
                const double lum = 0.299 * src[0] + 0.587 * src[1] + 0.114 * src[2];
                const int want = (int)(200.0 * 0.7 + 0.3 * lum + 0.5);
                cr_assert(got[0] == got[1] && got[1] == got[2], "panel %d patch %d: pruned pixel not grey", panel, j);
                cr_assert(abs(got[0] - want) <= 1, "panel %d patch %d: grey %d, want %d", panel, j, got[0], want);
                cr_assert_neq(src[0], src[1]);
            }
    }
    /* both stages pruned something: 8 then 4 of 16 patches kept */
    cr_assert(map.kept_count[0] == 8 && map.kept_count[1] == 4, "kept %zu, %zu", map.kept_count[0], map.kept_count[1]);
    tpsc_rgb_image_free(&canvas);
}

static size_t count_colour(const tpsc_rgb_image *c, const uint8_t rgb[3]) {
    size_t n = 0;
    for (int i = 0; i < c->width * c->height; i++) n += !memcmp(c->pix + (size_t)i * 3, rgb, 3);
    return n;
}

Test(visualize, host_lines_only_for_squeezing_methods) {
    static tpsc_rgb_image canvas;
    static uint8_t display[IMG * IMG * 3];
    static tpsc_token_map map;
    tpsc_viz_style st;
    const uint8_t line_rgb[3] = {230, 60, 20}, host_rgb[3] = {255, 170, 0}; /* render.c's colours */
    draw_fixture(TOK_DTPS, &canvas, display, &map, &st);
    cr_assert_gt(count_colour(&canvas, line_rgb), 0u, "dtps: no squeeze lines drawn");
    cr_assert_gt(count_colour(&canvas, host_rgb), 0u, "dtps: no host outlines drawn");
    tpsc_rgb_image_free(&canvas);
    draw_fixture(TOK_DYNAMICVIT, &canvas, display, &map, &st);
    cr_assert_eq(count_colour(&canvas, line_rgb), 0u, "dynamicvit squeezes nothing, yet lines were drawn");
    cr_assert_eq(count_colour(&canvas, host_rgb), 0u);
    tpsc_rgb_image_free(&canvas);
}

Test(visualize, folder_listing_for_contact_sheets) {
    char dir[] = "/tmp/tpsc_vizdir_XXXXXX", path[96];
    cr_assert_not_null(mkdtemp(dir));
    const char *files[] = {"b.png", "a.PNG", "notes.txt", "c.jpg"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fclose(f);
    }
    char **list;
    int n;
    cr_assert_eq(tpsc_viz_list_images(dir, 2, &list, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 2);
    snprintf(path, sizeof path, "%s/a.PNG", dir);
    cr_assert_str_eq(list[0], path);
    snprintf(path, sizeof path, "%s/b.png", dir);
    cr_assert_str_eq(list[1], path);
    tpsc_viz_free_list(list, n);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    cr_assert_eq(tpsc_viz_list_images(dir, 0, &list, &n), TPSC_ERR_MISSING);
    cr_assert(strstr(tpsc_last_error(), dir), "%s", tpsc_last_error());
    rmdir(dir);
}

Test(visualize, undecodable_image_names_the_file) {
    char path[] = "/tmp/tpsc_vizbad_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "not an image", 12), 12);
    close(fd);
    tpsc_augment_config aug = eval_aug();
    float chw[IMG * IMG];
    uint8_t display[IMG * IMG * 3];
    cr_assert_eq(tpsc_viz_load_image(path, &aug, 1, IMG, chw, display), TPSC_ERR_FORMAT);
    cr_assert(strstr(tpsc_last_error(), path), "%s", tpsc_last_error());
    unlink(path);
}

/* `tpsc visualize` decodes through the image-folder loader's checks: each committed input on
 * which stb_image once overran a buffer (the fuzz corpus's regress-* files) is refused with an
 * error naming the file, where a bare stb_image decode read or wrote out of bounds. */
Test(visualize, files_that_overran_stb_are_refused_naming_the_file) {
    static const char *const names[] = {"regress-jpeg-scan-undefined-huffman-table", "regress-jpeg-fill-before-soi",
                                        "regress-jpeg-huffman-overflow", "regress-pnm16-short",
                                        "regress-pnm-number-overflows-int"};
    tpsc_augment_config aug = eval_aug();
    float chw[3 * IMG * IMG];
    uint8_t display[IMG * IMG * 3];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/image_infer/%s", TPSC_SOURCE_DIR, names[i]);
        cr_assert_eq(access(path, R_OK), 0, "%s", path);
        cr_expect_eq(tpsc_viz_load_image(path, &aug, 3, IMG, chw, display), TPSC_ERR_FORMAT, "%s", path);
        cr_expect(strstr(tpsc_last_error(), path), "%s", tpsc_last_error());
    }
}
